"""TensorBundleDataset: round trip of every array kind, versioning, atomic writes, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from ehr_adversarial.datasets.tensors import TensorBundleDataset


def _bundle(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "X": rng.random((5, 48, 3), dtype=np.float32),
        "mask": rng.random((5, 48, 3)) < 0.3,
        "delta": rng.random((5, 48, 3), dtype=np.float32),
        "static": rng.random((5, 4), dtype=np.float32),
        "y": np.array([0, 1, 0, 0, 1], dtype=np.int64),
        "record_id": np.arange(132539, 132544, dtype=np.int64),
        "group": np.array(["a", "a", "b", "b", "c"]),
    }


def _assert_same(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(loaded) == sorted(expected)
    for name, array in expected.items():
        assert loaded[name].dtype == array.dtype, name
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)


@pytest.mark.parametrize("compress_level", [0, 1, 9])
def test_round_trip_keeps_values_and_dtypes(tmp_path: Path, compress_level: int) -> None:
    path = tmp_path / "bundle.npz"
    dataset = TensorBundleDataset(filepath=str(path), compress_level=compress_level)
    bundle = _bundle()
    dataset.save(bundle)
    _assert_same(dataset.load(), bundle)
    assert dataset.exists()
    # A plain .npz that numpy itself reads without pickling.
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["X"], bundle["X"])


def test_higher_compress_level_gives_a_smaller_file(tmp_path: Path) -> None:
    bundle = {"X": np.repeat(np.arange(1000, dtype=np.float32), 100)}
    sizes = []
    for level in (0, 1, 9):
        path = tmp_path / f"level{level}.npz"
        TensorBundleDataset(filepath=str(path), compress_level=level).save(bundle)
        sizes.append(path.stat().st_size)
    assert sizes[0] > sizes[1] >= sizes[2]
    with pytest.raises(DatasetError, match="compress_level"):
        TensorBundleDataset(filepath=str(tmp_path / "x.npz"), compress_level=10)


def test_object_string_array_is_stored_as_fixed_width_strings(tmp_path: Path) -> None:
    dataset = TensorBundleDataset(filepath=str(tmp_path / "bundle.npz"))
    dataset.save({"group": np.array(["a", "bb", "c"], dtype=object), "y": np.arange(3)})
    loaded = dataset.load()
    assert loaded["group"].dtype.kind == "U"
    assert loaded["group"].tolist() == ["a", "bb", "c"]


def test_refuses_arrays_that_would_need_pickle(tmp_path: Path) -> None:
    path = tmp_path / "bundle.npz"
    dataset = TensorBundleDataset(filepath=str(path))
    with pytest.raises(DatasetError, match="non-string items"):
        dataset.save({"bad": np.array([{"a": 1}, None], dtype=object)})
    with pytest.raises(DatasetError, match="non-empty dict"):
        dataset.save({})
    assert not path.exists()


def test_versioned_saves_never_overwrite_and_load_latest_or_named(tmp_path: Path) -> None:
    path = str(tmp_path / "bundle.npz")
    first, second = _bundle(1), _bundle(2)
    TensorBundleDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(first)
    TensorBundleDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(second)

    versions = sorted(p.name for p in (tmp_path / "bundle.npz").iterdir())
    assert versions == ["2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"]
    _assert_same(TensorBundleDataset(filepath=path, version=Version(None, None)).load(), second)
    _assert_same(
        TensorBundleDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None)).load(), first
    )
    with pytest.raises(DatasetError):
        TensorBundleDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(second)
    _assert_same(
        TensorBundleDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None)).load(), first
    )


def test_failed_write_leaves_neither_target_nor_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = TensorBundleDataset(filepath=str(tmp_path / "out" / "bundle.npz"))

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(dataset._fs, "mv", crash)
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(_bundle())
    leftovers = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert leftovers == []
    assert not dataset.exists()


def test_failed_write_keeps_the_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = TensorBundleDataset(filepath=str(tmp_path / "bundle.npz"))
    original = _bundle(1)
    dataset.save(original)

    def crash(*args, **kwargs):
        raise OSError("killed mid-rename (simulated)")

    monkeypatch.setattr(dataset._fs, "mv", crash)
    with pytest.raises(DatasetError):
        dataset.save(_bundle(2))
    _assert_same(dataset.load(), original)
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.npz"]


def test_catalog_builds_it_from_yaml_style_config(tmp_path: Path) -> None:
    catalog = DataCatalog.from_config(
        {
            "features.full.model_input_test": {
                "type": "ehr_adversarial.datasets.tensors.TensorBundleDataset",
                "filepath": str(tmp_path / "test.npz"),
                "versioned": True,
            }
        }
    )
    bundle = _bundle()
    catalog.save("features.full.model_input_test", bundle)
    _assert_same(catalog.load("features.full.model_input_test"), bundle)
    assert len(list((tmp_path / "test.npz").iterdir())) == 1


def test_save_and_load_stream_instead_of_holding_the_archive_in_memory(tmp_path: Path) -> None:
    """A 64 MiB bundle is written member by member into the file and read back from it: the peak
    of traced allocations stays well below the size of the archive on top of the array."""
    import tracemalloc

    size = 64 * 2**20
    dataset = TensorBundleDataset(filepath=str(tmp_path / "big.npz"), compress_level=0)
    data = {"X": np.arange(size // 8, dtype=np.float64)}
    tracemalloc.start()
    try:
        dataset.save(data)
        _, save_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loaded = dataset.load()
        _, load_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(loaded["X"], data["X"])
    assert save_peak < size / 2, f"saving peaked at {save_peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB array"
    assert load_peak < 1.5 * size, f"loading peaked at {load_peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB array"
