"""Which code made a run (model.provenance): the source checksum and the git commit."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from model import provenance


def test_the_code_version_is_the_sources_checksum_and_the_checkout():
    version = provenance.code_version()
    assert set(version) == {"source_sha256", "git_commit"}
    assert re.fullmatch(r"[0-9a-f]{64}", version["source_sha256"])
    commit = version["git_commit"]
    if shutil.which("git") and (provenance.PACKAGE.parent / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}(\+changes)?", commit)
    else:
        assert commit is None or re.fullmatch(r"[0-9a-f]{40}(\+changes)?", commit)


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """The checksum and commit of a small package in a folder of its own (caches cleared)."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("A = 1\n")
    (package / "sub" / "b.py").write_text("B = 2\n")
    monkeypatch.setattr(provenance, "PACKAGE", package)
    provenance.source_checksum.cache_clear()
    provenance.git_commit.cache_clear()
    yield package
    provenance.source_checksum.cache_clear()
    provenance.git_commit.cache_clear()


def test_any_edit_to_the_source_changes_its_checksum(package_copy):
    before = provenance.source_checksum()
    (package_copy / "__pycache__").mkdir()
    (package_copy / "__pycache__" / "a.cpython-312.pyc").write_bytes(b"\0")
    (package_copy / "notes.txt").write_text("not code")
    provenance.source_checksum.cache_clear()
    assert provenance.source_checksum() == before  # bytecode and other files do not count
    (package_copy / "sub" / "b.py").write_text("B = 3\n")
    provenance.source_checksum.cache_clear()
    assert provenance.source_checksum() != before
    (package_copy / "sub" / "b.py").rename(package_copy / "b2.py")
    provenance.source_checksum.cache_clear()
    assert provenance.source_checksum() != before  # a file moved is another source


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_commit_says_when_the_package_differs_from_it(package_copy):
    assert provenance.git_commit() is None  # not a git checkout

    def git(*args):
        subprocess.run(["git", "-C", str(package_copy), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    provenance.git_commit.cache_clear()
    clean = provenance.git_commit()
    assert re.fullmatch(r"[0-9a-f]{40}", clean)
    (package_copy / "a.py").write_text("A = 2\n")
    provenance.git_commit.cache_clear()
    assert provenance.git_commit() == f"{clean}+changes"
