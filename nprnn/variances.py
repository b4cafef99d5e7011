"""The frozen constants of the Normalized LSTM's two forms; imports nprnn._lstm, nprnn._validate.

The Normalized LSTM divides the cell by ``sqrt(var_c)`` and the output by ``sqrt(var_h)``
(eq. 15). Both are constants, computed once at initialization from the gammas and then frozen:
they live in the ``consts`` pytree and never reach an optimizer.

Two ways to compute them:

* ``method="analytic"``: the paper's derivation. With x_t and h_{t-1} independent and of unit
  variance, and unit-norm weight vectors, each gate pre-activation is N(0, s^2) with
  ``s^2 = gamma_x^2 + gamma_h^2``. The product rule for independent variables (eq. 7) and a
  stationary cell give eq. 8 for Var[c] and eq. 12 for Var[h]. Every moment E[f(z)] is computed
  by Gauss-Hermite quadrature, deterministically, to about 1e-12.
* ``method="simulated"`` (beyond the paper): eq. 8 assumes that successive cell inputs are
  independent, which fails when the recurrence dominates (small gamma_x / gamma_h, or small
  gammas overall): the stationary Var[h_t] is then far from 1 (about 1.7 at gammas
  (0.5, 0.5, 0.5), 16 at (0.1, 0.1, 0.1)). This method runs the cell at initialization on
  N(0, 1) inputs, with random orthogonal unit-norm weights and a fixed seed, and solves by
  fixed-point iteration for the constants that make the time-averaged stationary variance of
  ``c_t / sqrt(var_c)`` and of ``h_t`` equal to 1 under the real recurrent dynamics, then checks
  the result on two independent input draws.

The authors' released code (``compensation="released"``, :func:`released_constants`) uses
other constants: ``s(gamma) = std(tanh(gamma z))`` for z ~ N(0, 1) at the initial gamma_h (it
divides the cell candidate) and at the initial gamma_c (it divides the output), also by
quadrature.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop.
  C. Laurent, github.com/Thrandis/draw, ``draw/bricks.py`` (``norm_tanh``, ``LSTM.apply``).
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from nprnn import _validate
from nprnn._lstm import LSTMState, cell_update, column_norm, matmul, orthogonal_gates

__all__ = ["normprop_variances", "released_constants", "tanh_std", "VARIANCE_METHODS"]

VARIANCE_METHODS = ("analytic", "simulated")

# The simulated calibration's check: independent input draws, and the bound (in units of tol) on
# their log stationary variances. Over {0.5, 1, 2}^3, H in {64, 128, 256} and 3 seeds, 95% of the
# runs whose Newton iteration met tol stayed within 4 tol on both draws; the runs that met it by
# chance at (0.5, 2, 0.5), H = 128, landed at 10 tol or more (BENCHMARKS.md, "Portable
# statistical tests").
_CHECK_DRAWS = 2
_CHECK_FACTOR = 4.0

# Probabilists' Gauss-Hermite rule: int f(x) exp(-x^2/2) dx ~= sum_i w_i f(x_i).
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(160)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(2.0 * math.pi)


def _gaussian_mean(fn, std: float) -> float:
    """E[fn(z)] for z ~ N(0, std^2), by Gauss-Hermite quadrature (float64)."""
    return float(np.sum(_GH_WEIGHTS * fn(std * _GH_NODES)))


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _analytic(gamma_x: float, gamma_h: float, gamma_c: float, eq9_literal: bool):
    std = (gamma_x + gamma_h) if eq9_literal else math.sqrt(gamma_x**2 + gamma_h**2)
    # Var[s] + E[s]^2 = E[s^2] for the sigmoid gates, E[tanh] = 0 so Var[tanh] = E[tanh^2].
    sig2 = _gaussian_mean(lambda z: _sigmoid(z) ** 2, std)
    tanh2 = _gaussian_mean(lambda z: np.tanh(z) ** 2, std)
    var_c = tanh2 * sig2 / (1.0 - sig2)  # eq. 8 (input and forget gates identically distributed)
    # eq. 12 with a = tanh(gamma_c * c / sqrt(Var[c])) and c / sqrt(Var[c]) ~ N(0, 1).
    var_a = _gaussian_mean(lambda z: np.tanh(z) ** 2, gamma_c)
    var_h = var_a * sig2
    return var_c, var_h


@functools.partial(jax.jit, static_argnames=("steps",))
def _simulate(w_h, zx, gammas, var_c, var_h, *, steps: int):
    """Runs the Normalized LSTM's recurrence (eq. 13-15) on pre-sampled input projections.

    Uses the library's own step, so the simulated dynamics are exactly the cell's.

    Returns:
        The per-step variances of c_t / sqrt(var_c) and of h_t over batch and units, each [T].
    """
    gamma_x, gamma_h, gamma_c = gammas
    prepared = {
        "w_h": w_h * gamma_h,
        "c_scale": gamma_c / jnp.sqrt(var_c),
        "h_scale": 1.0 / jnp.sqrt(var_h),
    }

    def step(state, zx_t):
        state, _ = cell_update(
            prepared,
            state.c,
            matmul(state.h, prepared["w_h"]),
            gamma_x * zx_t,
            None,
            None,
            variant="normprop",
            training=False,
            bn_stats=None,
        )
        return state, (jnp.var(state.c) / var_c, jnp.var(state.h))

    batch, hidden = zx.shape[1], w_h.shape[0]
    init = LSTMState(h=jnp.zeros((batch, hidden)), c=jnp.zeros((batch, hidden)))
    _, (var_u, var_hs) = jax.lax.scan(step, init, zx[:steps])
    return var_u, var_hs


def _log_stationary(w_h, zx, gammas, log_vars, burn_in):
    """log of the two time-averaged stationary variances (after ``burn_in``) at ``log_vars``."""
    var_c, var_h = np.exp(log_vars)
    var_us, var_hs = _simulate(
        w_h, zx, jnp.asarray(gammas, jnp.float32), var_c, var_h, steps=zx.shape[0]
    )
    out = np.log([float(jnp.mean(var_us[burn_in:])), float(jnp.mean(var_hs[burn_in:]))])
    if not np.all(np.isfinite(out)):
        raise FloatingPointError(f"the simulated cell diverged at gammas {gammas}")
    return out


def _simulated(w_h, zx, gammas, start, *, burn_in, tol, max_iter):
    """Newton's method on log(var_c), log(var_h) -> log of the two stationary variances.

    Returns:
        ``(log_vars, residual)``: the last iterate and its two log stationary variances.
    """

    def residual(log_vars):
        return _log_stationary(w_h, zx, gammas, log_vars, burn_in)

    x = np.log(start)
    f = residual(x)
    for _ in range(max_iter):
        if np.max(np.abs(f)) < tol:
            break
        eps = 0.02  # forward-difference Jacobian in log space
        jac = np.stack([(residual(x + eps * e) - f) / eps for e in np.eye(2)], axis=1)
        try:
            step = -np.linalg.solve(jac, f)
        except np.linalg.LinAlgError:
            step = -f  # the plain fixed-point step
        step = np.clip(step, -2.0, 2.0)
        lam = 1.0
        while True:  # backtrack until the residual shrinks
            f_new = residual(x + lam * step)
            if np.max(np.abs(f_new)) < np.max(np.abs(f)) or lam < 0.1:
                break
            lam *= 0.5
        x, f = x + lam * step, f_new
    return x, f


def tanh_std(gamma: float) -> float:
    """``s(gamma) = std(tanh(gamma z))`` for z ~ N(0, 1), by quadrature (``E[tanh] = 0``).

    Example:
        >>> round(tanh_std(1.0) ** 2, 4), round(tanh_std(0.1) ** 2, 4)
        (0.3943, 0.0098)
    """
    gamma = _validate.positive_gamma("gamma", gamma)
    return math.sqrt(_gaussian_mean(lambda z: np.tanh(z) ** 2, gamma))


def released_constants(gamma_h: float, gamma_c: float) -> tuple[float, float]:
    """``(s_h, s_c) = (s(gamma_h), s(gamma_c))`` of the released form, from the initial gammas.

    The authors' code divides the cell candidate ``sigma(i~) tanh(g~)`` by ``s_h`` and the output
    ``sigma(o~) tanh(gamma_c c_t)`` by ``s_c`` (``norm_tanh`` in ``Thrandis/draw``), with both
    constants computed once from the gammas given at initialization and then frozen.
    """
    return (
        tanh_std(_validate.positive_gamma("gamma_h", gamma_h)),
        tanh_std(_validate.positive_gamma("gamma_c", gamma_c)),
    )


def normprop_variances(
    gamma_x: float,
    gamma_h: float,
    gamma_c: float,
    *,
    method: str = "analytic",
    eq9_literal: bool = False,
    w_h=None,
    hidden_size: int = 128,
    batch_size: int = 128,
    steps: int = 400,
    burn_in: int = 100,
    seed: int = 0,
    tol: float = 5e-3,
    max_iter: int = 20,
) -> tuple[float, float]:
    """Var[c] and Var[h] of the Normalized LSTM at initialization (eq. 8 and 12).

    Args:
        gamma_x: scale of the normalized input projection (positive scalar).
        gamma_h: scale of the normalized recurrent projection (positive scalar).
        gamma_c: scale of the normalized cell in the output (positive scalar).
        method: ``"analytic"`` (eq. 8 and 12 by quadrature) or ``"simulated"`` (calibrated on the
            simulated stationary dynamics; see the module docstring).
        eq9_literal: take the pre-activation standard deviation as the paper's literal
            ``gamma_x + gamma_h`` (eq. 9-10) instead of ``sqrt(gamma_x^2 + gamma_h^2)``, which
            independence gives (eq. 22-23). For the simulated method this only changes the
            starting point.
        w_h: simulated method: the recurrent weights [H, 4H] to simulate with (their columns are
            normalized); ``init_params`` passes the layer's own. ``None``: a random orthogonal
            draw of size ``hidden_size``.
        hidden_size: simulated method without ``w_h``: H of the simulated cell.
        batch_size: simulated method: number of simulated sequences.
        steps: simulated method: length of the simulated sequences.
        burn_in: simulated method: steps discarded before averaging the variances.
        seed: simulated method: seed of the inputs (and weights); the result is deterministic.
        tol: simulated method: stop when both log stationary variances are within ``+- tol``;
            the check on two independent input draws allows ``+- 4 tol``.
        max_iter: simulated method: at most this many Newton iterations (a ``RuntimeWarning``
            says when they did not suffice, or when the check failed).

    Returns:
        ``(var_c, var_h)`` as Python floats.

    Raises:
        ValueError: for a non-positive gamma, an unknown method or inconsistent sizes.

    Notes:
        The forget and input gates are taken to have the same pre-activation distribution (zero
        bias at initialization). The simulated method starts from the analytic constants and
        solves ``log Var[c_t / sqrt(var_c)] = log Var[h_t] = 0`` (time averages after
        ``burn_in``) for ``(log var_c, log var_h)`` by Newton's method with a finite-difference
        Jacobian and backtracking. The same random numbers are used at every evaluation, so the
        result is deterministic. It costs 5 to 100 simulations (2 more for the check) of
        ``steps`` steps of a [batch_size, H] x [H, 4H] product: about a second to a few tens of
        seconds at H = 128 on two CPU cores. The stationary variance of a recurrence-dominated
        cell depends on the particular weight matrix (at H = 128 a calibration on one random draw
        is off by up to 15% on another), hence the ``w_h`` argument.

        Where the recurrence dominates (gamma_h > gamma_x) and H is small, the time-averaged
        variance is a noisy function of the constants: the Newton iteration then wanders, and
        meets ``tol`` on its own inputs only by chance (3 of 12 init seeds at (0.5, 2, 0.5),
        H = 128). The constants it returns there depend on the last bits of ``w_h`` and of the
        simulation, which differ between machines: ``init_params``' orthogonal weights come from
        a QR in the OpenBLAS that scipy ships (jax's CPU LAPACK), whose kernels depend on the
        CPU, and their unit-norm projection sums columns in an order that XLA:CPU picks by the
        number of usable CPUs. Running the simulation in float64 does not help (one ulp of one
        weight moves var_c from 3.3 to 9.5). Hence the check on independent draws: where the
        noise dominates, the warning, not the constants, is what every machine reproduces (at the
        border of that region, whether it warns can differ too). After the warning,
        Var[h_t] of the layer still has a time mean near 1 (0.89-1.12 at that case), but single
        steps can fall to 0.3.

    Example:
        >>> var_c, var_h = normprop_variances(2.0, 2.0, 1.0)
        >>> round(var_c, 3), round(var_h, 3)
        (0.448, 0.15)
    """
    gamma_x = _validate.positive_gamma("gamma_x", gamma_x)
    gamma_h = _validate.positive_gamma("gamma_h", gamma_h)
    gamma_c = _validate.positive_gamma("gamma_c", gamma_c)
    _validate.one_of("variance method", method, VARIANCE_METHODS)
    analytic = _analytic(gamma_x, gamma_h, gamma_c, eq9_literal)
    if method == "analytic":
        return analytic
    if burn_in >= steps:
        raise ValueError(f"burn_in ({burn_in}) must be smaller than steps ({steps})")
    key_w, key_x = jax.random.split(jax.random.key(seed))
    if w_h is None:
        w_h = orthogonal_gates(key_w, hidden_size, hidden_size, jnp.float32)
    else:
        w_h = jnp.asarray(w_h, jnp.float32)
        if w_h.ndim != 2 or w_h.shape[1] != 4 * w_h.shape[0]:
            raise ValueError(f"w_h must have shape [H, 4H], got {w_h.shape}")
        w_h = w_h / column_norm(w_h)
    gammas = (gamma_x, gamma_h, gamma_c)
    # With unit-norm orthogonal columns and x_t ~ N(0, I), x_t W_x is exactly N(0, I): sample it.
    shape = (steps, batch_size, w_h.shape[1])
    zx = jax.random.normal(key_x, shape)
    log_vars, f = _simulated(w_h, zx, gammas, analytic, burn_in=burn_in, tol=tol, max_iter=max_iter)
    del zx  # the check below draws its own inputs
    var_c, var_h = (float(v) for v in np.exp(log_vars))
    if np.max(np.abs(f)) >= tol:
        mean_u, mean_h = np.exp(f)
        warnings.warn(
            f"normprop_variances(method='simulated') did not converge to tolerance {tol} in "
            f"{max_iter} Newton iterations at gammas {gammas}: the stationary variances were "
            f"Var[c/sqrt(var_c)] = {mean_u:.4f}, Var[h] = {mean_h:.4f}. The recurrence may be "
            "non-stationary at these gammas.",
            RuntimeWarning,
            stacklevel=2,
        )
        return var_c, var_h
    # A noisy residual can meet tol by chance: the result must also hold on independent inputs.
    # (Reusing the calibration's values, shifted to other sequences and units at every step,
    # would save the draws but missed 1 of 7 chance convergences: BENCHMARKS.md.)
    for k in range(1, _CHECK_DRAWS + 1):
        zx = jax.random.normal(jax.random.fold_in(key_x, k), shape)
        check = _log_stationary(w_h, zx, gammas, log_vars, burn_in)
        if np.max(np.abs(check)) > _CHECK_FACTOR * tol:
            mean_u, mean_h = np.exp(check)
            warnings.warn(
                f"normprop_variances(method='simulated') did not converge to a reproducible "
                f"value at gammas {gammas}: it met tolerance {tol} on its calibration inputs, "
                f"but on an independent draw the stationary variances are Var[c/sqrt(var_c)] = "
                f"{mean_u:.4f}, Var[h] = {mean_h:.4f} (beyond {_CHECK_FACTOR} x tol). The "
                "recurrence is noise-dominated at these gammas and this size: the constants "
                "depend on the last bits of the weights and inputs, so on the machine.",
                RuntimeWarning,
                stacklevel=2,
            )
            break
    return var_c, var_h
