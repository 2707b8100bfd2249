"""Work on independent blocks of draws in parallel threads.

NumPy's sorts, FFTs and element-wise arithmetic on large arrays release the GIL, so the summaries
and diagnostics computed after sampling (each a function of its own entries' draws) run on every
CPU the process may use (or its :func:`cpu_budget`), with the same results to the last bit as in
one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context

#: A cap on :func:`usable_cpus` for the work of the current thread (see :func:`cpu_budget`).
_BUDGET: ContextVar[int | None] = ContextVar("cpu_budget", default=None)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system says, else the count),
    at most the :func:`cpu_budget` the current work was given."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    budget = _BUDGET.get()
    return cpus if budget is None else max(1, min(cpus, budget))


@contextmanager
def cpu_budget(cpus: int) -> Iterator[None]:
    """Within this block, :func:`usable_cpus` is at most ``cpus``: for work sharing the machine with
    other work, as a validation refit does with the other Dask workers. It holds in this thread and
    in the threads :func:`thread_map` and :func:`in_background` start from it, not in other threads."""
    token = _BUDGET.set(int(cpus))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def thread_map[T, R](
    fn: Callable[[T], R], items: Sequence[T], threads: int | None = None
) -> list[R]:
    """``[fn(item) for item in items]``, in up to ``threads`` threads (default: :func:`usable_cpus`)."""
    threads = min(threads or usable_cpus(), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    # Each item runs in a copy of the caller's context, so a cpu_budget set by the caller holds there.
    contexts = [copy_context() for _ in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda context, item: context.run(fn, item), contexts, items))


def in_background[R](fn: Callable[[], R]) -> Future[R]:
    """Start ``fn()`` in a thread of its own and return its future, for work that overlaps with the
    caller's (the caller asks ``.result()`` when it needs it; an error ``fn`` raised is raised there).

    ``fn`` runs in a copy of the caller's context, so a :func:`cpu_budget` set by the caller holds
    there (the caller's own work then runs beside it: one thread more than the budget). It must not
    share mutable state with the caller's work: pass it its inputs. The thread is not a daemon:
    the interpreter waits for ``fn`` to return before it exits, after an error or an interrupt
    too, and an error nobody asks the future for is not seen.
    """
    context = copy_context()
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(context.run, fn)
    finally:
        pool.shutdown(wait=False)  # the thread ends when ``fn`` returns
