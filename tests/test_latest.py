"""Finding the newest version of a versioned dataset (ehr_adversarial.reporting.latest.newest_version)."""

from __future__ import annotations

import pytest

from ehr_adversarial.reporting.latest import newest_version


def test_the_newest_complete_version_is_found_and_a_plain_file_is_itself(tmp_path):
    folder = tmp_path / "metrics.json"
    for version in ("2026-12-01T10.00.00.000Z", "2026-12-02T10.00.00.000Z"):
        (folder / version).mkdir(parents=True)
        (folder / version / "metrics.json").write_text(version)
    (folder / "2026-12-03T10.00.00.000Z").mkdir()  # a run that saved nothing here
    assert newest_version(folder).read_text() == "2026-12-02T10.00.00.000Z"
    plain = tmp_path / "plain.csv"
    plain.write_text("x")
    assert newest_version(plain) == plain


def test_a_dataset_without_versions_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="scores.parquet"):
        newest_version(tmp_path / "scores.parquet")
    (tmp_path / "empty.parquet").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.parquet"):
        newest_version(tmp_path / "empty.parquet")
