"""sha256 of files and PhysioNet's SHA256SUMS lists: the one checksum code of every source."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

CHUNK_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ChecksumMismatchError(ValueError):
    """A file's sha256 is not the expected one."""

    def __init__(self, path: Path | str, expected: str, actual: str, detail: str = ""):
        self.path, self.expected, self.actual = str(path), expected, actual
        super().__init__(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}" + (f"; {detail}" if detail else "")
        )


def is_sha256(text: str) -> bool:
    """Whether `text` is a hex sha256 (64 hex digits, any letter case)."""
    return bool(_SHA256.match(text.lower()))


def hash_file_into(digest: hashlib._Hash, path: Path | str, decompress: bool = False,
                   chunk_bytes: int = CHUNK_BYTES) -> None:
    """Feed a file (or, with `decompress`, the content of a .gz file) into `digest`, in chunks."""
    opener = gzip.open if decompress and Path(path).suffix == ".gz" else open
    with opener(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)


def sha256_of(path: Path | str, decompress: bool = False) -> str:
    """Hex sha256 of a file as stored or, with `decompress`, of the content of a .gz file.

    Read errors (OSError, EOFError, zlib.error of a truncated .gz) propagate; callers name the fix."""
    digest = hashlib.sha256()
    hash_file_into(digest, path, decompress)
    return digest.hexdigest()


def verify_sha256(path: Path | str, expected: str, detail: str = "") -> str:
    """The file's sha256; raises ChecksumMismatchError (with `detail` appended) when it is not `expected`."""
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ChecksumMismatchError(path, expected.lower(), actual, detail)
    return actual


def parse_sha256sums(text: str, source: str = "SHA256SUMS") -> dict[str, str]:
    """`sha256sum` output (`<hash>  <name>` or `<hash> *<name>`) → {name: hash}.

    Blank lines and `#` comments are skipped; any other malformed line is an error that
    names `source` and the line number.
    """
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if not is_sha256(digest) or not name:
            raise ValueError(f"{source} line {number}: expected '<sha256>  <file name>', got {line!r}")
        sums[name] = digest.lower()
    return sums
