"""HTTPS downloads that resume, show progress and never leave an unverified file in place.

A file is streamed into `<name>.part` beside its destination, resumed with an HTTP Range
request when a `.part` is already there, checked against an expected sha256 and only then
renamed into place (atomically, `os.replace`). A checksum mismatch deletes the `.part`, so
the bad bytes are never used and the next run starts over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import requests
from tqdm.auto import tqdm

from ehr_adversarial.sources.checksums import (
    CHUNK_BYTES,
    ChecksumMismatchError,
    hash_file_into,
    is_sha256,
    parse_sha256sums,
)

logger = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download failed (HTTP error, connection lost, server misbehaved)."""


def fetch_sha256sums(url: str, timeout: float = 60.0, session: requests.Session | None = None) -> dict[str, str]:
    """Download and parse a `SHA256SUMS.txt`-style list."""
    http = session or requests
    try:
        response = http.get(url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise DownloadError(f"could not fetch the checksum list {url}: {_reason(exc)}") from exc
    return parse_sha256sums(response.text, source=url)


def download_file(
    url: str,
    dest: Path | str,
    expected_sha256: str,
    *,
    timeout: float = 60.0,
    chunk_bytes: int = CHUNK_BYTES,
    progress: bool = True,
    session: requests.Session | None = None,
) -> Path:
    """Download `url` to `dest`, resuming `dest.part` if present; verify sha256; rename into place.

    Raises DownloadError for HTTP/connection failures (a `.part` is kept so that the next
    call resumes) and ChecksumMismatchError when the bytes do not hash to `expected_sha256`
    (the `.part` is deleted and `dest` is not created).
    """
    if not expected_sha256 or not is_sha256(expected_sha256):
        raise ValueError(f"download of {url} needs the expected sha256 (64 hex digits), got {expected_sha256!r}")
    expected = expected_sha256.lower()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    http = session or requests.Session()

    offset = part.stat().st_size if part.exists() else 0
    digest = hashlib.sha256()
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with http.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if offset and response.status_code == 416:
                # The .part already holds the whole file; the checksum below decides.
                logger.info("%s: server says %s is complete, verifying", url, part)
                mode = None
            elif offset and response.status_code == 206:
                _check_content_range(response, offset, url)
                logger.info("%s: resuming at byte %d", url, offset)
                mode = "ab"
            elif response.status_code == 200:
                if offset:
                    logger.info("%s: server ignored the Range request, downloading from the start", url)
                offset, mode = 0, "wb"
            else:
                response.raise_for_status()
                raise DownloadError(f"{url}: unexpected HTTP status {response.status_code}")

            if mode == "ab" or mode is None:
                hash_file_into(digest, part, chunk_bytes=chunk_bytes)
            if mode is not None:
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length is not None else None
                with (
                    open(part, mode) as handle,
                    tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=dest.name, disable=None if progress else True, leave=False,
                    ) as bar,
                ):
                    for chunk in response.iter_content(chunk_size=chunk_bytes):
                        handle.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                    handle.flush()
                    os.fsync(handle.fileno())
                if total is not None and part.stat().st_size != total:
                    raise DownloadError(
                        f"{url}: connection ended after {part.stat().st_size} of {total} bytes{_resume_hint(part)}"
                    )
    except requests.RequestException as exc:
        raise DownloadError(f"download of {url} failed: {_reason(exc)}{_resume_hint(part)}") from exc

    actual = digest.hexdigest()
    if actual != expected:
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            dest, expected, actual, f"downloaded from {url}; the bad file was deleted, run again to re-download"
        )
    os.replace(part, dest)
    logger.info("downloaded %s (sha256 %s)", dest, actual)
    return dest


def _resume_hint(part: Path) -> str:
    """What a rerun does with the bytes received so far, when there are any."""
    if part.exists() and part.stat().st_size:
        return f"; run again to resume from {part} ({part.stat().st_size} bytes so far)"
    return ""


def _reason(exc: requests.RequestException) -> str:
    """The cause of a failed request in a few words, not urllib3's nested reprs."""
    if isinstance(exc, requests.ConnectionError):
        return "no connection to the server (offline, a proxy, or the server is down)"
    if isinstance(exc, requests.Timeout):
        return "the server did not answer in time"
    return str(exc).splitlines()[0][:200]


def _check_content_range(response: requests.Response, offset: int, url: str) -> None:
    """A 206 must continue exactly where the .part ends, or the bytes would be misplaced."""
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes (\d+)-", content_range)
    if not match or int(match.group(1)) != offset:
        raise DownloadError(f"{url}: asked for bytes from {offset}, server sent Content-Range {content_range!r}")
