"""Streams end to end: `stream_splits`, the labeling pass over `datasets.IterableDataset`s (undecoded cast, index column,
the per-process step split), and the same cache as the map-style pass on the same data."""

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification

from csl_hf import TeacherMixture
from csl_hf.data.streaming import stream_splits
from csl_hf.cache.labeling import build_cache
from csl_hf.cache.sharding import shard_bounds, shard_split
from csl_hf.data.preprocessing import Preprocessing
from csl_hf.teachers import cache_teacher_accuracies, evaluate_teachers

NAMES = ["a", "b", "c", "d"]
ID2LABEL = dict(enumerate(NAMES))


def png(rng, size=28):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def image_dataset(n, seed=0):
    rng = np.random.default_rng(seed)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES),
                                  "id": datasets.Value("int64")})
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": png(rng), "path": None} for _ in range(n)], "label": [i % 4 for i in range(n)],
         "id": list(range(n))}, features=features)


def tiny_vit(seed, size=16):
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=64, image_size=size, patch_size=8, id2label=ID2LABEL))


def models():
    teachers = TeacherMixture.from_teachers(
        [tiny_vit(0), tiny_vit(1), tiny_vit(2, size=32)], [{"classes": [0, 1, 2, 3]}, {"classes": [0, 2]},
                                                          {"classes": [1, 3]}], [[0], [1, 2]],
        teacher_names=["g", "even", "odd"],
        preprocessing=[Preprocessing(size=(16, 16)), Preprocessing(size=(16, 16)), Preprocessing(size=(32, 32))])
    return teachers, tiny_vit(3)


def ids(ds):
    return [ex["id"] for ex in ds]


def test_stream_splits_are_disjoint_seeded_and_materialise_only_the_teachers():
    data = image_dataset(40)
    stream = data.to_iterable_dataset(num_shards=4)
    a = stream_splits(stream, seed=0, teacher_size=10, test_size=8, buffer_size=16)
    assert isinstance(a["teacher"], datasets.Dataset) and len(a["teacher"]) == 10
    assert isinstance(a["test"], datasets.IterableDataset) and isinstance(a["train"], datasets.IterableDataset)
    assert a["teacher"].features == data.features and isinstance(a["teacher"][0]["image"], Image.Image)
    teacher, test, train = list(a["teacher"]["id"]), ids(a["test"]), ids(a["train"])
    assert len(test) == 8 and len(train) == 22
    assert sorted(teacher + test + train) == list(range(40))  # disjoint and complete
    assert teacher != list(range(10))  # shuffled
    b = stream_splits(stream, seed=0, teacher_size=10, test_size=8, buffer_size=16)
    assert list(b["teacher"]["id"]) == teacher and ids(b["test"]) == test and ids(b["train"]) == train
    assert ids(a["test"]) == test  # every read of a split gives the same examples
    other = stream_splits(stream, seed=1, teacher_size=10, test_size=8, buffer_size=16)
    assert list(other["teacher"]["id"]) != teacher
    capped = stream_splits(stream, seed=0, teacher_size=10, test_size=8, train_size=5, buffer_size=16)
    assert ids(capped["train"]) == train[:5]
    with pytest.raises(ValueError, match="counts"):
        stream_splits(stream, seed=0, teacher_size=0.5, test_size=8)
    with pytest.raises(ValueError, match="fewer than teacher_size"):
        stream_splits(stream, seed=0, teacher_size=50, test_size=8)
    with pytest.raises(TypeError, match="make_weak_to_strong_splits"):
        stream_splits(data, seed=0, teacher_size=10, test_size=8)


def test_stream_step_split_partitions_in_global_order():
    stream = image_dataset(11).to_iterable_dataset(num_shards=2)  # divisible shards: no shard push-down allowed
    seen = []
    for rank in range(2):
        part, base = shard_split(stream, offset=100, num_processes=2, process_index=rank)
        assert base is None
        rows = [(ex["__csl_index__"], ex["id"]) for ex in part]
        assert all(i % 2 == rank for i, _ in rows)
        seen += rows
    assert sorted(seen) == [(100 + i, i) for i in range(11)]
    data = image_dataset(11)
    for rank in range(3):
        start, end = shard_bounds(len(data), 3, rank)
        assert list(data.shard(num_shards=3, index=rank, contiguous=True)["id"]) == list(range(start, end))
        part, base = shard_split(data, offset=5, num_processes=3, process_index=rank)
        assert list(part["id"]) == list(range(start, end)) and base == 5 + start


def test_build_cache_on_streams_equals_map_style():
    teachers, student = models()
    pre = Preprocessing(size=(16, 16))
    train, test = image_dataset(21, seed=1), image_dataset(10, seed=2)
    ref, ref_stats = build_cache({"train": train, "test": test}, teachers, student, pre, batch_size=8,
                                 show_progress=False)
    streams = {"train": train.to_iterable_dataset(num_shards=3), "test": test.to_iterable_dataset()}
    got, stats = build_cache(streams, teachers, student, pre, batch_size=8, show_progress=False)
    assert stats.labeled == ref_stats.labeled == {"train": 21, "test": 10}
    assert torch.allclose(got.features, ref.features, atol=1e-5)
    assert torch.allclose(got.teacher_probs, ref.teacher_probs, atol=1e-5)
    assert torch.equal(got.labels, ref.labels) and torch.equal(got.split, ref.split)
    assert got.labels[:21].tolist() == list(train["label"])  # dataset order
    assert got.source_index.tolist() == ref.source_index.tolist() == list(range(31))  # test rows follow the stream's
    # Teacher accuracies read from the cache are evaluate_teachers' on the test images.
    from_cache = [float("nan") if r["accuracy"] is None else r["accuracy"] for r in cache_teacher_accuracies(got)]
    assert np.allclose(from_cache, evaluate_teachers(teachers, test.remove_columns("id")), equal_nan=True)


def test_labeling_with_dataloader_workers_writes_the_same_cache():
    """--dataloader_num_workers decodes in worker processes; the cache is the same, in dataset order."""
    teachers, student = models()
    pre = Preprocessing(size=(16, 16))
    splits = {"train": image_dataset(21, seed=1), "test": image_dataset(10, seed=2)}
    ref, _ = build_cache(splits, teachers, student, pre, batch_size=4, show_progress=False)
    got, stats = build_cache(splits, teachers, student, pre, batch_size=4, show_progress=False, num_workers=2)
    assert stats.labeled == {"train": 21, "test": 10}
    assert torch.equal(got.features, ref.features) and torch.equal(got.teacher_probs, ref.teacher_probs)
    assert torch.equal(got.source_index, ref.source_index) and torch.equal(got.labels, ref.labels)
