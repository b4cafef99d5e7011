"""nprnn.linen and nprnn.nnx: the Flax modules are the functional core in Flax's protocols.

The reference is the core itself (``nprnn.run_sequence``, whose own tests compare it with a
NumPy transcription of the paper) called with the module's own variables: outputs, final state,
gradients and batch-norm statistics must agree to float64 rounding for every variant. Then the
protocols (``nn.RNN``, ``nn.Bidirectional``, ``nn.scan``, ``jax.jit``, ``jax.vmap``, ``nnx.RNN``),
padding, the optimizer step, Var[h_t] at initialization, an orbax round trip, the unit-norm
projection, the errors, the examples of docs/flax.md and examples/train_linen_charlm.py. float64
comes from conftest.py; the sizes are tiny and shared, so that few programs are compiled.
"""

from __future__ import annotations

import re
import runpy

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from fake_data import REPO, write_fake_ptb
from flax import nnx

import nprnn
import nprnn.linen
import nprnn.nnx
from nprnn import _flax

D, H, B, T = 3, 5, 4, 6  # input, hidden, batch, time
T_MAX = 8  # rows of the batch-norm statistics
F64 = jnp.float64
RTOL, ATOL = 1e-10, 1e-12
DOCS = REPO / "docs" / "flax.md"
EXAMPLE = REPO / "examples" / "train_linen_charlm.py"


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol),
        actual,
        expected,
    )


def _data(seed=1):
    """Batch-major inputs [B, T, D] and the weights [B, T, H] of the test loss."""
    kx, kr = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (B, T, D), F64), jax.random.normal(kr, (B, T, H), F64)


def _linen_cell(variant, **kw):
    return nprnn.linen.LSTMCell(H, variant, max_steps=T_MAX, param_dtype=F64, **kw)


def _nnx_cell(variant, seed=0, **kw):
    rngs = nnx.Rngs(seed)
    return nprnn.nnx.LSTMCell(
        D, H, variant=variant, max_steps=T_MAX, param_dtype=F64, rngs=rngs, **kw
    )


def _variables(variant, seed=0):
    """Linen variables in the documented layout ({collection: {"cell": ...}}), from the core."""
    params, _ = nprnn.init_params(
        jax.random.key(seed), input_size=D, hidden_size=H, variant=variant, dtype=F64
    )
    variables = {"params": {"cell": params}}
    if variant == "batchnorm":
        variables["batch_stats"] = {"cell": {"bn_stats": nprnn.init_bn_stats(H, T_MAX, F64)}}
    return variables


def _core(params, consts, bn_stats, xs, r, variant, training):
    """The reference: run_sequence on time-major inputs; outputs [B, T, H], final state, the
    gradient of ``sum(hs * r)`` and (batchnorm in training) the updated statistics."""
    opts = dict(variant=variant, training=training, bn_stats=bn_stats)
    state0, xs_tm = nprnn.init_state(B, H, F64), jnp.swapaxes(xs, 0, 1)

    def loss(p):
        return jnp.sum(
            jnp.swapaxes(nprnn.run_sequence(p, consts, state0, xs_tm, **opts)[1], 0, 1) * r
        )

    moments_wanted = training and variant == "batchnorm"
    state, out = nprnn.run_sequence(
        params, consts, state0, xs_tm, return_moments=moments_wanted, **opts
    )
    hs, stats = out, bn_stats
    if moments_wanted:
        hs, moments = out
        stats = nprnn.update_bn_stats(bn_stats, moments, momentum=0.99)
    return {
        "hs": jnp.swapaxes(hs, 0, 1),
        "h": state.h,
        "c": state.c,
        "grads": jax.grad(loss)(params),
        "stats": stats,
    }


def _linen_run(module, variables, xs, r):
    """A linen sequence module's outputs, final carry, gradient and statistics, as _core's."""

    def loss(p):
        (_, hs), _ = module.apply({**variables, "params": p}, xs, mutable=["batch_stats"])
        return jnp.sum(hs * r)

    (carry, hs), updated = module.apply(variables, xs, mutable=["batch_stats"])
    stats = updated.get("batch_stats", variables.get("batch_stats", {"cell": {"bn_stats": None}}))
    return {
        "hs": hs,
        "h": carry.h,
        "c": carry.c,
        "grads": jax.grad(loss)(variables["params"])["cell"],
        "stats": stats["cell"]["bn_stats"],
    }


def _nnx_run(graphdef, params, rest, xs, r):
    """The same for an nnx module, given as ``nnx.split(model, nnx.Param, ...)``."""

    model = nnx.merge(graphdef, params, rest, copy=True)
    carry, hs = model(xs)
    grads = nnx.grad(lambda m: jnp.sum(m(xs)[1] * r))(nnx.merge(graphdef, params, rest, copy=True))
    return {
        "hs": hs,
        "h": carry.h,
        "c": carry.c,
        "grads": {k: v[...] for k, v in grads["cell"].items()},
        "stats": model.cell.layer_arrays()[2],
    }


# ----------------------------------------------------------------------------------------------
# Equality with the functional core, every variant.


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_modules_equal_the_core(variant):
    """Outputs, final state, gradients and (batchnorm, in training) statistics of the linen layer,
    nn.RNN(cell), the nnx module and nnx.RNN(cell) equal run_sequence's with the same weights."""
    xs, r = _data()
    training = variant == "batchnorm"  # batchnorm: the batch's moments and the stats update
    ncell = _nnx_cell(variant, deterministic=not training)
    params, consts, bn_stats = ncell.layer_arrays()
    variables = {"params": {"cell": params}}
    if bn_stats is not None:
        variables["batch_stats"] = {"cell": {"bn_stats": bn_stats}}
    cell = _linen_cell(variant, deterministic=not training)
    linen_modules = {
        "linen LSTM": nprnn.linen.LSTM(cell, return_carry=True),
        "nn.RNN": nn.RNN(cell, return_carry=True, **nprnn.linen.rnn_options(cell)),
    }
    nnx_modules = {
        "nnx LSTM": nnx.split(nprnn.nnx.LSTM(ncell, return_carry=True), nnx.Param, ...),
        "nnx.RNN": nnx.split(nnx.RNN(ncell, return_carry=True), nnx.Param, ...),
    }

    @jax.jit
    def everything(variables, nnx_states):
        out = {"core": _core(params, consts, bn_stats, xs, r, variant, training)}
        for name, module in linen_modules.items():
            out[name] = _linen_run(module, variables, xs, r)
        for name, (graphdef, _, _) in nnx_modules.items():
            out[name] = _nnx_run(graphdef, *nnx_states[name], xs, r)
        return out

    out = everything(variables, {k: v[1:] for k, v in nnx_modules.items()})
    reference = out.pop("core")
    for result in out.values():
        if not training:
            result["stats"] = reference["stats"]
        _close(result, reference)


@pytest.mark.parametrize(
    "variant, compensation, gammas",
    [
        ("normprop", "paper", (None, None, None)),
        ("normprop", "paper", (0.5, 1.5, 0.7)),
        ("normprop", "released", (None, 0.8, None)),
        ("layernorm", "paper", (None, None, None)),
    ],
)
def test_linen_derived_constants_are_init_params_own(variant, compensation, gammas):
    kw = dict(zip(("gamma_x", "gamma_h", "gamma_c"), gammas, strict=True))
    _, consts = nprnn.init_params(
        jax.random.key(0),
        input_size=D,
        hidden_size=H,
        variant=variant,
        dtype=F64,
        compensation=compensation,
        **kw,
    )
    options = {
        **kw,
        "forget_bias": 0.0,
        "variance_method": "analytic",
        "compensation": compensation,
    }
    assert set(options) == set(_flax.INIT_OPTIONS)
    derived = _flax.gamma_consts(variant, options, F64)
    assert derived.keys() == consts.keys()
    jax.tree.map(np.testing.assert_array_equal, derived, consts)  # the same bits
    simulated = {**options, "variance_method": "simulated", "compensation": "paper"}
    assert _flax.gamma_consts("normprop", simulated, F64) is None  # stored in "consts" instead


def test_batchnorm_inference_selects_rows_by_the_carried_time_index():
    xs, _ = _data()
    cell = _linen_cell("batchnorm")
    variables = _variables("batchnorm")
    # Distinct rows, so that a wrong row would show.
    stats = jax.tree.map(
        lambda a: a + 0.1 * jnp.arange(T_MAX, dtype=F64)[:, None],
        variables["batch_stats"]["cell"]["bn_stats"],
    )
    variables["batch_stats"]["cell"]["bn_stats"] = stats
    carry0 = cell.initialize_carry(jax.random.key(0), (B, D))._replace(t=jnp.full((B,), 3))

    @jax.jit
    def everything(variables):
        _, hs = nprnn.run_sequence(
            variables["params"]["cell"],
            {},
            carry0.state,
            jnp.swapaxes(xs, 0, 1),
            variant="batchnorm",
            bn_stats=stats,
            t0=3,
        )
        rnn = nn.RNN(cell, **nprnn.linen.rnn_options(cell))
        return {
            "core": jnp.swapaxes(hs, 0, 1),
            "layer": nprnn.linen.LSTM(cell).apply(variables, xs, initial_carry=carry0),
            "rnn": rnn.apply(variables, xs, initial_carry=carry0),
        }

    out = everything(variables)
    _close(out["layer"], out["core"])
    _close(out["rnn"], out["core"])


# ----------------------------------------------------------------------------------------------
# Flax's protocols.


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_cell_in_rnn_bidirectional_scan_jit_and_vmap(variant):
    xs, _ = _data()
    cell = _linen_cell(variant)
    options = nprnn.linen.rnn_options(cell)
    bi_rnn = nn.Bidirectional(nn.RNN(cell, **options), nn.RNN(cell, **options))
    bi_layer = nn.Bidirectional(nprnn.linen.LSTM(cell), nprnn.linen.LSTM(cell))
    scanned = nn.scan(nprnn.linen.LSTMCell, in_axes=1, out_axes=1, **options)(
        H, variant, max_steps=T_MAX, param_dtype=F64
    )
    # nn.RNN's init makes the documented layout (traced only, to keep the test fast).
    params = nprnn.init_params(jax.random.key(0), input_size=D, hidden_size=H, variant=variant)[0]
    one = {"params": {"cell": jax.tree.map(lambda a: a.astype(F64), params)}}
    if variant == "batchnorm":
        one["batch_stats"] = {"cell": {"bn_stats": nprnn.init_bn_stats(H, T_MAX, F64)}}
    shapes = jax.eval_shape(bi_rnn.init, jax.random.key(0), xs)
    assert jax.tree.map(jnp.shape, shapes["params"]["forward_rnn"]) == jax.tree.map(
        jnp.shape, one["params"]
    )
    variables = {k: {"forward_rnn": v, "backward_rnn": v} for k, v in one.items()}
    carry0 = cell.initialize_carry(jax.random.key(0), (B, D))

    @jax.jit
    def everything(variables, own):
        return {
            "bi_rnn": bi_rnn.apply(variables, xs),
            "bi_layer": bi_layer.apply(variables, xs),
            "scan": scanned.apply(own, carry0, xs)[1],
            "step": cell.apply(own, carry0, xs[:, 0]),
            "vmap_step": jax.vmap(lambda c, x: cell.apply(own, c, x))(carry0, xs[:, 0]),
        }

    out = everything(variables, {k: v["cell"] for k, v in one.items()})
    assert out["bi_rnn"].shape == (B, T, 2 * H)
    _close(out["bi_layer"], out["bi_rnn"])
    _close(out["scan"], out["bi_rnn"][..., :H])
    _close(out["vmap_step"], out["step"])
    _close(out["step"][1], out["bi_rnn"][:, 0, :H])


def test_seq_lengths_reverse_and_layouts_like_run_sequence():
    xs, _ = _data()
    lengths = jnp.array([T, 3, 1, 5])
    valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    ncell = _nnx_cell("normprop")
    params, consts, _ = ncell.layer_arrays()
    variables = {"params": {"cell": params}}
    cell = _linen_cell("normprop")
    layer = nprnn.linen.LSTM(cell, return_carry=True)
    rnn = nn.RNN(cell, return_carry=True)
    reverse = dict(seq_lengths=lengths, reverse=True, keep_order=True)
    nnx_parts = {
        "nnx LSTM": nnx.split(nprnn.nnx.LSTM(ncell, return_carry=True)),
        "nnx.RNN": nnx.split(nnx.RNN(ncell, return_carry=True)),
        "nnx bi LSTM": nnx.split(
            nnx.Bidirectional(nprnn.nnx.LSTM(ncell), nprnn.nnx.LSTM(ncell), rngs=False)
        ),
        "nnx bi RNN": nnx.split(nnx.Bidirectional(nnx.RNN(ncell), nnx.RNN(ncell), rngs=False)),
    }

    @jax.jit
    def everything(variables, states):
        state0, xs_tm = nprnn.init_state(B, H, F64), jnp.swapaxes(xs, 0, 1)
        state, hs = nprnn.run_sequence(
            params, consts, state0, xs_tm, variant="normprop", seq_lengths=lengths
        )
        nnx_models = {k: nnx.merge(nnx_parts[k][0], st) for k, st in states.items()}
        return {
            "core": (nprnn.linen.LSTMCarry(state.h, state.c), jnp.swapaxes(hs, 0, 1)),
            "layer": layer.apply(variables, xs, seq_lengths=lengths),
            "rnn": rnn.apply(variables, xs, seq_lengths=lengths),
            "layer reverse": layer.apply(variables, xs, **reverse),
            "rnn reverse": rnn.apply(variables, xs, **reverse),
            **{k: m(xs, seq_lengths=lengths) for k, m in nnx_models.items()},
            # Layouts: time-major, two batch axes, no batch axis.
            "time major": layer.apply(variables, xs_tm, time_major=True)[1],
            "two batch axes": layer.apply(variables, xs.reshape(2, 2, T, D))[1],
            "rnn two batch axes": rnn.apply(variables, xs.reshape(2, 2, T, D)),
            "unbatched": layer.apply(variables, xs[0])[1],
        }

    out = everything(variables, {k: st for k, (_, st) in nnx_parts.items()})
    reference = out["core"]
    for name in ("layer", "nnx LSTM"):  # zeros at padded steps, like run_sequence
        _close(out[name], reference)
    for name in ("rnn", "nnx.RNN"):  # nn.RNN / nnx.RNN: padded outputs unspecified
        carry, hs = out[name]
        _close((carry, jnp.where(valid, hs, 0.0)), reference)
    # reverse: each sequence from its last valid step, padding kept at the end, as nn.RNN.
    carry, hs = out["rnn reverse"]
    _close(out["layer reverse"], (carry, jnp.where(valid, hs, 0.0)))
    _close(out["nnx bi LSTM"], jnp.where(valid, out["nnx bi RNN"], 0.0))
    # Without padding, every layout gives the same outputs.
    hs = out["layer"][1][0]  # example 0 has no padding
    _close(out["time major"][:, 0], hs)
    _close(out["unbatched"], hs)
    full = jnp.swapaxes(out["time major"], 0, 1).reshape(2, 2, T, H)
    _close(out["two batch axes"], full)
    carry, hs = out["rnn two batch axes"]  # the cell flattens the batch axes for lstm_step
    assert carry.h.shape == (2, 2, H)
    _close(hs, full)


def test_recurrent_dropout_in_training_only():
    xs, _ = _data()
    variables = _variables("normprop")
    cell = _linen_cell("normprop", dropout_rate=0.5, deterministic=False)
    rnn = nn.RNN(cell, **nprnn.linen.rnn_options(cell))
    ncell = _nnx_cell("normprop", dropout_rate=0.5)
    graphdef, state = nnx.split(nnx.RNN(ncell))

    @jax.jit
    def everything(variables, state):
        model = nnx.merge(graphdef, state)
        out = {
            "rnn": [rnn.apply(variables, xs, rngs={"dropout": jax.random.key(k)}) for k in (1, 2)],
            "layer": nprnn.linen.LSTM(cell).apply(
                variables, xs, rngs={"dropout": jax.random.key(1)}
            ),
            "eval": nprnn.linen.LSTM(cell.clone(deterministic=True)).apply(variables, xs),
        }
        model.train()
        out["nnx"] = [model(xs), model(xs)]  # the dropout stream advances between calls
        model.eval()
        out["nnx eval"] = model(xs)
        return out

    out = everything(variables, state)
    for a, b in (out["rnn"], out["nnx"]):
        assert not np.allclose(a, b) and not np.allclose(a, out["eval"])
    assert not np.allclose(out["layer"], out["eval"])
    _close(out["nnx eval"], nprnn.nnx.LSTM(_nnx_cell("normprop"))(xs))


# ----------------------------------------------------------------------------------------------
# Training: the optimizer touches the parameters and nothing else.


@pytest.mark.parametrize("variant", ["normprop", "batchnorm"])
def test_nnx_optimizer_step_changes_params_only(variant):
    xs, r = _data()
    model = nprnn.nnx.LSTM(_nnx_cell(variant))
    frozen_type = nprnn.nnx.Const if variant == "normprop" else nprnn.nnx.BatchStat
    assert jax.tree.leaves(nnx.state(model, frozen_type))
    frozen = jax.tree.map(np.array, nnx.state(model, nnx.Not(nnx.Param)))
    before = jax.tree.map(np.array, nnx.state(model, nnx.Param))
    tx = optax.chain(optax.adam(1e-2), nprnn.linen.unit_norm_projection())
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.sum(m(xs) * r))(model)
        optimizer.update(model, grads)

    step(model, optimizer)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.Not(nnx.Param)), frozen)
    after = nnx.state(model, nnx.Param)
    changed = jax.tree.map(lambda a, b: bool(np.all(np.asarray(a) != b)), after, before)
    assert all(jax.tree.leaves(changed)), changed
    if variant == "normprop":  # unit_norm_projection: the update lands on unit-norm columns
        for w in (model.cell.w_x[...], model.cell.w_h[...]):
            np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, rtol=1e-12)


def test_linen_optimizer_step_changes_params_only():
    xs, r = _data()
    layer = nprnn.linen.LSTM(_linen_cell("normprop", variance_method="simulated"))
    # The cell's variables alone (no sequence run); the simulated constants go to "consts".
    variables = layer.init(jax.random.key(0), D, method=lambda m, d: m.cell.layer_variables(d))
    assert set(variables) == {"params", "consts"}
    assert set(variables["consts"]["cell"]) == {"var_c", "var_h"}
    tx = optax.chain(optax.adam(1e-2), nprnn.linen.unit_norm_projection())

    @jax.jit
    def step(variables, opt_state):
        params = variables["params"]
        grads = jax.grad(lambda p: jnp.sum(layer.apply({**variables, "params": p}, xs) * r))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        plain = optax.apply_updates(params, tx.update(grads, opt_state, params)[0])
        return {**variables, "params": optax.apply_updates(params, updates)}, plain

    new, plain = step(variables, tx.init(variables["params"]))
    changed = jax.tree.map(lambda a, b: bool(jnp.all(a != b)), new["params"], variables["params"])
    assert all(jax.tree.leaves(changed)), changed
    jax.tree.map(np.testing.assert_array_equal, new["consts"], variables["consts"])
    # The transformation lands on the projection of the plain update (to one float rounding).
    _close(new["params"], nprnn.linen.project_unit_norm(plain), rtol=1e-14, atol=1e-15)


def test_unit_norm_projection_of_trees():
    key = jax.random.key(3)
    layers = {
        v: nprnn.init_params(k, input_size=D, hidden_size=H, variant=v, dtype=F64)[0]
        for v, k in zip(nprnn.VARIANTS, jax.random.split(key, 5), strict=True)
    }
    tree = jax.tree.map(
        lambda a: 3.0 * a, {"params": {**layers, "dense": {"kernel": jnp.ones((2, 2))}}}
    )
    out = nprnn.linen.project_unit_norm(tree)
    for name, layer in out["params"].items():
        for k, value in layer.items():
            if name in ("weightnorm", "normprop") and k in ("w_x", "w_h"):
                np.testing.assert_allclose(np.linalg.norm(value, axis=0), 1.0, rtol=1e-12)
            else:
                assert value is tree["params"][name][k], (name, k)
    # An nnx state with its variables (not only pure arrays), and a module in place.
    model = nprnn.nnx.LSTM(_nnx_cell("weightnorm"))
    model.cell.w_h[...] = 2.0 * model.cell.w_h[...]
    state = nprnn.linen.project_unit_norm(nnx.state(model, nnx.Param))
    np.testing.assert_allclose(np.linalg.norm(state["cell"]["w_h"][...], axis=0), 1.0, rtol=1e-12)
    nprnn.nnx.project_unit_norm(model)
    np.testing.assert_allclose(np.linalg.norm(model.cell.w_h[...], axis=0), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="needs the parameters"):
        nprnn.linen.unit_norm_projection().update(tree, optax.EmptyState())


# ----------------------------------------------------------------------------------------------
# Var[h_t] at initialization (float32, the paper's gammas, x ~ N(0, 1)).


def test_unit_variance_at_init_inside_rnn():
    hidden, inputs, batch, steps = 128, 64, 64, 150
    xs = jax.random.normal(jax.random.key(5), (batch, steps, inputs), jnp.float32)
    rnn = nn.RNN(nprnn.linen.LSTMCell(features=hidden, variant="normprop"))
    hs_linen, _ = jax.jit(rnn.init_with_output)(jax.random.key(6), xs)
    cell = nprnn.nnx.LSTMCell(inputs, hidden, variant="normprop", rngs=nnx.Rngs(6))
    hs_nnx = nnx.jit(lambda m, x: m(x))(nnx.RNN(cell), xs)
    for hs in (hs_linen, hs_nnx):
        assert hs.dtype == jnp.float32
        var_t = np.var(np.asarray(hs), axis=(0, 2))[50:]
        assert 0.9 <= var_t.min() and var_t.max() <= 1.15, (var_t.min(), var_t.max())


# ----------------------------------------------------------------------------------------------
# Checkpoints.


def test_orbax_round_trip(tmp_path):
    xs, _ = _data()
    layer = nprnn.linen.LSTM(_linen_cell("batchnorm"))
    variables = layer.init(jax.random.key(0), xs)
    model = nprnn.nnx.LSTM(_nnx_cell("normprop", seed=4))
    state = nnx.state(model)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "linen", variables)
        checkpointer.save(tmp_path / "nnx", state)
        checkpointer.wait_until_finished()
        restored = checkpointer.restore(tmp_path / "linen", variables)
        restored_state = checkpointer.restore(tmp_path / "nnx", state)
    jax.tree.map(np.testing.assert_array_equal, restored, variables)
    np.testing.assert_array_equal(layer.apply(restored, xs), layer.apply(variables, xs))
    fresh = nprnn.nnx.LSTM(_nnx_cell("normprop", seed=9))
    nnx.update(fresh, restored_state)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(fresh), state)
    np.testing.assert_array_equal(fresh(xs), model(xs))


# ----------------------------------------------------------------------------------------------
# Errors.


def test_errors():
    xs, _ = _data()
    x, h = xs[:, 0], jnp.zeros((B, H), F64)
    own = {k: v["cell"] for k, v in _variables("normprop").items()}
    with pytest.raises(TypeError, match=r"ambiguous.*\(c, h\)"):
        _linen_cell("normprop").apply(own, (h, h), x)  # Flax's (c, h) tuple
    with pytest.raises(ValueError, match="max_steps"):
        nprnn.linen.LSTMCell(H, "batchnorm")
    with pytest.raises(ValueError, match="max_steps"):
        nprnn.nnx.LSTMCell(D, H, variant="batchnorm", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"unknown LSTM variant 'gru'.*normprop"):
        nprnn.linen.LSTMCell(H, "gru")
    with pytest.raises(ValueError, match="no LSTM parameters at the root"):
        _linen_cell("normprop").apply({"params": {}}, nprnn.linen.LSTMCarry(h, h), x)
    bn, bn_vars = _linen_cell("batchnorm"), _variables("batchnorm")
    with pytest.raises(ValueError, match="rnn_options"):
        jax.eval_shape(nn.RNN(bn).init, jax.random.key(0), xs)
    with pytest.raises(ValueError, match=r"mutable=\['batch_stats'\]"):
        jax.eval_shape(nprnn.linen.LSTM(bn.clone(deterministic=False)).apply, bn_vars, xs)
    with pytest.raises(ValueError, match=r"t \(int32"):
        bn.apply({k: v["cell"] for k, v in bn_vars.items()}, nprnn.linen.LSTMCarry(h, h), x)
    with pytest.raises(ValueError, match="concrete values"):
        sim = _linen_cell("normprop", variance_method="simulated")
        jax.eval_shape(nprnn.linen.LSTM(sim).init, jax.random.key(0), xs)
    # Options are checked when the module is built; call overrides are nn.RNN's four.
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\), got 1.5"):
        nprnn.linen.LSTMCell(H, "normprop", dropout_rate=1.5)
    with pytest.raises(ValueError, match="bn_momentum"):
        nprnn.nnx.LSTMCell(D, H, variant="lstm", bn_momentum=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="gama_h"):  # nnx passes init options to init_params
        nprnn.nnx.LSTMCell(D, H, variant="normprop", gama_h=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"\['unrol'\].*may override"):
        nprnn.linen.LSTM(_linen_cell("normprop")).apply(own, xs, unrol=2)
    with pytest.raises(TypeError, match=r"\['revers'\].*may override"):
        nprnn.nnx.LSTM(_nnx_cell("normprop"))(xs, revers=True)


def test_initialize_carry():
    """Zeros by default; carry_init draws h and c from the carry's key; batchnorm adds t."""
    linen_cell = _linen_cell("batchnorm", carry_init=nn.initializers.normal(1.0))
    carry = linen_cell.initialize_carry(jax.random.key(0), (2, 3, D))
    assert carry.h.shape == carry.c.shape == (2, 3, H) and carry.h.dtype == F64
    assert not np.allclose(carry.h, carry.c) and carry.t.shape == (2, 3)
    ncell = _nnx_cell("normprop")
    zeros = ncell.initialize_carry((B, D))
    assert zeros.t is None and not np.any(zeros.h) and not np.any(zeros.c)
    drawn = ncell.initialize_carry((B, D), nnx.Rngs(carry=1), nn.initializers.normal(1.0))
    assert np.all(drawn.h != 0) and not np.allclose(drawn.h, drawn.c)
    with pytest.raises(ValueError, match="carry_init needs rngs"):
        ncell.initialize_carry((B, D), None, nn.initializers.ones)


# ----------------------------------------------------------------------------------------------
# The documentation's examples.


def test_docs_flax_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) == 3, "docs/flax.md: a linen training, a linen batchnorm, an NNX example"
    namespaces = []
    with jax.enable_x64(False):
        for block in blocks:  # each in a fresh namespace, as tests/test_readme.py runs README's
            namespace: dict = {}
            exec(compile(block, str(DOCS), "exec"), namespace)  # noqa: S102
            namespaces.append(namespace)
    assert [ns["hs"].shape for ns in namespaces] == [(8, 20, 32)] * 3
    linen_train, linen_bn, nnx_bn = namespaces
    # What the examples say they do: unit-norm weights after the update, every row of the
    # statistics moved by the training step, and the NNX model back in evaluation mode.
    w_h = linen_train["params"]["cell"]["w_h"]
    np.testing.assert_allclose(np.linalg.norm(w_h, axis=0), 1.0, rtol=1e-5)
    for stats in (
        linen_bn["variables"]["batch_stats"]["cell"]["bn_stats"],
        jax.tree.map(lambda v: v[...], nnx_bn["model"].cell.bn_stats),
    ):
        assert np.all(np.asarray(stats["c"]["var"]) != 1.0)  # init_bn_stats' variances are 1
    assert nnx_bn["model"].cell.deterministic


def test_linen_charlm_example_runs(tmp_path):
    """examples/train_linen_charlm.py end to end, tiny, on fake PTB files."""
    data_dir = write_fake_ptb(tmp_path)
    example = runpy.run_path(str(EXAMPLE), run_name="train_linen_charlm")
    flags = ["--steps=2", "--hidden=8", "--embed=4", "--batch_size=4", "--seq_len=10"]
    with jax.enable_x64(False):
        out = example["main"]([f"--data_dir={data_dir}", "--no-verify", "--eval_batches=1", *flags])
    assert set(out) == {"valid_bpc_before", "valid_bpc_after", "train_loss"}
    assert all(np.isfinite(v) for v in out.values()), out
