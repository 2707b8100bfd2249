"""An entry of ``sys.modules`` replaced for a block: :func:`module_entry`.

A fit avoids a few heavy imports it would make only to answer a question it already knows the
answer to (time: ``docs/performance.md``). Each caller decides when it is safe to do so; this
module only swaps the entry and puts the old one back.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: A stand-in meaning "no entry": ``import name`` then imports the module afresh.
ABSENT: Any = object()


@contextmanager
def module_entry(name: str, stand_in: Any) -> Iterator[None]:
    """Within the block, ``sys.modules[name]`` is ``stand_in``; afterwards it is what it was before.

    Parameters
    ----------
    name : str
        The module's name, as in ``import name``.
    stand_in : module, None or ABSENT
        What ``import name`` finds within the block: a module answers it, ``None`` (the import
        system's mark for "not importable") makes it fail, :data:`ABSENT` removes the entry.

    Notes
    -----
    The old entry is put back only if the entry is still the stand-in when the block ends:
    ``sys.modules`` is the process's, so if the block or another thread imported the real module
    meanwhile, that module stays.
    """
    previous = sys.modules.get(name, ABSENT)
    _set(name, stand_in)
    try:
        yield
    finally:
        if sys.modules.get(name, ABSENT) is stand_in:
            _set(name, previous)


def _set(name: str, entry: Any) -> None:
    if entry is ABSENT:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = entry
