"""The example notebook, ``examples/quickstart.ipynb``: committed without outputs, and it runs.

The test executes every cell with nbclient in a kernel of this environment (ipykernel), from the
repository root, as ``make notebook`` does; a cell that raises fails the test with its traceback.
Its two fits use 200 draws per chain, so it takes about half a minute once the models are compiled
(about a minute more on the first run, which compiles the two-answer model).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import model

ROOT = Path(model.__path__[0]).parent
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"

nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the dev extras")


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_the_notebook_is_committed_without_outputs():
    """As the README's clearing command leaves it: no outputs, counts or cell metadata."""
    notebook = read_notebook()
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert [c.id for c in code if c.outputs] == [], "clear the outputs before committing"
    assert [c.id for c in code if c.execution_count is not None] == [], (
        "clear the execution counts before committing"
    )
    assert [c.id for c in notebook.cells if c.metadata] == [], "clear the cells' metadata (timings)"
    assert notebook.metadata.kernelspec.name == "python3"


def test_the_notebook_covers_what_it_promises():
    source = "\n".join(cell.source for cell in read_notebook().cells)
    for call in (
        'model.load_polls("data/polls.csv"',
        'model.Config.from_toml("config/fit.toml")',
        '"draws": 200, "tune": 200, "chains": 2',
        ".headline()",
        ".headline_sentences()",
        ".reading_offsets()",
        ".house_effects()",
        ".support_curve()",
        ".diagnostics()",
        ".save(",
        "model.load_run(",
        'answers=("yes", "no")',
        "too few",
    ):
        assert call in source, f"the notebook no longer shows {call}"


@pytest.mark.sampling
def test_the_notebook_runs_from_the_repository_root(monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the dev extras")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline, as for a reader
    notebook = read_notebook()
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()
    outputs = {cell.id: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    text = "\n".join(
        out.get("text", "") for out in outputs["headline"] if out.output_type == "stream"
    )
    gate = "".join(out.get("text", "") for out in outputs["diagnostics"])
    assert "gate passed:" in gate
    # the sentences open with the warning exactly when the gate failed (as the short sampler makes it)
    warned = text.startswith("- NOT FOR PUBLICATION: the diagnostics gate failed")
    assert warned == ("gate passed: False" in gate)
    assert "\n- Support for talks on " in "\n" + text and "90% interval" in text
    figures = [
        out
        for out in outputs["plot-headline"]
        if out.output_type == "display_data" and "image/png" in out.data
    ]
    assert len(figures) == 1
    assert "Support for yes on " in "".join(out.get("text", "") for out in outputs["own-fit"])
