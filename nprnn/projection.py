"""The paper's unit-norm projection (section 3.3) over a whole parameter tree, and as the last
link of an optax chain; imports nprnn.initializers and nprnn._lstm.

One rule says which leaves are projected, for the training loop (:mod:`nprnn.training`), the
Flax modules (:mod:`nprnn.linen`, :mod:`nprnn.nnx`) and users' own optax chains:

* a weight-normalized LSTM layer is a mapping with ``w_x``, ``w_h``, ``gamma_x`` and ``gamma_h``
  and without ``beta_c``: the weightnorm and normprop layers of :func:`nprnn.init_params` (a plain
  LSTM has no gammas; layernorm and batchnorm have ``beta_c``). Its ``w_x``, ``w_h`` are projected
  by :func:`nprnn.project_unit_norm`.
* with ``linears=True``, a weight-normalized linear layer is a mapping with ``w`` and ``gamma``
  (:func:`nprnn.models.attention.linear`); its ``w`` gets unit-norm columns.

Every other leaf is left as it is. Linen ``variables``, an ``nnx.State`` (boxed or pure), nested
dicts, lists and tuples are all walked the same way, by the leaves' paths.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from nprnn._lstm import column_norm
from nprnn.initializers import project_unit_norm

__all__ = ["project_tree", "unit_norm_projection"]

_CELL_NAMES = frozenset({"w_x", "w_h", "gamma_x", "gamma_h"})
_LINEAR_NAMES = frozenset({"w", "gamma"})


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


def _projected_leaves(tree, *, cells: bool, linears: bool) -> tuple[list, Any, set]:
    """``tree``'s leaves with the weights of every weight-normalized layer projected; its
    structure; the indices of the leaves replaced."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = [leaf for _, leaf in flat]
    children: dict[tuple, dict] = {}
    for i, (path, _) in enumerate(flat):
        names = tuple(_key_name(e) for e in _unboxed(path))
        children.setdefault(names[:-1], {})[names[-1]] = i
    replaced = set()
    for names in children.values():
        if cells and _CELL_NAMES <= set(names) and "beta_c" not in names:
            index = {k: names[k] for k in ("w_x", "w_h")}
            projected = project_unit_norm({k: leaves[i] for k, i in index.items()})
        elif linears and _LINEAR_NAMES <= set(names):
            index = {"w": names["w"]}
            projected = {"w": leaves[index["w"]] / column_norm(leaves[index["w"]])}
        else:
            continue
        for k, i in index.items():
            leaves[i] = projected[k]
            replaced.add(i)
    return leaves, treedef, replaced


def project_tree(tree, *, cells: bool = True, linears: bool = False):
    """Projects every weight-normalized layer of a parameter tree to unit-norm columns.

    The paper's section 3.3 (:func:`nprnn.project_unit_norm`) for a whole model; the module's
    docstring says which layers are recognized. Jit-able.

    Args:
        tree: a pytree of arrays.
        cells: project the weightnorm and normprop LSTM layers.
        linears: project the weight-normalized linear layers (``w`` and ``gamma``).

    Returns:
        The same structure, with those layers' weights projected and every other leaf as it is.

    Example:
        >>> import jax.numpy as jnp
        >>> from nprnn.projection import project_tree
        >>> tree = {"lstm": {"w_x": jnp.ones((2, 4)), "w_h": jnp.ones((1, 4)),
        ...                  "gamma_x": jnp.ones(4), "gamma_h": jnp.ones(4)},
        ...         "dense": {"w_x": jnp.ones((2, 4))}}
        >>> out = project_tree(tree)
        >>> float(out["lstm"]["w_x"][0, 0]), float(out["dense"]["w_x"][0, 0])
        (0.7071067690849304, 1.0)
    """
    leaves, treedef, _ = _projected_leaves(tree, cells=cells, linears=linears)
    return treedef.unflatten(leaves)


def unit_norm_projection(*, cells: bool = True, linears: bool = False):
    """An optax transformation that makes the update land on unit-norm weights.

    Put it last in a chain (``optax.chain(optax.adam(lr), unit_norm_projection())``): for the
    weights :func:`project_tree` projects, it turns the update ``u`` into ``P(p + u) - p``, so
    that ``optax.apply_updates`` gives the projected weights ``P(p + u)`` (up to one float
    rounding of ``p + (P(p + u) - p)``; a weight-normalized layer's output does not depend on the
    weights' norm, only the effective learning rate does). Other leaves' updates pass through
    unchanged. It needs the parameters: ``tx.update(grads, state, params)``, which
    ``nnx.Optimizer``, :mod:`nprnn.training` and the usual linen loops pass.

    Args:
        cells: project the weightnorm and normprop LSTM layers.
        linears: project the weight-normalized linear layers (``w`` and ``gamma``).

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
        moved = optax.apply_updates(params, updates)
        projected, treedef, replaced = _projected_leaves(moved, cells=cells, linears=linears)
        param_leaves = treedef.flatten_up_to(params)
        update_leaves = treedef.flatten_up_to(updates)
        for i in replaced:
            update_leaves[i] = (projected[i] - param_leaves[i]).astype(update_leaves[i].dtype)
        return treedef.unflatten(update_leaves), state

    return optax.GradientTransformation(init_fn, update_fn)
