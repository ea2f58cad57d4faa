"""Fashion-MNIST loading (csl_hf.data.fashion_mnist) on tiny idx files written here: the Debian package is not
needed."""

import gzip
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np
import pytest

from csl_hf.data import fashion_mnist as fm
from csl_hf.data import load_csl_dataset, load_weak_to_strong_data
from csl_hf.errors import CSLError

from scripts import PER_CLASS, make_split, write_fashion_mnist  # noqa: F401  (tiny idx files)


@pytest.fixture
def fm_dir(tmp_path):
    folder = str(tmp_path / "fashion-mnist")
    arrays = write_fashion_mnist(folder)
    return folder, arrays


def test_idx_header_offsets_and_values(fm_dir):
    folder, arrays = fm_dir
    images = fm.read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"))
    labels = fm.read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"))
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8 and labels.shape == (40,)
    np.testing.assert_array_equal(images, arrays["train"][0])
    np.testing.assert_array_equal(labels, arrays["train"][1])
    # The headers are 16 and 8 bytes: the first pixel / label follows them directly.
    with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz"), "rb") as f:
        assert f.read()[16] == arrays["train"][0][0, 0, 0]
    with gzip.open(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        assert f.read()[8:11] == bytes([0, 1, 2])


def test_load_names_shapes_pixels(fm_dir):
    folder, arrays = fm_dir
    dd = fm.load_fashion_mnist(folder)
    assert isinstance(dd, datasets.DatasetDict) and set(dd) == {"train", "test"}
    assert len(dd["train"]) == 40 and len(dd["test"]) == 20
    for split in ("train", "test"):
        ds = dd[split]
        assert list(ds.features) == ["image", "label"]
        assert isinstance(ds.features["image"], datasets.Image)
        assert ds.features["label"].names == list(fm.FASHION_MNIST_CLASSES)
        assert ds.features["label"].names[0] == "T-shirt/top" and ds.features["label"].names[9] == "Ankle boot"
        images, labels = arrays[split]
        assert ds["label"] == labels.tolist()
        for i in (0, len(ds) - 1):
            img = ds[i]["image"]
            assert img.mode == "L" and img.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(img), images[i])  # lossless


def test_uncompressed_files_and_env_var_and_dispatch(tmp_path, monkeypatch):
    folder = str(tmp_path / "raw")
    arrays = write_fashion_mnist(folder, gz=False)
    monkeypatch.setenv(fm.ENV_DIR, folder)
    assert fm.fashion_mnist_dir() == folder
    dd = load_csl_dataset("fashion_mnist")
    assert isinstance(dd, datasets.DatasetDict) and dd["train"].info.dataset_name == "fashion_mnist"
    np.testing.assert_array_equal(np.asarray(dd["test"][3]["image"]), arrays["test"][0][3])
    test = load_csl_dataset("fashion_mnist", split="test")
    assert isinstance(test, datasets.Dataset) and len(test) == 20
    stream = load_csl_dataset("fashion_mnist", streaming=True)
    assert isinstance(stream, datasets.IterableDatasetDict) and set(stream) == {"train", "test"}
    assert set(next(iter(stream["train"]))) == {"image", "label"}
    with pytest.raises(ValueError, match="has the splits train, test"):
        load_csl_dataset("fashion_mnist", split="validation")
    shifted = load_csl_dataset("fashion_mnist_shifted", split="train")
    assert shifted.features["domain"].names == ["clean", "corrupted"]


def test_weak_to_strong_data_sees_names_and_domains(fm_dir, monkeypatch):
    # Only what does not depend on how the splits are cut (the official test split is handled by
    # load_weak_to_strong_data, not here).
    monkeypatch.setenv(fm.ENV_DIR, fm_dir[0])
    data = load_weak_to_strong_data("fashion_mnist", seed=0, teacher_size=10, test_size=10)
    assert data.class_names == list(fm.FASHION_MNIST_CLASSES) and data.domain_column is None
    data = load_weak_to_strong_data("fashion_mnist_shifted", seed=0, teacher_size=10, test_size=10)
    assert data.domain_column == "domain"


def test_missing_data_is_one_line_naming_both_ways(tmp_path, monkeypatch):
    def offline():
        raise ConnectionError("Couldn't reach the Hub\n(offline mode is enabled)")

    monkeypatch.setattr(fm, "_load_hub", offline)
    empty = str(tmp_path / "nothing")
    os.makedirs(empty)
    with pytest.raises(CSLError) as err:
        fm.load_fashion_mnist(empty)
    msg = str(err.value)
    assert "\n" not in msg
    assert fm.FASHION_MNIST_HUB_ID in msg and empty in msg and "ConnectionError" in msg
    # No advice that is already followed: the folder given is where the files go; not a word of the env var.
    assert f"put the four *-ubyte.gz files in {empty}" in msg and fm.ENV_DIR not in msg
    # Through the data loader of a run: the same line, naming the env var that points at the empty folder.
    monkeypatch.setenv(fm.ENV_DIR, empty)
    with pytest.raises(CSLError, match="^Fashion-MNIST not found: no idx files in") as err:
        load_weak_to_strong_data("fashion_mnist", seed=0)
    assert f"in ${fm.ENV_DIR} ({empty})" in str(err.value) and "point $" not in str(err.value)
    # Nothing given: the Debian package or the env var; the Hub only when offline.
    monkeypatch.delenv(fm.ENV_DIR)
    monkeypatch.setattr(fm, "_files_present", lambda folder: False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    fm._load_arrays.cache_clear()
    msg = str(pytest.raises(CSLError, fm.load_fashion_mnist).value)
    assert "apt-get install dataset-fashion-mnist" in msg and f"point ${fm.ENV_DIR}" in msg and "HF_HUB_OFFLINE" in msg
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    fm._load_arrays.cache_clear()
    assert "HF_HUB_OFFLINE" not in str(pytest.raises(CSLError, fm.load_fashion_mnist).value)
    fm._load_arrays.cache_clear()


@pytest.mark.parametrize("where", ["no_such_folder", "a_file.gz", "nested/missing/folder"])
@pytest.mark.parametrize("debian_installed", [True, False])
def test_a_path_that_is_not_a_folder_is_one_line_without_a_hub_attempt(tmp_path, monkeypatch, where,
                                                                         debian_installed):
    def hub():
        raise AssertionError("a mistyped folder must not fall back to the Hub")

    monkeypatch.setattr(fm, "_load_hub", hub)
    debian = str(tmp_path / "debian")
    if debian_installed:
        write_fashion_mnist(debian)
    monkeypatch.setattr(fm, "DEBIAN_FASHION_MNIST_DIR", debian)
    (tmp_path / "a_file.gz").write_bytes(b"")
    path = str(tmp_path / where)
    monkeypatch.setenv(fm.ENV_DIR, path)
    fm._load_arrays.cache_clear()
    with pytest.raises(CSLError) as err:
        load_weak_to_strong_data("fashion_mnist", seed=0)
    msg = str(err.value)
    assert msg.startswith(f"Fashion-MNIST: ${fm.ENV_DIR}={path} is not a folder; ") and "\n" not in msg
    # The installed copy is named only where it exists: unsetting the variable is then the whole fix.
    assert (f"unset it to read the installed Debian copy in {debian}" in msg) == debian_installed
    assert ("name a folder with the four *-ubyte.gz files" in msg) != debian_installed
    # A folder passed in Python (not the variable) says the same without naming the variable.
    monkeypatch.delenv(fm.ENV_DIR)
    fm._load_arrays.cache_clear()
    msg = str(pytest.raises(CSLError, fm.load_fashion_mnist, path).value)
    assert msg.startswith(f"Fashion-MNIST: {path} is not a folder; ") and fm.ENV_DIR not in msg
    fm._load_arrays.cache_clear()


@pytest.mark.parametrize("removed", [("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), ("train-labels-idx1-ubyte",),
                                     ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")])
def test_a_folder_with_some_of_the_files_names_the_missing_ones(tmp_path, monkeypatch, removed):
    def hub():
        raise AssertionError("a folder with some of the files must not fall back to the Hub")

    monkeypatch.setattr(fm, "_load_hub", hub)
    folder = str(tmp_path / "partial")
    write_fashion_mnist(folder)
    for stem in removed:
        os.remove(os.path.join(folder, stem + ".gz"))
    fm._load_arrays.cache_clear()
    with pytest.raises(CSLError) as err:
        fm.load_fashion_mnist(folder)
    msg = str(err.value)
    assert msg.startswith(f"Fashion-MNIST in {folder} is incomplete: ") and "\n" not in msg
    assert all(stem + ".gz" in msg for stem in removed)
    kept = [s for pair in fm._FILES.values() for s in pair if s not in removed]
    assert not any(stem in msg for stem in kept)
    fm._load_arrays.cache_clear()


def test_malformed_files_are_one_line_errors(tmp_path):
    folder = str(tmp_path / "bad")
    write_fashion_mnist(folder)
    path = os.path.join(folder, "t10k-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(data[:-5])
    shape = r"t10k-images-idx3-ubyte.gz: 15675 bytes of data for shape \(20, 28, 28\) \(truncated or corrupt\)"
    with pytest.raises(CSLError, match=shape):
        fm.load_fashion_mnist(folder)
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x09\x03" + data[4:])
    with pytest.raises(CSLError, match="not an idx file"):
        fm.load_fashion_mnist(folder)


def test_hub_fallback_renames_labels(tmp_path, monkeypatch):
    from PIL import Image

    hub_names = ["T - shirt / top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
    arrays = {split: make_split(split) for split in ("train", "test")}

    def fake_load_dataset(name, *args, **kwargs):
        assert name == fm.FASHION_MNIST_HUB_ID
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=hub_names)})
        return datasets.DatasetDict({
            split: datasets.Dataset.from_dict(
                {"image": [Image.fromarray(a, mode="L") for a in images], "label": labels.tolist()}, features=features)
            for split, (images, labels) in arrays.items()})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (tmp_path / "no-files").mkdir()
    dd = fm.load_fashion_mnist(str(tmp_path / "no-files"))
    assert dd["train"].features["label"].names == list(fm.FASHION_MNIST_CLASSES)
    assert dd["test"]["label"] == arrays["test"][1].tolist()
    np.testing.assert_array_equal(np.asarray(dd["train"][5]["image"]), arrays["train"][0][5])


def test_shifted_domains_are_disjoint_balanced_and_deterministic(fm_dir):
    folder, arrays = fm_dir
    dd = fm.load_fashion_mnist_shifted(folder)
    for split in ("train", "test"):
        ds = dd[split]
        assert list(ds.features) == ["image", "label", "domain"]
        assert ds.features["domain"].names == list(fm.SHIFTED_DOMAINS)
        images, labels = arrays[split]
        assert ds["label"] == labels.tolist()
        domain = np.asarray(ds["domain"])
        # Half of every class in each domain; one row per source image (disjoint domains).
        for c in range(10):
            assert (domain[labels == c] == 1).sum() == PER_CLASS[split] // 2
        domain2, corruption = fm.shifted_assignment(labels, split=split)
        np.testing.assert_array_equal(domain, domain2)
        assert ((corruption >= 0) == (domain == 1)).all()
        counts = np.bincount(corruption[corruption >= 0], minlength=4)
        assert counts.max() - counts.min() <= 1
        pixels = np.stack([np.asarray(im) for im in ds["image"]])
        np.testing.assert_array_equal(pixels[domain == 0], images[domain == 0])  # clean rows are the originals
        assert all((pixels[i] != images[i]).any() for i in np.flatnonzero(domain == 1))
    # Same files, severity and seed: the same bytes; another seed: another assignment.
    fm._shifted_png.cache_clear()
    again = fm.load_fashion_mnist_shifted(folder)
    assert again["train"].cast_column("image", datasets.Image(decode=False))["image"] == \
        dd["train"].cast_column("image", datasets.Image(decode=False))["image"]
    other = fm.load_fashion_mnist_shifted(folder, seed=1)
    assert other["train"]["domain"] != dd["train"]["domain"]
    with pytest.raises(ValueError, match="severity"):
        fm.load_fashion_mnist_shifted(folder, severity=6)


def test_corruptions():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    images = np.stack([((yy * 9 + xx * 4 + k * 11) % 200 + 30) for k in range(6)]).astype(np.uint8)
    x = images.astype(float)
    contrast = fm.corrupt(images, "contrast", 3).astype(float)
    assert contrast.std(axis=(1, 2)).mean() < 0.5 * x.std(axis=(1, 2)).mean()
    assert np.allclose(contrast.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1)
    blur = fm.corrupt(images, "gaussian_blur", 5).astype(float)
    assert np.abs(np.diff(blur, axis=2)).mean() < np.abs(np.diff(x, axis=2)).mean()
    noise = fm.corrupt(images, "gaussian_noise", 3, np.random.default_rng(1))
    assert 10 < np.abs(noise.astype(float) - x).mean() < 30  # std 0.08 * 255 ~ 20
    np.testing.assert_array_equal(noise, fm.corrupt(images, "gaussian_noise", 3, np.random.default_rng(1)))
    fog = fm.corrupt(images, "fog", 3, rng)
    assert fog.dtype == np.uint8 and fog.shape == images.shape and (fog != images).any()
    for name in fm.CORRUPTIONS:  # severity grows the change
        mild = np.abs(fm.corrupt(images, name, 1, np.random.default_rng(2)).astype(float) - x).mean()
        strong = np.abs(fm.corrupt(images, name, 5, np.random.default_rng(2)).astype(float) - x).mean()
        assert strong > mild, name
    with pytest.raises(ValueError, match="unknown corruption"):
        fm.corrupt(images, "snow")


def test_natural_groups():
    groups = fm.natural_groups()
    assert len(groups) == 10 and min(groups) == 0 and len(set(groups)) == 5
    assert groups[0] == groups[2] == groups[4] == groups[6]  # tops
    assert groups[5] == groups[7] == groups[9]  # footwear
