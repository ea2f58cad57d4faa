"""Tests for csl_hf.data: bundled sets, image folders, splits, robust image decoding. Fast, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gzip
import io
import pickle
import time

import datasets
import numpy as np
import pytest
from PIL import Image

from csl_hf.data import (
    BUNDLED_DATASETS,
    check_image,
    class_names,
    decode_image,
    detect_layout,
    infer_columns,
    load_animal_mnist,
    load_csl_dataset,
    load_digits_domains,
    load_image_folder,
    make_weak_to_strong_splits,
    to_rgb,
)
from csl_hf.data import animal_mnist as animal_mnist_module
from csl_hf.data.splits import cap

ANIMALS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


@pytest.fixture(scope="module")
def animals():
    return load_animal_mnist()


@pytest.fixture(scope="module")
def digits():
    return load_digits_domains()


def _labels(ds, col="label"):
    return np.asarray(ds.select_columns([col]).with_format("numpy")[col])


# --------------------------------------------------------------------------- bundled datasets


def test_animal_mnist_contents_and_speed():
    animal_mnist_module._load_arrays.cache_clear()
    t0 = time.perf_counter()
    ds = load_animal_mnist()
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"load_animal_mnist took {elapsed:.2f}s"
    assert len(ds) == 10_000
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["label"], datasets.ClassLabel)
    assert ds.features["label"].names == ANIMALS
    assert np.bincount(_labels(ds), minlength=10).tolist() == [1000] * 10
    img = ds[0]["image"]
    assert img.mode == "L" and img.size == (28, 28)
    arr = np.asarray(ds[4321]["image"])
    assert arr.dtype == np.uint8 and 0 < arr.mean() < 255  # a silhouette, not blank


def test_animal_mnist_pixels_match_package_files(animals):
    """The PNG round trip is lossless: pixels equal the package's arrays."""
    root = animal_mnist_module.animal_mnist_dir()
    with gzip.open(os.path.join(root, "animal_data_version_3.gz"), "rb") as f:
        raw = animal_mnist_module.load_numpy_pickle(f)
    for i in (0, 999, 5000, 9999):
        np.testing.assert_array_equal(np.asarray(animals[i]["image"]), raw[i])


def test_numpy_only_unpickler_refuses_other_globals():
    evil = pickle.dumps(os.getcwd)  # a global function reference, not an array
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        animal_mnist_module.load_numpy_pickle(io.BytesIO(evil))
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(animal_mnist_module.load_numpy_pickle(io.BytesIO(pickle.dumps(arr))), arr)


def test_digits_domains_contents(digits):
    assert len(digits) == 5000 + 1797
    assert digits.features["label"].names == [str(i) for i in range(10)]
    assert digits.features["domain"].names == ["mnist", "sklearn_digits"]
    domains = _labels(digits, "domain")
    assert np.bincount(domains).tolist() == [5000, 1797]
    assert set(_labels(digits).tolist()) == set(range(10))
    first, last = digits[0], digits[len(digits) - 1]
    assert first["domain"] == 0 and first["image"].mode == "L" and first["image"].size == (28, 28)
    assert last["domain"] == 1 and last["image"].mode == "L" and last["image"].size == (8, 8)
    # sklearn digits are rescaled from 0..16 to 0..255
    sk = np.stack([np.asarray(digits[i]["image"]) for i in range(5000, 5100)])
    assert sk.dtype == np.uint8 and sk.max() == 255
    from sklearn.datasets import load_digits

    ref = load_digits()
    np.testing.assert_array_equal(sk[0], np.round(ref.images[0] * 255 / 16).astype(np.uint8))
    assert last["label"] == int(ref.target[-1])


def test_load_csl_dataset_dispatch(tmp_path, animals):
    assert BUNDLED_DATASETS == ("animal_mnist", "digits_domains", "fashion_mnist", "fashion_mnist_shifted")
    ds = load_csl_dataset("animal_mnist")
    assert isinstance(ds, datasets.Dataset) and len(ds) == len(animals)
    stream = load_csl_dataset("digits_domains", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    ex = next(iter(stream))
    assert set(ex) == {"image", "label", "domain"} and ex["image"].size == (28, 28)
    with pytest.raises(ValueError, match="single split"):
        load_csl_dataset("animal_mnist", split="test")
    with pytest.raises(ValueError, match="does not exist"):
        load_csl_dataset(str(tmp_path / "missing" / "folder"))


def test_load_csl_dataset_hub_offline_is_one_line_value_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError) as err:
        load_csl_dataset("some-user/no-such-dataset")
    msg = str(err.value)
    assert "\n" not in msg
    assert "some-user/no-such-dataset" in msg and "animal_mnist" in msg and "image folder" in msg


def test_infer_columns_and_class_names(animals, digits):
    assert infer_columns(animals) == ("image", "label", None)
    assert infer_columns(digits) == ("image", "label", "domain")
    assert class_names(animals, "label") == ANIMALS
    other = datasets.Dataset.from_dict(
        {"img": [b"x", b"y"], "fine_label": [0, 3], "coarse_label": [0, 1]},
    )
    assert infer_columns(other) == ("img", "fine_label", None)
    assert class_names(other, "fine_label") == ["0", "1", "2", "3"]
    renamed = animals.rename_column("label", "animal").select(range(3))
    assert infer_columns(renamed) == ("image", "animal", None)  # found through its ClassLabel feature
    with pytest.raises(ValueError, match="no label column"):
        infer_columns(animals.remove_columns("label").select(range(3)))
    with pytest.raises(ValueError, match="no image column"):
        infer_columns(datasets.Dataset.from_dict({"x": [1], "label": [0]}))


# --------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def indexed(animals):
    return animals.add_column("idx", list(range(len(animals))))


def _idx(split):
    return set(_labels(split, "idx").tolist())


def test_splits_sizes_disjoint_and_stratified(indexed):
    dd = make_weak_to_strong_splits(indexed, seed=0, teacher_size=200, test_size=0.2, train_size=3000)
    assert list(dd) == ["teacher", "train", "test"]
    assert {k: len(v) for k, v in dd.items()} == {"teacher": 200, "train": 3000, "test": 2000}
    t, tr, te = _idx(dd["teacher"]), _idx(dd["train"]), _idx(dd["test"])
    assert len(t) == 200 and len(tr) == 3000 and len(te) == 2000
    assert not (t & tr) and not (t & te) and not (tr & te)
    # balanced data → exactly balanced splits
    assert np.bincount(_labels(dd["teacher"]), minlength=10).tolist() == [20] * 10
    assert np.bincount(_labels(dd["train"]), minlength=10).tolist() == [300] * 10
    assert np.bincount(_labels(dd["test"]), minlength=10).tolist() == [200] * 10
    # train_size=None takes the rest
    rest = make_weak_to_strong_splits(indexed, seed=0, teacher_size=100, test_size=100)
    assert len(rest["train"]) == 10_000 - 200


def test_splits_deterministic_per_seed(indexed):
    a = make_weak_to_strong_splits(indexed, seed=7, teacher_size=100, test_size=100, train_size=500)
    b = make_weak_to_strong_splits(indexed, seed=7, teacher_size=100, test_size=100, train_size=500)
    c = make_weak_to_strong_splits(indexed, seed=8, teacher_size=100, test_size=100, train_size=500)
    for name in ("teacher", "train", "test"):
        assert _idx(a[name]) == _idx(b[name])
    assert _idx(a["teacher"]) != _idx(c["teacher"])


def test_splits_stratify_imbalanced_and_by_domain(digits):
    # imbalanced labels: proportions are kept within one example per class
    labels = np.array([0] * 900 + [1] * 100)
    ds = datasets.Dataset.from_dict({"label": labels.tolist(), "idx": list(range(1000))})
    dd = make_weak_to_strong_splits(ds, seed=1, teacher_size=100, test_size=200)
    assert np.bincount(_labels(dd["teacher"])).tolist() == [90, 10]
    assert np.bincount(_labels(dd["test"])).tolist() == [180, 20]
    # stratify on the label x domain combination
    dd = make_weak_to_strong_splits(digits, seed=0, teacher_size=0.1, test_size=0.1, stratify_by=("label", "domain"))
    share = np.mean(_labels(dd["test"], "domain") == 1)
    assert abs(share - 1797 / 6797) < 0.01


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(teacher_size=6000, test_size=5000), "teacher=6000 \\+ test=5000 \\+ at least 1 to train on = 11001 "
                                                  "examples but the dataset has only 10000"),
        (dict(teacher_size=9000, test_size=1000), "teacher=9000 \\+ test=1000 \\+ at least 1 to train on = 10001"),
        (dict(teacher_size=100, test_size=100, train_size=9801), "teacher=100 \\+ test=100 \\+ train=9801 = 10001 "
                                                                 "examples but the dataset has only 10000"),
        (dict(teacher_size=1.5, test_size=100), "must be in \\(0, 1\\)"),
        (dict(teacher_size=0, test_size=100), "at least 1"),
        (dict(teacher_size="10", test_size=100), "must be an int"),
    ],
)
def test_splits_bad_sizes(indexed, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        make_weak_to_strong_splits(indexed, seed=0, **kwargs)
    assert "\n" not in str(err.value)


def test_cap(animals):
    assert cap(animals, None, seed=0) is animals
    assert cap(animals, 10**6, seed=0) is animals
    small = cap(animals, 50, seed=3)
    assert len(small) == 50
    assert _labels(small).tolist() == _labels(cap(animals, 50, seed=3)).tolist()
    assert len(list(cap(animals.to_iterable_dataset(), 5, seed=0))) == 5
    with pytest.raises(ValueError):
        cap(animals, 0, seed=0)


# --------------------------------------------------------------------------- image folders


def _png(path, mode, size=(6, 5), value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGBA":
        arr = np.zeros((size[1], size[0], 4), np.uint8)
        arr[..., 0] = 255  # red ...
        arr[:, : size[0] // 2, 3] = 255  # ... opaque on the left half, fully transparent on the right
        Image.fromarray(arr, "RGBA").save(path)
    elif mode == "L":
        Image.fromarray(np.full((size[1], size[0]), value, np.uint8), "L").save(path)
    else:
        Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8), "RGB").save(path)


@pytest.fixture()
def class_folder(tmp_path):
    root = tmp_path / "classes"
    _png(root / "cat" / "a.png", "L", value=10)
    _png(root / "cat" / "b.png", "RGB", value=20)
    _png(root / "dog" / "c.png", "RGBA")
    _png(root / "dog" / "d.png", "L", value=40)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture()
def domain_folder(tmp_path):
    root = tmp_path / "domains"
    _png(root / "photo" / "cat" / "1.png", "RGB", value=1)
    _png(root / "photo" / "dog" / "2.png", "RGB", value=2)
    _png(root / "sketch" / "cat" / "3.png", "L", value=3)
    _png(root / "sketch" / "dog" / "4.png", "L", value=4)
    _png(root / "sketch" / "emu" / "5.png", "L", value=5)  # a class only one domain has
    return root


def _rows(ds):
    return [(ex["label"], ex.get("domain"), np.asarray(to_rgb(ex["image"])).tolist()) for ex in ds]


def test_image_folder_class_layout(class_folder, tmp_path):
    assert detect_layout(class_folder) == "class"
    ds = load_image_folder(class_folder, cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds, datasets.Dataset) and len(ds) == 4
    assert ds.features["label"].names == ["cat", "dog"]
    assert "domain" not in ds.column_names
    assert _labels(ds).tolist() == [0, 0, 1, 1]
    modes = [ex["image"].mode for ex in ds]
    assert modes == ["L", "RGB", "RGBA", "L"]
    rgba = to_rgb(ds[2]["image"])
    assert rgba.mode == "RGB"
    px = np.asarray(rgba)
    assert px[0, 0].tolist() == [255, 0, 0] and px[0, -1].tolist() == [255, 255, 255]  # composited on white
    grey = to_rgb(ds[0]["image"])
    assert grey.mode == "RGB" and np.asarray(grey)[0, 0].tolist() == [10, 10, 10]
    assert infer_columns(ds) == ("image", "label", None)
    # load_csl_dataset dispatches an existing directory to the image-folder loader
    via = load_csl_dataset(str(class_folder), cache_dir=str(tmp_path / "hf"))
    assert _rows(via) == _rows(ds)


def test_image_folder_domain_layout_and_streaming(domain_folder, tmp_path):
    assert detect_layout(domain_folder) == "domain"
    ds = load_image_folder(domain_folder, cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 5
    assert ds.features["label"].names == ["cat", "dog", "emu"]
    assert ds.features["domain"].names == ["photo", "sketch"]
    got = [(ex["label"], ex["domain"], int(np.asarray(ex["image"]).flat[0])) for ex in ds]
    # label ids are global (cat=0 in both domains), pixel value identifies the file
    assert got == [(0, 0, 1), (1, 0, 2), (0, 1, 3), (1, 1, 4), (2, 1, 5)]
    assert infer_columns(ds) == ("image", "label", "domain")
    stream = load_image_folder(domain_folder, streaming=True, cache_dir=str(tmp_path / "hf"))
    assert isinstance(stream, datasets.IterableDataset)
    assert stream.features["domain"].names == ["photo", "sketch"]
    assert _rows(stream) == _rows(ds)


def test_image_folder_streaming_class_layout_matches(class_folder, tmp_path):
    ds = load_image_folder(class_folder, cache_dir=str(tmp_path / "hf"))
    stream = load_image_folder(class_folder, streaming=True, cache_dir=str(tmp_path / "hf"))
    assert _rows(stream) == _rows(ds)


def test_image_folder_bad_layouts(tmp_path):
    mixed = tmp_path / "mixed"
    _png(mixed / "cat" / "a.png", "L")
    _png(mixed / "photo" / "dog" / "b.png", "L")
    with pytest.raises(ValueError, match="mixes directories"):
        detect_layout(mixed)
    flat = tmp_path / "flat"
    _png(flat / "a.png", "L")
    with pytest.raises(ValueError, match="top level"):
        load_image_folder(flat)
    with pytest.raises(ValueError, match="not a directory"):
        load_image_folder(tmp_path / "nothing-here")
    empty_classes = tmp_path / "noimages"
    (empty_classes / "cat").mkdir(parents=True)
    (empty_classes / "cat" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(empty_classes)


# --------------------------------------------------------------------------- robust images


def test_decode_image_corrupt_raises_one_line(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    good = tmp_path / "good.png"
    _png(good, "RGB")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:-30])
    for value in (str(bad), bad, {"bytes": bad.read_bytes(), "path": None}, {"bytes": None, "path": str(bad)},
                  str(truncated), str(tmp_path / "missing.png"), b"garbage", {"path": None}):
        with pytest.raises(ValueError, match="^corrupt image") as err:
            decode_image(value)
        assert "\n" not in str(err.value)
    assert "bad.png" in _err(decode_image, str(bad))
    # the good file decodes from every accepted form
    for value in (str(good), good, {"bytes": good.read_bytes(), "path": None}, {"bytes": None, "path": str(good)},
                  good.read_bytes(), Image.open(good), np.zeros((3, 4), np.uint8)):
        img = decode_image(value)
        assert isinstance(img, Image.Image) and min(img.size) >= 3


def _err(fn, *args, **kwargs):
    with pytest.raises(ValueError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def test_check_image():
    ok = Image.new("L", (4, 3))
    assert check_image(ok) is ok
    msg = _err(check_image, Image.new("RGB", (1, 5)))
    assert "too small" in msg and "1x5" in msg and "\n" not in msg
    assert check_image(Image.new("RGB", (1, 1)), min_size=1).size == (1, 1)
    assert "not a PIL image" in _err(check_image, np.zeros((4, 4)))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "P_transparent", "RGBA", "I;16", "I", "F", "CMYK", "1", "RGB"])
def test_to_rgb_modes(mode):
    if mode == "I;16":
        img = Image.new("I;16", (4, 3), 65535)
        expected = [255, 255, 255]
    elif mode == "I":
        img = Image.fromarray(np.full((3, 4), 32896, np.int32), "I")  # 128 * 257
        expected = [128, 128, 128]
    elif mode == "F":
        img = Image.fromarray(np.full((3, 4), 0.5, np.float32), "F")
        expected = [128, 128, 128]
    elif mode == "LA":
        img = Image.new("LA", (4, 3), (0, 0))  # black, fully transparent → white
        expected = [255, 255, 255]
    elif mode == "P_transparent":
        img = Image.new("P", (4, 3), 0)
        img.putpalette([0, 0, 0] * 256)
        img.info["transparency"] = 0
        expected = [255, 255, 255]
    elif mode == "P":
        img = Image.new("P", (4, 3), 1)
        img.putpalette([0, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
        expected = [10, 20, 30]
    elif mode == "RGBA":
        img = Image.new("RGBA", (4, 3), (0, 0, 255, 255))
        expected = [0, 0, 255]
    elif mode == "CMYK":
        img = Image.new("CMYK", (4, 3), (0, 0, 0, 0))
        expected = [255, 255, 255]
    elif mode == "1":
        img = Image.new("1", (4, 3), 1)
        expected = [255, 255, 255]
    elif mode == "L":
        img = Image.new("L", (4, 3), 77)
        expected = [77, 77, 77]
    else:
        img = Image.new("RGB", (4, 3), (1, 2, 3))
        expected = [1, 2, 3]
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (4, 3)
    assert np.asarray(out)[1, 1].tolist() == expected
