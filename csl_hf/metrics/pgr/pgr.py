# Copyright 2024 The csl_hf authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""PGR (performance gap recovered): an `evaluate` metric module.

This file is loaded by ``evaluate.load("/abs/path/to/csl_hf/metrics/pgr")``. ``evaluate`` copies it
into its dynamic-modules cache and imports it from there, so it must stay self-contained: it may
import installed libraries only, never ``csl_hf`` or a sibling file.
"""

import math
import warnings

import datasets
import evaluate


_CITATION = """\
@article{liu2024cosupervised,
  title   = {Co-Supervised Learning: Improving Weak-to-Strong Generalization with Hierarchical Mixture of Experts},
  author  = {Liu, Yuejiang and Alahi, Alexandre},
  journal = {arXiv preprint arXiv:2402.15505},
  year    = {2024}
}
@article{burns2023weak,
  title   = {Weak-to-Strong Generalization: Eliciting Strong Capabilities With Weak Supervision},
  author  = {Burns, Collin and others},
  journal = {arXiv preprint arXiv:2312.09390},
  year    = {2023}
}
"""

_DESCRIPTION = """\
Performance gap recovered (PGR) measures how much of the gap between a weak supervisor and a
strong ceiling a weakly supervised strong student closes:

    PGR = 100 * (student_accuracy - weak_accuracy) / (ceiling_accuracy - weak_accuracy)

The student's accuracy is computed from `predictions` and `references` (class ids on the test
split); the weak teacher's and the ceiling's accuracies are passed to `compute` as fractions in
[0, 1]. PGR is in percent: 0 means no better than the weak teacher, 100 means the ceiling was
reached; it can be negative or above 100. Where ceiling <= weak there is no gap to recover, PGR is
None and a warning says why.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): the student's predicted class ids on the test split.
    references (`list` of `int`): the ground-truth class ids on the test split.
    weak_accuracy (`float`): test accuracy of the weak teacher (the level-0 generalist), in [0, 1].
    ceiling_accuracy (`float`): test accuracy of the same student trained on ground truth, in [0, 1].

Returns:
    accuracy (`float`): the student's accuracy, a fraction in [0, 1].
    pgr (`float` or `None`): performance gap recovered, in percent; `None` when
        `ceiling_accuracy <= weak_accuracy`.

Examples:
    >>> pgr = evaluate.load("/abs/path/to/csl_hf/metrics/pgr")
    >>> pgr.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0],
    ...             weak_accuracy=0.5, ceiling_accuracy=1.0)
    {'accuracy': 0.75, 'pgr': 50.0}
"""


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float in [0, 1], got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"`{name}` must be a fraction in [0, 1] (not a percentage), got {value!r}."
        )
    return value


def performance_gap_recovered(student, weak, ceiling):
    """100 * (student - weak) / (ceiling - weak), or None (with a warning) when ceiling <= weak."""
    if ceiling <= weak:
        warnings.warn(
            f"PGR is undefined: ceiling accuracy ({ceiling:.4f}) <= weak accuracy ({weak:.4f}), so there is "
            "no performance gap to recover; reporting pgr=None.",
            UserWarning,
            stacklevel=2,
        )
        return None
    return 100.0 * (student - weak) / (ceiling - weak)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Pgr(evaluate.Metric):
    """Student accuracy and performance gap recovered (PGR, percent)."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2402.15505", "https://arxiv.org/abs/2312.09390"],
        )

    @staticmethod
    def _reference_accuracies(weak_accuracy, ceiling_accuracy):
        if weak_accuracy is None or ceiling_accuracy is None:
            raise ValueError("PGR needs both `weak_accuracy` and `ceiling_accuracy` passed to `compute`.")
        return _check_fraction("weak_accuracy", weak_accuracy), _check_fraction("ceiling_accuracy", ceiling_accuracy)

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Compute the student's accuracy and PGR (`weak_accuracy`/`ceiling_accuracy` are checked first,
        before `evaluate` consumes the stored batches, so a call with bad values can be retried).
        """
        self._reference_accuracies(kwargs.get("weak_accuracy"), kwargs.get("ceiling_accuracy"))
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, weak_accuracy=None, ceiling_accuracy=None):
        weak, ceiling = self._reference_accuracies(weak_accuracy, ceiling_accuracy)
        if len(predictions) == 0:
            raise ValueError("PGR needs at least one prediction.")
        correct = sum(int(p) == int(r) for p, r in zip(predictions, references))
        accuracy = correct / len(predictions)
        return {"accuracy": float(accuracy), "pgr": performance_gap_recovered(accuracy, weak, ceiling)}
