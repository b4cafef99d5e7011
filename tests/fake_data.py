"""Small fake datasets in the real files' formats, and tiny training configs that read them.

The files are not the real ones, so configs that read them set ``data.verify=False`` (no SHA-256
check) and ``data.download=False`` (tests never touch the network).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]

# Letters of the fake PTB words; with "_" and "\n" the fake vocabulary has 10 symbols.
PTB_LETTERS = "abcdefgh"

# Command-line overrides that shrink configs/ptb_char_small.py to a tiny model and batch; the
# in-process twin is tiny_ptb_config().
TINY_FLAGS = (
    "--config.data.download=False",
    "--config.data.verify=False",
    "--config.data.batch_size=4",
    "--config.data.eval_batch_size=4",
    "--config.data.seq_len=10",
    "--config.model.hidden_size=8",
    "--config.train.eval_batches=2",
)


def ptb_words(num_chars: int, seed: int) -> bytes:
    """Word-level PTB-like text (``" w w w \\n"`` lines) of about ``num_chars`` characters."""
    rng = np.random.default_rng(seed)
    lines, size = [], 0
    while size < num_chars:
        words = [
            "".join(rng.choice(list(PTB_LETTERS), size=rng.integers(1, 6)))
            for _ in range(rng.integers(3, 9))
        ]
        line = " " + " ".join(words) + " \n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def write_fake_ptb(
    data_dir: os.PathLike, *, train_chars: int = 4000, eval_chars: int = 600
) -> pathlib.Path:
    """Writes ``ptb/ptb.char.{train,valid,test}.txt`` in Mikolov's character format.

    Returns:
      The data directory.
    """
    from nprnn.data import ptb_chars_from_words

    data_dir = pathlib.Path(data_dir)
    (data_dir / "ptb").mkdir(parents=True, exist_ok=True)
    sizes = {"train": train_chars, "valid": eval_chars, "test": eval_chars}
    for seed, (split, size) in enumerate(sizes.items()):
        chars = ptb_chars_from_words(ptb_words(size, seed))
        (data_dir / "ptb" / f"ptb.char.{split}.txt").write_bytes(chars)
    return data_dir


def write_fake_text8(data_dir: os.PathLike, length: int) -> pathlib.Path:
    """Writes ``text8/text8``: ``length`` characters of lowercase letters and spaces."""
    rng = np.random.default_rng(8)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
    codes = rng.choice(letters, size=length)
    codes[rng.random(length) < 0.2] = ord(" ")
    data_dir = pathlib.Path(data_dir)
    (data_dir / "text8").mkdir(parents=True, exist_ok=True)
    (data_dir / "text8" / "text8").write_bytes(codes.tobytes())
    return data_dir


def load_config(name: str):
    """``configs/<name>.py``'s ``get_config()`` (the configs package is not installed)."""
    import importlib

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"configs.{name}").get_config()


def tiny_ptb_config(data_dir: os.PathLike, variant: str = "normprop", **train):
    """configs/ptb_char_small.py shrunk as by TINY_FLAGS, on the fake PTB files of data_dir.

    Args:
      data_dir: where write_fake_ptb wrote.
      variant: the LSTM variant (the unit-norm projection follows it, as in train.py).
      **train: overrides of ``config.train`` fields (default: 12 updates, a train line every 4,
        validation every 6 and checkpoints every 4).
    """

    c = load_config("ptb_char_small")
    c.data.dir = str(data_dir)
    c.data.download = False
    c.data.verify = False
    c.data.batch_size = 4
    c.data.eval_batch_size = 4
    c.data.seq_len = 10
    c.model.hidden_size = 8
    c.model.variant = variant
    c.train.eval_batches = 2
    c.train.num_steps = 12
    c.train.log_every = 4
    c.train.eval_every = 6
    c.train.checkpoint_every = 4
    c.train.update(train)
    return c


def run_train_py(*flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python train.py *flags`` from the repository root; its output captured as text."""
    return subprocess.run(
        [sys.executable, "train.py", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
