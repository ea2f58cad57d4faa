"""Class ids matched by name (issue 18, item 2): a split whose ClassLabel lists the same classes in another order, or
only some of them (datasets' ClassLabel of a test folder that misses a class), is renumbered by name for evaluate,
predict, the labeling pass and the CLI's splits; a class the model does not know is one line. Tiny, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np
import pytest
import torch
from test_trainer_api import NAMES, colour_images, make_trainer

from csl_hf.data.labels import align_label_ids, align_labels, label_id_map
from csl_hf.errors import CSLError


def relabel(ds: datasets.Dataset, names: list[str]) -> datasets.Dataset:
    """The same images and classes, with a ClassLabel of ``names`` (another order, a subset or a superset)."""
    old = ds.features["label"].names
    keep = [i for i, y in enumerate(ds["label"]) if old[y] in names]
    ds = ds.select(keep)
    new = datasets.ClassLabel(names=names)
    return ds.map(lambda y: {"label": [new.str2int(old[v]) for v in y]}, input_columns=["label"], batched=True,
                  features=datasets.Features({**ds.features, "label": new}))


def by_name(ds: datasets.Dataset) -> list[str]:
    names = ds.features["label"].names
    return [names[y] for y in ds["label"]]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    return make_trainer(tmp_path_factory.mktemp("names") / "run")[0]


def test_labels_aligned_by_name_evaluate_and_predict(trainer):
    ds = colour_images(24, 5)
    reference = trainer.predict(ds)
    for names in (list(reversed(NAMES)), ["blue", "red", "yellow", "green"]):
        other = relabel(ds, names)
        assert other["label"] != ds["label"]  # the ids differ, the classes do not
        out = trainer.predict(other)
        np.testing.assert_array_equal(out.label_ids, reference.label_ids)
        np.testing.assert_allclose(out.predictions, reference.predictions, rtol=1e-5, atol=1e-5)
        assert trainer.evaluate(other)["eval_accuracy"] == pytest.approx(reference.metrics["test_accuracy"])
    # a test set that misses a class (as datasets numbers a test folder without "yellow"): the rows it has
    subset = relabel(ds, ["blue", "green", "red"])
    out = trainer.predict(subset)
    assert [NAMES[y] for y in out.label_ids] == by_name(subset)
    # the stream of the same set: the same labels
    assert trainer.predict(subset.to_iterable_dataset()).label_ids.tolist() == out.label_ids.tolist()


def test_labels_aligned_by_name_unknown_classes(trainer):
    ds = colour_images(12, 6)
    # a class the model does not know, with images: one line naming it
    unknown = relabel(ds, ["red", "green", "blue", "purple"]).map(
        lambda y: {"label": [3 if v == 0 else v for v in y]}, input_columns=["label"], batched=True)
    with pytest.raises(CSLError, match="class\\(es\\) purple unknown to the model") as err:
        trainer.evaluate(unknown)
    assert "\n" not in str(err.value)
    # ... without images (a ClassLabel listing more than the split holds): nothing to refuse
    listed_only = relabel(ds, ["red", "green", "blue", "yellow", "purple"])
    assert trainer.predict(listed_only).label_ids.tolist() == [NAMES.index(n) for n in by_name(listed_only)]


def test_labels_aligned_by_name_labeling_pass(tmp_path):
    # train_dataset and eval_dataset numbered otherwise than the teachers (eval missing a class): the cache holds
    # the teachers' ids, by name
    from test_trainer_api import PREP, teachers, tiny_vit

    from csl_hf import CoSupervisedConfig, CoSupervisedTrainer

    train = relabel(colour_images(16, 0), ["yellow", "blue", "green", "red"])
    test = relabel(colour_images(12, 1), ["green", "red", "yellow"])
    trainer = CoSupervisedTrainer(model=tiny_vit(7), teachers=teachers(),
                                  args=CoSupervisedConfig(output_dir=str(tmp_path / "run"), disable_tqdm=True,
                                                          report_to="none"),
                                  train_dataset=train, eval_dataset=test, processing_class=PREP.to_image_processor())
    cache = trainer.label()
    expected = [NAMES.index(n) for n in by_name(train) + by_name(test)]
    assert cache.labels.tolist() == expected
    # a training class the teachers do not know: refused before labeling
    odd = relabel(colour_images(8, 2), ["red", "green", "blue", "yellow", "teal"]).map(
        lambda y: {"label": [4 if v == 0 else v for v in y]}, input_columns=["label"], batched=True)
    with pytest.raises(CSLError, match="train_dataset has class\\(es\\) teal unknown to the teachers"):
        CoSupervisedTrainer(model=tiny_vit(7), teachers=teachers(),
                            args=CoSupervisedConfig(output_dir=str(tmp_path / "r2"), report_to="none"),
                            train_dataset=odd, eval_dataset=test, processing_class=PREP.to_image_processor())


def test_labels_aligned_by_name_functions():
    assert label_id_map(["a", "b"], ["a", "b"], "x", "y") is None
    assert label_id_map(None, ["a", "b"], "x", "y") is None  # integer labels are ids
    mapping = label_id_map(["c", "a"], ["a", "b", "c"], "x", "y")
    assert mapping.tolist() == [2, 0]
    assert align_label_ids(torch.tensor([0, 1, -1]), mapping).tolist() == [2, 0, -1]
    with pytest.raises(CSLError, match="^x has class\\(es\\) d unknown to y, whose classes are a, b"):
        label_id_map(["a", "d"], ["a", "b"], "x", "y")
    assert label_id_map(["a", "d"], ["a", "b"], "x", "y", present={0}).tolist() == [0, -1]
    stream = relabel(colour_images(8, 3), ["blue", "green", "red", "yellow"]).to_iterable_dataset()
    aligned = align_labels(stream, "label", NAMES, "s", "t")
    assert aligned.features["label"].names == NAMES
    assert [ex["label"] for ex in aligned] == [i % 4 for i in range(8)]


def test_labels_aligned_by_name_named_splits(tmp_path):
    # the paper recipe's named splits: a validation split numbered otherwise than train
    from csl_hf.data.named_splits import load_named_splits

    train = colour_images(16, 0)
    validation = relabel(colour_images(16, 1), ["yellow", "red", "green", "blue"])
    datasets.DatasetDict({"train": train, "validation": validation}).save_to_disk(str(tmp_path / "saved"))
    data = load_named_splits(str(tmp_path / "saved"), "train", "validation", teacher_size=8, train_size=8,
                             test_size=8, seed=0)
    assert data.test.features["label"].names == NAMES
    source = colour_images(16, 1)
    ids = {tuple(np.asarray(ex["image"]).ravel()[:6]): ex["label"] for ex in source}
    for ex in data.test:
        assert ids[tuple(np.asarray(ex["image"]).ravel()[:6])] == ex["label"]
