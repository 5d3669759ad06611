"""loss.triplet_loss (paper eq. 7) against hinge terms computed by hand."""
import math
from collections import Counter

import numpy as np
import pytest
import torch

from retrieval_lib.loss import sample_impostors, triplet_loss

# A 4-pair batch in which every impostor *score* is forced.
# Pairs 0, 1, 2 are captions of clip 0 (they share its audio embedding), pair 3 is clip 1.
#   anchors 0-2: the only other-clip item is 3    -> S_a^n = a3.t_i, S_q^n = a_i.t3
#   anchor 3:    impostors among 0, 1, 2           -> audio a_j = a0 = a1 = a2 whatever j,
#                a3.t_k has the same value (0.2) for k = 0, 1, 2.
CLIPS = [0, 0, 0, 1]
AUDIO = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
TEXT = [[0.8, 0.2, 0.1], [0.3, 0.2, 0.9], [0.5, 0.2, -0.4], [0.1, 0.7, 0.3]]
# by hand:             pos   S_a^n  S_q^n
#   anchor 0:          0.8   0.2    0.1
#   anchor 1:          0.3   0.2    0.1
#   anchor 2:          0.5   0.2    0.1
#   anchor 3:          0.7   0.1    0.2
HAND_POS = [0.8, 0.3, 0.5, 0.7]
HAND_AUDIO_IMP = [0.2, 0.2, 0.2, 0.1]
HAND_CAPTION_IMP = [0.1, 0.1, 0.1, 0.2]


def forced_batch():
    return torch.tensor(AUDIO), torch.tensor(TEXT), torch.tensor(CLIPS)


@pytest.mark.parametrize("margin, expected", [
    # margin 0.4: anchor 1 -> (0.2-0.3+0.4) + (0.1-0.3+0.4) = 0.3 + 0.2; anchor 2 -> 0.1 + 0;
    #             anchors 0 and 3 -> 0.  Sum 0.6, divided by N = 4.
    (0.4, 0.6 / 4),
    # margin 0: every impostor scores below its positive -> no loss
    (0.0, 0.0),
    # margin 1: (0.4+0.3) + (0.9+0.8) + (0.7+0.6) + (0.4+0.5) = 4.6
    (1.0, 4.6 / 4),
])
def test_forced_batch_by_hand(margin, expected):
    a, t, c = forced_batch()
    for seed in range(5):  # the impostor draw does not matter here
        g = torch.Generator().manual_seed(seed)
        loss = triplet_loss(a, t, c, margin=margin, generator=g)
        assert loss.ndim == 0
        assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_forced_batch_return_scores():
    a, t, c = forced_batch()
    loss, scores = triplet_loss(a, t, c, margin=0.4, return_scores=True,
                                generator=torch.Generator().manual_seed(0))
    assert float(loss) == pytest.approx(0.15, abs=1e-6)
    assert set(scores) == {"pos", "audio_imp", "caption_imp"}
    np.testing.assert_allclose(scores["pos"].numpy(), HAND_POS, atol=1e-6)
    np.testing.assert_allclose(scores["audio_imp"].numpy(), HAND_AUDIO_IMP, atol=1e-6)
    np.testing.assert_allclose(scores["caption_imp"].numpy(), HAND_CAPTION_IMP, atol=1e-6)
    for v in scores.values():
        assert not v.requires_grad


def numpy_reference_two_clips(a, t, margin):
    """Batch of two pairs from two different clips: impostor of 0 is 1 and vice versa."""
    total = 0.0
    for i in range(2):
        j = 1 - i
        pos = sum(a[i][k] * t[i][k] for k in range(len(a[i])))
        s_a = sum(a[j][k] * t[i][k] for k in range(len(a[i])))
        s_q = sum(a[i][k] * t[j][k] for k in range(len(a[i])))
        total += max(0.0, s_a - pos + margin) + max(0.0, s_q - pos + margin)
    return total / 2


@pytest.mark.parametrize("margin", [0.0, 0.2, 0.4, 1.0])
def test_two_pair_batch_matches_loop(margin, rng):
    a = rng.normal(size=(2, 5))
    t = rng.normal(size=(2, 5))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    expected = numpy_reference_two_clips(a.tolist(), t.tolist(), margin)
    got = triplet_loss(torch.tensor(a), torch.tensor(t), [17, 3], margin=margin)
    assert float(got) == pytest.approx(expected, abs=1e-9)


def test_larger_margin_never_lowers_loss(rng):
    a = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(16, 8))), dim=1)
    t = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(16, 8))), dim=1)
    clips = torch.arange(16) // 2
    losses = [float(triplet_loss(a, t, clips, margin=m, generator=torch.Generator().manual_seed(7)))
              for m in (0.0, 0.2, 0.4, 1.0, 2.0)]
    assert losses == sorted(losses)
    # with margin 2 every hinge is active on unit vectors: loss = 1/N sum (S_a + S_q - 2 S_p + 4)
    _, s = triplet_loss(a, t, clips, margin=2.0, return_scores=True,
                        generator=torch.Generator().manual_seed(7))
    by_hand = float((s["audio_imp"] + s["caption_imp"] - 2 * s["pos"] + 4.0).sum()) / 16
    assert losses[-1] == pytest.approx(by_hand, abs=1e-9)


def coded_batch(n):
    """Embeddings from which the drawn impostors can be read back off the scores.

    a_j = e_j and t_k[m] = 100 (k + 1) + (m + 1), so for anchor i
    S_a^n = a_j.t_i = 100 (i+1) + (j+1)  ->  j = S_a^n mod 100 - 1
    S_q^n = a_i.t_k = 100 (k+1) + (i+1)  ->  k = S_q^n // 100 - 1
    """
    a = torch.eye(n, dtype=torch.float64)
    t = torch.tensor([[100.0 * (k + 1) + (m + 1) for m in range(n)] for k in range(n)],
                     dtype=torch.float64)
    return a, t


def test_impostors_are_other_clips_uniformly():
    clips = [0, 0, 1, 1, 1, 2, 3, 3]
    n = len(clips)
    a, t = coded_batch(n)
    counts_a = [Counter() for _ in range(n)]
    counts_q = [Counter() for _ in range(n)]
    same_draw = [0] * n
    draws = 1500
    g = torch.Generator().manual_seed(123)
    for _ in range(draws):
        _, s = triplet_loss(a, t, clips, margin=0.0, generator=g, return_scores=True)
        assert s["audio_imp"].shape == (n,) and s["caption_imp"].shape == (n,)
        for i in range(n):
            j = int(round(float(s["audio_imp"][i]))) % 100 - 1
            k = int(round(float(s["caption_imp"][i]))) // 100 - 1
            counts_a[i][j] += 1
            counts_q[i][k] += 1
            same_draw[i] += j == k
    for i in range(n):
        others = [j for j in range(n) if clips[j] != clips[i]]
        p = 1 / len(others)
        tol = 5 * math.sqrt(p * (1 - p) * draws)
        for counts in (counts_a[i], counts_q[i]):
            assert set(counts) == set(others), (i, counts)  # never a same-clip item, all others
            for j in others:
                assert abs(counts[j] - draws * p) < tol, (i, j, counts[j])
        # audio and caption impostors are independent draws
        assert abs(same_draw[i] - draws * p) < tol


def test_sample_impostors_batched_leading_dims():
    clips = torch.tensor([[0, 0, 1, 2], [5, 5, 5, 5]]).repeat(500, 1)  # (1000, 4)
    idx, valid = sample_impostors(clips, torch.Generator().manual_seed(0))
    assert idx.shape == clips.shape and valid.shape == clips.shape
    first = idx[0::2]
    assert valid[0::2].all() and not valid[1::2].any()
    c = clips[0::2]
    assert (torch.gather(c, 1, first) != c).all()
    # anchor 0 (clip 0): items 2 and 3 each about half the time
    frac = float((first[:, 0] == 2).float().mean())
    assert abs(frac - 0.5) < 5 * math.sqrt(0.25 / 500)


def test_single_clip_batch_contributes_nothing():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t = torch.tensor([[-1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])  # positives score -1: worst case
    loss, s = triplet_loss(a, t, [4, 4, 4], margin=1.0, return_scores=True)
    assert float(loss) == 0.0
    np.testing.assert_allclose(s["pos"].numpy(), [-1.0, -1.0, -1.0])
    assert s["audio_imp"].numel() == 0 and s["caption_imp"].numel() == 0


def test_orthogonal_impostors_by_hand():
    # positives score 1, every impostor scores 0: each hinge is max(0, 0 - 1 + 1.5) = 0.5,
    # two per anchor, three anchors, divided by N = 3 -> 1.0
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert float(triplet_loss(a, t, [0, 0, 1], margin=1.5)) == pytest.approx(1.0)
    assert float(triplet_loss(a, t, [0, 0, 1], margin=1.0)) == 0.0


def test_gradient_of_active_hinges_by_hand():
    # Two pairs of two clips, unit vectors, margin 2: every hinge is active. Terms holding a_0:
    #   anchor 0: (a1.t0 - a0.t0 + 2)  -> d/da_0 = -t0
    #             (a0.t1 - a0.t0 + 2)  -> d/da_0 = t1 - t0
    #   anchor 1: (a0.t1 - a1.t1 + 2)  -> d/da_0 = t1
    # so dL/da_0 = (2 t1 - 2 t0) / N = t1 - t0, and symmetrically dL/da_1 = t0 - t1.
    a = torch.tensor([[0.6, 0.8], [0.8, -0.6]], requires_grad=True)
    t = torch.tensor([[0.28, 0.96], [0.96, 0.28]])
    loss = triplet_loss(a, t, [0, 1], margin=2.0)
    loss.backward()
    np.testing.assert_allclose(a.grad[0].numpy(), [0.68, -0.68], atol=1e-6)
    np.testing.assert_allclose(a.grad[1].numpy(), [-0.68, 0.68], atol=1e-6)
    # margin 0.4: a0.t0 = 0.936, a1.t1 = 0.6, a1.t0 = -0.352, a0.t1 = 0.8. Active hinges:
    #   anchor 0 caption term 0.8 - 0.936 + 0.4 = 0.264  (d/da_0 = t1 - t0)
    #   anchor 1 audio term   0.8 - 0.6 + 0.4 = 0.6      (d/da_0 = t1, d/da_1 = -t1)
    # -> loss 0.864 / 2, dL/da_0 = (2 t1 - t0) / 2 = (0.82, -0.2), dL/da_1 = -t1 / 2
    a.grad = None
    loss = triplet_loss(a, t, [0, 1], margin=0.4)
    assert float(loss.detach()) == pytest.approx(0.432, abs=1e-6)
    loss.backward()
    np.testing.assert_allclose(a.grad[0].numpy(), [0.82, -0.2], atol=1e-6)
    np.testing.assert_allclose(a.grad[1].numpy(), [-0.48, -0.14], atol=1e-6)


def test_generator_reproducibility():
    a, t = coded_batch(8)
    clips = [0, 1, 2, 3, 4, 5, 6, 7]
    l1, s1 = triplet_loss(a, t, clips, generator=torch.Generator().manual_seed(42), return_scores=True)
    l2, s2 = triplet_loss(a, t, clips, generator=torch.Generator().manual_seed(42), return_scores=True)
    assert float(l1) == float(l2)
    for key in s1:
        assert torch.equal(s1[key], s2[key])
    differ = 0
    for seed in range(1, 6):
        _, s3 = triplet_loss(a, t, clips, generator=torch.Generator().manual_seed(seed),
                             return_scores=True)
        differ += not torch.equal(s1["audio_imp"], s3["audio_imp"])
    assert differ >= 4  # 7 choices for each of 8 anchors: a repeat is (1/7)^8 unlikely


def test_audio_impostor_drawn_before_caption_impostor():
    n = 6
    a, t = coded_batch(n)
    clips = torch.tensor([0, 0, 1, 2, 2, 3])
    _, s = triplet_loss(a, t, clips, generator=torch.Generator().manual_seed(9), return_scores=True)
    g = torch.Generator().manual_seed(9)
    audio_idx, _ = sample_impostors(clips, g)
    text_idx, _ = sample_impostors(clips, g)
    got_j = [int(round(float(v))) % 100 - 1 for v in s["audio_imp"]]
    got_k = [int(round(float(v))) // 100 - 1 for v in s["caption_imp"]]
    assert got_j == audio_idx.tolist()
    assert got_k == text_idx.tolist()


def test_bad_inputs_raise():
    a = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="audio_emb and text_emb"):
        triplet_loss(a, torch.zeros(3, 5), [0, 1, 2])
    with pytest.raises(ValueError, match="audio_emb and text_emb"):
        triplet_loss(a, torch.zeros(2, 4), [0, 1, 2])
    with pytest.raises(ValueError, match="audio_emb and text_emb"):
        triplet_loss(torch.zeros(4), torch.zeros(4), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="clip_ids"):
        triplet_loss(a, torch.zeros(3, 4), [0, 1])
    with pytest.raises(ValueError, match="clip_ids"):
        triplet_loss(a, torch.zeros(3, 4), [[0, 1, 2]])
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(a, torch.zeros(3, 4), [0, 1, 2], margin=-0.1)


def test_one_generator_per_row_draws_each_row_from_its_own_stream():
    """A list of generators: row k equals what generator k alone gives for row k."""
    from retrieval_lib.loss import sample_impostors
    clips = torch.tensor([[0, 0, 1, 2, 3], [5, 6, 6, 7, 8]])
    gens = [torch.Generator().manual_seed(s) for s in (11, 12)]
    idx, ok = sample_impostors(clips, gens)
    for k, seed in enumerate((11, 12)):
        alone, ok_alone = sample_impostors(clips[k], torch.Generator().manual_seed(seed))
        assert torch.equal(idx[k], alone) and torch.equal(ok[k], ok_alone)
    with pytest.raises(ValueError, match="one generator per row"):
        sample_impostors(clips, gens[:1])


# -- the registry, and eq. 7 on score matrices ---------------------------------------------------

def test_registered_losses_and_unknown_names():
    from retrieval_lib.loss import get_loss, loss_names
    assert loss_names()[:2] == ("triplet", "infonce")
    assert get_loss("triplet").reads == ("margin",) and get_loss("infonce").reads == ("temperature",)
    assert "Eq. 7" in get_loss("triplet").summary
    for bad in ("InfoNCE", "", None, 7):
        with pytest.raises(ValueError, match=r"unknown loss .*registered losses: triplet, infonce"):
            get_loss(bad)


def test_register_loss_refuses_bad_registrations():
    from retrieval_lib.loss import register_loss

    def ok(scores, clip_ids, *, margin=None, temperature=None, generator=None):
        return scores.mean((-1, -2))
    for name in ("", " padded ", None, 3):
        with pytest.raises(ValueError, match="loss name must be a non-empty string"):
            register_loss(name)(ok)
    with pytest.raises(ValueError, match="reads must name fields among"):
        register_loss("test-bad-reads", reads=("lr",))(ok)
    with pytest.raises(ValueError, match="must accept \\(scores, clip_ids, \\*, margin, temperature"):
        register_loss("test-bad-signature")(lambda scores: scores.sum())
    with pytest.raises(ValueError, match="'triplet' is already registered"):
        register_loss("triplet")(ok)


def test_registered_triplet_on_scores_equals_triplet_loss(rng):
    from retrieval_lib.loss import batch_scores, compute_loss, get_loss
    a = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(12, 6))), dim=1)
    t = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(12, 6))), dim=1)
    clips = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7])
    want = triplet_loss(a, t, clips, margin=0.3, generator=torch.Generator().manual_seed(3))
    scores = batch_scores(a, t)
    np.testing.assert_allclose(scores.numpy(), (t @ a.T).numpy(), atol=1e-12)   # caption x clip
    got = compute_loss(get_loss("triplet"), scores, clips, margin=0.3, generator=torch.Generator().manual_seed(3))
    assert float(got) == pytest.approx(float(want), abs=1e-12)


def test_a_batch_of_models_equals_each_model_alone(rng):
    """(K, B, B) scores with one generator, margin and temperature per model."""
    from retrieval_lib.loss import compute_loss, get_loss
    K, B = 3, 10
    scores = torch.from_numpy(rng.uniform(-1, 1, size=(K, B, B)))
    clips = torch.stack([torch.from_numpy(rng.integers(0, 4, size=B)) for _ in range(K)])
    margins, taus = torch.tensor([0.1, 0.4, 0.9]), torch.tensor([0.05, 0.2, 1.0])
    for name, kw in (("triplet", {"margin": margins}), ("infonce", {"temperature": taus})):
        spec = get_loss(name)
        many = compute_loss(spec, scores, clips, generator=[torch.Generator().manual_seed(k) for k in range(K)],
                            **kw)
        assert many.shape == (K,)
        for k in range(K):
            one = compute_loss(spec, scores[k], clips[k], generator=torch.Generator().manual_seed(k),
                               **{key: float(v[k]) for key, v in kw.items()})
            assert float(many[k]) == pytest.approx(float(one), rel=1e-6), (name, k)


def test_shared_clip_ids_give_every_model_the_same_draws(rng):
    """clip_ids (B,) with K score matrices and one generator: one set of impostors for all
    models (the validation loss)."""
    from retrieval_lib.loss import triplet_scores
    a, t = coded_batch(6)
    s = (t @ a.T).unsqueeze(0).repeat(4, 1, 1)                  # four identical models
    clips = torch.tensor([0, 0, 1, 2, 2, 3])
    pos, s_a, s_t, va, vt = triplet_scores(s, clips, torch.Generator().manual_seed(5))
    assert s_a.shape == (4, 6) and (s_a == s_a[0]).all() and (s_t == s_t[0]).all()
    # the caption-major layout: S[i, j] = t_i . a_j; the decoded impostors are other clips
    j = (s_a[0].round() % 100 - 1).long()
    k = (s_t[0].round() // 100 - 1).long()
    assert (clips[j] != clips).all() and (clips[k] != clips).all()


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(3, 4), "scores must be a \\(\\.\\.\\., B, B\\) tensor"),
    (torch.zeros(4), "scores must be a \\(\\.\\.\\., B, B\\) tensor"),
    ([[0.0, 1.0], [1.0, 0.0]], "scores must be a \\(\\.\\.\\., B, B\\) tensor")])
def test_compute_loss_refuses_what_is_not_a_score_matrix(bad, message):
    from retrieval_lib.loss import compute_loss, get_loss
    with pytest.raises(ValueError, match=message):
        compute_loss(get_loss("triplet"), bad, [0, 1, 2, 3])


def test_compute_loss_refuses_clip_ids_and_per_model_values_of_the_wrong_size():
    from retrieval_lib.loss import compute_loss, get_loss
    s = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match="clip_ids must have one entry per pair \\(3\\)"):
        compute_loss(get_loss("infonce"), s, [0, 1])
    with pytest.raises(ValueError, match="temperature must be a number or one value per model \\(2,\\)"):
        compute_loss(get_loss("infonce"), s, [0, 1, 2], temperature=torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="margin must be a number or one value per model"):
        compute_loss(get_loss("triplet"), s, [0, 1, 2], margin=torch.tensor([0.1, 0.2, 0.3]))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            compute_loss(get_loss("infonce"), s, [0, 1, 2], temperature=bad)


# -- symmetric InfoNCE -----------------------------------------------------------------------------

def info_nce_by_hand(s, clips, tau):
    """Plain-Python symmetric InfoNCE: s[i][j] = caption i . clip of pair j; a pair j != i of
    the same clip is neither a positive nor a negative (left out of both softmaxes)."""
    n = len(clips)
    keep = [[j == i or clips[j] != clips[i] for j in range(n)] for i in range(n)]
    rows = [math.log(sum(math.exp(s[i][j] / tau) for j in range(n) if keep[i][j])) - s[i][i] / tau
            for i in range(n)]
    cols = [math.log(sum(math.exp(s[i][j] / tau) for i in range(n) if keep[i][j])) - s[j][j] / tau
            for j in range(n)]
    return 0.5 * (sum(rows) / n + sum(cols) / n)


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.05])
def test_info_nce_by_hand(tau, rng):
    from retrieval_lib.loss import info_nce_loss
    a = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(7, 5))), dim=1)
    t = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(7, 5))), dim=1)
    clips = [3, 3, 1, 4, 4, 4, 9]
    s = (t @ a.T).tolist()
    want = info_nce_by_hand(s, clips, tau)
    assert float(info_nce_loss(a, t, clips, temperature=tau)) == pytest.approx(want, rel=1e-9)


def test_info_nce_small_case_worked_out():
    # two pairs of different clips, scores by hand: S = [[1, 0], [0, 1]] at tau = 1:
    # each row and column: -log(e / (e + 1)) = log(1 + 1/e)
    from retrieval_lib.loss import compute_loss, get_loss
    s = torch.eye(2, dtype=torch.float64)
    got = compute_loss(get_loss("infonce"), s, [0, 1], temperature=1.0)
    assert float(got) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-12)
    # the same two captions of ONE clip: nothing to contrast, each softmax has one term: 0
    assert float(compute_loss(get_loss("infonce"), s, [5, 5], temperature=1.0)) == 0.0


def test_info_nce_siblings_are_not_negatives():
    """Raising the score of a caption with a sibling pair's clip (same clip) changes nothing."""
    from retrieval_lib.loss import compute_loss, get_loss
    spec = get_loss("infonce")
    s = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.0, 0.2, 0.7]], dtype=torch.float64)
    clips = [4, 4, 6]
    base = float(compute_loss(spec, s, clips, temperature=0.1))
    sibling = s.clone()
    sibling[0, 1] = sibling[1, 0] = 5.0        # pairs 0 and 1 share clip 4
    assert float(compute_loss(spec, sibling, clips, temperature=0.1)) == pytest.approx(base, rel=1e-12)
    other = s.clone()
    other[0, 2] = 5.0                           # clip 6 is a negative of caption 0: the loss grows
    assert float(compute_loss(spec, other, clips, temperature=0.1)) > base + 1


def test_info_nce_gradient_reaches_a_learned_temperature():
    from retrieval_lib.loss import compute_loss, get_loss
    s = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64, requires_grad=True)
    log_tau = torch.tensor(math.log(0.5), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, lt: compute_loss(get_loss("infonce"), x, [0, 1], temperature=lt.exp()), (s, log_tau))
    loss = compute_loss(get_loss("infonce"), s, [0, 1], temperature=log_tau.exp())
    loss.backward()
    # the positives win every softmax: a lower temperature sharpens them, so d loss / d log tau > 0
    assert float(log_tau.grad) > 0


def test_triplet_terms_reads_the_scores_of_given_impostors():
    """triplet_terms (used by analysis.pair_scores): S^p = a_i.t_i, S_a^n = a_j.t_i, S_q^n = a_i.t_k."""
    from retrieval_lib.loss import triplet_terms
    a, t = coded_batch(5)                      # a_j . t_i = 100 (i + 1) + (j + 1)
    audio_idx, text_idx = torch.tensor([1, 0, 4, 2, 3]), torch.tensor([3, 2, 0, 4, 1])
    pos, s_a, s_q = triplet_terms(a, t, audio_idx, text_idx)
    i = torch.arange(5, dtype=torch.float64)
    torch.testing.assert_close(pos, 100 * (i + 1) + (i + 1))
    torch.testing.assert_close(s_a, 100 * (i + 1) + (audio_idx + 1).double())
    torch.testing.assert_close(s_q, 100 * (text_idx + 1).double() + (i + 1))
