"""text: caption cleaning, eq. 1 (query embedding) and the real offline MiniLM encoder."""
import inspect
import os

import numpy as np
import pytest
import torch

from retrieval_lib.tags import AUDIOSET_LABELS, encode_tag_names
from retrieval_lib.text import clean_caption, query_embedding, resolve_model_name


# ---------------------------------------------------------------- clean_caption

@pytest.mark.parametrize("raw, clean", [
    ("A dog-barks, loudly!", "A dog barks loudly"),
    ("A dog barks.", "A dog barks"),
    ("  several   spaces\there\nand a newline ", "several spaces here and a newline"),
    ("A man's voice; then: silence?", "A mans voice then silence"),
    ("Rain -- falling", "Rain falling"),
    ('"Quoted" (words) [here]', "Quoted words here"),
    ("Birds chirp", "Birds chirp"),             # nothing to clean
    ("Child speech, kid speaking", "Child speech kid speaking"),  # an AudioSet tag name
])
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


def test_clean_caption_keeps_case_digits_and_is_idempotent():
    out = clean_caption("Two-3 CARS pass, then 1 truck.")
    assert out == "Two 3 CARS pass then 1 truck"
    assert clean_caption(out) == out


@pytest.mark.parametrize("bad", ["", "   ", "\t\n", "?!.", "--", " - , ; "])
def test_clean_caption_refuses_empty(bad):
    with pytest.raises(ValueError, match="empty after cleaning"):
        clean_caption(bad)


@pytest.mark.parametrize("bad", [None, 3, 2.5, b"a dog barks", ["a dog"], float("nan")])
def test_clean_caption_refuses_non_strings(bad):
    with pytest.raises(ValueError, match="must be a string"):
        clean_caption(bad)


# ---------------------------------------------------------------- eq. 1

def np_eq1(x):
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    y = (x - mean) / np.sqrt(var + 1e-5)
    return y / np.sqrt((y * y).sum(axis=1, keepdims=True))


def test_query_embedding_tiny_by_hand():
    # x = (1, 2, 3): mean 2, var 2/3 -> y = (-1, 0, 1)/sqrt(2/3 + 1e-5) -> l2 -> (-1, 0, 1)/sqrt2
    got = query_embedding([[1.0, 2.0, 3.0]]).numpy()
    np.testing.assert_allclose(got, [[-2 ** -0.5, 0.0, 2 ** -0.5]], atol=1e-6)


def test_query_embedding_matches_numpy(rng):
    x = rng.normal(loc=0.3, scale=0.05, size=(7, 16)).astype(np.float32)
    got = query_embedding(x)
    assert isinstance(got, torch.Tensor) and got.shape == (7, 16) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), np_eq1(x), atol=1e-5)
    np.testing.assert_allclose(got.sum(1).numpy(), 0.0, atol=1e-5)  # centred rows
    np.testing.assert_allclose(torch.linalg.norm(got, dim=1).numpy(), 1.0, atol=1e-6)
    # torch input gives the same as numpy input
    np.testing.assert_allclose(query_embedding(torch.from_numpy(x)).numpy(), got.numpy(), atol=0)


def test_query_embedding_has_no_parameters(rng):
    assert not isinstance(query_embedding, torch.nn.Module)
    assert list(inspect.signature(query_embedding).parameters) == ["sentence_emb"]
    x = torch.from_numpy(rng.normal(size=(3, 8)).astype(np.float32))
    assert not query_embedding(x).requires_grad
    torch.testing.assert_close(query_embedding(x), query_embedding(x.clone()))


def test_query_embedding_rejects_non_matrix():
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        query_embedding(np.zeros(5))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        query_embedding(np.zeros((2, 3, 4)))


def test_resolve_model_name():
    assert resolve_model_name("sentence-transformers/all-mpnet-base-v2") == \
        "sentence-transformers/all-mpnet-base-v2"
    path = resolve_model_name("offline")
    assert resolve_model_name("minilm-offline") == path
    assert os.path.isdir(path)


# ---------------------------------------------------------------- the real offline MiniLM

@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """MiniLM inference with one torch thread (much faster on a busy shared CPU)."""
    yield


def cos(u, v):
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


def test_minilm_embeddings(text_encoder):
    assert text_encoder.dim == 384
    emb = text_encoder.encode(["a dog barks", "a dog is barking", "rain falls on a roof"])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated_1, unrelated_2 = cos(emb[0], emb[1]), cos(emb[0], emb[2]), cos(emb[1], emb[2])
    assert paraphrase > 0.7
    assert paraphrase > unrelated_1 + 0.3 and paraphrase > unrelated_2 + 0.3


def test_minilm_encode_is_deterministic_and_cleans(text_encoder):
    a = text_encoder.encode(["A dog-barks, loudly!", "water runs"])
    b = text_encoder.encode(["A dog barks loudly", "water runs"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # cleaning happens before encoding
    raw = text_encoder.encode(["A dog-barks, loudly!"], clean=False)
    assert not np.allclose(raw[0], b[0], atol=1e-4)  # clean=False encodes the raw text
    # a caption's embedding does not depend on the rest of the batch
    np.testing.assert_allclose(text_encoder.encode(["water runs"])[0], a[1], atol=1e-5)


def test_minilm_encode_input_errors(text_encoder):
    with pytest.raises(ValueError, match="single string"):
        text_encoder.encode("a dog barks")
    with pytest.raises(ValueError, match="empty after cleaning"):
        text_encoder.encode(["a dog barks", "  ...  "])
    empty = text_encoder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert text_encoder.encode(iter(["wind blows"])).shape == (1, 384)  # any iterable


def test_encode_tag_names(text_encoder, tag_name_embeddings):
    w_t = tag_name_embeddings
    assert w_t.shape == (527, 384) and w_t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(w_t, axis=1), 1.0, atol=1e-5)
    # row order is AudioSet's class order
    np.testing.assert_allclose(w_t[74], text_encoder.encode(["Dog"])[0], atol=1e-5)
    np.testing.assert_allclose(w_t[1], text_encoder.encode(["Male speech man speaking"])[0],
                               atol=1e-5)
    # 527 distinct names give 527 distinct vectors
    assert len(np.unique(np.round(w_t, 4), axis=0)) == 527
    # a smaller label list is encoded the same way
    w3 = encode_tag_names(text_encoder, AUDIOSET_LABELS[:3])
    np.testing.assert_allclose(w3, w_t[:3], atol=1e-5)


def test_tag_names_are_semantically_placed(text_encoder, tag_name_embeddings):
    q = text_encoder.encode(["a dog is barking loudly"])[0]
    sims = tag_name_embeddings @ q
    top = [AUDIOSET_LABELS[i] for i in np.argsort(-sims)[:5]]
    assert any(name in ("Dog", "Bark", "Bow-wow", "Yip", "Growling") for name in top), top
