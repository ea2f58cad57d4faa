"""Read, write and validate the CSL cache (format in docs/cache.md): the seam between the labeling pass and the rounds.

A cache is a directory holding ``cache.safetensors`` (tensors) and ``cache.json`` (metadata). Teacher outputs are
stored either dense (``teacher_probs`` ``[K, N, C]``) or compact (each teacher's top-k probabilities in float16 with
their class indices: ``teacher_topk_probs`` ``[K, N, k]`` + ``teacher_topk_indices`` ``[K, N, k]``), which the rounds
read transparently through :meth:`CSLCache.probs`. A cache labeled by teachers with gate teachers also holds
``in_specialty`` ``[K, N]`` (each specialist's probability that a sample is in its specialty), which ``--assignment
oos_gate`` routes by.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..utils import staged_directory
from .schema import validate_metadata
from ..errors import CacheError

CACHE_TENSORS = "cache.safetensors"
CACHE_METADATA = "cache.json"
TRAIN_SPLIT, TEST_SPLIT = 0, 1
_VALIDATE_BYTES = 1 << 24  # bytes per block of rows when validating a large tensor (a whole-tensor check holds copies)
_PROB_SUM_TOLERANCE = 1e-2


def _row_spans(t: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, end)`` spans of ``t``'s rows (dim 0) such that ``t[start:end]`` is at most `_VALIDATE_BYTES`."""
    rows = max(1, _VALIDATE_BYTES // max(1, t[:1].numel() * t.element_size()))
    return [(start, min(start + rows, t.shape[0])) for start in range(0, t.shape[0], rows)]


@dataclass
class CSLCache:
    """Everything the rounds need, in memory.

    Attributes:
        features: ``[N, D]`` float, the student's features (the input of its classifier module).
        labels: ``[N]`` int64 ground truth, ``-1`` where unknown.
        split: ``[N]`` int8, ``0`` weak-to-strong training split, ``1`` test split.
        teacher_probs: ``[K, N, C]`` each teacher's probabilities over the global labels (dense form), or ``None``
            when the cache is compact.
        topk_probs / topk_indices: ``[K, N, k]`` compact form (float16 probabilities, int class indices).
        domains: optional ``[N]`` int64 domain id per sample (oracle assignment and diagnostics only).
        source_index: optional ``[N]`` int64 position of each row in the labeled data (train split first, then
            test), written by the labeling pass so that images can be found again (``--student_mode full``).
        source_sizes: ``{"train": n, "test": m}``, the samples read per split (skipped bad images included): test
            positions in ``source_index`` start at ``n``.
        source: where the rows come from, written by the labeling pass: ``dataset`` (name or path),
            ``skipped_images`` per split, ``teachers`` (where they are saved) and the ``fingerprint`` that tells a
            later run whether the cache holds the same data.
        in_specialty: optional ``[K, N]`` float, each teacher's probability that the sample belongs to its specialty
            (``1 - p(other)`` of its gate teacher, ``1`` for teachers without one): written when the teachers have
            gate teachers (``--specialty_gates``), read by ``--assignment oos_gate`` (`in_specialty_of`).
    """

    features: torch.Tensor
    labels: torch.Tensor
    split: torch.Tensor
    num_labels: int
    levels: list[list[int]]
    specialties: list[dict]
    teacher_probs: torch.Tensor | None = None
    topk_probs: torch.Tensor | None = None
    topk_indices: torch.Tensor | None = None
    domains: torch.Tensor | None = None
    source_index: torch.Tensor | None = None
    source_sizes: dict[str, int] | None = None
    id2label: dict[int, str] = field(default_factory=dict)
    teacher_names: list[str] = field(default_factory=list)
    domain_names: list[str] | None = None
    student: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] | None = None
    in_specialty: torch.Tensor | None = None

    def __post_init__(self):
        if not self.id2label:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        if not self.teacher_names:
            self.teacher_names = [f"teacher_{k}" for k in range(self.num_teachers)]

    # ---------------------------------------------------------------------------------------------- views
    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_teachers(self) -> int:
        source = self.teacher_probs if self.teacher_probs is not None else self.topk_probs
        return int(source.shape[0])

    def rows(self, split: int) -> torch.Tensor:
        """Indices of the samples of one split (``TRAIN_SPLIT`` or ``TEST_SPLIT``), ``[n]`` long."""
        return (self.split == split).nonzero(as_tuple=True)[0]

    def probs(self, teachers: list[int] | int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher probabilities as float32: ``[len(teachers), n, C]`` (or ``[n, C]`` for a single int)."""
        single = isinstance(teachers, int)
        ids = torch.as_tensor([teachers] if single else list(teachers), dtype=torch.long)
        if self.teacher_probs is not None:
            out = self.teacher_probs[ids]
            out = out if rows is None else out[:, rows]
            out = out.float()
        else:
            values, indices = self.topk_probs[ids], self.topk_indices[ids]
            if rows is not None:
                values, indices = values[:, rows], indices[:, rows]
            out = torch.zeros(*values.shape[:2], self.num_labels, dtype=torch.float32)
            out.scatter_(-1, indices.long(), values.float())
            # Top-k mass is < 1: renormalise so targets and KL see a distribution.
            out /= out.sum(-1, keepdim=True).clamp_min(1e-12)
        return out[0] if single else out

    def in_specialty_of(self, teachers: list[int], rows: torch.Tensor | None = None) -> torch.Tensor:
        """The gate teachers' in-specialty probabilities as float32 ``[len(teachers), n]``.

        Raises:
            `CacheError`: the cache holds none (its teachers had no gate teachers).
        """
        if self.in_specialty is None:
            raise CacheError("this cache holds no 'in_specialty' (its teachers had no gate teachers); label it with "
                             "teachers trained with --specialty_gates")
        out = self.in_specialty[torch.as_tensor(list(teachers), dtype=torch.long)]
        return (out if rows is None else out[:, rows]).float()

    def level_kind(self, level: int) -> str:
        """``"class"`` when the level's specialties are class sets, ``"domain"`` when they are domains."""
        specs = [self.specialties[t] for t in self.levels[level]]
        return "domain" if any("domain" in s for s in specs) else "class"

    def teacher_domain_ids(self, level: int) -> torch.Tensor:
        """``[T]`` domain id (index into ``domain_names``) of each teacher of a domain level."""
        names = self.domain_names or []
        out = []
        for t in self.levels[level]:
            name = self.specialties[t].get("domain")
            if name not in names:
                raise CacheError(f"teacher {t} specialises in domain {name!r} which is not in cache.json domain_names {names}")
            out.append(names.index(name))
        return torch.tensor(out, dtype=torch.long)

    def bytes_per_image_per_teacher(self) -> float:
        """Storage of one teacher's output for one image: ``C*4`` dense float32, ``k*(2+4)`` compact."""
        if self.teacher_probs is not None:
            return float(self.num_labels * self.teacher_probs.element_size())
        return float(self.topk_probs.shape[-1] * (self.topk_probs.element_size() + self.topk_indices.element_size()))

    # ---------------------------------------------------------------------------------------------- I/O
    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "num_labels": self.num_labels,
            "id2label": {str(k): v for k, v in sorted(self.id2label.items())},
            "levels": [list(map(int, level)) for level in self.levels],
            "specialties": self.specialties,
            "teacher_names": self.teacher_names,
            "student": {**self.student, "feature_dim": self.feature_dim},
        }
        if self.domain_names is not None:
            meta["domain_names"] = self.domain_names
        if self.source_sizes is not None:
            meta["source_sizes"] = self.source_sizes
        if self.source is not None:
            meta["source"] = self.source
        return meta

    def to_compact(self, k: int) -> "CSLCache":
        """A copy that keeps each teacher's top-``k`` probabilities in float16 with int32 class indices."""
        if self.teacher_probs is None:
            return self
        k = min(k, self.num_labels)
        values, indices = self.teacher_probs.float().topk(k, dim=-1)
        return CSLCache(
            features=self.features, labels=self.labels, split=self.split, num_labels=self.num_labels,
            levels=self.levels, specialties=self.specialties, topk_probs=values.half(),
            topk_indices=indices.to(torch.int32), domains=self.domains, source_index=self.source_index,
            source_sizes=self.source_sizes, id2label=self.id2label, teacher_names=self.teacher_names,
            domain_names=self.domain_names, student=self.student, source=self.source,
            in_specialty=None if self.in_specialty is None else self.in_specialty.half(),
        )

    def save(self, cache_dir: str | os.PathLike) -> None:
        """Write the cache atomically: into a temporary sibling directory, then one rename."""
        self.validate()
        tensors = {"features": self.features.contiguous(), "labels": self.labels.long().contiguous(),
                   "split": self.split.to(torch.int8).contiguous()}
        if self.teacher_probs is not None:
            tensors["teacher_probs"] = self.teacher_probs.contiguous()
        else:
            tensors["teacher_topk_probs"] = self.topk_probs.contiguous()
            tensors["teacher_topk_indices"] = self.topk_indices.contiguous()
        if self.domains is not None:
            tensors["domains"] = self.domains.long().contiguous()
        if self.source_index is not None:
            tensors["source_index"] = self.source_index.long().contiguous()
        if self.in_specialty is not None:
            tensors["in_specialty"] = self.in_specialty.contiguous()
        with staged_directory(cache_dir) as tmp:
            save_file(tensors, os.path.join(tmp, CACHE_TENSORS))
            with open(os.path.join(tmp, CACHE_METADATA), "w", encoding="utf-8") as f:
                json.dump(self.metadata(), f, indent=2)

    @classmethod
    def load(cls, cache_dir: str | os.PathLike, validate: bool = True) -> "CSLCache":
        """Read and (by default) validate a cache directory. Raises `CacheError` with a one-line message."""
        cache_dir = os.fspath(cache_dir)
        tensor_path, meta_path = os.path.join(cache_dir, CACHE_TENSORS), os.path.join(cache_dir, CACHE_METADATA)
        for path in (tensor_path, meta_path):
            if not os.path.isfile(path):
                raise CacheError(f"{path} does not exist; point --cache_dir at a directory written by the labeling pass (cache.safetensors + cache.json)")
        try:
            tensors = load_file(tensor_path)
        except (SafetensorError, OSError, ValueError) as err:
            raise CacheError(f"{tensor_path} is not a readable safetensors file ({err}); rewrite the cache") from None
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CacheError(f"{meta_path} is not valid JSON ({err}); rewrite the cache") from None
        validate_metadata(meta, meta_path)
        for key in ("features", "labels", "split"):
            if key not in tensors:
                raise CacheError(f"{tensor_path} lacks the tensor {key!r}; the cache needs features, labels, split and teacher_probs")
        dense = tensors.get("teacher_probs")
        compact = tensors.get("teacher_topk_probs"), tensors.get("teacher_topk_indices")
        if dense is None and (compact[0] is None or compact[1] is None):
            raise CacheError(f"{tensor_path} lacks the tensor 'teacher_probs' (or the compact pair teacher_topk_probs + teacher_topk_indices); write the teachers' outputs into the cache")
        cache = cls(
            features=tensors["features"], labels=tensors["labels"], split=tensors["split"],
            num_labels=meta["num_labels"], levels=meta["levels"], specialties=meta["specialties"],
            teacher_probs=dense, topk_probs=None if dense is not None else compact[0],
            topk_indices=None if dense is not None else compact[1], domains=tensors.get("domains"),
            source_index=tensors.get("source_index"), source_sizes=meta.get("source_sizes"),
            id2label=meta.get("id2label") or {}, teacher_names=meta.get("teacher_names") or [],
            domain_names=meta.get("domain_names"), student=meta.get("student") or {}, source=meta.get("source"),
            in_specialty=tensors.get("in_specialty"),
        )
        if validate:
            cache.validate()
        if cache.features.dtype != torch.float32:
            cache.features = cache.features.float()
        return cache

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | os.PathLike, revision: str | None = None,
                        token: bool | str | None = None, validate: bool = True) -> "CSLCache":
        """`load` a cache directory, or a cache pushed to a Hub *dataset* repo (`push_to_hub`): downloaded with
        ``snapshot_download(repo_type="dataset")`` (from the Hub cache when offline). Raises `CacheError`."""
        from .hub import resolve_cache_dir

        return cls.load(resolve_cache_dir(repo_id_or_path, revision=revision, token=token), validate=validate)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Push the cache to the dataset repo ``repo_id`` (created if needed): ``cache.safetensors``, ``cache.json``
        and a dataset card (``README.md``: student, teachers, dataset, sizes), one commit. ``kwargs``: ``token``,
        ``private``, ``revision``, ``commit_message``, ``create_pr``. Returns the `huggingface_hub.CommitInfo`."""
        from .hub import push_cache

        return push_cache(self, repo_id, **kwargs)

    # ---------------------------------------------------------------------------------------------- checks
    def validate(self) -> None:
        """Check the cache format's invariants (docs/cache.md); raise `CacheError` naming the first violation and its fix."""
        from ..method.hierarchy import validate_hierarchy

        f, y, s = self.features, self.labels, self.split
        if f.dim() != 2 or not f.dtype.is_floating_point:
            raise CacheError(f"'features' must be a float [N, D] tensor, got {_describe(f)}; store the student's features as float16/float32")
        n, c = f.shape[0], self.num_labels
        if not isinstance(c, int) or c < 2:
            raise CacheError(f"num_labels must be an integer >= 2, got {c!r}; fix cache.json")
        if y.dim() != 1 or y.shape[0] != n or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise CacheError(f"'labels' must be an integer [N={n}] tensor, got {_describe(y)}; store int64 labels (-1 where unknown)")
        if s.dim() != 1 or s.shape[0] != n or s.dtype.is_floating_point:
            raise CacheError(f"'split' must be an int8 [N={n}] tensor, got {_describe(s)}; store 0 (train) / 1 (test) per sample")
        if bool(((s != TRAIN_SPLIT) & (s != TEST_SPLIT)).any()):
            raise CacheError("'split' holds values other than 0 (train) and 1 (test); fix the split tensor")
        if int((s == TRAIN_SPLIT).sum()) == 0:
            raise CacheError("the cache's training split is empty (no split == 0); label some weak-to-strong training images")
        if int((s == TEST_SPLIT).sum()) == 0:
            raise CacheError("the cache's test split is empty (no split == 1); add labeled test images")
        # A block of rows at a time: isfinite on the whole [N, D] tensor holds an abs() copy of it and two masks
        # (about 1.5x the features) just to check it.
        if not all(bool(torch.isfinite(f[start:end]).all()) for start, end in _row_spans(f)):
            raise CacheError("'features' holds NaN or Inf; recompute the student's features (check the backbone and its dtype)")
        if bool(((y < -1) | (y >= c)).any()):
            bad = int(y[(y < -1) | (y >= c)][0])
            raise CacheError(f"'labels' holds {bad}, outside [-1, {c - 1}]; labels must be class ids < num_labels={c} or -1 for unknown")
        if bool((y[s == TEST_SPLIT] < 0).any()):
            raise CacheError("the test split has samples without a label (-1); every test sample needs its ground truth")
        if self.teacher_probs is not None:
            self._validate_dense(n, c)
        else:
            self._validate_compact(n, c)
        if self.domains is not None and (self.domains.dim() != 1 or self.domains.shape[0] != n or self.domains.dtype.is_floating_point):
            raise CacheError(f"'domains' must be an integer [N={n}] tensor, got {_describe(self.domains)}")
        if self.in_specialty is not None:
            self._validate_in_specialty(n)
        validate_hierarchy(self.levels, self.specialties, c, self.num_teachers, error=CacheError)
        if len(self.teacher_names) != self.num_teachers:
            raise CacheError(f"cache.json lists {len(self.teacher_names)} teacher_names for {self.num_teachers} teachers; give one name per teacher")
        if len(self.id2label) != c or sorted(self.id2label) != list(range(c)):
            raise CacheError(f"cache.json id2label must name the {c} classes 0..{c - 1}; fix id2label")

    def _validate_dense(self, n: int, c: int) -> None:
        p = self.teacher_probs
        if p.dim() != 3 or p.shape[1] != n or p.shape[2] != c or not p.dtype.is_floating_point:
            raise CacheError(f"'teacher_probs' must be a float [K, N={n}, C={c}] tensor, got {_describe(p)}; store each teacher's softmax over all {c} classes")
        # Checked one teacher and a block of rows at a time: whole-tensor checks would hold float32 copies and masks
        # of [K, N, C] (several times the cache itself at ImageNet scale) just to validate it.
        for k in range(p.shape[0]):
            for start, end in _row_spans(p[k]):
                block = p[k, start:end]
                if not bool(torch.isfinite(block).all()):
                    raise CacheError("'teacher_probs' holds NaN or Inf; recompute the teachers' outputs")
                if bool((block < 0).any()):
                    raise CacheError("'teacher_probs' holds negative values: these look like logits; store softmax probabilities, not logits")
                sums = block.float().sum(-1)
                bad = (sums - 1).abs() > _PROB_SUM_TOLERANCE
                if bool(bad.any()):
                    i = int(bad.nonzero()[0])
                    raise CacheError(f"teacher {k}'s probabilities for sample {start + i} sum to {float(sums[i]):.4f}, not 1: these look like logits or unnormalised scores; store softmax probabilities")

    def _validate_in_specialty(self, n: int) -> None:
        g, k = self.in_specialty, self.num_teachers
        if g.dim() != 2 or g.shape != (k, n) or not g.dtype.is_floating_point:
            raise CacheError(f"'in_specialty' must be a float [K={k}, N={n}] tensor, got {_describe(g)}; store each "
                             "teacher's in-specialty probability per sample (1 for teachers without a gate)")
        if not bool(torch.isfinite(g).all()) or bool(((g < 0) | (g > 1 + _PROB_SUM_TOLERANCE)).any()):
            raise CacheError("'in_specialty' must hold probabilities in [0, 1]; store 1 - p(other) of each gate "
                             "teacher, not its logits")

    def _validate_compact(self, n: int, c: int) -> None:
        v, ix = self.topk_probs, self.topk_indices
        if v.dim() != 3 or v.shape[1] != n or not v.dtype.is_floating_point or ix.shape != v.shape or ix.dtype.is_floating_point:
            raise CacheError(f"compact teacher outputs must be float [K, N={n}, k] probabilities with integer [K, N, k] indices, got {_describe(v)} and {_describe(ix)}")
        for k in range(v.shape[0]):
            for start, end in _row_spans(ix[k]):  # the wider of the two tensors sets the block
                block, ids = v[k, start:end], ix[k, start:end]
                if not bool(torch.isfinite(block).all()) or bool((block < 0).any()) or bool(
                        (block.float().sum(-1) > 1 + _PROB_SUM_TOLERANCE).any()):
                    raise CacheError("'teacher_topk_probs' must hold finite probabilities in [0, 1] whose top-k sum is at most 1; store softmax probabilities, not logits")
                if bool(((ids < 0) | (ids >= c)).any()):
                    raise CacheError(f"'teacher_topk_indices' holds class ids outside [0, {c - 1}]; fix the compact cache")


def _describe(t: torch.Tensor) -> str:
    return f"{t.dtype} {list(t.shape)}"
