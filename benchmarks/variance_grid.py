r"""Stationary Var[h_t] of the Normalized LSTM at init over a grid of gammas; imports harness.

For every triple (gamma_x, gamma_h, gamma_c) of a grid (by default {0.1, 0.5, 1, 2}^3) and both
variance methods of :func:`nprnn.normprop_variances` ("analytic": the paper's eq. 8 and 12;
"simulated": calibrated on the simulated recurrence), this script initializes a normprop layer
with :func:`nprnn.init_params` (seed 0, so the same weights for every triple), runs it on
x_t ~ N(0, 1) (one fixed draw) and measures Var[h_t] over the batch and the units at every step.
It reports the mean, min and max over the steps t >= ``--burn_in`` of that variance, and whether
the simulated calibration converged (``normprop_variances`` warns when it did not).

The forward pass is one jitted function whose gammas and constants are arguments, so it is
compiled once and reused for all triples.

Usage:
  .venv/bin/python benchmarks/variance_grid.py --out=/tmp/variance_grid.md
  .venv/bin/python benchmarks/variance_grid.py --matmul_dtype=bfloat16 --out=/tmp/vg_bf16.md
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import nprnn

# benchmarks/ is sys.path[0] when this file runs as a script, so harness imports as top-level.
import harness


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    parser.add_argument("--hidden_size", type=int, default=256, help="H")
    parser.add_argument("--input_size", type=int, default=256, help="D (size of x_t)")
    parser.add_argument("--batch_size", type=int, default=128, help="B")
    parser.add_argument("--steps", type=int, default=1000, help="T")
    parser.add_argument("--burn_in", type=int, default=50, help="statistics over t >= burn_in")
    parser.add_argument(
        "--gammas",
        default="0.1,0.5,1,2",
        help="comma-separated gamma values; the grid is their cube",
    )
    parser.add_argument(
        "--methods", default="analytic,simulated", help="comma-separated variance methods"
    )
    parser.add_argument(
        "--matmul_dtype",
        default="",
        help="mixed precision: run_sequence's matmul_dtype (e.g. bfloat16); empty: float32",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of init_params")
    parser.add_argument("--input_seed", type=int, default=1, help="seed of the inputs x_t")
    harness.add_output_flags(parser, "/tmp/variance_grid.md")
    return parser.parse_args(argv)


def make_runner(hidden_size: int, batch_size: int, matmul_dtype: str | None = None):
    """Returns a jitted ``(params, consts, xs) -> Var[h_t]`` ([T]) for the normprop variant.

    Args:
      hidden_size: H.
      batch_size: B.
      matmul_dtype: ``run_sequence``'s mixed-precision dtype name (None: float32 throughout).

    Returns:
      A jitted function; the gammas live in ``params`` and the constants in ``consts``, so one
      compilation serves every triple.
    """

    @jax.jit
    def per_step_variance(params, consts, xs):
        state = nprnn.init_state(batch_size, hidden_size)
        _, hs = nprnn.run_sequence(
            params, consts, state, xs, variant="normprop", matmul_dtype=matmul_dtype
        )
        return jnp.var(hs, axis=(1, 2))

    return per_step_variance


def init_triple(args, gammas, method):
    """Initializes the layer for one triple and method, recording calibration warnings.

    Args:
      args: parsed flags.
      gammas: (gamma_x, gamma_h, gamma_c).
      method: "analytic" or "simulated".

    Returns:
      ``(params, consts, converged, messages)``; ``converged`` is False when
      ``normprop_variances`` warned that the calibration did not converge.
    """
    gx, gh, gc = gammas
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, consts = nprnn.init_params(
            jax.random.key(args.seed),
            input_size=args.input_size,
            hidden_size=args.hidden_size,
            variant="normprop",
            gamma_x=gx,
            gamma_h=gh,
            gamma_c=gc,
            variance_method=method,
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    converged = not any("did not converge" in m for m in messages)
    return params, consts, converged, messages


def fmt(value: float) -> str:
    """Formats a variance with three significant digits (scientific when far from 1)."""
    if not np.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e3 or abs(value) < 1e-2):
        return f"{value:.2e}"
    return f"{value:.3g}"


def markdown_table(rows, methods) -> str:
    """Builds the Markdown table of the results.

    Args:
      rows: one dict per triple with keys ``gammas`` and, per method, ``{method: {...}}``.
      methods: the methods measured, in column order.

    Returns:
      The table as a string.
    """
    header = ["gamma_x", "gamma_h", "gamma_c"]
    for m in methods:
        header += [f"{m} mean", f"{m} min", f"{m} max"]
    if "simulated" in methods:
        header += ["simulated converged?", "simulated var_c", "simulated var_h"]
    lines = [harness.markdown_row(header), harness.markdown_rule(len(header))]
    for row in rows:
        cells = [f"{g:g}" for g in row["gammas"]]
        for m in methods:
            r = row[m]
            cells += [fmt(r["mean"]), fmt(r["min"]), fmt(r["max"])]
        if "simulated" in methods:
            r = row["simulated"]
            cells += ["yes" if r["converged"] else "**no**", fmt(r["var_c"]), fmt(r["var_h"])]
        lines.append(harness.markdown_row(cells))
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """Runs the grid and prints / writes the table."""
    args = parse_args(argv)
    if args.matmul_dtype:
        try:
            harness.check_float_dtype(args.matmul_dtype)
        except ValueError as e:
            raise SystemExit(f"variance_grid.py: error: --matmul_dtype: {e}") from None
    values = [float(v) for v in args.gammas.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    xs = jax.random.normal(
        jax.random.key(args.input_seed), (args.steps, args.batch_size, args.input_size)
    )
    run = make_runner(args.hidden_size, args.batch_size, args.matmul_dtype or None)
    rows = []
    start_all = time.perf_counter()
    for gammas in itertools.product(values, repeat=3):
        row = {"gammas": gammas}
        for method in methods:
            t0 = time.perf_counter()
            params, consts, converged, messages = init_triple(args, gammas, method)
            t_init = time.perf_counter() - t0
            var_t = np.asarray(run(params, consts, xs))[args.burn_in :]
            row[method] = {
                "mean": float(var_t.mean()),
                "min": float(var_t.min()),
                "max": float(var_t.max()),
                "var_c": float(consts["var_c"]),
                "var_h": float(consts["var_h"]),
                "converged": converged,
                "warnings": messages,
                "init_seconds": t_init,
            }
        rows.append(row)
        summary = "  ".join(
            f"{m}: mean {row[m]['mean']:.4g} [{row[m]['min']:.4g}, {row[m]['max']:.4g}]"
            + ("" if row[m]["converged"] else " (not converged)")
            + f" init {row[m]['init_seconds']:.1f}s"
            for m in methods
        )
        print(f"gammas {gammas}: {summary}", flush=True)
    table = markdown_table(rows, methods)
    elapsed = time.perf_counter() - start_all
    header = (
        f"Var[h_t] over batch and units, t >= {args.burn_in} of T = {args.steps}; normprop at "
        f"initialization, H = {args.hidden_size}, D = {args.input_size}, B = {args.batch_size}, "
        f"x_t ~ N(0, 1); init_params seed {args.seed}; matmuls in "
        f"{args.matmul_dtype or 'float32'}. Total {elapsed:.0f} s.\n\n"
    )
    print()
    print(header + table)
    with open(args.out, "w") as f:
        f.write(header + table)
    if args.json_out:
        harness.write_json(args.json_out, {"flags": vars(args), "rows": rows, "seconds": elapsed})


if __name__ == "__main__":
    main()
