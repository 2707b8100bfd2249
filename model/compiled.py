"""Compile a PyMC model for nutpie with C callbacks that numba caches on disk across runs.

``nutpie.compile_pymc_model`` (numba backend) wraps PyTensor's log-density-and-gradient function and
its "expand" function (every deterministic of a draw) in two numba C callbacks. PyTensor caches its
compiled functions on disk, but nutpie's callbacks close over Python objects, so numba cannot cache
them ("uses dynamic globals"), and because a callback links in the whole LLVM module of the function
it calls, every process re-optimises and re-generates machine code for the entire model: about
20-35 s on the shipped data even when every PyTensor kernel is already cached.

:func:`compile_model` builds the same two callbacks from generated source with no closures: the
shared-data arrays are read through nutpie's user-data pointer (as nutpie does), and the callback's
source, PyTensor's key for the function it calls (its ops, graph and constants) and the versions of
PyTensor, numba and nutpie form a cache key, registered with PyTensor's numba cache locator. A
second compile of the same model (same structure, same constants) loads the callbacks' machine code
from PyTensor's cache directory instead of compiling them; a new model or new data constants
compile afresh, as before. The result is nutpie's own ``CompiledPyMCModel`` (``with_data``,
``nutpie.sample`` work unchanged); the log density it evaluates is PyTensor's, bit for bit.

This uses nutpie helpers that are not public API (``nutpie.compile_pymc._make_functions`` and its
user-data layout), pinned by ``requirements.lock``; :func:`compile_model` checks the layout and
``tests/test_compiled.py`` compares its callbacks with nutpie's own.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
import warnings
from typing import Any

import numpy as np

#: Source of the log-density callback (nutpie's C signature:
#: ``int64 (uint64 dim, double *x, double *grad_out, double *logp_out, void *user_data)``).
_LOGP_TEMPLATE = """
def {name}(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        meta = numba.carray(user_data_, ({n_meta},), np.uint64)
{extract}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:  # noqa: BLE001
        return 1
    return 0
"""

#: Source of the expand callback (``int64 (uint64 dim, uint64 n_expanded, double *x, double *out,
#: void *user_data)``): every stored variable of one draw.
_EXPAND_TEMPLATE = """
def {name}(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        meta = numba.carray(user_data_, ({n_meta},), np.uint64)
{extract}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        (values,) = inner(x{args})
        out[...] = values
    except Exception:  # noqa: BLE001
        return -2
    return 0
"""


#: Part of every cache key: change it when the callbacks' generated code changes in a way their
#: source text does not show.
_CACHE_FORMAT = "model.compiled/2"

#: Environment variable whose value, if set, joins every cache key: a new value starts a fresh set of
#: cached callbacks without touching PyTensor's kernel cache (``make bench`` sets it per bench run so
#: that each case's first fit compiles its callbacks as a fit of new data would).
CACHE_TAG_ENV = "MODEL_COMPILE_CACHE_TAG"


def _shared_layout(shared_var_keys: dict[Any, str], user_data: np.ndarray) -> dict[str, tuple[int, list[int]]]:
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
    RuntimeError
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
            raise RuntimeError(
                "nutpie's user-data record is not the packed uint64 layout model.compiled reads "
                f"(field {key!r}: {data_dt}, {shape_dt}); check the installed nutpie against requirements.lock"
            )
        layout[key] = (data_at // 8, [shape_at // 8 + i for i in range(var.ndim)])
    if user_data.dtype.itemsize % 8:
        raise RuntimeError(f"nutpie's user-data record is {user_data.dtype.itemsize} bytes, not whole uint64 words")
    return layout


def _callback_source(template: str, name: str, keys: list[str], shared_data: dict[str, np.ndarray], layout, **sizes) -> str:
    """Fill a callback template: one line per shared array, read from the user-data words."""
    lines = []
    args = []
    for i, key in enumerate(keys):
        data_word, shape_words = layout[key]
        shape = "".join(f"int(meta[{w}]), " for w in shape_words)
        dtype = np.dtype(shared_data[key].dtype).type.__name__
        lines.append(f"shared_{i} = numba.carray(address_as_void_pointer(meta[{data_word}]), ({shape}), np.{dtype})")
        args.append(f", shared_{i}")
    extract = textwrap.indent("\n".join(lines), " " * 8)
    return template.format(name=name, extract=extract, args="".join(args), **sizes)


def _cfunc(src: str, name: str, signature, inner, kind: str):
    """Compile one callback, cached on disk under a key when PyTensor could key the function it calls.

    The numba ``CFunc``'s ``_cache_hits`` is 1 when it was loaded from the cache.
    """
    import numba
    import nutpie
    import pytensor
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    key = None
    if inner_key is not None:
        key = hashlib.sha256(
            "\n".join(
                [_CACHE_FORMAT, os.environ.get(CACHE_TAG_ENV, ""), kind, src, inner_key, pytensor.__version__, numba.__version__, nutpie.__version__, np.__version__]
            ).encode()
        ).hexdigest()
    fn = compile_numba_function_src(
        src,
        name,
        # __name__: numba rebuilds a cached function's environment by importing its module.
        global_env={"__name__": __name__, "numba": numba, "np": np, "address_as_void_pointer": address_as_void_pointer, "inner": inner},
        cache_key=key,
    )
    with warnings.catch_warnings():
        # Raised only if numba finds something in the callback it cannot cache: then it compiles as nutpie does.
        warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=numba.NumbaWarning)
        compiled = numba.cfunc(signature, cache=key is not None)(fn)
    return compiled


def compile_model(pymc_model, *, var_names=None):
    """Compile ``pymc_model`` for nutpie (numba backend) with disk-cached C callbacks.

    Equivalent to ``nutpie.compile_pymc_model(pymc_model, backend="numba", var_names=var_names)``
    (same initial points: the support point jittered in (-1, 1); same PyTensor functions), except
    that the two C callbacks are cached on disk by :mod:`model.compiled`'s key.

    Parameters
    ----------
    pymc_model : pymc.Model
        The model.
    var_names : list of str, optional
        Variables to store in the trace (default: all).

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        Ready for ``nutpie.sample`` and ``with_data``.

    See Also
    --------
    callbacks_cached : whether both callbacks came from the disk cache.
    """
    import numba
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _make_functions,
        _prepare_dims_and_coords,
        _wrap_with_lock,
        make_user_data,
    )
    from pymc.initial_point import make_initial_point_fn

    initial_point_fn = _wrap_with_lock(
        make_initial_point_fn(
            model=pymc_model,
            overrides=None,
            default_strategy="support_point",
            jitter_rvs=set(pymc_model.free_RVs),
            return_transformed=True,
        )
    )
    n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_point_flat, shape_info, reparameterized = _make_functions(
        pymc_model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point_fn,
        var_names=var_names,
    )

    # Shared variables keyed by their order (nutpie uses random keys; fixed ones keep the source stable).
    shared_data: dict[str, np.ndarray] = {}
    shared_var_keys: dict[Any, str] = {}
    for var in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if var in shared_var_keys:
            continue
        key = f"shared{len(shared_var_keys)}"
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[key] = value
        shared_var_keys[var] = key
    user_data = make_user_data(shared_var_keys, shared_data)
    layout = _shared_layout(shared_var_keys, user_data)
    n_meta = user_data.dtype.itemsize // 8

    logp_keys = [shared_var_keys[v] for v in logp_fn_pt.get_shared()]
    logp_src = _callback_source(_LOGP_TEMPLATE, "nutpie_logp", logp_keys, shared_data, layout, n_dim=n_dim, n_meta=n_meta)
    logp_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    logp_cfunc = _cfunc(logp_src, "nutpie_logp", logp_sig, logp_fn_pt.vm.jit_fn, "logp")

    expand_keys = [shared_var_keys[v] for v in expand_fn_pt.get_shared()]
    expand_src = _callback_source(
        _EXPAND_TEMPLATE, "nutpie_expand", expand_keys, shared_data, layout, n_dim=n_dim, n_expanded=n_expanded, n_meta=n_meta
    )
    expand_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    expand_cfunc = _cfunc(expand_src, "nutpie_expand", expand_sig, expand_fn_pt.vm.jit_fn, "expand")

    dims, coords = _prepare_dims_and_coords(pymc_model, shape_info, reparameterized)
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=logp_cfunc,
        compiled_expand_func=expand_cfunc,
        initial_point_func=initial_point_flat,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn_pt,
        expand_func=expand_fn_pt,
        reparameterized_names=reparameterized,
    )


def callbacks_cached(compiled) -> str:
    """``"hit"`` if both callbacks of ``compiled`` were loaded from the disk cache, ``"miss"`` if neither
    was, ``"partial"`` otherwise."""
    hits = [getattr(f, "_cache_hits", 0) > 0 for f in (compiled.compiled_logp_func, compiled.compiled_expand_func)]
    return "hit" if all(hits) else "miss" if not any(hits) else "partial"
