"""model.sampling.engine: how a failed nutpie sampler is answered (nutpie stood in; no sampling).

A chain that panics (nuts-rs stops on a fatal error code) reaches Python as PyO3's
``PanicException``, a ``BaseException``; once one has, the sampler's state is poisoned and
``cancel()`` and ``abort()`` panic too. The engine must answer every such path with a
``SamplingError`` (an ``Exception``: a Dask task reports it, where a ``BaseException`` left the
task, and the validation run, waiting forever), and leave Ctrl-C and other exits alone.
"""

from __future__ import annotations

import pytest

import model
from model.sampling import SamplingError
from model.sampling.engine import CompiledAggregator, _is_panic

#: PyO3's panic exception, stood in: it is not importable by name.
PanicException = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})
PANIC = "called `Result::unwrap()` on an `Err` value: Logp function returned error: ErrorCode(-1)"


class Running:
    """nutpie's non-blocking sampler, stood in: each method raises what it is given."""

    def __init__(self, wait=None, cancel=None, abort=None):
        self.raises = {"wait": wait, "cancel": cancel, "abort": abort}
        self.calls = []

    def _call(self, name):
        self.calls.append(name)
        if self.raises[name] is not None:
            raise self.raises[name]
        return "draws so far" if name == "abort" else None

    def wait(self):
        return self._call("wait")

    def cancel(self):
        return self._call("cancel")

    def abort(self):
        return self._call("abort")


def _sample(monkeypatch, running):
    import nutpie

    monkeypatch.setattr(nutpie, "sample", lambda *args, **kwargs: running)
    engine = CompiledAggregator.__new__(CompiledAggregator)
    engine._nutpie = object()
    return engine._sample_nutpie(model.Sampler(), 1, 1, {}, False)


def test_only_pyo3s_panic_counts_as_a_panic():
    assert _is_panic(PanicException(PANIC))
    assert not _is_panic(type("PanicException", (BaseException,), {})("elsewhere"))
    assert not _is_panic(KeyboardInterrupt())


def test_a_panic_is_a_sampling_error_without_cancelling_the_poisoned_sampler(monkeypatch):
    running = Running(wait=PanicException(PANIC), cancel=PanicException("Poisoned"))
    with pytest.raises(SamplingError, match=r"\(Logp function returned error: ErrorCode\(-1\)\)"):
        _sample(monkeypatch, running)
    assert running.calls == ["wait"]


def test_a_runtime_error_is_a_sampling_error_even_where_cancelling_panics(monkeypatch):
    running = Running(wait=RuntimeError("All initialization points failed"))
    with pytest.raises(SamplingError, match="at every starting point nutpie tried"):
        _sample(monkeypatch, running)
    assert running.calls == ["wait", "cancel"]
    poisoned = Running(wait=RuntimeError("sampler failed"), cancel=PanicException("Poisoned"))
    with pytest.raises(SamplingError, match=r"\(sampler failed\)"):
        _sample(monkeypatch, poisoned)


def test_ctrl_c_stops_the_chains_and_returns_nothing_or_a_sampling_error_after_a_panic(
    monkeypatch,
):
    # nutpie's trace so far (abort()) keeps the full shape, the draws not made as NaN: never taken.
    running = Running(wait=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt, match="sampling stopped early"):
        _sample(monkeypatch, running)
    assert running.calls == ["wait", "cancel"]
    # a chain that had failed (nutpie's RuntimeError from cancelling), or a second Ctrl-C: still
    # an interrupt, raised once the threads are awaited
    for second in (RuntimeError("chain 2 failed"), KeyboardInterrupt()):
        failed = Running(wait=KeyboardInterrupt(), cancel=second)
        with pytest.raises(KeyboardInterrupt, match="sampling stopped early"):
            _sample(monkeypatch, failed)
    poisoned = Running(wait=KeyboardInterrupt(), cancel=PanicException(PANIC))
    with pytest.raises(SamplingError, match="ErrorCode"):
        _sample(monkeypatch, poisoned)


def test_other_exits_cancel_the_sampler_and_pass_through(monkeypatch):
    running = Running(wait=SystemExit(3))
    with pytest.raises(SystemExit):
        _sample(monkeypatch, running)
    assert running.calls == ["wait", "cancel"]
