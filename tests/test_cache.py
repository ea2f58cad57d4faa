"""The CSL cache contract (docs/cache.md): round trips, dtypes, the compact form and validation errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from synthetic import make_cache

from csl_hf import CSLCache
from csl_hf.errors import CacheError


def test_round_trip_float16(tmp_path):
    cache = make_cache(n=200, dtype=torch.float16)
    cache.save(tmp_path / "c")
    back = CSLCache.load(tmp_path / "c")
    assert back.features.dtype == torch.float32  # promoted for training
    assert torch.equal(back.features.half(), cache.features)
    assert torch.equal(back.teacher_probs, cache.teacher_probs)
    assert back.levels == cache.levels and back.specialties == cache.specialties
    assert back.id2label == cache.id2label
    meta = json.loads((tmp_path / "c" / "cache.json").read_text())
    assert meta["student"]["feature_dim"] == 16 and meta["id2label"]["0"] == "class_0"


def test_compact_cache_reads_like_dense(tmp_path):
    cache = make_cache(n=200)
    compact = cache.to_compact(3)
    compact.save(tmp_path / "c")
    tensors = load_file(tmp_path / "c" / "cache.safetensors")
    assert "teacher_probs" not in tensors and tensors["teacher_topk_probs"].dtype == torch.float16
    back = CSLCache.load(tmp_path / "c")
    rows = back.rows(0)
    dense, approx = cache.probs([0, 1, 2], rows), back.probs([0, 1, 2], rows)
    assert torch.equal(dense.argmax(-1), approx.argmax(-1))
    assert torch.allclose(approx.sum(-1), torch.ones_like(approx.sum(-1)))
    assert back.bytes_per_image_per_teacher() == 3 * (2 + 4) < cache.bytes_per_image_per_teacher() == 6 * 4


def _write(tmp_path, tensors, meta):
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "cache.safetensors"))
    (d / "cache.json").write_text(json.dumps(meta))
    return d


def _parts():
    cache = make_cache(n=60)
    tensors = {"features": cache.features, "labels": cache.labels, "split": cache.split,
               "teacher_probs": cache.teacher_probs}
    return tensors, cache.metadata()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t, m: t.pop("teacher_probs"), "teacher_probs"),
        (lambda t, m: t.update(features=t["features"][:, :, None]), "features"),
        (lambda t, m: t.update(labels=t["labels"].float()), "labels"),
        (lambda t, m: t["features"].__setitem__((0, 0), float("nan")), "NaN"),
        (lambda t, m: t["teacher_probs"].__setitem__((0, 0, 0), float("inf")), "NaN or Inf"),
        (lambda t, m: t["labels"].__setitem__(0, 6), "outside"),
        (lambda t, m: t.update(teacher_probs=torch.randn_like(t["teacher_probs"])), "logits"),
        (lambda t, m: t.update(teacher_probs=t["teacher_probs"] * 3), "sum to"),
        (lambda t, m: m.update(levels=[[0], [1, 2], [3, 4, 9]]), "teacher 9"),
        (lambda t, m: m["specialties"].__setitem__(2, {"classes": [0, 3, 4, 5]}), "overlap"),
        (lambda t, m: m["specialties"].__setitem__(2, {"classes": [4, 5]}), "uncovered"),
        (lambda t, m: t.update(split=torch.ones_like(t["split"])), "training split is empty"),
        (lambda t, m: t.update(split=torch.zeros_like(t["split"])), "test split is empty"),
        (lambda t, m: m.pop("levels"), "levels"),
    ],
)
def test_validation_names_the_problem(tmp_path, mutate, message):
    tensors, meta = _parts()
    mutate(tensors, meta)
    d = _write(tmp_path, tensors, meta)
    with pytest.raises(CacheError, match=message) as err:
        CSLCache.load(d)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, row", [("features", -1), ("features", 37), ("teacher_probs", -1)])
def test_validation_in_blocks_reaches_every_row(monkeypatch, name, row):
    # The large tensors are checked a block of rows at a time (no whole-tensor copies): a bad value in any block, the
    # last one included, is found; a good cache passes with any block size.
    import csl_hf.cache.format as cache_format

    monkeypatch.setattr(cache_format, "_VALIDATE_BYTES", 50)
    cache = make_cache(n=60)
    cache.validate()
    if name == "features":
        cache.features[row, -1] = float("inf")
    else:
        cache.teacher_probs[-1, row, 0] = float("nan")
    with pytest.raises(CacheError, match="NaN or Inf"):
        cache.validate()


def test_missing_directory(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        CSLCache.load(tmp_path / "nope")


def test_save_is_atomic_and_replaces(tmp_path):
    make_cache(n=60, seed=1).save(tmp_path / "c")
    make_cache(n=80, seed=2).save(tmp_path / "c")
    assert CSLCache.load(tmp_path / "c").num_samples == 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_cache_round_trips_through_a_hub_dataset_repo(local_hub, tmp_path):
    """`CSLCache.push_to_hub` writes a dataset repo (the two cache files and a card saying what produced it);
    `CSLCache.from_pretrained` reads it back, from a branch too, and ``--cache_dir user/name`` runs on it."""
    from scripts import run_csl

    cache = make_cache(n=200, seed=3)
    cache.student = {"name_or_path": "stub-user/no-such-student"}  # does not load: the rounds train a bare head
    cache.source = {"dataset": "tiny-folder", "teachers": "teachers", "skipped_images": {"train": 1, "test": 0}}
    repo = "stub-user/tiny-cache"
    cache.push_to_hub(repo)
    assert local_hub.files(repo, repo_type="dataset") == {".gitattributes", "cache.safetensors", "cache.json",
                                                         "README.md"}
    assert local_hub.commits[-1]["repo_type"] == "dataset"
    card = (local_hub.path(repo, repo_type="dataset") / "README.md").read_text()
    train, test = int((cache.split == 0).sum()), int((cache.split == 1).sum())
    for line in ("viewer: false", "# CSL cache: 200 images x 6 teachers", "- student: `stub-user/no-such-student` (features of width 16",
                 "- dataset: `tiny-folder`", f"- sizes: {train} weak-to-strong training images, {test} test images, "
                 "6 classes; unreadable images skipped: {'train': 1, 'test': 0}", "| 2 | ",
                 f"CSLCache.from_pretrained({repo!r})", f"csl-hf run --cache_dir {repo}"):
        assert line in card, line
    back = CSLCache.from_pretrained(repo)
    assert torch.equal(back.features, cache.features) and torch.equal(back.teacher_probs, cache.teacher_probs)
    assert (back.levels, back.specialties, back.source, back.student["name_or_path"]) == \
        (cache.levels, cache.specialties, cache.source, "stub-user/no-such-student")

    make_cache(n=100, seed=4).to_compact(2).push_to_hub(repo, revision="compact")
    assert CSLCache.from_pretrained(repo, revision="compact").topk_probs.shape == (6, 100, 2)
    assert CSLCache.from_pretrained(repo).num_samples == 200  # main untouched

    report = run_csl.main(["--cache_dir", repo, "--output_dir", str(tmp_path / "out"), "--num_train_epochs", "1",
                           "--disable_tqdm", "True", "--compare_label_types", "False", "--report_to", "none",
                           "--baselines", "none"])
    assert len(report["rounds"]) == 3

    with pytest.raises(CacheError, match="'stub-user/no-such-cache' is neither a local cache directory nor a dataset "
                                         "repo") as err:
        CSLCache.from_pretrained("stub-user/no-such-cache")
    assert "\n" not in str(err.value)
    with pytest.raises(CacheError, match="does not exist"):  # a local path stays a local path
        CSLCache.from_pretrained(tmp_path / "nope")


def test_labeling_rows_fill_one_tensor_when_the_count_is_known_and_chunks_otherwise():
    from csl_hf.cache.labeling import _Rows

    batches = [torch.arange(i * 30, i * 30 + 30, dtype=torch.float32).reshape(10, 3) for i in range(7)]
    expected = torch.cat(batches)
    known, unknown, short = _Rows(capacity=70), _Rows(chunk_bytes=64), _Rows(capacity=25)
    for b in batches:
        for rows in (known, unknown, short):
            rows.add("features", b)
    first = known.chunks["features"][0]
    out = known.pop("features")
    # the known count: one tensor filled in place, returned as a view (no second copy of the column at the end)
    assert out.data_ptr() == first.data_ptr() and torch.equal(out, expected)
    assert torch.equal(unknown.pop("features"), expected)  # a stream: chunks, concatenated once
    assert torch.equal(short.pop("features"), expected)  # more rows than expected (an estimate): chunks follow
    assert known.pop("labels") is None


def test_the_cache_card_names_a_local_dataset_without_its_path(tmp_path):
    # cache.json keeps the path (the reuse check compares it); the card pushed to the Hub names the folder only
    from csl_hf.cache.hub import cache_card

    cache = make_cache(n=40, seed=1)
    for where in ("/home/someone/photos", "./photos", str(tmp_path / "photos"), "~/photos"):
        cache.source = {"dataset": where}
        card = cache_card(cache, "user/c")
        assert "- dataset: `photos` (a local dataset; its path is not on the card)" in card and where not in card
    cache.source = {"dataset": "user/photos"}
    assert "- dataset: `user/photos`" in cache_card(cache, "user/c")
