"""Which code made a run: a checksum of the package's source, and the git commit when the package
sits in a git checkout.

A run folder's ``config.json`` (and its trace's attributes) and a validation's ``settings.json``
record :func:`code_version`, so a figure can be tied to the code that computed it, also where the
package is installed without git.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def source_checksum() -> str:
    """SHA-256 of the package's Python source: each ``.py`` file's path (relative to the package)
    and bytes, in path order. Any edit to the code changes it; bytecode and caches do not."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _git(*args: str) -> str:
    """``git -C <package> <args>``'s output (raises where git is missing or fails)."""
    return subprocess.run(
        ["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


@functools.cache
def git_commit() -> str | None:
    """The commit checked out where the package lives, with ``+changes`` when its files differ
    from it (``git status`` of the package's folder); None outside a git checkout, where the
    checkout does not track the package's files (a copy in an ignored folder), or without git."""
    try:
        head = _git("rev-parse", "HEAD")
        tracked = _git("ls-files", "--", ".")
        changed = _git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    if not tracked:
        return None
    return f"{head}+changes" if changed else head


def code_version() -> dict[str, str | None]:
    """``{"source_sha256": ..., "git_commit": ...}`` of the running package (see above), as first
    read in this process: a fit or validation reads it as it starts, so an edit during a long run
    is not taken for the code that ran."""
    return {"source_sha256": source_checksum(), "git_commit": git_commit()}
