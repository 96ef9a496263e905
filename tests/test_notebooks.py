"""The notebooks run top to bottom in a real Jupyter kernel (nbclient) and are committed clean and Colab-ready.

Each notebook asserts its own results (finite, sane log-likelihoods, imputation errors, accuracies
above chance), so a notebook that runs but computes nonsense fails here with the failing cell's error.
"""

import asyncio
import configparser
import os
import pathlib
import re
import sys
import time

import nbclient
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec

from tests.conftest import SHARED_DATASETS, has_binarized_mnist

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
OMNIGLOT_DIR = os.environ.get("OMNIGLOT_DIR") or str(SHARED_DATASETS / "omniglot")
MNIST_DIR = os.environ.get("MNIST_DIR") or str(SHARED_DATASETS / "mnist")
KERNEL = "zoo-test"


def repository_url():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["metadata"]["url"]


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def missing_data(path):
    if not has_binarized_mnist():
        return "binarized_mnist is not prepared in TFDS_DATA_DIR"
    if "omniglot" in path.read_text() and not pathlib.Path(OMNIGLOT_DIR).is_dir():
        return f"no Omniglot archives in {OMNIGLOT_DIR}"
    if "MNIST_DIR" in path.read_text() and not pathlib.Path(MNIST_DIR).is_dir():
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
        "OMNIGLOT_DIR": OMNIGLOT_DIR,
        "MNIST_DIR": MNIST_DIR,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


async def execute(path):
    """Runs a notebook in a fresh kernel; returns it (with a last cell printing the kernel's interpreter), its error, and seconds."""
    notebook = nbformat.read(path, as_version=4)
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


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook whose data is here, all at once: a kernel spends most of its time tracing models on one
    thread, so running them side by side keeps both cores of a 2-core machine busy."""
    paths = [path for path in NOTEBOOKS if missing_data(path) is None]

    async def execute_all():
        return await asyncio.gather(*(execute(path) for path in paths))

    with pytest.MonkeyPatch.context() as patch:
        for name, value in kernel_environment(tmp_path_factory.mktemp("jupyter")).items():
            patch.setenv(name, value)
        start = time.perf_counter()
        results = asyncio.run(execute_all())
    print(f"\nnotebooks executed side by side in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{path.name} {seconds:.1f} s" for path, (_, _, seconds) in zip(paths, results)))
    return dict(zip(paths, results))


def test_the_notebooks_are_there():
    assert {"quickstart.ipynb", "few_shot_vma.ipynb", "hierarchies.ipynb", "pretrained.ipynb"} <= {
        path.name for path in NOTEBOOKS
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, executed, record_property):
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
    url = repository_url()
    repository = url.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/{path.name}"
    assert badge in notebook.cells[0].source, f"the first cell must link to {badge}"
    sources = "\n".join(cell.source for cell in cells)
    assert set(re.findall(r"git\+(\S+?)[\"']", sources)) == {url}, "installs from setup.cfg's url only"
    install = next(cell.source for cell in cells if "git+" in cell.source)
    assert '"google.colab" in sys.modules' in install and "import zoo" in install
