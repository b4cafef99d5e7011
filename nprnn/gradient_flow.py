"""Gradient flow through the Normalized LSTM at initialization (section 4, Figure 1); imports
nprnn (the public API) and nprnn._validate.

The measurement, and :func:`critical_gammas`, the edge-of-stability search that training uses
for ``model.gamma_init="critical"``. The heatmaps are :func:`nprnn.plots.plot_figure1`, the
text summary :func:`nprnn.reports.figure1_report`. Only the package's public API (:mod:`nprnn`)
and the validators are imported, so that :mod:`nprnn.tasks` can import this module.

The paper's section 4 shows that the one-step Jacobian ``dh_t / dh_{t-1}`` (eq. 26) of the
Normalized LSTM is scaled by ``gamma_h`` and by ``gamma_c / sqrt(Var[c])``, and that the gammas
also set how saturated the gates are; Figure 1 plots the norm of that Jacobian for a simulated
cell against ``gamma_x`` and ``gamma_h``, for ``gamma_c = 0.1`` and ``gamma_c = 1``. This module
redoes that study with the library's own cell (:func:`nprnn.lstm_step`, variant ``"normprop"``)
and adds the quantity that decides whether training sees exploding or vanishing gradients: the
growth of a back-propagated gradient over ``T`` steps.

The simulated cell, for every point of a grid of gammas (:class:`FlowConfig` sets the sizes):

* weights from :func:`nprnn.init_params`: a random orthogonal block per gate, every unit's
  incoming weight vector of unit norm (section 3.3); zero bias; the same draw at every grid point;
* inputs ``x_t ~ N(0, input_std^2 I)`` with ``D = H`` (``input_std = 1`` is the paper's
  assumption; the one-hot-times-orthogonal input of the char LM has ``input_std = 1 / sqrt(V)``);
  the same draw at every grid point (common random numbers give smooth maps);
* ``var_c``, ``var_h`` from :func:`nprnn.normprop_variances` (analytic eq. 8 and 12 unless
  ``variance_method="simulated"``), or with ``compensation="released"`` the authors' released
  form and its ``s_h``, ``s_c`` (:func:`nprnn.released_constants`), computed on the host, then
  passed as arrays;
* a burn-in of ``burn_in`` steps from the zero state, so that the state is (close to)
  stationary, then a window of ``steps`` steps where everything is measured.

Measured quantities (each a number per grid point):

``one_step_rms``
    ``||J||_F / sqrt(H)`` with ``J = dh_t / dh_{t-1}`` [H, H] of one example (``c_{t-1}`` and
    ``x_t`` held fixed, as in eq. 26), averaged over the batch and over ``probes`` time steps of
    the window. It is the root-mean-square singular value of ``J``, i.e. the gain of a random
    direction: ``E ||J u||^2 = ||J||_F^2 / H`` for ``u`` uniform on the unit sphere. This is the
    main Figure 1 quantity here, because products of such Jacobians grow roughly like it.
``one_step_spectral``
    the spectral norm of the same ``J``, same average (power iteration on ``J^T J``, so a lower
    bound that converges from below; 30 iterations are within about 1% at H = 128).
``growth``
    the per-step geometric mean of the gradient growth through time: with ``L = u . h_T`` for a
    random unit vector ``u`` per example, ``exp(mean_b log ||dL / dh_0||_b / T)``, back-propagated
    through both ``h`` and ``c`` (``h_0``, ``c_0`` the state at the start of the window). The
    backward pass renormalizes the cotangent at each step and accumulates its log norm, so
    growths of 1e±40 over ``T`` steps neither overflow nor underflow in float32.
``growth_state``
    the same with ``||dL / d(h_0, c_0)||`` (the whole state) in place of ``||dL / dh_0||``.
``var_h``
    the stationary ``Var[h_t]`` over batch, units and the window; 1 when the variance constants
    are right (they are not for every gamma: see PAPER.md, "What our own checks found").

Everything for a whole grid is one jitted function of the gammas and constants (traced arrays,
``jax.lax.map`` over the grid points, ``jax.vmap`` over examples and probe steps), compiled once
per grid size and :class:`FlowConfig`.

Example:
  >>> import numpy as np
  >>> from nprnn import gradient_flow as gf
  >>> cfg = gf.FlowConfig(hidden_size=16, batch_size=4, burn_in=10, steps=10, probes=1)
  >>> out = gf.flow_metrics(np.array([[2.0, 2.0, 1.0]]), cfg)
  >>> sorted(out)
  ['growth', 'growth_state', 'one_step_rms', 'one_step_spectral', 'var_c', 'var_h']

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop
  track, section 4 and Figure 1.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import nprnn
from nprnn import _validate

__all__ = [
    "FlowConfig",
    "CriticalGammas",
    "METRICS",
    "gamma_grid",
    "flow_metrics",
    "figure1_study",
    "crossings",
    "critical_gammas",
]

#: The quantities :func:`flow_metrics` returns for every grid point, besides ``var_c``.
METRICS = ("one_step_rms", "one_step_spectral", "growth", "growth_state", "var_h")

_TINY = 1e-30


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Sizes of the simulated cell and of the measurement (hashable: a jit cache key).

    Attributes:
      hidden_size: H (also D, the input size).
      batch_size: B, independent sequences (the averages run over them).
      burn_in: steps from the zero state before measuring.
      steps: T, the length of the measured window and of the back-propagation.
      probes: time steps of the window at which the one-step Jacobian is taken (evenly spaced).
      power_iterations: iterations of the power method for the spectral norm.
      input_std: standard deviation of the input components (1: the paper's assumption).
      variance_method: ``"analytic"`` (the paper's eq. 8 and 12) or ``"simulated"`` (about a
        second or more per grid point; see :func:`nprnn.normprop_variances`).
      compensation: the normprop form, ``"paper"`` (eq. 15) or ``"released"`` (the authors'
        code; see :func:`nprnn.init_params`).
      seed: seed of the weights, the inputs and the random directions.
    """

    hidden_size: int = 128
    batch_size: int = 32
    burn_in: int = 100
    steps: int = 100
    probes: int = 4
    power_iterations: int = 30
    input_std: float = 1.0
    variance_method: str = "analytic"
    compensation: str = "paper"
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError for a bad field."""
        for name in ("hidden_size", "batch_size", "steps", "probes", "power_iterations"):
            _validate.positive_int(f"FlowConfig.{name}", getattr(self, name))
        if isinstance(self.burn_in, bool) or not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise ValueError(f"FlowConfig.burn_in must be an integer >= 0, got {self.burn_in!r}")
        if self.probes > self.steps:
            raise ValueError(f"FlowConfig.probes ({self.probes}) must be <= steps ({self.steps})")
        _validate.positive_gamma("FlowConfig.input_std", self.input_std)
        _validate.one_of("variance method", self.variance_method, nprnn.VARIANCE_METHODS)
        _validate.one_of("compensation", self.compensation, tuple(nprnn.COMPENSATIONS))
        if self.compensation == "released" and self.variance_method != "analytic":
            raise ValueError("FlowConfig.variance_method applies to compensation='paper' only")


class CriticalGammas(NamedTuple):
    """The gammas at the edge of stability found by :func:`critical_gammas`.

    Attributes:
      gamma_x: input scale.
      gamma_h: recurrent scale.
      gamma_c: cell scale.
      growth: per-step gradient growth measured at the chosen point (close to 1 when bracketed).
      var_h: stationary Var[h_t] there, with the variance constants of the config.
      bracketed: False when the scanned line never crosses growth = 1 (the end closest to 1 is
        returned).
    """

    gamma_x: float
    gamma_h: float
    gamma_c: float
    growth: float
    var_h: float
    bracketed: bool

    @property
    def gammas(self) -> tuple[float, float, float]:
        """``(gamma_x, gamma_h, gamma_c)``."""
        return (self.gamma_x, self.gamma_h, self.gamma_c)


def gamma_grid(num: int = 12, low: float = 0.05, high: float = 4.0) -> np.ndarray:
    """``num`` log-spaced values in ``[low, high]`` (both ends included)."""
    if num < 1 or not 0 < low <= high:
        raise ValueError(f"need num >= 1 and 0 < low <= high, got {num}, {low}, {high}")
    return np.geomspace(low, high, num)


# ----------------------------------------------------------------------------------------------
# The jitted computation.


def _inputs(config: FlowConfig):
    """Weights, inputs, random directions: the same for every grid point."""
    key_w, key_x, key_u, key_v = jax.random.split(jax.random.key(config.seed), 4)
    h, b = config.hidden_size, config.batch_size
    f32 = jnp.float32  # float32 whatever jax_enable_x64 says: the dtype users train in
    base, _ = nprnn.init_params(key_w, input_size=h, hidden_size=h, variant="normprop", dtype=f32)
    xs = config.input_std * jax.random.normal(key_x, (config.burn_in + config.steps, b, h), f32)
    u = jax.random.normal(key_u, (b, h), f32)
    u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
    v = jax.random.normal(key_v, (config.probes, b, h), f32)
    return {"w_x": base["w_x"], "w_h": base["w_h"], "b": base["b"]}, xs, u, v


@functools.lru_cache(maxsize=8)
def _compiled(config: FlowConfig):
    """The jitted grid function for one config: ``(gammas [G, 3], var [G, 2]) -> metrics``."""
    base, xs, u, v0 = _inputs(config)
    hsize = config.hidden_size
    steps = config.steps
    probe_t = np.arange(config.probes) * (steps // config.probes)

    def one_point(args):
        gammas, variances = args
        params = dict(
            base,
            gamma_x=jnp.full((4 * hsize,), gammas[0], jnp.float32),
            gamma_h=jnp.full((4 * hsize,), gammas[1], jnp.float32),
            gamma_c=jnp.full((hsize,), gammas[2], jnp.float32),
        )
        consts = dict(zip(nprnn.COMPENSATIONS[config.compensation], variances, strict=True))

        def step(state, x):
            return nprnn.lstm_step(params, consts, state, x, variant="normprop")

        def run(state, x):
            new, h = step(state, x)
            return new, (state, jnp.var(h))

        state = nprnn.init_state(config.batch_size, hsize, jnp.float32)
        state, _ = jax.lax.scan(lambda s, x: (step(s, x)[0], None), state, xs[: config.burn_in])
        window = xs[config.burn_in :]
        _, (prev, var_h) = jax.lax.scan(run, state, window)  # prev[t]: the state before step t

        # One-step Jacobian dh_t / dh_{t-1} of single examples at the probe steps: [P, B, H, H].
        def h_next(h, c, x):
            return step(nprnn.LSTMState(h, c), x)[1]

        jac = jax.vmap(jax.vmap(jax.jacrev(h_next)))(
            prev.h[probe_t], prev.c[probe_t], window[probe_t]
        )
        rms = jnp.sqrt(jnp.sum(jnp.square(jac), axis=(-2, -1)) / hsize)

        def power(vec, _):
            w = jnp.einsum("pbij,pbj->pbi", jac, vec)
            vec = jnp.einsum("pbij,pbi->pbj", jac, w)
            return vec / (jnp.linalg.norm(vec, axis=-1, keepdims=True) + _TINY), None

        vec = v0 / jnp.linalg.norm(v0, axis=-1, keepdims=True)
        vec, _ = jax.lax.scan(power, vec, None, length=config.power_iterations)
        spectral = jnp.linalg.norm(jnp.einsum("pbij,pbj->pbi", jac, vec), axis=-1)

        # Back-propagation of L = u . h_T through T steps, renormalized at every step.
        def back(carry, inputs):
            gh, gc, log_scale = carry
            state_prev, x = inputs
            _, vjp = jax.vjp(lambda s: step(s, x)[0], state_prev)
            (g,) = vjp(nprnn.LSTMState(gh, gc))
            norm = jnp.sqrt(jnp.sum(g.h**2 + g.c**2, axis=-1, keepdims=True))
            norm = jnp.maximum(norm, _TINY)
            return (g.h / norm, g.c / norm, log_scale + jnp.log(norm[:, 0])), None

        carry = (u, jnp.zeros_like(u), jnp.zeros(config.batch_size, jnp.float32))
        (gh, _, log_scale), _ = jax.lax.scan(back, carry, (prev, window), reverse=True)
        log_gh = log_scale + jnp.log(jnp.maximum(jnp.linalg.norm(gh, axis=-1), _TINY))
        return {
            "one_step_rms": jnp.mean(rms),
            "one_step_spectral": jnp.mean(spectral),
            "growth": jnp.exp(jnp.mean(log_gh) / steps),
            "growth_state": jnp.exp(jnp.mean(log_scale) / steps),
            "var_h": jnp.mean(var_h),
        }

    @jax.jit
    def grid(gammas, variances):
        return jax.lax.map(one_point, (gammas, variances))

    return grid


def _variances(gammas: np.ndarray, config: FlowConfig) -> np.ndarray:
    """[G, 2] normprop constants for every row of gammas, on the host: (var_c, var_h), or
    (s_h, s_c) for the released form."""
    out = np.empty((len(gammas), 2))
    for k, (gx, gh, gc) in enumerate(gammas):
        if config.compensation == "released":
            out[k] = nprnn.released_constants(float(gh), float(gc))
            continue
        kwargs = {}
        if config.variance_method == "simulated":
            kwargs = dict(hidden_size=config.hidden_size, batch_size=config.batch_size)
        out[k] = nprnn.normprop_variances(
            float(gx), float(gh), float(gc), method=config.variance_method, **kwargs
        )
    return out


def flow_metrics(gammas, config: FlowConfig = FlowConfig()) -> dict[str, np.ndarray]:
    """Gradient-flow measurements of the Normalized LSTM at initialization, per gamma triple.

    Args:
      gammas: [G, 3] rows ``(gamma_x, gamma_h, gamma_c)``, all positive.
      config: sizes of the simulation (see the module docstring for what is measured).

    Returns:
      ``{name: [G] float64 array}`` for every name of :data:`METRICS`, plus ``var_c`` (the
      variance constant used; ``s_h`` for ``compensation="released"``).

    Raises:
      ValueError: for a bad shape or a non-positive gamma, or a bad config.
    """
    config.validate()
    gammas = np.asarray(gammas, np.float64)
    if gammas.ndim != 2 or gammas.shape[1] != 3 or len(gammas) == 0:
        raise ValueError(f"gammas must have shape [G, 3] with G >= 1, got {gammas.shape}")
    if not np.all(np.isfinite(gammas) & (gammas > 0)):
        raise ValueError("every gamma must be positive and finite")
    variances = _variances(gammas, config)
    out = _compiled(config)(jnp.asarray(gammas, jnp.float32), jnp.asarray(variances, jnp.float32))
    result = {k: np.asarray(v, np.float64) for k, v in out.items()}
    result[nprnn.COMPENSATIONS[config.compensation][0]] = variances[:, 0]  # var_c or s_h
    return result


# ----------------------------------------------------------------------------------------------
# Figure 1.


def figure1_study(
    gamma_cs: Sequence[float] = (0.1, 1.0),
    num: int = 12,
    low: float = 0.05,
    high: float = 4.0,
    config: FlowConfig = FlowConfig(),
) -> dict:
    """The grid of Figure 1: every metric for ``gamma_x`` x ``gamma_h`` x ``gamma_c``.

    Args:
      gamma_cs: the values of gamma_c (one panel each; the paper's are 0.1 and 1).
      num: points per axis (log-spaced).
      low: smallest gamma_x and gamma_h.
      high: largest gamma_x and gamma_h.
      config: the simulation (:class:`FlowConfig`).

    Returns:
      ``{"gamma_x": [N], "gamma_h": [N], "gamma_c": [C], "config": dict, metric: [C, N_h, N_x]}``
      (rows gamma_h, columns gamma_x, as the heatmaps draw them).
    """
    axis = gamma_grid(num, low, high)
    gcs = np.asarray(gamma_cs, np.float64)
    gc, gh, gx = np.meshgrid(gcs, axis, axis, indexing="ij")
    flat = np.stack([gx.ravel(), gh.ravel(), gc.ravel()], axis=1)
    out = flow_metrics(flat, config)
    study = {"gamma_x": axis, "gamma_h": axis.copy(), "gamma_c": gcs}
    study["config"] = dataclasses.asdict(config)
    for name, values in out.items():
        study[name] = values.reshape(len(gcs), num, num)
    return study


def _log_crossing(xs: np.ndarray, ys: np.ndarray) -> float | None:
    """First x where ys crosses 1, by linear interpolation of log y against log x; else None."""
    ly, lx = np.log(ys), np.log(xs)
    for k in range(len(xs) - 1):
        if ly[k] == 0.0:
            return float(xs[k])
        if ly[k] * ly[k + 1] < 0:
            frac = ly[k] / (ly[k] - ly[k + 1])
            return float(np.exp(lx[k] + frac * (lx[k + 1] - lx[k])))
    return float(xs[-1]) if ly[-1] == 0.0 else None


def crossings(study: dict, metric: str = "one_step_rms") -> dict[float, list[tuple[float, float]]]:
    """Where ``metric`` crosses 1 along gamma_h, for every gamma_x column of a study.

    Args:
      study: from :func:`figure1_study`.
      metric: one of :data:`METRICS` (a gain: 1 is the edge).

    Returns:
      ``{gamma_c: [(gamma_x, gamma_h at the crossing or nan), ...]}``.
    """
    out = {}
    for k, gc in enumerate(study["gamma_c"]):
        rows = []
        for j, gx in enumerate(study["gamma_x"]):
            cross = _log_crossing(study["gamma_h"], study[metric][k, :, j])
            rows.append((float(gx), math.nan if cross is None else cross))
        out[float(gc)] = rows
    return out


def critical_gammas(
    gamma_c: float = 1.0,
    *,
    gamma_x: float = 2.0,
    gamma_sum: float | None = None,
    low: float = 0.05,
    high: float = 4.0,
    num: int = 25,
    metric: str = "growth",
    config: FlowConfig = FlowConfig(),
) -> CriticalGammas:
    """Gammas at the edge of stability: per-step gradient growth closest to 1 along a line.

    Scans ``gamma_h`` on ``num`` log-spaced points of ``[low, high]`` with ``gamma_x`` fixed (or,
    when ``gamma_sum`` is given, with ``gamma_x = gamma_sum - gamma_h``), finds where ``metric``
    crosses 1 (log-log interpolation between the two bracketing points), and measures the
    chosen point again.

    Args:
      gamma_c: the cell scale, fixed.
      gamma_x: the input scale, fixed (ignored when ``gamma_sum`` is given).
      gamma_sum: scan the line ``gamma_x + gamma_h = gamma_sum`` instead.
      low: smallest gamma_h scanned.
      high: largest gamma_h scanned (with ``gamma_sum``, at most 0.99 * gamma_sum).
      num: points of the scan.
      metric: ``"growth"`` (T-step back-propagation, the default), ``"growth_state"``,
        ``"one_step_rms"`` or ``"one_step_spectral"``.
      config: the simulation (:class:`FlowConfig`).

    Returns:
      A :class:`CriticalGammas`; ``.gammas`` is the ``(gamma_x, gamma_h, gamma_c)`` triple.

    Raises:
      ValueError: for an unknown metric or an empty line.

    Notes:
      With the analytic variance constants the stationary Var[h_t] at the chosen point is not 1
      (it is returned as ``var_h``): the edge lies where the recurrence is weak relative to the
      input, where eq. 8's independence assumption is off. Calibrating the constants
      (``config.variance_method="simulated"``) moves the edge; the search then solves both
      together, at about a second per scanned point.

    Example:
      >>> from nprnn import gradient_flow as gf
      >>> cfg = gf.FlowConfig(hidden_size=16, batch_size=4, burn_in=10, steps=10, probes=1)
      >>> gf.critical_gammas(1.0, gamma_x=2.0, num=5, config=cfg).gamma_x
      2.0
    """
    if metric not in METRICS or metric == "var_h":
        raise ValueError(f"metric must be a gain among {METRICS[:-1]}, got {metric!r}")
    if gamma_sum is not None:
        high = min(high, 0.99 * gamma_sum)
        if high <= low:
            raise ValueError(f"gamma_sum={gamma_sum} leaves no gamma_h in [{low}, {high}]")
    gh = gamma_grid(num, low, high)
    gx = np.full_like(gh, gamma_x) if gamma_sum is None else gamma_sum - gh
    line = np.stack([gx, gh, np.full_like(gh, gamma_c)], axis=1)
    values = flow_metrics(line, config)[metric]
    cross = _log_crossing(gh, values)
    bracketed = cross is not None
    if cross is None:
        cross = float(gh[np.argmin(np.abs(np.log(values)))])
        warnings.warn(
            f"{metric} does not cross 1 for gamma_h in [{low:g}, {high:g}] (range "
            f"{values.min():.3g}..{values.max():.3g}); returning the point closest to 1",
            RuntimeWarning,
            stacklevel=2,
        )
    chosen_x = float(gamma_x) if gamma_sum is None else float(gamma_sum - cross)
    point = flow_metrics(np.array([[chosen_x, cross, gamma_c]]), config)
    return CriticalGammas(
        gamma_x=chosen_x,
        gamma_h=float(cross),
        gamma_c=float(gamma_c),
        growth=float(point[metric][0]),
        var_h=float(point["var_h"][0]),
        bracketed=bracketed,
    )
