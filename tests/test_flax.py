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

import functools
import re
import runpy
import sys

import flax.linen as nn
import flax.serialization
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
import nprnn.variances

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
    params, consts = nprnn.init_params(
        jax.random.key(seed), input_size=D, hidden_size=H, variant=variant, dtype=F64
    )
    bn_stats = nprnn.init_bn_stats(H, T_MAX, F64) if variant == "batchnorm" else None
    return _layout(params, consts, bn_stats)


def _layout(params, consts, bn_stats):
    """One cell's linen variables at path "cell": ``params``, ``consts`` (normprop: not empty)
    and ``batch_stats`` (batchnorm: ``bn_stats`` not None)."""
    variables = {"params": {"cell": params}}
    if consts:
        variables["consts"] = {"cell": consts}
    if bn_stats is not None:
        variables["batch_stats"] = {"cell": {"bn_stats": bn_stats}}
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
    variables = _layout(params, consts, bn_stats)
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


def test_batchnorm_inference_selects_rows_by_the_carried_time_index():
    xs, _ = _data()
    cell = _linen_cell("batchnorm", deterministic=True)
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
    cell = _linen_cell(variant, deterministic=True)
    options = nprnn.linen.rnn_options(cell)
    bi_rnn = nn.Bidirectional(nn.RNN(cell, **options), nn.RNN(cell, **options))
    bi_layer = nn.Bidirectional(nprnn.linen.LSTM(cell), nprnn.linen.LSTM(cell))
    scanned = nn.scan(nprnn.linen.LSTMCell, in_axes=1, out_axes=1, **options)(
        H, variant, max_steps=T_MAX, param_dtype=F64, deterministic=True
    )
    # nn.RNN's init makes the documented layout (traced only, to keep the test fast).
    one = _variables(variant)
    shapes = jax.eval_shape(bi_rnn.init, jax.random.key(0), xs)
    assert set(shapes) == set(one)
    for collection, tree in shapes.items():
        assert jax.tree.map(jnp.shape, tree["forward_rnn"]) == jax.tree.map(
            jnp.shape, one[collection]
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
    variables = _layout(params, consts, None)
    cell = _linen_cell("normprop")
    layer = nprnn.linen.LSTM(cell, return_carry=True)
    rnn = nn.RNN(cell, return_carry=True, **nprnn.linen.rnn_options(cell))
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


def test_deterministic_at_call_time_or_as_attribute():
    """``deterministic`` as the cell's attribute or as an argument of the call (flax's
    nn.merge_param, like nn.Dropout's): the same program, so the same outputs and statistics; in
    both places, or (where it matters) in neither, flax's ValueError."""
    xs, _ = _data()
    x = xs[:, 0]
    bn_vars, np_vars = _variables("batchnorm"), _variables("normprop")
    bn, drop = _linen_cell("batchnorm"), _linen_cell("normprop", dropout_rate=0.5)
    plain = _linen_cell("normprop")  # no dropout, not batchnorm: the flag changes nothing
    carry0 = bn.initialize_carry(jax.random.key(0), (B, D))
    rngs = {"dropout": jax.random.key(1)}
    mutable = {"mutable": ["batch_stats"]}

    def own(variables):
        return {k: v["cell"] for k, v in variables.items()}

    def program(fn, *args, **kw):  # traced, not compiled: the jaxpr's text
        return str(jax.make_jaxpr(functools.partial(fn, **kw))(*args))

    layers, steps = {}, {}
    for det in (False, True):
        attr, call = bn.clone(deterministic=det), {"deterministic": det}
        layers[det] = [
            program(nprnn.linen.LSTM(attr).apply, bn_vars, xs, **mutable),
            program(nprnn.linen.LSTM(bn).apply, bn_vars, xs, **call, **mutable),
        ]
        steps[det] = jax.jit(
            lambda v, det=det, attr=attr: (
                attr.apply(v, carry0, x, **mutable),
                bn.apply(v, carry0, x, deterministic=det, **mutable),
            )
        )(own(bn_vars))
        assert layers[det][0] == layers[det][1]
        jax.tree.map(np.testing.assert_array_equal, *steps[det])
    assert layers[False][0] != layers[True][0]  # the flag reaches the program
    (_, h), new = steps[False][0]  # training: the batch's moments, row 0 of the statistics moved
    assert np.all(new["batch_stats"]["bn_stats"]["c"]["var"][0] != 1.0) and np.all(np.isfinite(h))
    dropout = [
        program(nprnn.linen.LSTM(drop.clone(deterministic=False)).apply, np_vars, xs, rngs=rngs),
        program(nprnn.linen.LSTM(drop).apply, np_vars, xs, deterministic=False, rngs=rngs),
        program(nprnn.linen.LSTM(drop).apply, np_vars, xs, deterministic=True, rngs=rngs),
    ]
    assert dropout[0] == dropout[1] != dropout[2]
    # Where it changes nothing it may also be given nowhere: the same program.
    nowhere = program(nprnn.linen.LSTM(plain).apply, np_vars, xs)
    assert nowhere == program(nprnn.linen.LSTM(plain).apply, np_vars, xs, deterministic=False)

    twice = r'Parameter "deterministic" was passed to the constructor and at call time'
    for cell, variables in ((bn, bn_vars), (drop, np_vars), (plain, np_vars)):
        layer = nprnn.linen.LSTM(cell.clone(deterministic=True))
        with pytest.raises(ValueError, match=twice):
            jax.eval_shape(functools.partial(layer.apply, deterministic=False), variables, xs)
        with pytest.raises(ValueError, match=twice):
            jax.eval_shape(
                functools.partial(layer.cell.apply, deterministic=True), own(variables), carry0, x
            )
    nowhere = r'Parameter "deterministic" must be passed to the constructor or at call time'
    for cell, variables in ((bn, bn_vars), (drop, np_vars)):
        with pytest.raises(ValueError, match=nowhere):
            jax.eval_shape(nprnn.linen.LSTM(cell).apply, variables, xs)
        with pytest.raises(ValueError, match=nowhere):
            jax.eval_shape(cell.apply, own(variables), carry0, x)


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


# At H = 5 the simulated calibration is noise-dominated and may say so; what is checked here is
# that its constants stay frozen under the optimizer.
@pytest.mark.filterwarnings("ignore:normprop_variances.*did not converge:RuntimeWarning")
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
    cell = nprnn.linen.LSTMCell(features=hidden, variant="normprop")
    rnn = nn.RNN(cell, **nprnn.linen.rnn_options(cell))
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
    layer = nprnn.linen.LSTM(_linen_cell("batchnorm", deterministic=True))
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


# The three kinds of normprop constants, and the names init_params gives them.
NORMPROP_FORMS = {
    "analytic": ({"variance_method": "analytic", "compensation": "paper"}, ("var_c", "var_h")),
    "simulated": ({"variance_method": "simulated", "compensation": "paper"}, ("var_c", "var_h")),
    "released": ({"variance_method": "analytic", "compensation": "released"}, ("s_h", "s_c")),
}
GAMMAS = {"gamma_x": 0.5, "gamma_h": 1.5, "gamma_c": 0.7}  # not the defaults


def _normprop_layers(**gammas):
    """``{form: (layer, variables)}``: a linen LSTM of each normprop form and the variables of its
    cell, initialized outside jit (simulated constants need concrete weights) and without
    running a sequence (``layer_variables``), to keep the test cheap."""
    out = {}
    for form, (options, _) in NORMPROP_FORMS.items():
        layer = nprnn.linen.LSTM(_linen_cell("normprop", **options, **gammas))
        variables = layer.init(jax.random.key(0), D, method=lambda m, d: m.cell.layer_variables(d))
        out[form] = layer, variables
    return out


def test_linen_normprop_constants_are_stored_at_init_and_read_at_apply():
    xs, _ = _data()
    layers = _normprop_layers(**GAMMAS)
    for form, (_, variables) in layers.items():
        options, names = NORMPROP_FORMS[form]
        assert set(variables) == {"params", "consts"}, form
        assert tuple(variables["consts"]["cell"]) == names, form
        assert not set(names) & set(variables["params"]["cell"])  # no optimizer sees them
        if options["variance_method"] == "analytic":  # init_params' own, to the bit
            consts = nprnn.init_params(
                jax.random.key(9),
                input_size=D,
                hidden_size=H,
                variant="normprop",
                dtype=F64,
                **options,
                **GAMMAS,
            )[1]
            jax.tree.map(np.testing.assert_array_equal, variables["consts"]["cell"], consts)
    simulated, analytic = (layers[form][1]["consts"]["cell"] for form in ("simulated", "analytic"))
    assert all(simulated[k] != analytic[k] for k in ("var_c", "var_h"))  # calibrated, not eq. 8

    # Constants other than the attributes' are what the layer and the cell in nn.RNN compute with.
    altered = {
        form: {**variables, "consts": jax.tree.map(lambda a: 1.3 * a, variables["consts"])}
        for form, (_, variables) in layers.items()
    }

    @jax.jit
    def everything(altered):
        out = {}
        for form, (layer, variables) in layers.items():
            rnn = nn.RNN(layer.cell, **nprnn.linen.rnn_options(layer.cell))
            new = altered[form]
            state0, xs_tm = nprnn.init_state(B, H, F64), jnp.swapaxes(xs, 0, 1)
            core = nprnn.run_sequence(
                new["params"]["cell"], new["consts"]["cell"], state0, xs_tm, variant="normprop"
            )[1]
            out[form] = {
                "stored": layer.apply(variables, xs),
                "layer": layer.apply(new, xs),
                "rnn": rnn.apply(new, xs),
                "core": jnp.swapaxes(core, 0, 1),
            }
        return out

    for form, out in everything(altered).items():
        assert not np.allclose(out["layer"], out["stored"]), form
        _close(out["layer"], out["core"])
        _close(out["rnn"], out["core"])


def test_linen_restored_variables_need_no_quadrature(monkeypatch):
    """Variables restored from bytes give the same outputs with the quadrature and the simulation
    of the constants switched off, applied by modules whose gamma attributes differ."""
    xs, _ = _data()
    layers = _normprop_layers(**GAMMAS)
    expected = jax.jit(lambda vs: {f: layers[f][0].apply(v, xs) for f, v in vs.items()})(
        {form: variables for form, (_, variables) in layers.items()}
    )
    restored = {
        form: flax.serialization.msgpack_restore(flax.serialization.to_bytes(variables))
        for form, (_, variables) in layers.items()
    }

    def no_quadrature(*args, **kwargs):
        raise RuntimeError("the constants were recomputed")

    computes = {  # every function that computes constants, wherever nprnn's modules hold it
        getattr(nprnn.variances, name)
        for name in ("normprop_variances", "released_constants", "tanh_std", "_simulated")
    }
    for module_name, module in list(sys.modules.items()):
        if module_name == "nprnn" or module_name.startswith("nprnn."):
            for name, value in list(vars(module).items()):
                if any(value is f for f in computes):
                    monkeypatch.setattr(module, name, no_quadrature)
    with pytest.raises(RuntimeError, match="recomputed"):  # the switch reaches init
        _normprop_layers()

    loaded = {  # the default gammas: the attributes do not matter at apply either
        form: nprnn.linen.LSTM(_linen_cell("normprop", **options))
        for form, (options, _) in NORMPROP_FORMS.items()
    }
    got = jax.jit(lambda vs: {f: loaded[f].apply(v, xs) for f, v in vs.items()})(restored)
    for form in NORMPROP_FORMS:
        np.testing.assert_array_equal(got[form], expected[form])


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
    bn, bn_vars = _linen_cell("batchnorm", deterministic=True), _variables("batchnorm")
    with pytest.raises(ValueError, match="rnn_options"):
        jax.eval_shape(nn.RNN(bn).init, jax.random.key(0), xs)
    with pytest.raises(ValueError, match=r"mutable=\['batch_stats'\]"):
        jax.eval_shape(nprnn.linen.LSTM(bn.clone(deterministic=False)).apply, bn_vars, xs)
    with pytest.raises(ValueError, match=r"t \(int32"):
        bn.apply({k: v["cell"] for k, v in bn_vars.items()}, nprnn.linen.LSTMCarry(h, h), x)
    with pytest.raises(ValueError, match="concrete values"):
        sim = _linen_cell("normprop", variance_method="simulated")
        jax.eval_shape(nprnn.linen.LSTM(sim).init, jax.random.key(0), xs)
    # normprop's constants are variables: nn.RNN must see them, and variables must have them.
    normprop, np_vars = _linen_cell("normprop"), _variables("normprop")
    with pytest.raises(ValueError, match="'consts'.*rnn_options"):
        jax.eval_shape(nn.RNN(normprop).init, jax.random.key(0), xs)
    with pytest.raises(ValueError, match=r"lack \['var_c', 'var_h'\].*rnn_options"):
        jax.eval_shape(nn.RNN(normprop).apply, np_vars, xs)
    old = {"params": np_vars["params"]}  # variables saved before the constants were kept
    with pytest.raises(ValueError, match=r"lack \['var_c', 'var_h'\].*model.init\(key, inputs\)"):
        jax.eval_shape(nprnn.linen.LSTM(normprop).apply, old, xs)
    released = _linen_cell("normprop", compensation="released")
    with pytest.raises(ValueError, match=r"compensation='released'.*lack \['s_h', 's_c'\]"):
        jax.eval_shape(nprnn.linen.LSTM(released).apply, np_vars, xs)  # the paper form's
    with pytest.raises(ValueError, match=r"unknown compensation 'relased'; expected one of"):
        nprnn.linen.LSTMCell(H, "normprop", compensation="relased")
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
