"""metrics against hand-computed cases and independent plain-Python implementations.

First one relevant clip per caption (ranks, integer targets, chance_metrics), then many relevant
items (the DCASE 2025 AP), audio -> text, nDCG, and bad relevance input."""
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
    assert m["mAP@16"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)
    assert m["median rank"] == 3.0
    assert set(m) == {"mAP@10", "mAP@16", "R@1", "R@5", "R@10", "median rank"}


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
    assert m == {"mAP@10": 0.0, "mAP@16": 0.0, "R@1": 0.0, "R@5": 0.0, "R@10": 0.0, "median rank": 20.0}


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
    # a 2-d relevance is a relevance matrix: it must have the scores' shape
    with pytest.raises(ValueError, match=r"relevance matrix has shape \(2, 1\) but scores have shape \(2, 3\)"):
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
    assert m["mAP@16"] == m["mAP@10"] and m["median rank"] == 2.5
    m = chance_metrics(1045)
    assert m["mAP@16"] == pytest.approx(sum(1 / r for r in range(1, 17)) / 1045)
    assert m["median rank"] == 523.0
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
    assert set(exact) == set(mc)
    for key in exact:
        if key == "median rank":   # a sample median of whole ranks: within one rank of (n + 1) / 2
            assert abs(mc[key] - exact[key]) <= 1, (mc[key], exact[key])
            continue
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


# =============================================================================================
# Many relevant items per query (DCASE 2025), audio -> text, nDCG
# =============================================================================================

import statistics  # noqa: E402

from retrieval_lib.metrics import (METRIC_NAMES, audio_to_text_metrics, average_precision,  # noqa: E402
                                   best_rank, caption_clip_relevance, ndcg_at_k, ndcg_per_query)


def reference_relevant_ranks(scores_row, relevant_row):
    """1-based ranks of the relevant items, increasing, in the pessimistic ranking: items sorted
    by decreasing score, the non-relevant ones first among equal scores (a plain sort)."""
    order = sorted(range(len(scores_row)), key=lambda i: (-scores_row[i], bool(relevant_row[i])))
    return [pos + 1 for pos, i in enumerate(order) if relevant_row[i]]


def reference_ap(relevant_ranks, k):
    """DCASE 2025 AP@k, read off its definition: (1/n) sum over relevant ranks r_j <= k of j / r_j."""
    return sum(j / r for j, r in enumerate(relevant_ranks, start=1) if r <= k) / len(relevant_ranks)


def reference_metrics(scores, relevance):
    """All six metrics with loops over queries (independent of the vectorised code)."""
    scores, relevance = np.asarray(scores).tolist(), np.asarray(relevance).tolist()
    per_query = [reference_relevant_ranks(s, r) for s, r in zip(scores, relevance)]
    out = {f"mAP@{k}": sum(reference_ap(rr, k) for rr in per_query) / len(per_query) for k in (10, 16)}
    best = [rr[0] for rr in per_query]
    for k in (1, 5, 10):
        out[f"R@{k}"] = sum(b <= k for b in best) / len(best)
    out["median rank"] = float(statistics.median(best))
    return out


def random_case(gen, ties: bool):
    n_q, n_items = int(gen.integers(1, 9)), int(gen.integers(1, 40))
    if ties:   # few distinct values: many ties, also between relevant items
        scores = gen.integers(0, 4, size=(n_q, n_items)).astype(float)
    else:
        scores = gen.normal(size=(n_q, n_items))
    rel = gen.random((n_q, n_items)) < gen.uniform(0.02, 0.95)
    rel[np.arange(n_q), gen.integers(0, n_items, n_q)] = True      # every query has one
    return scores, rel


@pytest.mark.parametrize("ties", [False, True])
def test_many_relevant_matches_the_loop_reference(ties):
    gen = np.random.default_rng(7 + ties)
    for _ in range(300):
        scores, rel = random_case(gen, ties)
        got, want = retrieval_metrics(scores, rel), reference_metrics(scores, rel)
        assert set(got) == set(METRIC_NAMES)
        # one relevant item in every row takes the one-relevant path, whose means are float32
        tol = 1e-6 if (rel.sum(axis=1) == 1).all() else 1e-12
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=tol), (key, scores, rel)
        np.testing.assert_array_equal(best_rank(scores, rel),
                                      [reference_relevant_ranks(s, r)[0] for s, r in zip(scores.tolist(), rel.tolist())])


def test_ap_at_every_cut_off_matches_the_reference(rng):
    for _ in range(200):
        scores, rel = random_case(rng, ties=bool(rng.integers(2)))
        n_items = scores.shape[1]
        for k in sorted({1, 2, n_items, n_items + 1, 100}):
            want = [reference_ap(reference_relevant_ranks(s, r), k) for s, r in zip(scores.tolist(), rel.tolist())]
            np.testing.assert_allclose(average_precision(scores, rel, k), want, rtol=0, atol=1e-12)


def dcase_style_ap(scores_row, relevant_items, k):
    """AP@k as DCASE 2025 describes its evaluation: 0-based ranks from a double argsort of the
    negated scores, sorted, accumulated while rank < k, divided by the number of relevant items
    (valid when no scores tie: the double argsort then gives the one ranking)."""
    rank_of = np.argsort(np.argsort(-np.asarray(scores_row)))
    total = 0.0
    for j, r in enumerate(sorted(int(rank_of[i]) for i in relevant_items), start=1):
        if r >= k:
            break
        total += j / (r + 1)
    return total / len(relevant_items)


def test_matches_a_dcase_style_computation_without_ties():
    gen = np.random.default_rng(25)
    for _ in range(100):
        scores, rel = random_case(gen, ties=False)
        for k in (10, 16):
            want = np.mean([dcase_style_ap(s, np.flatnonzero(r), k) for s, r in zip(scores, rel)])
            tol = 1e-6 if (rel.sum(axis=1) == 1).all() else 1e-12      # float32 one-relevant path
            assert retrieval_metrics(scores, rel)[f"mAP@{k}"] == pytest.approx(want, abs=tol)
            np.testing.assert_allclose(average_precision(scores, rel, k).mean(), want, rtol=0, atol=1e-12)


def test_one_relevant_matrix_gives_exactly_the_targets_numbers(rng):
    for ties in (False, True):
        scores = rng.integers(0, 3, size=(50, 12)) if ties else rng.normal(size=(50, 12))
        target = rng.integers(0, 12, size=50)
        one_hot = np.eye(12, dtype=bool)[target]
        assert retrieval_metrics(scores, one_hot) == retrieval_metrics(scores, target)
        assert retrieval_metrics(torch.from_numpy(np.asarray(scores)), torch.from_numpy(one_hot)) == \
            retrieval_metrics(scores, target)
        np.testing.assert_array_equal(best_rank(scores, one_hot), ranks(scores, target).numpy())


def test_single_relevant_rows_agree_inside_a_mixed_matrix(rng):
    # rows with one relevant item go through the many-relevant code here (other rows have more)
    scores = rng.integers(0, 5, size=(30, 20)).astype(float)
    target = rng.integers(0, 20, size=30)
    rel = np.eye(20, dtype=bool)[target]
    rel[::3, 0] = True
    single = rel.sum(axis=1) == 1
    assert (~single).any() and single.any()
    r = ranks(scores, target).numpy()
    for k in (1, 10, 16):
        expected = np.where(r <= k, 1.0 / r, 0.0)
        np.testing.assert_allclose(average_precision(scores, rel, k)[single], expected[single], atol=1e-12)


def test_hand_worked_many_relevant_query():
    # 12 items; relevant items 3, 7 and 11 are placed at ranks 2, 5 and 11 (distinct scores)
    scores = np.array([[12, 10, 9, 11, 8, 2, 0, 1, 7, 6, 5, 4]], dtype=float)
    rel = np.zeros((1, 12), dtype=bool)
    rel[0, [3, 4, 6]] = True     # scores 11 (rank 2), 8 (rank 5), 0 (rank 12)
    m = retrieval_metrics(scores, rel)
    assert m["mAP@10"] == pytest.approx((1 / 2 + 2 / 5) / 3)
    assert m["mAP@16"] == pytest.approx((1 / 2 + 2 / 5 + 3 / 12) / 3)
    assert (m["R@1"], m["R@5"], m["R@10"]) == (0.0, 1.0, 1.0)
    assert m["median rank"] == 2.0


def test_ties_between_relevant_and_other_items_are_pessimistic():
    # items 0, 1 relevant, tied with item 2 at the top: worst order puts item 2 first -> ranks 2, 3
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])
    rel = np.array([[True, True, False, False]])
    assert average_precision(scores, rel, 10).tolist() == [pytest.approx((1 / 2 + 2 / 3) / 2)]
    assert best_rank(scores, rel).tolist() == [2]
    # two relevant items tied only with each other are ranks 1 and 2 whatever the order
    assert average_precision(np.array([[1.0, 1.0, 0.0]]), np.array([[True, True, False]]), 10).tolist() == [1.0]
    # everything tied: every relevant item goes after every other item
    m = retrieval_metrics(np.zeros((1, 30)), np.eye(30, dtype=bool)[[0]] | np.eye(30, dtype=bool)[[5]])
    assert m["R@10"] == 0.0 and m["median rank"] == 29.0 and m["mAP@16"] == 0.0


def test_denominator_is_the_number_of_relevant_items_not_min_n_k():
    # 12 relevant items at ranks 1..12: AP@10 = 10/12 (the 10 in the top 10 each give j/r_j = 1)
    scores = -np.arange(20, dtype=float)[None, :]
    rel = np.zeros((1, 20), dtype=bool)
    rel[0, :12] = True
    assert average_precision(scores, rel, 10).tolist() == [pytest.approx(10 / 12)]
    assert average_precision(scores, rel, 16).tolist() == [pytest.approx(1.0)]


def test_median_rank_of_an_even_number_of_queries_is_the_middle_mean():
    scores = np.array([[0.9, 0.1, 0.0, 0.2], [0.0, 0.1, 0.2, 0.3]])
    # best ranks: query 0 -> item 0 at rank 1; query 1 -> items 0 and 1 at ranks 4 and 3 -> 3
    rel = np.array([[True, False, False, True], [True, True, False, False]])
    assert retrieval_metrics(scores, rel)["median rank"] == 2.0
    assert retrieval_metrics(scores, [0, 0])["median rank"] == 2.5      # ranks 1 and 4


def test_int_0_1_matrix_is_accepted_as_boolean(rng):
    scores, rel = random_case(rng, ties=True)
    for dtype in (np.int64, np.uint8, np.int8):
        assert retrieval_metrics(scores, rel.astype(dtype)) == retrieval_metrics(scores, rel)
    assert retrieval_metrics(scores, rel.astype(int).tolist()) == retrieval_metrics(scores, rel)


# -- audio -> text ---------------------------------------------------------------------------

def laion_style_audio_to_text(scores, caption_clip, k_map=10):
    """LAION-CLAP's audio -> text evaluation, from its description: for each clip, the 0-based
    positions of its captions when all captions are ranked by the clip's scores; R@k if the best
    is < k; AP@10 = sum over the sorted positions < 10 of j / (position + 1), divided by the
    number of the clip's captions. No ties here (continuous random scores)."""
    n_clips = scores.shape[1]
    best, aps = [], []
    for c in range(n_clips):
        order = list(np.argsort(-scores[:, c]))
        pos = sorted(order.index(i) for i in np.flatnonzero(caption_clip == c))
        best.append(pos[0])
        aps.append(sum(j / (p + 1) for j, p in enumerate(pos, start=1) if p < k_map) / len(pos))
    out = {"mAP@10": float(np.mean(aps))}
    for k in (1, 5, 10):
        out[f"R@{k}"] = float(np.mean(np.array(best) < k))
    out["median rank"] = float(np.median(np.array(best) + 1))
    return out


@pytest.mark.parametrize("per_clip", [1, 5, "uneven"])
def test_audio_to_text_matches_a_laion_style_computation(per_clip):
    gen = np.random.default_rng(3)
    n_clips = 23
    counts = gen.integers(1, 7, n_clips) if per_clip == "uneven" else np.full(n_clips, per_clip)
    caption_clip = np.repeat(np.arange(n_clips), counts)
    gen.shuffle(caption_clip)
    # scores correlated with the truth, so that the metrics are not all near zero
    scores = gen.normal(size=(len(caption_clip), n_clips))
    scores[np.arange(len(caption_clip)), caption_clip] += 1.5
    want = laion_style_audio_to_text(scores, caption_clip)
    rel = caption_clip_relevance(caption_clip, n_clips)
    tol = 1e-6 if per_clip == 1 else 1e-12      # one caption per clip: the float32 one-relevant path
    for got in (audio_to_text_metrics(scores, caption_clip), retrieval_metrics(scores.T, rel.T)):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=tol), key


def test_caption_clip_relevance_by_hand():
    rel = caption_clip_relevance([0, 0, 2, 1], 4)
    assert rel.tolist() == [[True, False, False, False], [True, False, False, False],
                            [False, False, True, False], [False, True, False, False]]
    assert caption_clip_relevance(np.array([1, 0])).shape == (2, 2)
    with pytest.raises(ValueError, match="n_clips is 2"):
        caption_clip_relevance([0, 2], 2)


def test_audio_to_text_refuses_a_clip_without_captions():
    scores = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(ValueError, match=r"1 of 3 queries have no relevant item \(rows \[2\]\)"):
        audio_to_text_metrics(scores, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="caption_clip has 3 captions but scores have 4 rows"):
        audio_to_text_metrics(scores, [0, 1, 2])


# -- nDCG --------------------------------------------------------------------------------------

def reference_ndcg(scores_row, gains_row, k, judged_row=None):
    items = [i for i in range(len(gains_row)) if judged_row is None or judged_row[i]]
    order = sorted(items, key=lambda i: (-scores_row[i], gains_row[i]))     # ties: lower gain first
    dcg = sum(gains_row[i] / math.log2(p + 2) for p, i in enumerate(order[:k]))
    ideal = sorted((gains_row[i] for i in items), reverse=True)[:k]
    return dcg / sum(g / math.log2(p + 2) for p, g in enumerate(ideal))


def test_ndcg_hand_example():
    # ranking by score: item 0 (gain 3), item 2 (0), item 3 (1), item 1 (2)
    scores = np.array([[0.9, 0.1, 0.8, 0.5]])
    gains = np.array([[3.0, 2.0, 0.0, 1.0]])
    # DCG@3 = 3/log2(2) + 0/log2(3) + 1/log2(4) = 3.5; IDCG@3 = 3 + 2/log2(3) + 1/2
    assert ndcg_at_k(scores, gains, k=3) == pytest.approx(3.5 / (3.5 + 2 / math.log2(3)))
    # k = 10 > 4 items: the last item adds 2/log2(5); the ideal list is the same plus 0
    assert ndcg_at_k(scores, gains, k=10) == pytest.approx((3.5 + 2 / math.log2(5)) / (3.5 + 2 / math.log2(3)))
    assert ndcg_at_k(scores, gains * 37, k=3) == pytest.approx(ndcg_at_k(scores, gains, k=3))   # scale-free
    # the perfect ranking scores 1; ties count against the query
    assert ndcg_at_k(gains, gains, k=4) == pytest.approx(1.0)
    tied = ndcg_per_query(np.zeros((1, 4)), gains, k=1)
    assert tied.tolist() == [0.0]             # the zero-gain item is put first among the tie


def test_ndcg_judged_only_skips_unrated_items():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    gains = np.array([[0.0, 0.0, 50.0, 100.0]])
    judged = np.array([[False, True, True, True]])
    # ranked: item 1 (0), item 2 (50), item 3 (100); item 0 is not rated and is skipped
    want = (50 / math.log2(3) + 100 / 2) / (100 + 50 / math.log2(3))
    assert ndcg_at_k(scores, gains, k=10, judged=judged) == pytest.approx(want)
    # without the mask, item 0 counts as gain 0 at rank 1
    want_all = (50 / 2 + 100 / math.log2(5)) / (100 + 50 / math.log2(3))
    assert ndcg_at_k(scores, gains, k=10) == pytest.approx(want_all)


def test_ndcg_matches_the_loop_reference_with_ties_and_masks(rng):
    for _ in range(300):
        n_q, n_items = int(rng.integers(1, 6)), int(rng.integers(1, 30))
        scores = rng.integers(0, 4, size=(n_q, n_items)).astype(float) if rng.integers(2) else \
            rng.normal(size=(n_q, n_items))
        gains = np.where(rng.random((n_q, n_items)) < 0.4, rng.integers(0, 101, (n_q, n_items)), 0).astype(float)
        gains[np.arange(n_q), rng.integers(0, n_items, n_q)] = rng.integers(1, 101, n_q)
        judged = (rng.random((n_q, n_items)) < 0.6) | (gains > 0)
        k = int(rng.integers(1, 35))
        for mask in (None, judged):
            want = [reference_ndcg(s, g, k, None if mask is None else m)
                    for s, g, m in zip(scores.tolist(), gains.tolist(), judged.tolist())]
            np.testing.assert_allclose(ndcg_per_query(scores, gains, k, mask), want, rtol=0, atol=1e-12)


def test_ndcg_agrees_with_scikit_learn_without_ties(rng):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for _ in range(50):
        scores = rng.normal(size=(6, 25))
        gains = np.where(rng.random((6, 25)) < 0.5, rng.integers(0, 101, (6, 25)), 0).astype(float)
        gains[:, 0] = 70.0
        for k in (1, 10, 25):
            assert ndcg_at_k(scores, gains, k) == pytest.approx(sklearn_metrics.ndcg_score(gains, scores, k=k), abs=1e-12)


def test_binary_ndcg_of_a_single_relevant_item_is_one_over_log2_rank_plus_one():
    scores = np.array([[0.5, 0.9, 0.1, 0.7]])
    assert ndcg_at_k(scores, np.array([[True, False, False, False]])) == pytest.approx(1 / math.log2(4))


# -- bad relevance input -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 4), (2, 5), (4, 3), (1, 4)])
def test_relevance_matrix_of_the_wrong_shape(shape):
    rel = np.ones(shape, dtype=bool)
    with pytest.raises(ValueError, match=rf"relevance matrix has shape \({shape[0]}, {shape[1]}\) but scores "
                                         r"have shape \(2, 4\)"):
        retrieval_metrics(np.zeros((2, 4)), rel)


@pytest.mark.parametrize("rel", [np.ones((2, 4, 1), dtype=bool), np.ones((2, 4, 3), dtype=bool)])
def test_relevance_of_three_dimensions(rel):
    with pytest.raises(ValueError, match=r"integer targets \(n_queries,\) or a boolean matrix"):
        retrieval_metrics(np.zeros((2, 4)), rel)


@pytest.mark.parametrize("empty_rows", [[0], [1, 2], [0, 1, 2]])
def test_query_without_relevant_item(empty_rows):
    rel = np.ones((3, 4), dtype=bool)
    rel[empty_rows] = False
    n = len(empty_rows)
    with pytest.raises(ValueError, match=rf"{n} of 3 queries have no relevant item \(rows \[{', '.join(map(str, empty_rows))}\]\)"):
        retrieval_metrics(np.zeros((3, 4)), rel)
    with pytest.raises(ValueError, match="no relevant item"):
        average_precision(np.zeros((3, 4)), rel, 10)


@pytest.mark.parametrize("rel, message", [
    (np.array([[1.0, 0.0], [0.0, 1.0]]), r"boolean \(or integers 0 / 1\), got floating point values \(float64\)"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), r"floating point values \(NaN\)"),
    (np.array([[0.5, 0.0], [0.0, 1.0]], dtype=np.float32), "floating point"),
    (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "floating point"),
    (np.array([[1, 0], [0, 2]]), r"only 0 and 1, got \[2\]"),
    (np.array([[1, -1], [0, 1]]), r"only 0 and 1, got \[-1\]"),
    (np.array([[1 + 0j, 0], [0, 1]]), "complex"),
    (torch.tensor([[1, 0], [0, 1]], dtype=torch.complex64), "complex"),
    (np.array([["a", "b"], ["c", "d"]]), "must be numbers"),
    ([[True, False], [True]], "rectangular"),
])
def test_relevance_that_is_not_boolean(rel, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(np.zeros((2, 2)), rel)


@pytest.mark.parametrize("scores", [
    np.array([[1 + 2j, 0.0], [0.0, 1.0]]),
    torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.complex128),
])
def test_complex_scores_are_refused_everywhere(scores):
    with pytest.raises(ValueError, match="complex"):
        ranks(scores, [0, 1])
    with pytest.raises(ValueError, match="complex"):
        retrieval_metrics(scores, [0, 1])
    with pytest.raises(ValueError, match="complex"):
        retrieval_metrics(scores, np.eye(2, dtype=bool))
    with pytest.raises(ValueError, match="complex"):
        ndcg_at_k(scores, np.eye(2))


def test_boolean_scores_are_refused_as_a_swap():
    with pytest.raises(ValueError, match="scores are booleans"):
        retrieval_metrics(np.eye(3, dtype=bool), np.eye(3, dtype=bool))


@pytest.mark.parametrize("gains, message", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or inf"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or inf"),
    (np.array([[1.0, -2.0], [0.0, 1.0]]), ">= 0"),
    (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), r"gains have shape \(2, 3\)"),
    (np.array([[0.0, 0.0], [0.0, 1.0]]), r"1 of 2 queries have no item with a positive gain \(rows \[0\]\)"),
    (np.array([[1 + 1j, 0.0], [0.0, 1.0]]), "complex"),
])
def test_bad_gains(gains, message):
    with pytest.raises(ValueError, match=message):
        ndcg_at_k(np.zeros((2, 2)), gains)


def test_bad_judged_mask():
    gains = np.array([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="judged must be a boolean matrix"):
        ndcg_at_k(np.zeros((2, 2)), gains, judged=np.ones((2, 2)))
    with pytest.raises(ValueError, match="judged must be a boolean matrix of shape"):
        ndcg_at_k(np.zeros((2, 2)), gains, judged=np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="positive for pairs marked as not judged"):
        ndcg_at_k(np.zeros((2, 2)), gains, judged=np.array([[False, True], [True, True]]))


@pytest.mark.parametrize("k", [2.5, 2.0, True, np.True_, "10", None, 0, -3, torch.tensor(1.5)])
def test_k_must_be_a_whole_number(k):
    scores, rel = np.zeros((2, 3)), np.eye(3, dtype=bool)[:2]
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        average_precision(scores, rel, k)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        ndcg_at_k(scores, rel, k)
    from retrieval_lib.metrics import ap_at_k_one_relevant
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        ap_at_k_one_relevant(torch.tensor([1, 2]), k)


@pytest.mark.parametrize("k", [np.int64(2), np.int32(2), np.uint8(2), torch.tensor(2), 2])
def test_numpy_and_tensor_integers_are_valid_k(k):
    scores = np.array([[0.3, 0.2, 0.1]])
    rel = np.array([[False, True, True]])
    assert average_precision(scores, rel, k).tolist() == [pytest.approx(1 / 4)]    # (1/2) / 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_low_precision_tensor_scores_work_on_every_path(dtype):
    # scores that are exact in bfloat16 (multiples of 1/4): every dtype gives the same numbers
    base = np.array([[1.0, 0.5, 0.25, 0.0], [0.0, 0.25, 0.5, 1.0]])
    scores = torch.tensor(base, dtype=dtype)
    rel = np.array([[False, True, True, False], [True, False, False, False]])
    assert retrieval_metrics(scores, rel) == retrieval_metrics(base, rel)
    assert ndcg_at_k(scores, torch.tensor(rel, dtype=dtype)) == ndcg_at_k(base, rel)
    assert retrieval_metrics(scores, [1, 0]) == retrieval_metrics(base, [1, 0])
