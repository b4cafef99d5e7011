"""Batches as pure functions of (seed, step): character windows and shuffled minibatches;
imports nprnn._validate.

No iterator state: the batch of a training step depends only on the run's seed and the step
number, so a run that stores its step resumes on exactly the batch it would have drawn next.

* Character language models (Laurent et al. 2017, section 5.1): :func:`random_windows` for
  training, :func:`eval_windows` (Table 1's length-T windows) and :func:`stream_batches`
  (Table 2's full sequence with carried state) for evaluation. Batches are batch-major,
  ``[B, T]``; the models scan time-major ``[T, B]``, so transpose them before the scan.
* Image datasets: :func:`minibatches` shuffles an epoch, :func:`epoch_and_index` maps a step to
  its epoch and batch.

May import from nprnn: ``nprnn._validate`` only (host-side NumPy, no JAX arrays).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from nprnn import _validate

__all__ = ["epoch_and_index", "eval_windows", "minibatches", "random_windows", "stream_batches"]


def random_windows(
    ids: np.ndarray, *, batch_size: int, length: int, seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws the training batch of a given step: windows starting at uniformly random positions.

    This is the paper's training protocol for character-level PTB ("length-100 sequences that start
    at random positions"). Window ``b`` is ``ids[s_b : s_b + length + 1]`` with ``s_b`` uniform
    over every valid start; inputs are its first ``length`` ids and targets the last ``length``.
    The starts come from ``np.random.default_rng([seed, step])``, so the batch of a step depends
    only on ``(seed, step)``: a resumed run redraws exactly the batches it would have seen.

    Args:
        ids: int ``[N]`` symbol ids of a split, ``N > length``.
        batch_size: B, the number of windows.
        length: T, the number of time steps per window.
        seed: Non-negative seed of the run.
        step: Non-negative training step number.

    Returns:
        ``(inputs, targets)``, int32 ``[B, T]`` each, with ``targets[:, t] == inputs[:, t + 1]``.

    Raises:
        ValueError: If the split is not longer than ``length``, or a size is not positive.

    Example:
        >>> x, y = random_windows(np.arange(1000), batch_size=2, length=5, seed=0, step=7)
        >>> x.shape, bool((y[:, :-1] == x[:, 1:]).all())
        ((2, 5), True)
    """
    _validate.positive_int("batch_size", batch_size)
    _validate.positive_int("length", length)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size <= length:
        raise ValueError(f"ids must be 1-D and longer than length={length}, got shape {ids.shape}.")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, ids.size - length, size=batch_size)
    windows = ids[starts[:, None] + np.arange(length + 1)].astype(np.int32)
    return windows[:, :-1], windows[:, 1:]


def _eval_split(ids, *, batch_size: int, length: int) -> np.ndarray:
    """The ids of a split to evaluate (1-D, at least 2) as an array; checks the sizes."""
    _validate.positive_int("batch_size", batch_size)
    _validate.positive_int("length", length)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"ids must be 1-D with at least 2 ids, got shape {ids.shape}.")
    return ids


def _gather(
    ids: np.ndarray, positions: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``ids[p]`` and targets ``ids[p + 1]`` at valid positions, 0 elsewhere."""
    positions = np.where(valid, positions, 0)
    inputs = np.where(valid, ids[positions], 0).astype(np.int32)
    targets = np.where(valid, ids[positions + 1], 0).astype(np.int32)
    return inputs, targets, valid


def eval_windows(
    ids: np.ndarray, *, length: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches of the non-overlapping windows that cover a split, each evaluated from a fresh state.

    The "length-100 sequences" evaluation protocol (Table 1 of the paper): window ``k`` has inputs
    ``ids[k*T : k*T + T]`` and targets ``ids[k*T + 1 : k*T + T + 1]``, so the ``N - 1`` targets
    ``ids[1:]`` are each predicted exactly once, and none with more than ``T - 1`` characters of
    context. The last window is cut short at the end of the split and the last batch is filled
    with empty windows; ``mask`` marks the real targets (padding holds id 0).

    Args:
        ids: int ``[N]`` symbol ids of a split, ``N >= 2``.
        length: T, the window length.
        batch_size: B, windows per batch (window ``k`` is row ``k % B`` of batch ``k // B``).

    Yields:
        ``(inputs, targets, mask)``: int32 ``[B, T]``, int32 ``[B, T]`` and bool ``[B, T]``. The
        bits per character of the split are ``sum(mask * nll) / (sum(mask) * ln 2)`` over all
        batches, with ``sum(mask) == N - 1``.

    Raises:
        ValueError: If the split has fewer than 2 ids, or a size is not positive.
    """
    ids = _eval_split(ids, batch_size=batch_size, length=length)
    n_targets = ids.size - 1
    n_batches = math.ceil(math.ceil(n_targets / length) / batch_size)
    offsets = np.arange(batch_size)[:, None] * length + np.arange(length)
    for b in range(n_batches):
        positions = b * batch_size * length + offsets
        yield _gather(ids, positions, positions < n_targets)


def stream_batches(
    ids: np.ndarray, *, batch_size: int, length: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Consecutive chunks of ``batch_size`` contiguous streams, for evaluation with carried state.

    The "full sequence" protocol (Table 2 of the paper): the ``M = N - 1`` (input, target) pairs
    ``(ids[j], ids[j + 1])`` are cut into B contiguous streams of ``S = ceil(M / B)`` pairs (the
    last ones shorter or empty), and chunk ``c`` holds pairs ``c*T .. c*T + T - 1`` of every
    stream. A model that starts each stream from its initial state and carries the state from
    chunk to chunk sees each stream as one long sequence. Every target ``ids[1:]`` appears exactly
    once; ``mask`` marks them (padding holds id 0).

    Relation to the full-sequence bits per character: ``sum(mask * nll) / (sum(mask) * ln 2)`` is
    an average over exactly the ``N - 1`` targets ``ids[1:]``. With ``batch_size=1`` it IS the
    full-sequence bpc: every character is predicted from the whole text before it (the first
    character ``ids[0]`` is only conditioned on, never predicted). With B > 1 the only difference
    is that the first targets of streams 2..B are predicted without the text before their stream
    (B - 1 state resets in ``N - 1`` predictions), which raises the bpc slightly; for PTB test
    (442,423 ids) and B = 32 the difference is negligible, and B = 1 removes it.

    Args:
        ids: int ``[N]`` symbol ids of a split, ``N >= 2``.
        batch_size: B, the number of streams.
        length: T, the chunk length (time steps per forward call).

    Yields:
        ``(inputs, targets, mask)``: int32 ``[B, T]``, int32 ``[B, T]`` and bool ``[B, T]``, in
        order; row ``b`` of consecutive chunks continues stream ``b``.

    Raises:
        ValueError: If the split has fewer than 2 ids, or a size is not positive.
    """
    ids = _eval_split(ids, batch_size=batch_size, length=length)
    n_targets = ids.size - 1
    stream_len = math.ceil(n_targets / batch_size)
    starts = np.arange(batch_size)[:, None] * stream_len
    ends = np.minimum(starts + stream_len, n_targets)
    for c in range(math.ceil(stream_len / length)):
        positions = starts + c * length + np.arange(length)
        yield _gather(ids, positions, positions < ends)


def minibatches(n: int, *, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled minibatches of one epoch, as a pure function of (seed, epoch).

    The order is ``np.random.default_rng([seed, epoch]).permutation(n)``, cut into
    ``n // batch_size`` batches; the ``n % batch_size`` examples left over are skipped this epoch
    (a different set every epoch), which keeps every batch the same shape for jit.

    Args:
        n: Number of examples.
        batch_size: Examples per batch, ``1 <= batch_size <= n``.
        seed: Non-negative seed of the run.
        epoch: Non-negative epoch number.

    Returns:
        int64 ``[n // batch_size, batch_size]`` example indices; row ``i`` is batch ``i``.

    Raises:
        ValueError: If ``batch_size`` is not in ``[1, n]``.

    Example:
        >>> epoch, i = epoch_and_index(1234, n=50_000, batch_size=128)
        >>> batch = minibatches(50_000, batch_size=128, seed=0, epoch=epoch)[i]
        >>> (epoch, i, batch.shape)
        (3, 64, (128,))
    """
    _check_batch_size(batch_size, n)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    n_batches = n // batch_size
    return order[: n_batches * batch_size].reshape(n_batches, batch_size)


def epoch_and_index(step: int, *, n: int, batch_size: int) -> tuple[int, int]:
    """Maps a global training step to its epoch and its batch within the epoch.

    Args:
        step: Non-negative global step (number of batches already taken).
        n: Number of examples.
        batch_size: Examples per batch, as given to :func:`minibatches`.

    Returns:
        ``(epoch, index)`` such that the step's batch is
        ``minibatches(n, batch_size=batch_size, seed=seed, epoch=epoch)[index]``.

    Raises:
        ValueError: If ``step`` is negative or ``batch_size`` is not in ``[1, n]``.
    """
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}.")
    _check_batch_size(batch_size, n)
    epoch, index = divmod(step, n // batch_size)
    return epoch, index


def _check_batch_size(batch_size: int, n: int) -> None:
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, n={n}], got {batch_size}.")
