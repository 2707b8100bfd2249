"""Writing files and folders whole or not at all, and JSON that any reader accepts.

Every file the project writes (run folders, figures, the report, the derived data tables, the
compiled model's layout) goes through here: a file is written under a temporary name beside its
target and renamed into place, so a reader sees the whole file or none; a folder is staged the same
way (:func:`staged_folder`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path`` (same suffix), then rename it into place.

    Parameters
    ----------
    path : path
        The file to write.
    write : callable
        Writes the content to the path it is given (e.g. ``fig.savefig``); the suffix is kept, so
        writers that infer the format from it work.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    Exception
        Whatever ``write`` or the rename raised; the temporary file is removed first.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (:func:`atomic_write`).

    ``newline=""`` writes line endings exactly as given (byte-for-byte reproducible tables).
    """

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as stream:
            stream.write(text)

    return atomic_write(path, write)


def strict_json(value: Any) -> Any:
    """``value`` with NumPy scalars as Python numbers and NaN or infinities as None (JSON ``null``)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def json_text(value: Any, **options: Any) -> str:
    """Valid JSON for any reader (:func:`strict_json`; ``allow_nan=False``), indented, with a final newline."""
    options.setdefault("indent", 2)
    return json.dumps(strict_json(value), allow_nan=False, **options) + "\n"


@contextmanager
def staged_folder(
    folder: str | os.PathLike, *, unique: bool = False
) -> Iterator[tuple[Path, _FinalPath]]:
    """Stage a folder's contents in a temporary sibling; rename it into place only on success.

    Yields ``(tmp, final)``: write into ``tmp``; after the ``with`` block ``final`` names the folder
    that appeared. On any error, or an interrupt, the temporary folder is removed and nothing
    appears. With ``unique``, a taken name gets a numeric suffix.

    Raises
    ------
    FileExistsError
        ``folder`` exists (and not ``unique``), or no free name was found next to it.
    """
    folder = Path(folder)
    if folder.exists() and not unique:
        raise FileExistsError(f"run folder {folder} already exists")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    final = _FinalPath()
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(
            tmp, 0o777 & ~umask
        )  # mkdtemp makes it owner-only; a run folder is an ordinary folder
        yield tmp, final
        target = folder
        for attempt in range(1, 100):
            try:
                os.rename(tmp, target)  # atomic; fails if target exists and is not empty
                final.path = target
                return
            except OSError as err:
                if not (unique and err.errno in (errno.EEXIST, errno.ENOTEMPTY)) and not (
                    unique and target.exists()
                ):
                    raise
                target = folder.with_name(f"{folder.name}-{attempt}")
        raise FileExistsError(f"no free run folder name next to {folder}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _FinalPath(os.PathLike):
    """The path a staged folder was renamed to (set when the ``with`` block ends)."""

    path: Path | None = None

    def __fspath__(self) -> str:
        if self.path is None:
            raise RuntimeError("the staged folder is not in place yet")
        return os.fspath(self.path)
