"""A character-level language model on Penn Treebank in flax linen with the Normalized LSTM: the
runnable example of the README's "From Flax"; imports nprnn.data and nprnn.linen.

The model is an embedding, one ``nprnn.linen.LSTM`` layer (``run_sequence`` over the whole
window) and a dense softmax head. It trains with Adam, global-norm clipping at 1.0 and
``nprnn.linen.unit_norm_projection()`` last in the optax chain (the paper's section 3.3), on
windows that start at random positions (the paper's protocol, ``nprnn.data.random_windows``),
and reports the validation bits per character on the first ``--eval_batches`` batches of
length-``--seq_len`` windows before and after training. This is a demonstration, not one of the
paper's settings (see ``train.py`` and ``configs/`` for those).

Usage:
  .venv/bin/python examples/train_linen_charlm.py --data_dir=../shared/data --steps=300
"""

from __future__ import annotations

import argparse
import math
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nprnn.data
import nprnn.linen


class CharLM(nn.Module):
    """Embedding -> one LSTM layer -> dense head; ``ids`` [B, T] to logits [B, T, V]."""

    vocab: int
    hidden: int
    embed: int
    variant: str = "normprop"
    gamma_h: float | None = None

    @nn.compact
    def __call__(self, ids):
        # Unit-variance inputs, as the normprop variance constants assume.
        xs = nn.Embed(self.vocab, self.embed, embedding_init=nn.initializers.normal(1.0))(ids)
        cell = nprnn.linen.LSTMCell(self.hidden, self.variant, gamma_h=self.gamma_h)
        return nn.Dense(self.vocab)(nprnn.linen.LSTM(cell)(xs))


def nll(logits, targets):
    """Mean negative log-likelihood in nats."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="../shared/data", help="holds ptb/ptb.char.*.txt")
    parser.add_argument("--steps", type=int, default=300, help="parameter updates")
    parser.add_argument("--batch_size", type=int, default=32, help="windows per batch")
    parser.add_argument("--seq_len", type=int, default=100, help="characters per window")
    parser.add_argument("--hidden", type=int, default=256, help="H, LSTM units")
    parser.add_argument("--embed", type=int, default=64, help="D, embedding size")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument(
        "--gamma_h",
        type=float,
        default=1.0,
        help="initial gamma_h (the paper's 2.0 makes the gradient explode through time at "
        "initialization, README 'Results'; 1.0 trains from the first updates)",
    )
    parser.add_argument("--eval_batches", type=int, default=10, help="validation batches")
    parser.add_argument("--log_every", type=int, default=50, help="updates between log lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check the data files' SHA-256 (--no-verify for other copies of PTB)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Trains and evaluates; returns ``{"valid_bpc_before", "valid_bpc_after", "train_loss"}``."""
    args = parse_args(argv)
    corpus = nprnn.data.load_ptb_chars(args.data_dir, verify=args.verify)
    model = CharLM(len(corpus.vocab), args.hidden, args.embed, gamma_h=args.gamma_h)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(args.lr), nprnn.linen.unit_norm_projection()
    )
    dummy = jnp.zeros((args.batch_size, args.seq_len), jnp.int32)
    variables = model.init(jax.random.key(args.seed), dummy)
    # Only the params train; the rest ("consts": normprop's var_c, var_h) stays as initialized.
    params, frozen = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, inputs, targets):
        loss, grads = jax.value_and_grad(
            lambda p: nll(model.apply({**frozen, "params": p}, inputs), targets)
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def eval_sums(params, inputs, targets, mask):
        losses = optax.softmax_cross_entropy_with_integer_labels(
            model.apply({**frozen, "params": params}, inputs), targets
        )
        return jnp.sum(losses * mask), jnp.sum(mask)

    def valid_bpc(params):
        total = count = 0.0
        windows = nprnn.data.eval_windows(
            corpus.valid, length=args.seq_len, batch_size=args.batch_size
        )
        for _, (inputs, targets, mask) in zip(range(args.eval_batches), windows, strict=False):
            loss_sum, n = eval_sums(params, inputs, targets, mask)
            total, count = total + float(loss_sum), count + float(n)
        return total / count / math.log(2.0)

    before = valid_bpc(params)
    print(f"step 0: valid bpc {before:.3f}")
    start, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        inputs, targets = nprnn.data.random_windows(
            corpus.train,
            batch_size=args.batch_size,
            length=args.seq_len,
            seed=args.seed,
            step=step,
        )
        params, opt_state, loss = train_step(params, opt_state, inputs, targets)
        losses.append(loss)
        if step % args.log_every == 0 or step == args.steps:
            mean = float(np.mean(jax.device_get(losses[-args.log_every :])))
            rate = step / (time.perf_counter() - start)
            print(f"step {step}: train bpc {mean / math.log(2.0):.3f} ({rate:.1f} updates/s)")
    after = valid_bpc(params)
    print(f"step {args.steps}: valid bpc {after:.3f} (first {args.eval_batches} batches)")
    return {"valid_bpc_before": before, "valid_bpc_after": after, "train_loss": float(losses[-1])}


if __name__ == "__main__":
    main()
