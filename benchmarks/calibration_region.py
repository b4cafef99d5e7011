r"""Where the simulated normprop calibration fails, by H and seed; imports variance_grid.

``normprop_variances(method="simulated")`` calibrates (var_c, var_h) on the layer's own W_h and
warns when its Newton iteration does not converge. ``variance_grid.py`` maps that over the gamma
grid for one size and one seed; this script repeats it for every hidden size in ``--hidden_sizes``
(D = H) and every init seed in ``--seeds``, then runs each calibrated layer on x_t ~ N(0, 1) and
measures Var[h_t] over batch and units for t >= ``--burn_in``. It reports, for every triple
where at least one (H, seed) failed to converge, how many seeds converged at each H and the range
of Var[h_t] over those runs; and a count of the failures per H.

A calibration fails in one of two ways, counted apart: its Newton iteration does not meet the
tolerance, or it meets it but the library's check on two independent input draws does not (the
residual is noise-dominated). The script records the check draws' log stationary variances
(through a wrapper around the library's private ``_log_stationary``) and reports their largest
magnitude where the check passed and their smallest where it failed. ``--triples`` replaces the
cube by a list, ``--per_run`` lists every run, and the header names the environment (OpenBLAS's
kernel, whose QR makes the orthogonal weights, the CPUs, XLA_FLAGS), so that runs on other
machines or under ``OPENBLAS_CORETYPE`` / ``taskset`` can be compared.

Usage:
  .venv/bin/python benchmarks/calibration_region.py --out=/tmp/calibration_region.md
  .venv/bin/python benchmarks/calibration_region.py --hidden_sizes=128 --input_size=64 \
      --triples=0.5:2:0.5 --seeds=0,1,2,3,4,5,6,7 --batch_size=128 --steps=1000 --per_run
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import itertools
import os
import time

import jax
import numpy as np
import scipy
import variance_grid

from nprnn import variances

# benchmarks/ is sys.path[0] when this file runs as a script.
import harness


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    parser.add_argument("--hidden_sizes", default="64,128,256", help="comma-separated H (D = H)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated init_params seeds")
    parser.add_argument("--gammas", default="0.1,0.5,1,2", help="the grid is the cube of these")
    parser.add_argument(
        "--triples", default="", help="instead of the cube: gx:gh:gc triples, comma-separated"
    )
    parser.add_argument("--input_size", type=int, default=0, help="D of the check (0: D = H)")
    parser.add_argument("--per_run", action="store_true", help="also list every run")
    parser.add_argument("--batch_size", type=int, default=64, help="B of the check")
    parser.add_argument("--steps", type=int, default=400, help="T of the check")
    parser.add_argument("--burn_in", type=int, default=50, help="statistics over t >= burn_in")
    parser.add_argument("--input_seed", type=int, default=1, help="seed of the inputs x_t")
    harness.add_output_flags(parser, "/tmp/calibration_region.md")
    return parser.parse_args(argv)


class CheckRecorder:
    """Keeps the log stationary variances of the library's check draws.

    ``normprop_variances`` runs its Newton iteration (``_simulated``) and then, when that met the
    tolerance, evaluates ``_log_stationary`` on independent draws; the calls after ``_simulated``
    returned are the check's. A benchmark-only wrapper around private functions.
    """

    def __init__(self):
        self.checks, self._after_newton = [], False
        log_stationary, simulated = variances._log_stationary, variances._simulated

        def recording_log_stationary(*a, **k):
            out = log_stationary(*a, **k)
            if self._after_newton:
                self.checks.append(float(np.max(np.abs(out))))
            return out

        def recording_simulated(*a, **k):
            out = simulated(*a, **k)
            self._after_newton = True
            return out

        variances._log_stationary = recording_log_stationary
        variances._simulated = recording_simulated

    def reset(self):
        self.checks, self._after_newton = [], False


def blas_core() -> str:
    """The kernel family that scipy's OpenBLAS (jax's CPU LAPACK, so its QR) chose here."""
    libs = glob.glob(os.path.dirname(scipy.__file__) + ".libs/*openblas*")
    for path in libs:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename", "openblas_get_corename"):
            if hasattr(lib, name):
                getattr(lib, name).restype = ctypes.c_char_p
                return getattr(lib, name)().decode()
    return "unknown"


def environment_line() -> str:
    """What decides the last bits of the weights and of the simulation on this machine."""
    cpu = harness.environment().get("cpu", "") or "?"
    return (
        f"CPU {cpu}; OpenBLAS core {blas_core()}; {len(os.sched_getaffinity(0))} of "
        f"{os.cpu_count()} CPUs usable; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS')}; jax {jax.__version__}"
    )


def measure(args, hidden_size: int, seeds, triples, recorder: CheckRecorder):
    """Calibrates and checks every (seed, triple) at one H.

    Returns:
      ``{(seed, triple): {"converged": bool, "newton": bool, "check": [float], "min": float,
      "max": float, "mean": float, "var_c": float, "var_h": float}}``: ``newton`` says whether
      the Newton iteration met the tolerance, ``check`` holds max |log stationary variance| of
      each check draw (empty where Newton failed).
    """
    input_size = args.input_size or hidden_size
    run = variance_grid.make_runner(hidden_size, args.batch_size)
    xs = jax.random.normal(
        jax.random.key(args.input_seed), (args.steps, args.batch_size, input_size)
    )
    out = {}
    for seed in seeds:
        size_args = argparse.Namespace(seed=seed, input_size=input_size, hidden_size=hidden_size)
        for triple in triples:
            recorder.reset()
            params, consts, converged, messages = variance_grid.init_triple(
                size_args, triple, "simulated"
            )
            var_t = np.asarray(run(params, consts, xs))[args.burn_in :]
            out[seed, triple] = {
                "converged": converged,
                "newton": not any("to tolerance" in m for m in messages),
                "check": list(recorder.checks),
                "min": float(var_t.min()),
                "max": float(var_t.max()),
                "mean": float(var_t.mean()),
                "var_c": float(consts["var_c"]),
                "var_h": float(consts["var_h"]),
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
        rows = results[h].values()
        failed = [r for r in rows if not r["converged"]]
        newton = sum(not r["newton"] for r in rows)
        ok = [r for r in rows if r["converged"]]
        text = (
            f"- H = {h}: {len(failed)} of {len(seeds) * len(triples)} (seed, triple) runs did "
            f"not converge ({newton} in the Newton iteration, {len(failed) - newton} in the "
            "check on independent draws)"
        )
        passed = [c for r in ok for c in r["check"]]
        caught = [max(r["check"]) for r in failed if r["check"]]
        if passed:
            text += f"; check draws where it converged: max |log| {max(passed):.4f}"
        if caught:
            text += f"; where it failed, a draw reached {min(caught):.4f} or more"
        if ok:
            text += (
                f"; where it converged, Var[h_t] (t >= burn-in) lay in "
                f"[{variance_grid.fmt(min(r['min'] for r in ok))}, "
                f"{variance_grid.fmt(max(r['max'] for r in ok))}], time means "
                f"[{variance_grid.fmt(min(r['mean'] for r in ok))}, "
                f"{variance_grid.fmt(max(r['mean'] for r in ok))}]"
            )
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


def per_run_table(results) -> str:
    """One row per (H, seed, triple)."""
    header = ["H", "seed", "gammas", "Newton", "check max abs log", "var_c", "var_h"]
    header += ["Var[h_t] min", "max", "mean"]
    lines = [harness.markdown_row(header), harness.markdown_rule(len(header))]
    for h, runs in results.items():
        for (seed, triple), r in runs.items():
            check = max(r["check"]) if r["check"] else None
            cells = [str(h), str(seed), ", ".join(variance_grid.fmt(g) for g in triple)]
            cells += ["met tol" if r["newton"] else "**no**"]
            cells += ["-" if check is None else f"{check:.3f}" + ("" if r["converged"] else " **")]
            cells += [variance_grid.fmt(r[k]) for k in ("var_c", "var_h", "min", "max", "mean")]
            lines.append(harness.markdown_row(cells))
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """Runs every (H, seed, triple) and prints / writes the report."""
    args = parse_args(argv)
    hidden_sizes = [int(v) for v in args.hidden_sizes.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    if args.triples:
        triples = [tuple(float(g) for g in t.split(":")) for t in args.triples.split(",")]
        grid = "the triples " + args.triples
    else:
        values = [float(v) for v in args.gammas.split(",")]
        triples = list(itertools.product(values, repeat=3))
        grid = f"every triple of {{{args.gammas}}}^3"
    recorder = CheckRecorder()
    start = time.perf_counter()
    results = {h: measure(args, h, seeds, triples, recorder) for h in hidden_sizes}
    elapsed = time.perf_counter() - start
    text = (
        f"Simulated calibration (`normprop_variances(method='simulated')`) at {grid}, "
        f"D = {args.input_size or 'H'}, init seeds {args.seeds}; the check runs the calibrated "
        f"layer on x_t ~ N(0, 1), B = {args.batch_size}, T = {args.steps}, and takes Var[h_t] "
        f"over batch and units for t >= {args.burn_in}. Rows: the triples where at least one "
        f"(H, seed) did not converge. Total {elapsed:.0f} s. {environment_line()}.\n\n"
    ) + markdown(results, hidden_sizes, seeds, triples)
    if args.per_run:
        text += "\n" + per_run_table(results)
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
