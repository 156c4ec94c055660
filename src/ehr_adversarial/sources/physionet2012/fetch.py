"""Find PhysioNet 2012 files in place or download them (checksum-verified, resumable)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ehr_adversarial.sources.checksums import (
    sha256_of,
    verify_sha256,
)
from ehr_adversarial.sources.download import DownloadError, download_file, fetch_sha256sums
from ehr_adversarial.sources.physionet2012.formats import RECORD_FILE

logger = logging.getLogger(__name__)


def fetch_physionet2012(ingestion: dict[str, Any]) -> dict[str, Any]:
    """Find each configured set's records and outcomes in raw_dir, downloading what is missing.

    This node's job is I/O: it looks at and writes into `raw_dir` (a path in parameters),
    because the raw files are inputs the catalog cannot describe before they exist.
    Returns a manifest: per set, the file used, its size, sha256 and how it was verified.
    """
    raw_dir = Path(ingestion["raw_dir"])
    settings = ingestion.get("download", {})
    pinned = {name: digest.lower() for name, digest in (ingestion.get("pinned_sha256") or {}).items()}
    set_names = _set_names(ingestion)
    fetcher = _Fetcher(raw_dir, settings, pinned, set_names)
    sets: dict[str, Any] = {}
    for set_name in set_names:
        sets[set_name] = {
            "records": fetcher.records(set_name),
            "outcomes": fetcher.plain_file(f"Outcomes-{set_name}.txt", required=True),
            "record_checksums": fetcher.plain_file(f"SHA256SUMS-set-{set_name}.txt", required=False),
        }
    return {"source": "physionet2012", "raw_dir": str(raw_dir), "base_url": settings.get("base_url"), "sets": sets}


class _Fetcher:
    """Locates or downloads the raw files of one raw_dir; fetches PhysioNet's checksum list once."""

    def __init__(self, raw_dir: Path, settings: dict[str, Any], pinned: dict[str, str], set_names: list[str]):
        self.raw_dir, self.settings, self.pinned, self.set_names = raw_dir, settings, pinned, set_names
        self.base_url = str(settings.get("base_url", "")).rstrip("/") + "/"
        self._server_sums: dict[str, str] | None = None

    def records(self, set_name: str) -> dict[str, Any]:
        folder, archive = self.raw_dir / f"set-{set_name}", self.raw_dir / f"set-{set_name}.tar.gz"
        if folder.is_dir():
            n_files = sum(1 for path in folder.iterdir() if RECORD_FILE.search(path.name))
            return {"name": folder.name, "path": str(folder), "kind": "folder", "files": n_files,
                    "verified_against": None, "downloaded": False}
        if archive.is_file():
            # The archive's own hash is recorded, not checked: repacked copies differ from
            # PhysioNet's bytes; the records inside are checked against SHA256SUMS-set-<x>.txt.
            return self._entry(archive, "archive", verified_against=None, downloaded=False)
        self._require_download(archive, also=folder)
        return self._download(archive, "archive")

    def plain_file(self, name: str, required: bool) -> dict[str, Any] | None:
        path = self.raw_dir / name
        if path.is_file():
            verified = None
            if name in self.pinned:
                _verify_local(path, self.pinned[name])
                verified = "pinned_sha256"
            return self._entry(path, "file", verified_against=verified, downloaded=False)
        if not required:
            return None
        self._require_download(path)
        return self._download(path, "file")

    def _require_download(self, path: Path, also: Path | None = None) -> None:
        if self.settings.get("enabled", False):
            return
        alternative = f" (or an unpacked {also}/ folder)" if also is not None else ""
        raise FileNotFoundError(
            f"{path}{alternative} not found and ingestion.physionet2012.download.enabled is false. "
            f"Download it from {self.base_url}{path.name} (PhysioNet, open access) into {self.raw_dir}, "
            "or set download.enabled: true."
        )

    def _download(self, path: Path, kind: str) -> dict[str, Any]:
        name = path.name
        if name in self.pinned:
            expected, verified = self.pinned[name], "pinned_sha256"
        else:
            expected, verified = self.server_sums().get(name), "server SHA256SUMS"
            if expected is None:
                raise ValueError(
                    f"no sha256 for {name}: neither ingestion.physionet2012.pinned_sha256 nor "
                    f"{self.base_url}{self.settings.get('sha256sums', 'SHA256SUMS.txt')} lists it; pin one in "
                    "conf/base/parameters_ingestion.yml"
                )
        logger.info("downloading %s%s into %s", self.base_url, name, self.raw_dir)
        try:
            download_file(
                self.base_url + name, path, expected,
                timeout=float(self.settings.get("timeout_s", 60)),
                progress=bool(self.settings.get("progress", True)),
            )
        except DownloadError as exc:
            raise DownloadError(self.offline_help(exc)) from exc
        return self._entry(path, kind, verified_against=verified, downloaded=True)

    def missing(self) -> list[str]:
        """The files of the configured sets that raw_dir lacks (a set's records: archive or folder)."""
        missing = []
        for set_name in self.set_names:
            if not (self.raw_dir / f"set-{set_name}").is_dir() and not (self.raw_dir / f"set-{set_name}.tar.gz").is_file():
                missing.append(f"set-{set_name}.tar.gz (or its unpacked folder set-{set_name}/)")
            if not (self.raw_dir / f"Outcomes-{set_name}.txt").is_file():
                missing.append(f"Outcomes-{set_name}.txt")
        return missing

    def offline_help(self, exc: Exception) -> str:
        """What to do when PhysioNet cannot be reached: which files, where from, where to."""
        files = "\n".join(f"  - {name}" for name in self.missing())
        return (f"{exc}\n"
                f"PhysioNet 2012 is needed in {self.raw_dir}, which lacks:\n{files}\n"
                f"Download them from {self.base_url} (open access) into that folder, or point the project at a "
                "folder that has them: export EHR_PHYSIONET2012_DIR=/path/to/physionet2012")

    def server_sums(self) -> dict[str, str]:
        if self._server_sums is None:
            try:
                self._server_sums = fetch_sha256sums(
                    self.base_url + self.settings.get("sha256sums", "SHA256SUMS.txt"),
                    timeout=float(self.settings.get("timeout_s", 60)),
                )
            except DownloadError as exc:
                raise DownloadError(self.offline_help(exc)) from exc
        return self._server_sums

    @staticmethod
    def _entry(path: Path, kind: str, verified_against: str | None, downloaded: bool) -> dict[str, Any]:
        return {"name": path.name, "path": str(path), "kind": kind, "bytes": path.stat().st_size,
                "sha256": sha256_of(path), "verified_against": verified_against, "downloaded": downloaded}


def _verify_local(path: Path, expected: str) -> None:
    verify_sha256(
        path, expected,
        "the file is not used; delete it so that the run downloads a good copy, or fix "
        "ingestion.physionet2012.pinned_sha256",
    )


def _set_names(ingestion: dict[str, Any]) -> list[str]:
    sets = [str(name).strip().lower() for name in ingestion.get("sets") or []]
    if not sets or any(not re.fullmatch(r"[a-z]", name) for name in sets):
        raise ValueError(f"ingestion.physionet2012.sets must list set letters such as [a, b], got {ingestion.get('sets')!r}")
    return sets
