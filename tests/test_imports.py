"""The import graph of the repository: the run library under the apps, and no cycle anywhere."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
APPS = {"zoo.train", "zoo.evaluate", "zoo.export", "zoo.tune", "zoo.package", "zoo.cli"}
# Scripts import their siblings by name (run from their directory or with it on sys.path).
SCRIPT_DIRECTORIES = ("benchmarks", "experiments")


def modules():
    """`{dotted name: path}` of every Python module of the repository (zoo, tests, benchmarks, experiments)."""
    found = {}
    for top in ("zoo", "tests", *SCRIPT_DIRECTORIES):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name, path, known):
    """The repository modules `name` imports anywhere in its code (function-local imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            for resolved in (candidate, f"{package}.{candidate}"):  # a sibling script imported by name
                if resolved in known and resolved != name:
                    targets.add(resolved)
                    break
    # `from zoo.runs import config` names the module zoo.runs.config: the package itself is not an arrow then.
    return {t for t in targets if not any(other.startswith(t + ".") for other in targets)}


def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) == []


def test_the_resolver_sees_every_kind_of_import(tmp_path):
    known = {"zoo.runs.config": None, "zoo.runs.files": None, "zoo.runs": None, "zoo.cli": None,
             "benchmarks.reporting": None, "benchmarks.speed": None}
    source = tmp_path / "speed.py"
    source.write_text("import reporting\ndef f():\n    from zoo.runs import config\n    import zoo.cli\n"
                      "from zoo.runs.files import LOCK_FILE\n")
    assert imports("benchmarks.speed", source, known) == {
        "benchmarks.reporting", "zoo.runs.config", "zoo.cli", "zoo.runs.files"}


def test_the_repository_has_no_import_cycle():
    assert cycles(graph()) == []


def test_no_library_module_imports_an_app_and_no_app_imports_another():
    edges = graph()
    # zoo.cli is the apps' own command-line layer, which the scripts (command lines too) share.
    wrong = sorted(f"{name} -> {target}" for name, targets in edges.items() for target in targets
                   if target in APPS and (name.startswith("zoo.") and name not in APPS
                                          or (name in APPS or name.split(".")[0] in SCRIPT_DIRECTORIES)
                                          and target != "zoo.cli"))
    assert wrong == []


def test_apps_stay_thin():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items() if name in APPS}
    assert {"zoo.train", "zoo.evaluate", "zoo.export", "zoo.tune"} <= set(lengths)
    assert max(lengths.values()) < 200, lengths


def test_import_zoo_is_light_and_each_zoo_name_loads_what_it_names():
    import subprocess
    import sys

    # zoo.layers first: its modules import zoo.distributions while they load, which must not pull in the models
    # (they import zoo.layers back: a circular import).
    code = ("import sys, zoo; light = 'tensorflow' not in sys.modules; from zoo.layers import PixelCNN; "
            "alone = 'zoo.models' not in sys.modules; zoo.VAE; import keras; "
            "print(light, alone, 'tensorflow' in sys.modules, keras.saving.get_registered_object('zoo>VAE'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["True", "True", "True"] and "zoo.models.vae.VAE" in out.stdout, out.stdout
