"""Flax linen modules over the functional core (a cell for nn.RNN, a sequence layer over
run_sequence); imports nprnn (the public API) and nprnn._flax (what it shares with nprnn.nnx).

Import it explicitly (``import nprnn.linen``); ``import nprnn`` does not load flax modules.
Nothing here computes an LSTM: the cell calls :func:`nprnn.lstm_step`, the layer
:func:`nprnn.run_sequence`, and the parameters come from :func:`nprnn.init_params`, so the
equations (and their numbers) are exactly the functional core's; see :mod:`nprnn.cells`.

What is here:

* :class:`LSTMCell`, a ``flax.linen.RNNCellBase`` for ``nn.RNN``, ``nn.Bidirectional`` and
  ``nn.scan``, under ``jax.jit`` and ``jax.vmap``, for the five variants of
  :data:`nprnn.VARIANTS`;
* :class:`LSTM`, a sequence layer with ``nn.RNN``'s conventions (``time_major``,
  ``return_carry``, ``reverse``, ``keep_order``, ``seq_lengths``) that calls
  :func:`nprnn.run_sequence` once per sequence (weight normalization once, hand-written backward);
* :class:`LSTMCarry`, the carry of both (and of :mod:`nprnn.nnx`);
* :func:`rnn_options`, the ``nn.RNN`` / ``nn.scan`` arguments that make every variant's
  variables visible inside the scan;
* :func:`project_unit_norm` and :func:`unit_norm_projection`: the paper's unit-norm projection
  (section 3.3) over a whole parameter tree (linen variables, an nnx state, plain dicts), and as
  the last link of an optax chain.

Variables (collections) of one cell or layer, at the same paths in both (so the variables of
``nn.RNN(cell)`` and of ``LSTM(cell)`` are interchangeable: ``{"params": {"cell": ...}}``):

``params``
    The trainable parameters of :func:`nprnn.init_params` under their names (``w_x`` [D, 4H],
    ``w_h`` [H, 4H], ``b`` [4H], ``gamma_x``, ``gamma_h`` [4H], ``gamma_c``, ``beta_c`` [H], by
    variant).
``consts``
    normprop only: its frozen constants under :func:`nprnn.init_params`' names, ``var_c``,
    ``var_h`` (``compensation="paper"``, analytic or simulated) or ``s_h``, ``s_c``
    (``"released"``). They are created at init, by the same ``init_params`` call as the
    parameters, and read at every apply, never recomputed: variables restored from a checkpoint
    give the same outputs whatever the module's gamma attributes or the quadrature of
    :func:`nprnn.normprop_variances` at load time. Not in ``params``, so an optimizer given the
    parameters never sees them. Variables saved before the constants were kept here (only
    ``params``) are refused with a ``ValueError`` that says how to add them.
``batch_stats``
    batchnorm only: ``bn_stats``, the population statistics of :func:`nprnn.init_bn_stats`, one
    row per time step (``max_steps`` rows). In training (``deterministic=False``, the collection
    mutable) each call replaces the rows it ran with the moving average of
    :func:`nprnn.update_bn_stats`. The time index that selects the row is carried in the carry
    (:class:`LSTMCarry` ``t``).

``nn.RNN`` broadcasts only ``params`` into its scan by default: pass :func:`rnn_options`
(``nn.RNN(cell, **nprnn.linen.rnn_options(cell))``) when the cell has ``consts`` (normprop) or
``batch_stats`` (batchnorm), or uses recurrent dropout; without them such a cell raises a
``ValueError`` that says so.

``deterministic`` (``False`` is the core's ``training=True``) follows flax's ``nn.merge_param``
convention, as ``nn.Dropout``'s ``deterministic`` and ``nn.BatchNorm``'s
``use_running_average``: a cell attribute, or an argument of the call (``cell(carry, x,
deterministic=...)``, ``LSTM(cell)(xs, deterministic=...)``), exactly one of the two. It is
required only where it changes something, batchnorm or ``dropout_rate > 0`` (flax's
``ValueError`` when it is given in neither place); giving it in both places is flax's
``ValueError`` for every cell. ``nn.RNN`` passes no argument to its cell, so a cell in ``nn.RNN``
takes it as an attribute.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop.
  flax ``linen/recurrent.py`` (``RNNCellBase``, ``nn.RNN``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

import nprnn
from nprnn import _flax
from nprnn._flax import LSTMCarry, project_unit_norm, unit_norm_projection

__all__ = [
    "LSTM",
    "LSTMCarry",
    "LSTMCell",
    "project_unit_norm",
    "rnn_options",
    "unit_norm_projection",
]


def rnn_options(cell) -> dict:
    """The ``nn.RNN`` / ``nn.scan`` arguments under which ``cell`` sees all its variables.

    ``nn.RNN`` broadcasts only ``params`` into its scan by default. These options broadcast
    normprop's frozen ``consts`` too, draw a new dropout mask at each step, and give batchnorm's
    ``batch_stats`` to the scan: broadcast (read-only) unless the cell's ``deterministic``
    attribute is ``False``, carried from step to step for such a training cell, which updates its
    row at each step (apply with ``mutable=["batch_stats"]``). ``nn.RNN`` passes no call
    arguments to its cell, so the attribute is what decides. Flax cannot create carried
    variables inside a scan (google/flax#2052), so initialize a batchnorm model with its cells
    ``deterministic=True`` (or with the layer, ``LSTM(cell).init``: the same variables) and train
    with the same variables.

    Args:
        cell: an :class:`LSTMCell` (or anything with its ``variant`` and ``deterministic``).

    Returns:
        ``{"variable_broadcast", "split_rngs"}``, and ``"variable_carry"`` for a batchnorm
        training cell: ``nn.RNN(cell, **rnn_options(cell))``.
    """
    carried = cell.variant == "batchnorm" and cell.deterministic is False
    options = {
        "variable_broadcast": ("params", "consts") + (() if carried else ("batch_stats",)),
        "split_rngs": FrozenDict({"params": False, "dropout": True}),
    }
    if carried:
        options["variable_carry"] = "batch_stats"
    return options


class LSTMCell(nn.RNNCellBase):
    """An LSTM cell of any nprnn variant, for ``nn.RNN``, ``nn.Bidirectional`` and ``nn.scan``.

    One step is :func:`nprnn.lstm_step` (eq. 13-15 for normprop; the variants' equations are in
    :mod:`nprnn.cells`) with the parameters of :func:`nprnn.init_params`. Inside ``nn.RNN`` the
    weight normalization runs at every step; for a whole sequence :class:`LSTM` calls
    :func:`nprnn.run_sequence` instead, which does it once and has a hand-written backward pass.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, nprnn.linen
        >>> cell = nprnn.linen.LSTMCell(features=16, variant="normprop")
        >>> rnn = nn.RNN(cell, **nprnn.linen.rnn_options(cell))  # nn.RNN sees "consts" too
        >>> xs = jnp.ones((4, 10, 8))  # [B, T, D], nn.RNN's default layout
        >>> variables = rnn.init(jax.random.key(0), xs)
        >>> sorted(variables), rnn.apply(variables, xs).shape
        (['consts', 'params'], (4, 10, 16))

    Attributes:
        features: H, the number of units.
        variant: one of :data:`nprnn.VARIANTS`.
        gamma_x, gamma_h, gamma_c: initial gammas (``None``: the variant's default,
            :data:`nprnn.DEFAULT_GAMMAS`).
        forget_bias: initial forget-gate bias.
        variance_method: normprop's constants, ``"analytic"`` or ``"simulated"`` (simulated:
            initialize outside ``jax.jit`` and outside a scan, see the module docstring). Used
            at init only: the constants are stored in ``consts`` and read from there.
        compensation: normprop's form, ``"paper"`` or ``"released"`` (which constants the cell
            reads from ``consts``).
        max_steps: batchnorm: T_max, the rows of the population statistics (required).
        bn_momentum: batchnorm: weight of the old statistics in their moving average.
        dropout_rate: recurrent dropout on the cell candidate in training (rng ``"dropout"``).
        deterministic: ``False`` is the core's ``training=True``: recurrent dropout, and batchnorm
            normalizes by the batch's moments and updates ``batch_stats`` (when mutable). Here or
            at call time, not both (``nn.merge_param``); required, in one of the two places, for
            batchnorm and with ``dropout_rate > 0`` (see the module docstring).
        matmul_dtype: mixed-precision products (e.g. ``jnp.bfloat16``), as in the core.
        param_dtype: dtype of the parameters and of the carry.
        carry_init: initializer of ``h`` and ``c`` in :meth:`initialize_carry` (zeros).
    """

    features: int
    variant: str
    gamma_x: float | None = None
    gamma_h: float | None = None
    gamma_c: float | None = None
    forget_bias: float = 0.0
    variance_method: str = "analytic"
    compensation: str = "paper"
    max_steps: int | None = None
    bn_momentum: float = 0.99
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    matmul_dtype: Any = None
    param_dtype: Any = jnp.float32
    carry_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    def __post_init__(self):
        _flax.check_options(self.variant, self.max_steps, self.dropout_rate, self.bn_momentum)
        _flax.check_normprop_options(self.variance_method, self.compensation)
        super().__post_init__()

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> LSTMCarry:
        """The initial :class:`LSTMCarry` for inputs of shape ``input_shape`` ([*batch, D]).

        Args:
            rng: key of ``carry_init`` (unused by the default zeros).
            input_shape: the shape of one step's input.

        Returns:
            ``LSTMCarry(h, c, t)``: ``h``, ``c`` [*batch, H] from ``carry_init`` (param_dtype);
            ``t`` int32 zeros [*batch] for batchnorm, else None.
        """
        keys = jax.random.split(rng)
        return _flax.zero_carry(
            self.variant, self.features, input_shape, self.param_dtype, self.carry_init, keys
        )

    @property
    def num_feature_axes(self) -> int:
        return 1

    def __call__(
        self, carry: LSTMCarry, x: jax.Array, deterministic: bool | None = None
    ) -> tuple[LSTMCarry, jax.Array]:
        """One time step: ``(carry, h)``, with ``x`` [*batch, D] and ``h`` [*batch, H].

        ``deterministic``: the attribute's, given at call time instead (``nn.merge_param``).
        """
        training = self._training(deterministic)
        opts = self._step_options()
        return self._apply(_flax.step_cell, carry, x, training=training, opts=opts)

    def run(
        self,
        carry: LSTMCarry,
        xs: jax.Array,
        *,
        seq_lengths=None,
        deterministic: bool | None = None,
        **opts,
    ):
        """A whole time-major sequence (``xs`` [T, *batch, D]) with one
        :func:`nprnn.run_sequence`: ``(carry, hs)``, ``hs`` [T, *batch, H] zero at padded steps
        (see ``nprnn._flax.run_layer``). ``deterministic`` as in :meth:`__call__`; ``opts``:
        ``unroll``, ``fused_backward``, ``hoist_input``."""
        training = self._training(deterministic)
        opts = {**self._step_options(), **opts}
        return self._apply(
            _flax.run_layer, carry, xs, training=training, seq_lengths=seq_lengths, opts=opts
        )

    @nn.compact
    def layer_variables(self, input_size: int):
        """The layer's ``(params, consts, bn_stats variable or None)``, created at init.

        At init the parameters and normprop's constants come from one :func:`nprnn.init_params`
        call with the ``"params"`` rng; afterwards both are read from the variables (``params``
        and ``consts``), never recomputed from the attributes.

        Raises:
            ValueError: when a collection the cell needs is not visible (``nn.RNN`` without
                :func:`rnn_options`) or lacks its constants (variables saved without
                ``consts``), or simulated constants are initialized under a trace.
        """
        if not self.has_variable("params", "w_x"):
            self._create_variables(input_size)
        params = dict(self.variables["params"])
        consts = self._read_consts()
        stats = None
        if self.variant == "batchnorm":
            self._require("batch_stats", "bn_stats")
            stats = self.variable(
                "batch_stats",
                "bn_stats",
                nprnn.init_bn_stats,
                self.features,
                self.max_steps,
                self.param_dtype,
            )
        return params, consts, stats

    @nn.nowrap
    def _const_names(self) -> tuple[str, ...]:
        """The names of the constants this cell reads from ``consts`` (``()`` but for normprop)."""
        return _flax.const_names(self.variant, self.compensation)

    @nn.nowrap
    def _create_variables(self, input_size: int) -> None:
        """Creates ``params`` and normprop's ``consts`` from one :func:`nprnn.init_params` call
        with the ``"params"`` rng."""
        if not self.is_mutable_collection("params"):
            raise ValueError(
                f"no LSTM parameters at {'/'.join(self.scope.path) or 'the root'}: the "
                "variables do not hold this cell's params (w_x, w_h, b, ...) at its path"
            )
        names = self._const_names()
        if names:
            self._require("consts", names[0])
        key = self.make_rng("params")
        if self.variance_method == "simulated" and isinstance(key, jax.core.Tracer):
            raise ValueError(
                "variance_method='simulated' calibrates the constants on the initial weights, "
                "which needs concrete values: initialize outside jax.jit and outside "
                "nn.RNN / nn.scan (e.g. LSTM(cell).init(...)), then apply those variables "
                "inside them (nn.RNN(cell, **nprnn.linen.rnn_options(cell)))"
            )
        sizes = {"input_size": input_size, "hidden_size": self.features}
        init_options = {k: getattr(self, k) for k in _flax.INIT_OPTIONS}
        params, consts = nprnn.init_params(
            key, variant=self.variant, dtype=self.param_dtype, **sizes, **init_options
        )
        for name, value in params.items():
            self.param(name, lambda _, v=value: v)
        for name in names:  # init_params' consts: the names of its compensation
            self.variable("consts", name, lambda v=consts[name]: v)

    @nn.nowrap
    def _read_consts(self) -> dict:
        """normprop's constants from ``consts`` (``{}`` for the other variants)."""
        names = self._const_names()
        missing = [name for name in names if not self.has_variable("consts", name)]
        if missing:
            raise ValueError(
                f"this normprop cell (compensation={self.compensation!r}) reads its constants "
                f"{list(names)} from the 'consts' collection, and the variables at "
                f"{'/'.join(self.scope.path) or 'the root'} lack {missing}. Inside nn.RNN or "
                "nn.scan (which broadcast only 'params' by default) use "
                "nn.RNN(cell, **nprnn.linen.rnn_options(cell)). Variables saved without "
                "'consts' (before nprnn.linen kept them there): add the constants of the "
                "module's init, {**variables, 'consts': model.init(key, inputs)['consts']}, "
                "which are those older versions computed from the attributes"
            )
        return {name: self.get_variable("consts", name) for name in names}

    @nn.nowrap
    def _training(self, deterministic: bool | None) -> bool:
        """The core's ``training``: ``not deterministic``, from the attribute or the call
        (``nn.merge_param``: exactly one). Where it changes nothing (no batchnorm, no dropout)
        it may be given nowhere."""
        needed = self.variant == "batchnorm" or self.dropout_rate > 0.0
        if not needed and self.deterministic is None and deterministic is None:
            return False
        return not nn.merge_param("deterministic", self.deterministic, deterministic)

    def _apply(self, fn: Callable, carry, inputs, *, training: bool, **kw):
        """``fn`` (``step_cell`` or ``run_layer`` of ``nprnn._flax``) with this cell's
        variables; the new batch statistics, if any, stored."""
        carry = _flax.check_carry(carry, self.variant)
        params, consts, stats = self.layer_variables(inputs.shape[-1])
        carry, out, new_stats = fn(
            params,
            consts,
            None if stats is None else stats.value,
            carry,
            inputs,
            variant=self.variant,
            training=training,
            key=self._dropout_key(training),
            **kw,
        )
        if new_stats is not None and not self.is_initializing():
            if not self.is_mutable_collection("batch_stats"):
                raise ValueError(
                    "a batchnorm cell in training (deterministic=False) updates its population "
                    "statistics: apply with mutable=['batch_stats']"
                )
            stats.value = new_stats
        return carry, out

    def _require(self, collection: str, name: str) -> None:
        if not (self.has_variable(collection, name) or self.is_mutable_collection(collection)):
            raise ValueError(
                f"this {self.variant!r} cell keeps variables in {collection!r}, which this scope "
                "does not see; nn.RNN and nn.scan broadcast only 'params' by default: use "
                "nn.RNN(cell, **nprnn.linen.rnn_options(cell))"
            )

    def _dropout_key(self, training: bool):
        if training and self.dropout_rate > 0.0:
            return self.make_rng("dropout")
        return None

    def _step_options(self) -> dict:
        return _flax.step_options(self.dropout_rate, self.matmul_dtype, self.bn_momentum)


class LSTM(nn.Module):
    """A sequence layer over :func:`nprnn.run_sequence`, with ``nn.RNN``'s conventions.

    ``LSTM(cell)`` is a drop-in for ``nn.RNN(cell)`` with an :class:`LSTMCell`: the same
    variables (``{"params": {"cell": ...}}``), the same call arguments and carry, but the whole
    sequence runs as one :func:`nprnn.run_sequence` call: the weight normalization once per
    sequence and the hand-written backward pass. Differences from ``nn.RNN``: outputs at padded
    steps are zero (``nn.RNN`` leaves them unspecified); several batch axes are flattened into one
    for the call; batchnorm takes one time index for the whole batch, ``max(carry.t)``.

    Example:
        >>> import jax, jax.numpy as jnp, nprnn.linen
        >>> layer = nprnn.linen.LSTM(nprnn.linen.LSTMCell(16, "normprop"), return_carry=True)
        >>> xs = jnp.ones((4, 10, 8))  # [B, T, D]
        >>> variables = layer.init(jax.random.key(0), xs)
        >>> carry, hs = layer.apply(variables, xs)
        >>> carry.h.shape, hs.shape
        ((4, 16), (4, 10, 16))

    Attributes:
        cell: the :class:`LSTMCell` whose options and variables the layer uses.
        time_major: inputs [T, *batch, D] instead of [*batch, T, D].
        return_carry: return ``(carry, outputs)`` instead of the outputs.
        reverse: run each sequence from its last valid step to its first (padding stays at the
            end); outputs in that order unless ``keep_order``.
        keep_order: with ``reverse``, return the outputs in the inputs' order.
        unroll: ``run_sequence``'s ``unroll`` (its reference path only).
        fused_backward: ``run_sequence``'s hand-written backward pass (default on).
        hoist_input: ``run_sequence``'s ``hoist_input`` (None: its per-backend default).
    """

    cell: LSTMCell
    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False
    unroll: int = 1
    fused_backward: bool = True
    hoist_input: bool | None = None

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry: LSTMCarry | None = None,
        init_key: jax.Array | None = None,
        seq_lengths: jax.Array | None = None,
        deterministic: bool | None = None,
        **overrides,
    ):
        """Runs the layer over ``inputs``, with ``nn.RNN.__call__``'s arguments.

        Args:
            inputs: [*batch, T, D] (or [T, *batch, D] with ``time_major``).
            initial_carry: an :class:`LSTMCarry` [*batch, H]; default ``cell.initialize_carry``.
            init_key: key of ``initialize_carry`` (default ``jax.random.key(0)``).
            seq_lengths: optional [*batch] lengths of right-padded sequences: the final carry is
                the state after each example's last valid step, and outputs at padded steps are 0.
            deterministic: the cell's ``deterministic``, given at call time instead of as its
                attribute (``nn.merge_param``: one of the two, not both).
            **overrides: ``return_carry``, ``time_major``, ``reverse``, ``keep_order``: override
                the attributes for this call (``None``: the attribute), as in ``nn.RNN``.

        Returns:
            The outputs [*batch, T, H] (time-major: [T, *batch, H]), or ``(carry, outputs)``.

        Raises:
            TypeError: for another keyword argument.
            ValueError: ``deterministic`` given both here and as the cell's attribute, or in
                neither place where it matters (flax's ``nn.merge_param`` errors).
        """
        settings = {k: getattr(self, k) for k in _flax.LAYER_SETTINGS}
        key = jax.random.key(0) if init_key is None else init_key
        init_carry = functools.partial(self.cell.initialize_carry, key)
        run = functools.partial(self.cell.run, deterministic=deterministic)
        return _flax.run_in_layout(
            run, init_carry, inputs, settings, initial_carry, seq_lengths, overrides
        )
