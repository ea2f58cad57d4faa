"""`TeacherTrainingArguments`: how the weak teachers are built and trained (every field is a command-line flag)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CSLError
from ..method.hierarchy import check_teachers_per_level, parse_int_list
from ..data.preprocessing import Preprocessing

__all__ = ["TeacherTrainingArguments", "teacher_preprocessing", "ARCHITECTURES"]

ARCHITECTURES = ("convnext", "vit")


@dataclass
class TeacherTrainingArguments:
    """How to build and train the weak teachers. Every field is a command-line flag under `HfArgumentParser`.

    One dataclass for both kinds of teachers `train_teacher_hierarchy` builds: independent tiny image classifiers
    (``teacher_architecture``, the default) or linear heads on one shared frozen backbone (``teacher_backbone``, the
    paper's ImageNet setting). The hierarchy (``teachers_per_level``, ``specialties``) and the budget
    (``teacher_steps``, ``teacher_batch_size``, ``teacher_learning_rate``, ``teacher_weight_decay``, ``teacher_seed``)
    mean the same for both.

    The defaults make *weak* teachers with a wide capability gap on the bundled 28x28 sets (1,000 teacher images):
    on Animal-MNIST (10 classes) a ConvNeXt generalist at 50-61% test accuracy (3 seeds), level-1 specialists 13-23
    points better than it inside their 5-class blocks, last-level (2-class) specialists 33-44 points better; the
    whole 1,2,4,5 hierarchy trains in ~7 s on one CPU core.
    """

    teacher_architecture: str = field(
        default="convnext",
        metadata={"help": "Teacher model family, built from a config with random weights: 'convnext' "
                  "(ConvNextForImageClassification; a 50-60%% generalist on Animal-MNIST at the defaults) or 'vit' "
                  "(ViTForImageClassification; learns far slower from 28-px images).",
                  "choices": list(ARCHITECTURES)},
    )
    teacher_image_size: int = field(
        default=28, metadata={"help": "Side in pixels of the square images the teachers see (images are resized)."}
    )
    teacher_patch_size: int = field(
        default=4,
        metadata={"help": "Patch size: the ConvNeXt stem's stride/kernel or the ViT patch size. Must divide "
                  "teacher_image_size for ViT."},
    )
    teacher_hidden_sizes: str = field(
        default="16,32",
        metadata={"help": "ConvNeXt: comma-separated channel width of each stage, e.g. '16,32' (one stage per entry)."},
    )
    teacher_depths: str = field(
        default="1,1",
        metadata={"help": "ConvNeXt: comma-separated number of blocks per stage, as many entries as "
                  "teacher_hidden_sizes."},
    )
    teacher_hidden_size: int = field(default=32, metadata={"help": "ViT: hidden size (the MLP is 2x wider)."})
    teacher_num_layers: int = field(default=2, metadata={"help": "ViT: number of transformer layers."})
    teacher_num_heads: int = field(default=2, metadata={"help": "ViT: attention heads; must divide teacher_hidden_size."})
    teacher_steps: int = field(
        default=100,
        metadata={"help": "Optimiser steps of EVERY teacher (generalist and specialists get the same budget). "
                  "50-300 steps on ~1,000 images make weak teachers; fewer steps, weaker teachers."},
    )
    teacher_batch_size: int = field(
        default=32, metadata={"help": "Images per step, sampled with replacement from the teacher's own data."}
    )
    teacher_learning_rate: float = field(
        default=3e-3,
        metadata={"help": "AdamW learning rate (constant)."},
    )
    teacher_weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    teachers_per_level: str = field(
        default="1,2,4,5",
        metadata={"help": "Class specialists per level, comma-separated; the first level must be 1 (the generalist) "
                  "and no level may exceed the number of classes. Each level splits the classes into groups of "
                  "near-equal size (see --specialties). '1,2,4,5' suits 10 classes; 'auto' doubles 1,2,4,... up to "
                  "half the classes (groups of at least 2)."},
    )
    specialties: str = field(
        default="auto",
        metadata={"help": "How the classes are grouped into specialties. auto: the generalist is trained first, and "
                  "the classes it confuses on the teacher split share a specialist (balanced groups, nested across "
                  "levels; this package's extension, docs/benchmark.md). blocks: contiguous class-id blocks, the "
                  "paper's layout (right when the class order means something, e.g. ImageNet's).",
                  "choices": ["auto", "blocks"]},
    )
    teacher_backbone: str | None = field(
        default=None,
        metadata={"help": "Teachers as linear heads on ONE shared frozen backbone (the paper's ImageNet setting; "
                  "an AutoModel checkpoint or Hub id, or 'tiny-convnext', a tiny random offline stand-in) instead of "
                  "tiny image classifiers: its features of the teacher split are extracted once and every head "
                  "trains on them. The architecture flags above then do not apply."},
    )
    teacher_feature_batch_size: int = field(
        default=64, metadata={"help": "With --teacher_backbone: images per batch when extracting its features."}
    )
    teacher_domain_level: bool | None = field(
        default=None,
        metadata={"help": "True: the generalist plus one specialist per value of the data's 'domain' column (e.g. "
                  "digits_domains); False: class specialists (--teachers_per_level) even on such data."},
    )
    teacher_seed: int = field(
        default=0, metadata={"help": "Seed of the teachers' initialisation and batch sampling (teacher k uses seed+k)."}
    )
    specialty_gates: bool = field(
        default=False,
        metadata={"help": "Also train, for every class specialist, a gate teacher: the same tiny model with one extra "
                  "output 'out of specialty', trained on all teacher images with the same step budget; --assignment "
                  "oos_gate routes by its in-specialty probability (docs/routing_research.md). One more teacher per "
                  "class specialist (none for domain specialists); on by itself when a run with --assignment "
                  "oos_gate or auto (the default) trains its teachers."},
    )

    def __post_init__(self):
        if self.teacher_architecture not in ARCHITECTURES:
            raise CSLError(f"teacher_architecture={self.teacher_architecture!r} is unknown; use one of {', '.join(ARCHITECTURES)}")
        for name in ("teacher_image_size", "teacher_patch_size", "teacher_steps", "teacher_batch_size",
                     "teacher_hidden_size", "teacher_num_layers", "teacher_num_heads"):
            if int(getattr(self, name)) < 1:
                raise CSLError(f"{name}={getattr(self, name)} must be at least 1")
        if not self.teacher_learning_rate > 0:
            raise CSLError(f"teacher_learning_rate={self.teacher_learning_rate} must be positive")
        if self.teacher_feature_batch_size < 1:
            raise CSLError(f"teacher_feature_batch_size={self.teacher_feature_batch_size} must be at least 1")
        if self.teacher_backbone and (self.teacher_domain_level or self.specialty_gates):
            flag = "--teacher_domain_level" if self.teacher_domain_level else "--specialty_gates"
            raise CSLError(f"{flag} needs independent teachers, and --teacher_backbone trains class-specialist heads "
                           "on one backbone; drop one of the two")
        if self.specialty_gates and self.teacher_domain_level:
            raise CSLError("--specialty_gates gates class specialists, and --teacher_domain_level builds domain "
                           "specialists (route them with --assignment agreement); drop one of the two")
        if self.specialties not in ("auto", "blocks"):
            raise CSLError(f"--specialties {self.specialties!r} does not exist; use auto or blocks")
        if isinstance(self.teachers_per_level, (list, tuple)):
            self.teachers_per_level = ",".join(str(n) for n in self.teachers_per_level)
        check_teachers_per_level(self.teachers_per_level)  # its syntax now; the count of classes once data is read

    # ------------------------------------------------------------------------------------------------ helpers
    def builds_domain_level(self, has_domains: bool) -> bool:
        """Whether the teachers are domain specialists on data with (``has_domains``) or without a 'domain' column:
        ``teacher_domain_level`` when set, else the data decides."""
        return has_domains if self.teacher_domain_level is None else bool(self.teacher_domain_level)

    def convnext_stages(self) -> tuple[list[int], list[int]]:
        """``(hidden_sizes, depths)`` parsed from the comma-separated flags."""
        hidden = parse_int_list(self.teacher_hidden_sizes, "teacher_hidden_sizes")
        depths = parse_int_list(self.teacher_depths, "teacher_depths")
        if len(hidden) != len(depths):
            raise CSLError(f"teacher_hidden_sizes has {len(hidden)} stages but teacher_depths has {len(depths)}; give one depth per stage")
        return hidden, depths


def teacher_preprocessing(args: TeacherTrainingArguments) -> Preprocessing:
    """The teachers' input pipeline: resize to ``teacher_image_size``, scale to [0, 1], normalise to [-1, 1]."""
    s = int(args.teacher_image_size)
    return Preprocessing(size=(s, s), image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
