"""sources/download.py and sources/checksums.py against a local HTTP server (127.0.0.1, ephemeral
port) serving the real PhysioNet files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ehr_adversarial.sources import checksums, download
from tests.conftest import FileServer

ARCHIVE = "set-a.tar.gz"


def test_full_download_verifies_and_renames(file_server: FileServer, physionet2012_dir: Path, tmp_path: Path):
    expected = checksums.sha256_of(physionet2012_dir / ARCHIVE)
    dest = download.download_file(file_server.url + ARCHIVE, tmp_path / "raw" / ARCHIVE, expected, progress=False)
    assert dest.read_bytes() == (physionet2012_dir / ARCHIVE).read_bytes()
    assert not dest.with_name(ARCHIVE + ".part").exists()
    assert [(r["range"], r["status"]) for r in file_server.requests] == [(None, 200)]


def test_resume_of_truncated_part_downloads_only_the_rest(
    file_server: FileServer, physionet2012_dir: Path, tmp_path: Path
):
    original = (physionet2012_dir / ARCHIVE).read_bytes()
    dest = tmp_path / ARCHIVE
    (tmp_path / (ARCHIVE + ".part")).write_bytes(original[:1_000_000])
    download.download_file(file_server.url + ARCHIVE, dest, hashlib.sha256(original).hexdigest(), progress=False)
    assert dest.read_bytes() == original
    assert file_server.requests == [
        {"name": ARCHIVE, "range": "bytes=1000000-", "status": 206, "body_bytes": len(original) - 1_000_000}
    ]


def test_dropped_connection_keeps_part_and_next_call_resumes(
    file_server: FileServer, physionet2012_dir: Path, tmp_path: Path
):
    original = (physionet2012_dir / ARCHIVE).read_bytes()
    expected = hashlib.sha256(original).hexdigest()
    dest, part = tmp_path / ARCHIVE, tmp_path / (ARCHIVE + ".part")
    file_server.cut_next_after = 2_500_000
    with pytest.raises(download.DownloadError, match="resume"):
        download.download_file(file_server.url + ARCHIVE, dest, expected, progress=False)
    assert not dest.exists()
    kept = part.read_bytes()
    assert 0 < len(kept) <= 2_500_000 and original.startswith(kept)
    download.download_file(file_server.url + ARCHIVE, dest, expected, progress=False)
    assert dest.read_bytes() == original
    assert file_server.requests[-1]["range"] == f"bytes={len(kept)}-"


def test_server_ignoring_range_restarts_from_scratch(file_server: FileServer, physionet2012_dir: Path, tmp_path: Path):
    original = (physionet2012_dir / ARCHIVE).read_bytes()
    (tmp_path / (ARCHIVE + ".part")).write_bytes(b"garbage that must not survive")
    file_server.honour_range = False
    dest = download.download_file(file_server.url + ARCHIVE, tmp_path / ARCHIVE, hashlib.sha256(original).hexdigest(), progress=False)
    assert dest.read_bytes() == original
    assert file_server.requests[0]["status"] == 200


def test_complete_part_is_verified_without_downloading_again(
    file_server: FileServer, physionet2012_dir: Path, tmp_path: Path
):
    original = (physionet2012_dir / "Outcomes-a.txt").read_bytes()
    (tmp_path / "Outcomes-a.txt.part").write_bytes(original)
    dest = download.download_file(file_server.url + "Outcomes-a.txt", tmp_path / "Outcomes-a.txt",
                         hashlib.sha256(original).hexdigest(), progress=False)
    assert dest.read_bytes() == original
    assert [r["status"] for r in file_server.requests] == [416]


def test_checksum_mismatch_deletes_the_file_and_names_both_hashes(
    file_server: FileServer, physionet2012_dir: Path, tmp_path: Path
):
    wrong = "0" * 64
    actual = checksums.sha256_of(physionet2012_dir / ARCHIVE)
    dest = tmp_path / ARCHIVE
    with pytest.raises(checksums.ChecksumMismatchError) as caught:
        download.download_file(file_server.url + ARCHIVE, dest, wrong, progress=False)
    message = str(caught.value)
    assert ARCHIVE in message and wrong in message and actual in message
    assert not dest.exists() and not (tmp_path / (ARCHIVE + ".part")).exists()


def test_corrupt_part_fails_checksum_and_is_removed(file_server: FileServer, physionet2012_dir: Path, tmp_path: Path):
    original = (physionet2012_dir / ARCHIVE).read_bytes()
    part = tmp_path / (ARCHIVE + ".part")
    part.write_bytes(b"X" * 1000)  # wrong bytes; the server appends the rest from byte 1000
    with pytest.raises(checksums.ChecksumMismatchError):
        download.download_file(file_server.url + ARCHIVE, tmp_path / ARCHIVE, hashlib.sha256(original).hexdigest(), progress=False)
    assert not part.exists() and not (tmp_path / ARCHIVE).exists()


def test_missing_file_on_server_is_a_download_error_naming_the_url(file_server: FileServer, tmp_path: Path):
    with pytest.raises(download.DownloadError, match=re.escape(file_server.url + "set-z.tar.gz")):
        download.download_file(file_server.url + "set-z.tar.gz", tmp_path / "set-z.tar.gz", "a" * 64, progress=False)
    assert not (tmp_path / "set-z.tar.gz").exists()


def test_expected_hash_is_required(tmp_path: Path):
    with pytest.raises(ValueError, match="expected sha256"):
        download.download_file("http://127.0.0.1:9/x", tmp_path / "x", "", progress=False)


def test_fetch_sha256sums_reads_the_served_list(file_server: FileServer, physionet2012_dir: Path):
    sums = download.fetch_sha256sums(file_server.url + "SHA256SUMS.txt")
    assert sums["Outcomes-a.txt"] == "2613ea60ccda29f87571a7d6b09ad130858a8ccd66325bd073365925026883c2"
    assert sums[ARCHIVE] == checksums.sha256_of(physionet2012_dir / ARCHIVE)


def test_parse_sha256sums_formats_and_errors():
    digest = "ab" * 32
    assert checksums.parse_sha256sums(f"# comment\n{digest}  a.txt\n\n{digest.upper()} *b/c.txt\n") == {
        "a.txt": digest, "b/c.txt": digest,
    }
    with pytest.raises(ValueError, match="SUMS line 2"):
        checksums.parse_sha256sums(f"{digest}  a.txt\nnot-a-hash  b.txt\n", source="SUMS")
