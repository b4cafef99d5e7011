"""Datasets for nprnn: character-level PTB and text8, binarized MNIST, plain MNIST; imports its
own modules.

Host-side NumPy only. Files are looked for in a data directory (``--data_dir``, else the
``NPRNN_DATA_DIR`` environment variable, else ``~/.cache/nprnn``); every problem with them raises
:class:`DataError` with a message that names the file and how to obtain it. Loaders are in
``text`` and ``mnist`` (file handling in ``common``), batches in ``batching``.

May import from nprnn: its own modules and ``nprnn._validate``; nothing that uses JAX arrays.
"""

from nprnn.data.batching import (
    epoch_and_index,
    eval_windows,
    minibatches,
    random_windows,
    stream_batches,
)
from nprnn.data.common import (
    DataError,
    download,
    find_file,
    read_bytes,
    resolve_data_dir,
    sha256_hex,
    verify_sha256,
)
from nprnn.data.mnist import (
    load_binarized_mnist,
    load_mnist,
    pixel_permutation,
    pixel_sequences,
)
from nprnn.data.text import CharCorpus, load_ptb_chars, load_text8, ptb_chars_from_words

__all__ = [
    "CharCorpus",
    "DataError",
    "download",
    "epoch_and_index",
    "eval_windows",
    "find_file",
    "load_binarized_mnist",
    "load_mnist",
    "load_ptb_chars",
    "load_text8",
    "minibatches",
    "pixel_permutation",
    "pixel_sequences",
    "ptb_chars_from_words",
    "random_windows",
    "read_bytes",
    "resolve_data_dir",
    "sha256_hex",
    "stream_batches",
    "verify_sha256",
]
