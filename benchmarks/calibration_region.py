r"""Where the simulated normprop calibration fails, by H and seed; imports variance_grid.

``normprop_variances(method="simulated")`` calibrates (var_c, var_h) on the layer's own W_h and
warns when its Newton iteration does not converge. ``variance_grid.py`` maps that over the gamma
grid for one size and one seed; this script repeats it for every hidden size in ``--hidden_sizes``
(D = H) and every init seed in ``--seeds``, then runs each calibrated layer on x_t ~ N(0, 1) and
measures Var[h_t] over batch and units for t >= ``--burn_in``. It reports, for every triple
where at least one (H, seed) failed to converge, how many seeds converged at each H and the range
of Var[h_t] over those runs; and a count of the failures per H.

Usage:
  .venv/bin/python benchmarks/calibration_region.py --out=/tmp/calibration_region.md
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax
import numpy as np
import variance_grid

# benchmarks/ is sys.path[0] when this file runs as a script.
import harness


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    parser.add_argument("--hidden_sizes", default="64,128,256", help="comma-separated H (D = H)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated init_params seeds")
    parser.add_argument("--gammas", default="0.1,0.5,1,2", help="the grid is the cube of these")
    parser.add_argument("--batch_size", type=int, default=64, help="B of the check")
    parser.add_argument("--steps", type=int, default=400, help="T of the check")
    parser.add_argument("--burn_in", type=int, default=50, help="statistics over t >= burn_in")
    parser.add_argument("--input_seed", type=int, default=1, help="seed of the inputs x_t")
    harness.add_output_flags(parser, "/tmp/calibration_region.md")
    return parser.parse_args(argv)


def measure(args, hidden_size: int, seeds, triples):
    """Calibrates and checks every (seed, triple) at one H.

    Returns:
      ``{(seed, triple): {"converged": bool, "min": float, "max": float, "mean": float}}``.
    """
    run = variance_grid.make_runner(hidden_size, args.batch_size)
    xs = jax.random.normal(
        jax.random.key(args.input_seed), (args.steps, args.batch_size, hidden_size)
    )
    out = {}
    for seed in seeds:
        size_args = argparse.Namespace(seed=seed, input_size=hidden_size, hidden_size=hidden_size)
        for triple in triples:
            params, consts, converged, _ = variance_grid.init_triple(size_args, triple, "simulated")
            var_t = np.asarray(run(params, consts, xs))[args.burn_in :]
            out[seed, triple] = {
                "converged": converged,
                "min": float(var_t.min()),
                "max": float(var_t.max()),
                "mean": float(var_t.mean()),
            }
        failed = sum(not out[seed, t]["converged"] for t in triples)
        print(f"H={hidden_size} seed={seed}: {failed} of {len(triples)} not converged", flush=True)
    return out


def markdown(results, hidden_sizes, seeds, triples) -> str:
    """The table of the triples that failed somewhere, then the failures per H."""
    header = ["gamma_x", "gamma_h", "gamma_c"] + [
        f"H={h}: converged seeds; Var[h_t] range" for h in hidden_sizes
    ]
    lines = [harness.markdown_row(header), harness.markdown_rule(len(header))]
    for triple in triples:
        runs = {h: [results[h][s, triple] for s in seeds] for h in hidden_sizes}
        if all(r["converged"] for rs in runs.values() for r in rs):
            continue
        cells = [variance_grid.fmt(g) for g in triple]
        for h in hidden_sizes:
            ok = sum(r["converged"] for r in runs[h])
            lo = min(r["min"] for r in runs[h])
            hi = max(r["max"] for r in runs[h])
            bold = "**" if ok < len(seeds) else ""
            count = f"{bold}{ok}/{len(seeds)}{bold}"
            cells.append(f"{count}; [{variance_grid.fmt(lo)}, {variance_grid.fmt(hi)}]")
        lines.append(harness.markdown_row(cells))
    lines.append("")
    for h in hidden_sizes:
        failed = [(s, t) for (s, t), r in results[h].items() if not r["converged"]]
        ok = [r for r in results[h].values() if r["converged"]]
        lines.append(
            f"- H = {h}: {len(failed)} of {len(seeds) * len(triples)} (seed, triple) runs did "
            f"not converge; where it converged, Var[h_t] (t >= burn-in) lay in "
            f"[{variance_grid.fmt(min(r['min'] for r in ok))}, "
            f"{variance_grid.fmt(max(r['max'] for r in ok))}], time means "
            f"[{variance_grid.fmt(min(r['mean'] for r in ok))}, "
            f"{variance_grid.fmt(max(r['mean'] for r in ok))}]."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """Runs every (H, seed, triple) and prints / writes the report."""
    args = parse_args(argv)
    hidden_sizes = [int(v) for v in args.hidden_sizes.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    values = [float(v) for v in args.gammas.split(",")]
    triples = list(itertools.product(values, repeat=3))
    start = time.perf_counter()
    results = {h: measure(args, h, seeds, triples) for h in hidden_sizes}
    elapsed = time.perf_counter() - start
    text = (
        f"Simulated calibration (`normprop_variances(method='simulated')`) at every triple of "
        f"{{{args.gammas}}}^3, D = H, init seeds {args.seeds}; the check runs the calibrated "
        f"layer on x_t ~ N(0, 1), B = {args.batch_size}, T = {args.steps}, and takes Var[h_t] "
        f"over batch and units for t >= {args.burn_in}. Rows: the triples where at least one "
        f"(H, seed) did not converge. Total {elapsed:.0f} s.\n\n"
    ) + markdown(results, hidden_sizes, seeds, triples)
    print("\n" + text)
    with open(args.out, "w") as f:
        f.write(text)
    if args.json_out:
        rows = [
            {"hidden_size": h, "seed": s, "gammas": t, **r}
            for h in hidden_sizes
            for (s, t), r in results[h].items()
        ]
        harness.write_json(args.json_out, {"flags": vars(args), "rows": rows, "seconds": elapsed})


if __name__ == "__main__":
    main()
