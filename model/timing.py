"""Where a run's wall time went: :class:`Phases`, printed at the end of ``summary.txt``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The phase that reads the table and builds the design (the command line reads the table before
#: it imports the fitting code, so a bad table is told at once; ``model.fit`` adds the design).
READING = "reading the data and the design"
#: The first phase of a command: the interpreter's start-up and the imports (in two pieces when
#: the command reads its input between them: one row).
STARTUP = "start-up and imports"

#: The first words of :meth:`Phases.table` (``summary.txt``'s last section).
PHASES_HEADING = "Where the time went"


def process_seconds() -> float | None:
    """Wall seconds since this process started, or None where the system does not say (not Linux).

    Read from ``/proc/self/stat`` (the start time, in clock ticks since boot) and ``/proc/uptime``,
    so it covers the interpreter's own start-up and every import before the caller's, to within a
    clock tick (10 ms).
    """
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, after the name
            now = float(uptime.read().split()[0])
        return max(now - started / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Phases:
    """Wall seconds of a run's phases, in the order they first ran, and the time since it started.

    Parameters
    ----------
    start : float, optional
        The ``time.perf_counter()`` value the total counts from (default: now).
    since : str
        What the total counts from, in words.

    Examples
    --------
    >>> phases = Phases()
    >>> with phases.phase("sampling"):
    ...     pass
    >>> list(phases.seconds)
    ['sampling']
    """

    def __init__(self, start: float | None = None, *, since: str = "the start of the fit") -> None:
        self.start = time.perf_counter() if start is None else start
        self.since = since
        self.seconds: dict[str, float] = {}
        self.background_work: list[str] = []

    @classmethod
    def from_process_start(cls) -> Phases:
        """Phases whose total counts from the start of this process (:func:`process_seconds`).

        The time already spent (the interpreter's start-up and the imports so far) then belongs to
        the first phase the caller marks (:meth:`mark`); where the process's start time is unknown, the
        total counts from now.
        """
        age = process_seconds()
        if age is None:
            return cls(since="the command's start (the process's start time is unknown here)")
        return cls(time.perf_counter() - age, since="the start of the process")

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name`` (a phase run in pieces is one row)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as (part of) phase ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def alongside(self, work: str) -> None:
        """Record that ``work`` ran in the background, alongside the phases (its time is in theirs,
        not a row of its own); the table says so, once for each ``work``."""
        if work not in self.background_work:
            self.background_work.append(work)

    def mark(self, name: str) -> None:
        """Count the time from the start, less every phase recorded so far, as phase ``name``."""
        self.add(name, max(self.elapsed() - sum(self.seconds.values()), 0.0))

    def elapsed(self) -> float:
        """Wall seconds since the start."""
        return time.perf_counter() - self.start

    def table(self, *, sampling: str = "sampling") -> list[str]:
        """The phases as lines of text, with the total and, if a phase is ``sampling``, the ratio.

        The total is the time since the start, so it also holds what no phase covers (a few
        hundredths of a second between phases).
        """
        if not self.seconds:
            return []
        total = self.elapsed()
        width = max(len(name) for name in [*self.seconds, "total"])
        lines = [f"{PHASES_HEADING} (wall seconds since {self.since}):"]
        lines += [f"  {name:<{width}} {seconds:7.1f}" for name, seconds in self.seconds.items()]
        ratio = ""
        if self.seconds.get(sampling, 0) > 0:
            ratio = f"  ({total / self.seconds[sampling]:.1f} x {sampling})"
        lines.append(f"  {'total':<{width}} {total:7.1f}{ratio}")
        if self.background_work:
            work = "; ".join(self.background_work)
            lines.append(f"  Alongside the phases, in other threads: {work}.")
        return lines
