"""Teacher heads on one shared frozen backbone (csl_hf.teachers.backbone), the ImageNet recipe's --tiny run, the GPU
smoke check on CPU, and the accelerate configs in examples/configs/."""

import glob
import json
import os

import datasets
import pytest
import torch
from PIL import Image
from transformers import ConvNextConfig, ConvNextModel

from csl_hf import TeacherMixture, TeacherTrainingArguments, train_backbone_heads, train_teacher_hierarchy
from csl_hf.method.hierarchy import class_hierarchy
from csl_hf.errors import CSLError
from csl_hf.data.preprocessing import Preprocessing

from scripts import ROOT, load_example

PREP = Preprocessing(size=(16, 16), image_mean=(0.5,) * 3, image_std=(0.5,) * 3)


def tiny_backbone():
    torch.manual_seed(0)
    return ConvNextModel(ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                                        patch_size=4, image_size=16)).eval()


def budget(steps, **overrides):
    """The heads' arguments: the same dataclass as independent teachers'."""
    return TeacherTrainingArguments(teacher_steps=steps, teacher_learning_rate=1e-2, teacher_batch_size=8, **overrides)


def random_images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def test_heads_sizes_masking_and_one_backbone_pass():
    images, labels = random_images()
    specialties, levels = class_hierarchy(10, [1, 2, 5])
    mixture = train_backbone_heads(tiny_backbone(), images, budget(5), preprocessing=PREP, labels=labels,
                                   id2label=[f"c{i}" for i in range(10)], specialties=specialties, levels=levels)
    assert isinstance(mixture, TeacherMixture) and mixture.config.shares_backbone
    assert [h.out_features for h in mixture.heads] == [10, 5, 5, 2, 2, 2, 2, 2]
    assert len({h.in_features for h in mixture.heads}) == 1
    assert all(not p.requires_grad for p in mixture.backbone.parameters())
    assert mixture.config.teacher_names[:4] == ["generalist", "c0, c1, c2, c3, c4", "c5, c6, c7, c8, c9", "c0, c1"]
    assert mixture.preprocessings()[0] == PREP  # the labeling pass feeds the backbone what the heads saw

    calls = []
    hook = mixture.backbone.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = mixture(pixel_values_per_teacher=[PREP(images[:12])] * mixture.config.num_teachers)
    hook.remove()
    assert len(calls) == 1  # 8 teachers, one backbone pass
    probs = out.probs
    assert probs.shape == (12, 8, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(12, 8))
    for k, spec in enumerate(specialties):
        outside = torch.ones(10, dtype=torch.bool)
        outside[spec["classes"]] = False
        assert torch.all(probs[:, k, outside] == 0), k  # exactly zero outside a specialist's block
        assert torch.all(probs[:, k, ~outside] > 0), k


def test_dataset_input_equals_tensor_input_and_reload(tmp_path):
    images, labels = random_images(seed=1)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    ds = datasets.Dataset.from_dict({"image": pil, "label": labels.tolist()},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "label": datasets.ClassLabel(num_classes=10)}))
    specialties, levels = class_hierarchy(10, [1, 2])
    kw = dict(preprocessing=PREP, specialties=specialties, levels=levels)
    from_ds = train_backbone_heads(tiny_backbone(), ds, budget(3, teacher_feature_batch_size=16), **kw)
    from_tensor = train_backbone_heads(tiny_backbone(), images, budget(3), labels=labels, **kw)
    for a, b in zip(from_ds.heads, from_tensor.heads):
        torch.testing.assert_close(a.weight, b.weight)
    from_ds.save_pretrained(tmp_path / "t")
    again = TeacherMixture.from_pretrained(tmp_path / "t")
    x = PREP(images[:4])
    torch.testing.assert_close(again(pixel_values=x).probs, from_ds(pixel_values=x).probs)


def test_specialist_without_samples_is_a_clear_error():
    images, labels = random_images()
    specialties, levels = class_hierarchy(10, [1, 2])
    with pytest.raises(CSLError, match="no training sample"):
        train_backbone_heads(tiny_backbone(), images, budget(1), labels=labels.clamp(max=4), preprocessing=PREP,
                             specialties=specialties, levels=levels)  # classes 5-9 never appear


def test_one_call_shape_for_heads_on_a_backbone_and_independent_teachers():
    """train_teacher_hierarchy builds heads on a shared backbone from the same arguments as independent teachers,
    with the hierarchy from the same flags (blocks, or auto: the classes the generalist head confuses)."""
    images, labels = random_images(n=60, seed=2)
    ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images], "label": labels.tolist()},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}))
    for specialties in ("blocks", "auto"):
        args = budget(3, teachers_per_level="1,2,5", specialties=specialties, teacher_backbone="tiny-convnext",
                      teacher_image_size=16)
        heads = train_teacher_hierarchy(ds, args)
        assert heads.config.shares_backbone and [h.out_features for h in heads.heads] == [10, 5, 5, 2, 2, 2, 2, 2]
        assert heads.config.training_data["specialties"].startswith(specialties)
        independent = train_teacher_hierarchy(ds, TeacherTrainingArguments(
            teacher_steps=3, teachers_per_level="1,2,5", specialties=specialties, teacher_image_size=16))
        assert not independent.config.shares_backbone and independent.config.num_teachers == heads.config.num_teachers
    blocks = [s["classes"] for s in heads.config.specialties]
    assert sorted(c for s in blocks[3:] for c in s) == list(range(10))
    with pytest.raises(CSLError, match="--teacher_domain_level needs independent teachers"):
        TeacherTrainingArguments(teacher_backbone="tiny-convnext", teacher_domain_level=True)


def test_imagenet_recipe_tiny_end_to_end(tmp_path):
    imagenet_recipe = load_example("imagenet_recipe")

    out = tmp_path / "recipe"
    summary = imagenet_recipe.main([
        os.path.join(ROOT, "examples", "configs", "imagenet_recipe_tiny.yaml"), "--output_dir", str(out),
        "--teacher_train_size", "200", "--w2s_train_size", "200", "--test_size", "100", "--teacher_steps", "5",
        "--num_train_epochs", "1", "--disable_tqdm", "True", "--log_level", "warning", "--student_image_size", "16",
        "--teacher_image_size", "16",
    ])
    report = json.loads((out / "csl_report.json").read_text())
    soft = json.loads((out / "soft_labels" / "csl_report.json").read_text())
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2, 5]
    assert report["config"]["soft_labels"] is False and soft["config"]["soft_labels"] is True
    assert report["config"]["denoise"] == "top3" and report["config"]["per_device_train_batch_size"] == 100
    assert summary["teachers_per_level"] == [1, 2, 5] and set(summary["pgr"]) == {"hard labels", "soft labels"}
    assert (out / "teachers" / "config.json").is_file() and (out / "cache" / "cache.safetensors").is_file()
    assert json.loads((out / "recipe_summary.json").read_text())["num_images"]["train"] == 200
    mixture = TeacherMixture.from_pretrained(out / "teachers")
    assert mixture.config.shares_backbone and [h.out_features for h in mixture.heads] == [10, 5, 5, 2, 2, 2, 2, 2]


def test_imagenet_recipe_defaults_are_the_papers():
    from csl_hf.cli.arguments import parse_run_args

    imagenet_recipe = load_example("imagenet_recipe")

    recipe = os.path.join(ROOT, "examples", "configs", "imagenet_recipe.yaml")
    data, model, teachers, args = parse_run_args(imagenet_recipe.build_parser(), [recipe])
    assert model.student_model_name_or_path == "facebook/dinov2-small" and teachers.teachers_per_level == "1,2,4,8"
    assert teachers.specialties == "blocks" and teachers.teacher_backbone and model.compare_label_types is True
    assert (args.learning_rate, args.weight_decay, args.per_device_train_batch_size, args.num_train_epochs) == (1e-4, 0.0, 100, 20)
    assert args.denoise == "top3" and "cosine" in str(args.lr_scheduler_type).lower() and args.labeling_bf16
    with pytest.raises(CSLError, match="unknown key"):
        bad = os.path.join(os.path.dirname(__file__), "..", "examples", "configs", "accelerate", "single_gpu.yaml")
        parse_run_args(imagenet_recipe.build_parser(), [bad])


def test_gpu_smoke_runs_on_cpu(tmp_path, capsys, monkeypatch):
    gpu_smoke = load_example("gpu_smoke", "benchmarks")

    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")  # gpu_smoke sets it for --device cpu; restored after the test

    result = gpu_smoke.main(["--device", "cpu", "--num_images", "64", "--num_teacher_images", "40", "--batch_size", "32",
                             "--throughput_iters", "2", "--teacher_steps", "3", "--epochs", "1",
                             "--output_dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "SMOKE OK" in printed and "images/s" in printed and "optimizer steps/s" in printed
    assert result["backbone_passes_per_batch"] == 1 and result["round_optimizer_steps"] > 0
    assert json.loads((tmp_path / "gpu_smoke.json").read_text())["labeling_images_per_s"] > 0


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(ROOT, "examples", "configs", "accelerate", "*.yaml"))
                                        if not p.endswith("imagenet_recipe.yaml")))
def test_accelerate_configs_load_and_validate(path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    config = load_config_from_file(path)  # raises on unknown keys
    parser = launch_command_parser()
    fsdp_flags = {a.dest for a in parser._actions if a.dest.startswith("fsdp_")}
    assert set(config.fsdp_config) <= fsdp_flags
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", path, "script.py"]))
    assert args.num_processes == config.num_processes
    name = os.path.basename(path)
    expected = {"single_gpu.yaml": 1, "multi_gpu_ddp.yaml": 8, "multi_node.yaml": 16, "fsdp.yaml": 8, "cpu_2proc.yaml": 2}
    assert config.num_processes == expected[name]
    if name == "multi_node.yaml":
        assert config.num_machines == 2 and config.main_process_ip and config.main_process_port
    if name == "fsdp.yaml":
        assert args.use_fsdp
