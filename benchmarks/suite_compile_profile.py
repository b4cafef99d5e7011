"""Where the test suite's compile time goes: a pytest plugin; imports jax, not nprnn.

Records every compilation in the pytest processes (``jax.monitoring``'s ``/jax/core/compile/*``
events: tracing, lowering to MLIR and XLA's backend compile) with the test that caused it, and
prints at the end, over all xdist workers: the totals of each phase, the backend compiles by
duration (eager operations on new shapes compile a small program each), the programs that took
longest in total, and the tests that compiled longest. Compilations in the subprocesses that
tests start (``train.py``, ``eval.py``) are not counted; their time is in the tests' durations.

Usage, for a cold run (``--cache-clear`` empties the persistent compilation cache that
``tests/conftest.py`` keeps between runs):

  PYTHONPATH=benchmarks .venv/bin/python -m pytest -q -n 2 --cache-clear \
      -p suite_compile_profile
"""

from __future__ import annotations

import collections
import glob
import json
import os
import tempfile

from jax import monitoring

_DIR_ENV = "NPRNN_COMPILE_PROFILE_DIR"  # set by the main process, inherited by xdist's workers
_PREFIX = "/jax/core/compile/"
_records: list[tuple[str, str, str, float]] = []  # (test, phase, program, seconds)
_current = ["(outside a test)"]


def _listener(event: str, duration: float, **kwargs) -> None:
    if event.startswith(_PREFIX):
        phase = event[len(_PREFIX) :].removesuffix("_duration")
        _records.append((_current[0], phase, kwargs.get("fun_name", "?"), duration))


monitoring.register_event_duration_secs_listener(_listener)


def pytest_configure(config) -> None:
    if _DIR_ENV not in os.environ:  # the main process
        os.environ[_DIR_ENV] = tempfile.mkdtemp(prefix="nprnn-compile-profile-")


def pytest_runtest_logstart(nodeid, location) -> None:
    _current[0] = nodeid.split("[")[0]  # parametrized tests together


def pytest_sessionfinish(session) -> None:
    name = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(os.environ[_DIR_ENV], f"{name}.json"), "w") as f:
        json.dump(_records, f)


def pytest_terminal_summary(terminalreporter) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    records = []
    for path in glob.glob(os.path.join(os.environ[_DIR_ENV], "*.json")):
        with open(path) as f:
            records += json.load(f)
    write = terminalreporter.write_line
    terminalreporter.section("compile time in the pytest processes (suite_compile_profile)")
    phases = collections.Counter()
    counts = collections.Counter()
    for _, phase, _, seconds in records:
        phases[phase] += seconds
        counts[phase] += 1
    for phase, seconds in phases.most_common():
        write(f"{seconds:8.1f} s {counts[phase]:6d} x  {phase}")
    backend = [r for r in records if r[1] == "backend_compile"]
    write("backend compiles by duration:")
    for lo, hi in ((0.0, 0.1), (0.1, 0.5), (0.5, float("inf"))):
        within = [r[3] for r in backend if lo <= r[3] < hi]
        write(f"{sum(within):8.1f} s {len(within):6d} x  in [{lo}, {hi}) s")
    for title, key in (("programs", 2), ("tests", 0)):
        total, number = collections.Counter(), collections.Counter()
        for record in backend:
            total[record[key]] += record[3]
            number[record[key]] += 1
        write(f"the {title} with the most backend compile time:")
        for name, seconds in total.most_common(15):
            write(f"{seconds:8.1f} s {number[name]:6d} x  {name}")
