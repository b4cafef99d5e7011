"""Tests of nprnn.models.draw and its attention: DRAW (Gregor et al. 2015) on the five variants.

The references below are float64 NumPy transcriptions of Gregor et al.'s equations
(eq. 19-29 for the attention, section 2 for the glimpse loop), written with explicit
loops so that they share no code with the model.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nprnn
from nprnn.models import attention, draw

SMALL = dict(hidden_size=16, latent_size=4, glimpses=4)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _images(batch: int, seed: int = 0, height: int = 28, width: int = 28) -> np.ndarray:
    """Binarized-like images: one random filled rectangle per image, [B, height * width]."""
    rng = np.random.default_rng(seed)
    out = np.zeros((batch, height, width), np.float32)
    for k in range(batch):
        top, left = rng.integers(2, height // 2, size=2)
        bottom = top + rng.integers(4, height // 2)
        right = left + rng.integers(4, width // 2)
        out[k, top:bottom, left:right] = 1.0
    return out.reshape(batch, height * width)


# ------------------------------------------------------------------- NumPy references


def np_attention(h, w, b, *, n, height, width):
    """Gregor et al. eq. 21-24; returns g_x, g_y, sigma2, delta, gamma, each [B]."""
    out = h @ w + b
    g_x = (width + 1) / 2 * (out[:, 0] + 1)
    g_y = (height + 1) / 2 * (out[:, 1] + 1)
    sigma2 = np.exp(out[:, 2])
    delta = (max(width, height) - 1) / (n - 1) * np.exp(out[:, 3])
    gamma = np.exp(out[:, 4])
    return g_x, g_y, sigma2, delta, gamma


def np_filterbank(g_x, g_y, sigma2, delta, *, n, height, width, eps=1e-8):
    """Gregor et al. eq. 19-20, 25-26 with 1-based i and pixel coordinates."""
    batch = g_x.shape[0]
    f_x = np.zeros((batch, n, width))
    f_y = np.zeros((batch, n, height))
    for k in range(batch):
        for i in range(1, n + 1):
            mu_x = g_x[k] + (i - n / 2 - 0.5) * delta[k]
            mu_y = g_y[k] + (i - n / 2 - 0.5) * delta[k]
            for a in range(1, width + 1):
                f_x[k, i - 1, a - 1] = np.exp(-((a - mu_x) ** 2) / (2 * sigma2[k]))
            for b in range(1, height + 1):
                f_y[k, i - 1, b - 1] = np.exp(-((b - mu_y) ** 2) / (2 * sigma2[k]))
            f_x[k, i - 1] /= f_x[k, i - 1].sum() + eps
            f_y[k, i - 1] /= f_y[k, i - 1].sum() + eps
    return f_x, f_y


def np_read(x, x_hat, h, layer, *, n, height, width):
    """gamma * [F_Y x F_X^T, F_Y x^ F_X^T] (eq. 27), each patch flattened row-major."""
    g_x, g_y, sigma2, delta, gamma = np_attention(
        h, layer["w"], layer["b"], n=n, height=height, width=width
    )
    f_x, f_y = np_filterbank(g_x, g_y, sigma2, delta, n=n, height=height, width=width)
    out = []
    for k in range(x.shape[0]):
        img = x[k].reshape(height, width)
        err = x_hat[k].reshape(height, width)
        patch_x = f_y[k] @ img @ f_x[k].T
        patch_err = f_y[k] @ err @ f_x[k].T
        out.append(gamma[k] * np.concatenate([patch_x.ravel(), patch_err.ravel()]))
    return np.stack(out)


def np_write(h, patch_layer, attention_layer, *, n, height, width):
    """(1 / gamma^) F^_Y^T w F^_X (eq. 28-29)."""
    g_x, g_y, sigma2, delta, gamma = np_attention(
        h, attention_layer["w"], attention_layer["b"], n=n, height=height, width=width
    )
    f_x, f_y = np_filterbank(g_x, g_y, sigma2, delta, n=n, height=height, width=width)
    w = h @ patch_layer["w"] + patch_layer["b"]
    out = []
    for k in range(h.shape[0]):
        image = f_y[k].T @ w[k].reshape(n, n) @ f_x[k] / gamma[k]
        out.append(image.ravel())
    return np.stack(out)


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def np_lstm_cell(p, consts, h, c, x, t, *, variant, bn_stats=None, eps=1e-5):
    """One LSTM step of Laurent et al. eq. 13-15 (normprop), the plain LSTM, or batch norm
    at inference (population statistics of row t), gates i, f, o, g."""
    w_x, w_h = p["w_x"], p["w_h"]
    if variant == "lstm":
        z = x @ w_x + h @ w_h + p["b"]
    elif variant == "normprop":
        z = (
            p["gamma_x"] * (x @ (w_x / np.linalg.norm(w_x, axis=0)))
            + p["gamma_h"] * (h @ (w_h / np.linalg.norm(w_h, axis=0)))
            + p["b"]
        )
    elif variant == "batchnorm":

        def bn(a, which):
            stats = bn_stats[which]
            return (a - stats["mean"][t]) / np.sqrt(stats["var"][t] + eps)

        z = bn(x @ w_x, "x") * p["gamma_x"] + bn(h @ w_h, "h") * p["gamma_h"] + p["b"]
    else:
        raise NotImplementedError(variant)
    hidden = h.shape[-1]
    i, f, o, g = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
    c = _sigmoid(i) * np.tanh(g) + _sigmoid(f) * c
    if variant == "lstm":
        out = np.tanh(c)
    elif variant == "normprop":
        out = np.tanh(p["gamma_c"] * c / np.sqrt(consts["var_c"])) / np.sqrt(consts["var_h"])
    else:
        stats = bn_stats["c"]
        cn = (c - stats["mean"][t]) / np.sqrt(stats["var"][t] + eps)
        out = np.tanh(cn * p["gamma_c"] + p["beta_c"])
    return _sigmoid(o) * out, c


def np_draw_forward(params, consts, images, eps, *, variant, n_read, n_write, bn_stats=None):
    """The glimpse loop of Gregor et al. section 2, as a Python loop; returns c_1..c_T,
    mu and log sigma, each stacked over the glimpses."""
    size = dict(height=28, width=28)
    glimpses, batch, _ = eps.shape
    hidden = params["encoder"]["w_h"].shape[0]
    h_enc, c_enc = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    h_dec, c_dec = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    canvas = np.zeros(images.shape)
    canvases, mus, log_sigmas = [], [], []
    enc_stats = bn_stats["encoder"] if bn_stats else None
    dec_stats = bn_stats["decoder"] if bn_stats else None
    for t in range(glimpses):
        x_hat = images - _sigmoid(canvas)
        r = np_read(images, x_hat, h_dec, params["read_attention"], n=n_read, **size)
        h_enc, c_enc = np_lstm_cell(
            params["encoder"],
            consts["encoder"],
            h_enc,
            c_enc,
            np.concatenate([r, h_dec], axis=1),
            t,
            variant=variant,
            bn_stats=enc_stats,
        )
        mu = h_enc @ params["mu"]["w"] + params["mu"]["b"]
        log_sigma = h_enc @ params["log_sigma"]["w"] + params["log_sigma"]["b"]
        z = mu + np.exp(log_sigma) * eps[t]
        h_dec, c_dec = np_lstm_cell(
            params["decoder"],
            consts["decoder"],
            h_dec,
            c_dec,
            z,
            t,
            variant=variant,
            bn_stats=dec_stats,
        )
        canvas = canvas + np_write(
            h_dec, params["write"], params["write_attention"], n=n_write, **size
        )
        canvases.append(canvas)
        mus.append(mu)
        log_sigmas.append(log_sigma)
    return np.stack(canvases), np.stack(mus), np.stack(log_sigmas)


def np_bound(images, canvas_logits, mu, log_sigma):
    """Per-image L^x (Bernoulli NLL of sigmoid(c_T)) and L^z (sum of KLs), float64."""
    p = _sigmoid(np.asarray(canvas_logits[-1], np.float64))
    x = np.asarray(images, np.float64)
    recon = -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=-1)
    mu = np.asarray(mu, np.float64)
    sigma2 = np.exp(2 * np.asarray(log_sigma, np.float64))
    kl = 0.5 * np.sum(mu**2 + sigma2 - np.log(sigma2) - 1, axis=(0, 2))
    return recon, kl


def _to_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _random_layer(rng, fan_in, fan_out, scale):
    return {
        "w": rng.normal(0, scale / np.sqrt(fan_in), (fan_in, fan_out)),
        "b": rng.normal(0, scale, fan_out),
    }


# ---------------------------------------------------------------------- attention


@pytest.mark.parametrize("height,width", [(28, 28), (7, 9)])
@pytest.mark.parametrize("n", [2, 5])
def test_filterbank_matches_numpy(x64, height, width, n):
    rng = np.random.default_rng(n * 100 + height)
    batch, hidden = 6, 8
    h = rng.normal(size=(batch, hidden))
    layer = _random_layer(rng, hidden, 5, 0.7)
    got = attention.attention_params(
        jnp.asarray(h), jax.tree.map(jnp.asarray, layer), n=n, height=height, width=width
    )
    want = np_attention(h, layer["w"], layer["b"], n=n, height=height, width=width)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == jnp.float64
        np.testing.assert_allclose(g, w, rtol=1e-12)

    f_x, f_y = attention.filterbank(*got[:4], n=n, height=height, width=width)
    ref_x, ref_y = np_filterbank(*want[:4], n=n, height=height, width=width)
    assert f_x.shape == (batch, n, width) and f_y.shape == (batch, n, height)
    np.testing.assert_allclose(f_x, ref_x, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(f_y, ref_y, rtol=1e-10, atol=1e-14)


def test_filterbank_rows_sum_to_one_and_vanish_off_image(x64):
    one = jnp.ones((2,))
    # Centre of a 28 x 28 image, unit variance: every row lies on the image and sums to 1.
    f_x, f_y = attention.filterbank(14.5 * one, 14.5 * one, one, 3 * one, n=5, height=28, width=28)
    np.testing.assert_allclose(jnp.sum(f_x, -1), 1.0, atol=1e-7)
    np.testing.assert_allclose(jnp.sum(f_y, -1), 1.0, atol=1e-7)
    # Symmetric about the image centre with 1-based coordinates.
    np.testing.assert_allclose(f_x, f_x[:, ::-1, ::-1], atol=1e-15)
    # Far off the image with a tiny variance every Gaussian underflows: zeros, not NaN.
    f_x, _ = attention.filterbank(500.0 * one, one, 1e-3 * one, one, n=2, height=28, width=28)
    assert np.all(np.isfinite(f_x)) and np.all(f_x == 0.0)


@pytest.mark.parametrize("height,width", [(28, 28), (7, 9)])
def test_read_and_write_match_numpy(x64, height, width):
    rng = np.random.default_rng(height)
    batch, hidden, n_read, n_write = 3, 8, 2, 5
    pixels = height * width
    x = (rng.random((batch, pixels)) < 0.3).astype(np.float64)
    x_hat = x - _sigmoid(rng.normal(size=(batch, pixels)))
    h = rng.normal(size=(batch, hidden))
    read_layer = _random_layer(rng, hidden, 5, 0.5)
    patch_layer = _random_layer(rng, hidden, n_write * n_write, 1.0)
    write_layer = _random_layer(rng, hidden, 5, 0.5)
    size = dict(height=height, width=width)
    as_jax = functools.partial(jax.tree.map, jnp.asarray)

    r = attention.read(*as_jax((x, x_hat, h, read_layer)), n=n_read, **size)
    assert r.shape == (batch, 2 * n_read * n_read) and r.dtype == jnp.float64
    np.testing.assert_allclose(r, np_read(x, x_hat, h, read_layer, n=n_read, **size), rtol=1e-10)

    w = attention.write(*as_jax((h, patch_layer, write_layer)), n=n_write, **size)
    assert w.shape == (batch, pixels)
    want = np_write(h, patch_layer, write_layer, n=n_write, **size)
    np.testing.assert_allclose(w, want, rtol=1e-9, atol=1e-12)


def test_read_of_constant_image_is_gamma(x64):
    # Rows of the filterbank sum to 1, so a patch of a constant image is that constant.
    batch, hidden, n = 2, 4, 2
    layer = {"w": jnp.zeros((hidden, 5)), "b": jnp.array([0.1, -0.2, 0.0, 0.0, np.log(3.0)])}
    x = jnp.full((batch, 784), 0.5)
    r = attention.read(x, -x, jnp.zeros((batch, hidden)), layer, n=n, height=28, width=28)
    want = np.concatenate([np.full(n * n, 1.5), np.full(n * n, -1.5)])
    np.testing.assert_allclose(r, np.broadcast_to(want, r.shape), rtol=1e-6)


def _centred_digits() -> np.ndarray:
    """Two MNIST-like 28 x 28 images, [2, 784]: strokes inside the central 20 x 20 box (the
    4-pixel border is empty, as in every binarized-MNIST image)."""
    out = np.zeros((2, 28, 28), np.float32)
    out[0, 6:22, 12:16] = 1.0  # a "1"
    out[1, 8:12, 6:22] = out[1, 16:20, 6:22] = 1.0  # a "="
    return out.reshape(2, 784)


@pytest.mark.parametrize("n", [2, 5])
def test_initial_windows_tile_the_image(n):
    """At zero input the default attention covers every pixel with overlapping filters (stride
    max(A, B) / N, sigma = stride / 2); zero biases give point filters on the border for N = 2."""
    params, _ = draw.init_draw(jax.random.key(0), variant="lstm", read_n=n, write_n=n, **SMALL)
    zero, _ = draw.init_draw(
        jax.random.key(0), variant="lstm", read_n=n, write_n=n, attention_init="zero", **SMALL
    )
    h = jnp.zeros((1, SMALL["hidden_size"]))
    size = dict(n=n, height=28, width=28)
    for name in ("read_attention", "write_attention"):
        np.testing.assert_array_equal(zero[name]["b"], 0.0)
        g_x, g_y, sigma2, delta, _ = attention.attention_params(h, params[name], **size)
        np.testing.assert_allclose([g_x[0], g_y[0]], 14.5, rtol=1e-6)
        np.testing.assert_allclose(delta, 28 / n, rtol=1e-5)
        np.testing.assert_allclose(sigma2, (14 / n) ** 2, rtol=1e-5)
        f_x, _ = attention.filterbank(g_x, g_y, sigma2, delta, **size)
        coverage = jnp.sum(f_x[0], axis=0)  # weight of every column summed over the N filters
        assert float(jnp.min(coverage)) > 0.5 / 28, (name, coverage)
    if n == 2:  # the zero-bias read: sigma = 1 filters on columns 1 and 28, nothing between
        f_x, _ = attention.filterbank(
            *attention.attention_params(h, zero["read_attention"], **size)[:4], **size
        )
        assert float(jnp.max(jnp.sum(f_x[0], axis=0)[4:24])) < 1e-3


def test_first_read_sees_the_image():
    """At initialization the first glimpse's read (h^dec_0 = 0) tells two centred digits apart;
    with zero attention biases it reads the empty border and returns the same for both."""
    images = jnp.asarray(_centred_digits())
    h = jnp.zeros((2, SMALL["hidden_size"]))
    reads = {}
    for init in ("tiled", "zero"):
        params, _ = draw.init_draw(jax.random.key(0), variant="lstm", attention_init=init, **SMALL)
        reads[init] = attention.read(
            images, images - 0.5, h, params["read_attention"], n=2, height=28, width=28
        )[:, :4]  # the patch of x
    assert float(jnp.max(jnp.abs(reads["zero"]))) < 1e-3
    assert float(jnp.min(reads["tiled"])) > 0.02
    assert float(jnp.max(jnp.abs(reads["tiled"][0] - reads["tiled"][1]))) > 0.02


def test_initial_write_intensity_undoes_the_filter_normalization():
    """A unit entry of the write patch raises the canvas logit at its filter's centre by about 1
    (1 / gamma^ = 2 pi sigma^2); with zero biases by 1 / (2 pi)."""
    n = 5
    params, _ = draw.init_draw(jax.random.key(0), variant="lstm", write_n=n, **SMALL)
    patch = {"w": jnp.zeros((SMALL["hidden_size"], n * n)), "b": jnp.zeros(n * n).at[12].set(1.0)}
    h = jnp.zeros((1, SMALL["hidden_size"]))
    canvas = attention.write(h, patch, params["write_attention"], n=n, height=28, width=28)
    peak = canvas.reshape(28, 28)[13:15, 13:15]  # the centre filter sits at (14.5, 14.5)
    assert 0.7 < float(jnp.mean(peak)) < 1.3, peak


# -------------------------------------------------------------------------- model


def _bn_stats_random(consts, seed):
    """Population statistics that differ at every glimpse (so the glimpse index matters)."""
    rng = np.random.default_rng(seed)
    stats = draw.init_draw_bn_stats(consts, dtype=jnp.float64)

    def perturb(path, a):
        if path[-1].key == "mean":
            return jnp.asarray(rng.normal(0, 0.3, a.shape))
        return jnp.asarray(rng.uniform(0.5, 2.0, a.shape))

    return jax.tree_util.tree_map_with_path(perturb, stats)


@pytest.mark.parametrize("variant", ["lstm", "normprop", "batchnorm"])
def test_forward_matches_numpy_glimpse_loop(x64, variant):
    """The scan of draw_forward against a Python loop of Gregor et al.'s equations."""
    params, consts = draw.init_draw(
        jax.random.key(3), variant=variant, gamma_x=0.5, gamma_h=0.5, gamma_c=0.5,
        dtype=jnp.float64, **SMALL,
    )  # fmt: skip
    # Perturb every parameter so that no bias or gamma sits at a special value.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    leaves = [
        a + 0.1 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=True)
    ]
    params = jax.tree.unflatten(treedef, leaves)
    bn_stats = _bn_stats_random(consts, 5) if variant == "batchnorm" else None
    images = _images(3).astype(np.float64)
    key = jax.random.key(6)

    outs = draw.draw_forward(params, consts, jnp.asarray(images), key, bn_stats=bn_stats)
    # draw_forward documents its noise: eps = jax.random.normal(key, [T, B, Z]).
    eps = jax.random.normal(key, (SMALL["glimpses"], 3, SMALL["latent_size"]), jnp.float64)
    canvases, mus, log_sigmas = np_draw_forward(
        _to_numpy(params),
        _to_numpy({k: consts[k] for k in ("encoder", "decoder")}),
        images,
        np.asarray(eps),
        variant=variant,
        n_read=2,
        n_write=5,
        bn_stats=_to_numpy(bn_stats),
    )
    np.testing.assert_allclose(outs["mu"], mus, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(outs["log_sigma"], log_sigmas, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(outs["canvas_logits"], canvases, rtol=1e-8, atol=1e-10)
    recon, kl = np_bound(images, canvases, mus, log_sigmas)
    np.testing.assert_allclose(outs["recon"], recon, rtol=1e-8)
    np.testing.assert_allclose(outs["kl"], kl, rtol=1e-8)


def test_bound_is_reconstruction_plus_kl():
    """draw_loss = mean over the batch of L^x + L^z, recomputed from the intermediates."""
    params, consts = draw.init_draw(jax.random.key(0), variant="normprop", **SMALL)
    # Larger posterior parameters than at initialization, so that both terms matter.
    params["log_sigma"]["b"] = params["log_sigma"]["b"] + 0.3
    params["mu"]["b"] = params["mu"]["b"] + 0.5
    images = jnp.asarray(_images(5, seed=1))
    key = jax.random.key(1)
    outs = jax.jit(draw.draw_forward)(params, consts, images, key)
    loss, metrics = jax.jit(draw.draw_loss)(params, consts, images, key)
    recon, kl = np_bound(images, outs["canvas_logits"], outs["mu"], outs["log_sigma"])
    assert recon.shape == kl.shape == (5,)
    assert np.all(kl > 1.0) and np.all(recon > 1.0)
    np.testing.assert_allclose(outs["recon"], recon, rtol=1e-5)
    np.testing.assert_allclose(outs["kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(metrics["recon"], recon.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], kl.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], (recon + kl).mean(), rtol=1e-5)
    assert float(loss) == float(metrics["loss"])
    assert outs["read_attention"].shape == outs["write_attention"].shape == (4, 5, 5)


def test_loss_decreases_with_adam():
    params, consts = draw.init_draw(
        jax.random.key(0), variant="normprop", gamma_x=0.5, gamma_h=0.5, gamma_c=0.5, **SMALL
    )
    images = jnp.asarray(_images(8, seed=2))
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state, key):
        (loss, _), grads = jax.value_and_grad(draw.draw_loss, has_aux=True)(
            params, consts, images, key, training=True
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(1)
    losses = []
    for _ in range(25):
        params, opt_state, loss = train_step(params, opt_state, key)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("variant", nprnn.VARIANTS)
def test_every_variant_under_jit(variant):
    """Shapes, finite loss and gradients, batch-norm moments, samples in [0, 1]."""
    params, consts = draw.init_draw(jax.random.key(0), variant=variant, **SMALL)
    glimpses, hidden = SMALL["glimpses"], SMALL["hidden_size"]
    images = jnp.asarray(_images(4, seed=3))
    is_bn = variant == "batchnorm"
    bn_stats = draw.init_draw_bn_stats(consts) if is_bn else None
    grad_fn = jax.jit(
        jax.value_and_grad(
            functools.partial(draw.draw_loss, training=True, return_moments=is_bn), has_aux=True
        )
    )
    (loss, aux), grads = grad_fn(params, consts, images, jax.random.key(1))
    metrics = aux[0] if is_bn else aux
    assert loss.shape == () and np.isfinite(loss)
    assert set(metrics) == {"loss", "recon", "kl"}
    np.testing.assert_allclose(metrics["recon"] + metrics["kl"], loss, rtol=1e-6)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), f"no gradient reaches {jax.tree_util.keystr(path)}"

    if is_bn:
        moments = aux[1]
        assert moments["encoder"]["x"]["mean"].shape == (glimpses, 4 * hidden)
        assert moments["decoder"]["c"]["var"].shape == (glimpses, hidden)
        new_stats = draw.update_draw_bn_stats(bn_stats, moments, momentum=0.5)
        assert jax.tree.structure(new_stats) == jax.tree.structure(bn_stats)
        assert not np.allclose(new_stats["decoder"]["h"]["var"], 1.0)
        bn_stats = new_stats
        # Inference with the population statistics.
        recons = jax.jit(draw.draw_reconstruct)(
            params, consts, images, jax.random.key(3), bn_stats=bn_stats
        )
        assert recons.shape == (glimpses, 4, 784)
        assert np.all(np.isfinite(recons)) and np.all((recons >= 0) & (recons <= 1))

    samples = jax.jit(draw.draw_sample, static_argnames="num")(
        params, consts, jax.random.key(2), 3, bn_stats=bn_stats
    )
    assert samples.shape == (glimpses, 3, 784)
    assert np.all(np.isfinite(samples)) and np.all((samples >= 0) & (samples <= 1))


def test_params_layout():
    params, consts = draw.init_draw(
        jax.random.key(0), variant="normprop", read_n=3, write_n=4, **SMALL
    )
    hidden, latent = SMALL["hidden_size"], SMALL["latent_size"]
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes["encoder"]["w_x"] == (2 * 3 * 3 + hidden, 4 * hidden)
    assert shapes["decoder"]["w_x"] == (latent, 4 * hidden)
    assert shapes["mu"] == shapes["log_sigma"] == {"w": (hidden, latent), "b": (latent,)}
    assert shapes["read_attention"] == shapes["write_attention"] == {"w": (hidden, 5), "b": (5,)}
    assert shapes["write"] == {"w": (hidden, 16), "b": (16,)}
    config = consts["config"]
    assert config == draw.DrawConfig(variant="normprop", read_n=3, write_n=4, **SMALL)
    # The config is static: no array leaves, and it survives tree operations.
    assert jax.tree.leaves(config) == []
    assert jax.tree.map(lambda a: a, consts)["config"] is config


def test_learned_initial_states_start_at_zeros_and_are_trained():
    """learn_initial_state adds params["initial"] (zeros), so at init the model is the zero-state
    model; the bound's gradient reaches both cells' h_0 and c_0, moving them changes the bound,
    and the samples start from the decoder's."""
    key, images = jax.random.key(0), jnp.asarray(_images(3, seed=4))
    plain, consts = draw.init_draw(key, variant="normprop", **SMALL)
    params, _ = draw.init_draw(key, variant="normprop", learn_initial_state=True, **SMALL)
    zeros = {"h": np.zeros(SMALL["hidden_size"]), "c": np.zeros(SMALL["hidden_size"])}
    jax.tree.map(
        np.testing.assert_array_equal, params["initial"], {"encoder": zeros, "decoder": zeros}
    )
    bound = jax.jit(jax.value_and_grad(lambda p: draw.draw_loss(p, consts, images, key)[0]))
    loss, grads = bound(params)
    assert float(loss) == float(bound(plain)[0])
    for path, g in jax.tree_util.tree_leaves_with_path(grads["initial"]):
        assert np.all(np.isfinite(g)) and np.any(g != 0), jax.tree_util.keystr(path)
    moved = dict(params, initial=jax.tree.map(lambda g: -0.5 * jnp.sign(g), grads["initial"]))
    assert float(bound(moved)[0]) != pytest.approx(float(loss))
    sample = jax.jit(draw.draw_sample, static_argnames="num")
    assert not np.allclose(sample(moved, consts, key, 2), sample(params, consts, key, 2))


def test_weight_normalized_linear_layers(x64):
    """Weight-normalized layers: gamma * (x w / ||w||) + b, the same function at init."""
    key, images = jax.random.key(0), jnp.asarray(_images(3), jnp.float64)
    plain, consts = draw.init_draw(key, variant="lstm", dtype=jnp.float64, **SMALL)
    wn, _ = draw.init_draw(key, variant="lstm", weight_norm_linear=True, dtype=jnp.float64, **SMALL)
    for name in ("mu", "log_sigma", "read_attention", "write_attention", "write"):
        assert sorted(wn[name]) == ["b", "gamma", "w"], name
        np.testing.assert_allclose(np.linalg.norm(wn[name]["w"], axis=0), 1.0, rtol=1e-12)
        np.testing.assert_allclose(wn[name]["w"] * wn[name]["gamma"], plain[name]["w"], rtol=1e-12)
    bound = functools.partial(draw.draw_loss, consts=consts, images=images, key=jax.random.key(1))
    assert float(bound(wn)[0]) == pytest.approx(float(bound(plain)[0]), rel=1e-10)
    # Off the unit sphere (between projections) the layer still normalizes its columns.
    rng = np.random.default_rng(0)
    layer = {"w": rng.normal(size=(6, 3)), "gamma": rng.uniform(0.5, 2, 3), "b": rng.normal(size=3)}
    x = rng.normal(size=(4, 6))
    expected = layer["gamma"] * (x @ layer["w"] / np.linalg.norm(layer["w"], axis=0)) + layer["b"]
    layer = {k: jnp.asarray(v) for k, v in layer.items()}
    np.testing.assert_allclose(attention.linear(layer, jnp.asarray(x)), expected, rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"unknown LSTM variant 'gru'.*normprop"):
        draw.init_draw(jax.random.key(0), variant="gru", **SMALL)
    with pytest.raises(ValueError, match="read_n must be an integer >= 2"):
        draw.init_draw(jax.random.key(0), variant="lstm", read_n=1, **SMALL)
    with pytest.raises(ValueError, match="unknown attention_init 'centre'"):
        draw.init_draw(jax.random.key(0), variant="lstm", attention_init="centre", **SMALL)
    params, consts = draw.init_draw(jax.random.key(0), variant="batchnorm", **SMALL)
    key = jax.random.key(1)
    with pytest.raises(ValueError, match=r"images must be \[B, 784\].*\(2, 28, 28\)"):
        draw.draw_loss(params, consts, jnp.zeros((2, 28, 28)), key, training=True)
    with pytest.raises(ValueError, match="needs bn_stats"):
        draw.draw_loss(params, consts, jnp.zeros((2, 784)), key)
    with pytest.raises(ValueError, match="needs bn_stats"):
        draw.draw_sample(params, consts, key, 2)
    with pytest.raises(ValueError, match="return_moments=True needs"):
        draw.draw_loss(params, consts, jnp.zeros((2, 784)), key, bn_stats={}, return_moments=True)
    lstm_params, lstm_consts = draw.init_draw(key, variant="lstm", **SMALL)
    with pytest.raises(ValueError, match="return_moments=True needs"):
        draw.draw_loss(
            lstm_params, lstm_consts, jnp.zeros((2, 784)), key, training=True, return_moments=True
        )
    with pytest.raises(ValueError, match="with a DrawConfig"):
        draw.draw_loss(params, {"encoder": {}, "decoder": {}}, jnp.zeros((2, 784)), key)
    with pytest.raises(ValueError, match="only for variant 'batchnorm'"):
        draw.init_draw_bn_stats(draw.init_draw(key, variant="lstm", **SMALL)[1])
