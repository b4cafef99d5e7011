r"""Where to compute an LSTM's input projection: before the scan or inside it; imports harness.

The input projection is x_t @ W_x. Hoisting computes ``xs @ W_x`` for all T steps as one matrix
product before ``jax.lax.scan`` and scans over the [T, B, 4H] result; the alternative computes
``x_t @ W_x`` inside the scan body (as flax's ``OptimizedLSTMCell`` does). On XLA:CPU the
hoisted layout measured slower although its product is one large matmul, which is why
``nprnn.run_sequence(..., hoist_input=None)`` projects inside the loop on the CPU. This script
isolates that choice with two hand-written plain LSTMs (same maths, no nprnn code) and, for
reference, ``nprnn.run_sequence`` with the ``lstm`` variant and its default, and times the
forward pass and ``jax.grad`` of a mean-square loss.

Timing as in ``step_time.py`` (``harness.time_round_robin``, allocator tuned): compile and warm-up
excluded, round-robin over the functions, each timed call right after an untimed one,
``jax.block_until_ready``, median and interquartile range of ``--repeats`` calls.

Usage:
  .venv/bin/python benchmarks/scan_input_projection.py --sizes=256x50x128x64,1000x50x32x100
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp

import nprnn

# benchmarks/ is sys.path[0] when this file runs as a script, so harness imports as top-level.
import harness


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    harness.add_size_flags(parser, "256x50x128x64,1000x50x32x100")
    return parser.parse_args(argv)


def _cell(z, c):
    i, f, o, g = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(i) * jnp.tanh(g) + jax.nn.sigmoid(f) * c
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def hoisted(params, xs):
    """Plain LSTM; ``xs @ W_x + b`` of all steps before the scan (nprnn's layout)."""
    zeros = jnp.zeros((xs.shape[1], params["w_h"].shape[0]), xs.dtype)
    zxs = xs @ params["w_x"] + params["b"]

    def body(carry, zx):
        h, c = _cell(zx + carry[0] @ params["w_h"], carry[1])
        return (h, c), h

    return jax.lax.scan(body, (zeros, zeros), zxs)[1]


def in_loop(params, xs):
    """Plain LSTM; ``x_t @ W_x`` inside the scan body (flax's layout)."""
    zeros = jnp.zeros((xs.shape[1], params["w_h"].shape[0]), xs.dtype)

    def body(carry, x):
        z = x @ params["w_x"] + carry[0] @ params["w_h"] + params["b"]
        h, c = _cell(z, carry[1])
        return (h, c), h

    return jax.lax.scan(body, (zeros, zeros), xs)[1]


def nprnn_lstm(params, xs):
    """``nprnn.run_sequence`` with the ``lstm`` variant."""
    state = nprnn.init_state(xs.shape[1], params["w_h"].shape[0])
    return nprnn.run_sequence(params, {}, state, xs, variant="lstm")[1]


def main(argv=None) -> None:
    """Times the three layouts at every size and prints a Markdown table."""
    args = parse_args(argv)
    nprnn.tune_host_allocator()  # before the first JAX computation, as step_time.py
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    header = ["H, D, B, T", "function", "forward ms (IQR)", "grad ms (IQR)"]
    print(harness.markdown_row(header))
    print(harness.markdown_rule(len(header)))
    for hidden, inputs, batch, steps in harness.parse_sizes(args.sizes):
        key_p, key_x = jax.random.split(jax.random.key(0))
        params, _ = nprnn.init_params(key_p, input_size=inputs, hidden_size=hidden, variant="lstm")
        xs = jax.random.normal(key_x, (steps, batch, inputs))
        calls = {}
        for name, fn in (("hoisted", hoisted), ("in_loop", in_loop), ("nprnn lstm", nprnn_lstm)):
            fwd = jax.jit(fn)
            grad = jax.jit(jax.grad(lambda p, x, fn=fn: jnp.mean(fn(p, x) ** 2)))
            calls[(name, "fwd")] = lambda f=fwd, p=params, x=xs: f(p, x)
            calls[(name, "grad")] = lambda g=grad, p=params, x=xs: g(p, x)
        times, _ = harness.time_round_robin(calls, args.repeats, warmup=2, untimed_before=1)
        for name in ("hoisted", "in_loop", "nprnn lstm"):
            size = f"{hidden}, {inputs}, {batch}, {steps}"
            cells = [size, name]
            for mode in ("fwd", "grad"):
                cells.append(harness.format_ms(*harness.quartiles_ms(times[(name, mode)])))
            print(harness.markdown_row(cells))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
