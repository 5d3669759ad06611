"""The synthetic corpus: labelled as synthetic, reproducible, Clotho-shaped, and hard enough
that the paper's comparisons mean something (trained > tags only > chance)."""
import numpy as np
import pytest

from retrieval_lib.data import Corpus
from retrieval_lib.metrics import chance_metrics, retrieval_metrics
from retrieval_lib.synthetic import SyntheticSpec, _ing, load_synthetic_corpus, make_synthetic_corpus
from retrieval_lib.tags import tag_embedding
from retrieval_lib.text import clean_caption, query_embedding
from retrieval_lib.train import TrainConfig, train_model

SMALL = SyntheticSpec(n_train=240, n_val=60, n_test=150, seed=7)


@pytest.fixture(scope="module")
def corpus(text_encoder):
    return make_synthetic_corpus(SMALL, text_encoder)


def test_shapes_and_labels(corpus):
    assert corpus.is_synthetic
    assert "synthetic" in corpus.provenance["note"].lower()
    for split, n in ((corpus.train, 240), (corpus.val, 60), (corpus.test, 150)):
        assert split.logits.shape == (n, 527)
        assert split.text_emb.shape == (5 * n, 384)
        assert np.bincount(split.caption_clip).tolist() == [5] * n
        assert all(name.startswith("synthetic_") for name in split.clip_names)
        assert all(clean_caption(c) for c in split.captions)   # every caption survives cleaning
    assert corpus.tag_emb.shape == (527, 384)


def test_captions_are_varied(corpus):
    captions = corpus.train.captions
    assert len(set(captions)) > 0.5 * len(captions)
    # five captions of one clip are not all the same sentence
    per_clip = [set(captions[5 * c:5 * c + 5]) for c in range(corpus.train.n_clips)]
    assert np.mean([len(s) > 1 for s in per_clip]) > 0.7


def test_event_classes_fire_in_the_logits(corpus):
    # a clip named ..._dog... has the Dog class (index 74) well above the corpus median
    dog = [i for i, n in enumerate(corpus.train.clip_names) if "dog" in n.split("_", 2)[2]]
    others = [i for i in range(corpus.train.n_clips) if i not in dog]
    assert dog, "the generator should produce some dog clips"
    assert np.median(corpus.train.logits[dog, 74]) > np.median(corpus.train.logits[others, 74]) + 3


def test_same_seed_same_corpus_and_other_seed_differs(text_encoder):
    tiny = SyntheticSpec(n_train=4, n_val=3, n_test=3, seed=1)
    a, b = make_synthetic_corpus(tiny, text_encoder), make_synthetic_corpus(tiny, text_encoder)
    c = make_synthetic_corpus(SyntheticSpec(n_train=4, n_val=3, n_test=3, seed=2), text_encoder)
    np.testing.assert_array_equal(a.train.logits, b.train.logits)
    assert a.train.captions == b.train.captions
    assert not np.array_equal(a.train.logits, c.train.logits)


def test_cache_roundtrip(tmp_path, text_encoder):
    tiny = SyntheticSpec(n_train=4, n_val=3, n_test=3, seed=3)
    first = load_synthetic_corpus(tiny, tmp_path, text_encoder)
    cached = list(tmp_path.glob("synthetic-*"))
    assert len(cached) == 1 and (cached[0] / "corpus.json").exists()
    again = Corpus.load(cached[0])
    np.testing.assert_array_equal(first.test.text_emb, again.test.text_emb)
    assert again.is_synthetic


def test_bad_spec_refused(text_encoder):
    with pytest.raises(ValueError):
        make_synthetic_corpus(SyntheticSpec(n_train=1), text_encoder)


def test_ing_helper():
    assert _ing("birds are singing") == "birds singing"
    assert _ing("a dog is barking in the distance") == "a dog barking in the distance"
    assert _ing("church bells ring") is None   # no safe gerund: the template is not used


def test_no_broken_gerund_in_captions(corpus):
    for caption in corpus.train.captions:
        if "over the sound of" in caption:
            tail = caption.split("over the sound of", 1)[1]
            assert "ing" in tail, caption


def test_hard_enough_for_the_paper_comparisons(corpus):
    """Trained projection >> tags only (lambda = 0, no parameters) >> chance on the test split."""
    test = corpus.test
    chance = chance_metrics(test.n_clips)["mAP@10"]
    tags_only = retrieval_metrics(query_embedding(test.text_emb) @ tag_embedding(test.logits, corpus.tag_emb).T,
                                  test.caption_clip)["mAP@10"]
    trained = train_model(TrainConfig(lam=0.8, epochs=20, seed=0), corpus).evaluate(test, corpus.tag_emb)["mAP@10"]
    assert tags_only > 5 * chance
    assert trained > tags_only + 0.05
    # and not trivially easy: the relevant clip is often missed
    assert trained < 0.9


def test_truncated_cache_is_detected_and_rebuilt(tmp_path, text_encoder):
    tiny = SyntheticSpec(n_train=4, n_val=3, n_test=3, seed=5)
    first = load_synthetic_corpus(tiny, tmp_path, text_encoder)
    (cached,) = tmp_path.glob("synthetic-*")
    data = (cached / "test.npz").read_bytes()
    (cached / "test.npz").write_bytes(data[:100])          # an interrupted copy
    with pytest.raises(ValueError, match="test.npz"):
        Corpus.load(cached)
    with pytest.warns(UserWarning, match="rebuilding the synthetic corpus cache.*test.npz"):
        again = load_synthetic_corpus(tiny, tmp_path, text_encoder)
    np.testing.assert_array_equal(again.test.text_emb, first.test.text_emb)
    # the rebuilt cache is whole again: the next call loads it without a warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_synthetic_corpus(tiny, tmp_path, text_encoder)
