"""metrics.retrieval_metrics / ranks / chance_metrics against hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from retrieval_lib.metrics import chance_metrics, ranks, retrieval_metrics


def scores_with_ranks(wanted_ranks, n_clips, targets):
    """Score matrix in which caption i's relevant clip targets[i] sits at rank wanted_ranks[i].

    Scores are distinct: the relevant clip gets n_clips - rank + 0.5 and the other clips get
    the remaining integers n_clips, n_clips-1, ... so exactly rank-1 clips score higher.
    """
    scores = np.zeros((len(wanted_ranks), n_clips))
    for i, (r, t) in enumerate(zip(wanted_ranks, targets)):
        others = [c for c in range(n_clips) if c != t]
        values = list(range(n_clips, 0, -1))  # n_clips .. 1, distinct
        # r-1 clips above the relevant one, the rest below
        above, below = values[: r - 1], values[r - 1:]
        relevant_value = (above[-1] if above else n_clips + 1) - 0.5
        for c, v in zip(others, above + below[1:]):
            scores[i, c] = v
        scores[i, t] = relevant_value
    return scores


def test_helper_builds_the_ranks_it_claims():
    s = scores_with_ranks([1, 3, 12], 15, [0, 7, 14])
    for i, (r, t) in enumerate(zip([1, 3, 12], [0, 7, 14])):
        assert int((s[i] > s[i, t]).sum()) == r - 1
        assert len(set(s[i])) == 15


def test_toy_ranks_1_3_12():
    targets = [0, 7, 14]
    s = scores_with_ranks([1, 3, 12], 15, targets)
    assert ranks(s, targets).tolist() == [1, 3, 12]
    m = retrieval_metrics(s, targets)
    assert m["mAP@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["R@1"] == pytest.approx(1 / 3)
    assert m["R@5"] == pytest.approx(2 / 3)
    assert m["R@10"] == pytest.approx(2 / 3)
    assert set(m) == {"mAP@10", "R@1", "R@5", "R@10"}


def test_rank_10_counts_and_rank_11_does_not():
    targets = [2, 2, 5, 9]
    wanted = [10, 11, 5, 6]
    s = scores_with_ranks(wanted, 20, targets)
    m = retrieval_metrics(s, targets)
    assert m["mAP@10"] == pytest.approx((1 / 10 + 0 + 1 / 5 + 1 / 6) / 4)
    assert m["R@1"] == 0.0
    assert m["R@5"] == pytest.approx(1 / 4)
    assert m["R@10"] == pytest.approx(3 / 4)


def test_tiny_matrix_by_hand():
    # 2 captions x 3 clips, written out explicitly
    s = np.array([[0.1, 0.9, 0.5],    # target 2 -> one clip (0.9) above -> rank 2
                  [0.3, 0.2, 0.1]])   # target 0 -> rank 1
    m = retrieval_metrics(s, [2, 0])
    assert m["mAP@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["R@1"] == pytest.approx(0.5)
    assert m["R@5"] == 1.0 and m["R@10"] == 1.0


def test_numpy_and_torch_inputs_agree(rng):
    s = rng.normal(size=(40, 30))
    t = rng.integers(0, 30, size=40)
    a = retrieval_metrics(s, t)
    b = retrieval_metrics(torch.from_numpy(s), torch.from_numpy(t))
    c = retrieval_metrics(torch.from_numpy(s).float(), t.tolist())
    assert a == b == c
    # and they agree with a plain-loop rank computation
    expected_ranks = [1 + sum(s[i, j] > s[i, t[i]] for j in range(30)) for i in range(40)]
    assert ranks(s, t).tolist() == expected_ranks
    ap = np.mean([1 / r if r <= 10 else 0 for r in expected_ranks])
    assert a["mAP@10"] == pytest.approx(ap)


def test_torch_tensor_with_grad_is_accepted():
    s = torch.tensor([[0.2, 0.8], [0.9, 0.1]], requires_grad=True)
    m = retrieval_metrics(s, torch.tensor([1, 0]))
    assert m["R@1"] == 1.0 and m["mAP@10"] == 1.0


def test_all_equal_scores_rank_last():
    n_clips = 7
    s = np.zeros((3, n_clips))
    r = ranks(s, [0, 3, 6])
    assert r.tolist() == [n_clips] * 3
    m = retrieval_metrics(s, [0, 3, 6])
    assert m["R@1"] == 0.0 and m["R@5"] == 0.0
    assert m["R@10"] == 1.0  # 7 <= 10
    assert m["mAP@10"] == pytest.approx(1 / 7)


def test_ties_count_against_relevant_clip():
    # relevant clip 1 ties with clip 0; clip 2 is above both -> pessimistic rank 3
    s = np.array([[0.5, 0.5, 0.9, 0.1]])
    assert ranks(s, [1]).tolist() == [3]
    assert ranks(s, [0]).tolist() == [3]
    # all-equal over 20 clips: no credit at all
    m = retrieval_metrics(np.ones((4, 20)), [0, 1, 2, 19])
    assert m == {"mAP@10": 0.0, "R@1": 0.0, "R@5": 0.0, "R@10": 0.0}


@pytest.mark.parametrize("target", [[0, 3], [-1, 0], [0, 10]])
def test_target_out_of_range_raises(target):
    s = np.zeros((2, 3))
    with pytest.raises(ValueError, match="target"):
        retrieval_metrics(s, target)


def test_wrong_shapes_raise():
    with pytest.raises(ValueError, match="scores"):
        retrieval_metrics(np.zeros(5), [0])
    with pytest.raises(ValueError, match="scores"):
        retrieval_metrics(np.zeros((2, 3, 4)), [0, 1])
    with pytest.raises(ValueError, match="target"):
        retrieval_metrics(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="target"):
        retrieval_metrics(np.zeros((2, 3)), [[0], [1]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_scores_raise(bad):
    s = np.zeros((2, 3))
    s[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        retrieval_metrics(s, [0, 1])


def test_chance_metrics_closed_form_small():
    # 4 clips, uniformly random rank in 1..4
    m = chance_metrics(4)
    assert m["mAP@10"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert m["R@1"] == pytest.approx(1 / 4)
    assert m["R@5"] == 1.0 and m["R@10"] == 1.0
    m = chance_metrics(1045)
    assert m["R@10"] == pytest.approx(10 / 1045)
    assert m["mAP@10"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 1045)


@pytest.mark.parametrize("n_clips", [6, 50])
def test_chance_metrics_matches_monte_carlo(n_clips):
    gen = np.random.default_rng(n_clips)
    n_captions = 20000
    scores = gen.random((n_captions, n_clips))  # a random ranking per caption
    targets = gen.integers(0, n_clips, size=n_captions)
    mc = retrieval_metrics(scores, targets)
    exact = chance_metrics(n_clips)
    for key in exact:
        # binomial / bounded-variable standard error, 5 sigma
        p = exact[key]
        tol = 5 * math.sqrt(max(p * (1 - p), 1e-4) / n_captions)
        assert abs(mc[key] - p) < tol, (key, mc[key], p)


def test_empty_caption_set_is_not_an_index_error():
    # no captions: ranks is empty (no out-of-range check on an empty target)
    assert ranks(np.zeros((0, 3)), np.zeros(0, dtype=int)).numel() == 0


def test_float64_scores_keep_their_precision():
    # 0.5 + 1e-9 and 0.5 are distinct in float64 but equal in float32: no tie may be invented
    s = np.array([[0.5 + 1e-9, 0.5, 0.1], [1e9, 1e9 + 1, 0.0]])
    assert ranks(s, [0, 1]).tolist() == [1, 1]
    assert ranks(torch.from_numpy(s), [0, 1]).tolist() == [1, 1]
    # integer scores are ranked too
    assert ranks(np.array([[3, 1, 2]]), [2]).tolist() == [2]
