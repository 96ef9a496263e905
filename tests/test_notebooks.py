"""The notebooks run top to bottom in a real Jupyter kernel (nbclient) and are committed clean and Colab-ready.

Each notebook asserts its own results (finite, sane log-likelihoods, imputation errors, accuracies
above chance), so a notebook that runs but computes nonsense fails here with the failing cell's error.
The default suite runs each with smaller settings, injected papermill-style: a cell tagged
`injected-parameters` after the notebook's `parameters` cell, which the notebook itself never holds
(it runs unchanged in Colab with its own defaults); the `large` suite runs the defaults.
"""

import ast
import asyncio
import configparser
import json
import os
import pathlib
import re
import sys
import time

import nbclient
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec

from tests.conftest import MNIST_DIR, OMNIGLOT_DIR, has_binarized_mnist

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "zoo-test"

# The default suite's settings: every cell still runs and asserts, on fewer updates, images and samples. Each
# notebook's assertions hold with a margin at these sizes (tracing, not the steps, is most of a notebook's time).
SMALL_SETTINGS = {
    "quickstart.ipynb": {"TRAIN_EXAMPLES": 500, "EPOCHS": 2, "TEST_EXAMPLES": 20, "NUM_SAMPLES": 10,
                         "IMPUTATION_STEPS": 3},
    "hierarchies.ipynb": {"TRAIN_EXAMPLES": 500, "EPOCHS": 2, "WARMUP_STEPS": 10, "TEST_EXAMPLES": 50},
    "pretrained.ipynb": {"NUM_SAMPLES": 20, "TEST_EXAMPLES": 20},
    "few_shot_vma.ipynb": {"EPOCHS": 1, "STEPS_PER_EPOCH": 25, "TEST_EPISODES": 10, "NUM_SAMPLES": 10},
}


def repository_url():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["metadata"]["url"]


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def parameter_names(notebook):
    """The names the notebook's `parameters` cell assigns."""
    (cell,) = [cell for cell in code_cells(notebook) if "parameters" in cell.metadata.get("tags", [])]
    return {target.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def inject_parameters(notebook, settings):
    """Papermill's convention: a cell tagged `injected-parameters` right after the `parameters` cell."""
    unknown = set(settings) - parameter_names(notebook)
    assert not unknown, f"not knobs of the parameters cell: {sorted(unknown)}"
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in settings.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)


def missing_data(path):
    if not has_binarized_mnist():
        return "binarized_mnist is not prepared in TFDS_DATA_DIR"
    if "omniglot" in path.read_text() and not OMNIGLOT_DIR.is_dir():
        return f"no Omniglot archives in {OMNIGLOT_DIR}"
    if "MNIST_DIR" in path.read_text() and not MNIST_DIR.is_dir():
        return f"no MNIST IDX archives in {MNIST_DIR}"
    return None


def kernel_environment(directory):
    """Environment for a kernel of this interpreter that imports this checkout's zoo and finds the shared data."""
    # A kernelspec of its own: argv[0] is sys.executable, whatever python3 kernels the user has installed.
    write_kernel_spec(directory / "kernels" / KERNEL, overrides={"display_name": "zoo tests"})
    return {
        "JUPYTER_PATH": str(directory),
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "TFDS_DATA_DIR": os.environ.get("TFDS_DATA_DIR", ""),
        "OMNIGLOT_DIR": str(OMNIGLOT_DIR),
        "MNIST_DIR": str(MNIST_DIR),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


async def execute(path, settings=None):
    """Runs a notebook in a fresh kernel, with `settings` injected; returns it (with a last cell printing the
    kernel's interpreter), its error, and seconds."""
    notebook = nbformat.read(path, as_version=4)
    if settings:
        inject_parameters(notebook, settings)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = nbclient.NotebookClient(
        notebook, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    try:
        await client.async_execute()
        error = None
    except (nbclient.exceptions.CellExecutionError, nbclient.exceptions.CellTimeoutError,
            nbclient.exceptions.DeadKernelError) as failure:
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(failure))  # the failing cell and its traceback, without colours
    return notebook, error, time.perf_counter() - start


def execute_side_by_side(tmp_path_factory, settings):
    """Every notebook whose data is here, all at once: a kernel spends most of its time tracing models on one
    thread, so running them side by side keeps both cores of a 2-core machine busy."""
    paths = [path for path in NOTEBOOKS if missing_data(path) is None]

    async def execute_all():
        return await asyncio.gather(*(execute(path, settings.get(path.name)) for path in paths))

    with pytest.MonkeyPatch.context() as patch:
        for name, value in kernel_environment(tmp_path_factory.mktemp("jupyter")).items():
            patch.setenv(name, value)
        start = time.perf_counter()
        results = asyncio.run(execute_all())
    print(f"\nnotebooks executed side by side in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{path.name} {seconds:.1f} s" for path, (_, _, seconds) in zip(paths, results)))
    return dict(zip(paths, results))


@pytest.fixture(scope="module")
def executed_small(tmp_path_factory):
    return execute_side_by_side(tmp_path_factory, SMALL_SETTINGS)


@pytest.fixture(scope="module")
def executed_defaults(tmp_path_factory):
    return execute_side_by_side(tmp_path_factory, {})


def test_the_notebooks_are_there():
    assert {"quickstart.ipynb", "few_shot_vma.ipynb", "hierarchies.ipynb", "pretrained.ipynb"} <= {
        path.name for path in NOTEBOOKS
    }
    assert set(SMALL_SETTINGS) == {path.name for path in NOTEBOOKS}, "every notebook has small settings"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, executed_small, record_property):
    check_run(path, executed_small, record_property)
    notebook = executed_small[path][0]
    (injected,) = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert injected.execution_count is not None and not injected.outputs  # the settings ran, silently


@pytest.mark.large  # the notebooks' own settings, as a reader runs them
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_its_defaults(path, executed_defaults, record_property):
    check_run(path, executed_defaults, record_property)


def pretrained_notebook_models():
    """The savedmodels/ the pretrained notebook takes: binarized MNIST, all but VMA (few_shot_vma.ipynb)."""
    configs = {path.parent.name: json.loads(path.read_text()) for path in (ROOT / "savedmodels").glob("*/config.json")}
    return sorted(name for name, config in configs.items()
                  if config["dataset"] == "binarized_mnist" and config["model"]["class_name"] != "VMA")


@pytest.mark.large  # each model of savedmodels/ its parameters cell promises, at the default suite's sizes
@pytest.mark.parametrize("name", pretrained_notebook_models())
def test_pretrained_notebook_takes_the_model(name, tmp_path_factory, record_property):
    path = ROOT / "notebooks" / "pretrained.ipynb"
    if missing_data(path):
        pytest.skip(missing_data(path))
    settings = {**SMALL_SETTINGS[path.name], "MODEL": name}
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in kernel_environment(tmp_path_factory.mktemp("jupyter")).items():
            patch.setenv(variable, value)
        check_run(path, {path: asyncio.run(execute(path, settings))}, record_property)


def check_run(path, executed, record_property):
    if missing_data(path):
        pytest.skip(missing_data(path))
    notebook, error, seconds = executed[path]
    record_property("seconds", round(seconds, 1))
    if error:
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    assert notebook.cells[-1].outputs[0]["text"].strip() == sys.executable
    outputs = [output for cell in code_cells(notebook) for output in cell.outputs]
    assert any("image/png" in output.get("data", {}) for output in outputs), "no matplotlib figure was shown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_colab_ready(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(notebook)
    for i, cell in enumerate(cells):
        assert cell.outputs == [] and cell.execution_count is None, f"code cell {i} has outputs: strip them"
    assert "parameters" in cells[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert not [cell for cell in cells if "injected-parameters" in cell.metadata.get("tags", [])], "injected cell"
    assert set(SMALL_SETTINGS[path.name]) <= parameter_names(notebook), "small settings name the notebook's knobs"
    url = repository_url()
    repository = url.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/{path.name}"
    assert badge in notebook.cells[0].source, f"the first cell must link to {badge}"
    sources = "\n".join(cell.source for cell in cells)
    assert set(re.findall(r"git\+(\S+?)[\"']", sources)) == {url}, "installs from setup.cfg's url only"
    install = next(cell.source for cell in cells if "git+" in cell.source)
    assert '"google.colab" in sys.modules' in install and "import zoo" in install
