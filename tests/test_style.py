"""The code is formatted and linted as ``pyproject.toml`` says (``make lint``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import model

ROOT = Path(model.__path__[0]).parent


def test_ruff_format_and_check_are_clean():
    for args in (["format", "--check", "."], ["check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, f"ruff {' '.join(args)}:\n{result.stdout}{result.stderr}"
