"""Locating, reading, verifying and downloading dataset files; imports nothing from nprnn.

Every loader in :mod:`nprnn.data` looks for its files in one data directory (see
:func:`resolve_data_dir`), in the dataset's own sub-directory first and then in the data directory
itself, accepting each file as is or compressed (``.xz``, ``.gz``, and ``.zip`` where the dataset is
distributed that way). Files are read whole into memory, decompressed transparently and checked
against the SHA-256 of the *uncompressed* contents, so a copy compressed with any tool verifies the
same. Every problem a user can fix (a missing, truncated, corrupt or wrong file) raises
:class:`DataError` with a message that names the file and says how to obtain it.

Nothing here touches the network unless a loader is called with ``download=True``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence

from absl import logging

ENV_VAR = "NPRNN_DATA_DIR"
"""Environment variable that names the data directory when no directory is passed."""

DEFAULT_DATA_DIR = pathlib.Path("~/.cache/nprnn")
"""Data directory used when neither an argument nor ``NPRNN_DATA_DIR`` names one."""

COMPRESSED_SUFFIXES = ("", ".xz", ".gz")
"""Suffixes :func:`find_file` accepts by default: the plain file, xz (lzma) and gzip."""

HOW_TO_POINT = f"pass --data_dir / set {ENV_VAR} to the directory that holds it"


class DataError(Exception):
    """A dataset file is missing, unreadable, corrupt or not what was expected.

    The message always names the file concerned and, where it helps, how to obtain a good copy.
    """


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Returns the directory that dataset files are read from (and downloaded into).

    The first of these that is set wins:

    1. the ``data_dir`` argument (the ``--data_dir`` flag of the command-line tools);
    2. the environment variable ``NPRNN_DATA_DIR``;
    3. ``~/.cache/nprnn``.

    The directory need not exist: it is only created when something is downloaded into it.

    Args:
        data_dir: An explicit directory, or None.

    Returns:
        The directory, with ``~`` expanded.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return pathlib.Path(data_dir).expanduser()


def candidate_paths(
    data_dir: pathlib.Path,
    dataset: str,
    names: Sequence[str],
    suffixes: Sequence[str] = COMPRESSED_SUFFIXES,
) -> list[pathlib.Path]:
    """Lists, in search order, every path :func:`find_file` tries.

    Args:
        data_dir: The data directory (see :func:`resolve_data_dir`).
        dataset: The dataset's sub-directory name, e.g. ``"ptb"``.
        names: Acceptable file names, most preferred first, without compression suffix.
        suffixes: Acceptable compression suffixes ("" for the plain file).

    Returns:
        ``data_dir/dataset/NAME SUFFIX`` for every name and suffix, then the same directly under
        ``data_dir``.
    """
    dirs = [data_dir / dataset, data_dir]
    return [d / (name + suffix) for d in dirs for name in names for suffix in suffixes]


def locate(
    data_dir: str | os.PathLike,
    dataset: str,
    names: str | Sequence[str],
    suffixes: Sequence[str] = COMPRESSED_SUFFIXES,
) -> pathlib.Path | None:
    """Like :func:`find_file`, but returns None when no candidate exists."""
    names = [names] if isinstance(names, str) else names
    for path in candidate_paths(pathlib.Path(data_dir), dataset, names, suffixes):
        if path.is_file():
            return path
    return None


def find_file(
    data_dir: str | os.PathLike,
    dataset: str,
    names: str | Sequence[str],
    *,
    suffixes: Sequence[str] = COMPRESSED_SUFFIXES,
    source: str | None = None,
) -> pathlib.Path:
    """Finds a dataset file, plain or compressed, in the dataset's directory or the data directory.

    Args:
        data_dir: The data directory (see :func:`resolve_data_dir`).
        dataset: The dataset's sub-directory name, e.g. ``"ptb"``.
        names: One acceptable file name, or several, most preferred first (without compression
            suffix).
        suffixes: Acceptable compression suffixes, "" meaning the plain file.
        source: Where to obtain the file (a URL), quoted in the error message.

    Returns:
        The first existing path in the order of :func:`candidate_paths`.

    Raises:
        DataError: If none exists. The message lists every path tried and how to obtain the file.

    Example:
        >>> find_file("/data", "ptb", "ptb.train.txt")  # doctest: +SKIP
        PosixPath('/data/ptb/ptb.train.txt.xz')
    """
    names = [names] if isinstance(names, str) else list(names)
    path = locate(data_dir, dataset, names, suffixes)
    if path is None:
        data_dir = pathlib.Path(data_dir)
        tried = candidate_paths(data_dir, dataset, names, suffixes)
        raise DataError(missing_message(" or ".join(names), dataset, data_dir, tried, source))
    return path


def missing_message(
    name: str,
    dataset: str,
    data_dir: pathlib.Path,
    tried: Sequence[pathlib.Path],
    source: str | None,
) -> str:
    """Formats the error message for a file that was not found.

    Args:
        name: The file expected (or alternatives, "A or B").
        dataset: The dataset's sub-directory name.
        data_dir: The data directory searched.
        tried: Every path tried.
        source: Where to obtain the file (a URL), or None.

    Returns:
        A message naming the file, the paths tried and how to obtain it.
    """
    lines = [f"Dataset file {name} not found. Looked for:"]
    lines += [f"  {p}" for p in tried]
    if source:
        lines.append(
            f"Get it from {source} into {data_dir / dataset} (or let the loader download it: "
            "download=True), or"
        )
    lines.append(f"{HOW_TO_POINT} (searched {data_dir}).")
    return "\n".join(lines)


def decompress(raw: bytes, name: str) -> bytes:
    """Decompresses ``raw`` according to the compression suffix of ``name``.

    Args:
        raw: The bytes of the file as stored.
        name: The file's name (or path): ``.xz`` is decompressed with lzma, ``.gz`` with gzip,
            ``.zip`` by reading the member named like the file without ``.zip`` (or the only
            member); any other name is returned unchanged.

    Returns:
        The uncompressed contents.

    Raises:
        DataError: If the data is truncated or corrupt, naming the file.
    """
    suffix = pathlib.PurePath(name).suffix
    try:
        if suffix == ".xz":
            return lzma.decompress(raw)
        if suffix == ".gz":
            return gzip.decompress(raw)
        if suffix == ".zip":
            return _read_zip_member(raw, name)
    except (lzma.LZMAError, EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile) as e:
        raise DataError(
            f"{name}: the {suffix} file is truncated or corrupt ({type(e).__name__}: {e}). "
            "Delete it and obtain it again."
        ) from e
    return raw


def _read_zip_member(raw: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        wanted = pathlib.PurePath(name).stem
        matches = [m for m in members if pathlib.PurePosixPath(m).name == wanted]
        if not matches and len(members) == 1:
            matches = members
        if len(matches) != 1:
            raise DataError(
                f"{name}: expected a zip archive holding {wanted!r}; its members are {members}."
            )
        return archive.read(matches[0])


def read_bytes(path: str | os.PathLike) -> bytes:
    """Reads a whole file, decompressing ``.xz``, ``.gz`` and ``.zip`` transparently.

    Args:
        path: The file.

    Returns:
        The uncompressed contents.

    Raises:
        DataError: If the file cannot be read, or is a truncated or corrupt archive.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}).") from e
    return decompress(raw, str(path))


def sha256_hex(data: bytes) -> str:
    """Returns the SHA-256 digest of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def verify_sha256(data: bytes, expected: str, name: str | os.PathLike) -> None:
    """Checks the SHA-256 digest of a file's uncompressed contents.

    Hashing runs at about 1 GB/s, so verifying is cheap next to parsing; loaders do it by default
    and skip it with ``verify=False`` (for example for small files written by tests).

    Args:
        data: The uncompressed contents.
        expected: The expected digest, 64 hex digits.
        name: The file the data came from, for the message.

    Raises:
        DataError: On a mismatch, naming the file and both digests.
    """
    actual = sha256_hex(data)
    if actual != expected.lower():
        raise DataError(
            f"{name}: SHA-256 mismatch: expected {expected}, got {actual}. The file is corrupt, "
            "truncated or a different version; delete it and obtain it again, or pass "
            "verify=False to load it anyway."
        )


def download(url: str, dest: str | os.PathLike, sha256: str | None = None) -> pathlib.Path:
    """Downloads ``url`` to ``dest`` atomically, checking its checksum first.

    The data is streamed into a temporary file next to ``dest`` that is renamed to ``dest`` only
    once complete and verified, so an interrupted or bad download never leaves a file that a later
    load would take for good.

    Args:
        url: The URL to fetch.
        dest: Where to store the file. Its parent directories are created.
        sha256: Expected SHA-256 of the *uncompressed* contents, i.e. of what :func:`read_bytes`
            returns for ``dest`` (the file is decompressed for the check when ``dest`` ends with
            ``.xz``, ``.gz`` or ``.zip``), or None to skip the check.

    Returns:
        ``dest`` as a path.

    Raises:
        DataError: If the download fails, or the checksum does not match (then nothing is left
            behind at ``dest``).
    """
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = pathlib.Path(tmp_name)
    logging.info("Downloading %s to %s", url, dest)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, out, length=1 << 20)
            except (urllib.error.URLError, OSError) as e:
                raise DataError(
                    f"Downloading {url} to {dest} failed ({e}). Check the network, or download "
                    f"the file by hand into {dest.parent} and {HOW_TO_POINT}."
                ) from e
        if sha256 is not None:
            verify_sha256(decompress(tmp.read_bytes(), dest.name), sha256, f"{dest} (from {url})")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename.

    Args:
        path: The destination; its parent directory must exist.
        data: The contents.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    finally:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
