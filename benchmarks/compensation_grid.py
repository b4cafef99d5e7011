r"""Var[h_t] and gradient growth at init of both normprop forms over a gamma grid; imports harness.

For every triple (gamma_x, gamma_h, gamma_c) of a grid (by default {0.5, 1, 2}^3) and both forms
of the Normalized LSTM (``compensation="paper"``, eq. 15 with the analytic constants, and
``"released"``, the authors' code), :func:`nprnn.gradient_flow.flow_metrics` simulates the cell at
initialization and reports the per-step growth of a back-propagated gradient (``growth``: above 1
explodes, below 1 vanishes) and the stationary Var[h_t]. Two input scales: x_t ~ N(0, 1) (the
paper's assumption) and components of std 1/sqrt(V) (the char LM's one-hot times an orthogonal
matrix, V = 50).

Usage:
  .venv/bin/python benchmarks/compensation_grid.py --out=/tmp/compensation_grid.md
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np

from nprnn import gradient_flow

# benchmarks/ is sys.path[0] when this file runs as a script, so harness imports as top-level.
import harness

FORMS = ("paper", "released")


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    parser.add_argument("--gammas", default="0.5,1,2", help="gamma values; the grid is the cube")
    parser.add_argument("--hidden_size", type=int, default=128, help="H (= D)")
    parser.add_argument("--batch_size", type=int, default=32, help="B")
    parser.add_argument("--steps", type=int, default=100, help="T of the growth measurement")
    parser.add_argument("--vocab", type=int, default=50, help="V of the 1/sqrt(V) input scale")
    harness.add_output_flags(parser, "/tmp/compensation_grid.md")
    return parser.parse_args(argv)


def measure(gammas: np.ndarray, args, input_std: float) -> dict[str, dict[str, np.ndarray]]:
    """``{form: {"growth": [G], "var_h": [G]}}`` at one input scale."""
    out = {}
    for form in FORMS:
        config = gradient_flow.FlowConfig(
            hidden_size=args.hidden_size,
            batch_size=args.batch_size,
            steps=args.steps,
            input_std=input_std,
            compensation=form,
        )
        metrics = gradient_flow.flow_metrics(gammas, config)
        out[form] = {"growth": metrics["growth"], "var_h": metrics["var_h"]}
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    values = [float(v) for v in args.gammas.split(",")]
    gammas = np.array(list(itertools.product(values, repeat=3)))
    scales = {"1": 1.0, f"1/sqrt({args.vocab})": 1.0 / math.sqrt(args.vocab)}
    start = time.perf_counter()
    results = {name: measure(gammas, args, std) for name, std in scales.items()}
    elapsed = time.perf_counter() - start
    header = ["gamma_x", "gamma_h", "gamma_c"]
    for name in scales:
        for form in FORMS:
            header += [f"growth {form} (std {name})", f"Var[h] {form} (std {name})"]
    lines = [harness.markdown_row(header), harness.markdown_rule(len(header))]
    for k, triple in enumerate(gammas):
        cells = [f"{g:g}" for g in triple]
        for name in scales:
            for form in FORMS:
                r = results[name][form]
                cells += [f"{r['growth'][k]:.3f}", f"{r['var_h'][k]:.3g}"]
        lines.append(harness.markdown_row(cells))
    text = (
        f"normprop at initialization, H = D = {args.hidden_size}, B = {args.batch_size}, growth "
        f"over T = {args.steps} steps (per-step geometric mean), Var[h_t] over the same window; "
        f"input components of std 1 and 1/sqrt({args.vocab}). Total {elapsed:.0f} s.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    if args.json_out:
        rows = {
            name: {form: {k: v.tolist() for k, v in r.items()} for form, r in by_form.items()}
            for name, by_form in results.items()
        }
        harness.write_json(
            args.json_out, {"flags": vars(args), "gammas": gammas.tolist(), "results": rows}
        )


if __name__ == "__main__":
    main()
