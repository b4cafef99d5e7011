"""What the benchmark scripts share; imports jax(lib), numpy, flax, optax, torch lazily, not nprnn.

* flags: :func:`flag_parser` (the parser every script starts from), :func:`add_size_flags`
  (``--sizes`` and ``--repeats``), :func:`add_output_flags` (``--out`` and ``--json_out``), and
  the flag values :func:`parse_bool`, :func:`parse_sizes`, :func:`check_float_dtype`;
* timing: :func:`time_round_robin`, :func:`measure_matmul_gflops`, :func:`quartiles_ms`;
* reporting: :func:`environment` (date, machine, library versions), :func:`torch_available`,
  Markdown rows (:func:`markdown_row`, :func:`markdown_rule`, :func:`format_ms`) and
  :func:`write_json`.

The scripts are run as ``python benchmarks/<script>.py``, which puts ``benchmarks/`` first on
``sys.path``, so they import this module as plain ``harness``; ``models.py`` holds the LSTM
models that ``step_time.py`` times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

# ----------------------------------------------------------------------------------------------
# Flags.


def flag_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of a script, described by its docstring's first line.

    Args:
      doc: the script's ``__doc__``; its first line, without the ``; imports ...`` note, is the
        description that ``--help`` prints.

    Returns:
      A parser without flags (but ``--help``).
    """
    purpose = doc.split("\n")[0].split("; imports")[0]
    return argparse.ArgumentParser(description=purpose.rstrip(".") + ".")


def add_size_flags(parser, default: str) -> None:
    """Adds ``--sizes`` (``default``, read by :func:`parse_sizes`) and ``--repeats`` (10)."""
    parser.add_argument("--sizes", default=default, help="comma-separated HxDxBxT sizes")
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls of each model and mode (>= 1)"
    )


def add_output_flags(parser, markdown: str | None = None) -> None:
    """Adds ``--json_out`` (no JSON file unless given) and, given ``markdown``, ``--out``.

    Args:
      parser: the script's parser, from :func:`flag_parser`.
      markdown: the default of ``--out``, the file that receives a copy of the Markdown the
        script prints; ``None`` for a script that only prints it (no ``--out`` flag).
    """
    if markdown is not None:
        parser.add_argument(
            "--out", default=markdown, help="also write the printed Markdown to this file"
        )
    parser.add_argument("--json_out", default="", help="also write all numbers to this JSON file")


def parse_bool(text: str) -> bool:
    """An argparse ``type``: ``true``/``1`` or ``false``/``0`` (any case)."""
    if text.lower() not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1")


def parse_sizes(text: str) -> list[tuple[int, int, int, int]]:
    """Parses ``"HxDxBxT,HxDxBxT"`` into a list of (H, D, B, T) tuples.

    Raises:
      ValueError: for a malformed size.
    """
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"a size must be HxDxBxT with positive integers, got {item!r}")
        sizes.append(tuple(int(p) for p in parts))
    return sizes


def check_float_dtype(name: str) -> str:
    """Returns ``name`` if it names a floating-point dtype (``"bfloat16"``), else raises
    ValueError."""
    try:
        floating = jnp.issubdtype(jnp.dtype(name), jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise ValueError(f"{name!r} is not a floating-point dtype name")
    return name


# ----------------------------------------------------------------------------------------------
# Timing.


def time_round_robin(calls: dict, repeats: int, warmup: int, untimed_before: int = 0):
    """Times zero-argument functions in turn, so that a change of machine load hits all alike.

    Args:
      calls: ``{name: fn}``; each ``fn()`` returns JAX arrays (or None), waited for with
        ``jax.block_until_ready``.
      repeats: rounds; each times one call of every function.
      warmup: untimed calls of each function after its first (compiling) call.
      untimed_before: untimed calls of a function right before each of its timed calls.

    Returns:
      ``{name: [seconds, ...]}`` and ``{name: seconds of the compiling and warm-up calls}``.
    """
    setup = {}
    for name, fn in calls.items():
        start = time.perf_counter()
        for _ in range(1 + warmup):  # the first call compiles
            jax.block_until_ready(fn())
        setup[name] = time.perf_counter() - start
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            for _ in range(untimed_before):
                jax.block_until_ready(fn())
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return times, setup


def measure_matmul_gflops(m: int, k: int, n: int, repeats: int = 7) -> float:
    """Best float32 GFLOP/s of a jitted ``[m, k] @ [k, n]`` ``jnp.dot`` over ``repeats`` samples.

    The best sample, not the median: on a shared machine the other jobs only ever slow it down,
    and this number is meant as the machine's capability.
    """
    ka, kb = jax.random.split(jax.random.key(123))
    a = jax.random.normal(ka, (m, k), jnp.float32)
    b = jax.random.normal(kb, (k, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    inner = max(1, int(2e9 // (2 * m * k * n)))  # about 2 GFLOP per timed sample
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = dot(a, b)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / inner)
    return 2.0 * m * k * n / float(np.min(times)) / 1e9


def quartiles_ms(seconds) -> tuple[float, float, float]:
    """The median, 25th and 75th percentiles of ``seconds`` (a list of timings), in ms."""
    ms = 1e3 * np.asarray(seconds)
    return float(np.median(ms)), float(np.percentile(ms, 25)), float(np.percentile(ms, 75))


# ----------------------------------------------------------------------------------------------
# Reporting.


def format_ms(median: float, q25: float, q75: float) -> str:
    """``"12.3 (11.9-12.8)"``: a median and its interquartile range, in ms."""
    return f"{median:.1f} ({q25:.1f}-{q75:.1f})"


def markdown_row(cells) -> str:
    """One row of a Markdown table: ``| a | b |``."""
    return "| " + " | ".join(cells) + " |"


def markdown_rule(columns: int) -> str:
    """The line under a Markdown table's header: ``|---|---|`` for two columns."""
    return "|" + "---|" * columns


def write_json(path: str, obj) -> None:
    """Writes ``obj`` to ``path`` as JSON, indented by one space."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def torch_available() -> bool:
    """Whether ``import torch`` works."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def environment() -> dict:
    """Date, machine and library versions."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    env = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
    }
    if torch_available():
        import torch

        env["torch"] = torch.__version__
        env["torch_default_threads"] = torch.get_num_threads()
    return env
