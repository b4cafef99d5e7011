r"""Hashes of the programs nprnn compiles, to compare two source trees; imports nprnn, harness.

A refactoring that claims "no change in behaviour or speed" can be checked without timing noise:
if ``run_sequence``'s forward pass and gradient lower to the same StableHLO text in both trees,
XLA compiles the same programs. Location metadata (file names, line numbers) is dropped before
hashing. One line per variant, mode and path: the default path, the hoisted input projection,
bfloat16 products, recurrent dropout, and the reference scan (``fused_backward=False``).

Usage (two checkouts, e.g. ``git worktree add ../old <commit>``; PYTHONPATH picks the tree):
  (cd ../old && PYTHONPATH=. python benchmarks/program_hashes.py) > /tmp/old.txt
  PYTHONPATH=. python benchmarks/program_hashes.py > /tmp/new.txt
  diff /tmp/old.txt /tmp/new.txt && echo identical
"""

from __future__ import annotations

import argparse
import functools
import hashlib

import jax
import jax.numpy as jnp

import nprnn

# benchmarks/ is sys.path[0] when this file runs as a script, so harness imports as top-level.
import harness

# (name, run_sequence keyword arguments)
PATHS = (
    ("default", {}),
    ("hoisted", {"hoist_input": True}),
    ("bfloat16", {"matmul_dtype": jnp.bfloat16}),
    ("dropout", {"dropout_rate": 0.1}),
    ("reference", {"fused_backward": False}),
)


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    parser.add_argument("--size", default="64x10x8x5", help="HxDxBxT of the lowered programs")
    return parser.parse_args(argv)


def program_hash(fn, *args) -> tuple[str, int]:
    """(sha256 prefix, line count) of ``jax.jit(fn).lower(*args)``'s text without locations."""
    text = jax.jit(fn).lower(*args).as_text()
    lines = [line.split(" loc(")[0] for line in text.splitlines() if not line.startswith("#loc")]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16], len(lines)


def _loss(params, consts, state, xs, *, variant, training, key, kwargs):
    _, hs = nprnn.run_sequence(
        params, consts, state, xs, variant=variant, training=training, key=key, **kwargs
    )
    return jnp.mean(hs**2)


def main(argv=None) -> None:
    args = parse_args(argv)
    (hidden, inputs, batch, steps) = harness.parse_sizes(args.size)[0]
    xs = jax.random.normal(jax.random.key(1), (steps, batch, inputs))
    state = nprnn.init_state(batch, hidden)
    for variant in nprnn.VARIANTS:
        params, consts = nprnn.init_params(
            jax.random.key(0), input_size=inputs, hidden_size=hidden, variant=variant
        )
        for path, kwargs in PATHS:
            dropout = "dropout_rate" in kwargs
            fixed = {"consts": consts, "state": state, "xs": xs, "variant": variant}
            key = jax.random.key(2) if dropout else None
            training = variant == "batchnorm" or dropout
            loss = functools.partial(_loss, training=training, key=key, kwargs=kwargs, **fixed)
            for mode, fn in (("forward", loss), ("grad", jax.grad(loss))):
                digest, count = program_hash(fn, params)
                print(f"{variant} {path} {mode} {digest} ({count} lines)")


if __name__ == "__main__":
    main()
