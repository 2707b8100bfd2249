"""model.threads: the CPUs work may use, and a budget for work sharing the machine (no sampling)."""

from __future__ import annotations

import threading

import pytest

from model.threads import cpu_budget, in_background, thread_map, usable_cpus


def test_a_cpu_budget_caps_usable_cpus_in_its_block_only():
    cpus = usable_cpus()
    with cpu_budget(1):
        assert usable_cpus() == 1
        with cpu_budget(cpus + 5):  # a budget above the machine's CPUs gives the CPUs
            assert usable_cpus() == cpus
        assert usable_cpus() == 1
    assert usable_cpus() == cpus


def test_a_cpu_budget_belongs_to_the_thread_that_set_it():
    seen = []
    with cpu_budget(1):
        other = threading.Thread(target=lambda: seen.append(usable_cpus()))
        other.start()
        other.join()
    assert seen == [usable_cpus()]


def test_thread_map_keeps_order_and_runs_in_one_thread_on_a_budget_of_one():
    items = list(range(10))
    assert thread_map(lambda i: i * i, items) == [i * i for i in items]
    with cpu_budget(1):
        threads = thread_map(lambda i: threading.get_ident(), items)
    assert set(threads) == {threading.get_ident()}


def test_thread_map_workers_see_the_callers_budget():
    with cpu_budget(1):
        seen = thread_map(lambda i: usable_cpus(), list(range(4)), threads=2)
    assert seen == [1, 1, 1, 1]


def test_in_background_runs_alongside_in_the_callers_budget_and_raises_where_asked():
    started, release = threading.Event(), threading.Event()

    def work():
        started.set()
        release.wait(5)  # the caller goes on while this waits
        return usable_cpus(), threading.get_ident()

    with cpu_budget(1):
        pending = in_background(work)
    assert started.wait(5) and not pending.done()
    release.set()
    cpus, ident = pending.result(5)
    assert cpus == 1 and ident != threading.get_ident()

    def fail():
        raise ValueError("in the thread")

    with pytest.raises(ValueError, match="in the thread"):
        in_background(fail).result(5)
