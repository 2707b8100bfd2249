"""model.imports.module_entry: a ``sys.modules`` entry replaced for a block and put back (no sampling)."""

from __future__ import annotations

import sys
import types

import pytest

from model.imports import ABSENT, module_entry

NAME = "model_test_imports_stand_in"


@pytest.fixture
def entry():
    """A module registered under :data:`NAME` for the test, removed afterwards."""
    module = types.ModuleType(NAME)
    sys.modules[NAME] = module
    yield module
    sys.modules.pop(NAME, None)


@pytest.mark.parametrize("stand_in", ["module", None, ABSENT], ids=["module", "none", "absent"])
def test_the_stand_in_holds_in_the_block_and_the_old_entry_comes_back(entry, stand_in):
    if stand_in == "module":
        stand_in = types.ModuleType("stand_in")
    with module_entry(NAME, stand_in):
        assert sys.modules.get(NAME, ABSENT) is stand_in
        if stand_in is None:
            with pytest.raises(ImportError):
                __import__(NAME)
        elif stand_in is ABSENT:
            assert NAME not in sys.modules
        else:
            assert __import__(NAME) is stand_in
    assert sys.modules[NAME] is entry


def test_a_name_without_an_entry_has_none_afterwards():
    stand_in = types.ModuleType("stand_in")
    with module_entry(NAME, stand_in):
        assert __import__(NAME) is stand_in
    assert NAME not in sys.modules


def test_the_old_entry_comes_back_when_the_block_raises(entry):
    with pytest.raises(RuntimeError), module_entry(NAME, None):
        raise RuntimeError("in the block")
    assert sys.modules[NAME] is entry


@pytest.mark.parametrize("stand_in", [None, ABSENT], ids=["none", "absent"])
def test_a_module_imported_during_the_block_stays(entry, stand_in):
    real = types.ModuleType(NAME)
    with module_entry(NAME, stand_in):
        sys.modules[NAME] = real  # as an import in the block, or in another thread, would
    assert sys.modules[NAME] is real
