"""Tests of the character LM and sequential-MNIST models and of the tasks built from configs."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fake_data import write_fake_ptb, write_fake_text8

import nprnn
from nprnn import configs as base
from nprnn import tasks
from nprnn.data import text
from nprnn.models import charlm, seqmnist

V, H, T, B = 7, 8, 6, 3


def finite(tree) -> bool:
    return not tasks.tree_has_nonfinite(tree)


def make_charlm(variant="normprop", seed=0, **options):
    config = charlm.CharLMConfig(
        variant=variant, vocab_size=V, hidden_size=H, max_steps=10, **options
    )
    params, consts = charlm.init_charlm(jax.random.key(seed), config)
    return params, consts, charlm.init_charlm_state(consts)


def char_batch(seed=0, steps=T, batch=B):
    rng = np.random.default_rng(seed)
    ids = jnp.asarray(rng.integers(0, V, size=(steps + 1, batch)), jnp.int32)
    return ids[:-1], ids[1:]


@functools.partial(jax.jit, static_argnames="training")
def loss_and_grads(params, consts, model_state, inputs, targets, key, training):
    """The char-LM loss and its gradients w.r.t. params (the config is static, in consts)."""

    def loss(params):
        return charlm.charlm_loss(
            params, consts, model_state, inputs, targets, training=training, key=key
        )

    return jax.value_and_grad(loss, has_aux=True)(params)


@functools.partial(jax.jit, static_argnames="training")
def _loss(params, consts, model_state, inputs, targets, key, training):
    return charlm.charlm_loss(
        params, consts, model_state, inputs, targets, training=training, key=key
    )[0]


def char_loss(params, consts, model_state, inputs, targets, *, training=False, seed=1):
    """The char-LM loss as a float (jitted, compiled once per config and mode)."""
    return float(
        _loss(params, consts, model_state, inputs, targets, jax.random.key(seed), training)
    )


sample = jax.jit(charlm.charlm_sample, static_argnames=("length", "temperature"))


# ---------------------------------------------------------------------------------------------
# Character LM.


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_charlm_shapes_finite_loss_and_gradients(variant):
    params, consts, model_state = make_charlm(variant, num_layers=2)
    inputs, targets = char_batch()
    logits, states, _ = jax.jit(charlm.charlm_apply)(params, consts, model_state, inputs)
    assert logits.shape == (T, B, V)
    assert len(states) == 2 and states[-1].h.shape == (B, H)
    assert finite(logits)
    (loss, aux), grads = loss_and_grads(
        params, consts, model_state, inputs, targets, jax.random.key(1), True
    )
    assert np.isfinite(loss) and 0 < loss < 10 * np.log(V)
    assert aux["count"] == T * B
    assert finite(grads)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_charlm_sample(variant):
    params, consts, model_state = make_charlm(variant)
    prompt = jnp.asarray([1, 2, 3], jnp.int32)
    ids = sample(params, consts, model_state, prompt, jax.random.key(0), length=12, temperature=0.7)
    assert ids.shape == (12,) and jnp.issubdtype(ids.dtype, jnp.integer)
    assert bool(jnp.all((ids >= 0) & (ids < V)))
    again = sample(
        params, consts, model_state, prompt, jax.random.key(0), length=12, temperature=0.7
    )
    np.testing.assert_array_equal(ids, again)


def test_charlm_sample_rejects_bad_arguments():
    params, consts, model_state = make_charlm()
    with pytest.raises(ValueError, match="temperature"):
        charlm.charlm_sample(
            params,
            consts,
            model_state,
            jnp.asarray([1]),
            jax.random.key(0),
            length=2,
            temperature=0.0,
        )
    with pytest.raises(ValueError, match="prompt"):
        charlm.charlm_sample(
            params, consts, model_state, jnp.zeros((0,), jnp.int32), jax.random.key(0), length=2
        )


def test_charlm_input_projection_is_a_frozen_orthogonal_constant():
    params, consts, _ = make_charlm()
    proj = np.asarray(consts["input_proj"])
    assert proj.shape == (V, V)
    np.testing.assert_allclose(proj @ proj.T, np.eye(V), atol=1e-5)
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    assert not any("proj" in name for name in names)
    assert all(leaf.shape != (V, V) for leaf in jax.tree.leaves(params))
    # The loss depends on it (x_t = P[s_t]) but it gets no gradient: it is not a parameter.
    inputs, targets = char_batch()
    model_state = charlm.init_charlm_state(consts)
    other = dict(consts, input_proj=consts["input_proj"][::-1])
    assert char_loss(params, consts, model_state, inputs, targets) != char_loss(
        params, other, model_state, inputs, targets
    )


@pytest.mark.parametrize("option", ["input_dropout", "output_dropout", "recurrent_dropout"])
def test_charlm_dropout_changes_training_loss_only(option):
    params, consts, model_state = make_charlm("normprop")
    dropped = dict(consts, config=dataclasses.replace(consts["config"], **{option: 0.5}))
    loss = functools.partial(char_loss, params, model_state=model_state)
    batch = dict(zip(("inputs", "targets"), char_batch(), strict=True))

    assert loss(dropped, **batch) == loss(consts, **batch)  # inference: no dropout
    assert loss(consts, **batch, training=True) == loss(consts, **batch)  # rates 0: no change
    assert loss(dropped, **batch, training=True) != loss(consts, **batch, training=True)
    assert loss(dropped, **batch, training=True, seed=1) != loss(
        dropped, **batch, training=True, seed=2
    )


def test_charlm_batchnorm_moments_update_the_model_state():
    params, consts, model_state = make_charlm("batchnorm", input_norm=True)
    inputs, targets = char_batch()
    (_, aux), _ = loss_and_grads(
        params, consts, model_state, inputs, targets, jax.random.key(0), True
    )
    moments = aux["moments"]
    assert moments["bn"] is not None and moments["input"] is not None
    new = charlm.update_charlm_state(model_state, moments, momentum=0.9)
    old_c, new_c = model_state["bn"][0]["c"]["mean"], new["bn"][0]["c"]["mean"]
    np.testing.assert_allclose(
        new_c[:T], 0.9 * old_c[:T] + 0.1 * moments["bn"][0]["c"]["mean"], rtol=1e-6, atol=1e-7
    )
    np.testing.assert_array_equal(new_c[T:], old_c[T:])  # rows of steps not seen: unchanged
    np.testing.assert_allclose(new["input"]["var"], 0.9 + 0.1 * moments["input"]["var"], rtol=1e-6)
    # Inference reads the population statistics.
    assert char_loss(params, consts, model_state, inputs, targets) != char_loss(
        params, consts, new, inputs, targets
    )
    # Variants without statistics have nothing to update.
    params, consts, plain = make_charlm("layernorm")
    (_, aux), _ = loss_and_grads(params, consts, plain, inputs, targets, jax.random.key(0), True)
    assert aux["moments"] == {"bn": None, "input": None}
    assert charlm.update_charlm_state(plain, aux["moments"], momentum=0.9) == plain


@pytest.mark.parametrize("variant", ["lstm", "normprop"])
def test_charlm_loss_decreases_with_adam(variant):
    params, consts, model_state = make_charlm(variant)
    inputs, targets = char_batch(steps=8, batch=4)
    tx = optax.adam(3e-2)
    project = variant == "normprop"

    @jax.jit
    def step(params, opt_state):
        def loss_fn(p):
            return charlm.charlm_loss(p, consts, model_state, inputs, targets, training=True)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if project:
            params = dict(params, layers=[nprnn.project_unit_norm(p) for p in params["layers"]])
        return params, opt_state, loss

    opt_state = tx.init(params)
    losses = []
    for _ in range(20):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


# ---------------------------------------------------------------------------------------------
# Sequential MNIST.


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_seqmnist_variants(variant):
    config = seqmnist.SeqMNISTConfig(variant=variant, hidden_size=H)
    params, consts = seqmnist.init_seqmnist(jax.random.key(0), config)
    model_state = seqmnist.init_seqmnist_state(consts)
    rng = np.random.default_rng(0)
    pixels = jnp.asarray(rng.random((5, 20, 1)), jnp.float32)  # any T; 784 on MNIST
    labels = jnp.asarray(rng.integers(0, 10, size=5), jnp.int32)
    assert params["head"]["w"].shape == (H, 10)

    loss_fn = functools.partial(
        seqmnist.seqmnist_loss, consts=consts, model_state=model_state, pixels=pixels, labels=labels
    )
    (loss, aux), grads = jax.jit(
        jax.value_and_grad(functools.partial(loss_fn, training=True), has_aux=True)
    )(params)
    assert np.isfinite(loss) and finite(grads)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        name = jax.tree_util.keystr(path)
        if variant in ("weightnorm", "normprop") and name == "['cell']['w_x']":
            # D = 1: each normalized column of w_x is its sign, so w_x gets no gradient (the
            # scale is learned by gamma_x).
            np.testing.assert_array_equal(g, 0.0)
        else:
            assert float(jnp.max(jnp.abs(g))) > 0, name
    inference, inference_aux = jax.jit(functools.partial(loss_fn, training=False))(params)
    assert np.isfinite(inference)
    for value, out in ((loss, aux), (inference, inference_aux)):
        assert float(out["nll_sum"]) == pytest.approx(5 * float(value), rel=1e-5)
        assert out["count"] == 5 and 0 <= float(out["correct"]) / float(out["count"]) <= 1
    moments = aux["moments"]["bn"]
    assert (moments is not None) == (variant == "batchnorm")
    if moments is not None:
        assert moments["c"]["mean"].shape == (20, H)


def test_seqmnist_batchnorm_nan_gradients_on_constant_leading_pixels():
    """Documents a behaviour: batch norm in training with the first pixels equal over the batch.

    On real MNIST the first rows of every image are 0, so x_t W_x and then h_t W_h have zero
    batch variance: the forward pass stays finite (the normalized value is 0), but the backward
    pass multiplies by 1/sqrt(var + eps) = 1/sqrt(1e-5) at each such step and overflows.
    """
    config = seqmnist.SeqMNISTConfig(variant="batchnorm", hidden_size=H)
    params, consts = seqmnist.init_seqmnist(jax.random.key(0), config)
    model_state = seqmnist.init_seqmnist_state(consts)
    pixels = np.random.default_rng(0).random((8, 40, 1)).astype(np.float32)
    pixels[:, :30] = 0.0
    labels = jnp.arange(8) % 10

    def loss(params):
        return seqmnist.seqmnist_loss(
            params, consts, model_state, jnp.asarray(pixels), labels, training=True
        )[0]

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value)
    assert tasks.tree_has_nonfinite(grads)


# ---------------------------------------------------------------------------------------------
# Tasks on fake data.

TEXT8_LENGTH = 3000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_fake_ptb(d)
    write_fake_text8(d, TEXT8_LENGTH)
    return d


@pytest.fixture
def small_text8(monkeypatch):
    """Points the text8 task at a small file: load_text8 takes the length as an argument only."""
    monkeypatch.setattr(
        tasks.nd, "load_text8", functools.partial(text.load_text8, expected_length=TEXT8_LENGTH)
    )


def char_config(task, data_dir):
    c = base.base_config()
    c.task = task
    c.data.dir, c.data.download, c.data.verify = str(data_dir), False, False
    c.data.batch_size, c.data.eval_batch_size, c.data.seq_len = 4, 4, 10
    c.model.variant, c.model.hidden_size = "normprop", H
    return c


@pytest.mark.parametrize("task_name", ["ptb_char", "text8"])
def test_char_tasks(task_name, data_dir, small_text8):
    config = char_config(task_name, data_dir)
    task = tasks.build_task(config)
    assert task.metric == "bpc" and task.steps_per_epoch >= 1
    corpus = task_corpus(config)
    params, consts, model_state = task.init(jax.random.key(0))
    assert params["head"]["b"].shape == (len(corpus.vocab),)

    first = task.train_batch(3)
    assert [a.shape for a in first] == [(10, 4), (10, 4)]  # time-major
    np.testing.assert_array_equal(first[0][1:], first[1][:-1])  # targets are the next inputs
    for a, b in zip(first, task.train_batch(3), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first, tasks.build_task(config).train_batch(3), strict=True):
        np.testing.assert_array_equal(a, b)  # a pure function of (seed, step)
    assert not np.array_equal(first[0], task.train_batch(4)[0])

    loss, aux = task.loss(params, consts, model_state, first, jax.random.key(0), True)
    assert np.isfinite(loss)
    n_valid = len(corpus.valid)
    for protocol in ("windows", "stream"):
        metrics = task.evaluate(params, consts, model_state, "valid", protocol=protocol)
        assert np.isfinite(metrics["bpc"]) and metrics["bpc"] > 0
        assert metrics["bpc"] == pytest.approx(metrics["loss"] / np.log(2))
        assert metrics["count"] == n_valid - 1  # every target of the split once
    with pytest.raises(ValueError, match="protocol"):
        task.evaluate(params, consts, model_state, "valid", protocol="bogus")


def task_corpus(config):
    if config.task == "text8":
        return text.load_text8(config.data.dir, verify=False, expected_length=TEXT8_LENGTH)
    return text.load_ptb_chars(config.data.dir, verify=False)


def test_text8_task_rejects_a_file_of_the_wrong_length(data_dir):
    """No config field sets text8's expected length: the task wants the real 10^8 characters."""
    with pytest.raises(nprnn.data.DataError, match="exactly 100,000,000 characters"):
        tasks.build_task(char_config("text8", data_dir))


# ---------------------------------------------------------------------------------------------
# The image tasks on small random datasets (the loaders are replaced; their tests are in
# test_data.py).

IMAGE_SPLITS = {"train": 12, "valid": 10, "test": 6}  # 10 = two whole batches of 4, and 2 left


@pytest.fixture
def fake_images(monkeypatch):
    rng = np.random.default_rng(0)
    binarized = {k: (rng.random((n, 784)) < 0.3).astype(np.uint8) for k, n in IMAGE_SPLITS.items()}
    raw = {
        k: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        for k, n in IMAGE_SPLITS.items()
    }
    monkeypatch.setattr(tasks.nd, "load_binarized_mnist", lambda *args, **kwargs: binarized)
    monkeypatch.setattr(tasks.nd, "load_mnist", lambda *args, **kwargs: raw)


def image_config(task, variant):
    c = base.base_config()
    c.task = task
    c.data.batch_size = c.data.eval_batch_size = 4
    c.model.variant, c.model.hidden_size = variant, H
    c.model.latent_size, c.model.glimpses = 2, 3
    return c


@pytest.mark.parametrize("variant", ["lstm", "batchnorm"])
@pytest.mark.parametrize("task_name", ["draw", "seqmnist"])
def test_image_tasks(task_name, variant, fake_images):
    task = tasks.build_task(image_config(task_name, variant))
    assert task.steps_per_epoch == IMAGE_SPLITS["train"] // 4
    params, consts, model_state = task.init(jax.random.key(0))
    batch = task.train_batch(1)
    assert all(a.shape[0] == 4 for a in batch)
    loss, aux = task.loss(params, consts, model_state, batch, jax.random.key(1), True)
    assert np.isfinite(loss)
    new_state = task.update_state(model_state, aux["moments"])
    if variant == "batchnorm":  # the population statistics moved towards the batch's
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), model_state, new_state)
        assert any(jax.tree.leaves(changed))
    else:
        assert new_state is model_state

    metrics = task.evaluate(params, consts, model_state, "valid")
    assert metrics["count"] == 8  # the two whole batches of 4
    first = task.evaluate(params, consts, model_state, "valid", max_batches=1)
    assert first["count"] == 4 and np.isfinite(first["loss"])
    name = "nats" if task_name == "draw" else "accuracy"
    assert task.metric == name
    if task_name == "draw":
        assert metrics["nats"] == metrics["loss"]
        assert metrics["loss"] == pytest.approx(metrics["recon"] + metrics["kl"], rel=1e-5)
    else:
        assert 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("task_name", ["draw", "seqmnist"])
def test_compensation_and_forget_bias_reach_the_cells(task_name, fake_images):
    config = image_config(task_name, "normprop")
    with config.unlocked():
        config.model.compensation = "released"
        config.model.forget_bias = 1.0
        config.model.gamma_h, config.model.gamma_c = 0.8, 0.5
    params, consts, _ = tasks.build_task(config).init(jax.random.key(0))
    cells = ["encoder", "decoder"] if task_name == "draw" else ["cell"]
    hidden = config.model.hidden_size
    for name in cells:
        assert sorted(consts[name]) == ["s_c", "s_h"]
        s_h, s_c = nprnn.released_constants(0.8, 0.5)
        np.testing.assert_allclose(consts[name]["s_h"], s_h, rtol=1e-6)
        np.testing.assert_allclose(consts[name]["s_c"], s_c, rtol=1e-6)
        forget = np.asarray(params[name]["b"][hidden : 2 * hidden])
        assert np.all(forget == 1.0)


def test_gamma_variants_keep_other_variants_at_their_defaults(fake_images):
    # configs/draw_mnist.py sets gammas 0.5 for normprop and weightnorm only.
    for variant, expected in (("normprop", 0.5), ("layernorm", 1.0), ("batchnorm", 0.1)):
        config = image_config("draw", variant)
        with config.unlocked():
            config.model.gamma_x = config.model.gamma_h = config.model.gamma_c = 0.5
            config.model.gamma_variants = "normprop,weightnorm"
        params, _, _ = tasks.build_task(config).init(jax.random.key(0))
        for name in ("gamma_x", "gamma_h", "gamma_c"):
            assert np.all(np.asarray(params["encoder"][name]) == np.float32(expected)), variant


def test_learned_initial_state_starts_at_zeros_and_is_trained():
    # learn_initial_state adds params["initial"] (zeros), so at init the model is the zero-state
    # model; its gradient is finite and non-zero, and a non-zero initial state changes the loss.
    inputs, targets = char_batch()
    params, consts, state = make_charlm("normprop", learn_initial_state=True, num_layers=2)
    assert [sorted(p) for p in params["initial"]] == [["c", "h"], ["c", "h"]]
    apply = jax.jit(lambda p, s: charlm.charlm_apply(p, consts, state, inputs, states=s)[0])
    zeros = [nprnn.init_state(B, H)] * 2
    np.testing.assert_array_equal(apply(params, None), apply(params, zeros))
    loss_and_grad = jax.jit(
        jax.value_and_grad(lambda p: charlm.charlm_loss(p, consts, state, inputs, targets)[0])
    )
    loss, grads = loss_and_grad(params)
    for layer in grads["initial"]:
        for g in layer.values():
            assert finite(g) and float(jnp.max(jnp.abs(g))) > 0
    moved = jax.tree.map(lambda g: -0.5 * jnp.sign(g), grads["initial"])
    assert float(loss_and_grad(dict(params, initial=moved))[0]) != pytest.approx(float(loss))
    states = charlm.initial_states(dict(params, initial=moved), consts, B)
    np.testing.assert_array_equal(states[1].c, jnp.broadcast_to(moved[1]["c"], (B, H)))


def test_learn_initial_state_reaches_the_models(data_dir, fake_images):
    config = char_config("ptb_char", data_dir)
    image = image_config("seqmnist", "normprop")
    drawing = image_config("draw", "normprop")
    for c in (config, image, drawing):
        with c.unlocked():
            c.model.learn_initial_state = True
    params, _, _ = tasks.build_task(config).init(jax.random.key(0))
    assert params["initial"][0]["h"].shape == (H,)
    params, _, _ = tasks.build_task(drawing).init(jax.random.key(0))
    assert params["initial"]["decoder"]["c"].shape == (H,)
    task = tasks.build_task(image)
    params, consts, model_state = task.init(jax.random.key(0))
    assert sorted(params["initial"]) == ["c", "h"]
    batch = task.train_batch(0)
    grads = jax.grad(lambda p: task.loss(p, consts, model_state, batch, None, True)[0])(params)
    assert float(jnp.max(jnp.abs(grads["initial"]["h"]))) > 0
