"""Compile a PyMC model for nutpie with C callbacks that are cached on disk across runs.

``nutpie.compile_pymc_model`` (numba backend) wraps PyTensor's log-density-and-gradient function and
its "expand" function (every stored variable of a draw) in two numba C callbacks. PyTensor caches its
compiled kernels on disk, but nutpie's callbacks close over Python objects, so numba cannot cache
them ("uses dynamic globals"), and because a callback links in the whole LLVM module of the function
it calls, every process re-optimises and re-generates machine code for the entire model: 20-35 s on
the shipped data even when every PyTensor kernel is cached; PyTensor's graph rewriting adds ~6 s.
(Here the callbacks call the graph's function itself, not PyTensor's caching wrapper around it,
which would be compiled and linked once more: :func:`_graph_function`.)

:func:`compile_model` returns nutpie's own ``CompiledPyMCModel`` (``nutpie.sample`` and
``with_data`` work unchanged; the log density is PyTensor's, compiled without fast-math so that
results do not depend on what was cached: :func:`exact_arithmetic`) with three differences:

1. **The compiled functions depend on the model's structure, not on its data sizes.** nutpie
   compiles the flat parameter vector's length and every variable's slice and shape in as
   constants; here every size the graph does not know statically is read at run time from a shared
   vector (:data:`FREE_LAYOUT`, see :func:`_make_functions`). With the model's data held as
   ``pm.Data`` and the lengths of the dimensions that follow from the readings as shared
   variables (:data:`model.aggregator.graph.DATA_DIMS`), one more reading, a later month or a moved knot
   changes only what the callbacks read: the same compiled model serves it.
2. The callbacks are generated as source with no closures (the shared-data arrays, sizes among
   them, are read through nutpie's user-data pointer, as nutpie does) and cached by numba under a
   key of their source, PyTensor's key of the function they call (its ops, graph and constants)
   and the library versions.
3. The model's layout (the free and stored variables' names in order, which shared variables each
   callback reads, the callbacks' keys) is stored as JSON under a key of the model's graph before
   rewriting (:func:`_model_key`: its operations, constants, shared variables' names and types, but
   not their values or sizes, and the settings that shape compilation, this module's and
   :mod:`model.aggregator.kernels`' source). When the layout and both callbacks are found, PyTensor's
   rewriting and numba compilation are skipped: the machine code is loaded, the sizes are computed
   from the model (:func:`_sizes`) and the shared data are read from the model as it is (PyTensor
   still builds the log-density graph for the key and compiles the initial-point function).

Both live in PyTensor's compile directory (``pytensor.config.base_compiledir``). A model of new
structure (another config, a new pollster or question, an event paired with another segment)
compiles afresh; new readings of the same structure do not. One process at a time compiles a
structure (a file lock beside its layout, :func:`compile_lock`); another that needs it meanwhile
waits and loads it. Setting :data:`CACHE_TAG_ENV` starts a
fresh set of entries. ``make install`` compiles the shipped model once (``python -m model compile``),
as Stan-based tools compile their models at install.

This uses internals of nutpie, numba and PyTensor that are not public API (:data:`PRIVATE_NAMES`,
nutpie's user-data layout, ``CompiledPyMCModel``'s fields), pinned in ``pyproject.toml`` to the
versions the tests ran with (:data:`TESTED_VERSIONS`); ``tests/sampling/test_compiled.py`` compares
the callbacks with PyTensor's own functions. When they cannot be used (another version is
installed, a private name is gone, or nutpie's user-data layout is not the one read here),
:func:`compile_model` warns and compiles with nutpie's public ``compile_pymc_model`` instead:
slower to start (every fit compiles), the same model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from model.aggregator import kernels, log_density
from model.files import atomic_write_text
from model.imports import module_entry

#: Source of the log-density callback (nutpie's C signature:
#: ``int64 (uint64 dim, double *x, double *grad_out, double *logp_out, void *user_data)``).
#: nuts-rs takes a positive return code as recoverable (the trajectory ends there, as at a
#: divergence) and any other non-zero code as fatal (the chain stops with the code). A non-finite
#: log density or gradient (3, 4) is recoverable, as in nutpie's own callback; an exception (a
#: kernel refusing data it cannot index, a bug) is fatal (-1), where nutpie's own returns 1 and the
#: error would surface only as divergent transitions.
_LOGP_TEMPLATE = """
def {name}(dim, x_, out_, logp_, user_data_):
    try:
        meta = numba.carray(user_data_, ({n_meta},), np.uint64)
{extract}
        x = numba.carray(x_, (dim,))
        out = numba.carray(out_, (dim,))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:  # noqa: BLE001
        return -1
    return 0
"""

#: Source of the expand callback (``int64 (uint64 dim, uint64 n_expanded, double *x, double *out,
#: void *user_data)``): every stored variable of one draw.
_EXPAND_TEMPLATE = """
def {name}(dim, expanded, x_, out_, user_data_):
    try:
        meta = numba.carray(user_data_, ({n_meta},), np.uint64)
{extract}
        x = numba.carray(x_, (dim,))
        out = numba.carray(out_, (expanded,))
        (values,) = inner(x{args})
        out[...] = values
    except Exception:  # noqa: BLE001
        return -2
    return 0
"""


#: Part of every cache key: change it when the callbacks' generated code changes in a way their
#: source text does not show.
_CACHE_FORMAT = "model.sampling.compiled/3"

#: This module's own source, model.aggregator.kernels' (the model's own numba operations, which a graph
#: names only by class) and model.aggregator.log_density's (the hand-written log density): a cached
#: layout names callbacks this code generated and those kernels run in, so any edit to them
#: starts afresh.
_SOURCE_HASH = hashlib.sha256(
    Path(__file__).read_bytes()
    + Path(kernels.__file__).read_bytes()
    + Path(log_density.__file__).read_bytes()
).hexdigest()

#: Names of the shared variables that carry the hand-written log density's structure and constants
#: (:mod:`model.aggregator.log_density`) to its callback, and the prefix of the empty arrays
#: standing for data a model does not have.
HAND_WRITTEN_STRUCTURE = "model_log_density_structure"
HAND_WRITTEN_CONSTANTS = "model_log_density_constants"
HAND_WRITTEN_ABSENT = "model_log_density_absent_"

#: Agreement the hand-written log density must show with PyTensor's when a structure is compiled
#: (relative to the log density's size and to the gradient's largest entry), or PyTensor's is used.
HAND_WRITTEN_TOLERANCE = 1e-9

#: Environment variable whose value, if set, joins every cache key: a new value starts a fresh set of
#: cached callbacks without touching PyTensor's kernel cache (``make bench`` sets it per bench run so
#: that each case's first fit compiles its callbacks as the first fit of a model structure does).
CACHE_TAG_ENV = "MODEL_COMPILE_CACHE_TAG"


def exact_arithmetic():
    """A context in which PyTensor compiles numba code without fast-math flags (``numba__fastmath=False``).

    With fast-math, LLVM may reassociate and contract floating-point arithmetic, and it does so
    differently when a PyTensor kernel is compiled in the same process as the function calling it
    (its code inlined and optimised together) than when the kernel is loaded from numba's disk cache
    (linked as machine code). The same model, data and seed then gave results differing in their
    last digits depending on what happened to be cached: two first fits started side by side on an
    empty cache wrote different ``curve.csv`` files (``tests/test_cli.py::test_same_seed_same_numbers``),
    and a gradient compiled with its kernels cached differed bit-wise from one compiled fresh. Without
    fast-math every operation is IEEE-exact, so a result depends on the model, data, seed and
    machine, not on the cache; the shipped model's gradient is no slower (73 vs 72.5 us, best of runs).
    :func:`compile_model` and :func:`model.fit` compile under it.
    """
    import pytensor

    return pytensor.config.change_flags(numba__fastmath=False)


#: The versions whose internals this module was written against and tested with.
TESTED_VERSIONS = {"nutpie": "0.16.11", "numba": "0.68.0", "pytensor": "3.3.8"}
#: The private names it uses, as (module, attribute).
PRIVATE_NAMES = (
    ("nutpie.compile_pymc", "_compute_shapes"),
    ("nutpie.compile_pymc", "_rv_dict_to_flat_array_wrapper"),
    ("nutpie.compile_pymc", "_wrap_with_lock"),
    ("nutpie.compile_pymc", "make_user_data"),
    ("nutpie.compile_pymc", "address_as_void_pointer"),
    ("nutpie.compile_pymc", "CompiledPyMCModel"),
    ("pytensor.link.numba.cache", "CACHED_SRC_FUNCTIONS"),
    ("pytensor.link.numba.cache", "compile_numba_function_src"),
    ("pytensor.link.numba.dispatch.basic", "cache_key_for_constant"),
)


class CacheUnusable(RuntimeError):
    """The disk-cached callbacks cannot be built here (another version of a library, a missing
    private name, another user-data layout): :func:`compile_model` falls back to nutpie's public path."""


def import_nutpie() -> ModuleType:
    """Import nutpie without the plotting half of ArviZ.

    ``nutpie.sample`` imports the ``arviz`` meta-package, which imports ``arviz_plots`` and with it
    matplotlib's pyplot and plotly (time: ``docs/performance.md``) in a fit that draws nothing, only
    to call ``arviz.from_dict`` and ``arviz.dict_to_dataset`` when it converts a trace. Those are
    ``arviz_base``'s functions, which ``arviz`` re-exports as they are. So while nutpie is first
    imported, ``sys.modules`` answers ``import arviz`` with ``arviz_base``; the entry is removed
    afterwards, so any later ``import arviz`` imports the real package. Nutpie is imported as usual
    where it or ``arviz`` is already imported, or where the installed nutpie is not the tested one
    (:data:`TESTED_VERSIONS`: another version may use more of ``arviz``). ``sys.modules`` is the
    process's: another thread importing ``arviz`` meanwhile would get ``arviz_base`` (a fit imports
    nutpie before it starts any). ``tests/sampling/test_compiled.py`` checks in a fresh
    interpreter that what nutpie calls through ``arviz`` are ArviZ's own objects and that pyplot
    is not loaded.

    Returns
    -------
    module
        ``nutpie``.
    """
    import importlib.metadata
    import sys

    tested = importlib.metadata.version("nutpie") == TESTED_VERSIONS["nutpie"]
    if not tested or "nutpie" in sys.modules or "arviz" in sys.modules:
        import nutpie

        return nutpie
    import arviz_base

    with module_entry("arviz", arviz_base):
        import nutpie
    return nutpie


def cache_unusable() -> str | None:
    """Why this module's cached callbacks cannot be used with the installed libraries, or None.

    It imports nutpie (:func:`import_nutpie`) to look for the private names.

    Returns
    -------
    str or None
        The first version (:data:`TESTED_VERSIONS`) or private name (:data:`PRIVATE_NAMES`) that
        differs, in words.
    """
    import importlib
    import importlib.metadata

    import_nutpie()
    for package, version in TESTED_VERSIONS.items():
        installed = importlib.metadata.version(package)
        if installed != version:
            return f"{package} {installed} is installed; model.sampling.compiled was tested with {version}"
    for module, name in PRIVATE_NAMES:
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            return f"{module}.{name} is not available ({type(err).__name__}: {err})"
    return None


def _shared_layout(
    shared_var_keys: dict[Any, str], user_data: np.ndarray
) -> dict[str, tuple[int, list[int]]]:
    """Where each shared array's pointer and shape sit in nutpie's user data, read as uint64 words.

    nutpie's record (``nutpie.compile_pymc.make_user_data``) holds, per shared variable key, its data
    address, its size and its shape, packed as 8-byte unsigned integers. This reads the word offsets
    from the record dtype itself and refuses any other layout.

    Returns
    -------
    dict
        key -> (word of the data address, words of the shape).

    Raises
    ------
    CacheUnusable
        If the record is not the packed all-uint64 layout this module reads.
    """
    shared = user_data.dtype.fields["shared"]
    base = shared[1]
    layout = {}
    for var, key in shared_var_keys.items():
        data_dt, data_off = shared[0].fields["data"][0].fields[key][:2]
        shape_dt, shape_off = shared[0].fields["shape"][0].fields[key][:2]
        data_at = base + shared[0].fields["data"][1] + data_off
        shape_at = base + shared[0].fields["shape"][1] + shape_off
        ok = (
            data_dt.itemsize == 8
            and data_dt.kind == "u"
            and data_at % 8 == 0
            and shape_at % 8 == 0
            and shape_dt.base.itemsize == 8
            and shape_dt.base.kind == "u"
            and shape_dt.shape == (var.ndim,)
        )
        if not ok:
            raise CacheUnusable(
                "nutpie's user-data record is not the packed uint64 layout model.sampling.compiled reads "
                f"(field {key!r}: {data_dt}, {shape_dt}); check the installed nutpie against requirements.lock"
            )
        layout[key] = (data_at // 8, [shape_at // 8 + i for i in range(var.ndim)])
    if user_data.dtype.itemsize % 8:
        raise CacheUnusable(
            f"nutpie's user-data record is {user_data.dtype.itemsize} bytes, not whole uint64 words"
        )
    return layout


def _callback_source(
    template: str, name: str, keys: list[str], shared_data: dict[str, np.ndarray], layout, **sizes
) -> str:
    """Fill a callback template: one line per shared array, read from the user-data words."""
    lines = []
    args = []
    for i, key in enumerate(keys):
        data_word, shape_words = layout[key]
        shape = "".join(f"int(meta[{w}]), " for w in shape_words)
        dtype = np.dtype(shared_data[key].dtype).type.__name__
        lines.append(
            f"shared_{i} = numba.carray(address_as_void_pointer(meta[{data_word}]), ({shape}), np.{dtype})"
        )
        args.append(f", shared_{i}")
    extract = textwrap.indent("\n".join(lines), " " * 8)
    return template.format(name=name, extract=extract, args="".join(args), **sizes)


def _callback_key(src: str, inner, kind: str) -> str | None:
    """The disk-cache key of a callback: ``None`` when PyTensor could not key the function it calls.

    The hand-written log density (:func:`model.aggregator.log_density.logp_and_gradient`) is keyed
    by its module's source, part of :data:`_SOURCE_HASH`."""
    import numba
    import nutpie
    import pytensor
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    if inner is log_density.logp_and_gradient:
        inner_key = "model.aggregator.log_density.logp_and_gradient"
    else:
        inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    if inner_key is None:
        return None
    return hashlib.sha256(
        "\n".join(
            [
                _CACHE_FORMAT,
                _SOURCE_HASH,
                os.environ.get(CACHE_TAG_ENV, ""),
                kind,
                src,
                inner_key,
                pytensor.__version__,
                numba.__version__,
                nutpie.__version__,
                np.__version__,
            ]
        ).encode()
    ).hexdigest()


def _callback_function(src: str, name: str, key: str | None, inner):
    """The Python function numba compiles (or finds in the cache), registered under ``key``."""
    import numba
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import compile_numba_function_src

    return compile_numba_function_src(
        src,
        name,
        # __name__: numba rebuilds a cached function's environment by importing its module.
        global_env={
            "__name__": __name__,
            "numba": numba,
            "np": np,
            "address_as_void_pointer": address_as_void_pointer,
            "inner": inner,
        },
        cache_key=key,
    )


def _graph_function(inner):
    """The function of the graph that PyTensor's function ``inner`` (``Function.vm.jit_fn``) runs.

    PyTensor compiles a graph's function behind a wrapper that lets numba cache it,
    ``def f(*args): return jitable_func(*args)``. A callback calling the wrapper compiles the
    graph's function, then the wrapper (a tuple of every input, and the whole model's code linked
    in, optimised and turned into machine code again), then itself (the same once more). Calling
    the graph's function skips the middle step: the shipped model's first compile, after a smaller
    structure had filled PyTensor's kernel cache, 73 s against 93 s, with the same log density,
    gradient and draws (``docs/performance.md``). Anything else (a graph of over 1,000 inputs,
    which PyTensor leaves unwrapped) is returned as it is.
    """
    import inspect

    params = list(inspect.signature(inner.py_func).parameters.values())
    if len(params) == 1 and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return inner.py_func.__globals__.get("jitable_func", inner)
    return inner


def _cfunc(src: str, name: str, signature, inner, kind: str):
    """Compile one callback, cached on disk under a key when PyTensor could key the function it
    calls: ``inner`` (``Function.vm.jit_fn``), of which the callback calls :func:`_graph_function`.

    Returns the numba ``CFunc`` (its ``_cache_hits`` is 1 when it was loaded from the cache) and the key.
    """
    import numba

    key = _callback_key(src, inner, kind)
    inner = _graph_function(inner)
    fn = _callback_function(src, name, key, inner)
    with warnings.catch_warnings():
        # Raised only if numba finds something in the callback it cannot cache: then it compiles as nutpie does.
        warnings.filterwarnings(
            "ignore", message="Cannot cache compiled function", category=numba.NumbaWarning
        )
        try:
            compiled = numba.cfunc(signature, cache=key is not None)(fn)
        except OSError as err:  # a cache directory that cannot be written: compile without caching
            if key is None:
                raise
            warnings.warn(f"compiling the {kind} callback without caching it: {err}", stacklevel=3)
            fn = _callback_function(src, name, None, inner)
            compiled, key = numba.cfunc(signature)(fn), None
    return compiled, key


#: The callbacks this process has loaded from the disk cache, by cache key. A callback is a C function
#: of the structure alone (each model's data reach it through its user-data pointer), so every
#: later model of that structure in the process (a validation worker's refits, a notebook's fits)
#: shares it instead of loading its machine code again (~0.4 s a model).
_LOADED_CALLBACKS: dict[str, Any] = {}


def _load_cfunc(src: str, name: str, signature, key: str):
    """The callback stored under ``key`` in numba's disk cache, or ``None`` if it is not there.

    Loads machine code only: the function the callback calls is not needed (nor compiled). One
    loaded in this process before is returned as it is (:data:`_LOADED_CALLBACKS`).
    """
    from numba.core.ccallback import CFunc
    from numba.core.compiler_lock import global_compiler_lock

    if (loaded := _LOADED_CALLBACKS.get(key)) is not None:
        return loaded

    fn = _callback_function(src, name, key, None)
    cfunc = CFunc(fn, (signature.args, signature.return_type), {}, {})
    cfunc.enable_caching()
    with global_compiler_lock:  # as CFunc.compile holds it
        cres = cfunc._cache.load_overload(cfunc._sig, cfunc._targetdescr.target_context)
        if cres is None:
            return None
        # What CFunc.compile does with a cache hit.
        cfunc._library = cres.library
        cfunc._wrapper_name = cres.fndesc.llvm_cfunc_wrapper_name
        cfunc._wrapper_address = cfunc._library.get_pointer_to_function(cfunc._wrapper_name)
        cfunc._cache_hits += 1
    _LOADED_CALLBACKS[key] = cfunc
    return cfunc


def _signatures():
    """nutpie's C signatures of the log-density and expand callbacks."""
    import numba

    t = numba.types
    logp = t.int64(
        t.uint64, t.CPointer(t.double), t.CPointer(t.double), t.CPointer(t.double), t.voidptr
    )
    expand = t.int64(t.uint64, t.uint64, t.CPointer(t.double), t.CPointer(t.double), t.voidptr)
    return logp, expand


def _op_token(op) -> str:
    """A stable text key of an operation: its class and what defines it.

    For an op with ``__props__`` (PyTensor's definition of when two ops are equal), those values
    (ops among them keyed the same way); otherwise its public attributes. Private attributes are
    left out: PyTensor caches things there as a graph is used (``Softmax._connection_pattern`` is
    filled in by differentiation), which would change a pickle but not the op.
    """
    from pytensor.graph.op import Op
    from pytensor.link.numba.cache import hash_from_pickle_dump

    def value(v):
        if isinstance(v, Op):
            return ("op", _op_token(v))
        if isinstance(v, tuple | list):
            return tuple(value(x) for x in v)
        return v

    cls = f"{type(op).__module__}.{type(op).__qualname__}"
    props = getattr(op, "__props__", None)
    if props is not None:
        state = (cls, tuple((p, value(getattr(op, p))) for p in props))
    else:
        state = (
            cls,
            tuple((k, value(v)) for k, v in sorted(vars(op).items()) if not k.startswith("_")),
        )
    return hash_from_pickle_dump(state)


def _model_key(pymc_model, var_names, stored=None) -> tuple[str | None, dict[str, Any]]:
    """:func:`_graph_key` (of the model as :func:`compile_model` compiles it: under
    :func:`exact_arithmetic`), or no key (compile without the layout cache) if the graph cannot be keyed."""
    try:
        with exact_arithmetic():
            return _graph_key(pymc_model, var_names, stored)
    except Exception as err:  # noqa: BLE001 (an op that cannot be pickled, say): only speed is lost
        warnings.warn(
            f"compiling without the layout cache: the model's graph could not be keyed ({err})",
            stacklevel=3,
        )
        return None, {}


def _graph_key(pymc_model, var_names, stored=None) -> tuple[str | None, dict[str, Any]]:
    """A key of everything that fixes the compiled functions, and the model's shared variables by name.

    The key hashes the graph of the model's log density and of the variables the trace stores, as
    built before any rewriting, from the free variables' values: each operation
    (:func:`_op_token`), how the nodes connect, every constant's data, each shared variable's name
    and type (its values and shape are data, read when sampling: a dimension's length is a shared
    scalar, and the callbacks read every size from :data:`FREE_LAYOUT`), the variables' names and
    types; and the versions and PyTensor settings that shape compilation. ``None`` (no caching of the model's layout) when a shared variable has no
    name or shares one with another, or the graph has an input that is neither.
    """
    import numba
    import nutpie
    import pymc
    import pytensor
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import io_toposort
    from pytensor.link.numba.dispatch.basic import cache_key_for_constant

    value_vars = [pymc_model.rvs_to_values[rv] for rv in pymc_model.free_RVs]
    stored = _stored_vars(pymc_model, var_names) if stored is None else stored
    outputs = [pymc_model.logp(), *stored]

    tokens: dict[Any, str] = {v: f"value[{i}] {v.name} {v.type}" for i, v in enumerate(value_vars)}
    shared: dict[str, Any] = {}

    def token(var) -> str | None:
        if var in tokens:
            return tokens[var]
        if isinstance(var, SharedVariable):
            if not var.name or (var.name in shared and shared[var.name] is not var):
                return None
            shared[var.name] = var
            # Name and type only: values and sizes are data, read when sampling (dimension lengths
            # are shared scalars, and the callbacks read every size from FREE_LAYOUT).
            tokens[var] = f"shared {var.name} {var.type}"
        elif isinstance(var, Constant):
            tokens[var] = f"constant {var.type} {cache_key_for_constant(var.data)}"
        else:
            return None
        return tokens[var]

    parts = []
    for i, node in enumerate(io_toposort(value_vars, outputs)):
        inputs = [token(v) for v in node.inputs]
        if any(t is None for t in inputs):
            return None, shared
        parts.append(f"{_op_token(node.op)}({', '.join(inputs)})")
        for j, out in enumerate(node.outputs):
            tokens[out] = f"node[{i}].{j} {out.type}"
    out_tokens = [token(v) for v in outputs]
    if any(t is None for t in out_tokens):
        return None, shared
    c = pytensor.config
    settings = [
        _CACHE_FORMAT,
        os.environ.get(CACHE_TAG_ENV, ""),
        _SOURCE_HASH,
        pymc.__version__,
        pytensor.__version__,
        numba.__version__,
        nutpie.__version__,
        np.__version__,
        str(pymc_model.check_bounds),
        c.get_config_hash(),
        str(c.numba__fastmath),
        str(c.numba__cache),
        str(var_names),
        " | ".join(v.name for v in stored),
    ]
    text = "\n".join([*settings, *parts, "outputs: " + ", ".join(out_tokens)])
    return hashlib.sha256(text.encode()).hexdigest(), shared


def _layout_dir() -> Path:
    import pytensor

    return Path(pytensor.config.base_compiledir) / "model_compiled"


def _read_layout(key: str) -> dict | None:
    path = _layout_dir() / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_layout(key: str, layout: dict) -> None:
    """Write atomically (a reader sees the whole file or none); a failure to write only costs speed."""
    folder = _layout_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{key}.json", json.dumps(layout))
    except OSError as err:
        warnings.warn(
            f"could not cache the compiled model's layout in {folder}: {err}", stacklevel=3
        )


def _user_data(shared_vars: list[tuple[Any, str]]):
    """nutpie's user-data record for (shared variable, key) pairs, from the variables' current values."""
    from nutpie.compile_pymc import make_user_data

    shared_data: dict[str, np.ndarray] = {}
    shared_var_keys: dict[Any, str] = {}
    for var, key in shared_vars:
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[key] = value
        shared_var_keys[var] = key
    user_data = make_user_data(shared_var_keys, shared_data)
    return shared_data, shared_var_keys, user_data


def _initial_point_function(pymc_model):
    """The initial point nutpie.compile_pymc_model uses: the support point, jittered in (-1, 1)."""
    from nutpie.compile_pymc import _wrap_with_lock
    from pymc.initial_point import make_initial_point_fn

    return _wrap_with_lock(
        make_initial_point_fn(
            model=pymc_model,
            overrides=None,
            default_strategy="support_point",
            jitter_rvs=set(pymc_model.free_RVs),
            return_transformed=True,
        )
    )


def compile_model(pymc_model, *, var_names=None, hand_written=None):
    """Compile ``pymc_model`` for nutpie (numba backend) with disk-cached C callbacks.

    Equivalent to ``nutpie.compile_pymc_model(pymc_model, backend="numba", var_names=var_names)``
    (same initial points: the support point jittered in (-1, 1); the same log density, gradient and
    stored variables, from PyTensor), except that

    - they are compiled without numba's fast-math flags (:func:`exact_arithmetic`), so results do
      not depend on which kernels were already in numba's cache,
    - the functions read every size the graph does not fix from the data (:func:`_make_functions`),
      so they serve any readings of the model's structure,
    - the two C callbacks are cached on disk (numba's cache in PyTensor's compile directory), and
    - the model's layout (the free and stored variables' names in order, which shared variables
      each callback reads, the callbacks' cache keys) is cached as JSON beside them, under a key of
      the model's structure (:func:`_model_key`). When both are found, PyTensor's rewriting and
      numba compilation are skipped: the callbacks' machine code is loaded, and the sizes
      (:func:`_sizes`) and shared data are read from the model as it is now. ``logp_func`` and ``expand_func`` (PyTensor functions nutpie keeps but
      does not call) are then ``None``;
    - a process about to compile a structure that another process is compiling (two fits started
      side by side, validation workers) waits for it and loads what it wrote
      (:func:`compile_lock`) instead of compiling the same model again;
    - with ``hand_written``, the log-density callback runs the model's hand-written log density and
      gradient (:func:`model.aggregator.log_density.logp_and_gradient`) instead of PyTensor's
      graph. When the structure is compiled, the two are compared at three starting points; if
      they differ by more than :data:`HAND_WRITTEN_TOLERANCE`, a warning says so and PyTensor's
      is used (:func:`hand_written_used` tells which one a compiled model runs).

    Parameters
    ----------
    pymc_model : pymc.Model
        The model.
    var_names : list of str, optional
        Variables to store in the trace (default: all).
    hand_written : model.aggregator.log_density.HandWritten, optional
        The model's structure for the hand-written log density
        (:func:`model.aggregator.log_density.hand_written_structure`); default PyTensor's.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        Ready for ``nutpie.sample`` and ``with_data``.

    Warns
    -----
    UserWarning
        When the cached callbacks cannot be used here (:func:`cache_unusable`, or nutpie's
        user-data layout differs): the model is then compiled with nutpie's public
        ``compile_pymc_model`` (numba backend), the same model without the disk cache.

    See Also
    --------
    callbacks_cached : whether both callbacks came from the disk cache.
    """
    with exact_arithmetic():
        problem = cache_unusable()
        if problem is None:
            try:
                return _compile_model(pymc_model, var_names, hand_written)
            except CacheUnusable as err:
                problem = str(err)
        warnings.warn(
            f"the compiled-model cache cannot be used ({problem}); compiling with nutpie.compile_pymc_model "
            "instead: the same model, compiled afresh for every fit",
            stacklevel=3,
        )
        import nutpie

        return nutpie.compile_pymc_model(pymc_model, backend="numba", var_names=var_names)


def _compile_model(pymc_model, var_names, hand_written=None):
    """:func:`compile_model`'s body (under :func:`exact_arithmetic`)."""
    # The stored variables' graphs (PyMC builds them anew on every call) serve the key, the sizes
    # and the compiled functions alike.
    stored = _stored_vars(pymc_model, var_names)
    model_key, shared_by_name = _model_key(pymc_model, var_names, stored)
    initial_point_fn = _initial_point_function(pymc_model)
    if model_key is None:
        return _compile(pymc_model, var_names, initial_point_fn, stored, hand_written)[0]
    if hand_written is not None:  # another log-density callback: another layout
        model_key = _hand_written_key(model_key)

    def load(layout):
        return _cached_model(
            model_key,
            layout,
            pymc_model,
            shared_by_name,
            initial_point_fn,
            var_names,
            stored,
            hand_written,
        )

    def compile_and_cache():
        compiled, layout = _compile(pymc_model, var_names, initial_point_fn, stored, hand_written)
        if layout is not None:
            _write_layout(model_key, layout)
        return compiled

    layout = _read_layout(model_key)
    if layout is not None:  # cached (or damaged: then compiled afresh, without waiting)
        compiled = load(layout)
        if compiled is not None:
            return compiled
        return compile_and_cache()
    # Not cached: another process compiling the same structure (a second fit started beside this
    # one, a validation worker) finishes first, and this one loads what it wrote.
    with compile_lock(model_key):
        layout = _read_layout(model_key)
        compiled = None if layout is None else load(layout)
        if compiled is None:
            compiled = compile_and_cache()
    return compiled


def _hand_written_key(model_key: str) -> str:
    """The layout key of a model whose log-density callback is the hand-written one."""
    return hashlib.sha256(f"{model_key}\nhand-written".encode()).hexdigest()


def _cached_model(
    model_key,
    layout,
    pymc_model,
    shared_by_name,
    initial_point_fn,
    var_names,
    stored=None,
    hand_written=None,
):
    """The model loaded from a cached layout and its callbacks, or None (damaged, or a callback
    missing: the caller compiles afresh)."""
    try:
        return _from_layout(
            pymc_model, layout, shared_by_name, initial_point_fn, var_names, stored, hand_written
        )
    except Exception as err:  # noqa: BLE001 (a damaged layout or cache entry: compile afresh)
        warnings.warn(
            f"ignoring the cached layout {model_key}: {type(err).__name__}: {err}", stacklevel=4
        )
        return None


@contextlib.contextmanager
def compile_lock(model_key: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the exclusive lock on compiling the model of ``model_key`` (a file lock beside its
    layout, released when the block ends or the process dies); yield whether it is held.

    ``blocking=False`` does not wait for another process holding it (yields False). Where the
    system has no ``fcntl``, or the lock file cannot be opened or locked (a read-only or network
    file system), nothing is locked (yields True): two processes may then compile the same model
    at once, which costs time, not correctness (the cache is written atomically).
    """
    try:
        import fcntl

        _layout_dir().mkdir(parents=True, exist_ok=True)
        handle = open(_layout_dir() / f"{model_key}.lock", "a")  # noqa: SIM115 (closed below)
    except (ImportError, OSError):  # not POSIX, or no lock file: nothing locked
        handle = None
    if handle is None:
        yield True
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            locked = True
        except BlockingIOError:  # held elsewhere, and asked not to wait
            locked = None
        except OSError:  # the file system does not lock: nothing locked
            locked = False
        if locked is None:
            yield False
            return
        try:
            yield True
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


#: Name of the shared int64 vector that tells the compiled functions where each free variable sits in
#: nutpie's flat parameter vector: its ``n_free + 1`` offsets, then every free variable's shape entries.
FREE_LAYOUT = "model_free_layout"


class Sizes(NamedTuple):
    """Where every variable sits in nutpie's flat vectors, for a model's current data."""

    n_dim: int  # free (unconstrained) parameters
    n_expanded: int  # values of one stored draw
    shape_info: tuple[
        list[str], list[slice], list[tuple[int, ...]]
    ]  # names, slices, shapes: free, then stored
    free_layout: np.ndarray  # the values of FREE_LAYOUT
    stored_names: list[str]  # the stored variables after the free ones


def _free_values(pymc_model) -> list:
    """The free variables' values in the order of nutpie's flat vector: those whose shape the graph
    knows statically first (their offsets are then constants too), then the rest, each group in
    the model's order."""
    values = [pymc_model.rvs_to_values[rv] for rv in pymc_model.free_RVs]
    return sorted(values, key=lambda v: None in v.type.shape)


def _stored_vars(pymc_model, var_names):
    """The variables a draw stores besides the free ones (nutpie's choice: every unobserved value).

    PyMC builds their graphs anew on each call (~0.2 s on the shipped model), so
    :func:`compile_model` calls it once and passes the list on (``stored=``).
    """
    free = {pymc_model.rvs_to_values[rv].name for rv in pymc_model.free_RVs}
    stored = [v for v in pymc_model.unobserved_value_vars if v.name not in free]
    if var_names is not None:
        stored = [v for v in stored if v.name in set(var_names)]
    return stored


def _shapes(
    pymc_model, free: list[str], stored: list, initial_point_fn
) -> dict[str, tuple[int, ...]]:
    """Every free and stored variable's shape as the model's data now are.

    The free values' shapes from the initial point; a stored variable's from its dims' lengths when
    every axis has a dim (all of this package's model). Otherwise nutpie's own computation
    (``_compute_shapes``: it compiles a shape function, ~3 s on the shipped model in a new process).
    """

    def length(dim):
        var = pymc_model.dim_lengths[dim]
        return int(var.get_value() if hasattr(var, "get_value") else var.data)

    dims = pymc_model.named_vars_to_dims
    if initial_point_fn is not None and all(len(dims.get(v.name) or ()) == v.ndim for v in stored):
        point = initial_point_fn(0)
        shapes = {name: tuple(np.shape(point[name])) for name in free}
        shapes.update({v.name: tuple(length(d) for d in dims.get(v.name) or ()) for v in stored})
        return shapes
    from nutpie.compile_pymc import _compute_shapes

    return {name: tuple(shape) for name, shape in _compute_shapes(pymc_model).items()}


def _sizes(pymc_model, var_names, initial_point_fn=None, stored=None) -> Sizes:
    """The flat layout of ``pymc_model`` as its data now are (shapes by :func:`_shapes`)."""
    from math import prod

    free = [v.name for v in _free_values(pymc_model)]
    stored_vars = _stored_vars(pymc_model, var_names) if stored is None else stored
    stored = [v.name for v in stored_vars]
    shapes = _shapes(pymc_model, free, stored_vars, initial_point_fn)
    names, slices, shape_list = [], [], []
    count = 0
    for name in [*free, *stored]:
        shape = tuple(int(n) for n in shapes[name])
        names.append(name)
        slices.append(slice(count, count + prod(shape)))
        shape_list.append(shape)
        count += prod(shape)
    n_dim = slices[len(free) - 1].stop if free else 0
    offsets = [0, *(sl.stop for sl in slices[: len(free)])]
    entries = [n for shape in shape_list[: len(free)] for n in shape]
    return Sizes(
        n_dim,
        count,
        (names, slices, shape_list),
        np.array([*offsets, *entries], dtype=np.int64),
        stored,
    )


def _make_functions(pymc_model, var_names, initial_point_fn, stored=None, *, logp_mode="NUMBA"):
    """``nutpie.compile_pymc._make_functions`` (numba mode, gradient, joined expansion) for any data sizes.

    nutpie compiles the flat parameter vector's length and each variable's slice and shape into the
    functions as constants, so a model whose data change a dimension (one more reading, one more
    month) needs new functions. Here a size the graph does not know statically is read from a shared
    vector (:data:`FREE_LAYOUT`, its values from :func:`_sizes`), which reaches the callbacks as
    data; the functions then depend on the model's structure only, and one compilation serves every
    table of that structure. Measured on the shipped data (numba, best of 15 x 2,000 calls):
    log density and gradient 51.0 us against 48.4 us with every size a constant.

    ``logp_mode`` is the PyTensor mode of the log-density-and-gradient function: numba's for a
    callback that runs it, :func:`_checking_mode` where it only checks the hand-written one.

    Returns
    -------
    tuple
        The sizes (:class:`Sizes`), the log-density-and-gradient and expand PyTensor functions,
        the flat initial-point function and the names of transformed variables.
    """
    import pytensor
    import pytensor.tensor as pt
    from nutpie.compile_pymc import _rv_dict_to_flat_array_wrapper
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph import clone_replace, rewrite_graph

    stored = _stored_vars(pymc_model, var_names) if stored is None else stored
    sizes = _sizes(pymc_model, var_names, initial_point_fn, stored)
    value_vars = _free_values(pymc_model)
    n_free = len(value_vars)
    names, _, shapes = sizes.shape_info
    dtype = {pymc_model.rvs_to_values[rv]: rv.dtype for rv in pymc_model.free_RVs}

    rewrites = ["canonicalize", "stabilize"]
    if not pymc_model.check_bounds:
        rewrites.append("local_remove_check_parameter")
    logp = rewrite_graph(pymc_model.logp(), include=rewrites)
    grad = pt.concatenate(
        [pt.as_tensor(g, allow_xtensor_conversion=True).ravel() for g in pt.grad(logp, value_vars)]
    )

    layout = pytensor.shared(sizes.free_layout, name=FREE_LAYOUT)
    joined = pt.dvector("_unconstrained_point")
    replacements = {}
    entry = n_free + 1
    start, static_offset = (
        0,
        True,
    )  # offsets stay constants up to the first variable of data-dependent shape
    for i, value_var in enumerate(value_vars):
        static_shape = value_var.type.shape
        ndim = len(static_shape)
        # A length the graph knows statically (a dimension of the model's structure) stays a constant.
        shape = [
            layout[entry + j] if static_shape[j] is None else static_shape[j] for j in range(ndim)
        ]
        entry += ndim
        if static_offset and None not in static_shape:
            stop = start + int(np.prod(static_shape, dtype=int))
        else:
            static_offset = False
            start, stop = layout[i], layout[i + 1]
        piece = joined[start:stop]
        value = piece.reshape(shape, ndim=ndim) if ndim else piece[0]
        start = stop
        replacements[value_var] = pt.specify_shape(value, static_shape).astype(dtype[value_var])

    logp, grad = clone_replace([logp, grad], replacements)
    with pymc_model:
        logp_fn_pt = compile_pymc((joined,), (logp, grad), mode=logp_mode)

    expanded = pt.concatenate(
        [
            *(replacements[v].ravel() for v in value_vars),
            *(pt.as_tensor(v, allow_xtensor_conversion=True).ravel() for v in stored),
        ]
    )
    with pymc_model:
        expand_fn_pt = compile_pymc(
            (joined,), [expanded], givens=list(replacements.items()), mode="NUMBA"
        )

    initial_point_flat = _rv_dict_to_flat_array_wrapper(
        initial_point_fn, names=names[:n_free], shapes=shapes[:n_free]
    )
    reparameterized = [
        pymc_model.rvs_to_values[rv].name
        for rv in pymc_model.free_RVs
        if pymc_model.rvs_to_transforms.get(rv) is not None
    ]
    return sizes, logp_fn_pt, expand_fn_pt, initial_point_flat, reparameterized


def _checking_mode():
    """The PyTensor mode of the log density that checks the hand-written one (three calls when a
    structure is compiled): the graph as built (PyMC's parameter checks made ``-inf``, as when
    sampling), each operation's Python implementation, nothing compiled: numba would otherwise
    compile the whole graph for these three calls (its cost: ``docs/performance.md``)."""
    from pytensor.compile.mode import Mode

    return Mode(linker="py", optimizer="None")


def _hand_written_vars(pymc_model, hand_written, sizes: Sizes) -> list:
    """The shared variables the hand-written log-density callback reads, in its order of arguments
    (:data:`model.aggregator.log_density.DATA_ARGUMENTS`): its structure, with each free variable's
    offset as the model's data now are, its constants, then the model's data (an empty array for
    data the model does not have)."""
    import pytensor
    from pytensor.compile.sharedvalue import SharedVariable

    names, slices, _ = sizes.shape_info
    free = [(name, sl.start) for name, sl in zip(names, slices[: len(pymc_model.free_RVs)])]
    structure = log_density.with_offsets(hand_written.structure, free)
    variables = [
        pytensor.shared(structure, name=HAND_WRITTEN_STRUCTURE),
        pytensor.shared(hand_written.constants, name=HAND_WRITTEN_CONSTANTS),
    ]
    data = {n: v for n, v in pymc_model.named_vars.items() if isinstance(v, SharedVariable)}
    for name in log_density.DATA_ARGUMENTS:
        if name not in data:
            absent = np.zeros(0, log_density.ABSENT_DTYPES[name])
            data[name] = pytensor.shared(absent, name=HAND_WRITTEN_ABSENT + name)
        variables.append(data[name])
    return variables


def call_log_density(compiled, x: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Call the log-density C callback of ``compiled`` at the unconstrained point ``x`` as nuts-rs
    does: (its return code, the log density, the gradient). Code 0 is success; 3 and 4 a value
    that is not finite (a divergence to the sampler); -1 fatal."""
    import ctypes

    def pointer(a):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    x = np.ascontiguousarray(x, dtype=np.float64)
    grad, logp = np.full(compiled.n_dim, np.nan), np.full((), np.nan)
    code = compiled.compiled_logp_func.ctypes(
        compiled.n_dim,
        pointer(x),
        pointer(grad),
        pointer(logp),
        ctypes.c_void_p(compiled.user_data.ctypes.data),
    )
    return code, float(logp), grad


def _hand_written_differs(compiled, logp_fn_pt, initial_point_flat) -> str | None:
    """How the compiled hand-written callback differs from PyTensor's log density and gradient at
    three starting points (the sampler's jittered initial points), or ``None`` within
    :data:`HAND_WRITTEN_TOLERANCE`."""
    for seed in range(3):
        x = np.ascontiguousarray(initial_point_flat(seed), dtype=np.float64)
        code, logp, grad = call_log_density(compiled, x)
        want_logp, want_grad = logp_fn_pt(x)
        if code != 0:
            return f"the hand-written callback returned {code} at starting point {seed}"
        logp_error = abs(logp - float(want_logp)) / max(1.0, abs(float(want_logp)))
        grad_error = np.max(np.abs(grad - want_grad), initial=0.0) / max(
            1.0, np.max(np.abs(want_grad), initial=0.0)
        )
        if not logp_error <= HAND_WRITTEN_TOLERANCE or not grad_error <= HAND_WRITTEN_TOLERANCE:
            return (
                f"at starting point {seed} its log density differs from PyTensor's by a relative "
                f"{logp_error:.1e} and its gradient by {grad_error:.1e}"
            )
    return None


def hand_written_used(compiled) -> bool:
    """Whether the log-density callback of ``compiled`` (from :func:`compile_model`, or its
    ``with_data``) is the hand-written one."""
    names = {var.name for var in getattr(compiled, "shared_var_keys", {})}
    return HAND_WRITTEN_STRUCTURE in names


def _compile(pymc_model, var_names, initial_point_fn, stored=None, hand_written=None):
    """Compile through PyTensor; returns the compiled model and its layout (``None`` if uncacheable)."""
    sizes, logp_fn_pt, expand_fn_pt, initial_point_flat, reparameterized = _make_functions(
        pymc_model,
        var_names,
        initial_point_fn,
        stored,
        logp_mode="NUMBA" if hand_written is None else _checking_mode(),
    )
    n_dim, n_expanded, shape_info = sizes.n_dim, sizes.n_expanded, sizes.shape_info
    if hand_written is None:
        logp_vars, logp_inner = logp_fn_pt.get_shared(), logp_fn_pt.vm.jit_fn
    else:
        logp_vars = _hand_written_vars(pymc_model, hand_written, sizes)
        logp_inner = log_density.logp_and_gradient

    # Shared variables keyed by their order (nutpie uses random keys; fixed ones keep the source stable).
    ordered = []
    for var in [*logp_vars, *expand_fn_pt.get_shared()]:
        if var not in [v for v, _ in ordered]:
            ordered.append((var, f"shared{len(ordered)}"))
    shared_data, shared_var_keys, user_data = _user_data(ordered)
    word_layout = _shared_layout(shared_var_keys, user_data)
    n_meta = user_data.dtype.itemsize // 8
    logp_sig, expand_sig = _signatures()

    logp_keys = [shared_var_keys[v] for v in logp_vars]
    logp_src = _callback_source(
        _LOGP_TEMPLATE, "nutpie_logp", logp_keys, shared_data, word_layout, n_meta=n_meta
    )
    logp_cfunc, logp_key = _cfunc(logp_src, "nutpie_logp", logp_sig, logp_inner, "logp")

    expand_keys = [shared_var_keys[v] for v in expand_fn_pt.get_shared()]
    expand_src = _callback_source(
        _EXPAND_TEMPLATE, "nutpie_expand", expand_keys, shared_data, word_layout, n_meta=n_meta
    )
    expand_cfunc, expand_key = _cfunc(
        expand_src, "nutpie_expand", expand_sig, expand_fn_pt.vm.jit_fn, "expand"
    )

    compiled = _assemble(
        pymc_model,
        n_dim,
        n_expanded,
        shape_info,
        reparameterized,
        (logp_cfunc, expand_cfunc),
        (shared_data, shared_var_keys, user_data),
        initial_point_flat,
        (logp_fn_pt, expand_fn_pt),
    )
    if hand_written is not None:
        problem = _hand_written_differs(compiled, logp_fn_pt, initial_point_flat)
        if problem is not None:
            warnings.warn(
                f"the hand-written log density does not match this model's ({problem}); "
                "sampling with PyTensor's log density instead",
                stacklevel=4,
            )
            return _compile(pymc_model, var_names, initial_point_fn, stored)
    names_ok = all(v.name for v, _ in ordered) and len({v.name for v, _ in ordered}) == len(ordered)
    if logp_key is None or expand_key is None or not names_ok:
        return compiled, None
    layout = {
        "free": [v.name for v in _free_values(pymc_model)],
        "stored": list(sizes.stored_names),
        "reparameterized": list(reparameterized),
        "shared": [
            {
                "key": key,
                "name": var.name,
                "dtype": shared_data[key].dtype.str,
                "ndim": shared_data[key].ndim,
            }
            for var, key in ordered
        ],
        "logp": {"src": logp_src, "key": logp_key},
        "expand": {"src": expand_src, "key": expand_key},
    }
    return compiled, layout


def _from_layout(
    pymc_model,
    layout: dict,
    shared_by_name: dict[str, Any],
    initial_point_fn,
    var_names=None,
    stored=None,
    hand_written=None,
):
    """The compiled model from a cached layout and cached callbacks; ``None`` if anything is missing.

    The sizes (parameter count, each variable's slice and shape) are computed afresh from the
    model's data (:func:`_sizes`): the callbacks read them, as data, from :data:`FREE_LAYOUT`.
    """
    import pytensor
    from nutpie.compile_pymc import _rv_dict_to_flat_array_wrapper

    free = [v.name for v in _free_values(pymc_model)]
    if free != layout["free"]:
        return None
    sizes = _sizes(pymc_model, var_names, initial_point_fn, stored)
    if sizes.stored_names != layout["stored"]:
        return None
    shared_by_name = {
        **shared_by_name,
        FREE_LAYOUT: pytensor.shared(sizes.free_layout, name=FREE_LAYOUT),
    }
    if hand_written is not None:
        for var in _hand_written_vars(pymc_model, hand_written, sizes):
            shared_by_name.setdefault(var.name, var)
    ordered = []
    for entry in layout["shared"]:
        var = shared_by_name.get(entry["name"])
        if var is None:
            return None
        value = np.asarray(var.get_value(borrow=True))
        if value.dtype.str != entry["dtype"] or value.ndim != entry["ndim"]:
            return None
        ordered.append((var, entry["key"]))
    logp_sig, expand_sig = _signatures()
    logp_cfunc = _load_cfunc(layout["logp"]["src"], "nutpie_logp", logp_sig, layout["logp"]["key"])
    expand_cfunc = _load_cfunc(
        layout["expand"]["src"], "nutpie_expand", expand_sig, layout["expand"]["key"]
    )
    if logp_cfunc is None or expand_cfunc is None:
        return None
    shared_data, shared_var_keys, user_data = _user_data(ordered)
    names, _, shapes = sizes.shape_info
    initial_point_flat = _rv_dict_to_flat_array_wrapper(
        initial_point_fn, names=names[: len(free)], shapes=shapes[: len(free)]
    )
    return _assemble(
        pymc_model,
        sizes.n_dim,
        sizes.n_expanded,
        sizes.shape_info,
        list(layout["reparameterized"]),
        (logp_cfunc, expand_cfunc),
        (shared_data, shared_var_keys, user_data),
        initial_point_flat,
        (None, None),
    )


def _assemble(
    pymc_model,
    n_dim,
    n_expanded,
    shape_info,
    reparameterized,
    callbacks,
    shared,
    initial_point_func,
    functions,
):
    """nutpie's ``CompiledPyMCModel`` from its parts, compiled afresh or loaded: ``callbacks`` the
    (log density, expand) C callbacks, ``shared`` (data, variable keys, user-data record),
    ``functions`` the PyTensor functions behind the callbacks (``None`` when loaded)."""
    from nutpie.compile_pymc import CompiledPyMCModel, _prepare_dims_and_coords

    dims, coords = _prepare_dims_and_coords(pymc_model, shape_info, reparameterized)
    shared_data, shared_var_keys, user_data = shared
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=callbacks[0],
        compiled_expand_func=callbacks[1],
        initial_point_func=initial_point_func,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=functions[0],
        expand_func=functions[1],
        reparameterized_names=reparameterized,
    )


def callbacks_cached(compiled) -> str:
    """``"hit"`` if both callbacks of ``compiled`` were loaded from the disk cache, ``"miss"`` if neither
    was, ``"partial"`` otherwise."""
    hits = [
        getattr(f, "_cache_hits", 0) > 0
        for f in (compiled.compiled_logp_func, compiled.compiled_expand_func)
    ]
    return "hit" if all(hits) else "miss" if not any(hits) else "partial"
