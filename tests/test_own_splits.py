"""A dataset's own splits (issue 18, items 1 and 14): every local layout datasets.load_dataset / load_from_disk reads
is read the way it reads it; a test (or validation) split is the run's test split, teacher and weak-to-strong images
come from train; an ambiguous folder is one line naming its readings and --folder_layout; data in which no class can
have teacher, training and test images is refused before any teacher. Small, offline."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np
import pytest
from PIL import Image

from csl_hf.data import load_csl_dataset, load_weak_to_strong_data, make_weak_to_strong_splits
from csl_hf.errors import CSLError

COLOURS = {"blue": (40, 40, 220), "green": (40, 200, 40), "red": (220, 40, 40)}


def _image(path, value: int, colour=(128, 128, 128)):
    """A small image whose top-left pixel's green value identifies it (``value`` < 256) and whose colour is its class."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    a = np.tile(np.array(colour, np.uint8), (8, 8, 1))
    a[0, 0] = (0, value, 0)
    Image.fromarray(a).save(path)


def _make(root, split_counts: dict[str, dict[str, int]], start: dict[str, int] | None = None, domain: str = ""):
    """``root/<split>/[<domain>/]<class>/<n>.png``; ids (the marker pixel) are unique per split."""
    for split, counts in split_counts.items():
        n = (start or {}).get(split, 0)
        for cls, k in counts.items():
            for _ in range(k):
                _image(os.path.join(root, split, domain, cls, f"{n:03d}.png"), n, COLOURS.get(cls, (128, 128, 128)))
                n += 1


def _ids(ds):
    return sorted(int(np.asarray(ex["image"])[0, 0, 1]) for ex in ds)


def _names(ds):
    names = ds.features["label"].names
    return [names[y] for y in ds["label"]]


@pytest.fixture
def split_folder(tmp_path):
    """data/train/<class>/ (20 per class, ids 0..59) and data/test/<class>/ (5 per class, ids 100..114)."""
    root = tmp_path / "data"
    _make(root, {"train": dict.fromkeys(COLOURS, 20)}, {"train": 0})
    _make(root, {"test": dict.fromkeys(COLOURS, 5)}, {"test": 100})
    return str(root)


# --------------------------------------------------------------------------- item 1: the user's own splits


def test_own_splits_test_folder_is_the_test_split(split_folder, caplog):
    caplog.set_level("INFO")
    data = load_weak_to_strong_data(split_folder, seed=0, teacher_size=15)
    assert data.domain_column is None and data.class_names == sorted(COLOURS)
    assert data.splits == {"pool": "train", "test": "test"}
    assert _ids(data.test) == list(range(100, 115))                          # exactly the test folder
    seen = _ids(data.teacher) + _ids(data.train)
    assert sorted(seen) == list(range(60)) and len(set(seen)) == 60         # teacher + train: the train folder
    assert np.bincount(data.teacher["label"]).tolist() == [5, 5, 5]          # stratified as before
    # the labels are the colours (names, not split names)
    for ds in (data.teacher, data.test):
        for ex, name in zip(ds, _names(ds)):
            assert tuple(np.asarray(ex["image"])[4, 4]) == COLOURS[name]
    # the log says which splits were used for what
    assert any("its own 'test' split" in r.getMessage() and "'train' split" in r.getMessage() for r in caplog.records)
    # source rows: the train split, then the test split (the teacher-overlap check compares them)
    assert data.source_rows["test"].min() == 60 and data.num_rows == 75
    assert data.teacher_provenance()["example_ids"] == data.source_rows["teacher"].tolist()


def test_own_splits_match_datasets_reading(split_folder):
    ours = load_csl_dataset(split_folder)
    theirs = datasets.load_dataset(split_folder)
    assert isinstance(ours, datasets.DatasetDict) and set(ours) == set(theirs) == {"train", "test"}
    for split in ours:
        assert ours[split].features["label"] == theirs[split].features["label"]
        assert sorted(zip(_ids(ours[split]), sorted(_names(ours[split])))) == \
            sorted(zip(_ids(theirs[split]), sorted(_names(theirs[split]))))
    assert len(load_csl_dataset(split_folder, split="test")) == 15


def test_own_splits_test_size_and_caps(split_folder):
    data = load_weak_to_strong_data(split_folder, seed=0, teacher_size=15, test_size=6, max_train_samples=10,
                                    max_eval_samples=4)
    assert len(data.test) == 4 and set(_ids(data.test)) <= set(range(100, 115))
    assert len(data.train) == 10 and len(data.teacher) == 15
    again = load_weak_to_strong_data(split_folder, seed=0, teacher_size=15, test_size=6, max_train_samples=10,
                                     max_eval_samples=4)
    assert _ids(again.test) == _ids(data.test)  # seeded


def test_own_splits_streaming_reads_the_same_samples(split_folder):
    mapped = load_weak_to_strong_data(split_folder, seed=1, teacher_size=15, max_eval_samples=9)
    streamed = load_weak_to_strong_data(split_folder, seed=1, teacher_size=15, max_eval_samples=9, streaming=True)
    assert isinstance(streamed.test, datasets.IterableDataset)
    assert _ids(streamed.test) == _ids(mapped.test) and _ids(streamed.train) == _ids(mapped.train)


def test_own_splits_validation_folder_with_a_missing_class(tmp_path):
    # another input of the kind: validation/ instead of test/, training/ spelled out, a class missing from validation
    root = tmp_path / "v"
    _make(root, {"training": dict.fromkeys(COLOURS, 12)}, {"training": 0})
    _make(root, {"validation": {"blue": 4, "red": 4}}, {"validation": 200})
    data = load_weak_to_strong_data(str(root), seed=0, teacher_size=9)
    assert data.splits == {"pool": "train", "test": "validation"}
    assert _ids(data.test) == list(range(200, 208))
    assert data.class_names == sorted(COLOURS) and set(_names(data.test)) == {"blue", "red"}


def test_own_splits_domains_inside_split_folders(tmp_path):
    root = tmp_path / "d"
    for dom in ("photo", "sketch"):
        _make(root, {"train": dict.fromkeys(COLOURS, 6), "test": dict.fromkeys(COLOURS, 2)},
              {"train": 0 if dom == "photo" else 50, "test": 100 if dom == "photo" else 150}, domain=dom)
    data = load_weak_to_strong_data(str(root), seed=0, teacher_size=12)
    assert data.domain_column == "domain" and data.test.features["domain"].names == ["photo", "sketch"]
    assert _ids(data.test) == list(range(100, 106)) + list(range(150, 156))
    assert np.bincount(data.test["domain"]).tolist() == [6, 6]


def test_own_splits_metadata_files_give_the_labels(tmp_path):
    # metadata.csv next to flat images (one split), metadata.jsonl in train/ and test/ (two splits)
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = []
    for i in range(12):
        name = ["red", "blue", "green"][i % 3]
        _image(str(flat / f"{i}.png"), i, COLOURS[name])
        rows.append(f"{i}.png,{name}")
    (flat / "metadata.csv").write_text("file_name,label\n" + "\n".join(rows) + "\n")
    ds = load_csl_dataset(str(flat))
    assert isinstance(ds, datasets.Dataset) and ds.features["label"].names == sorted(COLOURS)
    assert _names(ds)[:3] == ["red", "blue", "green"]
    split = tmp_path / "jsonl"
    for s, n, start in (("train", 12, 0), ("test", 3, 100)):
        (split / s).mkdir(parents=True)
        with open(split / s / "metadata.jsonl", "w") as f:
            for i in range(start, start + n):
                name = ["red", "blue", "green"][i % 3] if s == "train" else "green"  # test: one class only
                _image(str(split / s / f"{i}.png"), i, COLOURS[name])
                f.write(json.dumps({"file_name": f"{i}.png", "label": name}) + "\n")
    data = load_weak_to_strong_data(str(split), seed=0, teacher_size=6)
    assert data.class_names == sorted(COLOURS)  # one label space over both splits, not a classifier of train/test
    assert _ids(data.test) == [100, 101, 102] and set(_names(data.test)) == {"green"}
    for ex, name in zip(data.train, _names(data.train)):
        assert tuple(np.asarray(ex["image"])[4, 4]) == COLOURS[name]


def test_own_splits_metadata_without_labels(tmp_path):
    # metadata without a label column over class folders: the folder names are the classes
    root = tmp_path / "m"
    _make(root, {"": dict.fromkeys(COLOURS, 3)})
    (root / "metadata.csv").write_text("file_name,quality\n" + "".join(
        f"{c}/{i:03d}.png,{i}\n" for c in COLOURS for i in range(9) if os.path.exists(root / c / f"{i:03d}.png")))
    ds = load_csl_dataset(str(root))
    assert ds.features["label"].names == sorted(COLOURS) and len(ds) == 9
    # ... and over split folders holding images directly: one line asking for a label column
    bad = tmp_path / "nolabel"
    for s in ("train", "test"):
        (bad / s).mkdir(parents=True)
        _image(str(bad / s / "0.png"), 0)
        (bad / s / "metadata.jsonl").write_text(json.dumps({"file_name": "0.png", "species": "x"}) + "\n")
    with pytest.raises(CSLError, match="no label column.*name the metadata's class column 'label'") as err:
        load_weak_to_strong_data(str(bad), seed=0)
    assert "\n" not in str(err.value)


def test_own_splits_save_to_disk_and_hub_clone(tmp_path, split_folder):
    dd = load_csl_dataset(split_folder)
    dd.save_to_disk(str(tmp_path / "saved_dict"))
    dd["train"].save_to_disk(str(tmp_path / "saved_one"))
    clone = tmp_path / "clone"
    (clone / "data").mkdir(parents=True)
    (clone / "README.md").write_text("# a dataset\n")
    for split in dd:
        dd[split].to_parquet(str(clone / "data" / f"{split}-00000-of-00001.parquet"))
    for path in (tmp_path / "saved_dict", clone):
        data = load_weak_to_strong_data(str(path), seed=0, teacher_size=15)
        assert data.splits["test"] == "test" and _ids(data.test) == list(range(100, 115)), path
        assert sorted(_ids(data.teacher) + _ids(data.train)) == list(range(60))
    one = load_weak_to_strong_data(str(tmp_path / "saved_one"), seed=0, teacher_size=15, test_size=15)
    assert one.splits is None and sorted(_ids(one.teacher) + _ids(one.train) + _ids(one.test)) == list(range(60))


def test_own_splits_unlabeled_test_split_is_passed_over(tmp_path, split_folder):
    # Hub-style splits: test without labels (-1, as ImageNet's), validation labeled -> validation is the test split;
    # a test split without a label column and no validation -> all three cut from train
    dd = load_csl_dataset(split_folder)
    unlabeled = dd["test"].map(lambda y: {"label": [-1] * len(y)}, input_columns=["label"], batched=True)
    datasets.DatasetDict({"train": dd["train"], "validation": dd["test"], "test": unlabeled}).save_to_disk(
        str(tmp_path / "hub"))
    data = load_weak_to_strong_data(str(tmp_path / "hub"), seed=0, teacher_size=15)
    assert data.splits == {"pool": "train", "test": "validation"} and _ids(data.test) == list(range(100, 115))
    datasets.DatasetDict({"train": dd["train"], "test": dd["test"].remove_columns("label")}).save_to_disk(
        str(tmp_path / "nolabel"))
    data = load_weak_to_strong_data(str(tmp_path / "nolabel"), seed=0, teacher_size=15, test_size=15)
    assert data.splits == {"pool": "train", "test": None}
    assert sorted(_ids(data.teacher) + _ids(data.train) + _ids(data.test)) == list(range(60))
    # one split, whatever its name, is the pool; several without 'train' are one line
    datasets.DatasetDict({"test": dd["test"]}).save_to_disk(str(tmp_path / "only"))
    assert len(load_weak_to_strong_data(str(tmp_path / "only"), seed=0, teacher_size=3, test_size=3).train) == 9
    datasets.DatasetDict({"a": dd["train"], "b": dd["test"]}).save_to_disk(str(tmp_path / "ab"))
    with pytest.raises(CSLError, match="has the splits a, b and none is 'train'"):
        load_weak_to_strong_data(str(tmp_path / "ab"), seed=0)


def test_own_splits_test_split_in_another_label_order(tmp_path, split_folder):
    # a saved DatasetDict whose test split numbers the classes otherwise: matched by name
    dd = load_csl_dataset(split_folder)
    reordered = datasets.ClassLabel(names=["red", "blue", "green"])
    old = dd["test"].features["label"].names
    test = dd["test"].map(lambda y: {"label": reordered.str2int(old[y])}, input_columns=["label"],
                          features=datasets.Features({**dd["test"].features, "label": reordered}))
    datasets.DatasetDict({"train": dd["train"], "test": test}).save_to_disk(str(tmp_path / "s"))
    data = load_weak_to_strong_data(str(tmp_path / "s"), seed=0, teacher_size=15)
    assert data.test.features["label"].names == data.class_names == sorted(COLOURS)
    for ex, name in zip(data.test, _names(data.test)):
        assert tuple(np.asarray(ex["image"])[4, 4]) == COLOURS[name]
    # a test class the training split does not have: one line
    other = datasets.ClassLabel(names=["blue", "green", "purple"])
    odd = dd["test"].cast_column("label", other)
    datasets.DatasetDict({"train": dd["train"], "test": odd}).save_to_disk(str(tmp_path / "p"))
    with pytest.raises(CSLError, match="class.*purple.*unknown to its train split") as err:
        load_weak_to_strong_data(str(tmp_path / "p"), seed=0, teacher_size=15)
    assert "\n" not in str(err.value)


def test_own_splits_ambiguous_folders_name_both_readings(tmp_path, split_folder):
    # split folders beside another folder: splits (datasets would leave it out) or domains
    _make(split_folder, {"sketch": dict.fromkeys(COLOURS, 2)})
    with pytest.raises(CSLError) as err:
        load_weak_to_strong_data(split_folder, seed=0, teacher_size=3, test_size=3)
    msg = str(err.value)
    assert "\n" not in msg and "ambiguous" in msg and "--folder_layout splits" in msg
    assert "domains are sketch, test, train (--folder_layout domains)" in msg
    # ... each reading on request
    as_domains = load_weak_to_strong_data(split_folder, seed=0, teacher_size=6, test_size=6, folder_layout="domains")
    assert as_domains.test.features["domain"].names == ["sketch", "test", "train"]
    as_splits = load_weak_to_strong_data(split_folder, seed=0, teacher_size=15, folder_layout="splits")
    assert _ids(as_splits.test) == list(range(100, 115))
    # a class layout with a class named "test": as classes, or as datasets' test split
    classes = tmp_path / "classes"
    _make(classes, {"": {"cat": 3, "dog": 3, "test": 3}})
    with pytest.raises(ValueError, match="classes are cat, dog, test \\(--folder_layout classes\\)"):
        load_csl_dataset(str(classes))
    assert load_csl_dataset(str(classes), folder_layout="classes").features["label"].names == ["cat", "dog", "test"]
    # split folders holding images directly (no class folders, no metadata)
    flat = tmp_path / "flat"
    for s in ("train", "test"):
        _image(str(flat / s / "0.png"), 0)
    with pytest.raises(ValueError, match="holds images directly.*--folder_layout classes"):
        load_csl_dataset(str(flat))


def test_own_splits_plain_layouts_unchanged(tmp_path, caplog):
    # the class and domain layouts read as before (a README or a metadata file at the top is ignored), and the log
    # says which reading was detected and how to ask for the other
    caplog.set_level("INFO")
    root = tmp_path / "plain"
    _make(root, {"photo": dict.fromkeys(COLOURS, 2), "sketch": dict.fromkeys(COLOURS, 2)})
    (root / "README.md").write_text("my domains\n")
    ds = load_csl_dataset(str(root))
    assert ds.features["domain"].names == ["photo", "sketch"] and len(ds) == 12
    assert f"image folder '{root}': read as path/<domain>/<class>/<image>, 2 domains (photo, sketch) of " \
           f"{len(COLOURS)} classes (--folder_layout classes reads its top folders as classes)" in caplog.text
    caplog.clear()
    _make(tmp_path / "flat", {"": dict.fromkeys(COLOURS, 2)})
    assert len(load_csl_dataset(str(tmp_path / "flat"))) == 2 * len(COLOURS)
    assert f"image folder '{tmp_path / 'flat'}': read as path/<class>/<image>, {len(COLOURS)} classes" in caplog.text
    caplog.clear()
    load_csl_dataset(str(tmp_path / "flat"), folder_layout="classes")  # asked for: that line, not a detection
    assert "read as path/" not in caplog.text and "read in the class layout (--folder_layout classes)" in caplog.text
    with pytest.raises(ValueError, match="folder_layout 'folders' does not exist"):
        load_csl_dataset(str(root), folder_layout="folders")
    with pytest.raises(ValueError, match="applies to a local folder"):
        load_csl_dataset("animal_mnist", folder_layout="domains")


def test_own_splits_fashion_mnist_official_test_split(tmp_path, monkeypatch):
    from test_fashion_mnist import make_split, write_fashion_mnist

    from csl_hf.data import fashion_mnist as fm

    folder = str(tmp_path / "fm")
    write_fashion_mnist(folder)
    monkeypatch.setenv(fm.ENV_DIR, folder)
    official = make_split("test")[0]
    for name in ("fashion_mnist", "fashion_mnist_shifted"):
        data = load_weak_to_strong_data(name, seed=0, teacher_size=10)
        assert data.splits == {"pool": "train", "test": "test"} and len(data.test) == len(official) == 20
        assert len(data.teacher) + len(data.train) == 40
        if name == "fashion_mnist":
            np.testing.assert_array_equal(np.stack([np.asarray(ex["image"]) for ex in data.test]), official)
    capped = load_weak_to_strong_data("fashion_mnist", seed=0, teacher_size=10, max_eval_samples=7)
    assert len(capped.test) == 7


# --------------------------------------------------------------------------- item 14: no class in every split


def _one_image_per_class(num_classes: int, per_class: int = 1) -> datasets.Dataset:
    labels = np.repeat(np.arange(num_classes), per_class)
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": f"/nowhere/{i}.png"} for i in range(len(labels))], "label": labels},
        features=datasets.Features({"image": datasets.Image(),
                                    "label": datasets.ClassLabel(names=[f"c{i}" for i in range(num_classes)])}))


@pytest.mark.parametrize("num_classes,per_class", [(2000, 1), (300, 2)])
def test_no_class_with_train_and_test_refused_up_front(num_classes, per_class):
    with pytest.raises(CSLError, match=f"every class has fewer than 3 images .*at most {per_class} image") as err:
        make_weak_to_strong_splits(_one_image_per_class(num_classes, per_class), seed=0, teacher_size=100,
                                   test_size=100)
    assert "\n" not in str(err.value) and "--" not in str(err.value)  # says what is wrong with the data


def test_no_class_with_train_and_test_refused_before_teachers(tmp_path, monkeypatch):
    # through the run's data loader and the CLI: one error line, no teacher trained, no output
    root = tmp_path / "many"
    for c in range(40):
        _image(str(root / f"c{c:02d}" / "0.png"), c)
    with pytest.raises(CSLError, match="every class has fewer than 3 images"):
        load_weak_to_strong_data(str(root), seed=0, teacher_size=10, test_size=10)
    from csl_hf.cli import run as run_module

    monkeypatch.setattr(run_module, "prepare_teachers", lambda *a, **k: pytest.fail("teachers trained"))
    assert run_module.cli(["--dataset_name", str(root), "--output_dir", str(tmp_path / "out"), "--teacher_size", "10",
                           "--test_size", "10"]) == 2
    assert not (tmp_path / "out" / "teachers").exists()


def test_no_class_with_train_and_test_refused_own_test_split(tmp_path):
    # the dataset's own test split holds only classes the training split has no image of
    root = tmp_path / "disjoint"
    _make(root, {"train": {"blue": 6, "green": 6}}, {"train": 0})
    _make(root, {"test": {"red": 4}}, {"test": 100})
    with pytest.raises(CSLError, match="no class of the dataset's own test split has training images") as err:
        load_weak_to_strong_data(str(root), seed=0, teacher_size=4)
    assert "\n" not in str(err.value)
    # a training split in which each class has a single image cannot feed teacher and weak-to-strong splits
    single = tmp_path / "single"
    _make(single, {"train": {"blue": 1, "green": 1, "red": 1}, "test": dict.fromkeys(COLOURS, 2)},
          {"train": 0, "test": 100})
    with pytest.raises(CSLError, match="every class has fewer than 2 images"):
        load_weak_to_strong_data(str(single), seed=0, teacher_size=1)


def test_own_splits_streamed_hub_dataset_keeps_its_test_split(split_folder, monkeypatch):
    # a Hub dataset read as a stream (here: the folder through the Hub path): teacher and weak-to-strong images from
    # the train stream, the test split from its own stream
    from csl_hf.data import weak_to_strong

    monkeypatch.setattr(weak_to_strong, "is_local_source", lambda name: False)
    data = load_weak_to_strong_data(split_folder, seed=0, teacher_size=12, train_size=30, max_eval_samples=10,
                                    streaming=True)
    assert data.splits == {"pool": "train", "test": "test"} and data.source_rows is None
    assert isinstance(data.train, datasets.IterableDataset) and isinstance(data.test, datasets.IterableDataset)
    test_ids = _ids(data.test)
    assert len(test_ids) == 10 and set(test_ids) <= set(range(100, 115))
    seen = _ids(data.teacher) + _ids(data.train)
    assert len(seen) == 42 and len(set(seen)) == 42 and set(seen) <= set(range(60))
    with pytest.raises(CSLError, match="split sizes must be counts"):
        load_weak_to_strong_data(split_folder, seed=0, teacher_size=12, test_size=0.5, streaming=True)


def test_own_splits_images_among_caption_files(tmp_path):
    # more .txt captions than images: datasets would pick its text builder; the images and their splits still rule
    root = tmp_path / "captions"
    _make(root, {"train": dict.fromkeys(COLOURS, 4), "test": dict.fromkeys(COLOURS, 1)}, {"train": 0, "test": 100})
    for dirpath, _, files in os.walk(root):
        for f in files:
            for j in range(3):
                (root / dirpath / f"{f[:-4]}_{j}.txt").write_text("a caption")
    assert datasets.load_dataset_builder(str(root)).name == "text"
    data = load_weak_to_strong_data(str(root), seed=0, teacher_size=6)
    assert _ids(data.test) == [100, 101, 102] and data.class_names == sorted(COLOURS)
    # --folder_layout splits on a folder without split names: datasets' single split, classes from the folders
    plain = tmp_path / "plain"
    _make(plain, {"": dict.fromkeys(COLOURS, 2)})
    ds = load_csl_dataset(str(plain), folder_layout="splits")
    assert isinstance(ds, datasets.Dataset) and ds.features["label"].names == sorted(COLOURS) and len(ds) == 6


def test_own_splits_integer_labels_span_both_splits(tmp_path, split_folder):
    # a clone whose labels are plain integers: the classes are the ids of both splits (the test split may hold more)
    dd = load_csl_dataset(split_folder)
    ints = {k: v.cast_column("label", datasets.Value("int64")) for k, v in dd.items()}
    ints["train"] = ints["train"].filter(lambda y: y < 2, input_columns=["label"])  # no class 2 in train
    datasets.DatasetDict(ints).save_to_disk(str(tmp_path / "ints"))
    data = load_weak_to_strong_data(str(tmp_path / "ints"), seed=0, teacher_size=10)
    assert data.class_names == ["0", "1", "2"] and len(data.test) == 15


def test_own_splits_three_classes_run_with_the_default_teachers_per_level(caplog):
    # the folder of case 13 has 3 classes: the default 1,2,4,5 keeps the levels that fit (a warning), a level the
    # user asked for is still refused
    from csl_hf.method.hierarchy import parse_teachers_per_level

    with caplog.at_level("WARNING"):
        assert parse_teachers_per_level("1,2,4,5", 3) == [1, 2]
    assert "on these 3 classes it is 1,2" in caplog.text
    assert parse_teachers_per_level("1,2,4,5", 10) == [1, 2, 4, 5]
    with pytest.raises(CSLError, match="asks for 4 specialists but there are only 3 classes"):
        parse_teachers_per_level("1,4", 3)


def test_own_data_file_is_read_as_datasets_reads_it(tmp_path, split_folder):
    # One parquet shard, one arrow file or one jsonl table with embedded images: one split, read as
    # datasets.load_dataset(<type>, data_files=path) reads it, string labels as a ClassLabel.
    train = load_csl_dataset(split_folder)["train"]
    names = train.features["label"].names
    stringly = train.cast_column("label", datasets.Value("int64")).map(
        lambda row: {"label": names[row["label"]]}).cast_column("label", datasets.Value("string"))
    stringly.to_parquet(str(tmp_path / "train.parquet"))
    arrow = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train")
    shutil.copy(arrow.cache_files[0]["filename"], tmp_path / "train.arrow")
    for path in (tmp_path / "train.parquet", tmp_path / "train.arrow"):
        ds = load_csl_dataset(str(path))
        assert isinstance(ds, datasets.Dataset) and len(ds) == len(train), path
        assert ds.features["label"].names == sorted(names) and _ids(ds) == _ids(train), path
        data = load_weak_to_strong_data(str(path), seed=0, teacher_size=15, test_size=15)
        assert sorted(_ids(data.teacher) + _ids(data.train) + _ids(data.test)) == sorted(_ids(train))


def test_own_data_file_of_another_type_or_unreadable_is_one_line(tmp_path, capsys):
    from test_hardening import assert_one_line_error, run_cli

    _image(tmp_path / "one.png", 3)
    (tmp_path / "broken.parquet").write_text("not parquet")
    (tmp_path / "metadata.csv").write_text("file_name,label\none.png,a\n")
    (tmp_path / "notes.txt").write_text("hello")
    cases = [("one.png", ["(.png)", repr(str(tmp_path)), ".parquet"]),
             ("notes.txt", ["(.txt)", "a folder"]),
             ("broken.parquet", ["cannot read", "broken.parquet"]),
             ("metadata.csv", ["no image column", "pass the folder holding the images"])]
    for name, words in cases:
        out = tmp_path / f"out-{name}"
        rc, err = run_cli(capsys, "--dataset_name", tmp_path / name, "--output_dir", out)
        assert_one_line_error(rc, err, *words, progress_bars=True)
        assert not out.exists(), name
