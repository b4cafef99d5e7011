"""Tests of nprnn.data: loaders on small files written here, failure modes, batching, and checks
on the real datasets in ../shared/data when they are present. No test touches the network."""

import gzip
import hashlib
import importlib.util
import io
import lzma
import pathlib
import shutil
import struct
import tarfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from nprnn.data import (
    DataError,
    common,
    download,
    epoch_and_index,
    eval_windows,
    find_file,
    load_binarized_mnist,
    load_mnist,
    load_ptb_chars,
    load_text8,
    minibatches,
    mnist,
    pixel_permutation,
    pixel_sequences,
    ptb_chars_from_words,
    random_windows,
    read_bytes,
    resolve_data_dir,
    stream_batches,
    text,
    verify_sha256,
)

REAL_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    """Writes ``data`` to ``path``, compressed according to its suffix (.xz, .gz, .zip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".xz":
        data = lzma.compress(data, preset=0)
    elif path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(path.stem, data)
        data = buffer.getvalue()
    path.write_bytes(data)
    return path


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable context manager."""


def serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Makes urllib.request.urlopen serve ``files`` (URL -> bytes) from memory; returns the log."""
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        if url not in files:
            raise urllib.error.URLError(f"no route to {url}")
        return FakeResponse(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


# ---------------------------------------------------------------------------------------------
# common


def test_resolve_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv(common.ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(common.ENV_VAR)
    assert resolve_data_dir() == pathlib.Path.home() / ".cache" / "nprnn"


def test_find_file_search_order(tmp_path):
    write(tmp_path / "ptb.test.txt", b"root")
    assert find_file(tmp_path, "ptb", "ptb.test.txt") == tmp_path / "ptb.test.txt"
    write(tmp_path / "ptb" / "ptb.test.txt.xz", b"sub")
    assert find_file(tmp_path, "ptb", "ptb.test.txt") == tmp_path / "ptb" / "ptb.test.txt.xz"
    write(tmp_path / "ptb" / "ptb.test.txt", b"sub")
    assert find_file(tmp_path, "ptb", "ptb.test.txt") == tmp_path / "ptb" / "ptb.test.txt"


def test_find_file_missing_lists_paths_and_source(tmp_path):
    with pytest.raises(DataError) as info:
        find_file(tmp_path, "ptb", "ptb.test.txt", source="http://example.org/ptb.tgz")
    message = str(info.value)
    assert "ptb.test.txt" in message
    for suffix in ("", ".xz", ".gz"):
        assert str(tmp_path / "ptb" / f"ptb.test.txt{suffix}") in message
        assert str(tmp_path / f"ptb.test.txt{suffix}") in message
    assert "http://example.org/ptb.tgz" in message
    assert "NPRNN_DATA_DIR" in message and "--data_dir" in message


@pytest.mark.parametrize("name", ["f.txt", "f.txt.xz", "f.txt.gz", "f.zip"])
def test_read_bytes_decompresses(tmp_path, name):
    assert read_bytes(write(tmp_path / name, b"hello world\n" * 100)) == b"hello world\n" * 100


@pytest.mark.parametrize("name", ["f.txt.xz", "f.txt.gz", "f.zip"])
def test_read_bytes_truncated_archive(tmp_path, name):
    path = write(tmp_path / name, bytes(range(256)) * 64)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        read_bytes(path)
    assert str(path) in str(info.value)


def test_verify_sha256_mismatch_names_file_and_digests():
    data = b"abc"
    good = hashlib.sha256(data).hexdigest()
    verify_sha256(data, good, "f.txt")
    with pytest.raises(DataError) as info:
        verify_sha256(b"abd", good, "some/f.txt")
    message = str(info.value)
    assert "some/f.txt" in message and good in message
    assert hashlib.sha256(b"abd").hexdigest() in message


def test_download_good_checksum(monkeypatch, tmp_path):
    payload = b"some data\n" * 1000
    serve(monkeypatch, {"http://h/f.txt": payload, "http://h/f.txt.gz": gzip.compress(payload)})
    digest = hashlib.sha256(payload).hexdigest()
    dest = download("http://h/f.txt", tmp_path / "sub" / "f.txt", digest)
    assert dest.read_bytes() == payload
    # For a compressed destination the checksum is that of the uncompressed contents.
    dest = download("http://h/f.txt.gz", tmp_path / "f.txt.gz", digest)
    assert read_bytes(dest) == payload
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f.txt", "f.txt.gz", "sub"]


def test_download_bad_checksum_leaves_nothing(monkeypatch, tmp_path):
    serve(monkeypatch, {"http://h/f.txt": b"tampered"})
    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        download("http://h/f.txt", tmp_path / "f.txt", "0" * 64)
    assert str(tmp_path / "f.txt") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_network_error(monkeypatch, tmp_path):
    serve(monkeypatch, {})
    with pytest.raises(DataError, match="http://h/f.txt") as info:
        download("http://h/f.txt", tmp_path / "f.txt")
    assert str(tmp_path / "f.txt") in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# PTB characters

PTB_WORDS = {
    "train": b" the cat sat on the mat \n a dog 's <unk> N \n\n big-cat ate $ N \n",
    "valid": b" the dog sat \n",
    "test": b" a cat \n N mat \n",
}


def test_ptb_chars_from_words_rule():
    assert ptb_chars_from_words(b" ab c \n d \n") == b"a b _ c \n d \n "
    assert ptb_chars_from_words(b" ab \n\n") == b"a b \n \n "  # an empty line is one eol token


def write_ptb_words(data_dir: pathlib.Path, suffix: str = "") -> None:
    for split, words in PTB_WORDS.items():
        write(data_dir / "ptb" / f"ptb.{split}.txt{suffix}", words)


@pytest.mark.parametrize("suffix", ["", ".xz", ".gz"])
def test_load_ptb_chars_from_char_and_word_files(tmp_path, suffix):
    write_ptb_words(tmp_path / "words", suffix)
    for split, words in PTB_WORDS.items():
        write(tmp_path / "chars" / f"ptb.char.{split}.txt{suffix}", ptb_chars_from_words(words))
    from_words = load_ptb_chars(tmp_path / "words", verify=False)
    from_chars = load_ptb_chars(tmp_path / "chars", verify=False)
    assert from_words.vocab == from_chars.vocab
    for split in text.SPLITS:
        np.testing.assert_array_equal(getattr(from_words, split), getattr(from_chars, split))

    corpus = from_chars
    assert corpus.vocab[0] == "\n" and "_" in corpus.vocab and " " not in corpus.vocab
    assert list(corpus.vocab) == sorted(set(ptb_chars_from_words(PTB_WORDS["train"]).decode()[::2]))
    assert corpus.train.dtype == np.int32 and corpus.train.ndim == 1
    eol = corpus.vocab.index(text.EOL)
    assert int((corpus.valid != eol).sum()) == len("the_dog_sat")
    assert int((corpus.test == eol).sum()) == 2
    assert corpus.decode(corpus.valid) == "the dog sat\n"
    assert corpus.decode(corpus.encode("a cat\nN mat\n")) == "a cat\nN mat\n"
    np.testing.assert_array_equal(corpus.encode("a cat\nN mat\n"), corpus.test)
    np.testing.assert_array_equal(corpus.encode("a_cat"), corpus.encode("a cat"))
    with pytest.raises(ValueError, match="'z'"):
        corpus.encode("zebra")
    with pytest.raises(ValueError):
        corpus.train[0] = 1  # read-only


def test_load_ptb_chars_uses_env_var(monkeypatch, tmp_path):
    write_ptb_words(tmp_path)
    monkeypatch.setenv(common.ENV_VAR, str(tmp_path))
    assert load_ptb_chars(verify=False).decode(load_ptb_chars(verify=False).valid) == (
        "the dog sat\n"
    )


def test_load_ptb_chars_missing(tmp_path):
    with pytest.raises(DataError) as info:
        load_ptb_chars(tmp_path)
    message = str(info.value)
    for name in ("ptb.char.train.txt", "ptb.train.txt"):
        assert str(tmp_path / "ptb" / name) in message and str(tmp_path / name) in message
    assert text.PTB_URL in message and "NPRNN_DATA_DIR" in message


def test_load_ptb_chars_verifies_by_default(tmp_path):
    write_ptb_words(tmp_path)
    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        load_ptb_chars(tmp_path)
    assert str(tmp_path / "ptb" / "ptb.train.txt") in str(info.value)


def test_load_ptb_chars_bad_format_and_unknown_symbol(tmp_path):
    write_ptb_words(tmp_path)
    bad = write(tmp_path / "ptb" / "ptb.char.valid.txt", b"t h e  d o g \n ")
    with pytest.raises(DataError, match="not a PTB character file") as info:
        load_ptb_chars(tmp_path, verify=False)
    assert str(bad) in str(info.value)
    write(bad, b"z e b r a \n ")
    with pytest.raises(DataError, match="'z'") as info:
        load_ptb_chars(tmp_path, verify=False)
    assert str(bad) in str(info.value)


def test_load_ptb_chars_truncated_xz(tmp_path):
    write_ptb_words(tmp_path)
    path = write(tmp_path / "ptb" / "ptb.char.test.txt.xz", ptb_chars_from_words(b" a b \n" * 99))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_ptb_chars(tmp_path, verify=False)
    assert str(path) in str(info.value)


def test_load_ptb_chars_download(monkeypatch, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split, words in PTB_WORDS.items():
            for name, data in (
                (f"ptb.{split}.txt", words),
                (f"ptb.char.{split}.txt", ptb_chars_from_words(words)),
            ):
                info = tarfile.TarInfo(f"./simple-examples/data/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    requested = serve(monkeypatch, {text.PTB_URL: buffer.getvalue()})
    corpus = load_ptb_chars(tmp_path, download=True, verify=False)
    assert requested == [text.PTB_URL]
    assert corpus.decode(corpus.valid) == "the dog sat\n"
    assert sorted(p.name for p in (tmp_path / "ptb").iterdir()) == sorted(text.PTB_SHA256)
    load_ptb_chars(tmp_path, download=True, verify=False)  # present now: no second download
    assert requested == [text.PTB_URL]
    # The real checksums reject these synthetic files, and nothing is written.
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_ptb_chars(tmp_path / "other", download=True)
    assert not any((tmp_path / "other" / "ptb").iterdir())


# ---------------------------------------------------------------------------------------------
# text8

TEXT8 = (b"anarchism originated as a term of abuse " * 30)[:1000]


@pytest.mark.parametrize("name", ["text8", "text8.zip", "text8/text8.zip", "text8.xz"])
def test_load_text8(tmp_path, name):
    write(tmp_path / name, TEXT8)
    corpus = load_text8(tmp_path, verify=False, expected_length=1000)
    assert corpus.vocab == (" ", *"abcdefghijklmnopqrstuvwxyz")
    assert (corpus.train.size, corpus.valid.size, corpus.test.size) == (900, 50, 50)
    ids = np.concatenate([corpus.train, corpus.valid, corpus.test])
    assert ids.dtype == np.int32
    assert corpus.decode(ids) == TEXT8.decode()
    np.testing.assert_array_equal(corpus.encode("a term"), [1, 0, 20, 5, 18, 13])


def test_load_text8_errors(tmp_path):
    with pytest.raises(DataError, match="text8.zip") as info:
        load_text8(tmp_path)
    assert text.TEXT8_URL in str(info.value)
    path = write(tmp_path / "text8", TEXT8[:999])
    with pytest.raises(DataError, match="1,000 characters, found 999") as info:
        load_text8(tmp_path, verify=False, expected_length=1000)
    assert str(path) in str(info.value)
    write(path, TEXT8[:500] + b"A" + TEXT8[501:])
    with pytest.raises(DataError, match="'A' at position 500") as info:
        load_text8(tmp_path, verify=False, expected_length=1000)
    assert str(path) in str(info.value)
    write(path, TEXT8)
    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        load_text8(tmp_path, expected_length=1000)
    assert str(path) in str(info.value) and text.TEXT8_SHA256 in str(info.value)


def test_load_text8_download(monkeypatch, tmp_path):
    zipped = write(tmp_path / "served" / "text8.zip", TEXT8).read_bytes()
    serve(monkeypatch, {text.TEXT8_URL: zipped})
    corpus = load_text8(tmp_path / "data", download=True, verify=False, expected_length=1000)
    assert corpus.train.size == 900
    assert (tmp_path / "data" / "text8" / "text8.zip").read_bytes() == zipped
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_text8(tmp_path / "other", download=True, expected_length=1000)
    assert list((tmp_path / "other" / "text8").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Batching for character models


def test_random_windows_reproducible_and_shifted():
    ids = np.arange(10_000) % 50
    x, y = random_windows(ids, batch_size=8, length=100, seed=3, step=17)
    assert x.shape == y.shape == (8, 100) and x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    x2, y2 = random_windows(ids, batch_size=8, length=100, seed=3, step=17)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = random_windows(ids, batch_size=8, length=100, seed=3, step=18)
    x4, _ = random_windows(ids, batch_size=8, length=100, seed=4, step=17)
    assert not np.array_equal(x, x3) and not np.array_equal(x, x4)
    # Every window is a contiguous piece of the sequence; all starts are reachable.
    positions = np.arange(12)
    starts = set()
    for step in range(300):
        x, y = random_windows(positions, batch_size=4, length=5, seed=0, step=step)
        np.testing.assert_array_equal(np.diff(x, axis=1), 1)
        np.testing.assert_array_equal(y, x + 1)
        starts.update(x[:, 0].tolist())
    assert starts == set(range(12 - 5))
    with pytest.raises(ValueError, match="longer than length"):
        random_windows(positions, batch_size=1, length=12, seed=0, step=0)


CASES = [(2, 1, 1), (2, 5, 3), (101, 10, 4), (102, 10, 4), (1000, 100, 3), (37, 4, 16)]


@pytest.mark.parametrize("n, length, batch_size", CASES)
def test_eval_windows_cover_each_target_once(n, length, batch_size):
    ids = np.arange(n)  # ids are positions, so targets name what they cover
    batches = list(eval_windows(ids, length=length, batch_size=batch_size))
    counts = np.zeros(n, dtype=int)
    for x, y, mask in batches:
        assert x.shape == y.shape == mask.shape == (batch_size, length)
        assert x.dtype == y.dtype == np.int32 and mask.dtype == bool
        np.testing.assert_array_equal(y[mask], x[mask] + 1)
        np.add.at(counts, y[mask], 1)
        assert not x[~mask].any() and not y[~mask].any()
    np.testing.assert_array_equal(counts, [0] + [1] * (n - 1))
    windows = np.concatenate([x for x, _, _ in batches])
    np.testing.assert_array_equal(windows[:, 0][: -(-(n - 1) // length)] % length, 0)


@pytest.mark.parametrize("n, length, batch_size", CASES)
def test_stream_batches_cover_each_target_once_in_order(n, length, batch_size):
    ids = np.arange(n)
    counts = np.zeros(n, dtype=int)
    streams = [[] for _ in range(batch_size)]
    for x, y, mask in stream_batches(ids, batch_size=batch_size, length=length):
        assert x.shape == y.shape == mask.shape == (batch_size, length)
        np.testing.assert_array_equal(y[mask], x[mask] + 1)
        np.add.at(counts, y[mask], 1)
        for b in range(batch_size):
            streams[b].extend(y[b][mask[b]].tolist())
    np.testing.assert_array_equal(counts, [0] + [1] * (n - 1))
    # Each row continues its stream: contiguous targets, streams in order.
    flat = [t for stream in streams for t in stream]
    assert flat == list(range(1, n))
    for stream in filter(None, streams):
        assert stream == list(range(stream[0], stream[0] + len(stream)))


def test_stream_batches_single_stream_is_the_whole_sequence():
    ids = np.arange(25) % 7
    chunks = list(stream_batches(ids, batch_size=1, length=10))
    assert len(chunks) == 3
    x = np.concatenate([c[0][0] for c in chunks])
    mask = np.concatenate([c[2][0] for c in chunks])
    np.testing.assert_array_equal(x[mask], ids[:-1])


@pytest.mark.parametrize(
    "batches",
    [
        lambda ids, **sizes: random_windows(ids, seed=0, step=0, **sizes),
        lambda ids, **sizes: list(eval_windows(ids, **sizes)),
        lambda ids, **sizes: list(stream_batches(ids, **sizes)),
    ],
    ids=["random_windows", "eval_windows", "stream_batches"],
)
def test_char_batching_rejects_non_positive_sizes(batches):
    ids = np.arange(50)
    with pytest.raises(ValueError, match=r"^batch_size must be a positive integer, got 0$"):
        batches(ids, batch_size=0, length=5)
    with pytest.raises(ValueError, match=r"^length must be a positive integer, got -1$"):
        batches(ids, batch_size=2, length=-1)
    with pytest.raises(ValueError, match=r"^length must be a positive integer, got 2.5$"):
        batches(ids, batch_size=2, length=2.5)


# ---------------------------------------------------------------------------------------------
# Binarized MNIST


def amat_bytes(images: np.ndarray) -> bytes:
    return "".join(" ".join(map(str, row)) + "\n" for row in images).encode()


@pytest.fixture
def small_binarized(monkeypatch, tmp_path):
    """Small .amat files (3 / 2 / 2 images) that the loader accepts as the full splits."""
    sizes = {"train": 3, "valid": 2, "test": 2}
    for split, n in sizes.items():
        monkeypatch.setitem(mnist.BINARIZED_MNIST_SIZES, split, n)
    rng = np.random.default_rng(0)
    images = {split: rng.integers(0, 2, size=(n, 784)) for split, n in sizes.items()}
    return tmp_path, images


@pytest.mark.parametrize("suffix", ["", ".xz", ".gz"])
def test_load_binarized_mnist(small_binarized, suffix):
    data_dir, images = small_binarized
    for split, x in images.items():
        write(data_dir / "binarized_mnist" / f"binarized_mnist_{split}.amat{suffix}", amat_bytes(x))
    out = load_binarized_mnist(data_dir, verify=False)
    assert set(out) == {"train", "valid", "test"}
    for split, x in images.items():
        assert out[split].dtype == np.float32
        np.testing.assert_array_equal(out[split], x)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_binarized_mnist(data_dir)


def test_parse_amat_accepts_other_whitespace():
    x = np.random.default_rng(1).integers(0, 2, size=(2, 784))
    data = amat_bytes(x).replace(b"\n", b" \r\n").replace(b"1", b"1.0")
    np.testing.assert_array_equal(mnist.parse_amat(data), x)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda rows: rows[:-1], "2 images, expected 3"),
        (lambda rows: [rows[0], rows[1][:-2], rows[2]], "line 2 has 783 values"),
        (lambda rows: [rows[0], rows[1] + b" 0", rows[2]], "line 2 has 785 values"),
        (lambda rows: [rows[0], rows[1], b"2" + rows[2][1:]], "line 3 holds the value '2'"),
        (lambda rows: [rows[0], rows[1], b"x" + rows[2][1:]], "line 3 holds the value 'x'"),
    ],
)
def test_load_binarized_mnist_bad_file(small_binarized, edit, match):
    data_dir, images = small_binarized
    for split, x in images.items():
        write(data_dir / f"binarized_mnist_{split}.amat", amat_bytes(x))
    rows = amat_bytes(images["train"]).splitlines()
    bad = write(data_dir / "binarized_mnist_train.amat", b"\n".join(edit(rows)) + b"\n")
    with pytest.raises(DataError, match=match) as info:
        load_binarized_mnist(data_dir, verify=False)
    assert str(bad) in str(info.value)


def test_load_binarized_mnist_missing_and_download(monkeypatch, small_binarized):
    data_dir, images = small_binarized
    with pytest.raises(DataError) as info:
        load_binarized_mnist(data_dir)
    assert "binarized_mnist_train.amat" in str(info.value)
    assert mnist.BINARIZED_MNIST_URL + "binarized_mnist_train.amat" in str(info.value)
    url = mnist.BINARIZED_MNIST_URL + "binarized_mnist_{}.amat"
    serve(monkeypatch, {url.format(split): amat_bytes(x) for split, x in images.items()})
    out = load_binarized_mnist(data_dir, download=True, verify=False)
    np.testing.assert_array_equal(out["valid"], images["valid"])
    assert (data_dir / "binarized_mnist" / "binarized_mnist_test.amat").is_file()


def test_load_binarized_mnist_tfds_needs_tensorflow(tmp_path):
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed; this test checks the message without it")
    with pytest.raises(DataError, match="TensorFlow"):
        load_binarized_mnist(tmp_path, source="tfds")
    with pytest.raises(ValueError, match="source"):
        load_binarized_mnist(tmp_path, source="npz")


# ---------------------------------------------------------------------------------------------
# MNIST


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return (
        struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    )


@pytest.fixture
def small_mnist(monkeypatch):
    """Synthetic IDX contents with 12 training and 4 test images, 3 kept for validation."""
    monkeypatch.setitem(mnist.MNIST_COUNTS, "train", 12)
    monkeypatch.setitem(mnist.MNIST_COUNTS, "t10k", 4)
    monkeypatch.setattr(mnist, "MNIST_VALID_SIZE", 3)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(12, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(12) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(4, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([3, 1, 4, 1]),
    }
    magics = {3: mnist.IDX_IMAGES_MAGIC, 1: mnist.IDX_LABELS_MAGIC}
    return {name: idx_bytes(a, magics[a.ndim]) for name, a in arrays.items()}, arrays


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_mnist(tmp_path, small_mnist, suffix):
    files, arrays = small_mnist
    for name, data in files.items():
        write(tmp_path / "mnist" / f"{name}{suffix}", data)
    out = load_mnist(tmp_path, verify=False)
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    expected = {
        "train": (images[:9], labels[:9]),
        "valid": (images[9:], labels[9:]),
        "test": (arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]),
    }
    assert set(out) == set(expected)
    for split, (x, y) in expected.items():
        assert out[split][0].dtype == np.uint8 and out[split][1].dtype == np.int32
        np.testing.assert_array_equal(out[split][0], x)
        np.testing.assert_array_equal(out[split][1], y)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    "name, edit, match",
    [
        ("train-images-idx3-ubyte", lambda d: struct.pack(">I", 2049) + d[4:], "magic number 2049"),
        ("t10k-labels-idx1-ubyte", lambda d: struct.pack(">I", 2051) + d[4:], "magic number 2051"),
        ("train-images-idx3-ubyte", lambda d: d[:-1], "truncated"),
        ("t10k-labels-idx1-ubyte", lambda d: d[:6], "too short"),
        ("t10k-labels-idx1-ubyte", lambda d: d[:-1] + b"\x0a", "label 10"),
        ("t10k-images-idx3-ubyte", lambda d: d[:4] + struct.pack(">I", 3) + d[8:], "3 images"),
        (
            "train-images-idx3-ubyte",
            lambda d: d[:8] + struct.pack(">II", 14, 56) + d[16:],
            "14 x 56",
        ),
    ],
)
def test_load_mnist_bad_file(tmp_path, small_mnist, name, edit, match):
    files, _ = small_mnist
    for n, data in files.items():
        write(tmp_path / f"{n}.gz", edit(data) if n == name else data)
    with pytest.raises(DataError, match=match) as info:
        load_mnist(tmp_path, verify=False)
    assert str(tmp_path / f"{name}.gz") in str(info.value)


def test_load_mnist_truncated_gz(tmp_path, small_mnist):
    files, _ = small_mnist
    for name, data in files.items():
        write(tmp_path / f"{name}.gz", data)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_mnist(tmp_path, verify=False)
    assert str(path) in str(info.value)


def test_load_mnist_download(monkeypatch, tmp_path, small_mnist):
    files, arrays = small_mnist
    served = {f"{mnist.MNIST_URL}{name}.gz": gzip.compress(data) for name, data in files.items()}
    requested = serve(monkeypatch, served)
    out = load_mnist(tmp_path, download=True, verify=False)
    assert sorted(requested) == sorted(served)
    np.testing.assert_array_equal(out["test"][1], arrays["t10k-labels-idx1-ubyte"])
    assert (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_pixel_sequences_and_permutation():
    images = np.arange(2 * 784).reshape(2, 28, 28).astype(np.uint8)
    x = pixel_sequences(images)
    assert x.shape == (2, 784, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, :, 0], images.reshape(2, 784) / 255.0, rtol=1e-6)
    assert x.min() >= 0.0 and x.max() <= 1.0
    perm = pixel_permutation(7)
    np.testing.assert_array_equal(np.sort(perm), np.arange(784))
    np.testing.assert_array_equal(perm, pixel_permutation(7))
    assert not np.array_equal(perm, pixel_permutation(8))
    np.testing.assert_array_equal(pixel_sequences(images, permutation=perm), x[:, perm])
    with pytest.raises(ValueError, match="permutation"):
        pixel_sequences(images, permutation=np.zeros(784, int))
    with pytest.raises(ValueError, match="uint8"):
        pixel_sequences(images.astype(np.float32))


def test_minibatches_pure_and_resumable():
    n, batch_size, seed = 103, 10, 5
    epoch0 = minibatches(n, batch_size=batch_size, seed=seed, epoch=0)
    assert epoch0.shape == (10, 10)
    assert len(np.unique(epoch0)) == 100 and epoch0.max() < n
    np.testing.assert_array_equal(epoch0, minibatches(n, batch_size=batch_size, seed=seed, epoch=0))
    assert not np.array_equal(epoch0, minibatches(n, batch_size=batch_size, seed=seed, epoch=1))
    assert not np.array_equal(epoch0, minibatches(n, batch_size=batch_size, seed=6, epoch=0))
    # A run that stops after any step and resumes from the step number sees the same batches.
    straight = [
        minibatches(n, batch_size=batch_size, seed=seed, epoch=e)[i]
        for e in range(3)
        for i in range(10)
    ]
    for step in range(30):
        epoch, index = epoch_and_index(step, n=n, batch_size=batch_size)
        np.testing.assert_array_equal(
            minibatches(n, batch_size=batch_size, seed=seed, epoch=epoch)[index], straight[step]
        )
    assert epoch_and_index(25, n=n, batch_size=batch_size) == (2, 5)
    with pytest.raises(ValueError):
        minibatches(5, batch_size=6, seed=0, epoch=0)


# ---------------------------------------------------------------------------------------------
# The real datasets (../shared/data), when present

needs_real = pytest.mark.skipif(
    not REAL_DATA.is_dir(), reason=f"real datasets not found at {REAL_DATA}"
)


@pytest.fixture(scope="module")
def real_ptb():
    return load_ptb_chars(REAL_DATA)


@needs_real
def test_real_ptb_chars(real_ptb):
    corpus = real_ptb
    assert len(corpus.vocab) == 50 and corpus.vocab[0] == "\n"
    eol = corpus.vocab.index(text.EOL)
    chars = {s: int((getattr(corpus, s) != eol).sum()) for s in text.SPLITS}
    assert chars == {"train": 4_975_414, "valid": 389_672, "test": 438_662}
    lines = {s: int((getattr(corpus, s) == eol).sum()) for s in text.SPLITS}
    assert lines == {"train": 42_068, "valid": 3_370, "test": 3_761}
    assert corpus.decode(corpus.train[:12]) == "aer banknote"


@needs_real
def test_real_ptb_chars_derived_from_words_are_identical():
    for split in text.SPLITS:
        words = read_bytes(REAL_DATA / "ptb" / f"ptb.{split}.txt.xz")
        derived = ptb_chars_from_words(words)
        assert hashlib.sha256(derived).hexdigest() == text.PTB_SHA256[f"ptb.char.{split}.txt"]


@needs_real
def test_real_binarized_mnist():
    out = load_binarized_mnist(REAL_DATA)
    assert {s: x.shape for s, x in out.items()} == {
        "train": (50_000, 784),
        "valid": (10_000, 784),
        "test": (10_000, 784),
    }
    for x in out.values():
        assert np.all((x == 0) | (x == 1))
    means = {s: round(float(x.mean(dtype=np.float64)), 5) for s, x in out.items()}
    assert means == {"train": 0.13056, "valid": 0.13113, "test": 0.13251}


@needs_real
def test_real_mnist():
    out = load_mnist(REAL_DATA)
    assert {s: (x.shape, y.shape) for s, (x, y) in out.items()} == {
        "train": ((55_000, 28, 28), (55_000,)),
        "valid": ((5_000, 28, 28), (5_000,)),
        "test": ((10_000, 28, 28), (10_000,)),
    }
    train_labels = np.concatenate([out["train"][1], out["valid"][1]])
    assert np.bincount(train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]  # fmt: skip
    assert np.bincount(out["test"][1]).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009
    ]  # fmt: skip
    train_images = np.concatenate([out["train"][0], out["valid"][0]])
    assert round(float(train_images.mean()), 3) == 33.318
    assert round(float(out["test"][0].mean()), 3) == 33.791


@needs_real
def test_tfds_path_offline_gives_the_same_images(tmp_path):
    """source="tfds" builds TFDS's binarized_mnist offline from the local .amat copies."""
    pytest.importorskip(
        "tensorflow", reason="the TFDS builder needs TensorFlow (pip install .[tfds])"
    )
    pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed")
    shutil.copytree(REAL_DATA / "binarized_mnist", tmp_path / "binarized_mnist")
    via_tfds = load_binarized_mnist(tmp_path, source="tfds")
    via_files = load_binarized_mnist(REAL_DATA)
    for split, images in via_files.items():
        got = np.packbits(via_tfds[split].astype(np.uint8), axis=1)
        want = np.packbits(images.astype(np.uint8), axis=1)
        # TFDS shuffles the examples when it prepares the dataset: compare sorted rows.
        np.testing.assert_array_equal(got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])])


def test_ptb_offline_download_failure_names_the_files_to_put_where(monkeypatch, tmp_path):
    requested = serve(monkeypatch, {})  # no network: every URL fails
    with pytest.raises(DataError) as err:
        load_ptb_chars(tmp_path, download=True)
    message = str(err.value)
    assert requested == [text.PTB_URL]
    assert "ptb.char.{train,valid,test}.txt" in message and "ptb.{train,valid,test}.txt" in message
    assert str(tmp_path / "ptb") in message
    assert not (tmp_path / "ptb" / "simple-examples.tgz").exists()
