"""The package's layers: every import points down (or within its own layer), never up.

Layers, lowest first (README, "Code map"): ``config``/``files``/``timing``/``threads``/``imports``/``provenance``
-> ``data`` -> ``aggregator`` -> ``sampling`` -> ``results`` -> ``fitting`` -> ``report`` ->
``validation``/``bench`` -> ``cli``.
Read from the source with ``ast`` (nothing is imported), function-level imports included. The
only import allowed upwards is the one lazy convenience of a fit: ``FitResult.plot_*`` draws
with ``model.report.plots``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import model

PACKAGE = Path(model.__path__[0])

LAYERS = {
    "config": 0,
    "files": 0,
    "timing": 0,
    "threads": 0,
    "imports": 0,
    "provenance": 0,
    "data": 1,
    "aggregator": 2,
    "sampling": 3,
    "results": 4,
    "fitting": 5,
    "report": 6,
    "validation": 7,
    "bench": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 9,
}
#: (importing module, imported module): the lazy conveniences that may point up.
ALLOWED_UPWARDS = {("model.results.fit_result", "model.report.plots")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return (
        ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if parts != ("model", "__init__")
        else "model"
    )


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts == ["model"]:
        return LAYERS["__init__"]
    return LAYERS[parts[1]]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "model"}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == "model"
        ):
            # from package import name: the submodule when name is one, else the package itself
            folder = PACKAGE.parent.joinpath(*node.module.split("."))
            for alias in node.names:
                is_module = (folder / alias.name).is_dir() or (
                    folder / f"{alias.name}.py"
                ).is_file()
                found.add(f"{node.module}.{alias.name}" if is_module else node.module)
    return found


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        assert name == "model" or name.split(".")[1] in LAYERS, (
            f"{path}: add its folder to the layers (README, Code map)"
        )


def test_imports_point_down():
    upwards = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        for imported in _imports(path):
            if imported == "model" or (importer, imported) in ALLOWED_UPWARDS:
                continue
            if _layer(imported) > _layer(importer):
                upwards.append(f"{importer} imports {imported}")
    assert not upwards, "imports pointing up a layer:\n  " + "\n  ".join(upwards)


def test_subpackages_are_one_level_deep():
    assert not [p for p in PACKAGE.glob("*/*/") if p.name != "__pycache__" and any(p.glob("*.py"))]


@pytest.mark.parametrize(
    ("imported", "not_loaded"),
    [
        # a fit and a validation worker draw nothing
        ("model.fitting, model.validation.runner", ["matplotlib"]),
        # ArviZ's statistics (about a second, SciPy's statistics among them) are for the steps
        # after sampling: a fit imports them while it waits for the gate's R-hat and ESS
        ("model.fitting, model.sampling.engine", ["arviz_stats", "scipy.stats"]),
    ],
)
def test_start_up_does_not_load_what_it_does_not_use(imported, not_loaded):
    """Importing ``imported`` in a fresh interpreter leaves every module of ``not_loaded`` (and
    their submodules) unloaded."""
    code = (
        f"import sys, {imported}\n"
        f"loaded = [m for m in sys.modules for n in {not_loaded!r} if m == n or m.startswith(n + '.')]\n"
        "assert not loaded, sorted(loaded)[:3]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_packages_lazy_names_are_listed_and_load():
    """``dir(model)`` (a notebook's tab completion) lists the names imported on first use, and
    each of ``__all__`` is there."""
    import model

    assert set(model.__all__) <= set(dir(model))
    assert {"fit", "load_run", "simulate_polls"} <= set(dir(model))
    assert callable(model.simulate_polls)
