"""Batch-norm population statistics at and beyond ``max_steps`` (issue 21).

The moments of a step at time t update row ``min(t, max_steps - 1)``, the row that inference
reads there, whether ``t0`` is concrete or traced under ``jax.jit``; several steps of the last
row fold in one after the other, as one ``update_bn_stats`` call per step would. The reference
is a float64 NumPy loop over the steps. Before the fix, a traced ``t0`` with
``t0 + T > max_steps`` was clamped by ``dynamic_update_slice``, so the moments of steps 4..7 of a
``max_steps=4`` layer were written onto rows 0..3.
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nprnn
import nprnn.linen

D, H, B = 3, 5, 4
MAX_STEPS = 4
MOMENTUM = 0.7


def random_stats(seed: int, rows: int):
    """Statistics (or batch moments) of ``rows`` rows with random, distinct values."""
    rng = np.random.default_rng(seed)

    def moments(width):
        return {
            "mean": jnp.asarray(rng.normal(size=(rows, width))),
            "var": jnp.asarray(rng.uniform(0.3, 2.5, (rows, width))),
        }

    return {"x": moments(4 * H), "h": moments(4 * H), "c": moments(H)}


def np_update(stats, moments, momentum, t0):
    """float64 reference: one moving-average update per step, in time order, of the row
    ``min(t, max_steps - 1)``; steps at negative times update nothing."""
    out = jax.tree.map(lambda a: np.array(a, np.float64), stats)
    for which, kinds in out.items():
        for kind, rows in kinds.items():
            batch = np.asarray(moments[which][kind], np.float64)
            for j in range(batch.shape[0]):
                t = t0 + j
                if t < 0:
                    continue
                r = min(t, rows.shape[0] - 1)
                rows[r] = momentum * rows[r] + (1.0 - momentum) * batch[j]
    return out


def rows_changed(old, new):
    """The rows of ``c`` mean / var (and x, h) where ``new`` differs from ``old``."""
    changed = set()
    for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        changed |= {r for r in range(a.shape[0]) if not np.array_equal(a[r], b[r])}
    return sorted(changed)


def assert_trees_close(a, b, rtol=1e-12, atol=1e-14):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# (t0, rows that the steps may touch) for 4 steps of statistics with 4 rows.
T0_CASES = {0: [0, 1, 2, 3], 1: [1, 2, 3], 2: [2, 3], 3: [3], 4: [3], 9: [3]}


@pytest.mark.parametrize("t0", list(T0_CASES))
def test_update_bn_stats_last_row_takes_the_steps_beyond(t0):
    stats, moments = random_stats(0, MAX_STEPS), random_stats(1, 4)
    update = jax.jit(lambda s, m, t: nprnn.update_bn_stats(s, m, momentum=MOMENTUM, t0=t))
    eager = nprnn.update_bn_stats(stats, moments, momentum=MOMENTUM, t0=t0)
    traced = update(stats, moments, jnp.asarray(t0))
    # jit (traced t0) and eager agree up to float rounding (XLA may fuse a * b + c * d into an
    # FMA under jit, as it did for the formula before this change), and touch the same rows.
    assert_trees_close(traced, eager, rtol=1e-14, atol=1e-15)
    assert rows_changed(stats, traced) == T0_CASES[t0]
    assert_trees_close(eager, np_update(stats, moments, MOMENTUM, t0))
    assert rows_changed(stats, eager) == T0_CASES[t0]  # never an earlier row


def test_update_bn_stats_one_call_equals_one_call_per_step():
    stats, moments = random_stats(2, MAX_STEPS), random_stats(3, 6)
    at_once = nprnn.update_bn_stats(stats, moments, momentum=MOMENTUM, t0=1)
    stepwise = stats
    for j in range(6):
        step = jax.tree.map(lambda m, j=j: m[j : j + 1], moments)
        stepwise = nprnn.update_bn_stats(stepwise, step, momentum=MOMENTUM, t0=1 + j)
    assert_trees_close(at_once, stepwise)
    # Within max_steps the single-row update is the plain formula, to the bit.
    one = jax.tree.map(lambda m: m[:1], moments)
    new = nprnn.update_bn_stats(stats, one, momentum=MOMENTUM, t0=MAX_STEPS - 1)
    expected = MOMENTUM * stats["c"]["var"][-1] + (1.0 - MOMENTUM) * one["c"]["var"][0]
    np.testing.assert_array_equal(new["c"]["var"][-1], expected)


def test_update_bn_stats_traced_negative_t0_updates_no_row_for_negative_times():
    stats, moments = random_stats(4, MAX_STEPS), random_stats(5, 4)
    update = jax.jit(lambda s, m, t: nprnn.update_bn_stats(s, m, momentum=MOMENTUM, t0=t))
    new = update(stats, moments, jnp.asarray(-2))  # steps -2, -1 (nothing), 0, 1
    assert rows_changed(stats, new) == [0, 1]
    assert_trees_close(new, np_update(stats, moments, MOMENTUM, -2))


@pytest.mark.parametrize("t0", [-1, np.int64(-3), jnp.asarray(-1), 1.0, True, jnp.zeros((2,), int)])
def test_update_bn_stats_rejects_bad_concrete_t0(t0):
    stats, moments = random_stats(0, MAX_STEPS), random_stats(1, 2)
    with pytest.raises(ValueError, match="t0 must"):
        nprnn.update_bn_stats(stats, moments, t0=t0)


def _chunk(params, consts, state, xs, t, stats):
    """One training chunk: the batch moments of run_sequence folded in at the carried time t."""
    state, (_, moments) = nprnn.run_sequence(
        params,
        consts,
        state,
        xs,
        variant="batchnorm",
        training=True,
        t0=t,
        return_moments=True,
    )
    stats = nprnn.update_bn_stats(stats, moments, momentum=MOMENTUM, t0=t)
    return state, t + xs.shape[0], stats, moments


def test_chunks_with_a_carried_traced_t_under_jit():
    """A sequence cut into chunks of max_steps steps: the second chunk (t = 4..7) only updates
    the last row, under jit as eagerly."""
    params, consts = nprnn.init_params(
        jax.random.key(0), input_size=D, hidden_size=H, variant="batchnorm", dtype=jnp.float64
    )
    xs = jax.random.normal(jax.random.key(1), (2 * MAX_STEPS, B, D), jnp.float64)
    stats0 = random_stats(6, MAX_STEPS)
    results = {}
    for name, chunk in (("eager", _chunk), ("jit", jax.jit(_chunk))):
        state, t, stats = nprnn.init_state(B, H, jnp.float64), jnp.asarray(0), stats0
        history = []
        for k in range(2):
            state, t, stats, moments = chunk(
                params, consts, state, xs[k * MAX_STEPS : (k + 1) * MAX_STEPS], t, stats
            )
            history.append((stats, moments))
        results[name] = history
    for (eager, _), (jitted, _) in zip(results["eager"], results["jit"], strict=True):
        assert_trees_close(jitted, eager)
    (first, m1), (second, m2) = results["jit"]
    assert rows_changed(stats0, first) == [0, 1, 2, 3]
    assert rows_changed(first, second) == [MAX_STEPS - 1]  # rows 0..2 untouched by t >= 4
    assert_trees_close(second, np_update(np_update(stats0, m1, MOMENTUM, 0), m2, MOMENTUM, 4))


@pytest.mark.parametrize("t0", [-1, 1.5, jnp.asarray([0, 1, 2, 3])])
def test_run_sequence_batchnorm_checks_t0(t0):
    params, consts = nprnn.init_params(
        jax.random.key(0), input_size=D, hidden_size=H, variant="batchnorm"
    )
    state, xs = nprnn.init_state(B, H), jnp.ones((3, B, D))
    stats = nprnn.init_bn_stats(H, MAX_STEPS)
    for training in (True, False):
        with pytest.raises(ValueError, match="t0 must"):
            nprnn.run_sequence(
                params,
                consts,
                state,
                xs,
                variant="batchnorm",
                training=training,
                bn_stats=stats,
                t0=t0,
            )


def test_lstm_step_batchnorm_checks_t():
    params, consts = nprnn.init_params(
        jax.random.key(0), input_size=D, hidden_size=H, variant="batchnorm", dtype=jnp.float64
    )
    state, x = nprnn.init_state(B, H, jnp.float64), jnp.ones((B, D), jnp.float64)
    stats = random_stats(7, MAX_STEPS)

    def step(t):
        return nprnn.lstm_step(params, consts, state, x, variant="batchnorm", bn_stats=stats, t=t)[
            1
        ]

    bad_times = [
        (-1, "t must be a non-negative integer time index, got -1"),
        (jnp.asarray([0, 1, -1, 2]), "t must be a non-negative"),
        (2.0, "t must be a non-negative"),
        (jnp.zeros((B + 1,), int), re.escape("t must have shape () or (4,), got shape (5,)")),
    ]
    for bad, match in bad_times:
        with pytest.raises(ValueError, match=match):
            step(bad)
    # One time per example (the Flax carry's t): beyond max_steps, the last row.
    h_each, h_last = step(jnp.asarray([0, 5, 9, 3])), step(3)
    np.testing.assert_array_equal(h_each[1:], h_last[1:])
    assert not np.allclose(h_each[0], h_last[0])  # example 0 reads row 0


def test_linen_layer_continuing_a_carry_at_max_steps_under_jit():
    """nprnn.linen.LSTM, batchnorm, max_steps=4, jitted, continuing a carry at t=4 for 4 steps:
    only row 3 changes, by the four steps' moments one after the other, as the step cell in
    nn.RNN (one update per step) leaves it."""
    cell = nprnn.linen.LSTMCell(H, "batchnorm", max_steps=MAX_STEPS, deterministic=False)
    layer = nprnn.linen.LSTM(cell, return_carry=True, time_major=True)
    rnn = nn.RNN(cell, return_carry=True, time_major=True, **nprnn.linen.rnn_options(cell))
    xs = jax.random.normal(jax.random.key(1), (MAX_STEPS, B, D), jnp.float32)
    variables = layer.init(jax.random.key(0), xs)
    stats = jax.tree.map(  # not init_bn_stats' zeros and ones, so that every row is distinct
        lambda a: a + jnp.arange(MAX_STEPS, dtype=a.dtype).reshape(-1, 1) * 0.25,
        variables["batch_stats"]["cell"]["bn_stats"],
    )
    variables = {**variables, "batch_stats": {"cell": {"bn_stats": stats}}}
    carry = cell.initialize_carry(jax.random.key(0), (B, D))
    carry = carry._replace(t=jnp.full((B,), MAX_STEPS, jnp.int32))

    def apply(module, variables, carry, xs):
        (carry, _), updated = module.apply(
            variables, xs, initial_carry=carry, mutable=["batch_stats"]
        )
        return carry, updated["batch_stats"]["cell"]["bn_stats"]

    carry_layer, new = jax.jit(apply, static_argnums=0)(layer, variables, carry, xs)
    eager_carry, eager = apply(layer, variables, carry, xs)
    _, stepped = jax.jit(apply, static_argnums=0)(rnn, variables, carry, xs)
    np.testing.assert_array_equal(carry_layer.t, np.full((B,), 2 * MAX_STEPS))
    assert rows_changed(stats, new) == [MAX_STEPS - 1]  # before the fix: rows 0..3
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(stepped), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The reference: the layer's own batch moments, folded into row 3 in time order.
    params = variables["params"]["cell"]
    _, (_, moments) = nprnn.run_sequence(
        dict(params),
        {},
        nprnn.LSTMState(h=carry.h, c=carry.c),
        xs,
        variant="batchnorm",
        training=True,
        t0=MAX_STEPS,
        return_moments=True,
    )
    momentum = cell.bn_momentum
    expected = np_update(stats, moments, momentum, MAX_STEPS)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_linen_layer_trains_on_a_sequence_longer_than_max_steps():
    """A training sequence of 2 max_steps steps from t = 0: the layer (one run_sequence) updates
    rows 0..2 once and row 3 with steps 3..7, as the step cell in nn.RNN does."""
    cell = nprnn.linen.LSTMCell(H, "batchnorm", max_steps=MAX_STEPS, deterministic=False)
    layer = nprnn.linen.LSTM(cell, time_major=True)
    rnn = nn.RNN(cell, time_major=True, **nprnn.linen.rnn_options(cell))
    xs = jax.random.normal(jax.random.key(1), (2 * MAX_STEPS, B, D), jnp.float32)
    variables = layer.init(jax.random.key(0), xs)
    hs, new = layer.apply(variables, xs, mutable=["batch_stats"])
    hs_rnn, stepped = rnn.apply(variables, xs, mutable=["batch_stats"])
    np.testing.assert_allclose(hs, hs_rnn, rtol=1e-5, atol=1e-6)
    stats = variables["batch_stats"]["cell"]["bn_stats"]
    new, stepped = (
        new["batch_stats"]["cell"]["bn_stats"],
        stepped["batch_stats"]["cell"]["bn_stats"],
    )
    assert rows_changed(stats, new) == list(range(MAX_STEPS))
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(stepped), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
