"""Flax linen modules over the functional core (a cell for nn.RNN, a sequence layer over
run_sequence), and the glue nprnn.nnx shares with them; imports nprnn (the public API).

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
    normprop with ``variance_method="simulated"`` only: ``var_c``, ``var_h``, which depend on the
    initial ``w_h``. The other normprop constants depend on nothing but the module's attributes
    (the initial gammas, the method, the form), so the module computes them when it is traced,
    with the same functions ``init_params`` calls (:func:`nprnn.normprop_variances`,
    :func:`nprnn.released_constants`), to the same bits; they are in no collection, so an
    optimizer cannot reach them and ``nn.RNN(cell)`` works with its default arguments.
``batch_stats``
    batchnorm only: ``bn_stats``, the population statistics of :func:`nprnn.init_bn_stats`, one
    row per time step (``max_steps`` rows). In training (``deterministic=False``, the collection
    mutable) each call replaces the rows it ran with the moving average of
    :func:`nprnn.update_bn_stats`. The time index that selects the row is carried in the carry
    (:class:`LSTMCarry` ``t``).

``nn.RNN`` broadcasts only ``params`` into its scan by default: pass :func:`rnn_options`
(``nn.RNN(cell, **nprnn.linen.rnn_options(cell))``) when the cell has ``consts`` or
``batch_stats``, or uses recurrent dropout; without them such a cell raises a ``ValueError`` that
says so.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop.
  flax ``linen/recurrent.py`` (``RNNCellBase``, ``nn.RNN``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.core import FrozenDict
from flax.linen.recurrent import flip_sequences

import nprnn

__all__ = [
    "LSTM",
    "LSTMCarry",
    "LSTMCell",
    "cell_options",
    "check_carry",
    "check_options",
    "gamma_consts",
    "in_rnn_layout",
    "layer_options",
    "project_unit_norm",
    "rnn_options",
    "run_layer",
    "step_cell",
    "unit_norm_projection",
    "zero_carry",
]

# The names of a weight-normalized LSTM layer's parameters (init_params' layout): weightnorm and
# normprop have gamma_x and gamma_h but no beta_c (which layernorm and batchnorm have).
_WEIGHT_NORM_NAMES = frozenset({"w_x", "w_h", "gamma_x", "gamma_h"})


class LSTMCarry(NamedTuple):
    """The carry of the Flax cells and layers: the LSTM state and, for batchnorm, a time index.

    Named fields, like :class:`nprnn.LSTMState` and unlike Flax's own LSTM carry ``(c, h)``;
    ``carry.state`` is the ``nprnn.LSTMState(h, c)`` the functional core takes. A plain tuple is
    refused (its order would be ambiguous).

    Attributes:
        h: hidden state (the output), [*batch, H].
        c: cell, [*batch, H].
        t: batchnorm: int32 [*batch], the time index of the next step, which selects the row of
            the population statistics (``min(t, max_steps - 1)``); every step adds 1 (in
            ``nn.RNN`` with ``seq_lengths`` and ``return_carry``, the final carry of example b
            has ``t + seq_lengths[b]``, like the layer's). ``None`` for the other variants.
    """

    h: jax.Array
    c: jax.Array
    t: jax.Array | None = None

    @property
    def state(self) -> nprnn.LSTMState:
        """The ``nprnn.LSTMState(h, c)`` of this carry."""
        return nprnn.LSTMState(h=self.h, c=self.c)


# ----------------------------------------------------------------------------------------------
# The glue shared with nprnn.nnx: checks, the constants, one step, one sequence, the layout.


def rnn_options(cell) -> dict:
    """The ``nn.RNN`` / ``nn.scan`` arguments under which ``cell`` sees all its variables.

    ``nn.RNN`` broadcasts only ``params`` into its scan by default. These options broadcast the
    frozen ``consts`` too, draw a new dropout mask at each step, and give batchnorm's
    ``batch_stats`` to the scan: broadcast (read-only) for a ``deterministic`` cell, carried from
    step to step for a training cell, which updates its row at each step (apply with
    ``mutable=["batch_stats"]``). Flax cannot create carried variables inside a scan
    (google/flax#2052), so initialize a batchnorm model with its cells ``deterministic`` (or with
    the layer, ``LSTM(cell).init``: the same variables) and train with the same variables.

    Args:
        cell: an :class:`LSTMCell` (or anything with its ``variant`` and ``deterministic``).

    Returns:
        ``{"variable_broadcast", "split_rngs"}``, and ``"variable_carry"`` for a batchnorm
        training cell: ``nn.RNN(cell, **rnn_options(cell))``.
    """
    carried = cell.variant == "batchnorm" and not cell.deterministic
    options = {
        "variable_broadcast": ("params", "consts") + (() if carried else ("batch_stats",)),
        "split_rngs": FrozenDict({"params": False, "dropout": True}),
    }
    if carried:
        options["variable_carry"] = "batch_stats"
    return options


def check_options(variant: str, max_steps: int | None) -> None:
    """Checks a cell's options before any tracing.

    Raises:
        ValueError: for an unknown variant (the message lists the valid ones), or batchnorm
            without ``max_steps``.
    """
    if variant not in nprnn.VARIANTS:
        raise ValueError(f"unknown LSTM variant {variant!r}; expected one of {nprnn.VARIANTS}")
    if variant == "batchnorm" and max_steps is None:
        raise ValueError(
            "a batchnorm cell keeps population statistics per time step: pass max_steps=T_max "
            "(the rows of nprnn.init_bn_stats; later steps reuse the last row)"
        )


def check_carry(carry, variant: str) -> LSTMCarry:
    """Returns ``carry`` if it is an :class:`LSTMCarry` that fits ``variant``.

    Raises:
        TypeError: for anything but an ``LSTMCarry`` (Flax's own LSTM carry is ``(c, h)``).
        ValueError: for a batchnorm carry without its time index ``t``.
    """
    if not isinstance(carry, LSTMCarry):
        raise TypeError(
            f"carry must be an nprnn.linen.LSTMCarry(h, c, t), got {type(carry).__name__}. A plain "
            "tuple is refused because its order is ambiguous (Flax's LSTM carry is (c, h)); make "
            "one with cell.initialize_carry(...) or LSTMCarry(h=h, c=c)"
        )
    if variant == "batchnorm" and carry.t is None:
        raise ValueError(
            "a batchnorm carry needs its time index t (int32 [*batch]): make it with "
            "cell.initialize_carry(...) or LSTMCarry(h=h, c=c, t=t)"
        )
    return carry


def gamma_consts(
    variant: str, gammas, *, variance_method: str, compensation: str, dtype
) -> dict | None:
    """The frozen constants that depend only on a layer's attributes, or ``None`` if there are
    none of that kind.

    normprop's analytic ``var_c``, ``var_h`` (eq. 8, 12) and the released form's ``s_h``,
    ``s_c`` are functions of the initial gammas: computed here by the functions
    :func:`nprnn.init_params` calls, with its default gammas, they are the same bits as its
    ``consts``. The simulated constants depend on the initial ``w_h`` (``None`` here: they must be
    stored). Other variants have no constants (``{}``).

    Args:
        variant: one of :data:`nprnn.VARIANTS`.
        gammas: ``(gamma_x, gamma_h, gamma_c)`` given to ``init_params`` (``None``: its default).
        variance_method: as in ``init_params``.
        compensation: as in ``init_params``.
        dtype: the parameters' dtype.
    """
    if variant != "normprop":
        return {}
    if variance_method != "analytic":
        return None
    gx, gh, gc = (
        given if given is not None else default
        for given, default in zip(gammas, nprnn.DEFAULT_GAMMAS[variant], strict=True)
    )
    if compensation == "released":
        values = dict(zip(("s_h", "s_c"), nprnn.released_constants(gh, gc), strict=True))
    else:
        values = dict(zip(("var_c", "var_h"), nprnn.normprop_variances(gx, gh, gc), strict=True))
    return {k: jnp.asarray(v, dtype) for k, v in values.items()}


def step_cell(params, consts, bn_stats, carry: LSTMCarry, x, *, variant, training, key, opts):
    """One step of a cell with :func:`nprnn.lstm_step`.

    Args:
        params, consts: the layer's, as from :func:`nprnn.init_params`.
        bn_stats: batchnorm population statistics, or None.
        carry: :class:`LSTMCarry`, [*batch, H] (``t`` selects the statistics' row).
        x: [*batch, D].
        variant: one of :data:`nprnn.VARIANTS`.
        training: the core's ``training``: recurrent dropout, batchnorm's batch statistics.
        key: this step's dropout key, or None.
        opts: ``{"dropout_rate", "matmul_dtype", "momentum"}``.

    Returns:
        ``(carry, h, new_bn_stats)``; ``new_bn_stats`` (batchnorm in training, else None) has
        row ``max(t)`` replaced by its moving average with this step's batch moments.
    """
    moments_wanted = training and variant == "batchnorm"
    out = nprnn.lstm_step(
        params,
        consts,
        carry.state,
        x,
        variant=variant,
        training=training,
        bn_stats=bn_stats,
        t=carry.t,
        key=key,
        dropout_rate=opts["dropout_rate"],
        return_moments=moments_wanted,
        matmul_dtype=opts["matmul_dtype"],
    )
    new_stats = None
    if moments_wanted:
        state, (h, moments) = out
        rows = jax.tree.map(lambda m: m[None], moments)
        new_stats = nprnn.update_bn_stats(
            bn_stats, rows, momentum=opts["momentum"], t0=jnp.max(carry.t)
        )
    else:
        state, h = out
    t = None if carry.t is None else carry.t + 1
    return LSTMCarry(h=state.h, c=state.c, t=t), h, new_stats


def run_layer(
    params, consts, bn_stats, carry: LSTMCarry, xs, *, variant, training, key, seq_lengths, opts
):
    """A whole time-major sequence with one :func:`nprnn.run_sequence` call.

    Args:
        params, consts, bn_stats, variant, training: as in :func:`step_cell`.
        carry: :class:`LSTMCarry`, [*batch, H]; batchnorm takes ``t0 = max(carry.t)`` for the
            whole batch (``run_sequence`` has one ``t0``).
        xs: [T, *batch, D]; several batch axes are flattened into one for the call.
        key: dropout key of the sequence (split into one per step by ``run_sequence``), or None.
        seq_lengths: optional [*batch] lengths of right-padded sequences.
        opts: :func:`step_cell`'s, plus ``unroll``, ``fused_backward``, ``hoist_input``.

    Returns:
        ``(carry, hs, new_bn_stats)``: the state after each example's last valid step, its ``t``
        advanced by ``seq_lengths`` (else T); ``hs`` [T, *batch, H], zero at padded steps;
        ``new_bn_stats`` (batchnorm in training, else None) with rows ``t0 .. t0 + T - 1``
        replaced by their moving averages.

    Raises:
        ValueError: batchnorm in training with more steps than the statistics have rows.
    """
    steps, batch = xs.shape[0], xs.shape[1:-1]
    flat = len(batch) > 1
    if flat:
        xs = xs.reshape(steps, -1, xs.shape[-1])
        carry = jax.tree.map(lambda a: a.reshape(-1, *a.shape[len(batch) :]), carry)
        seq_lengths = None if seq_lengths is None else jnp.reshape(seq_lengths, -1)
    moments_wanted = training and variant == "batchnorm"
    t0 = 0 if carry.t is None else jnp.max(carry.t)
    if moments_wanted and steps > bn_stats["c"]["mean"].shape[0]:
        raise ValueError(
            f"a training sequence of {steps} steps needs batch statistics of at least as many rows;"
            f" the cell has max_steps={bn_stats['c']['mean'].shape[0]}"
        )
    state, out = nprnn.run_sequence(
        params,
        consts,
        carry.state,
        xs,
        variant=variant,
        training=training,
        bn_stats=bn_stats,
        t0=t0,
        key=key,
        dropout_rate=opts["dropout_rate"],
        seq_lengths=seq_lengths,
        unroll=opts["unroll"],
        return_moments=moments_wanted,
        fused_backward=opts["fused_backward"],
        matmul_dtype=opts["matmul_dtype"],
        hoist_input=opts["hoist_input"],
    )
    hs, new_stats = out, None
    if moments_wanted:
        hs, moments = out
        new_stats = nprnn.update_bn_stats(bn_stats, moments, momentum=opts["momentum"], t0=t0)
    t = None if carry.t is None else carry.t + (steps if seq_lengths is None else seq_lengths)
    carry = LSTMCarry(h=state.h, c=state.c, t=t)
    if flat:
        carry = jax.tree.map(lambda a: a.reshape(*batch, *a.shape[1:]), carry)
        hs = hs.reshape(steps, *batch, hs.shape[-1])
    return carry, hs, new_stats


def in_rnn_layout(run: Callable, init_carry: Callable, inputs, *, initial_carry, seq_lengths, how):
    """``nn.RNN``'s conventions around ``run(carry, xs [T, *batch, D]) -> (carry, hs)``.

    Args:
        run: the time-major sequence function.
        init_carry: ``input_shape -> carry`` (the shape without the time axis), used when
            ``initial_carry`` is None.
        inputs: [*batch, T, D], or [T, *batch, D] with ``how["time_major"]``.
        initial_carry: the carry, or None.
        seq_lengths: optional [*batch] lengths of right-padded sequences.
        how: ``{"time_major", "reverse", "keep_order", "return_carry"}`` (booleans), as in
            ``nn.RNN``: ``reverse`` runs each sequence from its last valid step to its first
            (padding stays at the end) and returns outputs in that order unless ``keep_order``.

    Returns:
        The outputs in ``inputs``' layout, or ``(carry, outputs)`` with ``return_carry``.
    """
    xs = inputs if how["time_major"] else jnp.moveaxis(inputs, -2, 0)
    flip = {"seq_lengths": seq_lengths, "num_batch_dims": xs.ndim - 2, "time_major": True}
    if how["reverse"]:
        xs = flip_sequences(xs, **flip)
    carry = init_carry(xs.shape[1:]) if initial_carry is None else initial_carry
    carry, hs = run(carry, xs)
    if how["reverse"] and how["keep_order"]:
        hs = flip_sequences(hs, **flip)
    if not how["time_major"]:
        hs = jnp.moveaxis(hs, 0, -2)
    return (carry, hs) if how["return_carry"] else hs


def cell_options(cell) -> dict:
    """A cell's ``opts`` for :func:`step_cell` and :func:`run_layer`: its ``dropout_rate``,
    ``matmul_dtype`` and ``bn_momentum`` (as ``momentum``)."""
    return {
        "dropout_rate": cell.dropout_rate,
        "matmul_dtype": cell.matmul_dtype,
        "momentum": cell.bn_momentum,
    }


def layer_options(layer, **overrides) -> tuple[dict, dict]:
    """A sequence layer's ``(how, opts)`` for :func:`in_rnn_layout` and :func:`run_layer`: its
    attributes, with the call's non-None ``overrides`` (``time_major``, ``reverse``,
    ``keep_order``, ``return_carry``) taking precedence, as in ``nn.RNN``."""
    how = {
        k: getattr(layer, k) if overrides.get(k) is None else overrides[k]
        for k in ("time_major", "reverse", "keep_order", "return_carry")
    }
    opts = {k: getattr(layer, k) for k in ("unroll", "fused_backward", "hoist_input")}
    return how, opts


def zero_carry(variant: str, features: int, input_shape, dtype, carry_init=None, keys=None):
    """The initial :class:`LSTMCarry` for inputs of ``input_shape`` ([*batch, D]).

    ``h`` and ``c`` are ``carry_init(key, [*batch, H], dtype)`` with ``keys = (key_c, key_h)``
    (zeros when ``carry_init`` is None); ``t`` is 0 for batchnorm, else None.
    """
    batch = tuple(input_shape[:-1])
    shape = (*batch, features)
    if carry_init is None:
        h = c = jnp.zeros(shape, dtype)
    else:
        c, h = (carry_init(k, shape, dtype) for k in keys)
    t = jnp.zeros(batch, jnp.int32) if variant == "batchnorm" else None
    return LSTMCarry(h=h, c=c, t=t)


# ----------------------------------------------------------------------------------------------
# The unit-norm projection over a parameter tree.


def _key_name(entry) -> Any:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return entry


def _unboxed(path):
    """``path`` without the last entry of a boxed leaf (the ``.value`` of an ``nnx.Variable`` in
    an ``nnx.State``), so that a leaf's name is its variable's."""
    last = path[-1] if path else None
    if isinstance(last, jax.tree_util.GetAttrKey) and last.name == "value":
        return path[:-1]
    return path


def _weight_norm_layers(tree):
    """The leaves of ``tree``, its structure, and ``{layer path: {"w_x": i, "w_h": i}}`` (leaf
    indices) for every weight-normalized LSTM layer in it."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [tuple(_key_name(e) for e in _unboxed(path)) for path, _ in flat]
    children = {}
    for i, path in enumerate(paths):
        children.setdefault(path[:-1], {})[path[-1]] = i
    layers = {
        parent: {"w_x": names["w_x"], "w_h": names["w_h"]}
        for parent, names in children.items()
        if _WEIGHT_NORM_NAMES <= set(names) and "beta_c" not in names
    }
    return [leaf for _, leaf in flat], treedef, layers


def project_unit_norm(tree):
    """Projects every weight-normalized LSTM layer of a parameter tree to unit-norm columns.

    The paper's section 3.3 (:func:`nprnn.project_unit_norm`) for a whole model: linen
    ``variables`` or ``variables["params"]``, an ``nnx.State`` of arrays, nested dicts. A layer
    is any mapping in the tree with ``w_x``, ``w_h``, ``gamma_x`` and ``gamma_h`` and without
    ``beta_c``: the weightnorm and normprop layers of :func:`nprnn.init_params` (a plain LSTM has
    no gammas; layernorm and batchnorm have ``beta_c``). Their ``w_x``, ``w_h`` are rescaled;
    every other leaf is returned as it is. Jit-able.

    Args:
        tree: a pytree of arrays.

    Returns:
        The same structure, with the weight-normalized layers projected.

    Example:
        >>> import jax, jax.numpy as jnp, nprnn.linen
        >>> tree = {"lstm": {"w_x": jnp.ones((2, 4)), "w_h": jnp.ones((1, 4)),
        ...                  "gamma_x": jnp.ones(4), "gamma_h": jnp.ones(4)},
        ...         "dense": {"w_x": jnp.ones((2, 4))}}
        >>> out = nprnn.linen.project_unit_norm(tree)
        >>> float(out["lstm"]["w_x"][0, 0]), float(out["dense"]["w_x"][0, 0])
        (0.7071067690849304, 1.0)
    """
    leaves, treedef, layers = _weight_norm_layers(tree)
    for index in layers.values():
        projected = nprnn.project_unit_norm({k: leaves[i] for k, i in index.items()})
        for k, i in index.items():
            leaves[i] = projected[k]
    return treedef.unflatten(leaves)


def unit_norm_projection() -> optax.GradientTransformation:
    """An optax transformation that makes the update land on unit-norm weights.

    Put it last in a chain (``optax.chain(optax.adam(lr), unit_norm_projection())``): for the
    ``w_x``, ``w_h`` of every weight-normalized layer (see :func:`project_unit_norm`) it turns
    the update ``u`` into ``P(p + u) - p``, so that ``optax.apply_updates`` gives the projected
    weights ``P(p + u)`` (up to one float rounding of ``p + (P(p + u) - p)``; the layer's output
    does not depend on the weights' norm, only the effective learning rate does). Other leaves'
    updates pass through unchanged. It needs the parameters: ``tx.update(grads, state,
    params)``, which ``nnx.Optimizer`` and the usual linen training loops pass.

    Returns:
        A stateless ``optax.GradientTransformation``.

    Raises:
        ValueError: at ``update`` without ``params``.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "unit_norm_projection needs the parameters: call tx.update(grads, state, params)"
            )
        new_leaves, treedef, layers = _weight_norm_layers(optax.apply_updates(params, updates))
        param_leaves = treedef.flatten_up_to(params)
        update_leaves = treedef.flatten_up_to(updates)
        for index in layers.values():
            projected = nprnn.project_unit_norm({k: new_leaves[i] for k, i in index.items()})
            for k, i in index.items():
                p = param_leaves[i]
                update_leaves[i] = (projected[k] - p).astype(update_leaves[i].dtype)
        return treedef.unflatten(update_leaves), state

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------------------------
# The linen modules.


class LSTMCell(nn.RNNCellBase):
    """An LSTM cell of any nprnn variant, for ``nn.RNN``, ``nn.Bidirectional`` and ``nn.scan``.

    One step is :func:`nprnn.lstm_step` (eq. 13-15 for normprop; the variants' equations are in
    :mod:`nprnn.cells`) with the parameters of :func:`nprnn.init_params`. Inside ``nn.RNN`` the
    weight normalization runs at every step; for a whole sequence :class:`LSTM` calls
    :func:`nprnn.run_sequence` instead, which does it once and has a hand-written backward pass.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, nprnn.linen
        >>> rnn = nn.RNN(nprnn.linen.LSTMCell(features=16, variant="normprop"))
        >>> xs = jnp.ones((4, 10, 8))  # [B, T, D], nn.RNN's default layout
        >>> variables = rnn.init(jax.random.key(0), xs)
        >>> rnn.apply(variables, xs).shape
        (4, 10, 16)

    Attributes:
        features: H, the number of units.
        variant: one of :data:`nprnn.VARIANTS`.
        gamma_x, gamma_h, gamma_c: initial gammas (``None``: the variant's default,
            :data:`nprnn.DEFAULT_GAMMAS`).
        forget_bias: initial forget-gate bias.
        variance_method: normprop's constants, ``"analytic"`` or ``"simulated"`` (stored in
            ``consts``; initialize outside ``jax.jit`` and outside a scan, see the module
            docstring).
        compensation: normprop's form, ``"paper"`` or ``"released"``.
        max_steps: batchnorm: T_max, the rows of the population statistics (required).
        bn_momentum: batchnorm: weight of the old statistics in their moving average.
        dropout_rate: recurrent dropout on the cell candidate in training (rng ``"dropout"``).
        deterministic: ``False`` is the core's ``training=True``: recurrent dropout, and batchnorm
            normalizes by the batch's moments and updates ``batch_stats`` (when mutable).
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
    deterministic: bool = True
    matmul_dtype: Any = None
    param_dtype: Any = jnp.float32
    carry_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    def __post_init__(self):
        check_options(self.variant, self.max_steps)
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
        return zero_carry(
            self.variant, self.features, input_shape, self.param_dtype, self.carry_init, keys
        )

    @property
    def num_feature_axes(self) -> int:
        return 1

    def __call__(self, carry: LSTMCarry, x: jax.Array) -> tuple[LSTMCarry, jax.Array]:
        """One time step: ``(carry, h)``, with ``x`` [*batch, D] and ``h`` [*batch, H]."""
        return self._apply(step_cell, carry, x, opts=cell_options(self))

    def run(self, carry: LSTMCarry, xs: jax.Array, *, seq_lengths=None, **opts):
        """A whole time-major sequence (``xs`` [T, *batch, D]) with one
        :func:`nprnn.run_sequence`: ``(carry, hs)`` (see :func:`run_layer`). ``opts``:
        ``unroll``, ``fused_backward``, ``hoist_input``."""
        opts = {**cell_options(self), **opts}
        return self._apply(run_layer, carry, xs, seq_lengths=seq_lengths, opts=opts)

    @nn.compact
    def layer_variables(self, input_size: int):
        """The layer's ``(params, consts, bn_stats variable or None)``, created at init.

        At init the parameters (and simulated constants) come from one
        :func:`nprnn.init_params` call with the ``"params"`` rng.

        Raises:
            ValueError: when a collection the cell needs is not visible (``nn.RNN`` without
                :func:`rnn_options`), or simulated constants are initialized under a trace.
        """
        derived = gamma_consts(
            self.variant,
            (self.gamma_x, self.gamma_h, self.gamma_c),
            variance_method=self.variance_method,
            compensation=self.compensation,
            dtype=self.param_dtype,
        )
        if not self.has_variable("params", "w_x"):
            if not self.is_mutable_collection("params"):
                raise ValueError(
                    f"no LSTM parameters at {'/'.join(self.scope.path) or 'the root'}: the "
                    "variables do not hold this cell's params (w_x, w_h, b, ...) at its path"
                )
            key = self.make_rng("params")
            if derived is None and isinstance(key, jax.core.Tracer):
                raise ValueError(
                    "variance_method='simulated' calibrates the constants on the initial weights, "
                    "which needs concrete values: initialize outside jax.jit and outside "
                    "nn.RNN / nn.scan (e.g. LSTM(cell).init(...)), then apply those variables "
                    "inside them (nn.RNN(cell, **nprnn.linen.rnn_options(cell)))"
                )
            params, consts = nprnn.init_params(
                key,
                input_size=input_size,
                hidden_size=self.features,
                variant=self.variant,
                gamma_x=self.gamma_x,
                gamma_h=self.gamma_h,
                gamma_c=self.gamma_c,
                forget_bias=self.forget_bias,
                variance_method=self.variance_method,
                compensation=self.compensation,
                dtype=self.param_dtype,
            )
            for name, value in params.items():
                self.param(name, lambda _, v=value: v)
            if derived is None:
                self._require("consts", "var_c")
                for name, value in consts.items():
                    self.variable("consts", name, lambda v=value: v)
        params = dict(self.variables["params"])
        if derived is None:
            self._require("consts", "var_c")
            derived = dict(self.variables["consts"])
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
        return params, derived, stats

    def _apply(self, fn: Callable, carry, inputs, **kw):
        """``fn`` (:func:`step_cell` or :func:`run_layer`) with this cell's variables; the new
        batch statistics, if any, stored."""
        carry = check_carry(carry, self.variant)
        params, consts, stats = self.layer_variables(inputs.shape[-1])
        training = not self.deterministic
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
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ):
        """Runs the layer over ``inputs``; the arguments override the attributes (as in
        ``nn.RNN``).

        Args:
            inputs: [*batch, T, D] (or [T, *batch, D] with ``time_major``).
            initial_carry: an :class:`LSTMCarry` [*batch, H]; default ``cell.initialize_carry``.
            init_key: key of ``initialize_carry`` (default ``jax.random.key(0)``).
            seq_lengths: optional [*batch] lengths of right-padded sequences: the final carry is
                the state after each example's last valid step, and outputs at padded steps are 0.
            return_carry, time_major, reverse, keep_order: override the attributes.

        Returns:
            The outputs [*batch, T, H] (time-major: [T, *batch, H]), or ``(carry, outputs)``.
        """
        how, opts = layer_options(
            self,
            time_major=time_major,
            reverse=reverse,
            keep_order=keep_order,
            return_carry=return_carry,
        )
        key = jax.random.key(0) if init_key is None else init_key
        return in_rnn_layout(
            lambda carry, xs: self.cell.run(carry, xs, seq_lengths=seq_lengths, **opts),
            lambda shape: self.cell.initialize_carry(key, shape),
            inputs,
            initial_carry=initial_carry,
            seq_lengths=seq_lengths,
            how=how,
        )
