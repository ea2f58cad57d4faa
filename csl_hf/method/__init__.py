"""The paper's method, as pure functions of tensors and a `CSLCache` (no `Trainer`, no files).

Liu & Alahi, *Co-Supervised Learning: Improving Weak-to-Strong Generalization with Hierarchical Mixture of Experts*,
arXiv:2402.15505 (2024). Its three ideas each live in one module:

* `hierarchy` / `specialties`: the hierarchy of weak teachers: levels of specialists and what each one owns (class
  blocks, groups of classes the models confuse, or domains);
* `rounds`: the alternation of teacher assignment and student training, one round at a time: which teacher labels
  each sample, the targets, and the round's record;
* `consistency`: the tensor math of assignment and of the consistency filter (teacher-student and local-global
  consistency): `consistency.filter_scores` and `consistency.select`.
"""

from .hierarchy import class_hierarchy, domain_hierarchy, validate_hierarchy

__all__ = ["class_hierarchy", "domain_hierarchy", "validate_hierarchy"]
