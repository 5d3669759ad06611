"""An AudioIndex folder on disk: saves that appear complete or not at all, damaged files named,
approximate kinds on collections too small for them, and bad queries."""
from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval_lib import indexes
from retrieval_lib.indexes import AudioIndex


def _emb(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _index(n=6, seed=0, prefix="a"):
    return AudioIndex.build(_emb(n, seed=seed), [f"{prefix}{i}.wav" for i in range(n)], "flat",
                            provenance={"text_model": "offline"})


def test_an_interrupted_save_leaves_the_old_index_whole(tmp_path, monkeypatch):
    old, new = _index(6, 0, "old"), _index(8, 1, "new")
    old.save(tmp_path / "ix")
    real = indexes.atomic_write_json
    calls = []

    def crash_on_record(path, obj, indent=2):
        calls.append(path.name)
        if path.name == indexes.META_FILE:
            raise KeyboardInterrupt("interrupted before the switch")
        return real(path, obj, indent=indent)

    monkeypatch.setattr(indexes, "atomic_write_json", crash_on_record)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "ix")
    monkeypatch.undo()
    assert calls[-1] == indexes.META_FILE            # the new vectors and names were written ...
    back = AudioIndex.load(tmp_path / "ix")          # ... yet the old index loads, consistent
    assert back.names == old.names
    np.testing.assert_array_equal(back.index.reconstruct_n(0, 6), old.index.reconstruct_n(0, 6))
    new.save(tmp_path / "ix")                         # a complete save replaces it, and cleans up
    assert AudioIndex.load(tmp_path / "ix").names == new.names
    data = sorted(p.name for p in (tmp_path / "ix").iterdir() if not p.name.startswith("."))
    assert len(data) == 3 and indexes.META_FILE in data


@pytest.mark.parametrize("damage, message", [
    (lambda d, m: (d / m["files"]["index"]["file"]).write_bytes(b"not faiss"), "differs from what index.json"),
    (lambda d, m: (d / m["files"]["index"]["file"]).unlink(), "missing"),
    (lambda d, m: (d / m["files"]["names"]["file"]).unlink(), "missing"),
    (lambda d, m: (d / "index.json").write_text('{"format": 2, "kind": "fla'), "not valid JSON"),
    (lambda d, m: (d / "index.json").write_text(json.dumps({**m, "kind": "annoy"})), "index kind 'annoy'"),
    (lambda d, m: (d / "index.json").write_text(json.dumps({**m, "format": 9})), "index format 9"),
    (lambda d, m: (d / "index.json").write_text(json.dumps([1, 2])), "not an index record"),
    (lambda d, m: (d / "index.json").write_text(json.dumps({**m, "files": {"index": {"file": "../x"},
                                                                           "names": m["files"]["names"]}})),
     "outside the index folder"),
])
def test_damaged_index_files_are_named(tmp_path, damage, message):
    _index().save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    damage(tmp_path / "ix", meta)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        AudioIndex.load(tmp_path / "ix")
    assert "rebuild" in str(err.value) and str(tmp_path / "ix") in str(err.value)


def test_a_faiss_file_that_is_not_faiss_is_named(tmp_path):
    """Damaged without a recorded checksum (the first format): FAISS's own error is replaced."""
    ix = _index()
    ix.save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    (tmp_path / "ix" / meta["files"]["index"]["file"]).write_bytes(b"\x00" * 64)
    meta["files"]["index"].pop("sha256")
    (tmp_path / "ix" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a readable FAISS index"):
        AudioIndex.load(tmp_path / "ix")


@pytest.mark.parametrize("kind, n", [("ivfpq", 3), ("ivfpq", 15), ("ivf", 1)])
def test_too_small_for_an_approximate_kind_gets_an_exact_index_with_a_note(kind, n, tmp_path):
    emb = _emb(n)
    ix = AudioIndex.build(emb, [f"c{i}" for i in range(n)], kind)
    if kind == "ivf":            # one bucket trains on one clip: no fallback needed
        assert ix.kind == "ivf"
        return
    assert ix.kind == "flat" and "too few for an ivfpq index" in ix.params["fallback"]
    scores, idx = ix.search_embeddings(emb[:2], k=3)
    assert idx[0, 0] == 0 and idx[1, 0] == 1
    ix.save(tmp_path / "ix")
    assert AudioIndex.load(tmp_path / "ix").kind == "flat"


def test_explicit_parameters_too_big_for_the_collection_are_refused():
    with pytest.raises(ValueError, match="needs at least 64 clips to train, got 10"):
        AudioIndex.build(_emb(10), [str(i) for i in range(10)], "ivf", params={"nlist": 64, "nprobe": 4})


@pytest.mark.parametrize("k", [2.5, 0, -1, True, "3", None])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        _index().search_embeddings(_emb(1), k=k)


def test_numpy_integer_k_is_accepted():
    scores, idx = _index().search_embeddings(_emb(1), k=np.int64(2))
    assert idx.shape == (1, 2)


@pytest.mark.parametrize("bad, message", [
    (np.full((1, 16), np.nan, np.float32), "NaN or inf"),
    (np.full((1, 16), np.inf, np.float32), "NaN or inf"),
    (np.ones((1, 16), np.complex64), "real numbers"),
    (np.ones((1, 15), np.float32), "15-d but the index holds 16-d"),
])
def test_bad_query_embeddings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        _index().search_embeddings(bad, k=2)


def test_nan_audio_embeddings_are_refused():
    emb = _emb(4)
    emb[2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        AudioIndex.build(emb, list("abcd"))
