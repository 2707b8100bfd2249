"""Where a run's wall time went (model.timing): the phases, the total and the table (no sampling)."""

from __future__ import annotations

import time

from model.timing import Phases, process_seconds


def test_process_seconds_counts_from_the_start_of_this_process():
    age = process_seconds()
    assert age is not None and 0 < age < 24 * 3600  # Linux: read from /proc/self/stat
    later = process_seconds()
    assert later >= age


def test_phases_keep_their_order_add_up_and_never_exceed_the_total():
    phases = Phases()
    with phases.phase("reading"):
        time.sleep(0.01)
    with phases.phase("sampling"):
        time.sleep(0.02)
    with phases.phase("reading"):  # a phase run in two pieces is one row
        time.sleep(0.01)
    assert list(phases.seconds) == ["reading", "sampling"]
    assert phases.seconds["reading"] >= 0.02 and phases.seconds["sampling"] >= 0.02
    assert sum(phases.seconds.values()) <= phases.elapsed()


def test_mark_counts_what_no_phase_covered_so_far():
    phases = Phases(time.perf_counter() - 1.5, since="the start of the process")
    phases.mark("start-up and imports")
    assert 1.5 <= phases.seconds["start-up and imports"] < 2.5
    assert sum(phases.seconds.values()) <= phases.elapsed()


def test_from_process_start_counts_the_interpreter_start_up():
    phases = Phases.from_process_start()
    assert phases.since == "the start of the process"
    assert phases.elapsed() >= process_seconds() - 0.05


def test_table_lists_each_phase_the_total_and_the_ratio_to_sampling():
    phases = Phases(time.perf_counter() - 10, since="the start of the process")
    phases.add("start-up and imports", 2.0)
    phases.add("sampling", 4.0)
    lines = phases.table()
    assert lines[0] == "Where the time went (wall seconds since the start of the process):"
    rows = {line.split("  ")[1].strip(): line for line in lines[1:]}
    assert list(rows) == ["start-up and imports", "sampling", "total"]
    assert rows["sampling"].split()[-1] == "4.0"
    total = float(rows["total"].split()[1])
    assert total >= 10 and rows["total"].endswith(f"({total / 4:.1f} x sampling)")


def test_no_phases_no_table():
    assert Phases().table() == []


def test_work_in_the_background_is_named_under_the_table_not_a_row():
    phases = Phases(time.perf_counter() - 10)
    phases.add("sampling", 4.0)
    phases.alongside("the gate's R-hat and ESS, from the end of sampling")
    lines = phases.table()
    assert [line.split()[0] for line in lines[1:3]] == ["sampling", "total"]
    assert lines[3] == (
        "  Alongside the phases, in other threads: the gate's R-hat and ESS, from the end of sampling."
    )
