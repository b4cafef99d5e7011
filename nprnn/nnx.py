"""Flax NNX modules over the functional core (a cell for nnx.RNN, a sequence module over
run_sequence); imports nprnn (the public API) and nprnn._flax (what it shares with nprnn.linen).

Import it explicitly (``import nprnn.nnx``); ``import nprnn`` does not load flax modules. As in
:mod:`nprnn.linen`, nothing here computes an LSTM: the cell calls :func:`nprnn.lstm_step`, the
sequence module :func:`nprnn.run_sequence`, and the parameters come from
:func:`nprnn.init_params`.

What is here:

* :class:`LSTMCell`, an ``nnx.RNNCellBase`` for ``nnx.RNN`` (and ``nnx.Bidirectional``), for
  the five variants of :data:`nprnn.VARIANTS`;
* :class:`LSTM`, a sequence module with ``nnx.RNN``'s conventions that calls
  :func:`nprnn.run_sequence` once per sequence;
* :class:`Const` and :class:`BatchStat`, the variable types of the frozen constants and of the
  batch-norm population statistics, so that ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and
  ``nnx.grad`` (which differentiates ``nnx.Param`` by default) never touch them;
* :func:`project_unit_norm`, the paper's unit-norm projection (section 3.3) of a whole model,
  in place, after an optimizer update; :func:`unit_norm_projection`, the same as the last link
  of the optimizer's optax chain (:func:`nprnn.linen.unit_norm_projection`).

The state of a cell, by attribute: the parameters of :func:`nprnn.init_params` under their names
(``w_x``, ``w_h``, ``b``, ...) as ``nnx.Param``; its ``consts`` under their names (``var_c``,
``var_h``, or ``s_h``, ``s_c``; normprop only) as :class:`Const`; batchnorm's ``bn_stats``
(``{"x"|"h"|"c": {"mean", "var"}}``, rows [max_steps, ...]) as :class:`BatchStat`. The carry is
:class:`LSTMCarry` (``h``, ``c`` and, for batchnorm, the time index ``t``), the same type as
:class:`nprnn.linen.LSTMCarry`.

``deterministic=False`` (or ``model.train()``, which sets it) is the core's ``training=True``:
recurrent dropout (from the ``"dropout"`` stream of the ``rngs`` given at construction) and, for
batchnorm, the batch's own moments, with the population statistics updated in place;
``model.eval()`` sets it back to ``True``.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop.
  flax ``nnx/nn/recurrent.py`` (``RNNCellBase``, ``nnx.RNN``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import nprnn
from nprnn import _flax
from nprnn._flax import LSTMCarry, unit_norm_projection

__all__ = [
    "BatchStat",
    "Const",
    "LSTM",
    "LSTMCarry",
    "LSTMCell",
    "project_unit_norm",
    "unit_norm_projection",
]


class Const(nnx.Variable):
    """A frozen constant of a layer: normprop's ``var_c``, ``var_h`` (or ``s_h``, ``s_c``).

    Not an ``nnx.Param``: ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``nnx.grad`` leave it
    alone, and ``nnx.state(model, Const)`` selects it (for a checkpoint, say).
    """


class BatchStat(nnx.BatchStat):
    """Population statistics of a batch-norm LSTM, one row per time step.

    A subclass of ``nnx.BatchStat``, so code that filters on ``nnx.BatchStat`` (as for
    ``nnx.BatchNorm``) selects it too; never a ``Param``.
    """


class LSTMCell(nnx.RNNCellBase):
    """An LSTM cell of any nprnn variant, for ``nnx.RNN``.

    One step is :func:`nprnn.lstm_step` (eq. 13-15 for normprop; the variants' equations are in
    :mod:`nprnn.cells`). Inside ``nnx.RNN`` the weight normalization runs at every step; for a
    whole sequence :class:`LSTM` calls :func:`nprnn.run_sequence` instead, which does it once.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import nprnn.nnx
        >>> cell = nprnn.nnx.LSTMCell(8, 16, variant="normprop", rngs=nnx.Rngs(0))
        >>> nnx.RNN(cell)(jnp.ones((4, 10, 8))).shape  # [B, T, D] -> [B, T, H]
        (4, 10, 16)
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        variant: str,
        max_steps: int | None = None,
        bn_momentum: float = 0.99,
        dropout_rate: float = 0.0,
        deterministic: bool = True,
        matmul_dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **init_options,
    ):
        """Initializes the layer with :func:`nprnn.init_params` (key from ``rngs.params()``).

        Args:
            in_features: D.
            hidden_features: H, the number of units.
            variant: one of :data:`nprnn.VARIANTS`.
            max_steps: batchnorm: T_max, the rows of the population statistics (required).
            bn_momentum: batchnorm: weight of the old statistics in their moving average.
            dropout_rate: recurrent dropout on the cell candidate in training.
            deterministic: ``False`` is the core's ``training=True`` (see the module docstring).
            matmul_dtype: mixed-precision products (e.g. ``jnp.bfloat16``), as in the core.
            param_dtype: dtype of the parameters, constants, statistics and carry.
            rngs: ``params`` stream for the weights; ``dropout`` stream when
                ``dropout_rate > 0``.
            **init_options: passed on to :func:`nprnn.init_params`, whose defaults apply:
                ``gamma_x``, ``gamma_h``, ``gamma_c`` (initial gammas; ``None``: the variant's
                default), ``forget_bias``, ``variance_method`` (normprop's constants,
                ``"analytic"`` or ``"simulated"``), ``compensation`` (normprop's form,
                ``"paper"`` or ``"released"``): the attributes of the same names of
                :class:`nprnn.linen.LSTMCell`.

        Raises:
            ValueError: for an unknown variant, batchnorm without ``max_steps``, a rate outside
                [0, 1), or what ``init_params`` refuses.
            TypeError: for a keyword argument ``init_params`` does not take.
        """
        _flax.check_options(variant, max_steps, dropout_rate, bn_momentum)
        params, consts = nprnn.init_params(
            rngs.params(),
            input_size=in_features,
            hidden_size=hidden_features,
            variant=variant,
            dtype=param_dtype,
            **init_options,
        )
        self.in_features, self.hidden_features = in_features, hidden_features
        self.variant, self.param_dtype, self.deterministic = variant, param_dtype, deterministic
        self.dropout_rate = dropout_rate
        self.step_options = _flax.step_options(dropout_rate, matmul_dtype, bn_momentum)
        self.param_names, self.const_names = tuple(params), tuple(consts)
        for name, value in params.items():
            setattr(self, name, nnx.Param(value))
        for name, value in consts.items():
            setattr(self, name, Const(value))
        stats = None
        if variant == "batchnorm":
            stats = jax.tree.map(
                BatchStat, nprnn.init_bn_stats(hidden_features, max_steps, param_dtype)
            )
        self.bn_stats = nnx.data(stats)
        self.dropout_rngs = nnx.data(rngs["dropout"].fork() if dropout_rate > 0.0 else None)

    def initialize_carry(
        self, input_shape: tuple[int, ...], rngs=None, carry_init=None
    ) -> LSTMCarry:
        """The initial :class:`LSTMCarry` for inputs of shape ``input_shape``.

        Args:
            input_shape: the shape of one step's input, [*batch, D].
            rngs: ``nnx.Rngs`` (its ``carry`` stream) or an ``RngStream``; only ``carry_init``
                uses it.
            carry_init: initializer of ``h`` and ``c``; ``None``: zeros.

        Returns:
            ``LSTMCarry(h, c, t)``: ``h``, ``c`` [*batch, H] (param_dtype); ``t`` int32 zeros
            [*batch] for batchnorm, else None.
        """
        keys = None
        if carry_init is not None:
            stream = rngs.carry if isinstance(rngs, nnx.Rngs) else rngs
            if stream is None:
                raise ValueError("carry_init needs rngs to draw the initial carry from")
            keys = (stream(), stream())
        return _flax.zero_carry(
            self.variant, self.hidden_features, input_shape, self.param_dtype, carry_init, keys
        )

    @property
    def num_feature_axes(self) -> int:
        return 1

    def __call__(self, carry: LSTMCarry, x: jax.Array) -> tuple[LSTMCarry, jax.Array]:
        """One time step: ``(carry, h)``, with ``x`` [*batch, D] and ``h`` [*batch, H]."""
        return self._apply(_flax.step_cell, carry, x, opts=self.step_options)

    def run(self, carry: LSTMCarry, xs: jax.Array, *, seq_lengths=None, **opts):
        """A whole time-major sequence (``xs`` [T, *batch, D]) with one
        :func:`nprnn.run_sequence`: ``(carry, hs)``, ``hs`` [T, *batch, H] zero at padded steps
        (see ``nprnn._flax.run_layer``). ``opts``: ``unroll``, ``fused_backward``,
        ``hoist_input``."""
        opts = {**self.step_options, **opts}
        return self._apply(_flax.run_layer, carry, xs, seq_lengths=seq_lengths, opts=opts)

    def layer_arrays(self) -> tuple[dict, dict, dict | None]:
        """``(params, consts, bn_stats)`` as the functional core takes them (plain dicts of
        arrays; ``bn_stats`` None but for batchnorm)."""
        params = {k: getattr(self, k)[...] for k in self.param_names}
        consts = {k: getattr(self, k)[...] for k in self.const_names}
        stats = None
        if self.bn_stats is not None:
            stats = jax.tree.map(lambda v: v[...], self.bn_stats, is_leaf=_is_variable)
        return params, consts, stats

    def _dropout_key(self, training: bool):
        if training and self.dropout_rate > 0.0:
            return self.dropout_rngs()
        return None

    def _apply(self, fn, carry, inputs, **kw):
        """``fn`` (``step_cell`` or ``run_layer`` of ``nprnn._flax``) with this cell's arrays;
        the new batch statistics, if any, assigned in place."""
        carry = _flax.check_carry(carry, self.variant)
        training = not self.deterministic
        carry, out, new_stats = fn(
            *self.layer_arrays(),
            carry,
            inputs,
            variant=self.variant,
            training=training,
            key=self._dropout_key(training),
            **kw,
        )
        if new_stats is not None:
            jax.tree.map(_assign, self.bn_stats, new_stats, is_leaf=_is_variable)
        return carry, out


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def _assign(variable: nnx.Variable, value) -> None:
    variable[...] = value


class LSTM(nnx.Module):
    """A sequence module over :func:`nprnn.run_sequence`, with ``nnx.RNN``'s conventions.

    ``LSTM(cell)`` is a drop-in for ``nnx.RNN(cell)`` with an :class:`LSTMCell`: the same cell
    state (``model.cell``), the same call arguments and carry, but the whole sequence runs as one
    :func:`nprnn.run_sequence` call (weight normalization once, hand-written backward).
    Differences from ``nnx.RNN``: outputs at padded steps are zero; several batch axes are
    flattened into one for the call; batchnorm takes one time index for the whole batch,
    ``max(carry.t)``; the initial carry is the cell's zeros unless ``initial_carry`` is given.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import nprnn.nnx
        >>> cell = nprnn.nnx.LSTMCell(8, 16, variant="layernorm", rngs=nnx.Rngs(0))
        >>> carry, hs = nprnn.nnx.LSTM(cell, return_carry=True)(jnp.ones((4, 10, 8)))
        >>> carry.h.shape, hs.shape
        ((4, 16), (4, 10, 16))
    """

    def __init__(
        self,
        cell: LSTMCell,
        *,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        fused_backward: bool = True,
        hoist_input: bool | None = None,
    ):
        """Wraps ``cell``; the settings are :class:`nprnn.linen.LSTM`'s attributes (kept in the
        dict ``settings``)."""
        self.cell = cell
        self.settings = {
            "time_major": time_major,
            "return_carry": return_carry,
            "reverse": reverse,
            "keep_order": keep_order,
            "unroll": unroll,
            "fused_backward": fused_backward,
            "hoist_input": hoist_input,
        }

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry: LSTMCarry | None = None,
        seq_lengths: jax.Array | None = None,
        rngs=None,
        **overrides,
    ):
        """Runs the module over ``inputs`` ([*batch, T, D], or [T, *batch, D] with
        ``time_major``), with ``nnx.RNN.__call__``'s arguments.

        Args:
            inputs: [*batch, T, D] (or [T, *batch, D] with ``time_major``).
            initial_carry: an :class:`LSTMCarry` [*batch, H]; default ``cell.initialize_carry``.
            seq_lengths: optional [*batch] lengths of right-padded sequences: the final carry is
                the state after each example's last valid step, and outputs at padded steps are 0.
            rngs: handed to ``cell.initialize_carry`` (as in ``nnx.RNN``, for
                ``nnx.Bidirectional``).
            **overrides: ``return_carry``, ``time_major``, ``reverse``, ``keep_order``: override
                the settings for this call (``None``: the setting), as in ``nnx.RNN``.

        Returns:
            The outputs [*batch, T, H] (time-major: [T, *batch, H]), or ``(carry, outputs)``.

        Raises:
            TypeError: for another keyword argument.
        """
        init_carry = functools.partial(self.cell.initialize_carry, rngs=rngs)
        return _flax.run_in_layout(
            self.cell.run, init_carry, inputs, self.settings, initial_carry, seq_lengths, overrides
        )


def project_unit_norm(module: nnx.Module) -> None:
    """Projects every weight-normalized LSTM layer of ``module`` to unit-norm columns, in place.

    The paper's section 3.3, after each optimizer update::

        optimizer.update(model, grads)
        nprnn.nnx.project_unit_norm(model)

    Only ``nnx.Param`` variables are read and written, and among them only the ``w_x``, ``w_h``
    of weightnorm and normprop layers (:func:`nprnn.linen.project_unit_norm` says how they are
    recognized); works on any module that contains such cells. Alternatively, put
    :func:`nprnn.linen.unit_norm_projection` last in the optimizer's chain.
    """
    params = nnx.as_pure(nnx.state(module, nnx.Param))
    nnx.update(module, _flax.project_unit_norm(params))
