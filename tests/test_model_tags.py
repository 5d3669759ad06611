"""tags (eq. 3-6) and model.AudioEncoder (eq. 2, eq. 5-6) against hand-written numpy."""
import math

import numpy as np
import pytest
import torch

from retrieval_lib.model import AudioEncoder, linear_init
from retrieval_lib.tags import AUDIOSET_LABELS, AUDIOSET_MIDS, N_TAGS, fuse, tag_embedding


# ---------------------------------------------------------------- hand-written references

def np_l2(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt((x * x).sum(axis=-1, keepdims=True))


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def np_tag_embedding(logits, w_t):
    p = np_sigmoid(logits)
    return np_l2((p / p.sum(axis=1, keepdims=True)) @ np.asarray(w_t, dtype=np.float64))


def np_layer_norm(x, gain, bias, eps=1e-5):
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)  # biased variance
    return (x - mean) / np.sqrt(var + eps) * gain + bias


def np_eq2(logits, enc):
    g = enc.norm.weight.detach().double().numpy()
    b = enc.norm.bias.detach().double().numpy()
    w = enc.linear.weight.detach().double().numpy()
    c = enc.linear.bias.detach().double().numpy()
    return np_l2(np_layer_norm(logits, g, b) @ w.T + c)


def randomise_norm(enc, seed):
    """Give the norm's gain and bias non-trivial values so that eq. 2 tests exercise them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        enc.norm.weight.copy_(1 + 0.5 * torch.randn(enc.norm.weight.shape, generator=gen))
        enc.norm.bias.copy_(0.3 * torch.randn(enc.norm.bias.shape, generator=gen))


# ---------------------------------------------------------------- AudioSet labels

def test_audioset_labels():
    assert N_TAGS == 527
    assert len(AUDIOSET_LABELS) == 527 and len(set(AUDIOSET_LABELS)) == 527
    assert len(AUDIOSET_MIDS) == 527 and len(set(AUDIOSET_MIDS)) == 527
    assert all(m[:3] in ("/m/", "/g/", "/t/") for m in AUDIOSET_MIDS)  # Freebase / Google ids
    assert AUDIOSET_LABELS[0] == "Speech"
    assert AUDIOSET_LABELS[74] == "Dog"
    assert AUDIOSET_LABELS[137] == "Music"
    assert AUDIOSET_LABELS[526] == "Field recording"
    assert AUDIOSET_LABELS[1] == "Male speech, man speaking"  # commas inside names survive CSV
    assert AUDIOSET_MIDS[0] == "/m/09x0r"
    assert all(isinstance(x, str) and x == x.strip() and x for x in AUDIOSET_LABELS)


# ---------------------------------------------------------------- eq. 3-4

# 2 clips x 3 classes, W_t 3 x 2:
#   clip 0: logits (0, 0, 0)       -> p = (1/2, 1/2, 1/2), weights 1/3 each
#           -> (1/3)(1,0) + (1/3)(0,1) + (1/3)(1,1) = (2/3, 2/3) -> (1/sqrt2, 1/sqrt2)
#   clip 1: logits (ln3, -ln3, 0)  -> p = (3/4, 1/4, 1/2), sum 3/2, weights (1/2, 1/6, 1/3)
#           -> (1/2 + 1/3, 1/6 + 1/3) = (5/6, 1/2) -> (5, 3)/sqrt(34)
W_SMALL = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
LOGITS_SMALL = [[0.0, 0.0, 0.0], [math.log(3), -math.log(3), 0.0]]
HAND_TAG = [[1 / math.sqrt(2), 1 / math.sqrt(2)], [5 / math.sqrt(34), 3 / math.sqrt(34)]]


def test_tag_embedding_tiny_case_by_hand():
    got = tag_embedding(LOGITS_SMALL, W_SMALL)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got.numpy(), HAND_TAG, atol=1e-6)
    # torch inputs give the same; it is the sigmoid-weighted mean, not a softmax
    got_t = tag_embedding(torch.tensor(LOGITS_SMALL), torch.tensor(W_SMALL))
    np.testing.assert_allclose(got_t.numpy(), HAND_TAG, atol=1e-6)
    softmax_w = np.array([9, 1, 3]) / 13
    assert not np.allclose(got[1].numpy(), np_l2(softmax_w @ np.array(W_SMALL)), atol=1e-3)


def test_tag_embedding_random_matches_numpy(rng):
    logits = rng.normal(scale=3.0, size=(5, 7))
    w = rng.normal(size=(7, 4))
    got = tag_embedding(logits, w).numpy()
    np.testing.assert_allclose(got, np_tag_embedding(logits, w), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # the l2 step makes it invariant to a positive rescaling of W_t
    np.testing.assert_allclose(tag_embedding(logits, 5.0 * w).numpy(), got, atol=1e-5)


def test_tag_embedding_one_dominant_class():
    # one very confident class among tiny ones: e_t is (almost) that class's embedding
    w = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    got = tag_embedding([[-30.0, -30.0, 30.0]], w).numpy()
    np.testing.assert_allclose(got[0], [0.6, 0.8], atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_tag_embedding_rejects_nonfinite_logits(bad):
    logits = np.zeros((3, 3))
    logits[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        tag_embedding(logits, W_SMALL)


def test_tag_embedding_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="classes"):
        tag_embedding(np.zeros((2, 4)), W_SMALL)  # 4 logits, 3 tag names
    with pytest.raises(ValueError, match="logits must be"):
        tag_embedding(np.zeros(3), W_SMALL)
    with pytest.raises(ValueError, match="tag_emb must be"):
        tag_embedding(np.zeros((2, 3)), np.zeros(3))


# ---------------------------------------------------------------- eq. 5-6

@pytest.mark.parametrize("lam, expected", [
    (0.0, [0.0, 1.0]),
    (1.0, [1.0, 0.0]),
    (0.5, [1 / math.sqrt(2), 1 / math.sqrt(2)]),
    (0.8, [0.8 / math.sqrt(0.68), 0.2 / math.sqrt(0.68)]),
])
def test_fuse_orthogonal_by_hand(lam, expected):
    e_a = torch.tensor([[1.0, 0.0]])
    e_t = torch.tensor([[0.0, 1.0]])
    np.testing.assert_allclose(fuse(e_a, e_t, lam).numpy()[0], expected, atol=1e-6)


def test_fuse_non_orthogonal_by_hand():
    # e_a = (0.6, 0.8), e_t = (1, 0), lam 0.5: (0.8, 0.4) / sqrt(0.8)
    got = fuse(torch.tensor([[0.6, 0.8]]), torch.tensor([[1.0, 0.0]]), 0.5).numpy()[0]
    np.testing.assert_allclose(got, [0.8 / math.sqrt(0.8), 0.4 / math.sqrt(0.8)], atol=1e-6)
    # lam 0.25: 0.25 (0.6, 0.8) + 0.75 (1, 0) = (0.9, 0.2)
    got = fuse(torch.tensor([[0.6, 0.8]]), torch.tensor([[1.0, 0.0]]), 0.25).numpy()[0]
    np.testing.assert_allclose(got, np.array([0.9, 0.2]) / math.sqrt(0.85), atol=1e-6)


def test_fuse_tensor_lam_per_row():
    e_a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    e_t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    got = fuse(e_a, e_t, torch.tensor([[0.0], [1.0]])).numpy()
    np.testing.assert_allclose(got, [[0.0, 1.0], [1.0, 0.0]], atol=1e-6)


def test_fuse_rejects_bad_inputs():
    e = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="differ in shape"):
        fuse(e, torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="lam"):
        fuse(e, e, -0.1)
    with pytest.raises(ValueError, match="lam"):
        fuse(e, e, 1.5)


# ---------------------------------------------------------------- AudioEncoder: parameters

def test_parameter_count_matches_paper():
    enc = AudioEncoder(527, 768, norm="layer")
    assert 2 * 527 + 527 * 768 + 768 == 406_558
    assert enc.n_parameters() == 406_558
    assert sum(p.numel() for p in enc.parameters()) == 406_558


def test_parameter_counts_batch_and_none():
    assert AudioEncoder(527, 768, norm="batch").n_parameters() == 406_558  # same as LN
    assert AudioEncoder(527, 768, norm="none").n_parameters() == 527 * 768 + 768
    # W_t is a buffer, not a parameter: adding tags adds no learnable weight
    enc = AudioEncoder(527, 768, norm="layer", tag_emb=np.zeros((527, 768)), lam=0.8)
    assert enc.n_parameters() == 406_558
    assert "tag_emb" in dict(enc.named_buffers())
    assert "tag_emb" in enc.state_dict()


def test_batchnorm_has_running_stats_layernorm_has_none():
    bn = AudioEncoder(6, 4, norm="batch")
    ln = AudioEncoder(6, 4, norm="layer")
    assert {"norm.running_mean", "norm.running_var"} <= set(dict(bn.named_buffers()))
    assert not any(k.startswith("norm.") for k in dict(ln.named_buffers()))


def test_init_bounds_and_norm_defaults():
    enc = AudioEncoder(527, 768, norm="layer", seed=0)
    weight, bias = enc.linear.weight.detach(), enc.linear.bias.detach()
    bound = 1 / math.sqrt(527)
    assert float(weight.abs().max()) <= bound
    assert float(bias.abs().max()) <= bound
    # a uniform(-b, b) sample of 400k values fills its range and has variance b^2 / 3
    assert float(weight.abs().max()) > 0.99 * bound
    assert float(weight.var()) == pytest.approx(bound ** 2 / 3, rel=0.02)
    assert torch.equal(enc.norm.weight, torch.ones(527))
    assert torch.equal(enc.norm.bias, torch.zeros(527))


def test_seeds():
    a, b = AudioEncoder(12, 5, seed=3), AudioEncoder(12, 5, seed=3)
    c = AudioEncoder(12, 5, seed=4)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.linear.weight, c.linear.weight)
    assert not torch.equal(a.linear.bias, c.linear.bias)
    # the seed fixes the same weights as linear_init with a generator of that seed
    w, bias = linear_init(5, 12, torch.Generator().manual_seed(3))
    assert torch.equal(a.linear.weight, w) and torch.equal(a.linear.bias, bias)
    # reset_parameters(seed) brings a trained-looking model back to those weights
    with torch.no_grad():
        c.linear.weight.add_(1.0)
        c.norm.weight.mul_(3.0)
    c.reset_parameters(3)
    assert torch.equal(c.linear.weight, a.linear.weight)
    assert torch.equal(c.norm.weight, torch.ones(12))


# ---------------------------------------------------------------- AudioEncoder: eq. 2

def test_eq2_matches_numpy_layernorm_linear_l2(rng):
    enc = AudioEncoder(9, 4, norm="layer", seed=1)
    randomise_norm(enc, 0)
    logits = rng.normal(scale=2.0, size=(6, 9)).astype(np.float32)
    got = enc(logits).detach().numpy()
    np.testing.assert_allclose(got, np_eq2(logits, enc), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # numpy and torch inputs agree
    np.testing.assert_allclose(enc(torch.from_numpy(logits)).detach().numpy(), got, atol=1e-7)


def test_eq2_full_size_outputs_unit_norm(rng):
    for norm in ("layer", "batch", "none"):
        enc = AudioEncoder(527, 768, norm=norm, seed=0)
        out = enc(rng.normal(size=(8, 527)).astype(np.float32))
        assert out.shape == (8, 768) and out.dtype == torch.float32
        np.testing.assert_allclose(out.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)


def test_norm_none_is_linear_then_l2(rng):
    enc = AudioEncoder(5, 3, norm="none", seed=2)
    x = rng.normal(size=(4, 5))
    w = enc.linear.weight.detach().double().numpy()
    c = enc.linear.bias.detach().double().numpy()
    np.testing.assert_allclose(enc(x.astype(np.float32)).detach().numpy(), np_l2(x @ w.T + c),
                               atol=1e-5)


def test_layernorm_rows_do_not_depend_on_the_batch(rng):
    enc = AudioEncoder(8, 3, norm="layer", seed=0)
    x = torch.from_numpy(rng.normal(size=(5, 8)).astype(np.float32))
    full = enc(x)
    for i in range(5):
        torch.testing.assert_close(enc(x[i:i + 1])[0], full[i])


# ---------------------------------------------------------------- AudioEncoder: eq. 5-6

def test_fusion_matches_hand_computation(rng):
    in_dim, out_dim, lam = 6, 4, 0.8
    w_t = rng.normal(size=(in_dim, out_dim))
    enc = AudioEncoder(in_dim, out_dim, norm="layer", tag_emb=w_t, lam=lam, seed=5)
    randomise_norm(enc, 1)
    logits = rng.normal(scale=2.0, size=(3, in_dim)).astype(np.float32)
    e_a = np_eq2(logits, enc)
    e_t = np_tag_embedding(logits, w_t)
    expected = np_l2(lam * e_a + (1 - lam) * e_t)
    got = enc(logits).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # a precomputed e_t passed in is used instead of the one from W_t
    other = np_l2(rng.normal(size=(3, out_dim)))
    got = enc(logits, tag_vec=torch.tensor(other, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got, np_l2(lam * e_a + (1 - lam) * other), atol=1e-5)


def test_lam_one_ignores_tags(rng):
    w_t = rng.normal(size=(6, 4))
    with_tags = AudioEncoder(6, 4, tag_emb=w_t, lam=1.0, seed=8)
    plain = AudioEncoder(6, 4, seed=8)
    x = rng.normal(size=(3, 6)).astype(np.float32)
    torch.testing.assert_close(with_tags(x), plain(x))


def test_lam_zero_is_the_tag_embedding_whatever_the_weights(rng):
    w_t = rng.normal(size=(6, 4))
    logits = rng.normal(scale=2.0, size=(5, 6)).astype(np.float32)
    expected = np_tag_embedding(logits, w_t)
    for seed in (0, 1, 2):
        enc = AudioEncoder(6, 4, norm="layer", tag_emb=w_t, lam=0.0, seed=seed)
        randomise_norm(enc, seed + 10)
        out = enc(logits)
        np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-5)
        # no learnable influence: every parameter gradient is zero
        (out * torch.arange(4.0)).sum().backward()
        for name, p in enc.named_parameters():
            assert p.grad is None or float(p.grad.abs().max()) == 0.0, name


def test_tag_emb_stored_as_float32_copy():
    w_t = np.arange(12, dtype=np.float64).reshape(3, 4)
    enc = AudioEncoder(3, 4, tag_emb=w_t, lam=0.5)
    assert enc.tag_emb.dtype == torch.float32
    np.testing.assert_array_equal(enc.tag_emb.numpy(), w_t)


# ---------------------------------------------------------------- AudioEncoder: errors

def test_constructor_errors():
    with pytest.raises(ValueError, match="norm"):
        AudioEncoder(5, 3, norm="group")
    with pytest.raises(ValueError, match="tag_emb"):
        AudioEncoder(5, 3, tag_emb=np.zeros((5, 4)))
    with pytest.raises(ValueError, match="tag_emb"):
        AudioEncoder(5, 3, tag_emb=np.zeros((3, 5)))
    for lam in (-0.01, 1.01, 2.0):
        with pytest.raises(ValueError, match="lam"):
            AudioEncoder(5, 3, lam=lam)


def test_forward_errors():
    enc = AudioEncoder(5, 3)
    with pytest.raises(ValueError, match="classes"):
        enc(np.zeros((2, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="logits must be"):
        enc(np.zeros(5, dtype=np.float32))
    bad = np.zeros((2, 5), dtype=np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        enc(bad)


# ---------------------------------------------------------------- BatchNorm train vs eval

def test_batchnorm_train_vs_eval(rng):
    enc = AudioEncoder(4, 3, norm="batch", seed=0)
    x = rng.normal(loc=2.0, scale=3.0, size=(6, 4)).astype(np.float32)
    w = enc.linear.weight.detach().double().numpy()
    c = enc.linear.bias.detach().double().numpy()
    x64 = x.astype(np.float64)

    # train mode: normalised with the batch's own mean and biased variance
    enc.train()
    out_train = enc(x).detach().numpy()
    xn = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    np.testing.assert_allclose(out_train, np_l2(xn @ w.T + c), atol=1e-5)
    # running statistics moved by momentum 0.1 (running var uses the unbiased variance)
    np.testing.assert_allclose(enc.norm.running_mean.numpy(), 0.1 * x64.mean(0), atol=1e-5)
    np.testing.assert_allclose(enc.norm.running_var.numpy(), 0.9 + 0.1 * x64.var(0, ddof=1),
                               rtol=1e-5)
    # in train mode a row's output depends on the rest of the batch
    assert not np.allclose(enc(x[:3]).detach().numpy()[0], out_train[0], atol=1e-4)

    # eval mode: running statistics, rows independent of the batch
    enc.eval()
    rm, rv = enc.norm.running_mean.double().numpy(), enc.norm.running_var.double().numpy()
    out_eval = enc(x).detach().numpy()
    np.testing.assert_allclose(out_eval, np_l2((x64 - rm) / np.sqrt(rv + 1e-5) @ w.T + c),
                               atol=1e-5)
    np.testing.assert_allclose(enc(x[:1]).detach().numpy()[0], out_eval[0], atol=1e-6)
    assert not np.allclose(out_eval, out_train, atol=1e-3)
    # eval forward does not update the statistics
    np.testing.assert_array_equal(enc.norm.running_mean.double().numpy(), rm)
