"""Gradient norm at initialization versus sequence length, on real character-level PTB.

The norm of the gradient of the mean per-character loss w.r.t. all parameters, at
initialization, for windows of length T, for the char LM of configs/ptb_char_small.py (H=128,
batch 32) with several variants and gamma initializations. PAPER.md ("What our own checks found")
reports about 1.25-1.3x growth per step for normprop at the paper's gammas (2, 2, 1).

    python scripts/grad_norm_vs_T.py --data_dir=../shared/data
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from configs.ptb_char_small import get_config
from nprnn import tasks


def _grad_norm(task, params, consts, state, batch) -> float:
    """L2 norm of the gradient of the task's mean loss w.r.t. all parameters."""

    def loss(p):
        return task.loss(p, consts, state, batch, None, False)[0]

    grads = jax.grad(loss)(params)
    return float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="../shared/data")
    parser.add_argument("--lengths", default="5,20,40,100")
    args = parser.parse_args()
    lengths = [int(t) for t in args.lengths.split(",")]
    setups = [
        ("lstm", "default"),
        ("layernorm", "default"),
        ("normprop", "default"),
        ("normprop", "critical"),
    ]
    print("| model | " + " | ".join(f"T={t}" for t in lengths) + " | growth per step |")
    print("|---|" + "---|" * (len(lengths) + 1))
    for variant, gamma_init in setups:
        norms = []
        for length in lengths:
            c = get_config()
            c.data.dir, c.data.download, c.data.seq_len = args.data_dir, False, length
            c.model.variant, c.model.gamma_init = variant, gamma_init
            task = tasks.build_task(c)
            params, consts, state = task.init(jax.random.key(c.seed))
            batch = task.train_batch(0)
            norms.append(_grad_norm(task, params, consts, state, batch))
        growth = (norms[-1] / norms[0]) ** (1.0 / (lengths[-1] - lengths[0]))
        name = f"{variant} ({gamma_init} gammas)" if variant == "normprop" else variant
        print(f"| {name} | " + " | ".join(f"{n:.3g}" for n in norms) + f" | {growth:.3f} |")


if __name__ == "__main__":
    main()
