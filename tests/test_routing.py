"""Routing research: soft gates, the ensemble baseline (csl_hf.method.consistency) and data-driven class hierarchies
(csl_hf.method.hierarchy), on small hand-computed cases."""


import pytest
import torch

from csl_hf.method import consistency as C
from csl_hf.method.hierarchy import validate_hierarchy
from csl_hf.errors import CSLError
from csl_hf.cache import TEST_SPLIT
from csl_hf.method.specialties import (
    auto_class_hierarchy,
    balanced_partition,
    class_mean_features,
    confusion_matrix,
    partition_cost,
)

# Two specialists over 4 classes: A owns {0, 1}, B owns {2, 3}.
MASKS = C.class_masks([{"classes": [0, 1]}, {"classes": [2, 3]}], 4)


def logits_of(probs):
    """Logits whose softmax is exactly ``probs``."""
    return torch.tensor(probs).log()


# ----------------------------------------------------------------------------------------------- consistency gates
def test_specialty_mass_sums_student_probability_per_class_set():
    # p = [0.1, 0.2, 0.3, 0.4] -> A: 0.1 + 0.2 = 0.3, B: 0.3 + 0.4 = 0.7
    g = C.specialty_mass(logits_of([[0.1, 0.2, 0.3, 0.4]]), MASKS)
    assert torch.allclose(g, torch.tensor([[0.3, 0.7]]))


def test_soft_gate_can_overrule_the_argmax_route():
    # Student p = [0.30, 0.15, 0.35, 0.20]: argmax class 2 -> hard routing picks B (label 3).
    # Gate g = [0.45, 0.55]. A = [0.95, 0.05, 0, 0], B = [0, 0, 0.4, 0.6].
    # Mixture = 0.45 * A + 0.55 * B = [0.4275, 0.0225, 0.22, 0.33] (sums to 1): label 0, from the confident A.
    student = logits_of([[0.30, 0.15, 0.35, 0.20]])
    teachers = torch.tensor([[[0.95, 0.05, 0.0, 0.0]], [[0.0, 0.0, 0.4, 0.6]]])  # [T=2, N=1, C=4]
    target = C.soft_gate_targets(student, teachers, MASKS)
    assert torch.allclose(target, torch.tensor([[0.4275, 0.0225, 0.22, 0.33]]), atol=1e-6)
    assert int(target.argmax()) == 0
    route = C.assign_by_student(student, MASKS)
    assert route.tolist() == [1] and int(teachers[route[0], 0].argmax()) == 3


def test_soft_gate_with_a_confident_student_is_hard_routing():
    # g = [1, 0] (all mass on A's classes, up to float): the target is A's row.
    student = torch.tensor([[10.0, 9.0, -30.0, -30.0]])
    teachers = torch.tensor([[[0.7, 0.3, 0.0, 0.0]], [[0.0, 0.0, 0.1, 0.9]]])
    assert torch.allclose(C.soft_gate_targets(student, teachers, MASKS), torch.tensor([[0.7, 0.3, 0.0, 0.0]]),
                          atol=1e-6)


def test_gated_targets_normalise_the_gate_and_fall_back_to_uniform():
    teachers = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]],
                             [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]]])  # [T=2, N=2, C=4]
    # sample 0: gate [2, 6] -> [0.25, 0.75] -> [0.25, 0, 0, 0.75]; sample 1: gate [0, 0] -> uniform [0.5, 0.5]
    # -> 0.5 * [0.5, 0.5, 0, 0] + 0.5 * [0, 0, 1, 0] = [0.25, 0.25, 0.5, 0]
    out = C.gated_targets(torch.tensor([[2.0, 6.0], [0.0, 0.0]]), teachers)
    assert torch.allclose(out, torch.tensor([[0.25, 0.0, 0.0, 0.75], [0.25, 0.25, 0.5, 0.0]]))


def test_ensemble_takes_each_class_from_its_owner_and_renormalises():
    # A = [0.8, 0.2, 0, 0], B = [0, 0, 0.6, 0.4]: each class from its owner = [0.8, 0.2, 0.6, 0.4], sum 2
    # -> [0.4, 0.1, 0.3, 0.2]
    teachers = torch.tensor([[[0.8, 0.2, 0.0, 0.0]], [[0.0, 0.0, 0.6, 0.4]]])
    assert torch.allclose(C.ensemble_targets(teachers), torch.tensor([[0.4, 0.1, 0.3, 0.2]]))


def test_specialist_gate_is_a_product_of_student_mass_and_in_specialty_probability():
    student = logits_of([[0.30, 0.15, 0.35, 0.20]])  # mass [0.45, 0.55]
    in_spec = torch.tensor([[0.9], [0.2]])  # [T=2, N=1]
    # 0.45 * 0.9 = 0.405, 0.55 * 0.2 = 0.11, total 0.515 -> [0.786408, 0.213592]
    g = C.specialist_gate(student, MASKS, in_spec)
    assert torch.allclose(g, torch.tensor([[0.405 / 0.515, 0.11 / 0.515]]), atol=1e-6)
    # student_weight 0: the specialists alone, [0.9, 0.2] / 1.1
    g0 = C.specialist_gate(student, MASKS, in_spec, student_weight=0.0)
    assert torch.allclose(g0, torch.tensor([[0.9 / 1.1, 0.2 / 1.1]]), atol=1e-6)
    # every specialist says "not mine": uniform
    assert torch.allclose(C.specialist_gate(student, MASKS, torch.zeros(2, 1)), torch.tensor([[0.5, 0.5]]))


# ----------------------------------------------------------------------------------------------- hierarchies
# Six classes on a line at 0, 10, 1, 11, 20, 21 (class id -> position).
POSITIONS = torch.tensor([[0.0], [10.0], [1.0], [11.0], [20.0], [21.0]])


def test_balanced_partition_groups_close_classes():
    # k = 3: the pairs {0, 2} (0, 1), {1, 3} (10, 11), {4, 5} (20, 21); SSE 0.5 each.
    assert balanced_partition(3, class_features=POSITIONS) == [[0, 2], [1, 3], [4, 5]]
    # k = 2, sizes 3 + 3: {0, 1, 2} at (0, 10, 1), mean 11/3, SSE 121/9 + 361/9 + 64/9 = 546/9 = 60.67, and
    # {3, 4, 5} at (11, 20, 21), the same SSE by symmetry: 121.33 in all. The alternative {0, 2, 3} (0, 1, 11),
    # {1, 4, 5} (10, 20, 21) costs 74 + 74 = 148.
    groups = balanced_partition(2, class_features=POSITIONS)
    assert groups == [[0, 1, 2], [3, 4, 5]]
    from csl_hf.method.specialties import _dissimilarity

    _, cost, normalised = _dissimilarity(POSITIONS, None)
    assert partition_cost(groups, cost, normalised) == pytest.approx(2 * 546 / 9)
    assert partition_cost([[0, 2, 3], [1, 4, 5]], cost, normalised) == pytest.approx(148.0)


def test_balanced_partition_from_confusion():
    # Classes 0/1 confuse each other, 2/3 too; rows true, columns predicted.
    confusion = torch.tensor([[8.0, 2, 0, 0], [2, 8, 0, 0], [0, 0, 9, 1], [0, 1, 0, 9]])
    assert balanced_partition(2, confusion=confusion) == [[0, 1], [2, 3]]


def test_auto_hierarchy_format_balance_and_determinism():
    torch.manual_seed(0)
    feats = torch.randn(10, 5)
    specs, levels = auto_class_hierarchy([1, 2, 4, 5], class_features=feats)
    assert levels == [[0], [1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11]]
    validate_hierarchy(levels, specs, 10, len(specs))
    assert specs[0] == {"classes": list(range(10))}
    sizes = [sorted(len(specs[t]["classes"]) for t in level) for level in levels]
    assert sizes == [[10], [5, 5], [2, 2, 3, 3], [2, 2, 2, 2, 2]]
    assert auto_class_hierarchy([1, 2, 4, 5], class_features=feats) == (specs, levels)


def test_auto_hierarchy_nested_splits_parents_when_sizes_allow():
    specs, levels = auto_class_hierarchy([1, 2, 4], class_features=POSITIONS, nested=True)
    level1 = [set(specs[t]["classes"]) for t in levels[1]]
    for t in levels[2]:
        assert any(set(specs[t]["classes"]) <= parent for parent in level1)
    # level 1 = {0, 1, 2}, {3, 4, 5}; each split 2 + 1 keeping the closest pair: {0, 2} + {1}, {4, 5} + {3}
    assert [specs[t]["classes"] for t in levels[2]] == [[0, 2], [1], [3], [4, 5]]


@pytest.mark.parametrize("per_level, match", [([2, 4], "start with 1"), ([1, 7], "7 specialists")])
def test_auto_hierarchy_errors(per_level, match):
    with pytest.raises(CSLError, match=match):
        auto_class_hierarchy(per_level, class_features=POSITIONS)


def test_auto_hierarchy_needs_exactly_one_statistic():
    with pytest.raises(CSLError, match="exactly one"):
        auto_class_hierarchy([1, 2], class_features=POSITIONS, confusion=torch.eye(6))
    with pytest.raises(CSLError, match="exactly one"):
        auto_class_hierarchy([1, 2])


def test_class_mean_features_and_missing_class():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, -1])  # the -1 row is ignored
    assert torch.allclose(class_mean_features(feats, labels, 2), torch.tensor([[2.0, 1.0], [5.0, 5.0]]))
    with pytest.raises(CSLError, match=r"classes \[2\]"):
        class_mean_features(feats, labels, 3)


def test_confusion_matrix_counts_true_by_predicted():
    # (true, predicted): (0, 0), (0, 1), (1, 1), (2, 0), (2, 0); the -1 row is ignored
    m = confusion_matrix(torch.tensor([0, 1, 1, 0, 0, 2]), torch.tensor([0, 0, 1, 2, 2, -1]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [2, 0, 0]]


def test_train_teacher_hierarchy_accepts_an_explicit_hierarchy():
    from csl_hf.data import load_csl_dataset
    from csl_hf.teachers import TeacherTrainingArguments, train_teacher_hierarchy

    ds = load_csl_dataset("animal_mnist").shuffle(seed=0).select(range(100))
    specs = [{"classes": list(range(10))}, {"classes": [0, 3, 5, 7, 9]}, {"classes": [1, 2, 4, 6, 8]}]
    mixture = train_teacher_hierarchy(ds, TeacherTrainingArguments(teacher_steps=2, teacher_batch_size=8),
                                      specialties=specs, levels=[[0], [1, 2]])
    assert mixture.config.specialties == specs and mixture.config.levels == [[0], [1, 2]]
    assert mixture.config.teacher_names == ["generalist", "bear, cow, elephant, horse, zebra",
                                            "bird, cat, dog, giraffe, sheep"]
    with pytest.raises(CSLError, match="uncovered"):
        train_teacher_hierarchy(ds, TeacherTrainingArguments(teacher_steps=2), specialties=specs[:2], levels=[[0], [1]])


# ------------------------------------------------------------------------------------- the neighbour filter in a round
def knn_cache():
    """6 training samples in two tight feature clusters {0, 1, 2} and {3, 4, 5}; level 1 = specialists A {0, 1} and
    B {2, 3}. A labels every sample 0, B labels every sample 2."""
    from csl_hf import CSLCache

    features = torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.1, 1.0], [-0.1, 1.0]])
    a, b = torch.tensor([0.9, 0.1, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.8, 0.2])
    return CSLCache(features=features, labels=torch.tensor([0, 0, 0, 2, 2, 2]), split=torch.zeros(6, dtype=torch.int8),
                    num_labels=4, levels=[[0], [1, 2]],
                    specialties=[{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}],
                    teacher_probs=torch.stack([torch.full((6, 4), 0.25), a.expand(6, 4), b.expand(6, 4)]))


def test_plan_round_knn_keeps_the_labels_its_neighbours_agree_with():
    from csl_hf.method import rounds as R

    cache = knn_cache()
    # The previous student puts sample 2 (cluster 1) in B's specialty and sample 5 (cluster 2) in A's: both
    # misrouted, and their labels (2 and 0) are the student's own argmax, so top3 keeps them (with everything).
    student = torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 2 + [[0.1, 0.1, 0.7, 0.1]]
                                     + [[0.1, 0.1, 0.7, 0.1]] * 2 + [[0.7, 0.1, 0.1, 0.1]]))
    rows = torch.arange(6)
    paper = R.plan_round(cache, 1, student, rows, denoise="top3")
    assert paper.target_class.tolist() == [0, 0, 2, 2, 2, 0] and bool(paper.keep.all()) and paper.denoise == "top3"
    # auto = knn on a class level; with 2 neighbours each sample's neighbours are the rest of its cluster:
    # sample 2's are 0, 1 (labels 0, 0 against its 2), sample 5's are 3, 4 (2, 2 against its 0): both dropped.
    knn = R.plan_round(cache, 1, student, rows, denoise_neighbors=2)
    assert knn.denoise == "knn" and knn.keep.tolist() == [True, True, False, True, True, False]
    assert knn.keep_rate == 4 / 6 and knn.epochs == 30  # floor(20 / (4/6))
    # the record says which filter ran; level 0 keeps everything
    assert R.round_record(cache, knn, rows, cache.labels[cache.rows(TEST_SPLIT)], None)["denoise"] == "knn"
    level0 = R.plan_round(cache, 0, None, rows)
    assert bool(level0.keep.all()) and level0.denoise == "none"
    # k larger than the training split is capped at n - 1: with all 5 other samples voting, each sample's own
    # cluster is outvoted 2 to 3, nothing is kept, and the error says which filter
    with pytest.raises(CSLError, match=r"\(knn\) kept no sample"):
        R.plan_round(cache, 1, student, rows, denoise="knn", denoise_neighbors=50)


def test_auto_denoise_is_top3_on_domain_levels():
    from csl_hf.method import rounds as R

    cache = knn_cache()
    cache.specialties = [{"classes": [0, 1, 2, 3]}, {"domain": "a"}, {"domain": "b"}]
    cache.domain_names, cache.domains = ["a", "b"], torch.tensor([0, 0, 0, 1, 1, 1])
    student = torch.log(torch.full((6, 4), 0.25))
    assert R.plan_round(cache, 1, student, torch.arange(6), assignment="agreement").denoise == "top3"
