"""Audio front ends behind core.AudioFrontend: the registry, a front end other than PaSST through
the corpus pipeline (no class names: no tag branch), identity checks that name both sides."""
from __future__ import annotations

import numpy as np
import pytest

from retrieval_lib import frontends
from retrieval_lib.clotho import make_fake_clotho
from retrieval_lib.core import AudioFrontend, ProvenanceMismatch
from retrieval_lib.data import Corpus
from retrieval_lib.pipeline import build_corpus


class Loudness(AudioFrontend):
    """A student's front end: RMS level and zero-crossing rate per quarter of the clip (8 numbers)."""

    name, sample_rate, output_dim, pretrained = "loudness-zcr", 16000, 8, False

    def __init__(self, **_):
        self.calls = 0

    def embed(self, waveforms):
        self.calls += 1
        out = []
        for w in waveforms:
            parts = np.array_split(np.asarray(w, np.float32), 4)
            out.append([float(np.sqrt((p ** 2).mean())) for p in parts] +
                       [float((np.diff(np.sign(p)) != 0).mean()) for p in parts])
        return np.asarray(out, np.float32)

    def weights_id(self):
        return "none:loudness-zcr-v1"


@pytest.fixture
def registered():
    frontends.register_frontend("loudness-zcr", Loudness, replace=True)
    yield
    frontends._REGISTRY.pop("loudness-zcr", None)     # noqa: SLF001 - test clean-up


def test_registry_names_and_refusals(registered):
    assert {"passt-10s", "passt-20s", "passt-30s", "logmel-stats", "loudness-zcr"} <= set(frontends.frontend_names())
    with pytest.raises(ValueError, match="unknown audio front end 'beats'.*passt-10s"):
        frontends.make_frontend("beats")
    with pytest.raises(ValueError, match="already registered"):
        frontends.register_frontend("loudness-zcr", Loudness)
    with pytest.raises(ValueError, match="non-empty word"):
        frontends.register_frontend("two words", Loudness)
    frontends.register_frontend("not-a-frontend", lambda **kw: object())
    try:
        with pytest.raises(TypeError, match="not a core.AudioFrontend"):
            frontends.make_frontend("not-a-frontend")
    finally:
        frontends._REGISTRY.pop("not-a-frontend")   # noqa: SLF001
    assert isinstance(frontends.make_frontend("loudness-zcr"), Loudness)


def test_logmel_stats_is_a_deterministic_frontend_without_classes():
    fe = frontends.make_frontend("logmel-stats", device="cpu")
    t = np.arange(32000) / 32000
    waves = [np.sin(2 * np.pi * 440 * t).astype(np.float32) * 0.5,
             np.random.default_rng(0).normal(size=32000).astype(np.float32) * 0.1]
    a, b = fe.embed(waves), fe.embed(waves)
    assert a.shape == (2, 128) and np.array_equal(a, b) and np.isfinite(a).all()
    assert not np.allclose(a[0], a[1])            # a tone and noise differ
    d = fe.describe()
    assert d["audio_frontend"] == "logmel-stats" and d["audio_classes"] == 0 and d["audio_dim"] == 128
    with pytest.raises(ValueError, match="at least 1024 samples"):
        fe.embed([np.zeros(100, np.float32)])


def test_a_frontend_without_class_names_builds_a_corpus_without_tags(tmp_path, text_encoder, registered):
    data = make_fake_clotho(tmp_path / "clotho", 2, seconds=(1.0, 2.0))
    fe = Loudness()
    corpus = build_corpus(data, tmp_path / "cache", frontend=fe, text_encoder=text_encoder,
                          progress=False)
    assert corpus.tag_emb is None and not corpus.has_tags and corpus.audio_dim == 8
    assert corpus.provenance["audio_frontend"] == "loudness-zcr"
    assert corpus.provenance["audio_weights"] == "none:loudness-zcr-v1"
    back = Corpus.load(tmp_path / "cache")
    assert back.tag_emb is None and not (tmp_path / "cache" / "tag_emb.npy").exists()
    np.testing.assert_array_equal(back.train.logits, corpus.train.logits)
    # a resumed build with every clip done does not call the front end again
    again = Loudness()
    build_corpus(data, tmp_path / "cache", frontend=again, text_encoder=text_encoder, progress=False)
    assert again.calls == 0


def test_a_frontend_of_another_identity_is_refused_naming_both(tmp_path, text_encoder, registered):
    data = make_fake_clotho(tmp_path / "clotho", 1, seconds=(1.0,))
    build_corpus(data, tmp_path / "cache", frontend=Loudness(), text_encoder=text_encoder, progress=False)
    record = Corpus.load(tmp_path / "cache").provenance
    fe = frontends.make_frontend("logmel-stats", device="cpu")
    with pytest.raises(ProvenanceMismatch) as err:
        fe.check_matches(record, "the cache")
    msg = str(err.value)
    assert "audio_frontend: the cache has 'loudness-zcr', this front end is 'logmel-stats'" in msg
    assert "audio_dim: the cache has 8, this front end is 128" in msg
    # resuming an extraction with another front end into the same work folder is refused too
    with pytest.raises(ProvenanceMismatch, match="loudness-zcr"):
        build_corpus(data, tmp_path / "cache", frontend=fe, text_encoder=text_encoder, progress=False)
