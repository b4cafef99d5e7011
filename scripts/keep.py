"""Copies a study run's files into results/, keeping a copy there that holds the same values.

  python scripts/keep.py DEST FILE...

Each FILE goes to DEST/<its name> (DEST is made if missing), unless DEST already holds a file
with the same values: the same bytes, or for ``metrics.jsonl`` the same rows but for the timing
fields. A run trained again after its checkpoints were lost logs every value bitwise again, with
other timings; the committed copy then keeps the first run's and git shows no change. Any other
difference (a resumed run with more steps, another machine's numbers) replaces the copy.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

TIMING_FIELDS = ("steps_per_s", "s_per_epoch")  # what nprnn.training logs beside the values


def _values(path: pathlib.Path):
    if path.suffix != ".jsonl":
        return path.read_bytes()
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def keep(dest: pathlib.Path, files: list[pathlib.Path]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for file in files:
        kept = dest / file.name
        if not (kept.exists() and _values(kept) == _values(file)):
            shutil.copyfile(file, kept)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    keep(pathlib.Path(sys.argv[1]), [pathlib.Path(f) for f in sys.argv[2:]])
