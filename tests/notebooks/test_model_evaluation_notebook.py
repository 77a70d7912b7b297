"""The model evaluation notebook runs top to bottom on small simulated data."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "model_evaluation.ipynb"
SMALL = {
    "AMLWATCH_NB_CUSTOMERS": "60",
    "AMLWATCH_NB_DAYS": "30",
    "AMLWATCH_NB_TRAIN_DAYS": "15",
    "AMLWATCH_NB_SEED": "7",
}


def _kernel_manager(directory: Path) -> KernelManager:
    """A kernel on this very interpreter, whatever Jupyter kernelspecs the machine has."""
    spec = directory / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (amlwatch test)",
                "language": "python",
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(directory)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    return str(output.get("data", {}).get("text/plain", ""))


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_model_evaluation_notebook_runs_on_small_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)  # the kernel inherits the test's environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        km=_kernel_manager(tmp_path / "kernels"),
        timeout=300,
        resources={"metadata": {"path": str(ROOT)}},  # cwd of the kernel
    )
    started = time.monotonic()
    client.execute()  # raises CellExecutionError on the first failing cell
    assert time.monotonic() - started < 120

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors
    figures = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 3  # features, scores, precision/recall
    last = "\n".join(_text(output) for output in code[-1].outputs)
    assert "Scenario recall" in last
    assert "rules recall" in last and "model recall" in last and "both recall" in last
    assert "Alerts per 1,000 transactions" in last
