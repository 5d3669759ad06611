"""The synthetic corpus: labelled as synthetic, reproducible, Clotho-shaped, and hard enough
that the paper's comparisons mean something (trained > tags only > chance)."""
import numpy as np
import pytest

from retrieval_lib.data import Corpus
from retrieval_lib.metrics import chance_metrics, retrieval_metrics
from retrieval_lib.synthetic import (SYNTHETIC_RELEVANCE_SOURCE, SyntheticSpec, _ing, load_synthetic_corpus,
                                     make_synthetic_corpus, synthetic_ground_truth, synthetic_relevance)
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


# -- the generator's ground truth and the relevance derived from it -------------------------------

class _ZeroEncoder:
    """Stands in for the sentence model where only the generator's draws matter."""
    model_name = "zero"

    def encode(self, texts, show_progress=False):
        return np.zeros((len(texts), 4), np.float32)


def _fingerprint(corpus):
    import hashlib
    import json
    h = hashlib.sha256()
    for split in corpus.splits():
        h.update(split.logits.tobytes())
        h.update(split.caption_clip.tobytes())
        h.update(json.dumps([split.captions, split.clip_names]).encode())
    return h.hexdigest()


@pytest.mark.parametrize("spec, fingerprint", [
    (SMALL, "92104d6ac9d8ba288b973e6babced02a00abcf1a055eea573c8dfdd65df2db00"),
    (SyntheticSpec(n_train=50, n_val=20, n_test=30, seed=3, style="audiocaps", captions_per_clip=1),
     "659b0bdd40abacb3337d8aa0cf374ec919ee4b66fc67b0876f6c3e2a0f89ed3f"),
])
def test_exposing_the_ground_truth_left_the_corpus_unchanged(spec, fingerprint):
    # fingerprints of logits, captions, caption_clip and clip names recorded with the generator
    # as it was before it returned its ground truth (commit cbc6873): old caches stay valid
    assert _fingerprint(make_synthetic_corpus(spec, _ZeroEncoder())) == fingerprint


def test_ground_truth_agrees_with_the_corpus_and_the_clip_names():
    corpus = make_synthetic_corpus(SMALL, _ZeroEncoder())
    truth = synthetic_ground_truth(SMALL)
    for split in corpus.splits():
        t = truth[split.name]
        assert list(t.captions) == split.captions and list(t.clip_names) == split.clip_names
        assert list(t.caption_clip) == split.caption_clip.tolist()
        for name, events in zip(t.clip_names, t.clip_events):     # synthetic_00012_dog+rain.wav
            assert set(name[len("synthetic_00000_"):-len(".wav")].split("+")) == set(events)
        for q, c in enumerate(t.caption_clip):
            assert t.caption_events[q] and set(t.caption_events[q]) <= set(t.clip_events[c])
            assert t.caption_scene[q] in (None, t.clip_scene[c])


def test_synthetic_relevance_follows_its_definition():
    truth = synthetic_ground_truth(SMALL)["test"]
    rel = synthetic_relevance(SMALL, "test")
    assert rel.source == SYNTHETIC_RELEVANCE_SOURCE and "SYNTHETIC" in rel.source
    assert rel.values.shape == (len(truth.captions), len(truth.clip_names))
    assert rel.query_index.tolist() == list(range(len(truth.captions)))
    for q in range(len(truth.captions)):
        want = [set(truth.caption_events[q]) <= set(truth.clip_events[c])
                and truth.caption_scene[q] in (None, truth.clip_scene[c])
                for c in range(len(truth.clip_names))]
        assert rel.values[q].tolist() == want
    assert rel.values[np.arange(rel.n_queries), list(truth.caption_clip)].all()   # its own clip
    per_query = rel.relevant_per_query()
    assert per_query.min() >= 1 and per_query.max() > 1       # many queries have several clips


def test_synthetic_relevance_of_a_corpus_and_of_a_loaded_cache(corpus, tmp_path, text_encoder):
    from_spec = synthetic_relevance(SMALL, "val")
    from_corpus = synthetic_relevance(corpus, "val")
    np.testing.assert_array_equal(from_corpus.values, from_spec.values)
    tiny = SyntheticSpec(n_train=4, n_val=3, n_test=5, seed=11)
    load_synthetic_corpus(tiny, tmp_path, text_encoder)
    (cached,) = tmp_path.glob("synthetic-*")
    names_before = sorted(p.name for p in cached.iterdir())
    loaded = Corpus.load(cached)                     # a cache in the existing format, no new file
    np.testing.assert_array_equal(synthetic_relevance(loaded).values, synthetic_relevance(tiny).values)
    assert sorted(p.name for p in cached.iterdir()) == names_before


def test_synthetic_relevance_refuses_what_it_cannot_derive(corpus):
    import dataclasses
    changed = dataclasses.replace(corpus.test, captions=["A changed caption."] + corpus.test.captions[1:])
    tampered = Corpus(corpus.train, corpus.val, changed, corpus.tag_emb, corpus.provenance)
    with pytest.raises(ValueError, match="made by another version of the generator"):
        synthetic_relevance(tampered)
    real = Corpus(corpus.train, corpus.val, corpus.test, corpus.tag_emb, {"source": "clotho"})
    with pytest.raises(ValueError, match="needs the synthetic corpus; this one's source is 'clotho'"):
        synthetic_relevance(real)
    no_spec = Corpus(corpus.train, corpus.val, corpus.test, corpus.tag_emb, {"source": "synthetic"})
    with pytest.raises(ValueError, match="records no usable spec"):
        synthetic_relevance(no_spec)
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test'"):
        synthetic_relevance(SMALL, "dev")
    # a cache of the older format, from the fake-Clotho pipeline (source "synthetic", no spec)
    from pathlib import Path
    legacy = Corpus.load(Path(__file__).parent / "data" / "legacy" / "corpus")
    with pytest.raises(ValueError, match="made by retrieval_lib.clotho.make_fake_clotho"):
        synthetic_relevance(legacy)
    with pytest.raises(ValueError, match="spec must be a SyntheticSpec"):
        synthetic_ground_truth({"seed": 1})


def test_many_relevant_clips_can_only_raise_recall(corpus):
    """Every caption's own clip is among its relevant clips, so the best-ranked relevant clip is
    never below the own clip: R@k cannot drop and the median rank cannot rise."""
    test = corpus.test
    scores = query_embedding(test.text_emb) @ tag_embedding(test.logits, corpus.tag_emb).T
    one = retrieval_metrics(scores, test.caption_clip)
    many = retrieval_metrics(scores, synthetic_relevance(corpus, "test"))
    for k in ("R@1", "R@5", "R@10"):
        assert many[k] >= one[k]
    assert many["median rank"] <= one["median rank"]
