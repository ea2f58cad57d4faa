"""The consistency math (docs/algorithm.md) on small hand-computed cases."""

import math

import pytest
import torch

from csl_hf.method import consistency as C
from csl_hf.errors import CSLError

# 4 samples, 4 classes. Previous student's logits: argmax 0, 1, 2, 3; second choices 1, 0, 3, 2.
LOGITS = torch.tensor(
    [[3.0, 2.0, 0.0, -1.0],
     [2.0, 3.0, -1.0, 0.0],
     [0.0, -1.0, 3.0, 2.0],
     [-1.0, 0.0, 2.0, 3.0]]
)
BLOCKS = C.class_masks([{"classes": [0, 1]}, {"classes": [2, 3]}], 4)


def test_class_masks_and_generalist():
    masks = C.class_masks([{"classes": [0, 1, 2, 3]}, {"classes": [3, 1]}, {"domain": "sketch"}], 4)
    assert masks.tolist() == [[True] * 4, [False, True, False, True], [True] * 4]


def test_masked_softmax_matches_softmax_over_subset():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    out = C.masked_softmax(logits, torch.tensor([True, False, True]))
    e1, e3 = math.exp(1), math.exp(3)
    assert torch.allclose(out, torch.tensor([[e1 / (e1 + e3), 0.0, e3 / (e1 + e3)]]))


def test_student_assignment_routes_by_argmax_owner():
    # argmax 0,1 -> teacher 0 (classes 0,1); argmax 2,3 -> teacher 1. Non-contiguous blocks too.
    assert C.assign_by_student(LOGITS, BLOCKS).tolist() == [0, 0, 1, 1]
    odd_even = C.class_masks([{"classes": [1, 3]}, {"classes": [0, 2]}], 4)
    assert C.assign_by_student(LOGITS, odd_even).tolist() == [1, 0, 1, 0]


def test_agreement_assignment_picks_min_kl():
    student = torch.log(torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    teachers = torch.tensor([
        [[0.7, 0.3], [0.7, 0.3]],  # teacher 0 equals the student on sample 0
        [[0.5, 0.5], [0.2, 0.8]],  # teacher 1 equals the student on sample 1
    ])
    assert C.assign_by_agreement(student, teachers).tolist() == [0, 1]
    # KL(p||q) by hand for sample 0: teacher 0 -> 0; teacher 1 -> 0.7 ln 1.4 + 0.3 ln 0.6 > 0.
    assert 0.7 * math.log(1.4) + 0.3 * math.log(0.6) > 0


def test_agreement_with_zero_probabilities_is_finite():
    student = torch.log(torch.tensor([[0.6, 0.4, 1e-9]]))
    teachers = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]])
    # Teacher 0 puts zero on class 1 (student 0.4) but teacher 1 puts zero on classes 0 and 1 (student 1.0).
    assert C.assign_by_agreement(student, teachers).tolist() == [0]


def test_oracle_assignment_by_class_and_domain():
    assert C.assign_by_oracle_class(torch.tensor([3, 0, 2]), BLOCKS).tolist() == [1, 0, 1]
    assert C.assign_by_oracle_domain(torch.tensor([1, 0, 1]), torch.tensor([1, 0])).tolist() == [0, 1, 0]
    with pytest.raises(CSLError):
        C.assign_by_oracle_class(torch.tensor([-1, 0]), BLOCKS)
    with pytest.raises(CSLError, match="domain"):
        C.assign_by_oracle_domain(torch.tensor([2]), torch.tensor([0, 1]))


# Every row of LOGITS is a permutation of (3, 2, 0, -1): the same log-sum-exp, so a target's cross-entropy is
# LSE - its logit.
LSE = math.log(math.exp(3) + math.exp(2) + 1 + math.exp(-1))


def test_filter_scores_hand_computed():
    # Targets: sample 0 -> 1 (2nd choice, logit 2), 1 -> 1 (1st, 3), 2 -> 0 (3rd, 0), 3 -> 0 (4th, -1).
    target = torch.tensor([1, 1, 0, 0])
    for k, hits in ((1, [False, True, False, False]), (2, [True, True, False, False]),
                    (3, [True, True, True, False]), (10, [True] * 4)):
        got, losses = C.filter_scores(LOGITS, target, k)
        assert got.tolist() == hits
        assert torch.allclose(losses, torch.tensor([LSE - 2, LSE - 3, LSE - 0, LSE + 1]))
        assert losses.dtype == torch.float32


def test_select_keeps_the_hit_rate_of_smallest_losses():
    losses = torch.tensor([LSE - 2, LSE - 3, LSE - 0, LSE + 1])
    # top2 hits on samples 0 and 1: r = 2/4, and the two smallest losses are samples 1 (argmax) and 0.
    keep, rate = C.select(torch.tensor([True, True, False, False]), losses)
    assert rate == 0.5 and keep.tolist() == [True, True, False, False]
    # One hit, on sample 3 (the largest loss): r = 1/4 keeps the single smallest loss, sample 1.
    keep, rate = C.select(torch.tensor([False, False, False, True]), losses)
    assert rate == 0.25 and keep.tolist() == [False, True, False, False]
    # Ties by index: equal losses, r = 2/4 keeps the first two.
    keep, _ = C.select(torch.tensor([True, True, False, False]), torch.zeros(4))
    assert keep.tolist() == [True, True, False, False]


def test_keep_smallest_rounds_the_count_up():
    # rank < r*N: r*N = 1.2 keeps ranks 0 and 1.
    assert C.keep_smallest(torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7]), 0.24).tolist() == [False, True, False, True, False]


def test_chunked_scores_equal_the_dense_filter():
    """plan_round scores chunk by chunk and selects once: the same keep set and rate as the dense filter."""
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(1003, 7, generator=g), torch.randint(7, (1003,), generator=g)
    hits, losses = torch.empty(1003, dtype=torch.bool), torch.empty(1003)
    for start in range(0, 1003, 128):
        end = min(start + 128, 1003)
        hits[start:end], losses[start:end] = C.filter_scores(logits[start:end], target[start:end], 3)
    chunked = C.select(hits, losses)
    dense = C.consistency_filter(logits, target, "top3")
    assert torch.equal(chunked[0], dense[0]) and chunked[1] == dense[1]


def test_plan_round_keeps_what_the_filter_keeps():
    """The filter that runs is the tested one: plan_round's kept set equals consistency_filter on its targets."""
    from synthetic import make_cache

    from csl_hf.method import rounds as R

    cache = make_cache(seed=3)
    rows = cache.rows(0)
    previous = torch.randn(len(rows), cache.num_labels, generator=torch.Generator().manual_seed(1))
    targets = R.plan_round(cache, 1, previous, rows, assignment="student", denoise="top2")
    keep, rate = C.consistency_filter(previous, targets.target_class, "top2")
    assert torch.equal(targets.keep, keep) and targets.keep_rate == rate


def test_selection_can_differ_from_topk_set():
    # The top-k test only sets the count (top1 here: samples 0 and 1 agree -> rate 0.5); which samples are kept is
    # decided by the loss ranking: the two lowest-CE samples.
    target = torch.tensor([0, 1, 0, 0])
    keep, rate = C.consistency_filter(LOGITS, target, "top1")
    assert rate == 0.5 and keep.tolist() == [True, True, False, False]


def test_keep_count_exact_for_awkward_sizes():
    # 5447 of 7200 consistent: float32 rounding of the rate must not add or drop a sample.
    n, m = 7200, 5447
    logits = torch.zeros(n, 3)
    logits[:, 0] = 1.0
    target = torch.zeros(n, dtype=torch.long)
    target[m:] = 2  # not in top1 (ties at 0 for classes 1 and 2 are below class 0)
    keep, rate = C.consistency_filter(logits, target, "top1")
    assert int(keep.sum()) == m and rate == m / n


def test_denoise_all_and_bad_mode():
    keep, rate = C.consistency_filter(LOGITS, torch.tensor([3, 3, 3, 3]), "all")
    assert rate == 1.0 and bool(keep.all())
    with pytest.raises(CSLError, match="top3"):
        C.consistency_filter(LOGITS, torch.tensor([0, 0, 0, 0]), "top5")


def test_scaled_epochs():
    assert C.scaled_epochs(20, 1.0) == 20
    assert C.scaled_epochs(20, 0.75) == 26  # floor(26.67)
    assert C.scaled_epochs(20, 0.8) == 25  # exact quotient despite float rounding
    assert C.scaled_epochs(20, 5447 / 7200) == math.floor(20 * 7200 / 5447)


def test_label_quality_hand_computed():
    target = torch.tensor([0, 1, 2, 3, 0])
    labels = torch.tensor([0, 1, 0, 3, -1])  # last label unknown: ignored
    keep = torch.tensor([True, False, True, True, True])
    acc, precision, recall = C.label_quality(target, labels, keep)
    # correct: samples 0, 1, 3 -> 3/4; kept & known: 0, 2, 3 -> correct among them 0, 3 -> 2/3; recall 2/3.
    assert acc == 0.75 and precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3)
    assert C.label_quality(target, torch.full((5,), -1), keep) == (None, None, None)


# ------------------------------------------------------------------------------------- the neighbour filter (knn)
def test_denoise_for_level_resolves_auto_by_level_kind():
    assert C.denoise_for_level("auto", "class") == "knn" and C.denoise_for_level("auto", "domain") == "top3"
    assert C.denoise_for_level("top3", "class") == "top3" and C.denoise_for_level("knn", "domain") == "knn"
    # the O(N^2) neighbour search is only chosen automatically up to KNN_AUTO_MAX_SAMPLES; knn asked for is kept
    limit = C.KNN_AUTO_MAX_SAMPLES
    assert C.denoise_for_level("auto", "class", limit) == "knn"
    assert C.denoise_for_level("auto", "class", limit + 1) == "top3"
    assert C.denoise_for_level("knn", "class", limit + 1) == "knn"
    with pytest.raises(CSLError, match="top3"):
        C.denoise_for_level("top9", "class")
    with pytest.raises(CSLError, match="not a top-k"):
        C.topk_of("knn")


def test_nearest_neighbors_by_cosine_without_self():
    # Two tight pairs: 0 ~ 1 (along x), 2 ~ 3 (along y). cos(0, 3) = 0.1 / |(0.1, 0.9)| > cos(0, 2) = 0.
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert C.nearest_neighbors(x, 1).tolist() == [[1], [0], [3], [2]]
    assert C.nearest_neighbors(x, 2).tolist() == [[1, 3], [0, 3], [3, 1], [2, 1]]
    # cosine: scaling a sample changes nothing; chunking changes nothing
    assert C.nearest_neighbors(x * torch.tensor([[5.0], [0.1], [2.0], [1.0]]), 2, max_block_bytes=1).tolist() == \
        C.nearest_neighbors(x, 2).tolist()
    with pytest.raises(CSLError, match="denoise_neighbors"):
        C.nearest_neighbors(x, 4)
    # rows: the neighbours among those rows only, as positions in rows; the caller's features are left as they were
    before = x.clone()
    assert C.nearest_neighbors(x, 1, rows=torch.tensor([3, 0, 2])).tolist() == [[2], [0], [0]]
    assert C.nearest_neighbors(x, 1).tolist() == [[1], [0], [3], [2]] and torch.equal(x, before)


def test_nearest_neighbors_in_blocks_match_a_whole_normalised_copy():
    # The blocks (of rows and of columns, sizes that do not divide N) give the neighbours a whole normalised copy
    # gives; with rows, the neighbours are among those rows only.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(301, 16, generator=g)
    rows = torch.randperm(301, generator=g)[:257]

    def whole(z, k):
        z = torch.nn.functional.normalize(z, dim=-1)
        sim = z @ z.T
        sim.fill_diagonal_(float("-inf"))
        return sim.topk(k, dim=-1).indices

    for block_bytes in (1, 7 * 16 * 4 + 3, 50 * 301 * 4, 1 << 26):
        assert torch.equal(C.nearest_neighbors(x, 5, max_block_bytes=block_bytes), whole(x, 5))
        assert torch.equal(C.nearest_neighbors(x, 3, rows=rows, max_block_bytes=block_bytes), whole(x[rows], 3))


def test_neighbor_agreement_keeps_a_most_frequent_label_ties_included():
    labels = torch.tensor([0, 0, 2, 2, 0, 1])
    neighbors = torch.tensor([
        [1, 4, 2, 3],  # labels 0, 0, 2, 2: own 0 ties with 2 -> kept
        [0, 4, 5, 2],  # 0, 0, 1, 2: own 0 most frequent -> kept
        [3, 5, 0, 1],  # 2, 1, 0, 0: own 2 once, 0 twice -> dropped
        [2, 5, 1, 0],  # 2, 1, 0, 0: own 2 once, 0 twice -> dropped
        [5, 2, 3, 1],  # 1, 2, 2, 0: own 0 once, 2 twice -> dropped
        [0, 1, 2, 3],  # 0, 0, 2, 2: own 1 never -> dropped
    ])
    assert C.neighbor_agreement(labels, neighbors, 3).tolist() == [True, True, False, False, False, False]
    # a plurality is enough (no majority needed): 2 votes of 5 for the own label, the others split 1/1/1
    assert C.neighbor_agreement(torch.tensor([3, 3, 3, 0, 1, 2]), torch.tensor([[1, 2, 3, 4, 5]] + [[0, 0, 0, 0, 0]] * 5),
                                4).tolist()[0]
