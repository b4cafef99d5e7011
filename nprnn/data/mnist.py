"""MNIST in two forms: Larochelle & Murray's binarized MNIST (for DRAW) and plain MNIST;
imports nprnn.data.common.

Plain MNIST also feeds sequential MNIST (pixels one at a time, optionally in a fixed random
order): see :func:`pixel_sequences` and :func:`pixel_permutation`. Shuffled minibatches, a pure
function of (seed, epoch), come from :mod:`nprnn.data.batching`.

May import from nprnn: ``nprnn.data.common`` only (host-side NumPy, no JAX).

References:
    H. Larochelle, I. Murray. The neural autoregressive distribution estimator (AISTATS 2011):
    the fixed binarization and the 50,000 / 10,000 / 10,000 split.
    Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document
    recognition (1998): MNIST and its IDX files.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import struct

import numpy as np

from nprnn.data import common
from nprnn.data.common import DataError

PIXELS = 784
"""Pixels per image, 28 x 28, in row-major order."""

BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_MNIST_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
BINARIZED_MNIST_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
"""SHA-256 of the uncompressed ``binarized_mnist_{split}.amat`` files (also recorded by TFDS)."""

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
"""A mirror of LeCun's four gzipped IDX files (http://yann.lecun.com/exdb/mnist/)."""

MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""SHA-256 of the uncompressed MNIST IDX files."""

MNIST_COUNTS = {"train": 60_000, "t10k": 10_000}
"""Images (and labels) in the original training and test files."""

MNIST_VALID_SIZE = 5_000
"""Validation images: the last 5,000 of the original 60,000 training images."""

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def parse_amat(data: bytes, name: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parses a binarized-MNIST ``.amat`` file: one image per line, 784 values 0 or 1.

    The original files have exactly one character per value, separated by single spaces, with
    ``\\n`` line ends; those are parsed in one vectorized pass (about 0.1 s for the 78 MB training
    file). Anything else (other whitespace, ``0.0``) falls back to a line-by-line parse that also
    finds the first offending line for the error message.

    Args:
        data: The file's uncompressed contents.
        name: The file's name, for error messages.

    Returns:
        uint8 ``[N, 784]`` of 0s and 1s.

    Raises:
        DataError: If a line does not hold 784 values, or a value is not 0 or 1.
    """
    row_bytes = 2 * PIXELS
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size and b.size % row_bytes == 0:
        rows = b.reshape(-1, row_bytes)
        values, seps = rows[:, 0::2], rows[:, 1::2]
        if (
            np.all(seps[:, :-1] == ord(" "))
            and np.all(seps[:, -1] == ord("\n"))
            and np.all((values == ord("0")) | (values == ord("1")))
        ):
            return values - np.uint8(ord("0"))
    return _parse_amat_lines(data, name)


def _parse_amat_lines(data: bytes, name: str | os.PathLike) -> np.ndarray:
    rows = []
    for i, line in enumerate(data.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != PIXELS:
            raise DataError(
                f"{name}: line {i} has {len(fields)} values, expected {PIXELS} (28 x 28 pixels)."
            )
        for field in fields:
            try:
                ok = float(field) in (0.0, 1.0)
            except ValueError:
                ok = False
            if not ok:
                raise DataError(
                    f"{name}: line {i} holds the value {field.decode(errors='replace')!r}; "
                    "binarized MNIST values are 0 or 1."
                )
        rows.append(np.array(fields, dtype=np.float64).astype(np.uint8))
    if not rows:
        raise DataError(f"{name}: the file holds no images.")
    return np.stack(rows)


def load_binarized_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    source: str = "files",
) -> dict[str, np.ndarray]:
    """Loads Larochelle & Murray's binarized MNIST (fixed binarization), as used for DRAW.

    Reads ``binarized_mnist_{train,valid,test}.amat`` (plain, ``.xz`` or ``.gz``) from
    ``DATA_DIR/binarized_mnist/`` or ``DATA_DIR/``. Parsing is vectorized: the three files load in
    about a second (no cache is written). Pixel means: train 0.13056, valid 0.13113,
    test 0.13251.

    Args:
        data_dir: Data directory (see :func:`~nprnn.data.common.resolve_data_dir`).
        download: Download missing files from ``BINARIZED_MNIST_URL`` into
            ``DATA_DIR/binarized_mnist/`` (about 110 MB).
        verify: Check the SHA-256 of every file against :data:`BINARIZED_MNIST_SHA256`.
        source: ``"files"`` (the default, above) or ``"tfds"``: build the tensorflow-datasets
            ``binarized_mnist`` dataset (same files, same checksums). Needs ``tensorflow_datasets``
            and TensorFlow; see :func:`load_binarized_mnist_tfds`.

    Returns:
        ``{"train": [50000, 784], "valid": [10000, 784], "test": [10000, 784]}``, float32 arrays
        of 0.0 / 1.0 (row-major 28 x 28 images).

    Raises:
        DataError: If a file is missing (the message lists the paths tried and the URL), corrupt,
            fails verification, or does not hold the expected number of 784-value rows of 0/1.
        ValueError: If ``source`` is not ``"files"`` or ``"tfds"``.
    """
    if source == "tfds":
        return load_binarized_mnist_tfds(data_dir, verify=verify)
    if source != "files":
        raise ValueError(f"source must be 'files' or 'tfds', got {source!r}.")
    data_dir = common.resolve_data_dir(data_dir)
    out = {}
    for split, n_rows in BINARIZED_MNIST_SIZES.items():
        name = f"binarized_mnist_{split}.amat"
        digest = BINARIZED_MNIST_SHA256[split]
        path = _find_or_download(
            data_dir, "binarized_mnist", name, BINARIZED_MNIST_URL + name, download, verify, digest
        )
        data = common.read_bytes(path)
        if verify:
            common.verify_sha256(data, digest, path)
        images = parse_amat(data, path)
        if images.shape[0] != n_rows:
            raise DataError(
                f"{path}: {images.shape[0]} images, expected {n_rows} (truncated or wrong file); "
                f"obtain it again from {BINARIZED_MNIST_URL + name}."
            )
        out[split] = images.astype(np.float32)
    return out


def load_binarized_mnist_tfds(
    data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> dict[str, np.ndarray]:
    """Loads binarized MNIST through tensorflow-datasets' ``binarized_mnist`` builder.

    The builder reads the same three ``.amat`` files (TFDS records the same SHA-256) and stores
    them in its own format under ``DATA_DIR/tfds``. Its example generator reads files with
    ``tf.io.gfile``, so preparing the dataset needs TensorFlow besides tensorflow-datasets; nprnn
    depends on neither, hence the default ``source="files"``.

    Offline: TFDS uses a registered file found in its manual directory under the URL's file name
    instead of downloading it (checked with tensorflow-datasets 4.9.10). Every ``.amat`` file found
    in the data directory (as :func:`load_binarized_mnist` finds them) is therefore decompressed
    into ``DATA_DIR/tfds/downloads/manual/`` first; TFDS downloads the others. ``DATA_DIR`` must
    be writable. The result holds the same images as ``source="files"``, in the order TFDS stored
    them (it shuffles when it prepares a dataset): checked offline from the copies in
    ``../shared/data`` with TensorFlow 2.21 and tensorflow-datasets 4.9.10 (same multiset of images
    in each split; ``pip install .[tfds]``).

    Args:
        data_dir: Data directory (see :func:`~nprnn.data.common.resolve_data_dir`).
        verify: Check the SHA-256 of local files before decompressing them for TFDS (TFDS checks
            the files it uses in any case).

    Returns:
        The same dictionary as :func:`load_binarized_mnist`.

    Raises:
        DataError: If tensorflow-datasets or TensorFlow is not installed, or the build fails.
    """
    missing = [
        m for m in ("tensorflow_datasets", "tensorflow") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise DataError(
            f"source='tfds' needs tensorflow-datasets and TensorFlow; {', '.join(missing)} "
            "missing (pip install tensorflow-datasets tensorflow). TFDS's binarized_mnist builder "
            "reads its files with tf.io.gfile, so it cannot prepare the dataset without "
            "TensorFlow. The default source='files' reads the same .amat files without either "
            f"({BINARIZED_MNIST_URL})."
        )
    import tensorflow_datasets as tfds

    data_dir = common.resolve_data_dir(data_dir)
    tfds_dir = data_dir / "tfds"
    manual_dir = tfds_dir / "downloads" / "manual"
    for split, digest in BINARIZED_MNIST_SHA256.items():
        name = f"binarized_mnist_{split}.amat"
        if (manual_dir / name).is_file():
            continue
        try:
            path = common.find_file(data_dir, "binarized_mnist", name)
        except DataError:
            continue  # TFDS downloads it.
        data = common.read_bytes(path)
        if verify:
            common.verify_sha256(data, digest, path)
        manual_dir.mkdir(parents=True, exist_ok=True)
        common.write_atomic(manual_dir / name, data)
    try:
        builder = tfds.builder("binarized_mnist", data_dir=str(tfds_dir))
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        )
        splits = {"train": "train", "valid": "validation", "test": "test"}
        out = {}
        for split, tfds_split in splits.items():
            images = tfds.as_numpy(builder.as_dataset(split=tfds_split, batch_size=-1))["image"]
            out[split] = images.reshape(len(images), PIXELS).astype(np.float32)
    except Exception as e:  # TFDS raises many unrelated types; report them as one.
        raise DataError(
            f"Building tensorflow-datasets 'binarized_mnist' in {tfds_dir} failed "
            f"({type(e).__name__}: {e}). Offline, put the .amat files in {data_dir} "
            "(see load_binarized_mnist); or use source='files'."
        ) from e
    return out


def _find_or_download(
    data_dir: pathlib.Path,
    dataset: str,
    name: str,
    url: str,
    download: bool,
    verify: bool,
    sha256: str,
) -> pathlib.Path:
    """Finds ``name`` (plain, .xz or .gz); if missing and ``download``, fetches ``url``."""
    try:
        return common.find_file(data_dir, dataset, name, source=url)
    except DataError:
        if not download:
            raise
    dest = data_dir / dataset / pathlib.PurePosixPath(url).name
    return common.download(url, dest, sha256 if verify else None)


def parse_idx(
    data: bytes, name: str | os.PathLike, *, magic: int, count: int | None = None
) -> np.ndarray:
    """Parses an MNIST IDX file of unsigned bytes: images (magic 2051) or labels (magic 2049).

    Args:
        data: The file's uncompressed contents.
        name: The file's name, for error messages.
        magic: The expected magic number: :data:`IDX_IMAGES_MAGIC` or :data:`IDX_LABELS_MAGIC`.
        count: The expected number of items, or None to accept any.

    Returns:
        uint8 ``[N, 28, 28]`` images or ``[N]`` labels.

    Raises:
        DataError: On a wrong magic number, item count, image size or file length.
    """
    ndim = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}[magic]
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise DataError(f"{name}: {len(data)} bytes, too short for an IDX header.")
    got_magic, *shape = struct.unpack(f">{1 + ndim}I", data[:header])
    kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
    if got_magic != magic:
        raise DataError(
            f"{name}: IDX magic number {got_magic}, expected {magic} (MNIST {kind}); wrong or "
            "still-compressed file."
        )
    if count is not None and shape[0] != count:
        raise DataError(f"{name}: {shape[0]} {kind}, expected {count}.")
    if magic == IDX_IMAGES_MAGIC and shape[1:] != [28, 28]:
        raise DataError(f"{name}: images of {shape[1]} x {shape[2]} pixels, expected 28 x 28.")
    if len(data) - header != int(np.prod(shape)):
        raise DataError(
            f"{name}: {len(data) - header} bytes of data after the header, expected "
            f"{int(np.prod(shape))} for shape {tuple(shape)} (truncated?)."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(
    data_dir: str | os.PathLike | None = None, *, download: bool = False, verify: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Loads plain MNIST from its four IDX files, with a validation split.

    Reads ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (plain, ``.gz`` or ``.xz``) from
    ``DATA_DIR/mnist/`` or ``DATA_DIR/``. The validation split is the LAST 5,000 images of the
    original training set, leaving 55,000 for training.

    Args:
        data_dir: Data directory (see :func:`~nprnn.data.common.resolve_data_dir`).
        download: Download missing files (gzipped, 11 MB) from ``MNIST_URL`` into
            ``DATA_DIR/mnist/``.
        verify: Check the SHA-256 of every file against :data:`MNIST_SHA256`.

    Returns:
        ``{"train": ..., "valid": ..., "test": ...}``, each ``(images, labels)`` with images uint8
        ``[N, 28, 28]`` (0-255) and labels int32 ``[N]`` (0-9); N = 55,000 / 5,000 / 10,000.

    Raises:
        DataError: If a file is missing, corrupt or fails verification, or its IDX header (magic
            number 2051 / 2049, count, 28 x 28 size) or labels (0-9) are wrong.
    """
    data_dir = common.resolve_data_dir(data_dir)
    arrays = {}
    for prefix, count in MNIST_COUNTS.items():
        for kind, magic in (("images-idx3", IDX_IMAGES_MAGIC), ("labels-idx1", IDX_LABELS_MAGIC)):
            name = f"{prefix}-{kind}-ubyte"
            digest = MNIST_SHA256[name]
            path = _find_or_download(
                data_dir, "mnist", name, f"{MNIST_URL}{name}.gz", download, verify, digest
            )
            data = common.read_bytes(path)
            if verify:
                common.verify_sha256(data, digest, path)
            arrays[name] = parse_idx(data, path, magic=magic, count=count)
            if magic == IDX_LABELS_MAGIC and arrays[name].max() > 9:
                raise DataError(f"{path}: label {arrays[name].max()} outside 0-9.")
    train_x, train_y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    test_x, test_y = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    n_train = len(train_x) - MNIST_VALID_SIZE
    return {
        "train": (train_x[:n_train], train_y[:n_train].astype(np.int32)),
        "valid": (train_x[n_train:], train_y[n_train:].astype(np.int32)),
        "test": (test_x, test_y.astype(np.int32)),
    }


def pixel_permutation(seed: int) -> np.ndarray:
    """A fixed random order of the 784 pixels, for permuted sequential MNIST.

    Args:
        seed: Non-negative seed; the same seed gives the same permutation (NumPy's PCG64
            ``Generator.permutation``, stable across NumPy versions so far).

    Returns:
        int64 ``[784]``, a permutation of ``0..783``.
    """
    return np.random.default_rng(seed).permutation(PIXELS)


def pixel_sequences(images: np.ndarray, *, permutation: np.ndarray | None = None) -> np.ndarray:
    """Turns images into pixel sequences for sequential MNIST, scaled to [0, 1].

    Args:
        images: uint8 ``[N, 28, 28]`` (or ``[N, 784]``) with values 0-255.
        permutation: Optional int ``[784]`` pixel order (see :func:`pixel_permutation`): time step
            ``t`` sees pixel ``permutation[t]`` of the row-major image. None keeps scan-line order.

    Returns:
        float32 ``[N, 784, 1]``: batch-major sequences of one-dimensional inputs (transpose to
        ``[784, N, 1]`` for a time-major scan).

    Raises:
        ValueError: If ``images`` is not uint8 with 784 pixels per image, or ``permutation`` is
            not a permutation of ``0..783``.

    Example:
        >>> images = np.zeros((2, 28, 28), np.uint8)
        >>> pixel_sequences(images, permutation=pixel_permutation(0)).shape
        (2, 784, 1)
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images[0].size != PIXELS:
        raise ValueError(
            f"images must be uint8 [N, 28, 28] or [N, 784], got {images.dtype} {images.shape}."
        )
    x = images.reshape(len(images), PIXELS).astype(np.float32) / 255.0
    if permutation is not None:
        permutation = np.asarray(permutation)
        if permutation.shape != (PIXELS,) or not np.array_equal(
            np.sort(permutation), np.arange(PIXELS)
        ):
            raise ValueError(f"permutation must be a permutation of 0..{PIXELS - 1}.")
        x = x[:, permutation]
    return x[:, :, None]
