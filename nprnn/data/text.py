"""Character-level corpora (Penn Treebank, text8): loaders, checks and the vocabulary; imports
nprnn.data.common.

A corpus is a :class:`CharCorpus`: the vocabulary and the train / valid / test splits as 1-D
int32 arrays of symbol ids. Batches of a split are cut by :mod:`nprnn.data.batching`.

May import from nprnn: ``nprnn.data.common`` only (host-side NumPy, no JAX).

References:
    T. Mikolov, I. Sutskever, A. Deoras, H.-S. Le, S. Kombrink, J. Cernocky. Subword language
    modeling with neural networks (2012): the character-level Penn Treebank splits.
    M. Mahoney. About the test data, http://mattmahoney.net/dc/textdata.html: text8.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tarfile

import numpy as np

from nprnn.data import common
from nprnn.data.common import DataError

SPLITS = ("train", "valid", "test")

EOL = "\n"
"""The end-of-line symbol of the PTB character vocabulary (one token per line end)."""

PTB_WORD_SEP = "_"
"""The symbol that separates words in the PTB character files."""

PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
"""Mikolov's archive; its ``simple-examples/data/`` holds every ``ptb.*.txt`` file below."""

PTB_SHA256 = {
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    "ptb.char.train.txt": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    "ptb.char.valid.txt": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "ptb.char.test.txt": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
}
"""SHA-256 of the uncompressed PTB files (Mikolov splits)."""

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"
"""SHA-256 of the uncompressed ``text8`` file (the member of ``text8.zip``)."""

TEXT8_LENGTH = 100_000_000
TEXT8_VOCAB = (" ", *"abcdefghijklmnopqrstuvwxyz")
"""The 27 text8 symbols: id 0 is the space, ids 1-26 the letters a-z."""


@dataclasses.dataclass(frozen=True, eq=False)
class CharCorpus:
    """A character-level corpus: vocabulary and splits as arrays of symbol ids.

    Attributes:
        vocab: The symbols, ``vocab[id]``; ``V = len(vocab)``.
        train: Training split, int32 ``[N_train]`` ids in ``[0, V)``, read-only.
        valid: Validation split, int32 ``[N_valid]``, read-only.
        test: Test split, int32 ``[N_test]``, read-only.
        word_sep: The symbol that separates words in this corpus (``"_"`` for PTB, ``" "`` for
            text8). :meth:`encode` reads a space as this symbol and :meth:`decode` writes it
            back as a space, so prompts and samples are ordinary text.

    Example:
        >>> corpus = CharCorpus(vocab=("\\n", "_", "a", "b"), train=np.array([2, 1, 3, 0]),
        ...                     valid=np.array([2]), test=np.array([3]), word_sep="_")
        >>> corpus.encode("ab a\\n").tolist()
        [2, 3, 1, 2, 0]
        >>> corpus.decode([2, 3, 1, 2, 0])
        'ab a\\n'
    """

    vocab: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    word_sep: str = " "

    def __post_init__(self) -> None:
        for split in SPLITS:
            ids = np.asarray(getattr(self, split), dtype=np.int32)
            ids.setflags(write=False)
            object.__setattr__(self, split, ids)

    def encode(self, text: str) -> np.ndarray:
        """Turns text into ids: each character is one symbol, a space the word separator.

        For PTB a prompt is typed as ordinary text: spaces between words (read as ``"_"``) and
        ``"\\n"`` for the end of a line (the end-of-line token). Typing ``"_"`` itself also works.

        Args:
            text: The text.

        Returns:
            int32 ``[len(text)]`` ids.

        Raises:
            ValueError: If a character is not in the vocabulary (the message lists the vocabulary).
        """
        index = {symbol: i for i, symbol in enumerate(self.vocab)}
        ids = []
        for ch in text:
            symbol = self.word_sep if ch == " " else ch
            if symbol not in index:
                raise ValueError(
                    f"Character {ch!r} is not in this corpus's vocabulary {''.join(self.vocab)!r}."
                )
            ids.append(index[symbol])
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Turns ids back into text, writing the word separator as a space.

        Args:
            ids: Symbol ids, any shape (flattened).

        Returns:
            The text; the end-of-line token comes out as ``"\\n"``.
        """
        text = "".join(self.vocab[i] for i in np.asarray(ids).reshape(-1))
        return text.replace(self.word_sep, " ")


def _lookup_table(vocab: tuple[str, ...]) -> np.ndarray:
    """A byte -> id table (-1 for bytes outside the vocabulary) for single-byte symbols."""
    table = np.full(256, -1, dtype=np.int32)
    for i, symbol in enumerate(vocab):
        table[ord(symbol)] = i
    return table


def _to_ids(codes: np.ndarray, vocab: tuple[str, ...], name: str | os.PathLike) -> np.ndarray:
    """Maps byte codes to ids, raising DataError on the first symbol outside the vocabulary."""
    ids = _lookup_table(vocab)[codes]
    bad = np.flatnonzero(ids < 0)
    if bad.size:
        raise DataError(
            f"{name}: symbol {chr(codes[bad[0]])!r} at position {bad[0]} is not in the "
            f"vocabulary {''.join(vocab)!r}."
        )
    return ids


def tokenize_ptb_chars(data: bytes, name: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Splits the contents of a PTB character file into its tokens.

    The file is a sequence of one-character tokens, each followed by a single space; ``_``
    separates words and ``\\n`` ends a line (so a line ends with ``" \\n "``).

    Args:
        data: The file's uncompressed contents.
        name: The file's name, for error messages.

    Returns:
        uint8 ``[N]``, the byte value of each token (end-of-line tokens included).

    Raises:
        DataError: If the data is not in that format.
    """
    b = np.frombuffer(data, dtype=np.uint8)
    wrong = np.flatnonzero(b[1::2] != ord(" ")) * 2 + 1
    wrong = np.union1d(wrong, np.flatnonzero(b[0::2] == ord(" ")) * 2)
    if b.size % 2 or wrong.size:
        offset = int(wrong[0]) if wrong.size else b.size
        raise DataError(
            f"{name}: not a PTB character file (one-character tokens, each followed by a single "
            f"space): unexpected byte at offset {offset}."
        )
    return b[0::2]


def ptb_chars_from_words(data: bytes) -> bytes:
    """Derives a PTB character file from the word-level file of the same split.

    The rule (it reproduces Mikolov's published ``ptb.char.*.txt`` byte for byte): for each line,
    the tokens are the characters of the line's words joined by ``_``, then an end-of-line token
    ``\\n``; every token is followed by one space.

    Args:
        data: Contents of ``ptb.{train,valid,test}.txt``.

    Returns:
        The contents of the corresponding ``ptb.char.*.txt``.

    Example:
        >>> ptb_chars_from_words(b" the cat \\n sat \\n")
        b't h e _ c a t \\n s a t \\n '
    """
    lines = data.decode("latin-1").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for line in lines:
        chars = PTB_WORD_SEP.join(line.split())
        out.append(" ".join(chars) + " \n " if chars else "\n ")
    return "".join(out).encode("latin-1")


def _read_ptb_split(data_dir: pathlib.Path, split: str, verify: bool) -> tuple[bytes, str]:
    """Returns the contents of ``ptb.char.{split}.txt``, read or derived, and a name for it."""
    char_name, word_name = f"ptb.char.{split}.txt", f"ptb.{split}.txt"
    path = common.locate(data_dir, "ptb", char_name)
    if path is not None:
        data = common.read_bytes(path)
        if verify:
            common.verify_sha256(data, PTB_SHA256[char_name], path)
        return data, str(path)
    path = common.locate(data_dir, "ptb", word_name)
    if path is None:
        tried = common.candidate_paths(data_dir, "ptb", [char_name, word_name])
        raise DataError(
            common.missing_message(
                f"{char_name} or {word_name}",
                "ptb",
                data_dir,
                tried,
                f"{PTB_URL} (the files in its simple-examples/data/)",
            )
        )
    words = common.read_bytes(path)
    name = f"{char_name} derived from {path}"
    if verify:
        common.verify_sha256(words, PTB_SHA256[word_name], path)
    data = ptb_chars_from_words(words)
    if verify:
        common.verify_sha256(data, PTB_SHA256[char_name], name)
    return data, name


def _download_ptb(dest_dir: pathlib.Path, verify: bool) -> None:
    """Downloads Mikolov's archive and extracts the six PTB files into ``dest_dir``."""
    try:
        archive = common.download(PTB_URL, dest_dir / "simple-examples.tgz")
    except DataError as e:
        raise DataError(
            f"{e} The loader reads the extracted files, not the archive: put "
            f"ptb.char.{{train,valid,test}}.txt (or the word-level ptb.{{train,valid,test}}.txt, "
            f"from simple-examples/data/ in {PTB_URL}; plain, .xz or .gz) into {dest_dir}."
        ) from e
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            for name, digest in PTB_SHA256.items():
                member = members.get(f"simple-examples/data/{name}")
                if member is None:
                    raise DataError(f"{archive}: the archive has no simple-examples/data/{name}.")
                data = tar.extractfile(member).read()
                if verify:
                    common.verify_sha256(data, digest, f"{archive}:{member.name}")
                common.write_atomic(dest_dir / name, data)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot extract the PTB files ({e}).") from e
    finally:
        archive.unlink(missing_ok=True)


def load_ptb_chars(
    data_dir: str | os.PathLike | None = None, *, download: bool = False, verify: bool = True
) -> CharCorpus:
    """Loads character-level Penn Treebank (Mikolov et al. 2012 splits).

    For each split, reads ``ptb.char.{split}.txt`` if present, else derives it from the
    word-level ``ptb.{split}.txt`` with :func:`ptb_chars_from_words`. Files are looked for in
    ``DATA_DIR/ptb/`` and ``DATA_DIR/``, plain or ``.xz`` / ``.gz`` compressed.

    The vocabulary is the sorted set of symbols of the training split: 50 symbols, id 0 the
    end-of-line token ``"\\n"`` (one token per line end, so the model predicts line ends too),
    then ``#``, ``$``, ... and ``_`` (the word separator) among them. Real-data counts (end-of-line
    tokens excluded): train 4,975,414, valid 389,672, test 438,662 characters; the splits hold
    those plus one end-of-line id per line (42,068 / 3,370 / 3,761 lines).

    Args:
        data_dir: Data directory (see :func:`~nprnn.data.common.resolve_data_dir`).
        download: If a split's files are missing, download Mikolov's ``simple-examples.tgz``
            (from ``PTB_URL``) and extract the PTB files into ``DATA_DIR/ptb/``.
        verify: Check the SHA-256 of every file read (and of derived character files).

    Returns:
        The corpus, with ``word_sep="_"``.

    Raises:
        DataError: If a split is missing (the message lists the paths tried), a file is corrupt,
            fails verification or is not in the PTB character format, or valid/test hold a symbol
            absent from train.

    Example:
        >>> corpus = load_ptb_chars()  # doctest: +SKIP
        >>> len(corpus.vocab), corpus.decode(corpus.train[:12])  # doctest: +SKIP
        (50, 'aer banknote')
    """
    data_dir = common.resolve_data_dir(data_dir)
    if download and any(
        common.locate(data_dir, "ptb", f"ptb.char.{s}.txt") is None
        and common.locate(data_dir, "ptb", f"ptb.{s}.txt") is None
        for s in SPLITS
    ):
        _download_ptb(data_dir / "ptb", verify)
    codes, names = {}, {}
    for split in SPLITS:
        data, names[split] = _read_ptb_split(data_dir, split, verify)
        codes[split] = tokenize_ptb_chars(data, names[split])
    vocab = tuple(chr(c) for c in np.unique(codes["train"]))
    ids = {
        split: _to_ids(codes[split], vocab, f"{names[split]} (vocabulary of the train split)")
        for split in SPLITS
    }
    return CharCorpus(vocab=vocab, word_sep=PTB_WORD_SEP, **ids)


def load_text8(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    expected_length: int = TEXT8_LENGTH,
) -> CharCorpus:
    """Loads text8: the first 10^8 characters of a cleaned English Wikipedia dump.

    Reads ``text8`` (or ``text8.zip`` with member ``text8``, or ``text8.xz`` / ``text8.gz``) from
    ``DATA_DIR/text8/`` or ``DATA_DIR/``. The file must hold exactly ``expected_length``
    characters, all lowercase ``a-z`` or space. The 27 symbols are :data:`TEXT8_VOCAB` (space is
    id 0, also the word separator). Splits are the usual first 90% / next 5% / last 5%, i.e.
    90M / 5M / 5M characters.

    Args:
        data_dir: Data directory (see :func:`~nprnn.data.common.resolve_data_dir`).
        download: If the file is missing, download ``TEXT8_URL`` (31 MB) to
            ``DATA_DIR/text8/text8.zip``.
        verify: Check the SHA-256 of the uncompressed file against the published one
            (:data:`TEXT8_SHA256`). Only the real file passes: use ``verify=False`` together with a
            small ``expected_length``.
        expected_length: Required number of characters; 10^8 for the real file. Tests use small
            files in text8's format; the splits stay proportional (90% / 5% / rest).

    Returns:
        The corpus, with ``word_sep=" "``.

    Raises:
        DataError: If the file is missing, truncated or corrupt, of the wrong length, holds a
            character other than ``a-z`` and space, or fails verification.
    """
    data_dir = common.resolve_data_dir(data_dir)
    suffixes = ("", ".zip", ".xz", ".gz")
    try:
        path = common.find_file(data_dir, "text8", "text8", suffixes=suffixes, source=TEXT8_URL)
    except DataError:
        if not download:
            raise
        path = common.download(
            TEXT8_URL, data_dir / "text8" / "text8.zip", TEXT8_SHA256 if verify else None
        )
    data = common.read_bytes(path)
    codes = np.frombuffer(data, dtype=np.uint8)
    if codes.size != expected_length:
        raise DataError(
            f"{path}: text8 must hold exactly {expected_length:,} characters, found "
            f"{codes.size:,} (truncated, or not text8). Obtain it again from {TEXT8_URL}."
        )
    ids = _to_ids(codes, TEXT8_VOCAB, f"{path} (text8 allows only a-z and space)")
    if verify:
        common.verify_sha256(data, TEXT8_SHA256, path)
    n_train = expected_length * 90 // 100
    n_valid = expected_length * 5 // 100
    return CharCorpus(
        vocab=TEXT8_VOCAB,
        train=ids[:n_train],
        valid=ids[n_train : n_train + n_valid],
        test=ids[n_train + n_valid :],
        word_sep=" ",
    )
