r"""Would the unit-variance property hold with a smaller calibration batch? Times and checks the
simulated calibration at one batch size; imports nprnn and harness.

``init_params(variance_method="simulated")`` calibrates normprop's constants on ``batch_size``
(default 128) simulated sequences of the layer's own recurrent weights, whatever H. At H = 256
each step then averages over twice the samples that H = 128 gets. This script patches the batch
size that ``init_params`` passes and, for every gamma triple of {0.5, 1, 2}^3 and each init seed,
checks what ``tests/test_variances.py::test_unit_variance_at_init_with_simulated_constants``
asserts (float32, x_t ~ N(0, 1), batch 128, T = 1000, Var[h_t] for t >= 50: time mean within 3%
of 1, and every step in [0.9, 1.1] where the calibration converged), with the time of each
``init_params`` and its check.

Usage:
  .venv/bin/python benchmarks/calibration_batch.py --batch=64 --hidden=256 --seeds=0,1,2
"""

from __future__ import annotations

import functools
import itertools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import nprnn
from nprnn import initializers

# benchmarks/ is sys.path[0] when this file runs as a script, so harness imports as top-level.
import harness

T, B, BURN_IN = 1000, 128, 50


@jax.jit
def variance_per_step(params, consts, xs):
    state = nprnn.init_state(xs.shape[1], params["w_h"].shape[0], xs.dtype)
    _, hs = nprnn.run_sequence(params, consts, state, xs, variant="normprop")
    return jnp.var(hs, axis=(1, 2))


def one(gammas, seed: int, hidden: int, xs) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, consts = nprnn.init_params(
            jax.random.key(seed),
            input_size=hidden,
            hidden_size=hidden,
            variant="normprop",
            gamma_x=gammas[0],
            gamma_h=gammas[1],
            gamma_c=gammas[2],
            variance_method="simulated",
            dtype=jnp.float32,
        )
    converged = not any("did not converge" in str(w.message) for w in caught)
    v = np.asarray(variance_per_step(params, consts, xs))[BURN_IN:]
    seconds = time.perf_counter() - start  # init_params and the check, as the test spends it
    ok = 0.97 <= v.mean() <= 1.03 and (not converged or (v.min() >= 0.9 and v.max() <= 1.1))
    return dict(gammas=gammas, seed=seed, converged=converged, mean=float(v.mean()),
                min=float(v.min()), max=float(v.max()), ok=bool(ok), seconds=seconds)  # fmt: skip


def main(argv=None) -> None:
    parser = harness.flag_parser(__doc__)
    parser.add_argument("--batch", type=int, default=128, help="the calibration's batch size")
    parser.add_argument("--hidden", type=int, default=256, help="H (= D) of the layer")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated init seeds")
    harness.add_output_flags(parser)
    args = parser.parse_args(argv)
    initializers.normprop_variances = functools.partial(
        initializers.normprop_variances, batch_size=args.batch
    )
    records = []
    with jax.enable_x64(False):
        xs = jax.random.normal(jax.random.key(1), (T, B, args.hidden), jnp.float32)
        for seed in (int(s) for s in args.seeds.split(",")):
            for gammas in itertools.product((0.5, 1.0, 2.0), repeat=3):
                r = one(gammas, seed, args.hidden, xs)
                records.append(r)
                print(f"seed {seed} {gammas}: converged={r['converged']} mean={r['mean']:.4f} "
                      f"steps {r['min']:.3f}-{r['max']:.3f} ok={r['ok']} {r['seconds']:.1f}s",
                      flush=True)  # fmt: skip
    conv = [r for r in records if r["converged"]]
    print(
        f"batch {args.batch}, H = {args.hidden}: {sum(not r['ok'] for r in records)} of "
        f"{len(records)} out of bounds; {len(records) - len(conv)} not converged; time means "
        f"{min(r['mean'] for r in records):.4f}-{max(r['mean'] for r in records):.4f}; converged "
        f"steps {min(r['min'] for r in conv):.3f}-{max(r['max'] for r in conv):.3f}; "
        f"{sum(r['seconds'] for r in records):.0f} s in all"
    )
    print(harness.environment())
    if args.json_out:
        harness.write_json(args.json_out, {"records": records, **vars(args)})


if __name__ == "__main__":
    main()
