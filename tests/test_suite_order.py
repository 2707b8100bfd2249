"""The suite's module order (tests/conftest.py) names modules that exist (no sampling)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SLOW_FIRST

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_run_first_exists():
    assert len(set(SLOW_FIRST)) == len(SLOW_FIRST)
    missing = [module for module in SLOW_FIRST if not (ROOT / module).is_file()]
    assert not missing, missing
