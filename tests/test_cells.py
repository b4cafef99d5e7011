"""Acceptance tests of the core cells: nprnn.lstm_step, nprnn.run_sequence, initialization.

The reference of every variant is a float64 NumPy transcription of PAPER.md (eq. 13-15) and of
the docstring of nprnn/cells.py, written here with explicit per-gate slices and no call into
nprnn's internals. The steps are compared with it on random, deliberately not init-like
parameters (random weights, biases, gammas, variance constants and batch-norm statistics).

Sizes are tiny and shared between tests so that few jit compilations are needed; float64 is
enabled for the whole session by conftest.py.
"""

from __future__ import annotations

import functools
import re

import flax.core
import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import nprnn

D, H, B, T = 3, 5, 4, 6  # input, hidden, batch, time
T_MAX = 3  # rows of the batch-norm statistics: T > T_MAX exercises "reuse the last row"
EPS = nprnn.NORM_EPSILON
RTOL, ATOL = 1e-10, 1e-12

# Golden parameter shapes per variant at D = 3, H = 5 (haiku style: a layout change must show up
# here as a deliberate edit).
GOLDEN_SHAPES = {
    "lstm": {"w_x": (3, 20), "w_h": (5, 20), "b": (20,)},
    "weightnorm": {
        "w_x": (3, 20),
        "w_h": (5, 20),
        "b": (20,),
        "gamma_x": (20,),
        "gamma_h": (20,),
    },
    "normprop": {
        "w_x": (3, 20),
        "w_h": (5, 20),
        "b": (20,),
        "gamma_x": (20,),
        "gamma_h": (20,),
        "gamma_c": (5,),
    },
    "layernorm": {
        "w_x": (3, 20),
        "w_h": (5, 20),
        "b": (20,),
        "gamma_x": (20,),
        "gamma_h": (20,),
        "gamma_c": (5,),
        "beta_c": (5,),
    },
    "batchnorm": {
        "w_x": (3, 20),
        "w_h": (5, 20),
        "b": (20,),
        "gamma_x": (20,),
        "gamma_h": (20,),
        "gamma_c": (5,),
        "beta_c": (5,),
    },
}
GOLDEN_CONSTS = {"lstm": {}, "weightnorm": {}, "normprop": {"var_c": (), "var_h": ()}}
GOLDEN_CONSTS.update(layernorm={}, batchnorm={})
# (gamma_x, gamma_h, gamma_c) at initialization: PAPER.md section "Initialization" and the
# variants' papers (Ba et al. 1.0, Cooijmans et al. 0.1, the paper's PTB setting 2, 2, 1).
GOLDEN_GAMMAS = {
    "lstm": (None, None, None),
    "weightnorm": (1.0, 1.0, None),
    "layernorm": (1.0, 1.0, 1.0),
    "batchnorm": (0.1, 0.1, 0.1),
    "normprop": (2.0, 2.0, 1.0),
}

# A "case" is a variant plus the mode it runs in. Batch norm has two: training (batch statistics)
# and inference (population statistics of row min(t, T_MAX - 1)).
# normprop runs in two forms: eq. 14-15 as printed ("normprop") and the authors' released code
# ("normprop-released"), told apart by their constants.
CASES = [
    "lstm",
    "weightnorm",
    "normprop",
    "normprop-released",
    "layernorm",
    "batchnorm-train",
    "batchnorm-infer",
]
NOT_BN_TRAIN = [c for c in CASES if c != "batchnorm-train"]
JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def variant_of(case: str) -> str:
    return case.split("-")[0]


def is_training(case: str) -> bool:
    return case == "batchnorm-train"


# ------------------------------------------------------------------------ random test inputs


def random_params(case: str, seed: int = 1):
    """float64 params with the golden shapes and random values, and random consts; ``case`` is
    a variant or a case of :data:`CASES`."""
    variant = variant_of(case)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in GOLDEN_SHAPES[variant].items():
        if name.startswith("gamma"):
            value = rng.uniform(0.4, 2.0, shape)
        elif name.startswith("w_"):
            value = rng.normal(size=shape) * 0.8
        else:  # b, beta_c
            value = rng.normal(size=shape) * 0.5
        params[name] = jnp.asarray(value, jnp.float64)
    consts = {}
    if case == "normprop-released":  # s(gamma) of gammas other than the (random) trained ones
        consts = {
            "s_h": jnp.asarray(rng.uniform(0.3, 0.9), jnp.float64),
            "s_c": jnp.asarray(rng.uniform(0.3, 0.9), jnp.float64),
        }
    elif variant == "normprop":
        consts = {
            "var_c": jnp.asarray(rng.uniform(0.2, 1.5), jnp.float64),
            "var_h": jnp.asarray(rng.uniform(0.1, 1.2), jnp.float64),
        }
    return params, consts


def random_bn_stats(seed: int = 2, max_steps: int = T_MAX):
    rng = np.random.default_rng(seed)

    def moments(width):
        return {
            "mean": jnp.asarray(rng.normal(size=(max_steps, width)) * 0.5),
            "var": jnp.asarray(rng.uniform(0.3, 2.5, (max_steps, width))),
        }

    return {"x": moments(4 * H), "h": moments(4 * H), "c": moments(H)}


def random_state(seed: int = 3, batch=(B,)):
    rng = np.random.default_rng(seed)
    return nprnn.LSTMState(
        h=jnp.asarray(rng.normal(size=(*batch, H)) * 0.5),
        c=jnp.asarray(rng.normal(size=(*batch, H))),
    )


def random_inputs(seed: int = 4, shape=(T, B, D)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def case_kwargs(case: str, bn_stats=None) -> dict:
    """Keyword arguments of lstm_step / run_sequence for a case (without t / t0)."""
    if case == "batchnorm-train":
        return {"training": True}
    if case == "batchnorm-infer":
        return {"training": False, "bn_stats": random_bn_stats() if bn_stats is None else bn_stats}
    return {}


# ------------------------------------------------------------------- float64 NumPy reference


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_layer_norm(a):
    """LN over the feature axis of each example (the last axis), biased variance."""
    mean = a.mean(axis=-1, keepdims=True)
    var = ((a - mean) ** 2).mean(axis=-1, keepdims=True)
    return (a - mean) / np.sqrt(var + EPS)


def np_batch_norm(a, which, *, training, bn_stats, t):
    """BN_t over the batch axis; batch statistics (biased) or population row min(t, T_max-1)."""
    if training:
        mean = a.mean(axis=0)
        var = ((a - mean) ** 2).mean(axis=0)
    else:
        stats = {k: np.asarray(v) for k, v in bn_stats[which].items()}
        row = min(int(t), stats["mean"].shape[0] - 1)
        mean, var = stats["mean"][row], stats["var"][row]
    return (a - mean) / np.sqrt(var + EPS), {"mean": mean, "var": var}


def np_step(variant, params, consts, h, c, x, *, training=False, bn_stats=None, t=None, mask=None):
    """One step of the given variant, float64 NumPy. Returns (h_t, c_t, batch moments)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    h, c, x = (np.asarray(a, np.float64) for a in (h, c, x))
    hidden = h.shape[-1]
    xw, hw = x @ p["w_x"], h @ p["w_h"]
    moments = {}
    if variant == "lstm":
        z = xw + hw + p["b"]
    elif variant in ("weightnorm", "normprop"):  # eq. 13, norm of each unit's incoming weights
        norm_x = np.sqrt(np.sum(p["w_x"] ** 2, axis=0))
        norm_h = np.sqrt(np.sum(p["w_h"] ** 2, axis=0))
        z = p["gamma_x"] * (xw / norm_x) + p["gamma_h"] * (hw / norm_h) + p["b"]
    elif variant == "layernorm":
        z = np_layer_norm(xw) * p["gamma_x"] + np_layer_norm(hw) * p["gamma_h"] + p["b"]
    else:
        bn = functools.partial(np_batch_norm, training=training, bn_stats=bn_stats, t=t)
        xn, moments["x"] = bn(xw, "x")
        hn, moments["h"] = bn(hw, "h")
        z = xn * p["gamma_x"] + hn * p["gamma_h"] + p["b"]
    gate_i = z[..., 0 * hidden : 1 * hidden]
    gate_f = z[..., 1 * hidden : 2 * hidden]
    gate_o = z[..., 2 * hidden : 3 * hidden]
    gate_g = z[..., 3 * hidden : 4 * hidden]
    candidate = np.tanh(gate_g)
    if mask is not None:
        candidate = candidate * np.asarray(mask)
    released = variant == "normprop" and "s_h" in consts
    if released:  # the authors' code: c_t = s(f) c_{t-1} + s(i) tanh(g) / s(gamma_h0)
        candidate = candidate / float(consts["s_h"])
    c_new = np_sigmoid(gate_i) * candidate + np_sigmoid(gate_f) * c  # eq. 14
    if released:  # h_t = s(o) tanh(gamma_c c_t) / s(gamma_c0)
        out = np.tanh(p["gamma_c"] * c_new) / float(consts["s_c"])
    elif variant == "normprop":  # eq. 15
        var_c, var_h = float(consts["var_c"]), float(consts["var_h"])
        out = np.tanh(p["gamma_c"] * c_new / np.sqrt(var_c)) / np.sqrt(var_h)
    elif variant == "layernorm":
        out = np.tanh(np_layer_norm(c_new) * p["gamma_c"] + p["beta_c"])
    elif variant == "batchnorm":
        cn, moments["c"] = np_batch_norm(c_new, "c", training=training, bn_stats=bn_stats, t=t)
        out = np.tanh(cn * p["gamma_c"] + p["beta_c"])
    else:
        out = np.tanh(c_new)
    return np_sigmoid(gate_o) * out, c_new, moments


def assert_close(actual, expected, rtol=RTOL, atol=ATOL, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol, err_msg=err_msg
    )


def assert_trees_close(actual, expected, rtol=RTOL, atol=ATOL, err_msg=""):
    assert jax.tree.structure(actual) == jax.tree.structure(expected), err_msg
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert np.shape(a) == np.shape(e), err_msg
        assert_close(a, e, rtol, atol, err_msg)


def test_reference_is_not_degenerate():
    """The random inputs keep the gates unsaturated, so that the comparisons mean something."""
    for case in (*nprnn.VARIANTS, "normprop-released"):
        variant = variant_of(case)
        params, consts = random_params(case)
        state = random_state()
        kw = case_kwargs("batchnorm-infer") if variant == "batchnorm" else {}
        h, c, _ = np_step(variant, params, consts, state.h, state.c, random_inputs()[0], t=1, **kw)
        assert np.all(np.isfinite(h)) and np.all(np.isfinite(c))
        assert 0.05 < np.std(h) < 5.0 and np.std(c) > 0.1
        scale = 1 / float(consts["s_c"]) if "s_c" in consts else 1 / np.sqrt(consts.get("var_h", 1))
        assert np.max(np.abs(h)) < 0.999 * scale


# --------------------------------------------------------------------- 1. one step vs NumPy


@JIT
@pytest.mark.parametrize("case", CASES)
def test_step_matches_numpy_reference(case, jit):
    variant = variant_of(case)
    params, consts = random_params(case)
    kw = case_kwargs(case)
    state, x = random_state(), random_inputs()[0]
    step = functools.partial(nprnn.lstm_step, variant=variant, training=kw.pop("training", False))
    step = jax.jit(step) if jit else step
    # Batch-norm inference: rows 0 and 2, and t = 5, 40 beyond T_max = 3 (reuse the last row).
    times = (0, 2, 5, 40) if case == "batchnorm-infer" else (1,)
    for t in times:
        new_state, h = step(params, consts, state, x, t=t, **kw)
        h_ref, c_ref, _ = np_step(
            variant, params, consts, state.h, state.c, x, training=is_training(case), t=t, **kw
        )
        assert isinstance(new_state, nprnn.LSTMState)
        assert h.shape == (B, H) and new_state.c.shape == (B, H)
        assert h.dtype == jnp.float64
        assert_close(h, h_ref)
        assert_close(new_state.h, h_ref)
        assert_close(new_state.c, c_ref)
    if case == "batchnorm-infer":  # the row really changes the result
        h0 = step(params, consts, state, x, t=0, **kw)[1]
        h2 = step(params, consts, state, x, t=2, **kw)[1]
        assert np.max(np.abs(np.asarray(h0) - np.asarray(h2))) > 1e-3


@JIT
def test_batchnorm_training_moments_match_reference(jit):
    params, consts = random_params("batchnorm")
    state, x = random_state(), random_inputs()[0]
    step = functools.partial(
        nprnn.lstm_step, variant="batchnorm", training=True, return_moments=True
    )
    step = jax.jit(step) if jit else step
    new_state, (h, moments) = step(params, consts, state, x)
    h_ref, c_ref, moments_ref = np_step(
        "batchnorm", params, consts, state.h, state.c, x, training=True
    )
    assert_close(h, h_ref)
    assert_close(new_state.h, h_ref)
    assert_close(new_state.c, c_ref)
    assert sorted(moments) == ["c", "h", "x"]
    assert_trees_close(moments, moments_ref)
    assert moments["x"]["mean"].shape == (4 * H,) and moments["c"]["var"].shape == (H,)
    # Training ignores population statistics, even when they are passed.
    _, (h_with_stats, _) = step(params, consts, state, x, bn_stats=random_bn_stats(), t=1)
    assert_close(h_with_stats, h_ref)


@pytest.mark.parametrize("case", [*nprnn.VARIANTS, "normprop-released"])
def test_recurrent_dropout_on_candidate(case, key):
    rate = 0.4
    variant = variant_of(case)
    params, consts = random_params(case)
    state, x = random_state(), random_inputs()[0]
    mask = jax.random.bernoulli(key, 1.0 - rate, state.h.shape) / (1.0 - rate)
    assert 0 < int(np.sum(np.asarray(mask) == 0)) < mask.size  # a mask that drops something
    train_kw = {"training": True}  # batch statistics for batchnorm
    new_state, h = nprnn.lstm_step(
        params, consts, state, x, variant=variant, key=key, dropout_rate=rate, **train_kw
    )
    h_ref, c_ref, _ = np_step(variant, params, consts, state.h, state.c, x, mask=mask, **train_kw)
    assert_close(h, h_ref)
    assert_close(new_state.c, c_ref)
    h_nodrop, _, _ = np_step(variant, params, consts, state.h, state.c, x, **train_kw)
    assert np.max(np.abs(np.asarray(h) - h_nodrop)) > 1e-3
    # Jitted, the same mask.
    jitted = jax.jit(
        functools.partial(nprnn.lstm_step, variant=variant, dropout_rate=rate, training=True)
    )
    assert_close(jitted(params, consts, state, x, key=key)[1], h_ref)
    # Training with rate 0 (key given or not) is the plain step.
    for k in (key, None):
        _, h_zero = nprnn.lstm_step(
            params, consts, state, x, variant=variant, key=k, dropout_rate=0.0, **train_kw
        )
        assert_close(h_zero, h_nodrop)
    # Off when training=False, even with a key and a rate.
    infer_kw = {"bn_stats": random_bn_stats(), "t": 1} if variant == "batchnorm" else {}
    _, h_off = nprnn.lstm_step(
        params, consts, state, x, variant=variant, key=key, dropout_rate=rate, **infer_kw
    )
    h_off_ref, _, _ = np_step(variant, params, consts, state.h, state.c, x, **infer_kw)
    assert_close(h_off, h_off_ref)


# ------------------------------------------------------------ 2. run_sequence vs a step loop


def step_loop(params, consts, state, xs, *, variant, t0=0, keys=None, return_moments=False, **kw):
    """A Python loop of lstm_step over t = t0, t0 + 1, ..."""
    hs, moments = [], []
    for i in range(xs.shape[0]):
        state, out = nprnn.lstm_step(
            params,
            consts,
            state,
            xs[i],
            variant=variant,
            t=t0 + i,
            key=None if keys is None else keys[i],
            return_moments=return_moments,
            **kw,
        )
        if return_moments:
            out, step_moments = out
            moments.append(step_moments)
        hs.append(out)
    stacked = jax.tree.map(lambda *rows: jnp.stack(rows), *moments) if moments else None
    return state, jnp.stack(hs), stacked


SEQ_CASES = [(c, 0.0) for c in CASES] + [(c, 0.3) for c in CASES if c != "batchnorm-infer"]


@JIT
@pytest.mark.parametrize("case,rate", SEQ_CASES, ids=[f"{c}-p{r}" for c, r in SEQ_CASES])
def test_run_sequence_equals_step_loop(case, rate, jit, key):
    variant = variant_of(case)
    params, consts = random_params(case)
    kw = case_kwargs(case)
    training = kw.pop("training", rate > 0.0)
    state, xs = random_state(), random_inputs()
    t0 = 2 if case == "batchnorm-infer" else 0  # rows 2, 2, 2, ... with T_MAX = 3
    rm = case == "batchnorm-train"
    keys = jax.random.split(key, T) if rate > 0.0 else None
    run = functools.partial(
        nprnn.run_sequence, variant=variant, training=training, dropout_rate=rate, return_moments=rm
    )
    run = jax.jit(run) if jit else run
    out = run(params, consts, state, xs, t0=t0, key=key if rate > 0.0 else None, **kw)
    ref_state, ref_hs, ref_moments = step_loop(
        params,
        consts,
        state,
        xs,
        variant=variant,
        t0=t0,
        keys=keys,
        training=training,
        dropout_rate=rate,
        return_moments=rm,
        **kw,
    )
    assert len(out) == 2  # (final state, outputs), with or without the moments
    final, outputs = out
    hs, moments = outputs if rm else (outputs, None)
    assert isinstance(final, nprnn.LSTMState)
    assert hs.shape == (T, B, H)
    assert_close(hs, ref_hs)
    assert_close(final.h, ref_state.h)
    assert_close(final.c, ref_state.c)
    assert_close(hs[-1], final.h)
    if rm:
        assert_trees_close(moments, ref_moments)
        assert moments["x"]["mean"].shape == (T, 4 * H) and moments["c"]["var"].shape == (T, H)
    # The whole sequence also matches the NumPy reference (dropout masks from the same keys).
    h, c = np.asarray(state.h), np.asarray(state.c)
    for i in range(T):
        mask = None
        if keys is not None:
            mask = jax.random.bernoulli(keys[i], 1.0 - rate, (B, H)) / (1.0 - rate)
        h, c, _ = np_step(
            variant, params, consts, h, c, xs[i], training=training, t=t0 + i, mask=mask, **kw
        )
        assert_close(hs[i], h, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("case", NOT_BN_TRAIN)
def test_seq_lengths_match_unpadded_examples(case):
    variant = variant_of(case)
    params, consts = random_params(case)
    kw = case_kwargs(case)
    kw.pop("training", None)
    t0 = 1 if case == "batchnorm-infer" else 0
    state, xs = random_state(), random_inputs()
    lengths = [T, 2, 0, 4]
    run = functools.partial(nprnn.run_sequence, variant=variant, t0=t0, **kw)

    @jax.jit  # every run in one program: one compilation
    def all_runs(params, consts, state, xs):
        padded = run(params, consts, state, xs, seq_lengths=jnp.asarray(lengths))
        alone = []  # each example alone, unbatched ([H] state, [L, D] inputs), unpadded
        for b, length in enumerate(lengths):
            start = nprnn.LSTMState(h=state.h[b], c=state.c[b])
            alone.append(run(params, consts, start, xs[:length, b]) if length else (start, None))
        full = run(params, consts, state, xs, seq_lengths=jnp.full((B,), T))[1]
        return padded, alone, full, run(params, consts, state, xs)[1]

    (final, hs), alone, hs_full, hs_none = all_runs(params, consts, state, xs)
    assert hs.shape == (T, B, H)
    for b, (length, (alone_final, alone_hs)) in enumerate(zip(lengths, alone, strict=True)):
        if length:
            assert alone_hs.shape == (length, H)
            assert_close(hs[:length, b], alone_hs)
        assert_close(final.h[b], alone_final.h)
        assert_close(final.c[b], alone_final.c)
        assert np.all(np.asarray(hs[length:, b]) == 0.0)  # padded outputs are exactly zero
    assert np.all(np.asarray(final.c[2]) == np.asarray(state.c[2]))  # length 0: state unchanged
    assert_close(hs_full, hs_none)  # a full-length seq_lengths changes nothing


def test_seq_lengths_batchnorm_training_carries_state():
    """Batchnorm training with padding: a masked step loop (statistics include padded rows)."""
    params, consts = random_params("batchnorm")
    state, xs = random_state(), random_inputs()
    lengths = np.array([T, 2, 0, 4])
    final, (hs, moments) = nprnn.run_sequence(
        params,
        consts,
        state,
        xs,
        variant="batchnorm",
        training=True,
        seq_lengths=jnp.asarray(lengths),
        return_moments=True,
    )
    h, c = np.asarray(state.h), np.asarray(state.c)
    for i in range(T):
        h_new, c_new, step_moments = np_step(
            "batchnorm", params, consts, h, c, xs[i], training=True
        )
        valid = (i < lengths)[:, None]
        assert_close(hs[i], np.where(valid, h_new, 0.0))
        assert_trees_close(jax.tree.map(lambda m, i=i: m[i], moments), step_moments)
        h, c = np.where(valid, h_new, h), np.where(valid, c_new, c)
    assert_close(final.h, h)
    assert_close(final.c, c)


@pytest.mark.parametrize("case", ["lstm", "weightnorm", "normprop", "layernorm", "batchnorm-train"])
def test_lax_scan_of_lstm_step(case):
    variant = variant_of(case)
    params, consts = random_params(case)
    training = is_training(case)
    state, xs = random_state(), random_inputs()
    step = functools.partial(nprnn.lstm_step, params, consts, variant=variant, training=training)
    final, hs = jax.lax.scan(step, state, xs)
    ref_final, ref_hs = nprnn.run_sequence(
        params, consts, state, xs, variant=variant, training=training
    )
    assert_close(hs, ref_hs)
    assert_close(final.h, ref_final.h)
    assert_close(final.c, ref_final.c)
    # The reference path (plain autodiff of lax.scan), where unroll is only a schedule.
    unrolled_final, unrolled = nprnn.run_sequence(
        params,
        consts,
        state,
        xs,
        variant=variant,
        training=training,
        unroll=3,
        fused_backward=False,
    )
    assert_close(unrolled, ref_hs)
    assert_close(unrolled_final.c, ref_final.c)


# ---------------------------------------------------------------------------- 3. jax.vmap


@pytest.mark.parametrize("case", NOT_BN_TRAIN)
def test_vmap_over_examples_equals_batched_call(case):
    variant = variant_of(case)
    params, consts = random_params(case)
    kw = case_kwargs(case)
    kw.pop("training", None)
    state, xs = random_state(), random_inputs()
    step_kw = {"t": 4} if case == "batchnorm-infer" else {}
    seq_kw = {"t0": 1} if case == "batchnorm-infer" else {}

    def one_step(s, x):
        return nprnn.lstm_step(params, consts, s, x, variant=variant, **kw, **step_kw)

    v_state, v_h = jax.vmap(one_step)(state, xs[0])
    b_state, b_h = one_step(state, xs[0])
    assert v_h.shape == (B, H)
    assert_close(v_h, b_h)
    assert_close(v_state.c, b_state.c)

    def one_sequence(s, x_seq, length):
        return nprnn.run_sequence(
            params, consts, s, x_seq, variant=variant, seq_lengths=length, **kw, **seq_kw
        )

    lengths = jnp.array([T, 3, 1, 5])
    v_final, v_hs = jax.vmap(one_sequence, in_axes=(0, 1, 0), out_axes=(0, 1))(state, xs, lengths)
    b_final, b_hs = one_sequence(state, xs, lengths)
    assert v_hs.shape == (T, B, H)
    assert_close(v_hs, b_hs)
    assert_close(v_final.h, b_final.h)
    assert_close(v_final.c, b_final.c)


# ------------------------------------------------------------ 4. gradients vs finite differences


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_finite_differences(case):
    variant = variant_of(case)
    params, consts = random_params(case)
    kw = case_kwargs(case)
    state, xs = random_state(), random_inputs()[:3]
    step_kw = {"t": 1} if case == "batchnorm-infer" else {}

    def sequence(params, xs):
        final, hs = nprnn.run_sequence(params, consts, state, xs, variant=variant, **kw)
        return hs, final.c

    def step(params, state, x):
        new, h = nprnn.lstm_step(params, consts, state, x, variant=variant, **kw, **step_kw)
        return h, new.c

    # The sequence jitted so that the evaluations of the finite differences share one
    # compilation (an eager scan compiles at every call); the step runs op by op. eps = 1e-5
    # (float64): at jax's default 1e-4 the truncation error of the central difference alone is
    # 8e-5 relative for the released normprop form, whose cell is not normalized.
    check_grads(jax.jit(sequence), (params, xs), order=1, modes=["rev"], eps=1e-5)
    check_grads(step, (params, state, xs[0]), order=1, modes=["rev"], eps=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_fused_backward_equals_autodiff_of_scan(case, key):
    """The hand-written backward pass (fused_backward=True, the default), with the input
    projection hoisted before the scan or done in the loop (hoist_input), against plain autodiff
    of lax.scan with the hoisted projection: outputs, final state, batch moments, and gradients
    w.r.t. params, consts (normprop's var_c, var_h), the initial state and the inputs, with
    padding, dropout and a loss on the final state. (The default path is also checked against
    finite differences above.)"""
    variant = variant_of(case)
    params, consts = random_params(case)
    kw = case_kwargs(case)
    training = kw.pop("training", True)
    rate = 0.3 if training else 0.0
    rm = case == "batchnorm-train"
    state, xs = random_state(), random_inputs()
    lengths = jnp.array([T, 2, 0, 4])
    projection = random_inputs(seed=11, shape=(T, B, H))

    def loss(params, consts, state, xs, fused, hoist):
        out = nprnn.run_sequence(
            params,
            consts,
            state,
            xs,
            variant=variant,
            training=training,
            key=key,
            dropout_rate=rate,
            seq_lengths=lengths,
            t0=1,
            fused_backward=fused,
            hoist_input=hoist,
            return_moments=rm,
            **kw,
        )
        final, outputs = out
        hs = outputs[0] if rm else outputs
        value = jnp.sum(hs * projection) + jnp.sum(final.h * projection[0]) + jnp.sum(final.c**2)
        return value, out

    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)
    paths = [(False, True), (True, True), (True, False), (False, False)]  # reference first

    @jax.jit  # every path in one program: one compilation
    def all_paths(params, consts, state, xs):
        return [value_and_grad(params, consts, state, xs, f, h) for f, h in paths]

    results = all_paths(params, consts, state, xs)
    (ref_value, ref_out), ref = results[0]
    for (fused, hoist), ((value, out), grads) in zip(paths[1:], results[1:], strict=True):
        path = f"fused_backward={fused}, hoist_input={hoist}"
        assert_close(value, ref_value, err_msg=path)
        assert_trees_close(out, ref_out, err_msg=path)  # outputs, final state (and moments)
        assert_trees_close(grads, ref, rtol=1e-9, atol=1e-11, err_msg=path)
    grads = results[1][1]  # the default path on CPU
    for name, g in grads[0].items():  # every parameter gets a gradient
        assert np.any(np.asarray(g) != 0.0), name
    for name, g in grads[1].items():
        assert np.all(np.asarray(g) != 0.0), name
    if rm:
        assert ref_out[1][1]["x"]["mean"].shape == (T, 4 * H)
    else:  # (batchnorm training's batch statistics include the padded inputs)
        assert np.all(np.asarray(grads[3][:, 2]) == 0.0)  # example 2 has length 0: no gradient
        assert np.all(np.asarray(grads[3][2:, 1]) == 0.0)  # nor padded steps
    assert np.any(np.asarray(grads[3][:, 0]) != 0.0)


def test_fused_backward_gradient_wrt_bn_stats():
    params, consts = random_params("batchnorm")
    state, xs = random_state(), random_inputs()

    def loss(bn_stats, fused):
        _, hs = nprnn.run_sequence(
            params, consts, state, xs, variant="batchnorm", bn_stats=bn_stats, fused_backward=fused
        )
        return jnp.sum(hs**2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    ref = grad(random_bn_stats(), False)
    assert np.all(np.asarray(ref["c"]["var"]) != 0.0)
    assert_trees_close(grad(random_bn_stats(), True), ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("case", ["normprop", "normprop-released", "batchnorm-train"])
def test_forward_mode_with_fused_backward_false(case):
    """jax.jvp and jax.jacfwd through the reference path (fused_backward=False) agree with the
    reverse-mode Jacobian of the default hand-written backward pass and with finite
    differences."""
    variant = variant_of(case)
    params, consts = random_params(case)
    state, xs = random_state(), random_inputs()[:3]

    def hs(xs, fused):
        return nprnn.run_sequence(
            params, consts, state, xs, variant=variant, fused_backward=fused, **case_kwargs(case)
        )[1]

    forward = functools.partial(hs, fused=False)
    jac_fwd = jax.jacfwd(forward)(xs)
    jac_rev = jax.jacrev(functools.partial(hs, fused=True))(xs)
    assert jac_fwd.shape == (*hs(xs, False).shape, *xs.shape)
    assert np.any(np.asarray(jac_fwd) != 0.0)
    assert_close(jac_fwd, jac_rev, rtol=1e-9, atol=1e-11)
    tangent = random_inputs(seed=9)[:3]
    out, jvp = jax.jvp(forward, (xs,), (tangent,))
    assert_close(out, hs(xs, True), rtol=1e-12, atol=1e-13)
    assert_close(jvp, jnp.einsum("tbhsad,sad->tbh", jac_rev, tangent), rtol=1e-9, atol=1e-11)
    eps = 1e-6  # central difference along the tangent, float64
    fd = (forward(xs + eps * tangent) - forward(xs - eps * tangent)) / (2 * eps)
    assert_close(jvp, fd, rtol=1e-6, atol=1e-8)


def test_reference_path_supports_forward_mode():
    params, consts = random_params("normprop")
    state, xs = random_state(), random_inputs()[:3]
    run = functools.partial(nprnn.run_sequence, variant="normprop", fused_backward=False)
    check_grads(jax.jit(lambda p, x: run(p, consts, state, x)[1]), (params, xs), 1, modes=["fwd"])


@pytest.mark.parametrize("transform", ["jvp", "jacfwd"])
def test_forward_mode_through_the_default_names_fused_backward_false(transform):
    """The default hand-written backward pass is a jax.custom_vjp (reverse mode only): forward
    mode raises a TypeError that says what to pass, instead of JAX's generic message."""
    params, consts = random_params("normprop")
    state, xs = random_state(), random_inputs()[:3]

    def hs(xs):
        return nprnn.run_sequence(params, consts, state, xs, variant="normprop")[1]

    call = {"jvp": lambda: jax.jvp(hs, (xs,), (xs,)), "jacfwd": lambda: jax.jacfwd(hs)(xs)}
    with pytest.raises(TypeError, match=r"reverse mode only .* pass fused_backward=False"):
        call[transform]()


@pytest.mark.parametrize("case", ["normprop", "normprop-released", "batchnorm"])
def test_matmul_dtype_mixed_precision(case):
    """matmul_dtype casts the normalized weights for the two products only; state, gates and
    outputs stay in the dtype of x (float64 here). (The cast is variant-independent code: the
    variant with constants, in both forms, and the one with the most normalizations.)"""
    variant = variant_of(case)
    params, consts = random_params(case)
    state, xs = random_state(), random_inputs()
    kw = {"training": True} if variant == "batchnorm" else {}

    def loss(params, matmul_dtype):
        final, hs = nprnn.run_sequence(
            params, consts, state, xs, variant=variant, matmul_dtype=matmul_dtype, **kw
        )
        return jnp.sum(hs**2), (final, hs)

    @jax.jit
    def both(params):
        grad = jax.grad(loss, has_aux=True)
        return grad(params, None), grad(params, jnp.float32)

    (ref_grads, (ref_final, ref_hs)), (grads, (final, hs)) = both(params)
    assert hs.dtype == final.c.dtype == jnp.float64
    assert_close(hs, ref_hs, rtol=0, atol=1e-5)
    assert_close(final.c, ref_final.c, rtol=0, atol=1e-5)
    assert np.max(np.abs(np.asarray(hs) - np.asarray(ref_hs))) > 1e-12  # the cast is applied
    for name in params:
        assert grads[name].dtype == jnp.float64
        assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-5)
    for matmul_dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 0.1)):
        step_ref = nprnn.lstm_step(params, consts, state, xs[0], variant=variant, **kw)[1]
        h = nprnn.lstm_step(
            params, consts, state, xs[0], variant=variant, matmul_dtype=matmul_dtype, **kw
        )[1]
        assert h.dtype == jnp.float64
        assert_close(h, step_ref, rtol=0, atol=tol)
        assert np.max(np.abs(np.asarray(h) - np.asarray(step_ref))) > 1e-12


# ----------------------------------------------------------------------------- 5. flax LSTMCell


def test_lstm_matches_flax_lstm_cell(key):
    params, consts = random_params("lstm")
    state, xs = random_state(), random_inputs()
    cell = flax.linen.LSTMCell(features=H, param_dtype=jnp.float64)
    variables = cell.init(key, (state.c, state.h), xs[0])
    # Our fused [*, 4H] blocks are in the order i, f, o, g; flax has one Dense per gate, the input
    # ones (ii, if, ig, io) without bias, the recurrent ones (hi, hf, hg, ho) with the bias.
    flax_params = {}
    for k, gate in enumerate("ifog"):
        cols = slice(k * H, (k + 1) * H)
        flax_params["i" + gate] = {"kernel": params["w_x"][:, cols]}
        flax_params["h" + gate] = {"kernel": params["w_h"][:, cols], "bias": params["b"][cols]}
    ours = {"params": flax_params}
    assert jax.tree.structure(ours) == jax.tree.structure(variables)
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, variables)
    carry = (state.c, state.h)  # flax's carry is (c, h)
    for t in range(T):
        carry, flax_h = cell.apply(ours, carry, xs[t])
        state, h = nprnn.lstm_step(params, consts, state, xs[t], variant="lstm")
        assert_close(h, flax_h)
        assert_close(state.c, carry[0])
        assert_close(state.h, carry[1])


# ------------------------------------------------------------------------- 6. initialization


def test_default_gammas_are_the_papers():
    assert nprnn.DEFAULT_GAMMAS == GOLDEN_GAMMAS
    assert set(nprnn.VARIANTS) == set(GOLDEN_SHAPES)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_init_params_layout_and_values(variant, dtype, key):
    params, consts = nprnn.init_params(
        key, input_size=D, hidden_size=H, variant=variant, dtype=dtype
    )
    assert isinstance(params, dict) and isinstance(consts, dict)
    assert jax.tree.map(jnp.shape, params) == GOLDEN_SHAPES[variant]
    assert jax.tree.map(jnp.shape, consts) == GOLDEN_CONSTS[variant]
    for leaf in jax.tree.leaves((params, consts)):
        assert leaf.dtype == dtype
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    gx, gh, gc = GOLDEN_GAMMAS[variant]
    if gx is not None:
        assert np.all(np.asarray(params["gamma_x"]) == np.asarray(gx, dtype))
        assert np.all(np.asarray(params["gamma_h"]) == np.asarray(gh, dtype))
    if gc is not None:
        assert np.all(np.asarray(params["gamma_c"]) == np.asarray(gc, dtype))
    if "beta_c" in params:
        assert np.all(np.asarray(params["beta_c"]) == 0.0)
    assert np.all(np.asarray(params["b"]) == 0.0)
    if variant == "normprop":
        var_c, var_h = nprnn.normprop_variances(gx, gh, gc, method="analytic")
        assert_close(consts["var_c"], var_c, rtol=tol, atol=0)
        assert_close(consts["var_h"], var_h, rtol=tol, atol=0)
    if variant in ("weightnorm", "normprop"):
        for name in ("w_x", "w_h"):
            assert_close(np.linalg.norm(np.asarray(params[name], np.float64), axis=0), 1.0, tol)
    # Deterministic in the key, and the key matters.
    again, _ = nprnn.init_params(key, input_size=D, hidden_size=H, variant=variant, dtype=dtype)
    assert_trees_close(again, params, rtol=0, atol=0)
    other, _ = nprnn.init_params(
        jax.random.key(1), input_size=D, hidden_size=H, variant=variant, dtype=dtype
    )
    assert np.max(np.abs(np.asarray(other["w_h"]) - np.asarray(params["w_h"]))) > 0.1


@pytest.mark.parametrize("input_size", [3, 5, 8])  # D < H, D == H, D > H
@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_init_params_per_gate_orthogonal_blocks(variant, input_size, key):
    params, _ = nprnn.init_params(
        key, input_size=input_size, hidden_size=H, variant=variant, dtype=jnp.float64
    )
    w_x, w_h = np.asarray(params["w_x"]), np.asarray(params["w_h"])
    blocks_h = [w_h[:, k * H : (k + 1) * H] for k in range(4)]
    blocks_x = [w_x[:, k * H : (k + 1) * H] for k in range(4)]
    for w in blocks_h:  # W_g^T W_g = I for each gate
        assert_close(w.T @ w, np.eye(H), rtol=0, atol=1e-12)
    for w in blocks_x:
        if input_size >= H:
            assert_close(w.T @ w, np.eye(H), rtol=0, atol=1e-12)
        elif variant in ("weightnorm", "normprop"):  # rows orthogonal before the unit-norm rescale
            assert_close(np.linalg.norm(w, axis=0), 1.0)
        else:
            assert_close(w @ w.T, np.eye(input_size), rtol=0, atol=1e-12)
    for blocks in (blocks_h, blocks_x):  # an independent draw per gate
        for a in range(4):
            for b in range(a + 1, 4):
                assert np.max(np.abs(blocks[a] - blocks[b])) > 0.1


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_init_params_gammas_and_forget_bias(variant, key):
    params, consts = nprnn.init_params(
        key,
        input_size=D,
        hidden_size=H,
        variant=variant,
        gamma_x=0.7,
        gamma_h=1.3,
        gamma_c=0.4,
        forget_bias=1.5,
        dtype=jnp.float64,
    )
    b = np.asarray(params["b"])
    assert np.all(b[H : 2 * H] == 1.5)  # the forget gate is the second block (i, f, o, g)
    assert np.all(b[:H] == 0.0) and np.all(b[2 * H :] == 0.0)
    if variant != "lstm":
        assert np.all(np.asarray(params["gamma_x"]) == 0.7)
        assert np.all(np.asarray(params["gamma_h"]) == 1.3)
    if variant in ("normprop", "layernorm", "batchnorm"):
        assert np.all(np.asarray(params["gamma_c"]) == 0.4)
    if variant == "normprop":
        var_c, var_h = nprnn.normprop_variances(0.7, 1.3, 0.4)
        assert_close(consts["var_c"], var_c)
        assert_close(consts["var_h"], var_h)
    else:
        assert consts == {}


def test_init_params_released_compensation(key):
    kw = dict(input_size=D, hidden_size=H, variant="normprop", dtype=jnp.float64)
    paper, paper_consts = nprnn.init_params(key, gamma_h=1.3, gamma_c=0.4, **kw)
    params, consts = nprnn.init_params(key, gamma_h=1.3, gamma_c=0.4, compensation="released", **kw)
    assert jax.tree.map(jnp.shape, consts) == {"s_h": (), "s_c": ()}
    s_h, s_c = nprnn.released_constants(1.3, 0.4)  # s(gamma) of the initial gamma_h, gamma_c
    assert_close(consts["s_h"], s_h)
    assert_close(consts["s_c"], s_c)
    assert_trees_close(params, paper)  # the same parameters: only the constants differ
    assert sorted(paper_consts) == ["var_c", "var_h"]
    with pytest.raises(ValueError, match="unknown compensation 'eq15'; expected one of"):
        nprnn.init_params(key, compensation="eq15", **kw)
    with pytest.raises(ValueError, match="variance_method='simulated' applies to compensation="):
        nprnn.init_params(key, compensation="released", variance_method="simulated", **kw)


def test_init_state(key):
    state = nprnn.init_state(B, H)
    assert isinstance(state, nprnn.LSTMState) and state._fields == ("h", "c")
    assert state.h.shape == state.c.shape == (B, H)
    assert state.h.dtype == jnp.float32
    assert np.all(np.asarray(state.h) == 0) and np.all(np.asarray(state.c) == 0)
    assert nprnn.init_state(2, 3, jnp.float64).c.dtype == jnp.float64


def test_init_bn_stats():
    stats = nprnn.init_bn_stats(H, T_MAX, jnp.float64)
    assert jax.tree.map(jnp.shape, stats) == {
        "x": {"mean": (T_MAX, 4 * H), "var": (T_MAX, 4 * H)},
        "h": {"mean": (T_MAX, 4 * H), "var": (T_MAX, 4 * H)},
        "c": {"mean": (T_MAX, H), "var": (T_MAX, H)},
    }
    for which in ("x", "h", "c"):
        assert np.all(np.asarray(stats[which]["mean"]) == 0.0)
        assert np.all(np.asarray(stats[which]["var"]) == 1.0)
        assert stats[which]["var"].dtype == jnp.float64


@JIT
def test_project_unit_norm(jit):
    params, _ = random_params("normprop")
    params["extra"] = jnp.arange(3.0)
    before = jax.tree.map(np.array, params)
    project = jax.jit(nprnn.project_unit_norm) if jit else nprnn.project_unit_norm
    out = project(params)
    assert sorted(out) == sorted(params)
    for name in ("w_x", "w_h"):
        w, w_out = np.asarray(params[name]), np.asarray(out[name])
        assert_close(np.linalg.norm(w_out, axis=0), 1.0)
        assert_close(w_out * np.linalg.norm(w, axis=0), w)  # same directions
    for name in params:
        if name not in ("w_x", "w_h"):
            assert np.array_equal(np.asarray(out[name]), before[name])
    assert_trees_close(params, before, rtol=0, atol=0)  # the input is not modified
    # The forward pass of weightnorm / normprop is invariant to it.
    state, x = random_state(), random_inputs()[0]
    for variant, consts in (("weightnorm", {}), ("normprop", {"var_c": 0.5, "var_h": 0.3})):
        names = GOLDEN_SHAPES[variant]
        h = nprnn.lstm_step({k: params[k] for k in names}, consts, state, x, variant=variant)[1]
        h_proj = nprnn.lstm_step({k: out[k] for k in names}, consts, state, x, variant=variant)[1]
        assert_close(h_proj, h)


# -------------------------------------------------- 9. gradients over long sequences (T = 1000)


LONG_CASES = [(v, jnp.float32) for v in nprnn.VARIANTS] + [("normprop", jnp.float64)]


@pytest.mark.parametrize(
    "variant,dtype", LONG_CASES, ids=[f"{v}-{jnp.dtype(d).name}" for v, d in LONG_CASES]
)
def test_gradients_finite_over_1000_steps(variant, dtype, key, request):
    """In float32, as users train; normprop also in float64 at the paper's gammas.

    The paper's init gammas (2, 2, 1) make normprop gradients grow through time (about 1.1x per
    step here, 1e28 at T = 1000 in float64; README, "Gradient norm at initialization"): in
    float32 they overflow. The float32 normprop case therefore uses gamma_h = 1 < gamma_x, the
    stable side of the Figure 1 study; the float64 case keeps the paper's gammas.
    """
    del request
    hidden, batch, inputs, steps = 16, 4, 8, 1000
    gammas = {"gamma_h": 1.0} if (variant, dtype) == ("normprop", jnp.float32) else {}
    params, consts = nprnn.init_params(
        key, input_size=inputs, hidden_size=hidden, variant=variant, dtype=dtype, **gammas
    )
    k_x, k_p = jax.random.split(jax.random.key(7))
    xs = jax.random.normal(k_x, (steps, batch, inputs), dtype)
    projection = jax.random.normal(k_p, (steps, batch, hidden), dtype)
    state = nprnn.init_state(batch, hidden, dtype)

    @jax.jit
    def grads(params, xs):
        def loss(params, xs):
            _, hs = nprnn.run_sequence(
                params, consts, state, xs, variant=variant, training=variant == "batchnorm"
            )
            return jnp.sum(hs * projection)

        return jax.grad(loss, argnums=(0, 1))(params, xs)

    g_params, g_xs = grads(params, xs)
    assert jax.tree.structure(g_params) == jax.tree.structure(params)
    for name, g in g_params.items():
        assert g.dtype == dtype
        assert np.all(np.isfinite(np.asarray(g))), name
        assert np.any(np.asarray(g) != 0.0), name
    assert np.all(np.isfinite(np.asarray(g_xs)))
    assert np.any(np.asarray(g_xs[0]) != 0.0)  # the first input still gets a gradient


# --------------------------------------------------------- 10. one optimizer step, statistics


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_adam_step_changes_params_only(variant, key):
    params, consts = nprnn.init_params(
        key, input_size=D, hidden_size=H, variant=variant, dtype=jnp.float64
    )
    training = variant == "batchnorm"
    bn_stats = nprnn.init_bn_stats(H, T, jnp.float64)
    frozen = jax.tree.map(np.array, (consts, bn_stats))
    xs = random_inputs()
    targets = random_inputs(seed=9, shape=(T, B, H))
    optimizer = optax.adam(1e-2)

    @jax.jit
    def train_step(params, opt_state, consts, bn_stats, xs):
        def loss(params):
            kw = {"return_moments": True} if training else {}
            out = nprnn.run_sequence(
                params,
                consts,
                nprnn.init_state(B, H, jnp.float64),
                xs,
                variant=variant,
                training=training,
                **kw,
            )
            _, outputs = out
            hs, moments = outputs if training else (outputs, None)
            return jnp.mean((hs - targets) ** 2), moments

        (value, moments), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, grads, moments

    opt_state = optimizer.init(params)
    new_params, _, grads, moments = train_step(params, opt_state, consts, bn_stats, xs)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert jax.tree.structure(new_params) == jax.tree.structure(params)
    for name in params:
        old, new = np.asarray(params[name]), np.asarray(new_params[name])
        assert new.dtype == old.dtype
        assert np.all(new != old), f"{name}: some entries were not updated"
    # The frozen pytrees went through the step untouched (only params reach the optimizer).
    assert_trees_close((consts, bn_stats), frozen, rtol=0, atol=0)
    if training:
        assert jax.tree.structure(moments) == jax.tree.structure(bn_stats)


@JIT
def test_update_bn_stats_ema(jit):
    params, consts = random_params("batchnorm")
    max_steps, t0, momentum = 10, 3, 0.9
    stats = random_bn_stats(seed=5, max_steps=max_steps)
    steps = 4
    _, (_, moments) = nprnn.run_sequence(
        params,
        consts,
        random_state(),
        random_inputs()[:steps],
        variant="batchnorm",
        training=True,
        return_moments=True,
    )
    update = functools.partial(nprnn.update_bn_stats, momentum=momentum)
    update = jax.jit(update) if jit else update
    new = update(stats, moments, t0=t0)
    assert jax.tree.structure(new) == jax.tree.structure(stats)
    for which in ("x", "h", "c"):
        for kind in ("mean", "var"):
            old_rows = np.asarray(stats[which][kind])
            new_rows = np.asarray(new[which][kind])
            batch = np.asarray(moments[which][kind])
            assert new_rows.shape == old_rows.shape
            rows = slice(t0, t0 + steps)
            expected = momentum * old_rows[rows] + (1 - momentum) * batch
            assert_close(new_rows[rows], expected)
            assert np.array_equal(new_rows[:t0], old_rows[:t0])
            assert np.array_equal(new_rows[t0 + steps :], old_rows[t0 + steps :])
    # momentum 0 copies the batch moments; t0 = max_steps - T (the last rows) fits exactly.
    copied = nprnn.update_bn_stats(stats, moments, momentum=0.0, t0=max_steps - steps)
    assert_close(copied["c"]["var"][max_steps - steps :], moments["c"]["var"])


@pytest.mark.parametrize("t0", [np.int64(8), jnp.asarray(8), 9])
def test_update_bn_stats_beyond_max_steps_updates_the_last_row(t0):
    """Steps at or beyond max_steps update the last row (the one inference reads there), one
    after the other; the earlier rows are untouched (tests/test_bn_stats.py has the rest)."""
    stats = random_bn_stats(seed=5, max_steps=10)
    moments = jax.tree.map(lambda a: a[:4] + 1.0, random_bn_stats(seed=6, max_steps=4))
    new = nprnn.update_bn_stats(stats, moments, momentum=0.9, t0=t0)
    for which in ("x", "h", "c"):
        for kind in ("mean", "var"):
            old_rows, batch = np.asarray(stats[which][kind]), np.asarray(moments[which][kind])
            expected = old_rows[9]
            for j in range(4):
                if int(t0) + j >= 9:
                    expected = 0.9 * expected + 0.1 * batch[j]
            assert_close(new[which][kind][9], expected)
            if int(t0) < 9:  # step 8 has its own row
                assert_close(new[which][kind][8], 0.9 * old_rows[8] + 0.1 * batch[0])
            rows = min(int(t0), 9)
            assert np.array_equal(new[which][kind][:rows], old_rows[:rows])


@pytest.mark.parametrize(
    "t0", [-1, np.int64(-2), 2.5, None], ids=["neg", "np-neg", "float", "none"]
)
def test_update_bn_stats_rejects_bad_concrete_t0(t0):
    stats = nprnn.init_bn_stats(H, 10, jnp.float64)
    moments = jax.tree.map(lambda a: a[:4] + 1.0, nprnn.init_bn_stats(H, 4, jnp.float64))
    with pytest.raises(ValueError, match="t0 must be a non-negative integer time index"):
        nprnn.update_bn_stats(stats, moments, t0=t0)


# --------------------------------------------------------------------------- 11. error messages


@pytest.fixture
def setup():
    params, consts = random_params("normprop")
    return params, consts, random_state(), random_inputs()


def test_error_unknown_variant(setup, key):
    params, consts, state, xs = setup
    calls = [
        lambda: nprnn.lstm_step(params, consts, state, xs[0], variant="gru"),
        lambda: nprnn.run_sequence(params, consts, state, xs, variant="gru"),
        lambda: nprnn.init_params(key, input_size=D, hidden_size=H, variant="gru"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"unknown LSTM variant 'gru'; expected one of") as e:
            call()
        for name in nprnn.VARIANTS:
            assert repr(name) in str(e.value)


def test_error_bad_x(setup):
    params, consts, state, xs = setup
    step = functools.partial(nprnn.lstm_step, params, consts, state, variant="normprop")
    run = functools.partial(nprnn.run_sequence, params, consts, state, variant="normprop")
    with pytest.raises(
        ValueError, match=re.escape("x must have shape [B, D] (or [D]), got rank 3")
    ):
        step(xs)
    with pytest.raises(ValueError, match=re.escape("xs must have shape [T, B, D] (or [T, D])")):
        run(xs[0, 0])
    with pytest.raises(ValueError, match="got rank 4"):
        run(xs[None])
    with pytest.raises(ValueError, match="x has 7 features but the layer expects input_size=3"):
        step(jnp.zeros((B, 7)))
    with pytest.raises(ValueError, match="xs has 7 features but the layer expects input_size=3"):
        run(jnp.zeros((T, B, 7)))
    with pytest.raises(ValueError, match="x must have a floating dtype, got int32"):
        step(jnp.zeros((B, D), jnp.int32))
    with pytest.raises(ValueError, match="xs must have a floating dtype, got bool"):
        run(jnp.zeros((T, B, D), bool))
    with pytest.raises(TypeError, match="x must be an array, got list"):
        step([[0.0] * D] * B)


def test_error_bad_state(setup):
    params, consts, state, xs = setup
    step = functools.partial(nprnn.lstm_step, params, consts, variant="normprop")
    run = functools.partial(nprnn.run_sequence, params, consts, variant="normprop")
    small = nprnn.init_state(B - 1, H, jnp.float64)
    with pytest.raises(ValueError, match=re.escape("state.h has shape (3, 5)")):
        step(small, xs[0])
    with pytest.raises(ValueError, match=re.escape("need (4, 5)")):
        run(small, xs)
    bad_c = nprnn.LSTMState(h=state.h, c=state.c[:, :2])
    with pytest.raises(ValueError, match=re.escape("state.c has shape (4, 2)")):
        step(bad_c, xs[0])
    with pytest.raises(ValueError, match="state.h has shape"):  # unbatched x, batched state
        step(state, xs[0, 0])
    with pytest.raises(TypeError, match="state must be an LSTMState"):
        step(state.h, xs[0])


def test_error_plain_tuple_state_is_refused(setup):
    # A (c, h) carry from Flax would otherwise be read with h and c swapped.
    params, consts, state, xs = setup
    for call, x in (
        (functools.partial(nprnn.lstm_step, params, consts, variant="normprop"), xs[0]),
        (functools.partial(nprnn.run_sequence, params, consts, variant="normprop"), xs),
    ):
        for plain in ((state.h, state.c), [state.h, state.c]):
            with pytest.raises(
                TypeError, match=r"got (tuple|list)\. .*Flax's LSTM carry is \(c, h\)"
            ):
                call(plain, x)
        with pytest.raises(TypeError, match=re.escape("nprnn.LSTMState(h=h, c=c)")):
            call(tuple(state), x)


def test_error_bad_params_and_consts(setup):
    params, consts, state, xs = setup
    lacking = {k: v for k, v in params.items() if k != "gamma_c"}
    with pytest.raises(ValueError, match=re.escape("lack ['gamma_c']")):
        nprnn.lstm_step(lacking, consts, state, xs[0], variant="normprop")
    with pytest.raises(ValueError, match=re.escape("lack ['gamma_c']")):
        nprnn.run_sequence(lacking, consts, state, xs, variant="normprop")
    lstm_params, _ = random_params("lstm")
    with pytest.raises(ValueError, match=r"params for variant 'layernorm' lack \['gamma_x'"):
        nprnn.lstm_step(lstm_params, {}, state, xs[0], variant="layernorm")
    for bad in ({}, None, {"var_c": 1.0}, {"s_h": 1.0, "var_h": 1.0}):
        with pytest.raises(ValueError, match="consts for variant 'normprop' need 'var_c'"):
            nprnn.lstm_step(params, bad, state, xs[0], variant="normprop")
    with pytest.raises(TypeError, match="params must be a dict"):
        nprnn.lstm_step(list(params.values()), consts, state, xs[0], variant="normprop")
    with pytest.raises(TypeError, match="consts must be a dict"):
        nprnn.lstm_step(params, [1.0, 1.0], state, xs[0], variant="normprop")


@pytest.mark.parametrize("seq", [False, True], ids=["lstm_step", "run_sequence"])
def test_error_params_or_consts_of_another_variant(setup, seq):
    """Keys that do not belong to the variant raise instead of being dropped silently (before:
    normprop's params and consts with variant="weightnorm" ran as weightnorm, without gamma_c
    and the variance constants)."""
    params, consts, state, xs = setup  # normprop's, paper form

    def call(params, consts, variant):
        if seq:
            return nprnn.run_sequence(params, consts, state, xs, variant=variant)
        return nprnn.lstm_step(params, consts, state, xs[0], variant=variant)

    message = (
        "params for variant 'weightnorm' have keys that do not belong to it: ['gamma_c'] (they "
        "are the params of variant 'normprop'); 'weightnorm' takes exactly "
        "['w_x', 'w_h', 'b', 'gamma_x', 'gamma_h']"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        call(params, consts, "weightnorm")
    weightnorm = {k: v for k, v in params.items() if k != "gamma_c"}
    message = (
        "consts for variant 'weightnorm' have keys that do not belong to it: ['var_c', 'var_h']; "
        "'weightnorm' takes no constants (consts={}), only normprop has them"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        call(weightnorm, consts, "weightnorm")
    call(weightnorm, {}, "weightnorm")  # exactly the variant's keys
    call(weightnorm, None, "weightnorm")
    lstm = {k: params[k] for k in ("w_x", "w_h", "b")}
    with pytest.raises(ValueError, match=r"for variant 'lstm' have keys .*\['gamma_c', 'gamma_h'"):
        call(params, {}, "lstm")
    with pytest.raises(ValueError, match=re.escape("params for variant 'lstm' have keys that do")):
        call({**lstm, "h0": jnp.zeros(H)}, {}, "lstm")  # an unknown key, no variant's
    # normprop's constants are one form or the other, not a mix of both.
    both = {**consts, "s_h": jnp.asarray(0.5), "s_c": jnp.asarray(0.5)}
    message = (
        "consts for variant 'normprop' have keys that do not belong to its 'paper' form: "
        "['s_c', 's_h']; it takes 'var_c' and 'var_h' (compensation 'paper') or 's_h' and 's_c' "
        "(compensation 'released'), one form only"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        call(params, both, "normprop")
    with pytest.raises(ValueError, match=re.escape("its 'released' form: ['var_c']")):
        call(params, {"s_h": 0.5, "s_c": 0.5, "var_c": 1.0}, "normprop")


@pytest.mark.parametrize("case", ["normprop", "normprop-released", "batchnorm-infer"])
def test_params_and_consts_may_be_any_mapping(case):
    """flax.core.FrozenDict params and consts (and any other Mapping) give the dict's numbers."""
    variant = variant_of(case)
    params, consts = random_params(case)
    state, xs = random_state(), random_inputs()
    kw = case_kwargs(case)
    step_kw = {"t": 1} if case == "batchnorm-infer" else {}
    frozen_p, frozen_c = flax.core.FrozenDict(params), flax.core.FrozenDict(consts)
    for fused in (True, False):
        expected = nprnn.run_sequence(
            params, consts, state, xs, variant=variant, fused_backward=fused, **kw
        )
        actual = nprnn.run_sequence(
            frozen_p, frozen_c, state, xs, variant=variant, fused_backward=fused, **kw
        )
        assert_trees_close(actual, expected, rtol=0, atol=0)
    step = nprnn.lstm_step(frozen_p, frozen_c, state, xs[0], variant=variant, **kw, **step_kw)
    ref = nprnn.lstm_step(params, consts, state, xs[0], variant=variant, **kw, **step_kw)
    assert_trees_close(step, ref, rtol=0, atol=0)
    grads = jax.grad(
        lambda p: jnp.sum(nprnn.run_sequence(p, frozen_c, state, xs, variant=variant, **kw)[1])
    )(frozen_p)
    assert isinstance(grads, flax.core.FrozenDict) and set(grads) == set(params)


def test_error_batchnorm_modes(key):
    params, consts = random_params("batchnorm")
    state, xs = random_state(), random_inputs()
    with pytest.raises(ValueError, match="batchnorm at inference needs bn_stats"):
        nprnn.lstm_step(params, consts, state, xs[0], variant="batchnorm", t=0)
    with pytest.raises(ValueError, match="batchnorm at inference needs bn_stats"):
        nprnn.run_sequence(params, consts, state, xs, variant="batchnorm")
    with pytest.raises(ValueError, match="needs the time step t="):
        nprnn.lstm_step(
            params, consts, state, xs[0], variant="batchnorm", bn_stats=random_bn_stats()
        )
    wrong = nprnn.init_bn_stats(H + 1, T_MAX)
    with pytest.raises(ValueError, match="bn_stats are for hidden_size=6, the layer has "):
        nprnn.lstm_step(params, consts, state, xs[0], variant="batchnorm", bn_stats=wrong, t=0)
    alone = nprnn.LSTMState(h=state.h[0], c=state.c[0])
    with pytest.raises(ValueError, match="batchnorm in training needs a batch axis"):
        nprnn.lstm_step(params, consts, alone, xs[0, 0], variant="batchnorm", training=True)
    with pytest.raises(ValueError, match="batchnorm in training needs a batch axis"):
        nprnn.run_sequence(params, consts, alone, xs[:, 0], variant="batchnorm", training=True)


def test_error_dropout_and_moments(setup):
    params, consts, state, xs = setup
    step = functools.partial(nprnn.lstm_step, params, consts, state, xs[0], variant="normprop")
    run = functools.partial(nprnn.run_sequence, params, consts, state, xs, variant="normprop")
    for call in (step, run):
        with pytest.raises(ValueError, match="recurrent dropout in training needs a PRNG key"):
            call(training=True, dropout_rate=0.1)
        for rate in (1.0, -0.1):
            with pytest.raises(ValueError, match=re.escape("dropout_rate must be in [0, 1)")):
                call(dropout_rate=rate)
        with pytest.raises(ValueError, match="return_moments=True is only meaningful for batchn"):
            call(return_moments=True)
        with pytest.raises(ValueError, match="return_moments=True is only meaningful for batchn"):
            call(return_moments=True, training=True)
    bn_params, bn_consts = random_params("batchnorm")
    with pytest.raises(ValueError, match="return_moments=True is only meaningful for batchn"):
        nprnn.run_sequence(
            bn_params,
            bn_consts,
            state,
            xs,
            variant="batchnorm",
            bn_stats=random_bn_stats(),
            return_moments=True,
        )


def test_error_seq_lengths_shape(setup):
    params, consts, state, xs = setup
    for bad in (jnp.ones((B + 1,), jnp.int32), jnp.ones((B, 1), jnp.int32), 3):
        with pytest.raises(ValueError, match=re.escape("seq_lengths must have shape (4,)")):
            nprnn.run_sequence(params, consts, state, xs, variant="normprop", seq_lengths=bad)


def test_error_init_arguments(key):
    init = functools.partial(nprnn.init_params, key, input_size=D, hidden_size=H)
    for gamma in ("gamma_x", "gamma_h", "gamma_c"):
        for bad in (0.0, -1.0):
            with pytest.raises(
                ValueError, match=f"{gamma} must be a positive finite number, got {bad}"
            ):
                init(variant="normprop", **{gamma: bad})
        with pytest.raises(ValueError, match=f"{gamma} must be a positive finite number"):
            init(variant="layernorm", **{gamma: float("nan")})
    for name in ("input_size", "hidden_size"):
        for bad in (0, -2, 2.5, True, "4"):
            kw = {"input_size": D, "hidden_size": H, name: bad}
            with pytest.raises(ValueError, match=f"{name} must be a positive integer, got"):
                nprnn.init_params(key, variant="lstm", **kw)
    for bad in (0, 2.0):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            nprnn.init_state(bad, H)
        with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
            nprnn.init_state(B, bad)
        with pytest.raises(ValueError, match="max_steps must be a positive integer"):
            nprnn.init_bn_stats(H, bad)
    for dtype in (jnp.int32, bool):
        with pytest.raises(ValueError, match="dtype must be a floating dtype, got"):
            init(variant="lstm", dtype=dtype)
        with pytest.raises(ValueError, match="dtype must be a floating dtype, got"):
            nprnn.init_state(B, H, dtype)
    with pytest.raises(ValueError, match="unknown variance method 'mc'; expected one of"):
        init(variant="normprop", variance_method="mc")
    with pytest.raises(ValueError, match="project_unit_norm needs params with 'w_x' and 'w_h'"):
        nprnn.project_unit_norm({"w_x": jnp.ones((2, 4))})


def test_error_update_bn_stats():
    stats = nprnn.init_bn_stats(H, 4, jnp.float64)
    moments = jax.tree.map(lambda a: a[:3], stats)
    with pytest.raises(ValueError, match=re.escape("t0 must be a non-negative integer time index")):
        nprnn.update_bn_stats(stats, moments, t0=-1)
    with pytest.raises(ValueError, match=re.escape("t0 must have shape ()")):
        nprnn.update_bn_stats(stats, moments, t0=jnp.zeros((2,), jnp.int32))
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=re.escape(f"momentum must be in [0, 1), got {bad}")):
            nprnn.update_bn_stats(stats, moments, momentum=bad)
    nprnn.update_bn_stats(stats, moments, t0=1)  # the last rows fit
    nprnn.update_bn_stats(stats, moments, t0=2)  # steps 2, 3 and 4: step 4 updates row 3 too


@pytest.mark.parametrize("what", ["features", "variant", "state"])
def test_errors_raised_under_jit(setup, what):
    """Validation happens at trace time, so a jitted call raises the same ValueError."""
    params, consts, state, xs = setup
    if what == "features":
        args, variant, match = (state, xs[..., :2]), "normprop", "xs has 2 features"
    elif what == "variant":
        args, variant, match = (state, xs), "gru", "unknown LSTM variant"
    else:
        args, variant, match = (nprnn.init_state(1, H), xs), "normprop", "state.h has shape"
    run = jax.jit(functools.partial(nprnn.run_sequence, variant=variant))
    with pytest.raises(ValueError, match=match):
        run(params, consts, *args)


def test_broadcast_state():
    initial = {"h": jnp.arange(3.0), "c": -jnp.arange(3.0)}
    state = nprnn.broadcast_state(initial, 2, jnp.float64)
    assert isinstance(state, nprnn.LSTMState) and state.h.dtype == jnp.float64
    np.testing.assert_array_equal(state.h, [[0, 1, 2]] * 2)
    np.testing.assert_array_equal(state.c, [[0, -1, -2]] * 2)
    # The gradient of a sum over the batch reaches the vectors, summed over the batch.
    grad = jax.grad(lambda p: jnp.sum(nprnn.broadcast_state(p, 4).h))(initial)
    np.testing.assert_array_equal(grad["h"], [4.0] * 3)
    with pytest.raises(ValueError, match="missing \\['c'\\]"):
        nprnn.broadcast_state({"h": jnp.zeros(3)}, 2)
    with pytest.raises(ValueError, match="same size"):
        nprnn.broadcast_state({"h": jnp.zeros(3), "c": jnp.zeros(4)}, 2)
    with pytest.raises(ValueError, match="batch_size"):
        nprnn.broadcast_state(initial, 0)
