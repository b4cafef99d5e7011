r"""Time per update of K seeds in one jitted step (``train.num_seeds``) against K runs; imports
nprnn and harness.

``train.num_seeds = K`` trains K independent replicas with ``jax.vmap`` over a leading axis of
the parameters, the optimizer state and the batches, in one program. This script times one
training update (the char LM's: ``run_sequence`` over T steps, a softmax head, cross-entropy,
``jax.value_and_grad`` and an Adam update) with:

* ``vmap K``: the K replicas in one jitted call;
* ``K x single``: K calls of the one-replica program, one after the other (what K separate runs
  cost when they share the machine in turn).

It reports both per update and per seed. Timing as in ``step_time.py``
(``harness.time_round_robin``, allocator tuned, compile and warm-up excluded, medians).

Usage:
  .venv/bin/python benchmarks/replicas.py --sizes=128x50x32x100,256x50x32x100 --seeds=1,2,4,8
"""

from __future__ import annotations

import argparse
import os

import jax
import optax

import nprnn

# benchmarks/ is sys.path[0] when this file runs as a script, so harness imports as top-level.
import harness


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    harness.add_size_flags(parser, "128x50x32x100,256x50x32x100")
    parser.add_argument("--seeds", default="1,2,4,8", help="comma-separated K")
    parser.add_argument("--variant", default="normprop", help="the nprnn variant")
    parser.add_argument("--vocab", type=int, default=50, help="V, the softmax size")
    harness.add_output_flags(parser)
    return parser.parse_args(argv)


def make_step(variant: str, size, vocab: int):
    """``(init(key) -> (params, consts, opt_state, xs, targets), step)``: one training update."""
    hidden, inputs, batch, steps = size
    tx = optax.adam(2e-3)

    def init(key):
        keys = jax.random.split(key, 4)
        params, consts = nprnn.init_params(
            keys[0], input_size=inputs, hidden_size=hidden, variant=variant
        )
        params = {"lstm": params, "w_out": jax.random.normal(keys[1], (hidden, vocab)) * 0.05}
        xs = jax.random.normal(keys[2], (steps, batch, inputs))
        targets = jax.random.randint(keys[3], (steps, batch), 0, vocab)
        return params, consts, tx.init(params), xs, targets

    def step(params, consts, opt_state, xs, targets):
        def loss_fn(p):
            state = nprnn.init_state(batch, hidden)
            _, hs = nprnn.run_sequence(p["lstm"], consts, state, xs, variant=variant)
            logits = hs @ p["w_out"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return init, step


def make_calls(init, step, seeds) -> dict:
    """``{"vmap K": fn, "K x single": fn}`` for every K of ``seeds``: zero-argument calls."""
    single, batched = jax.jit(step), jax.jit(jax.vmap(step))
    one = init(jax.random.key(0))
    calls = {}
    for k in seeds:
        stacked = jax.vmap(init)(jax.random.split(jax.random.key(0), k))
        calls[f"vmap {k}"] = lambda stacked=stacked: batched(*stacked)[2]
        calls[f"{k} x single"] = lambda k=k: [single(*one)[2] for _ in range(k)]
    return calls


def main(argv=None) -> None:
    args = parse_args(argv)
    nprnn.tune_host_allocator()
    seeds = [int(k) for k in args.seeds.split(",")]
    print(harness.environment())
    results = []
    for size in harness.parse_sizes(args.sizes):
        times, _ = harness.time_round_robin(
            make_calls(*make_step(args.variant, size, args.vocab), seeds), args.repeats, warmup=1
        )
        base = harness.quartiles_ms(times["1 x single"])[0]
        print(f"\n(H, D, B, T) = {size}, {args.variant}, Adam; medians of {args.repeats}\n")
        header = ["K", "vmap K ms", "per seed", "K x single ms", "per seed", "vmap / K x single"]
        print(harness.markdown_row(header))
        print(harness.markdown_rule(len(header)))
        for k in seeds:
            vm = harness.quartiles_ms(times[f"vmap {k}"])
            sq = harness.quartiles_ms(times[f"{k} x single"])
            row = {"size": size, "K": k, "vmap_ms": vm[0], "sequential_ms": sq[0]}
            results.append(row)
            print(
                harness.markdown_row(
                    [
                        str(k),
                        harness.format_ms(*vm),
                        f"{vm[0] / k:.1f} ({vm[0] / k / base:.2f}x)",
                        harness.format_ms(*sq),
                        f"{sq[0] / k:.1f} ({sq[0] / k / base:.2f}x)",
                        f"{vm[0] / sq[0]:.2f}",
                    ]
                ),
                flush=True,
            )
    if args.json_out:
        harness.write_json(args.json_out, {"flags": vars(args), "results": results})
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
