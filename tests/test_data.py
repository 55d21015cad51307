"""Datasets: registry, real loaders on real files (CIFAR batches, PNG folders, Debian's Fashion-MNIST)."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
import torch
from _fixtures import CIFAR10_CLASSES, class_level, write_cifar10_fixture, write_imagefolder_fixture

from ddecs_search.config import DataConfig
from ddecs_search.data import (
    InMemoryImages,
    _mnist,
    availability,
    clear_cache,
    dataset_info,
    list_datasets,
    load_splits,
    make_loader,
)
from ddecs_search.data._adapt import adapt_images, channel_plan
from ddecs_search.data._locations import fetch_or_fail
from ddecs_search.data._splits import split_indices, subset_indices
from ddecs_search.errors import ConfigError, DataError

SHAPES = [(3, 32, 32), (1, 28, 28)]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may try the network: every download attempt must fail at once."""
    monkeypatch.setenv("DDECS_OFFLINE", "1")


# --- registry -----------------------------------------------------------------------------------------------


def test_list_datasets_is_exactly_the_registered_sets() -> None:
    assert list_datasets() == ["cifar10", "cifar100", "fashion-mnist", "mnist"]


@pytest.mark.parametrize("name", list_datasets())
def test_dataset_info_is_consistent(name: str) -> None:
    info = dataset_info(name)
    assert info.name == name and info.num_classes in (10, 100) and info.channels in (1, 3)
    assert len(info.mean) == len(info.std) == info.channels and all(s > 0 for s in info.std)
    assert info.image_size in ((28, 28), (32, 32)) and info.description and info.how


def test_unknown_name_raises_config_error_listing_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_splits(DataConfig(name="imagenet", root=str(tmp_path)), (3, 32, 32))
    for valid in [*list_datasets(), "imagefolder:<path>"]:
        assert valid in str(err.value)
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'"):
        dataset_info("svhn")


def test_bad_input_shape_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        load_splits(DataConfig(name="cifar10", root=str(tmp_path)), (2, 32, 32))


# --- missing data -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, hint", [("mnist", "download"), ("cifar10", "download"), ("cifar100", "download")]
)
def test_missing_data_offline_raises_data_error_saying_how(tmp_path: Path, name: str, hint: str) -> None:
    with pytest.raises(DataError) as err:
        load_splits(DataConfig(name=name, root=str(tmp_path)), (3, 32, 32))
    message = str(err.value)
    assert str(tmp_path) in message and hint in message and "DDECS_OFFLINE" in message
    assert err.value.__cause__ is None


def test_missing_fashion_mnist_names_the_apt_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_mnist, "SYSTEM_FASHION_MNIST", tmp_path / "no-such-dir")
    with pytest.raises(DataError) as err:
        load_splits(DataConfig(name="fashion-mnist", root=str(tmp_path / "root")), (1, 28, 28))
    assert "sudo apt-get install dataset-fashion-mnist" in str(err.value)
    assert "allow torchvision to download it (needs internet)" in str(err.value)
    row = {r["name"]: r for r in availability(tmp_path / "root")}["fashion-mnist"]
    assert row["available"] is False and row["location"] is None


def test_failed_download_becomes_a_data_error_without_the_network_traceback() -> None:
    def download() -> None:
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried http://x, got:\n<urlopen error>"
        )

    with pytest.raises(
        DataError, match=r"^MNIST missing \(download failed: RuntimeError: Error downloading"
    ) as err:
        fetch_or_fail(download, allowed=True, missing="MNIST missing")
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_availability_of_an_empty_root(tmp_path: Path) -> None:
    rows = availability(tmp_path)
    assert [r["name"] for r in rows] == list_datasets()
    for row in rows:
        assert set(row) >= {"name", "available", "location", "how", "num_classes", "image_size"}
        if row["name"] != "fashion-mnist":  # the Debian package may provide it outside the root
            assert row["available"] is False and row["location"] is None and row["how"]


# --- CIFAR python format ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_fixture_loads_with_real_pixels_and_labels(tmp_path: Path, bytes_keys: bool) -> None:
    folder = write_cifar10_fixture(tmp_path, n_per_batch=20, bytes_keys=bytes_keys)
    cfg = DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.2)
    splits = load_splits(cfg, (3, 32, 32))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 20)
    assert splits.num_classes == 10 and splits.class_names == CIFAR10_CLASSES and splits.name == "cifar10"
    # The test set is test_batch, in order, normalised with CIFAR-10's own mean/std.
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    info = dataset_info("cifar10")
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    for i in (0, 7, 19):
        expected = (torch.from_numpy(batch["data"][i].reshape(3, 32, 32)).float() / 255 - mean) / std
        x, y = splits.test[i]
        assert y == batch["labels"][i] and isinstance(y, int)
        torch.testing.assert_close(x, expected)
    row = {r["name"]: r for r in availability(tmp_path)}["cifar10"]
    assert row["available"] is True and row["location"] == str(folder)


def test_cifar10_fixture_adapts_to_a_grey_28x28_backbone(tmp_path: Path) -> None:
    write_cifar10_fixture(tmp_path, n_per_batch=8)
    splits = load_splits(DataConfig(name="cifar10", root=str(tmp_path)), (1, 28, 28))
    for ds in (splits.train, splits.val, splits.test):
        x, y = ds[0]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= y < 10


def test_corrupt_cifar_batch_is_a_data_error(tmp_path: Path) -> None:
    folder = write_cifar10_fixture(tmp_path, n_per_batch=4)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="could not read CIFAR batches"):
        load_splits(DataConfig(name="cifar10", root=str(tmp_path)), (3, 32, 32))


# --- image folders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_imagefolder_with_test_folder_adapts_shapes(
    tmp_path: Path, shape: tuple[int, int, int], mode: str
) -> None:
    path = write_imagefolder_fixture(
        tmp_path, classes=3, per_class=6, size=(40, 36), test_per_class=2, mode=mode
    )
    splits = load_splits(DataConfig(name=f"imagefolder:{path}", val_fraction=0.2), shape)
    assert splits.class_names == ("class_0", "class_1", "class_2") and splits.num_classes == 3
    assert len(splits.train) + len(splits.val) == 18 and len(splits.val) == 4 and len(splits.test) == 6
    for ds in (splits.train, splits.val, splits.test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == shape and x.dtype == torch.float32
            # mean 0.5 / std 0.5: pixel level L maps to 2 L / 255 - 1 (noise ±20 and resizing blur it a bit)
            assert abs(x.mean().item() - (2 * class_level(y) / 255 - 1)) < 0.05
    info = dataset_info(f"imagefolder:{path}")
    assert info.num_classes == 3 and info.image_size is None


def test_imagefolder_test_folder_may_lack_classes_without_shifting_labels(tmp_path: Path) -> None:
    path = write_imagefolder_fixture(tmp_path, classes=3, per_class=4, test_per_class=2, test_classes=1)
    path_test_c2 = path / "test" / "class_2"
    path_test_c2.mkdir()  # an empty class folder in test/ is fine too
    splits = load_splits(DataConfig(name=f"imagefolder:{path}"), (1, 28, 28))
    labels = [splits.test[i][1] for i in range(len(splits.test))]
    assert labels == [0, 0]


def test_imagefolder_without_test_folder_carves_a_fixed_test_set(tmp_path: Path) -> None:
    path = write_imagefolder_fixture(tmp_path, classes=2, per_class=10)
    a = load_splits(DataConfig(name=f"imagefolder:{path}", split_seed=0), (3, 32, 32))
    b = load_splits(DataConfig(name=f"imagefolder:{path}", split_seed=5), (3, 32, 32))
    assert len(a.test) == 4 and len(a.train) + len(a.val) == 16
    assert a.test.indices == b.test.indices  # test does not depend on split_seed
    assert set(a.val.indices).isdisjoint(a.test.indices) and set(a.train.indices).isdisjoint(a.test.indices)
    assert a.val.indices != b.val.indices
    assert len(pickle.dumps(a.train)) > 0  # picklable for DataLoader workers started with spawn


def test_imagefolder_layout_errors_name_the_path_and_layout(tmp_path: Path) -> None:
    cases = {"missing": tmp_path / "nope", "no-train": tmp_path / "no-train", "empty": tmp_path / "empty"}
    cases["no-train"].mkdir()
    (cases["empty"] / "train" / "cat").mkdir(parents=True)
    for label, path in cases.items():
        with pytest.raises(DataError) as err:
            load_splits(DataConfig(name=f"imagefolder:{path}"), (3, 32, 32))
        assert str(path) in str(err.value) and "<path>/train/<class>/<image>" in str(err.value), label
    with pytest.raises(ConfigError):
        load_splits(DataConfig(name="imagefolder:"), (3, 32, 32))


def test_imagefolder_test_classes_unknown_to_train_are_an_error(tmp_path: Path) -> None:
    path = write_imagefolder_fixture(tmp_path, classes=2, per_class=2, test_per_class=1)
    (path / "test" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        load_splits(DataConfig(name=f"imagefolder:{path}"), (3, 32, 32))


# --- Fashion-MNIST from Debian's dataset-fashion-mnist ------------------------------------------------------

needs_debian_fashion = pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(), reason=f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)"
)


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fashion-root")


@pytest.fixture(scope="module")
def fashion(fashion_root: Path) -> dict[tuple[int, int, int], object]:
    if not DEBIAN_FASHION.is_dir():
        pytest.skip(f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)")
    cfg = DataConfig(name="fashion-mnist", root=str(fashion_root), val_fraction=0.1, split_seed=0)
    return {shape: load_splits(cfg, shape, allow_download=False) for shape in SHAPES}


@needs_debian_fashion
def test_fashion_mnist_is_staged_from_the_debian_files(fashion: dict, fashion_root: Path) -> None:
    raw = fashion_root / "FashionMNIST" / "raw"
    sizes = {name: (raw / name).stat().st_size for name in _mnist.IDX_FILES}
    assert sizes == {
        "train-images-idx3-ubyte": 16 + 60000 * 784,
        "train-labels-idx1-ubyte": 8 + 60000,
        "t10k-images-idx3-ubyte": 16 + 10000 * 784,
        "t10k-labels-idx1-ubyte": 8 + 10000,
    }
    assert all(stat.S_IMODE((raw / n).stat().st_mode) & 0o044 == 0o044 for n in _mnist.IDX_FILES)
    assert not [p for p in raw.iterdir() if p.name.endswith(".tmp")]
    row = {r["name"]: r for r in availability(fashion_root)}["fashion-mnist"]
    assert row["available"] is True and row["location"] == str(raw)


@needs_debian_fashion
@pytest.mark.parametrize("shape", SHAPES)
def test_fashion_mnist_real_split_and_shapes(fashion: dict, shape: tuple[int, int, int]) -> None:
    splits = fashion[shape]
    assert len(splits.train) + len(splits.val) == 60000 and len(splits.test) == 10000
    assert len(splits.val) == 6000 and splits.num_classes == 10 and splits.class_names[0] == "T-shirt/top"
    assert not set(splits.train.indices.tolist()) & set(splits.val.indices.tolist())
    x, y = splits.train[0]
    assert x.shape == shape and x.dtype == torch.float32 and isinstance(y, int)
    images, labels = splits.test.tensors()
    assert images.shape == (10000, *shape) and torch.bincount(labels).tolist() == [1000] * 10
    assert abs(images.mean().item()) < 0.05 and 0.85 < images.std().item() < 1.05
    assert images.min().item() > -1.0 and images.max().item() < 2.1  # (0 - .286)/.353, (1 - .286)/.353


@needs_debian_fashion
def test_fashion_mnist_split_is_deterministic_and_subsets_cut_it(fashion: dict, fashion_root: Path) -> None:
    base = fashion[(1, 28, 28)]
    cfg = DataConfig(name="fashion-mnist", root=str(fashion_root), val_fraction=0.1, split_seed=0)
    again = load_splits(cfg, (1, 28, 28), allow_download=False)  # served from the in-process cache
    assert again.train.images is base.train.images
    assert torch.equal(again.val.indices, base.val.indices)
    other = load_splits(DataConfig(name="fashion-mnist", root=str(fashion_root), split_seed=1), (1, 28, 28))
    assert not torch.equal(other.val.indices, base.val.indices)
    small_cfg = DataConfig(
        name="fashion-mnist",
        root=str(fashion_root),
        val_fraction=0.1,
        train_subset=500,
        val_subset=100,
        test_subset=200,
    )
    small = load_splits(small_cfg, (1, 28, 28))
    assert (len(small.train), len(small.val), len(small.test)) == (500, 100, 200)
    assert set(small.train.indices.tolist()) <= set(base.train.indices.tolist())
    assert set(small.val.indices.tolist()) <= set(base.val.indices.tolist())
    assert torch.equal(load_splits(small_cfg, (1, 28, 28)).train.indices, small.train.indices)
    # Grey served to a 3-channel backbone is one stored channel, expanded (same values in every channel).
    x, _ = fashion[(3, 32, 32)].val[3]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


# --- splits, tensors, adaptation, loaders -------------------------------------------------------------------


def test_split_indices_partition_and_determinism() -> None:
    kept, carved = split_indices(1000, 0.1, seed=3)
    assert len(carved) == 100 and torch.equal(
        torch.sort(torch.cat([kept, carved])).values, torch.arange(1000)
    )
    assert torch.equal(split_indices(1000, 0.1, seed=3)[1], carved)
    assert not torch.equal(split_indices(1000, 0.1, seed=4)[1], carved)
    assert len(split_indices(3, 0.01, seed=0)[1]) == 1  # never empty
    sub = subset_indices(kept, 50, seed=3, stream=1)
    assert len(sub) == 50 and set(sub.tolist()) <= set(kept.tolist())
    assert subset_indices(kept, None, 3, 1) is kept and subset_indices(kept, 10**6, 3, 1) is kept


def test_in_memory_images_batched_fetch_matches_single_fetch() -> None:
    images, labels = torch.randn(10, 1, 4, 4), torch.arange(10)
    ds = InMemoryImages(images, labels, channels=3).subset([9, 2, 5])
    assert len(ds) == 3 and ds[-1][1] == 5 and ds[0][0].shape == (3, 4, 4)
    batch = ds.__getitems__([0, 2])
    assert [y for _, y in batch] == [9, 5] and torch.equal(batch[1][0], ds[2][0])
    assert torch.equal(ds.subset([1]).targets, torch.tensor([2]))
    with pytest.raises(IndexError):
        ds[3]


def test_channel_adaptation_uses_luminance_and_repetition() -> None:
    red = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 255
    grey_plan = channel_plan(3, 1, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    out = adapt_images(red, (4, 6), grey_plan)
    assert out.shape == (2, 1, 4, 6) and torch.allclose(out, torch.full_like(out, 0.299))
    rgb_plan = channel_plan(1, 3, (0.5,), (0.25,))
    assert rgb_plan.stored == 1 and rgb_plan.served == 3
    white = torch.full((1, 1, 5, 5), 255, dtype=torch.uint8)
    assert torch.allclose(adapt_images(white, (5, 5), rgb_plan), torch.full((1, 1, 5, 5), 2.0))


def test_make_loader_is_seeded_and_device_aware() -> None:
    ds = InMemoryImages(torch.randn(64, 1, 2, 2), torch.arange(64))
    order = lambda seed: torch.cat([y for _, y in make_loader(ds, batch_size=16, shuffle=True, seed=seed)])  # noqa: E731
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    plain = make_loader(ds, batch_size=16, shuffle=False, seed=0)
    assert torch.equal(torch.cat([y for _, y in plain]), torch.arange(64)) and plain.pin_memory is False
    workers = make_loader(ds, batch_size=16, shuffle=False, seed=0, num_workers=2, device="cuda")
    assert workers.persistent_workers and workers.pin_memory and workers.num_workers == 2
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, batch_size=0, shuffle=False, seed=0)


def test_clear_cache_and_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ddecs_search.data import default_root

    monkeypatch.setenv("DDECS_DATA", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("DDECS_DATA")
    assert default_root() == Path(os.path.expanduser("~/.cache/ddecs_search/data"))
    clear_cache()


def test_numpy_seeded_fixture_is_reproducible(tmp_path: Path) -> None:
    a = write_cifar10_fixture(tmp_path / "a", n_per_batch=3)
    b = write_cifar10_fixture(tmp_path / "b", n_per_batch=3)
    assert (a / "test_batch").read_bytes() == (b / "test_batch").read_bytes()
