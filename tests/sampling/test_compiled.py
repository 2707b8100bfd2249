"""model.sampling.compiled: nutpie's C callbacks built without closures, cached on disk (no sampling here)."""

from __future__ import annotations

import ctypes
import uuid

import numpy as np
import pytensor
import pytest

import model
from model.aggregator.design import build_design
from model.aggregator.graph import PollAggregator
from model.sampling.compiled import (
    CACHE_TAG_ENV,
    CacheUnusable,
    _layout_dir,
    _model_key,
    _read_layout,
    _shared_layout,
    call_log_density,
    callbacks_cached,
    compile_lock,
    compile_model,
)
from tests.conftest import SMALL_CONFIG, every_size_stated

# The knots' form pinned: with "auto" a table cut below CENTRED_MIN_SEGMENTS segments between knots
# is another structure (non-centred knots), and these tests are about sizes within one structure.
CONFIG = model.Config(
    reference_question="Q_MAIN", house_effects="House A", sampler=model.Sampler(knots="centred")
)


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def _expand(compiled, x: np.ndarray) -> tuple[int, np.ndarray]:
    out = np.full(compiled.n_expanded, np.nan)
    x = np.ascontiguousarray(x, dtype=float)
    rc = compiled.compiled_expand_func.ctypes(
        compiled.n_dim,
        compiled.n_expanded,
        _ptr(x),
        _ptr(out),
        ctypes.c_void_p(compiled.user_data.ctypes.data),
    )
    return rc, out


def _as_point(compiled, x: np.ndarray) -> dict[str, np.ndarray]:
    names, slices, shapes = compiled.shape_info
    free = compiled.n_dim
    return {n: x[s].reshape(shape) for n, s, shape in zip(names, slices, shapes) if s.stop <= free}


#: This module's cache tag: its entries are its own, and removed after it.
_TAG = f"test-{uuid.uuid4().hex}"


def _remove_cached(key: str, layout: dict | None) -> None:
    """Remove what compiling the model of ``key`` (with ``layout``) cached on disk."""
    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    for callback in ("logp", "expand"):
        if layout is None:
            break
        for path in NUMBA_CACHE_PATH.glob(f"*-{layout[callback]['key']}.*"):
            path.unlink(missing_ok=True)
    (_layout_dir() / f"{key}.json").unlink(missing_ok=True)
    (_layout_dir() / f"{key}.lock").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def compiled_pair(sim_polls):
    """The refit form (its readings' weights and shares are shared data that ``with_data`` swaps),
    compiled twice under a cache tag of this test's own: first through PyTensor (nothing cached under
    the tag), then from the disk cache. The tag's cache files are removed afterwards."""
    design = build_design(sim_polls, CONFIG)
    pymc_model = PollAggregator(design, CONFIG, refit=True).build()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_TAG_ENV, _TAG)
        fresh = compile_model(pymc_model)
        cached = compile_model(pymc_model)
        key, _ = _model_key(pymc_model, None)
        layout = _read_layout(key)
    yield design, pymc_model, fresh, cached, layout
    _remove_cached(key, layout)


@pytest.fixture(scope="module")
def reference(compiled_pair):
    """PyTensor's own log density, gradient and stored variables of the model (they read its shared
    data when called, so ``set_data`` reaches them)."""
    design, pymc_model, fresh, cached, layout = compiled_pair
    names, _, _ = fresh.shape_info
    as_values = {
        v.name: v for v in pymc_model.unobserved_value_vars
    }  # functions of the free values, not draws
    stored = [as_values[n] for n in names[len(pymc_model.free_RVs) :]]
    # The flat vector's order (model.sampling.compiled._free_values), which need not be the model's.
    by_value = {pymc_model.rvs_to_values[rv].name: rv for rv in pymc_model.free_RVs}
    return (
        pymc_model.compile_logp(),
        pymc_model.compile_dlogp(vars=[by_value[n] for n in names[: len(pymc_model.free_RVs)]]),
        pymc_model.compile_fn(stored, inputs=pymc_model.value_vars, on_unused_input="ignore"),
    )


def test_first_compile_goes_through_pytensor_and_the_second_loads_everything_from_disk(
    compiled_pair,
):
    design, pymc_model, fresh, cached, layout = compiled_pair
    assert callbacks_cached(fresh) == "miss" and fresh.logp_func is not None
    # The second skips PyTensor altogether: no rewriting, no PyTensor functions, machine code loaded.
    assert (
        callbacks_cached(cached) == "hit"
        and cached.logp_func is None
        and cached.expand_func is None
    )
    assert (cached.n_dim, cached.n_expanded, cached.shapes) == (
        fresh.n_dim,
        fresh.n_expanded,
        fresh.shapes,
    )
    assert cached.shape_info[0] == fresh.shape_info[0] and cached.dims == fresh.dims
    np.testing.assert_array_equal(cached.initial_point_func(4), fresh.initial_point_func(4))
    x = fresh.initial_point_func(2)
    assert call_log_density(cached, x)[1] == call_log_density(fresh, x)[1]
    np.testing.assert_array_equal(call_log_density(cached, x)[2], call_log_density(fresh, x)[2])
    np.testing.assert_array_equal(_expand(cached, x)[1], _expand(fresh, x)[1])


def test_the_callbacks_call_the_graphs_function_not_pytensors_caching_wrapper(compiled_pair):
    """PyTensor's function (``vm.jit_fn``) is a caching wrapper, ``def f(*args): return
    jitable_func(*args)``: the callbacks call the graph's function itself, so the wrapper is never
    compiled (before, it was compiled, the whole model linked into it once more)."""
    from model.sampling.compiled import _graph_function

    design, pymc_model, fresh, cached, layout = compiled_pair
    for function in (fresh.logp_func, fresh.expand_func):
        wrapper = function.vm.jit_fn
        graph_function = wrapper.py_func.__globals__["jitable_func"]
        assert _graph_function(wrapper) is graph_function
        assert wrapper.signatures == [] and len(graph_function.signatures) == 1
        assert _graph_function(graph_function) is graph_function


@pytest.mark.parametrize("which", ["fresh", "cached"])
def test_callbacks_evaluate_the_models_log_density_gradient_and_deterministics(
    compiled_pair, reference, which
):
    design, pymc_model, fresh, cached, layout = compiled_pair
    compiled = {"fresh": fresh, "cached": cached}[which]
    logp_fn, dlogp_fn, stored_fn = reference
    rng = np.random.default_rng(5)
    for i in range(3):
        x = compiled.initial_point_func(i) + 0.5 * rng.normal(size=compiled.n_dim)
        rc, logp, grad = call_log_density(compiled, x)
        assert rc == 0
        point = _as_point(compiled, x)
        np.testing.assert_allclose(logp, logp_fn(point), rtol=1e-10)
        np.testing.assert_allclose(grad, dlogp_fn(point), rtol=1e-8, atol=1e-10)
        rc, values = _expand(compiled, x)
        assert rc == 0
        np.testing.assert_array_equal(values[: compiled.n_dim], x)
        expected = np.concatenate([np.ravel(v) for v in stored_fn(point)])
        np.testing.assert_allclose(values[compiled.n_dim :], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("which", ["fresh", "cached"])
def test_with_data_reaches_the_callbacks(compiled_pair, reference, which):
    """Swapping readings' weights and shares through nutpie's ``with_data`` changes what the callback
    computes exactly as setting the model's data does (the arrays are read through the user-data pointers)."""
    design, pymc_model, fresh, cached, layout = compiled_pair
    compiled = {"fresh": fresh, "cached": cached}[which]
    x = compiled.initial_point_func(1)
    point = _as_point(compiled, x)
    weights = np.ones(len(design.polls))
    weights[[2, 7]] = 0.0
    observed = design.observed.copy()[:, ::-1]
    swapped = compiled.with_data(in_likelihood=weights, observed_share=observed)
    rc, logp, grad = call_log_density(swapped, x)
    assert rc == 0
    try:
        pymc_model.set_data("in_likelihood", weights)
        pymc_model.set_data("observed_share", observed)
        expected = reference[0](point)
        expected_grad = reference[1](point)
    finally:
        pymc_model.set_data("in_likelihood", np.ones(len(design.polls)))
        pymc_model.set_data("observed_share", design.observed)
    np.testing.assert_allclose(logp, expected, rtol=1e-10)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-10)
    # ...and the original compiled model still reads the original data.
    assert call_log_density(compiled, x)[1] != pytest.approx(logp, rel=1e-6)


@pytest.mark.parametrize("which", ["fresh", "cached"])
def test_an_exception_in_the_log_density_is_fatal_not_a_divergence(compiled_pair, which):
    """A kernel that raises (here: a reading's field period past the grid's last cell) makes the
    callback return -1, which nuts-rs stops the chain on; a non-finite log density keeps its
    recoverable code. Either way the data it was given are left as they were."""
    design, pymc_model, fresh, cached, layout = compiled_pair
    compiled = {"fresh": fresh, "cached": cached}[which]
    x = compiled.initial_point_func(1)
    last_cell = design.last_cell.copy()
    last_cell[0] = len(design.time) + 3
    rc, _, _ = call_log_density(compiled.with_data(last_cell=last_cell), x)
    assert rc == -1
    assert call_log_density(compiled, x)[0] == 0
    x_far = np.full_like(x, 1e6)  # shares and scales overflow: not finite, so recoverable
    assert call_log_density(compiled, x_far)[0] in (3, 4)


def test_the_model_key_follows_the_structure_not_the_data(sim_polls):
    """The model's form, its config and the stored variables change the key; the data do not: not a
    shared variable's values (what ``with_data`` swaps), nor fewer readings (other sizes), nor
    whether any sample size is unknown."""
    design = build_design(sim_polls, CONFIG)
    fewer = build_design(sim_polls.iloc[5:].reset_index(drop=True), CONFIG)
    assert len(fewer.polls) < len(design.polls)
    refit = PollAggregator(design, CONFIG, refit=True).build()
    key, shared = _model_key(refit, None)
    assert key is not None and {"in_likelihood", "observed_share", "segment_start"} <= set(shared)
    assert _model_key(PollAggregator(design, CONFIG, refit=True).build(), None)[0] == key
    assert _model_key(PollAggregator(design, CONFIG).build(), None)[0] != key
    assert _model_key(PollAggregator(fewer, CONFIG, refit=True).build(), None)[0] == key
    # every sample size stated: no unknown sizes (an empty dimension), the same structure
    stated = every_size_stated(sim_polls)
    assert sim_polls["n"].isna().any() and not stated["n"].isna().any()
    every_n = build_design(stated, CONFIG)
    assert _model_key(PollAggregator(every_n, CONFIG, refit=True).build(), None)[0] == key
    zero_sum = CONFIG.replace(house_effects="zero_sum")
    assert (
        _model_key(
            PollAggregator(build_design(sim_polls, zero_sum), zero_sum, refit=True).build(), None
        )[0]
        != key
    )
    assert _model_key(refit, ["share"])[0] != key
    weights = np.ones(len(design.polls))
    weights[0] = 0.0
    refit.set_data("in_likelihood", weights)
    assert _model_key(refit, None)[0] == key


def test_user_data_layout_other_than_packed_uint64_is_refused():
    class Var:
        ndim = 1

    record = np.zeros(
        (),
        dtype=[
            (
                "shared",
                [
                    ("data", [("k", np.uint32)]),
                    ("size", [("k", np.uint64)]),
                    ("shape", [("k", np.uint64, (1,))]),
                ],
            )
        ],
    )
    with pytest.raises(CacheUnusable, match="packed uint64 layout"):
        _shared_layout({Var(): "k"}, record)


def test_an_untested_library_version_falls_back_to_nutpies_public_compile(sim_polls, monkeypatch):
    """The cache rests on nutpie's, numba's and PyTensor's internals: with another version installed
    compile_model warns and compiles the same model through nutpie's public compile_pymc_model."""
    import nutpie

    import model.sampling.compiled as compiled_module

    assert compiled_module.cache_unusable() is None  # the pinned versions are the tested ones
    monkeypatch.setitem(compiled_module.TESTED_VERSIONS, "nutpie", "0.0.1")
    assert (
        compiled_module.cache_unusable()
        == f"nutpie {nutpie.__version__} is installed; model.sampling.compiled was tested with 0.0.1"
    )
    # The reference house's own readings: the model's smallest structure (no house or question
    # effects to estimate; both are still stored), since nutpie's public path compiles it afresh
    # on every run.
    own = sim_polls[sim_polls["pollster"] == "House A"].reset_index(drop=True)
    pymc_model = PollAggregator(build_design(own, CONFIG), CONFIG).build()
    with pytest.warns(
        UserWarning,
        match=r"compiled-model cache cannot be used \(nutpie .* is installed.*compiling with nutpie.compile_pymc_model",
    ):
        compiled = compile_model(pymc_model)
    assert (
        isinstance(compiled, nutpie.compile_pymc.CompiledPyMCModel)
        and callbacks_cached(compiled) == "miss"
    )
    trace = nutpie.sample(compiled, draws=30, tune=30, chains=1, seed=1, progress_bar=False)
    assert {"share", "house_effect", "question_effect"} <= set(trace.posterior.data_vars)


def test_a_missing_private_name_or_another_layout_falls_back_too(monkeypatch):
    """Without compiling: a private name gone, or nutpie's user-data layout changed, sends
    compile_model to nutpie's public path (here a stand-in) with a warning, never an error."""
    import nutpie

    import model.sampling.compiled as compiled_module

    public = []
    monkeypatch.setattr(
        nutpie, "compile_pymc_model", lambda pymc_model, **kwargs: public.append(kwargs) or "public"
    )
    monkeypatch.setattr(
        compiled_module,
        "PRIVATE_NAMES",
        (*compiled_module.PRIVATE_NAMES, ("nutpie.compile_pymc", "_gone")),
    )
    with pytest.warns(UserWarning, match="nutpie.compile_pymc._gone is not available"):
        assert compile_model(object()) == "public"
    monkeypatch.undo()
    monkeypatch.setattr(
        nutpie, "compile_pymc_model", lambda pymc_model, **kwargs: public.append(kwargs) or "public"
    )

    def other_layout(pymc_model, var_names, hand_written):
        raise CacheUnusable("nutpie's user-data record is not the packed uint64 layout")

    monkeypatch.setattr(compiled_module, "_compile_model", other_layout)
    with pytest.warns(UserWarning, match="packed uint64 layout"):
        assert compile_model(object(), var_names=["share"]) == "public"
    assert public == [
        {"backend": "numba", "var_names": None},
        {"backend": "numba", "var_names": ["share"]},
    ]


def test_nutpie_is_imported_without_arviz_plots_and_holds_arvizs_own_functions():
    """``import_nutpie`` in a fresh interpreter, as a fit imports it: neither ``arviz`` nor its
    plotting half (pyplot, plotly) is loaded, ``import arviz`` afterwards imports the real package,
    and what nutpie calls through its ``arviz`` (read from its source) are ArviZ's own objects."""
    import ast
    import inspect
    import subprocess
    import sys

    import nutpie  # noqa: F401  (nutpie.sample, read below)

    source = inspect.getsource(sys.modules["nutpie.sample"])
    used = sorted(
        {
            node.attr
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "arviz"
        }
    )
    assert used, (
        "nutpie.sample no longer calls arviz: model.sampling.compiled.import_nutpie is moot"
    )
    code = (
        "import sys\n"
        "from model.sampling.compiled import import_nutpie\n"
        "import_nutpie()\n"
        "loaded = [m for m in ('arviz', 'arviz_plots', 'matplotlib.pyplot', 'plotly') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "held = sys.modules['nutpie.sample'].arviz\n"
        "others = [n for n, m in list(sys.modules.items()) if n != 'nutpie.sample'\n"
        "          and getattr(m, 'arviz', None) is held]\n"
        "assert not others, others  # no other module kept arviz_base as its arviz\n"
        "import arviz\n"
        "assert arviz is not held and 'arviz_plots' in sys.modules\n"
        "for name in sys.argv[1:]:\n"
        "    assert getattr(held, name) is getattr(arviz, name), name\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *used], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split()[-1] == "ok", done.stderr


@pytest.mark.parametrize("other", ["fewer readings", "every size stated"])
def test_one_compiled_model_serves_tables_of_other_sizes(compiled_pair, sim_polls, other):
    """Fewer readings (fewer polls, fewer unknown sample sizes, other knots), or every sample size
    stated (no unknown sizes: an empty dimension), load the callbacks compiled for the full table,
    and they compute that table's log density, gradient and stored variables exactly as PyTensor
    does; the first compiled model still reads its own data."""
    design, pymc_model, fresh, cached, layout = compiled_pair
    if other == "fewer readings":
        table = sim_polls.iloc[: len(sim_polls) - 12].reset_index(drop=True)
    else:
        table = every_size_stated(sim_polls)
    fewer = build_design(table, CONFIG)
    assert other == "fewer readings" or fewer.n_known.all()
    small = PollAggregator(fewer, CONFIG, refit=True).build()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_TAG_ENV, _TAG)
        loaded = compile_model(small)
    assert callbacks_cached(loaded) == "hit" and loaded.logp_func is None
    # The callbacks this process loaded for the first table serve this one as they are: its data
    # reach them through its own user data.
    assert loaded.compiled_logp_func is cached.compiled_logp_func
    assert loaded.compiled_expand_func is cached.compiled_expand_func
    assert loaded.user_data is not cached.user_data
    assert loaded.n_dim < fresh.n_dim and loaded.n_expanded < fresh.n_expanded
    names, _, _ = loaded.shape_info
    n_free = len(small.free_RVs)
    by_value = {small.rvs_to_values[rv].name: rv for rv in small.free_RVs}
    as_values = {v.name: v for v in small.unobserved_value_vars}
    dlogp = small.compile_dlogp(vars=[by_value[n] for n in names[:n_free]])
    stored = small.compile_fn(
        [as_values[n] for n in names[n_free:]], inputs=small.value_vars, on_unused_input="ignore"
    )
    rng = np.random.default_rng(8)
    for i in range(2):
        x = loaded.initial_point_func(i) + 0.3 * rng.normal(size=loaded.n_dim)
        rc, logp, grad = call_log_density(loaded, x)
        point = _as_point(loaded, x)
        assert rc == 0
        np.testing.assert_allclose(logp, small.compile_logp()(point), rtol=1e-10)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-8, atol=1e-10)
        rc, values = _expand(loaded, x)
        assert rc == 0
        np.testing.assert_allclose(
            values[loaded.n_dim :],
            np.concatenate([np.ravel(v) for v in stored(point)]),
            rtol=1e-10,
            atol=1e-12,
        )
    x = fresh.initial_point_func(2)
    assert call_log_density(fresh, x)[0] == 0 and np.isfinite(call_log_density(fresh, x)[1])
    np.testing.assert_array_equal(call_log_density(cached, x)[2], call_log_density(fresh, x)[2])


@pytest.mark.parametrize("house_effects", ["House A", "zero_sum"])
def test_sizes_from_dims_and_the_initial_point_are_nutpies(sim_polls, house_effects):
    """The flat layout's shapes read from the initial point and the dims' lengths (a loaded model's
    fast path) are those nutpie's shape function computes."""
    from model.sampling.compiled import _initial_point_function, _sizes

    config = CONFIG.replace(house_effects=house_effects)
    for polls in (sim_polls, sim_polls.iloc[:-9]):
        pymc_model = PollAggregator(build_design(polls, config), config).build()
        fast = _sizes(pymc_model, None, _initial_point_function(pymc_model))
        slow = _sizes(pymc_model, None)
        assert (fast.n_dim, fast.n_expanded, fast.stored_names) == (
            slow.n_dim,
            slow.n_expanded,
            slow.stored_names,
        )
        assert fast.shape_info[0] == slow.shape_info[0] and fast.shape_info[2] == slow.shape_info[2]
        np.testing.assert_array_equal(fast.free_layout, slow.free_layout)


def test_a_size_shared_with_the_graph_is_data_not_part_of_the_key():
    """A dimension's length held in a shared variable changes the parameter count, not the key:
    the sizes reach the compiled functions as data (model.sampling.compiled.FREE_LAYOUT)."""
    import pymc as pm

    length = pytensor.shared(np.int64(3), name="length")
    scale = pytensor.shared(1.5, name="scale")
    with pm.Model() as pymc_model:
        pm.Normal("x", sigma=scale, shape=(length,))
    key, shared = _model_key(pymc_model, None)
    assert key is not None and set(shared) == {"length", "scale"}
    scale.set_value(2.5)
    assert _model_key(pymc_model, None)[0] == key
    length.set_value(4)
    assert _model_key(pymc_model, None)[0] == key


_KEY_SCRIPT = """
import model
from model.aggregator.graph import PollAggregator
from model.sampling.compiled import _model_key
from model.aggregator.design import build_design
polls = model.load_polls(model.simulate_polls(n_readings=70, seed=11).polls)
config = model.Config(reference_question="Q_MAIN", house_effects="House A")
print(_model_key(PollAggregator(build_design(polls, config), config, refit=True).build(), None)[0])
"""


def test_the_model_key_is_the_same_in_another_process(sim_polls):
    """The layout cache is only of use if a new process (another ``make fit``) computes the same key,
    whatever its hash seed."""
    import os
    import subprocess
    import sys

    design = build_design(sim_polls, CONFIG)
    here = _model_key(PollAggregator(design, CONFIG, refit=True).build(), None)[0]
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", _KEY_SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    assert there.stdout.strip().splitlines()[-1] == here


_HOLD_LOCK_SCRIPT = """
import sys
from model.sampling.compiled import compile_lock
with compile_lock(sys.argv[1]) as held:
    print("held" if held else "not held", flush=True)
    sys.stdin.read()  # until the test closes stdin
"""


def test_the_compile_lock_keeps_a_second_process_out_until_released():
    """Two processes compiling one structure: the second waits for the first's lock (here asked
    not to wait, it is told the lock is taken), then holds it once the first is done."""
    import subprocess
    import sys

    key = f"test-lock-{uuid.uuid4().hex}"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK_SCRIPT, key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with compile_lock(key, blocking=False) as held:
            assert not held
    finally:
        holder.communicate("", timeout=60)
    with compile_lock(key, blocking=False) as held:
        assert held
    (_layout_dir() / f"{key}.lock").unlink(missing_ok=True)


def test_a_model_cached_while_waiting_for_the_lock_is_loaded_not_compiled(
    compiled_pair, monkeypatch
):
    """When another process wrote the model while this one waited for the lock, this one loads
    it: the cache is read again under the lock, and nothing is compiled."""
    import model.sampling.compiled as compiled_module

    design, pymc_model, fresh, cached, layout = compiled_pair
    monkeypatch.setenv(CACHE_TAG_ENV, _TAG)
    reads = []

    def read_layout(key):  # nothing cached before the lock, the other process's layout after
        reads.append(key)
        return None if len(reads) == 1 else layout

    def compile_again(*args):
        raise AssertionError("compiled although the cache held the model")

    monkeypatch.setattr(compiled_module, "_read_layout", read_layout)
    monkeypatch.setattr(compiled_module, "_compile", compile_again)
    loaded = compile_model(pymc_model)
    assert len(reads) == 2 and callbacks_cached(loaded) == "hit"
    x = fresh.initial_point_func(5)
    assert call_log_density(loaded, x)[1] == call_log_density(fresh, x)[1]


def test_a_damaged_layout_is_ignored_with_a_warning(compiled_pair, monkeypatch):
    """A layout file that does not hold what it should (or whose callbacks are gone) costs a compile,
    never a wrong model: compile_model warns and compiles through PyTensor."""
    import model.sampling.compiled as compiled_module

    design, pymc_model, fresh, cached, layout = compiled_pair
    monkeypatch.setenv(CACHE_TAG_ENV, _TAG)  # the fixture's callbacks: only the layout is damaged
    monkeypatch.setattr(compiled_module, "_read_layout", lambda key: {"n_dim": fresh.n_dim})
    monkeypatch.setattr(compiled_module, "_write_layout", lambda key, layout: None)
    with pytest.warns(UserWarning, match="ignoring the cached layout"):
        again = compile_model(pymc_model)
    assert again.logp_func is not None  # went through PyTensor
    x = fresh.initial_point_func(3)
    assert call_log_density(again, x)[1] == call_log_density(fresh, x)[1]


def test_a_layout_of_other_variables_is_not_used(compiled_pair):
    """Loading from a layout checks the free and stored variables, in order, against the model's."""
    from model.sampling.compiled import _from_layout, _initial_point_function

    design, pymc_model, fresh, cached, layout = compiled_pair
    _, shared = _model_key(pymc_model, None)
    initial = _initial_point_function(pymc_model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_TAG_ENV, _TAG)
        assert _from_layout(pymc_model, layout, shared, initial) is not None
        assert (
            _from_layout(pymc_model, dict(layout, free=layout["free"][::-1]), shared, initial)
            is None
        )
        assert (
            _from_layout(pymc_model, dict(layout, stored=layout["stored"][1:]), shared, initial)
            is None
        )


def _fast_math_recorder(seen: list):
    """A stand-in for a compile step: records PyTensor's fast-math setting when called, then stops."""

    def record(*args, **kwargs):
        seen.append(pytensor.config.numba__fastmath)
        raise RuntimeError("recorded")

    return record


def test_compile_model_turns_fast_math_off(sim_polls, monkeypatch):
    """Fast-math results depend on whether a kernel was compiled in-process or loaded from numba's
    cache (model.sampling.compiled.exact_arithmetic): compile_model compiles without it, whatever PyTensor's
    setting (here switched on), and leaves the setting as it was."""
    import model.sampling.compiled as compiled_module

    seen = []
    design = build_design(sim_polls, CONFIG)
    pymc_model = PollAggregator(design, CONFIG).build()
    monkeypatch.setenv(
        CACHE_TAG_ENV, uuid.uuid4().hex
    )  # nothing cached: compile_model goes through PyTensor
    monkeypatch.setattr(compiled_module, "_make_functions", _fast_math_recorder(seen))
    with pytensor.config.change_flags(numba__fastmath=True):
        with pytest.raises(RuntimeError, match="recorded"):
            compile_model(pymc_model)
        assert pytensor.config.numba__fastmath is True
    assert seen == [False]


def test_fit_samples_and_post_processes_without_fast_math(sim_polls, monkeypatch):
    """model.fit compiles sampling, log likelihood, predictive draws and log prior without fast-math,
    whatever PyTensor's setting (here switched on)."""
    from model.sampling import engine

    # The shared small fit's config, so its compiled model serves both.
    config = SMALL_CONFIG
    seen = []
    monkeypatch.setattr(engine.CompiledAggregator, "_sample_nutpie", _fast_math_recorder(seen))
    with pytensor.config.change_flags(numba__fastmath=True):
        with pytest.raises(RuntimeError, match="recorded"):
            model.fit(sim_polls, config=config, seed=1, progressbar=False)
        assert pytensor.config.numba__fastmath is True
    assert seen == [False]
    # the post-processing of the same engine: the log likelihood and log prior come with the
    # draws (compiled with the sampler's callbacks), the predictive draws' function here
    monkeypatch.undo()
    compiled = engine.CompiledAggregator(build_design(sim_polls, config), config)
    minimal = config.replace(sampler={"chains": 1, "tune": 2, "draws": 2}).sampler
    trace = compiled.sample_as_pymc(minimal, seed=0)
    monkeypatch.setattr(engine.pm.pytensorf, "compile", _fast_math_recorder(seen))
    with pytensor.config.change_flags(numba__fastmath=True):
        with pytest.raises(RuntimeError, match="recorded"):
            compiled.extend(trace, seed=1)
    assert seen == [False, False]


def test_the_engine_builds_its_graphs_without_creation_stacks(monkeypatch):
    """PyTensor records up to 8 stack frames on every node it creates, for errors in graphs a user
    wrote; the engine's own graphs (model.sampling.engine.untraced_graphs) go without, unless
    PYTENSOR_FLAGS sets the limit (someone debugging the model's graph)."""
    import pytensor.tensor as pt

    from model.sampling.engine import untraced_graphs

    monkeypatch.delenv("PYTENSOR_FLAGS", raising=False)
    x = pt.dvector("x")
    assert (pt.exp(x) + 1).tag.trace  # PyTensor's default
    with untraced_graphs():
        assert (pt.exp(x) + 1).tag.trace == []
    assert pytensor.config.traceback__limit == 8  # left as it was
    monkeypatch.setenv("PYTENSOR_FLAGS", "traceback__limit=8")
    with untraced_graphs():
        assert (pt.exp(x) + 1).tag.trace


@pytest.fixture(scope="module")
def hand_written_pair(sim_polls):
    """The refit form compiled with the hand-written log density, fresh then from the disk cache,
    under this module's tag (removed afterwards)."""
    from model.aggregator.log_density import hand_written_structure
    from model.sampling.compiled import _hand_written_key

    design = build_design(sim_polls, CONFIG)
    pymc_model = PollAggregator(design, CONFIG, refit=True).build()
    spec = hand_written_structure(design, CONFIG, refit=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_TAG_ENV, _TAG)
        fresh = compile_model(pymc_model, hand_written=spec)
        cached = compile_model(pymc_model, hand_written=spec)
        key = _hand_written_key(_model_key(pymc_model, None)[0])
        layout = _read_layout(key)
    yield design, pymc_model, spec, fresh, cached
    _remove_cached(key, layout)


@pytest.mark.parametrize("which", ["fresh", "cached"])
def test_the_hand_written_callback_is_the_models_log_density_and_gradient(
    hand_written_pair, compiled_pair, reference, which
):
    """Compiled with the hand-written log density, the callback gives PyTensor's log density and
    gradient (and the stored variables are PyTensor's, as before), through ``with_data`` swaps too;
    the cached copy loads it; bad data are a fatal error, as with PyTensor's kernels."""
    from model.sampling.compiled import hand_written_used

    design, pymc_model, spec, fresh, cached = hand_written_pair
    compiled = {"fresh": fresh, "cached": cached}[which]
    assert hand_written_used(compiled) and not hand_written_used(compiled_pair[2])
    assert callbacks_cached(cached) == "hit"
    logp_fn, dlogp_fn, _ = reference
    rng = np.random.default_rng(7)
    weights = np.ones(len(design.polls))
    weights[[1, 4, 9]] = 0.0
    swapped = compiled.with_data(in_likelihood=weights)
    assert hand_written_used(swapped)
    for i in range(3):
        x = compiled.initial_point_func(i) + 0.5 * rng.normal(size=compiled.n_dim)
        rc, logp, grad = call_log_density(compiled, x)
        assert rc == 0
        point = _as_point(compiled, x)
        np.testing.assert_allclose(logp, logp_fn(point), rtol=1e-10)
        np.testing.assert_allclose(grad, dlogp_fn(point), rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(_expand(compiled, x)[1], _expand(compiled_pair[2], x)[1])
        rc, logp, grad = call_log_density(swapped, x)
        reference_model = compiled_pair[1]  # the model the reference functions read
        try:
            reference_model.set_data("in_likelihood", weights)
            expected, expected_grad = logp_fn(point), dlogp_fn(point)
        finally:
            reference_model.set_data("in_likelihood", np.ones(len(design.polls)))
        assert rc == 0
        np.testing.assert_allclose(logp, expected, rtol=1e-10)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-10)
    last_cell = design.last_cell.copy()
    last_cell[0] = len(design.time) + 3
    x = compiled.initial_point_func(1)
    assert call_log_density(compiled.with_data(last_cell=last_cell), x)[0] == -1
    assert call_log_density(compiled, np.full_like(x, 1e6))[0] in (3, 4)


def test_pytensors_log_density_checks_the_hand_written_one_uncompiled(hand_written_pair, reference):
    """The PyTensor function the hand-written callback is compared with when a structure is
    compiled runs each operation's Python implementation (nothing is compiled for its three calls),
    and it is the model's log density and gradient."""
    from pytensor.link.basic import PerformLinker

    fresh = hand_written_pair[3]
    assert isinstance(fresh.logp_func.maker.linker, PerformLinker)
    logp_fn, dlogp_fn, _ = reference
    x = fresh.initial_point_func(0)
    logp, grad = fresh.logp_func(x)
    point = _as_point(fresh, x)
    np.testing.assert_allclose(logp, logp_fn(point), rtol=1e-10)
    np.testing.assert_allclose(grad, dlogp_fn(point), rtol=1e-8, atol=1e-10)


def test_a_hand_written_log_density_that_differs_is_not_used(compiled_pair, monkeypatch):
    """When a structure is compiled, the hand-written log density is compared with PyTensor's; one
    that differs (here: a wrong prior scale) is refused with a warning and PyTensor's is used.

    ``compiled_pair``'s structure under its tag, with the hand-written layout under a key of this
    test's own: PyTensor's callbacks load from the disk cache, and only the hand-written one and
    the comparison are compiled here."""
    import model.sampling.compiled as compiled_module
    from model.aggregator.log_density import HandWritten, hand_written_structure
    from model.sampling.compiled import hand_written_used

    design, pymc_model = compiled_pair[:2]
    monkeypatch.setenv(CACHE_TAG_ENV, _TAG)
    hand_written_key = compiled_module._hand_written_key
    monkeypatch.setattr(
        compiled_module, "_hand_written_key", lambda key: hand_written_key(f"{key}\ndiffers")
    )
    spec = hand_written_structure(design, CONFIG, refit=True)
    wrong = HandWritten(spec.structure, spec.constants * np.array([2.0, 1, 1, 1, 1, 1, 1]))
    with pytest.warns(UserWarning, match="does not match this model's"):
        compiled = compile_model(pymc_model, hand_written=wrong)
    assert not hand_written_used(compiled)
    x = compiled.initial_point_func(0)
    np.testing.assert_allclose(
        call_log_density(compiled, x)[1], compiled.logp_func(x)[0], rtol=1e-12
    )
    # its layout alone: the callbacks it names are compiled_pair's, which that fixture removes
    _remove_cached(compiled_module._hand_written_key(_model_key(pymc_model, None)[0]), None)


def test_the_engine_samples_with_the_hand_written_log_density_and_says_so(
    hand_written_pair, compiled_pair, monkeypatch
):
    """``sampler.log_density = "auto"`` (the default) on a structure the hand-written log density
    covers: the engine samples with it and every trace records it; ``"pytensor"`` keeps PyTensor's."""
    from model.sampling.engine import CompiledAggregator

    design = hand_written_pair[0]
    monkeypatch.setenv(CACHE_TAG_ENV, _TAG)  # both forms were compiled under this tag above
    engine = CompiledAggregator(design, CONFIG, refit=True)
    assert (engine.log_density, engine.callbacks) == ("hand-written", "hit")
    minimal = CONFIG.replace(sampler={"chains": 1, "tune": 2, "draws": 2}).sampler
    idata, _ = engine.sample(minimal, seed=0, cores=1)
    assert idata.attrs["log_density"] == "hand-written"
    pinned = CONFIG.replace(sampler={"log_density": "pytensor"})
    engine = CompiledAggregator(design, pinned, refit=True)
    assert (engine.log_density, engine.callbacks) == ("pytensor", "hit")
    assert engine.sample(minimal, seed=0, cores=1)[0].attrs["log_density"] == "pytensor"
