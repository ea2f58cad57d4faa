"""How good the weak teachers are: each teacher's accuracy inside its specialty (its classes, its domain, everything
for the generalist), beside the generalist's accuracy on the same samples (the capability gap co-supervision
exploits). One computation, `specialty_accuracies`, serves images (`evaluate_teachers`) and caches
(`cache_teacher_accuracies`)."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import torch

from ..cache.format import TEST_SPLIT, CSLCache
from ..data import class_names, infer_columns
from ..data.images import preprocess_images
from ..data.targets import raw_images
from ..errors import CSLError
from ..models.teacher_mixture.modeling_teacher_mixture import TeacherMixture

__all__ = ["specialty_accuracies", "evaluate_teachers", "evaluate_teachers_detailed", "cache_teacher_accuracies",
           "gate_accuracies"]


def specialty_accuracies(predictions: torch.Tensor, labels: torch.Tensor, specialties: Sequence[dict],
                         generalist: int, domains: torch.Tensor | None = None,
                         domain_names: Sequence[str] | None = None) -> list[dict]:
    """Per teacher: ``{"num_samples", "accuracy", "generalist_accuracy"}`` on the samples of its specialty.

    Args:
        predictions: ``[N, K]`` each teacher's predicted class per sample.
        labels: ``[N]`` ground truth (``-1`` unknown: never counted).
        specialties: one per teacher (``{"classes": [...]}`` or ``{"domain": name}``).
        generalist: index of the level-0 teacher.
        domains, domain_names: ``[N]`` domain ids and their names (needed for domain specialists).
    Returns:
        One dict per teacher; ``accuracy``/``generalist_accuracy`` are ``None`` where the specialty has no sample.
    Raises:
        `CSLError`: a domain specialist whose domain the samples do not have.
    """
    known = labels >= 0
    results = []
    for k, spec in enumerate(specialties):
        if "domain" in spec:
            if domains is None or spec["domain"] not in (domain_names or []):
                raise CSLError(f"teacher {k} specialises in domain {spec['domain']!r}, which the data lacks "
                               f"(domains: {list(domain_names or [])})")
            keep = domains == list(domain_names).index(spec["domain"])
        else:
            keep = torch.isin(labels, torch.as_tensor(spec["classes"], dtype=torch.long))
        keep = keep & known
        n = int(keep.sum())
        results.append({
            "num_samples": n,
            "accuracy": float((predictions[keep, k] == labels[keep]).float().mean()) if n else None,
            "generalist_accuracy": float((predictions[keep, generalist] == labels[keep]).float().mean()) if n else None,
        })
    return results


@torch.no_grad()
def evaluate_teachers_detailed(mixture: TeacherMixture, dataset: datasets.Dataset, batch_size: int = 256) -> list[dict]:
    """Per teacher: ``{"name", "specialty", "num_samples", "accuracy", "generalist_accuracy"}`` on the images of
    ``dataset`` (e.g. the test split), plus ``membership_accuracy`` (`gate_accuracies`) for specialists with a gate
    teacher. Images are decoded batch by batch at the teachers' input sizes; bad images are skipped.

    Raises:
        `CSLError`: the dataset's classes differ from the teachers', or a domain the dataset lacks.
    """
    try:
        image_col, label_col, domain_col = infer_columns(dataset)
        names = class_names(dataset, label_col)
    except ValueError as e:
        raise CSLError(str(e)) from None
    if len(names) != mixture.config.num_labels:
        raise CSLError(f"the dataset has {len(names)} classes but the teachers have {mixture.config.num_labels}")
    preps, gate_preps = mixture.preprocessings(), mixture.gate_preprocessings()
    if any(p is None for p in preps + gate_preps):
        raise CSLError("evaluating teachers on images needs each teacher's preprocessing in the mixture's config")
    dataset = raw_images(dataset, image_col)
    mixture.eval()
    predictions, labels, domains, in_specialty = [], [], [], []
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start : start + batch_size]
        decoded = preprocess_images(batch[image_col], preps + gate_preps)
        if not decoded.kept:
            continue
        out = mixture(pixel_values_per_teacher=[decoded.pixel_values[p] for p in preps],
                      pixel_values_per_gate=[decoded.pixel_values[p] for p in gate_preps] or None)
        predictions.append(out.probs.argmax(-1))  # [B, K]
        if out.in_specialty is not None:
            in_specialty.append(out.in_specialty)
        labels += [batch[label_col][i] for i in decoded.kept]
        if domain_col is not None:
            domains += [batch[domain_col][i] for i in decoded.kept]
    domain_names = None
    if domain_col is not None:
        feature = dataset.features[domain_col]
        domain_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else sorted({str(d) for d in domains})
        if not isinstance(feature, datasets.ClassLabel):
            domains = [domain_names.index(str(d)) for d in domains]
    results = specialty_accuracies(
        torch.cat(predictions), torch.as_tensor(labels, dtype=torch.long), mixture.config.specialties,
        mixture.config.levels[0][0], torch.as_tensor(domains, dtype=torch.long) if domain_col else None, domain_names)
    for k, r in enumerate(results):
        r.update(name=mixture.config.teacher_names[k], specialty=dict(mixture.config.specialties[k]))
    if in_specialty:
        for gate in gate_accuracies(torch.cat(in_specialty).T, torch.as_tensor(labels, dtype=torch.long),
                                    mixture.config.specialties, mixture.config.gate_specialists):
            results[gate["teacher"]]["membership_accuracy"] = gate["membership_accuracy"]
    return results


def gate_accuracies(in_specialty: torch.Tensor, labels: torch.Tensor, specialties: Sequence[dict],
                    gate_specialists: Sequence[int]) -> list[dict]:
    """How well each gate teacher tells its specialty from the rest: per gated specialist ``{"teacher",
    "membership_accuracy", "num_samples"}``, the share of labelled samples where ``in_specialty > 0.5`` agrees with
    "the true class is in the specialty" (``None`` without labelled samples).

    Args:
        in_specialty: ``[K, N]`` (a cache's ``in_specialty``); labels: ``[N]`` (``-1`` unknown: never counted).
    """
    known = labels >= 0
    out = []
    for k in gate_specialists:
        inside = torch.isin(labels, torch.as_tensor(specialties[k]["classes"], dtype=torch.long))
        hit = ((in_specialty[k].float() > 0.5) == inside)[known]
        out.append({"teacher": int(k), "num_samples": int(known.sum()),
                    "membership_accuracy": float(hit.float().mean()) if len(hit) else None})
    return out


def evaluate_teachers(mixture: TeacherMixture, dataset: datasets.Dataset, batch_size: int = 256) -> list[float]:
    """Accuracy of each teacher on the samples of its specialty (``nan`` where the specialty has no samples)."""
    return [float("nan") if r["accuracy"] is None else r["accuracy"]
            for r in evaluate_teachers_detailed(mixture, dataset, batch_size)]


def cache_teacher_accuracies(cache: CSLCache) -> list[dict]:
    """`specialty_accuracies` on the cache's test split, from the outputs the labeling pass stored (no second pass over
    the images: the only way for a streamed test split, which is read once)."""
    rows = cache.rows(TEST_SPLIT)
    predictions = torch.stack([cache.probs(k, rows).argmax(-1) for k in range(cache.num_teachers)], dim=1)  # [n, K]
    domains = cache.domains[rows] if cache.domains is not None else None
    return specialty_accuracies(predictions, cache.labels[rows], cache.specialties, cache.levels[0][0], domains,
                                cache.domain_names)
