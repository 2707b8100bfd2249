"""Work on independent blocks of draws in parallel threads.

NumPy's sorts, FFTs and element-wise arithmetic on large arrays release the GIL, so the summaries
and diagnostics computed after sampling (each a function of its own entries' draws) run on every
CPU the process may use, with the same results to the last bit as in one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system says, else the count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_map[T, R](
    fn: Callable[[T], R], items: Sequence[T], threads: int | None = None
) -> list[R]:
    """``[fn(item) for item in items]``, in up to ``threads`` threads (default: :func:`usable_cpus`)."""
    threads = min(threads or usable_cpus(), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))
