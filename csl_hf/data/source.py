"""`ImageSource`: the images of a CSL run (weak-to-strong training split and test split), their columns and class
names, and the student's input preprocessing, checked against the teachers and the student before any work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import torch

from ..errors import CSLError
from .labels import align_label_ids, align_labels, label_id_map, label_names, present_ids
from .loading import class_names, infer_columns
from .preprocessing import Preprocessing, ProcessorPreprocessing, preprocessing_for
from .targets import ImageTargets, StreamImageTargets

__all__ = ["ImageSource"]

_DATASET_TYPES = (datasets.Dataset, datasets.IterableDataset)


@dataclass
class ImageSource:
    """The images a `CoSupervisedTrainer` labels and, in full mode, trains on.

    Attributes:
        datasets: ``{"train": ..., "test": ...}`` map-style or streaming ``datasets``.
        image_column, label_column, domain_column: the columns (``domain_column`` is ``None`` without domains).
        class_names: the label space, in class-id order.
        preprocessing: the student's input pipeline: its image processor's (`preprocessing_for`), so the student
            learns from exactly what the processor saved with it gives at inference.
        processor: the image processor's class and settings (the cache fingerprint covers them).
        dataset_name: the data's name or path for reports and model cards (``dataset.info.dataset_name``).
    """

    datasets: dict[str, Any]
    image_column: str
    label_column: str | None
    domain_column: str | None
    class_names: list[str]
    preprocessing: Preprocessing | ProcessorPreprocessing
    dataset_name: str | None = None
    processor: dict | None = None

    @classmethod
    def from_datasets(cls, train_dataset, eval_dataset, processing_class, teachers=None, cache=None) -> "ImageSource":
        """Check and describe the two splits.

        Class ids are matched by name (`csl_hf.data.labels`): a split whose ``ClassLabel`` lists the teachers' (or
        the cache's; without either, ``train_dataset``'s) classes in another order, or only some of them (as
        ``datasets`` gives a test folder that misses a class), is renumbered to theirs.

        Raises:
            `CSLError` (one line): a split missing or not a ``datasets`` dataset, no image or label column, no
            ``processing_class``, a class the teachers (or the cache) do not know, or integer labels beyond their
            classes.
        """
        for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if not isinstance(ds, _DATASET_TYPES):
                raise CSLError(f"{name} must be a datasets.Dataset or datasets.IterableDataset of images, got "
                               f"{type(ds).__name__}; pass both the weak-to-strong split and the test split")
        if processing_class is None:
            raise CSLError("labeling images needs the student's image processor: pass processing_class= (e.g. "
                           "AutoImageProcessor.from_pretrained(student_path), or the one csl_hf.load_student returns)")
        try:
            image_col, label_col, domain_col = infer_columns(train_dataset)
            names = class_names(train_dataset, label_col)
        except ValueError as err:
            raise CSLError(f"train_dataset: {err}") from None
        reference = None
        if teachers is not None:
            reference = ("the teachers", [teachers.config.id2label[i] for i in range(teachers.config.num_labels)])
        elif cache is not None:
            reference = ("the cache", [cache.id2label[i] for i in range(cache.num_labels)])
        if reference is not None and label_names(train_dataset, label_col) is None and len(names) > len(reference[1]):
            raise CSLError(f"train_dataset has integer labels up to {len(names) - 1} and {reference[0]} know "
                           f"{len(reference[1])} classes; use teachers trained on this dataset")
        reference_what, names = reference if reference is not None else ("train_dataset", names)
        aligned = {}
        for key, what, ds in (("train", "train_dataset", train_dataset), ("test", "eval_dataset", eval_dataset)):
            try:
                split_label = infer_columns(ds)[1] if key == "test" else label_col
            except ValueError as err:
                raise CSLError(f"{what}: {err}") from None
            aligned[key] = align_labels(ds, split_label, names, what, reference_what)
        train_dataset, eval_dataset = aligned["train"], aligned["test"]
        info = getattr(train_dataset, "info", None)
        return cls(datasets={"train": train_dataset, "test": eval_dataset}, image_column=image_col,
                   label_column=label_col, domain_column=domain_col, class_names=names,
                   preprocessing=preprocessing_for(processing_class),
                   dataset_name=getattr(info, "dataset_name", None) or None, processor=_describe(processing_class))

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.class_names))

    def check_student(self, student) -> None:
        """The student must name the data's classes. A checkpoint with generic names (``LABEL_0``..., as
        ``num_labels=`` gives) is given the data's names, so its predictions are readable; other names are refused.

        Raises:
            `CSLError`: the student's class names differ from the data's.
        """
        own = {int(k): v for k, v in student.config.id2label.items()}
        if own == self.id2label:
            return
        if all(v == f"LABEL_{k}" for k, v in own.items()) and len(own) == len(self.class_names):
            student.config.id2label = self.id2label
            student.config.label2id = {v: k for k, v in self.id2label.items()}
            return
        first = next((k for k in sorted(self.id2label) if own.get(k) != self.id2label[k]), 0)
        raise CSLError(f"the student's class names differ from the data's (class {first}: {own.get(first)!r} vs "
                       f"{self.id2label[first]!r}); load the student with id2label= the data's classes (e.g. with "
                       "csl_hf.load_student)")

    @torch.no_grad()
    def student_logits(self, student, dataset, args, what: str = "eval_dataset"
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The student's logits ``[n, C]`` (float32, CPU) on the images of ``dataset`` (a ``datasets`` dataset, or a
        list of PIL images, paths or arrays), and its labels ``[n]`` in the model's class ids (a ``ClassLabel`` of
        the same classes in another order, or of some of them, is matched by name; ``None`` when it has no label
        column).

        Raises:
            `CSLError` (one line, naming ``what``): no image column, a class the model does not know, an image that
            cannot be decoded.
        """
        dataset = as_image_dataset(dataset)
        try:
            image_col, label_col, _ = infer_columns(dataset)
        except ValueError as err:
            if "no label column" not in str(err):
                raise CSLError(f"{what}: {err}") from None
            image_col, label_col = infer_columns(dataset, labels=False)[0], None
        labels, mapping = None, None
        if label_col is not None:
            names = label_names(dataset, label_col)  # the same classes in another order are matched by name
            present = present_ids(dataset, label_col) if isinstance(dataset, datasets.Dataset) and names else None
            mapping = label_id_map(names, self.class_names, f"the {what}", "the model", present=present)
        if isinstance(dataset, datasets.IterableDataset):  # one pass for the labels, one for the images
            if label_col is not None:
                labels = torch.tensor([int(ex[label_col]) for ex in dataset.select_columns([label_col])])
                count = len(labels)
            else:
                count = sum(1 for _ in dataset.select_columns([image_col]))
            images = StreamImageTargets(dataset, torch.arange(count), None, self.preprocessing, image_col)
        else:
            if label_col is not None:
                labels = torch.as_tensor(dataset[label_col], dtype=torch.long)
            images = ImageTargets(dataset, torch.arange(len(dataset)), None, self.preprocessing, image_col)
        if labels is not None:
            labels = align_label_ids(labels, mapping)
        if labels is not None and len(labels) and int(labels.max()) >= len(self.class_names):
            raise CSLError(f"the evaluation dataset has label id {int(labels.max())}, and the model has "
                           f"{len(self.class_names)} classes; cast its label column to a ClassLabel of the model's "
                           "class names")
        was_training = student.training
        student.eval()
        try:
            logits = [student(pixel_values=batch.to(args.device)).logits.float().cpu()
                      for batch in images.batches(max(1, args.per_device_eval_batch_size))]
        except ValueError as err:  # a corrupt image in a user's evaluation set
            raise CSLError(f"{what}: {err}") from None
        finally:
            student.train(was_training)
        return torch.cat(logits), labels


def as_image_dataset(images) -> datasets.Dataset | datasets.IterableDataset:
    """A ``datasets`` dataset as is; a list (or tuple) of PIL images, paths or uint8 arrays as a ``Dataset`` with one
    ``image`` column, as ``pipeline(...)`` accepts them.

    Raises:
        `CSLError`: anything else.
    """
    if isinstance(images, _DATASET_TYPES):
        return images
    if isinstance(images, (list, tuple)):
        return datasets.Dataset.from_dict({"image": list(images)}, features=datasets.Features({"image": datasets.Image()}))
    raise CSLError(f"expected a datasets.Dataset / IterableDataset or a list of images, got {type(images).__name__}")


def _describe(processor) -> dict:
    """An image processor's class and settings, as plain JSON (``to_dict`` of a transformers processor)."""
    import json

    settings = json.loads(processor.to_json_string()) if hasattr(processor, "to_json_string") else {}
    return {"class": type(processor).__name__, **settings}
