"""Loading every dataset format through build_data, and the batches a DataBundle serves."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import data.cifar
import data.idx
from data import DatasetNotFound, build_data, dataset_info
from data.augment import crop_flip, draw_crop_flip
from data.info import DATASETS
from data.memory import PADDING, InMemoryBundle, Splits
from data.rng import AUGMENT, epoch_generator, epoch_permutation
from tests.fake_cifar import write_fake_cifar

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_fake_split(folder: Path, files: list[str], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """What was written, read back the plain way, to compare the loader against."""
    entries = []
    for file in files:
        with open(folder / file, "rb") as f:
            entries.append(pickle.load(f, encoding="bytes"))
    images = np.concatenate([e[b"data"] for e in entries]).reshape(-1, 3, 32, 32)
    return images, np.concatenate([np.asarray(e[label_key]) for e in entries])


def concat(batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def unnormalise(x: torch.Tensor, name: str) -> torch.Tensor:
    info = dataset_info(name)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (x * std + mean) * 255


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar10")
    write_fake_cifar(root, "cifar10", n_train=250, n_test=60, seed=1)
    return root


# ---- CIFAR ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, files, label_key",
    [
        ("cifar10", ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]), b"labels"),
        ("cifar100", (["train"], ["test"]), b"fine_labels"),
    ],
)
def test_fake_cifar_round_trips_exactly(tmp_path, name, files, label_key):
    folder = write_fake_cifar(tmp_path, name, n_train=230, n_test=70, seed=2)
    bundle = build_data(name, tmp_path, batch_size=32)
    info = dataset_info(name)
    assert (bundle.num_train, bundle.num_test) == (230, 70)
    assert (bundle.num_classes, bundle.in_channels) == (info.num_classes, 3)
    assert bundle.info is info

    for split_files, batches in ((files[0], bundle.eval_train_batches()), (files[1], bundle.test_batches())):
        images, labels = read_fake_split(folder, split_files, label_key)
        x, y = concat(batches)
        assert x.dtype == torch.float32 and x.shape == (len(labels), 3, 32, 32)
        assert y.dtype == torch.int64
        assert torch.equal(y, torch.from_numpy(labels).long())
        assert torch.allclose(unnormalise(x, name), torch.from_numpy(images).float(), atol=1e-3)


def test_root_may_be_the_batch_folder_itself(tmp_path):
    folder = write_fake_cifar(tmp_path, "cifar10", n_train=40, n_test=10)
    bundle = build_data("cifar10", folder, batch_size=8)
    assert (bundle.num_train, bundle.num_test) == (40, 10)


def test_torchvision_reads_the_fake_files_as_we_do(cifar10_root, monkeypatch):
    """The fake is in torchvision's exact format: its own CIFAR10 class (checksums aside) agrees with us."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    theirs = tv_cifar.CIFAR10(str(cifar10_root), train=True)
    ours = data.cifar.load_cifar("cifar10", cifar10_root)
    assert torch.equal(ours.train_x, torch.from_numpy(theirs.data).permute(0, 3, 1, 2))
    assert ours.train_y.tolist() == theirs.targets


def test_normalised_fake_cifar_has_zero_mean_and_order_one_spread(cifar10_root):
    x, _ = concat(build_data("cifar10", cifar10_root, batch_size=64).eval_train_batches())
    per_channel_mean = x.mean(dim=(0, 2, 3))
    assert per_channel_mean.abs().max() < 0.05
    assert 0.3 < x.std().item() < 1.5


def test_fake_cifar_is_learnable_by_a_nearest_class_mean_classifier(cifar10_root):
    bundle = build_data("cifar10", cifar10_root, batch_size=64)
    x, y = concat(bundle.eval_train_batches())
    means = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)
    test_x, test_y = concat(bundle.test_batches())
    predicted = torch.cdist(test_x.flatten(1), means).argmin(1)
    assert (predicted == test_y).float().mean() > 0.5  # chance is 0.1


def test_download_is_asked_for_only_when_files_are_missing(tmp_path, monkeypatch):
    calls = []

    def fake_download(name: str, root: Path) -> None:
        calls.append(name)
        write_fake_cifar(root, name, n_train=300, n_test=100)

    monkeypatch.setattr(data.cifar, "download_cifar", fake_download)
    assert build_data("cifar100", tmp_path, batch_size=50, download=True).num_train == 300
    assert build_data("cifar100", tmp_path, batch_size=50, download=True).num_train == 300
    assert calls == ["cifar100"]


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    def offline(name: str, root: Path) -> None:
        raise OSError("Network is unreachable\n(errno 101)")

    monkeypatch.setattr(data.cifar, "download_cifar", offline)
    with pytest.raises(DatasetNotFound) as caught:
        build_data("cifar10", tmp_path, batch_size=8, download=True)
    message = str(caught.value)
    assert "\n" not in message
    assert "download failed: OSError: Network is unreachable" in message
    assert isinstance(caught.value.__cause__, OSError)


# ---- missing data --------------------------------------------------------------------------------------


def test_missing_cifar_names_every_folder_searched_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFound) as caught:
        build_data("cifar10", tmp_path / "nowhere", batch_size=8)
    error = caught.value
    message = str(error)
    assert isinstance(error, FileNotFoundError)
    assert "\n" not in message
    assert "'cifar10'" in message
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert str(tmp_path / "nowhere") in message
    assert dataset_info("cifar10").how_to_get in message
    assert str(pickle.loads(pickle.dumps(error))) == message


def test_incomplete_cifar_folder_is_missing(tmp_path):
    folder = write_fake_cifar(tmp_path, "cifar10", n_train=50, n_test=10)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFound):
        build_data("cifar10", tmp_path, batch_size=8)


def test_missing_fashion_mnist_lists_its_three_places(tmp_path, monkeypatch):
    monkeypatch.setattr(data.idx, "SYSTEM_DIR", tmp_path / "system")
    with pytest.raises(DatasetNotFound) as caught:
        build_data("fashion-mnist", tmp_path / "root", batch_size=8)
    message = str(caught.value)
    for path in (tmp_path / "root", tmp_path / "root" / "FashionMNIST" / "raw", tmp_path / "system"):
        assert str(path) in message
    assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message


@pytest.mark.parametrize("name", ["svhn", "imagenet"])
def test_missing_svhn_and_imagenet(tmp_path, name):
    with pytest.raises(DatasetNotFound) as caught:
        build_data(name, tmp_path, batch_size=8)
    message = str(caught.value)
    assert str(tmp_path) in message and dataset_info(name).how_to_get in message and "\n" not in message


def test_every_hint_is_one_line():
    assert all("\n" not in info.how_to_get for info in DATASETS.values())


# ---- Fashion-MNIST -------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_fake_fashion(folder: Path, n_train: int, n_test: int, gz: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz, layout", [(False, "."), (True, "FashionMNIST/raw")])
def test_fashion_mnist_idx_files_plain_or_gzipped(tmp_path, gz, layout):
    arrays = write_fake_fashion(tmp_path / layout, n_train=30, n_test=12, gz=gz)
    bundle = build_data("fashion-mnist", tmp_path, batch_size=8)
    x, y = concat(bundle.eval_train_batches())
    assert x.shape == (30, 1, 28, 28)
    assert torch.equal(y, torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long())
    images = torch.from_numpy(arrays["train-images-idx3-ubyte"]).float().unsqueeze(1)
    assert torch.allclose(unnormalise(x, "fashion-mnist"), images, atol=1e-3)
    _, test_y = concat(bundle.test_batches())
    assert torch.equal(test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())


def test_idx_parser_checks_magic_and_size():
    good = idx_bytes(np.arange(12).reshape(3, 4))
    assert np.array_equal(data.idx.parse_idx(good), np.arange(12).reshape(3, 4))
    with pytest.raises(ValueError, match="not an IDX file"):
        data.idx.parse_idx(b"\x1f\x8b" + good[2:])  # a gzip header where the magic should be
    with pytest.raises(ValueError, match="implies"):
        data.idx.parse_idx(good[:-1])


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    if not FASHION_DIR.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    return build_data("fashion-mnist", tmp_path_factory.mktemp("empty"), batch_size=1000)


def test_real_fashion_mnist_from_the_debian_package(fashion):
    assert (fashion.num_train, fashion.num_test) == (60000, 10000)
    assert (fashion.num_classes, fashion.in_channels) == (10, 1)
    assert fashion.batches_per_epoch == 60
    total, total_sq, count, labels = 0.0, 0.0, 0, []
    for x, y in fashion.eval_train_batches():
        assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32
        total, total_sq, count = total + x.sum().item(), total_sq + x.square().sum().item(), count + x.numel()
        labels.append(y)
    assert torch.equal(torch.bincount(torch.cat(labels)), torch.full((10,), 6000))
    mean = total / count
    std = (total_sq / count - mean**2) ** 0.5
    assert abs(mean) < 0.01 and abs(std - 1) < 0.01  # the mean/std in info are its own statistics
    test_x, test_y = concat(fashion.test_batches())
    assert test_x.shape == (10000, 1, 28, 28) and torch.equal(torch.bincount(test_y), torch.full((10,), 1000))


def test_fashion_mnist_is_never_augmented(fashion):
    with_flag = next(fashion.train_batches(0, seed=0, augment=True))
    without = next(fashion.train_batches(0, seed=0, augment=False))
    assert torch.equal(with_flag[0], without[0]) and torch.equal(with_flag[1], without[1])


# ---- SVHN and ImageNet ---------------------------------------------------------------------------------


def test_svhn_mat_files(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", 20), ("test", 7)):
        images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # MATLAB order (H, W, C, N)
        labels = rng.integers(1, 11, (n, 1))  # 10 stands for the digit 0
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": images, "y": labels})
        written[split] = (images, labels)
    bundle = build_data("svhn", tmp_path, batch_size=4)
    assert (bundle.num_train, bundle.num_test) == (20, 7)
    x, y = concat(bundle.eval_train_batches())
    images, labels = written["train"]
    assert torch.equal(y, torch.from_numpy(labels[:, 0] % 10).long())
    expected = torch.from_numpy(images).permute(3, 2, 0, 1).float()
    assert torch.allclose(unnormalise(x, "svhn"), expected, atol=1e-3)


@pytest.fixture
def imagenet_root(tmp_path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("val", 2)):
        for cls in ("n01", "n02"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    return tmp_path


def test_imagenet_image_folders_stream_normalised_224_crops(imagenet_root):
    bundle = build_data("imagenet", imagenet_root, batch_size=4)
    assert (bundle.num_train, bundle.num_test, bundle.batches_per_epoch) == (6, 4, 1)
    batches = list(bundle.train_batches(0, seed=0))
    assert len(batches) == 1
    x, y = batches[0]
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.int64
    again = next(bundle.train_batches(0, seed=0))
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])  # seeded per (seed, epoch, sample)
    assert not torch.equal(x, next(bundle.train_batches(1, seed=0))[0])
    test_y = torch.cat([y for _, y in bundle.test_batches()])
    assert test_y.tolist() == [0, 0, 1, 1]
    assert [len(y) for _, y in bundle.eval_train_batches()] == [4, 2]
    assert [len(y) for _, y in bundle.eval_train_batches(max_batches=1)] == [4]


def test_imagenet_augmentation_does_not_depend_on_the_number_of_workers(imagenet_root):
    serial = build_data("imagenet", imagenet_root, batch_size=2, num_workers=0)
    parallel = build_data("imagenet", imagenet_root, batch_size=2, num_workers=1)
    pairs = zip(serial.train_batches(2, seed=3), parallel.train_batches(2, seed=3), strict=True)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)


# ---- batches -------------------------------------------------------------------------------------------


def indexed_bundle(
    n_train: int, batch_size: int, name: str = "cifar10"
) -> tuple[InMemoryBundle, torch.Tensor]:
    """A bundle whose label is each example's index, so batches reveal which examples they hold."""
    info = dataset_info(name)
    images = torch.randint(0, 256, (n_train, info.in_channels, 32, 32), dtype=torch.uint8)
    labels = torch.arange(n_train)
    splits = Splits(images, labels, images[:5], labels[:5])
    return InMemoryBundle(info, splits, batch_size, torch.device("cpu")), images


@pytest.mark.parametrize("n_train, batch_size", [(100, 10), (101, 10), (109, 10), (64, 64), (65, 7)])
def test_drop_last_and_full_batches(n_train, batch_size):
    bundle, _ = indexed_bundle(n_train, batch_size)
    batches = list(bundle.train_batches(0, seed=0))
    assert len(batches) == bundle.batches_per_epoch == n_train // batch_size
    assert all(len(y) == batch_size for _, y in batches)
    seen = torch.cat([y for _, y in batches])
    assert len(set(seen.tolist())) == len(seen)  # each example at most once
    assert torch.equal(seen, epoch_permutation(n_train, 0, 0)[: len(seen)])


def test_eval_batches_keep_the_last_partial_batch_in_order():
    bundle, _ = indexed_bundle(23, 10)
    assert [y.tolist() for _, y in bundle.eval_train_batches()] == [
        list(range(10)),
        list(range(10, 20)),
        [20, 21, 22],
    ]
    assert [len(y) for _, y in bundle.eval_train_batches(max_batches=2)] == [10, 10]
    assert [len(y) for _, y in bundle.eval_train_batches(max_batches=9)] == [10, 10, 3]
    assert [y.tolist() for _, y in bundle.test_batches()] == [list(range(5))]


def test_training_batches_are_the_shuffled_examples_cropped_and_flipped():
    bundle, images = indexed_bundle(64, 16)
    params = draw_crop_flip(64, PADDING, epoch_generator(5, 2, AUGMENT))
    for b, (x, y) in enumerate(bundle.train_batches(2, seed=5)):
        expected = crop_flip(images[y], params[b * 16 : (b + 1) * 16], PADDING).float()
        assert torch.allclose(unnormalise(x, "cifar10"), expected, atol=1e-3)


def test_augmentation_and_shuffle_depend_only_on_seed_and_epoch():
    bundle, _ = indexed_bundle(96, 32)

    def epoch(e: int, seed: int = 0, augment: bool = True):
        return list(bundle.train_batches(e, seed, augment))

    fresh = epoch(3)
    for e in range(3):  # what ran before must not matter: that is what makes resume exact
        epoch(e)
    torch.manual_seed(999)
    resumed = epoch(3)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(fresh, resumed, strict=True)
    )
    assert not torch.equal(fresh[0][1], epoch(4)[0][1])
    assert not torch.equal(fresh[0][1], epoch(3, seed=1)[0][1])
    unaugmented = epoch(3, augment=False)
    assert all(
        torch.equal(a[1], b[1]) for a, b in zip(fresh, unaugmented, strict=True)
    )  # same shuffle either way
    assert not torch.equal(fresh[0][0], unaugmented[0][0])


def test_subsets_take_the_first_examples(cifar10_root):
    full = build_data("cifar10", cifar10_root, batch_size=10)
    small = build_data("cifar10", cifar10_root, batch_size=10, train_subset=30, test_subset=7)
    assert (small.num_train, small.num_test, small.batches_per_epoch) == (30, 7, 3)
    full_x, full_y = concat(full.eval_train_batches(max_batches=3))
    small_x, small_y = concat(small.eval_train_batches())
    assert torch.equal(full_x, small_x) and torch.equal(full_y, small_y)


def test_bad_arguments(cifar10_root):
    with pytest.raises(ValueError, match="larger than"):
        build_data("cifar10", cifar10_root, batch_size=251)
    with pytest.raises(ValueError, match="train_subset"):
        build_data("cifar10", cifar10_root, batch_size=8, train_subset=0)
    with pytest.raises(KeyError, match="mnist"):
        build_data("mnist", cifar10_root, batch_size=8)


# ---- flips and class-sorted image folders (issue 10) ----------------------------------------------------


def unflipped(x: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """``x`` (a whole epoch, in training order) cropped as the epoch's draw says, with no flip at all."""
    params = draw_crop_flip(x.shape[0], PADDING, epoch_generator(seed, epoch, AUGMENT))
    return crop_flip(x, type(params)(params.top, params.left, torch.zeros_like(params.flip)), PADDING)


@pytest.mark.parametrize("name, flips", [("svhn", False), ("cifar10", True)])
def test_svhn_digits_are_cropped_but_never_mirrored(name, flips):
    assert dataset_info(name).hflip is flips
    bundle, images = indexed_bundle(64, 16, name)
    x, y = concat(bundle.train_batches(1, seed=3))
    expected = unflipped(images[y], seed=3, epoch=1).float()
    same = torch.isclose(unnormalise(x, name), expected, atol=1e-3).flatten(1).all(dim=1)
    # SVHN: every image is exactly its crop. CIFAR-10 (the control): about half are mirrored, so differ.
    assert bool(same.all()) is not flips
    if flips:
        assert 16 < int((~same).sum()) < 48


def test_imagenet_training_transform_has_a_flip_only_where_the_dataset_does():
    from torchvision import transforms

    from data.imagenet import train_transform

    def has_flip(t) -> bool:
        return any(isinstance(s, transforms.RandomHorizontalFlip) for s in t.transforms)

    assert has_flip(train_transform(224)) and not has_flip(train_transform(224, flip=False))


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory) -> Path:
    """An ImageFolder as ImageNet's: 40 class folders of 10 tiny images each, listed sorted by class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 10), ("val", 3)):
        for c in range(40):
            (root / split / f"n{c:03d}").mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    root / split / f"n{c:03d}" / f"{i}.png"
                )
    return root


def folder_bundle(root: Path, **kwargs):
    import dataclasses

    from data.imagenet import ImageNetBundle

    info = dataclasses.replace(dataset_info("imagenet"), image_size=8)  # tiny crops: the labels are the point
    return ImageNetBundle(info, root, batch_size=16, device=torch.device("cpu"), **kwargs)


def test_matching_and_bn_reset_batches_of_an_image_folder_cover_nearly_all_classes(sorted_folder):
    bundle = folder_bundle(sorted_folder)
    # 5 batches of 16 = 80 images: the first 80 files of the folder are 8 classes; a seeded shuffle reaches
    # about 40 * (1 - (39/40)^80) = 35 of the 40.
    labels = torch.cat([y for _, y in bundle.eval_train_batches(5)])
    assert len(labels) == 80 and len(set(labels.tolist())) >= 32
    again = torch.cat([y for _, y in folder_bundle(sorted_folder).eval_train_batches(5)])
    assert torch.equal(labels, again)  # a fixed order: the same batches in every process
    everything = torch.cat([y for _, y in bundle.eval_train_batches()])
    assert sorted(everything.tolist()) == sorted(c for c in range(40) for _ in range(10))


def test_image_folder_subsets_are_seeded_random_draws(sorted_folder):
    small = folder_bundle(sorted_folder, train_subset=80, test_subset=40)
    assert (small.num_train, small.num_test) == (80, 40)
    train_classes = {label for _, label in small._train_samples}
    test_classes = {label for _, label in small._test_samples}
    assert len(train_classes) >= 32 and len(test_classes) >= 20  # the first 80 / 40 files: 8 / 14 classes
    same = folder_bundle(sorted_folder, train_subset=80, test_subset=40)
    assert small._train_samples == same._train_samples and small._test_samples == same._test_samples
    assert len(set(small._train_samples)) == 80
