"""Hub-ready outputs: the CSL model card and pushing a run (rounds on branches, final student on main) to the
`local_hub` fake (tests/hub_stub.py); TeacherMixture push/load round trip."""

import json
import os
import shutil

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from transformers import (
    AutoModel,
    AutoModelForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    pipeline,
)

from csl_hf import TeacherMixture
from csl_hf.errors import CSLError
from csl_hf.outputs.hub import push_csl_outputs
from csl_hf.outputs.model_card import CITATION, create_csl_model_card, write_model_card, write_run_model_cards
from csl_hf.outputs.report import format_report_table, plot_pgr


ID2LABEL = {0: "cat", 1: "dog", 2: "bird"}
TEACHER_NAMES = ["generalist", "specialist-a", "specialist-b"]
LEVELS = [[0], [1, 2]]


def tiny_vit(seed: int, num_labels: int = 3, id2label=None) -> ViTForImageClassification:
    id2label = id2label or ({i: f"class_{i}" for i in range(num_labels)})
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
                       patch_size=8, num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(seed)
    return ViTForImageClassification(config).eval()


def make_report() -> dict:
    return {
        "weak_accuracy": 0.5,
        "ceiling_accuracy": 0.9,
        "seed": 7,
        "config": {"assignment": "auto", "denoise": "top3", "soft_labels": False, "learning_rate": 0.001,
                   "num_train_epochs": 3, "levels": LEVELS, "teacher_names": TEACHER_NAMES, "student": "tiny-vit"},
        "rounds": [
            {"level": 0, "num_teachers": 1, "assignment": "none", "teacher_accuracy": 0.55, "keep_rate": 1.0,
             "precision": 0.55, "recall": 1.0, "student_accuracy": 0.62, "pgr": 30.0},
            {"level": 1, "num_teachers": 2, "assignment": "student", "teacher_accuracy": 0.7, "keep_rate": 0.8,
             "precision": 0.8, "recall": 0.9, "student_accuracy": 0.7, "pgr": 50.0},
        ],
    }


@torch.no_grad()
def logits(model, pixels):
    return model(pixel_values=pixels).logits


@pytest.fixture
def output_dir(tmp_path):
    """A fake CSL output_dir: round-0/, round-1/, the final student (= round 1) at the root, report, card, plot,
    plus what must never be pushed: other folders (teachers/, cache/, a finalize temp dir, any folder: main's "*.png"
    and "*.safetensors" also match inside folders), files main does not take, hidden and temporary files (a hidden
    .png would pass main's "*.png" without the ".*" ignore)."""
    out = tmp_path / "run"
    processor = ViTImageProcessor(size={"height": 16, "width": 16}, do_resize=True)
    models = {0: tiny_vit(0, id2label=ID2LABEL), 1: tiny_vit(1, id2label=ID2LABEL)}
    report = make_report()
    for level, model in models.items():
        model.save_pretrained(out / f"round-{level}")
        processor.save_pretrained(out / f"round-{level}")
        (out / f"round-{level}" / "csl_round.json").write_text(json.dumps(report["rounds"][level]))
    models[1].save_pretrained(out)
    processor.save_pretrained(out)
    (out / "csl_report.json").write_text(json.dumps(report))
    for junk in ("teachers/model.safetensors", "cache/model.safetensors", ".final.tmp/config.json", "plots/pgr.png",
                 "training_args.bin", ".pgr-draft.png", "csl_report.json.tmp",
                 "round-0/.tmp-card.md", "round-0/model.safetensors.tmp", "round-1/.cache/x.json"):
        (out / junk).parent.mkdir(exist_ok=True)
        (out / junk).write_bytes(b"never pushed")
    return out, models, report


# What each branch must hold, exactly (.gitattributes is the Hub's, made with the repo).
ROUND_FILES = {".gitattributes", "model.safetensors", "config.json", "preprocessor_config.json", "csl_round.json"}
MAIN_FILES = {".gitattributes", "model.safetensors", "config.json", "preprocessor_config.json", "csl_report.json"}
CARD_FILES = {"README.md", "pgr.png"}


def assert_same_bytes(hub, repo_id, branch, folder):
    """Every pushed file of `branch` is byte-for-byte the file of the same name in `folder`."""
    remote = hub.path(repo_id, branch)
    for name in hub.files(repo_id, branch) - {".gitattributes"}:
        assert (remote / name).read_bytes() == (folder / name).read_bytes(), f"{branch}: {name}"


def test_model_card_content(tmp_path):
    report = make_report()
    plot = str(tmp_path / "pgr.png")
    card = create_csl_model_card(report, "google/vit-base-patch16-224", "animal-mnist", TEACHER_NAMES, LEVELS,
                                 hub_model_id="me/csl-vit", plot_path=plot)
    assert isinstance(card, ModelCard)
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "google/vit-base-patch16-224"
    assert meta["datasets"] == ["animal-mnist"]
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "image-classification"
    assert set(meta["tags"]) == {"co-supervised-learning", "weak-to-strong", "csl_hf", "image-classification"}
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"accuracy": 0.7, "pgr": 50.0}  # the final round's numbers, nothing else
    text = card.text
    for row in format_report_table(report, markdown=True).splitlines()[2:]:
        assert row in text  # the per-round table with PGR
    assert "| 1 | 2 | specialist-a \\| specialist-b |" in text  # teachers and levels
    assert "`denoise` | top3" in text  # CSL settings from report["config"]
    assert "![PGR](pgr.png)" in text
    assert 'pipeline("image-classification", model="me/csl-vit")' in text
    assert CITATION in text and "arXiv:2402.15505" in text and "Liu, Yuejiang and Alahi, Alexandre" in text
    # a round-trip through README.md keeps metadata and text
    path = write_model_card(str(tmp_path / "card"), card)
    assert os.listdir(tmp_path / "card") == ["README.md"]  # no temp file left behind
    loaded = ModelCard.load(path)
    assert loaded.data.tags == card.data.tags and loaded.text.strip() == text.strip()

    assert 'from_pretrained("me/csl-vit", revision="round-1")' in text  # pushed: rounds are branches

    # local paths stay out of base_model metadata; no dataset -> no model-index; no plot -> no image
    bare = create_csl_model_card(report, str(tmp_path), None, TEACHER_NAMES, LEVELS)
    assert "base_model" not in bare.data.to_dict() and "model-index" not in bare.data.to_dict()
    assert "![PGR]" not in bare.text and str(tmp_path) in bare.text
    # a local card never points at Hub branches that were not pushed: it names the round directories
    assert "revision=" not in bare.text and "round-1/" in bare.text
    # a checkpoint with its own modeling code: the snippets pass trust_remote_code=True
    remote = create_csl_model_card(report, None, None, TEACHER_NAMES, LEVELS, trust_remote_code=True)
    assert "trust_remote_code=True" in remote.text and "trust_remote_code" not in bare.text
    with pytest.raises(CSLError, match="level 1 references teacher 2"):
        create_csl_model_card(report, None, None, TEACHER_NAMES[:2], LEVELS)


def test_push_csl_outputs_round_trip(local_hub, output_dir):
    """Each round on its own branch, the final student and its card on main, nothing else; all reloads as pushed."""
    out, models, report = output_dir
    plot_pgr({"hard labels": report}, str(out / "pgr.png"), title="CSL on animal-mnist")
    write_run_model_cards(str(out), dataset_name="animal-mnist", hub_model_id="stub-user/csl-tiny")
    assert (out / "README.md").is_file() and (out / "round-1" / "README.md").is_file()

    result = push_csl_outputs(str(out), "csl-tiny", private=True)  # no namespace: the Hub adds the user's
    repo_id = "stub-user/csl-tiny"
    assert local_hub.calls["create_repo"].call_args.kwargs["private"] is True
    assert local_hub.branches(repo_id) == set(result) == {"main", "round-0", "round-1"}
    assert all(result[b].oid == local_hub.sha(repo_id, b) for b in result)  # the commit each push made
    assert local_hub.files(repo_id, "main") == MAIN_FILES | CARD_FILES
    assert local_hub.files(repo_id, "round-0") == local_hub.files(repo_id, "round-1") == ROUND_FILES | {"README.md"}
    for branch, folder in (("main", out), ("round-0", out / "round-0"), ("round-1", out / "round-1")):
        assert_same_bytes(local_hub, repo_id, branch, folder)

    # ...and it loads back by repo id and revision, as a user would
    remote_card = ModelCard.load(repo_id)
    assert "csl_hf" in remote_card.data.tags and "![PGR](pgr.png)" in remote_card.text
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for revision, local in (("round-0", models[0]), ("round-1", models[1]), ("main", models[1])):
        remote = AutoModelForImageClassification.from_pretrained(repo_id, revision=revision).eval()
        assert torch.equal(logits(remote, pixels), logits(local, pixels)), revision  # bit-identical
        assert remote.config.id2label == ID2LABEL
    classifier = pipeline("image-classification", model=repo_id, revision="round-1", device="cpu")
    preds = classifier(Image.new("RGB", (20, 20), (200, 30, 30)), top_k=3)
    assert {p["label"] for p in preds} == set(ID2LABEL.values())


def test_push_csl_outputs_again_leaves_each_branch_exactly_its_folder(local_hub, output_dir):
    """Re-pushing is safe, and a round branch never keeps files its folder no longer has: neither files of an
    earlier push nor main's files, which a branch created from main starts with."""
    out, _, _ = output_dir
    repo_id = "stub-user/csl-tiny"
    push_csl_outputs(str(out), repo_id)
    (out / "round-1" / "csl_round.json").unlink()  # gone since the first push
    shutil.copytree(out / "round-1", out / "round-2")  # a new round: its branch is created from main

    again = push_csl_outputs(str(out), repo_id)
    assert local_hub.branches(repo_id) == set(again) == {"main", "round-0", "round-1", "round-2"}
    assert local_hub.files(repo_id, "round-0") == ROUND_FILES
    assert local_hub.files(repo_id, "round-1") == ROUND_FILES - {"csl_round.json"}
    assert local_hub.files(repo_id, "round-2") == ROUND_FILES - {"csl_round.json"}
    assert local_hub.files(repo_id, "main") == MAIN_FILES
    for level in (0, 1, 2):
        assert_same_bytes(local_hub, repo_id, f"round-{level}", out / f"round-{level}")
    deleted = {c["branch"]: set(c["deleted"]) for c in local_hub.commits[-4:]}  # the second push's commits
    assert deleted["round-1"] == {"csl_round.json"}
    assert deleted["round-2"] == {"csl_report.json"}  # inherited from main, then removed


def test_teacher_mixture_push_and_load(local_hub):
    g, s1, s2 = (tiny_vit(seed, num_labels=4) for seed in (10, 11, 12))
    mixture = TeacherMixture.from_teachers(
        [g, s1, s2], specialties=[{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}],
        levels=[[0], [1, 2]], teacher_names=TEACHER_NAMES,
    )
    mixture.push_to_hub("stub-user/tiny-teachers")  # transformers' push_to_hub: its own HfApi, create_commit
    assert {"config.json", "model.safetensors"} <= local_hub.files("stub-user/tiny-teachers")
    loaded = AutoModel.from_pretrained("stub-user/tiny-teachers").eval()
    assert isinstance(loaded, TeacherMixture)
    assert loaded.config.levels == [[0], [1, 2]] and loaded.config.teacher_names == TEACHER_NAMES
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = mixture(pixel_values=pixels).probs, loaded(pixel_values=pixels).probs
    assert torch.equal(got, expected)
    assert torch.all(got[:, 1, 2:] == 0) and torch.all(got[:, 2, :2] == 0)  # specialists masked to their classes


def test_push_rejects_a_directory_without_outputs(tmp_path):
    with pytest.raises(CSLError, match="neither round"):
        push_csl_outputs(str(tmp_path), "stub-user/nothing")


# ------------------------------------------------------------------------------------------------ teachers on the Hub
SHIPPED_CODE = {"configuration_teacher_mixture.py", "modeling_teacher_mixture.py", "hierarchy_rules.py",
                "hub_teacher_mixture.py"}


def test_teacher_mixture_ships_its_code_and_card_and_loads_without_csl_hf(local_hub, tmp_path):
    """`mixture.push_to_hub` puts weights, config (auto_map), the modeling code and a model card on the repo in one
    commit; a fresh interpreter in which csl_hf cannot even be imported loads it with trust_remote_code=True, gets the
    same probabilities, and re-saves the same card."""
    import subprocess
    import sys

    from csl_hf.data.preprocessing import Preprocessing

    g, s1, s2 = (tiny_vit(seed, num_labels=4) for seed in (20, 21, 22))
    mixture = TeacherMixture.from_teachers(
        [g, s1, s2], specialties=[{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}],
        levels=[[0], [1, 2]], teacher_names=TEACHER_NAMES, preprocessing=[Preprocessing(size=(16, 16))] * 3)
    mixture.config.training_data = {"dataset": "tiny-folder", "num_images": 12, "split_seed": 3, "num_rows": 40,
                                    "example_ids": list(range(12)), "specialties": "blocks"}
    repo = "stub-user/shipped-teachers"
    mixture.push_to_hub(repo)
    assert local_hub.files(repo) == {".gitattributes", "config.json", "model.safetensors", "README.md", *SHIPPED_CODE}
    assert [c["branch"] for c in local_hub.commits] == ["main", "main"]  # the repo's first commit, then one push
    config = json.loads((local_hub.path(repo) / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_teacher_mixture.TeacherMixtureConfig",
                                  "AutoModel": "modeling_teacher_mixture.TeacherMixture"}
    card = (local_hub.path(repo) / "README.md").read_text()
    for line in ("| 0 | generalist | all 4 classes | vit | 16x16 |",
                 "| 1 | specialist-a | 2 classes: class_0, class_1 | vit | 16x16 |",
                 "- dataset: `tiny-folder`", "- source rows: 12 of 40, split seed 3",
                 f"AutoModel.from_pretrained({repo!r}, trust_remote_code=True)",
                 f"--teachers_name_or_path {repo}"):
        assert line in card, line

    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.save({"pixels": pixels, "probs": mixture(pixel_values=pixels).probs}, tmp_path / "expected.pt")
    code = f"""
import sys
sys.modules["csl_hf"] = None  # from here on, any import of csl_hf raises ImportError
import torch
from transformers import AutoModel
m = AutoModel.from_pretrained({repo!r}, trust_remote_code=True).eval()
assert type(m).__module__.startswith("transformers_modules."), type(m).__module__
expected = torch.load("expected.pt")
with torch.no_grad():
    assert torch.equal(m(pixel_values=expected["pixels"]).probs, expected["probs"])
try:
    m.preprocessings()
except ImportError as err:
    assert "pip install csl_hf" in str(err), err
else:
    raise AssertionError("preprocessings() worked without csl_hf")
m.save_pretrained("resaved")
print(sorted(k for k in sys.modules if k.startswith("csl_hf")))
"""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "['csl_hf']"  # only the blocker: nothing of csl_hf was imported
    resaved = tmp_path / "resaved"
    assert SHIPPED_CODE <= set(os.listdir(resaved))
    assert (resaved / "README.md").read_text() == card.replace(repo, "resaved")


def test_a_run_takes_its_teachers_from_a_hub_repo(local_hub, tmp_path, capsys):
    """``--teachers_name_or_path user/name`` loads a pushed mixture (no teacher is trained); a repo that is not
    there is one line naming it."""
    from scripts import run_csl

    from csl_hf.data.preprocessing import Preprocessing

    folder = tmp_path / "images"
    for c, name in enumerate(("a", "b")):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20, 20), (200 * c, 30 * i, 100)).save(folder / name / f"{i}.png")
    id2label = {0: "a", 1: "b"}
    teacher = tiny_vit(30, num_labels=2, id2label=id2label)
    mixture = TeacherMixture.from_teachers([teacher], [{"classes": [0, 1]}], [[0]], teacher_names=["g"],
                                           preprocessing=[Preprocessing(size=(16, 16))])
    mixture.push_to_hub("stub-user/folder-teachers")
    out = tmp_path / "out"
    common = ["--dataset_name", str(folder), "--student_model_name_or_path", "tiny-vit", "--teacher_size", "4",
              "--test_size", "4", "--num_train_epochs", "1", "--disable_tqdm", "True", "--compare_label_types",
              "False", "--report_to", "none"]
    report = run_csl.main([*common, "--teachers_name_or_path", "stub-user/folder-teachers", "--output_dir", str(out)])
    assert [r["level"] for r in report["rounds"]] == [0]
    used = TeacherMixture.from_pretrained(out / "teachers")  # the run keeps the teachers it labeled with
    assert torch.equal(used.teachers[0].classifier.weight, teacher.classifier.weight)
    assert (out / "teachers" / "README.md").is_file()  # with their card
    capsys.readouterr()
    rc = run_csl.cli([*common, "--teachers_name_or_path", "stub-user/no-such-teachers", "--output_dir",
                      str(tmp_path / "out2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: cannot load the teachers 'stub-user/no-such-teachers'"), err
    assert "the Hub repo id they were pushed to" in err[-1]
