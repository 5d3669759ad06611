"""Search at scale (retrieval_lib.search, `retrieval-lib index` / `search`, the benchmark).

End to end on generated audio files: tiny WAV/FLAC files written with soundfile, a
random-weight PaSST on CPU, the offline MiniLM and a checkpoint trained for two epochs on a tiny
synthetic corpus. Files are 1-2 s long, so each PaSST forward pass is cheap.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import torch_threads
from retrieval_lib import search as S
from retrieval_lib.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]
MPNET = "sentence-transformers/all-mpnet-base-v2"


# ---------------------------------------------------------------------------------------------
# Fixtures: a checkpoint, a folder of audio files
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, text_encoder):
    """A PaSST-MPnet-tags model trained 2 epochs on a tiny synthetic corpus (MiniLM, 384-d)."""
    from retrieval_lib.synthetic import SyntheticSpec, make_synthetic_corpus
    from retrieval_lib.train import TrainConfig, train_naive

    spec = SyntheticSpec(n_train=12, n_val=4, n_test=4, text_model="offline")
    with torch_threads(1):
        corpus = make_synthetic_corpus(spec, text_encoder)
        result = train_naive(TrainConfig(lam=0.8, epochs=2, batch_size=8, seed=0), corpus)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    result.save(path)
    return path


def _tone(seconds, sr, freq, channels=1, seed=0):
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * np.random.default_rng(seed).normal(size=t.size)
    wave = wave.astype(np.float32)
    return np.stack([wave] * channels, 1) if channels > 1 else wave


@pytest.fixture
def folder(tmp_path):
    """3 good files (32 kHz WAV, 44.1 kHz stereo WAV, 16 kHz FLAC in a subfolder), a corrupt
    WAV, a WAV too short for PaSST, a text file and a hidden file."""
    d = tmp_path / "sounds"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "hum.wav", _tone(1.0, 32000, 220), 32000)
    sf.write(d / "beep.wav", _tone(1.5, 44100, 880, channels=2, seed=1), 44100)
    sf.write(d / "sub" / "buzz.flac", _tone(1.0, 16000, 440, seed=2), 16000)
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    sf.write(d / "click.wav", _tone(0.05, 32000, 1000), 32000)
    (d / "notes.txt").write_text("not audio")
    (d / ".DS_Store").write_bytes(b"\x00\x01")
    return d


def _run(capsys, *argv):
    with torch_threads(1):
        code = cli([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _index(capsys, folder, checkpoint, out, *extra):
    return _run(capsys, "index", folder, "--checkpoint", checkpoint, "--out", out, "--random-passt",
                "--text-model", "offline", "--no-progress", *extra)


# ---------------------------------------------------------------------------------------------
# The commands end to end
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_index_then_search_end_to_end(capsys, folder, checkpoint, tmp_path):
    out = tmp_path / "index"
    code, text, err = _index(capsys, folder, checkpoint, out)
    assert code == 0, err
    assert "indexed 3 files" in text
    for bad in ("broken.wav", "click.wav", "notes.txt"):   # reported by name, skipped
        assert f"skipped {bad}:" in text
    assert "too short" in text and "not an audio file" in text and ".DS_Store" not in text
    assert "passt-10s with random weights" in text                   # labelled as a plumbing index

    index = S.AudioIndex.load(out)
    assert sorted(index.names) == ["beep.wav", "hum.wav", "sub/buzz.flac"]
    prov = index.provenance
    assert prov["checkpoint"]["sha256"] == S.file_sha256(checkpoint)
    assert S.canonical_text_model(prov["text_model"]) == S.canonical_text_model("offline")
    assert prov["audio_frontend"] == "passt-10s" and prov["audio_pretrained"] is False
    assert prov["audio_weights"] == "random:seed=0"

    code, text, err = _run(capsys, "search", out, "a dog barks while rain falls", "-k", "2")
    assert code == 0, err
    lines = [ln.split() for ln in text.splitlines() if ln.strip()[:1].isdigit()]
    assert [ln[0] for ln in lines] == ["1", "2"]
    scores = [float(ln[1]) for ln in lines]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert all(ln[2] in index.names for ln in lines)

    # the printed scores are eq. 1 queries against the stored embeddings: check with numpy
    from retrieval_lib.text import TextEncoder, query_embedding
    enc = TextEncoder("offline", device="cpu")
    q = query_embedding(enc.encode(["a dog barks while rain falls"])).numpy()
    emb = index.index.reconstruct_n(0, index.n_clips)
    expected = np.sort(emb @ q[0])[::-1][:2]
    np.testing.assert_allclose(scores, expected, atol=2e-3)


@pytest.mark.slow
def test_index_resumes_and_only_redoes_new_or_changed_files(capsys, folder, checkpoint, tmp_path,
                                                            monkeypatch):
    from retrieval_lib import audio

    out = tmp_path / "index"
    assert _index(capsys, folder, checkpoint, out)[0] == 0
    first = S.AudioIndex.load(out)

    # nothing new: PaSST is not even built
    def no_build(*a, **k):
        raise AssertionError("PaSST built although every file was done")
    monkeypatch.setattr(audio, "build_passt", no_build)
    code, text, err = _index(capsys, folder, checkpoint, out)
    assert code == 0, err
    assert "indexed 3 files" in text
    again = S.AudioIndex.load(out)
    assert again.names == first.names
    np.testing.assert_array_equal(again.index.reconstruct_n(0, 3), first.index.reconstruct_n(0, 3))
    monkeypatch.undo()

    # one new file and one changed file: only those two go through PaSST
    sf.write(folder / "new.wav", _tone(1.0, 32000, 330, seed=5), 32000)
    sf.write(folder / "hum.wav", _tone(1.2, 32000, 200, seed=6), 32000)
    seen = []
    real_logits = audio.PasstLogitExtractor.logits

    def spy(self, waves, *a, **k):
        seen.extend(len(w) for w in waves)
        return real_logits(self, waves, *a, **k)
    monkeypatch.setattr(audio.PasstLogitExtractor, "logits", spy)
    code, text, err = _index(capsys, folder, checkpoint, out)
    assert code == 0, err
    assert "indexed 4 files" in text
    assert sorted(seen) == [32000, int(1.2 * 32000)]


@pytest.mark.slow
def test_resume_refuses_logits_of_another_passt(capsys, folder, checkpoint, tmp_path):
    out = tmp_path / "index"
    assert _index(capsys, folder, checkpoint, out)[0] == 0
    code, _, err = _index(capsys, folder, checkpoint, out, "--seed", "1")
    assert code == 2
    assert "audio_weights: shards 'random:seed=0', this run 'random:seed=1'" in err and "delete" in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# Refusals and bad input
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def small_index(tmp_path, checkpoint):
    """An index with the checkpoint's provenance but made-up embeddings (no PaSST needed)."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    prov = {"text_model": "offline", "passt_variant": "10s", "passt_pretrained": False,
            "checkpoint": {"file": checkpoint.name, "sha256": S.file_sha256(checkpoint)}}
    index = S.AudioIndex.build(emb, [f"clip{i}.wav" for i in range(6)], "flat", provenance=prov)
    return index.save(tmp_path / "small")


def test_search_refuses_another_text_model_naming_both(capsys, small_index):
    code, _, err = _run(capsys, "search", small_index, "rain", "--text-model", MPNET)
    assert code == 2
    assert MPNET in err and "offline" in err


def test_search_refuses_another_checkpoint_naming_both(capsys, small_index, checkpoint, tmp_path):
    import torch

    other = tmp_path / "other.pt"
    blob = torch.load(checkpoint, weights_only=True)
    blob["best_epoch"] = 99   # another file, another hash
    torch.save(blob, other)
    code, _, err = _run(capsys, "search", small_index, "rain", "--checkpoint", other)
    assert code == 2
    assert "model.pt" in err and "other.pt" in err
    code, text, err = _run(capsys, "search", small_index, "rain", "--checkpoint", checkpoint, "-k", "3")
    assert code == 0, err
    assert text.count(".wav") == 3


def test_library_refuses_an_encoder_of_another_model(small_index):
    class Fake:
        model_name = MPNET
    index = S.open_index(small_index)
    with pytest.raises(S.QueryMismatch, match="all-mpnet-base-v2"):
        index.search("rain", Fake())


@pytest.mark.parametrize("query", ["", "   ", "?! ..."])
def test_empty_query_is_refused(capsys, small_index, query):
    code, _, err = _run(capsys, "search", small_index, query)
    assert code == 2
    assert "empty query" in err or "query refused" in err


def test_search_of_a_folder_without_index(capsys, tmp_path):
    code, _, err = _run(capsys, "search", tmp_path, "rain")
    assert code == 2 and "no search index" in err


def test_index_refuses_empty_and_audio_free_folders(capsys, checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _index(capsys, empty, checkpoint, tmp_path / "i1")
    assert code == 2 and "no audio file" in err and "empty" in err
    (empty / "readme.md").write_text("hello")
    code, _, err = _index(capsys, empty, checkpoint, tmp_path / "i2")
    assert code == 2 and "no audio file" in err and "readme.md" in err
    code, _, err = _index(capsys, tmp_path / "missing", checkpoint, tmp_path / "i3")
    assert code == 2 and "no such folder" in err


def test_index_refuses_a_folder_of_corrupt_files(capsys, checkpoint, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.wav").write_bytes(b"not a wav at all")
    (d / "b.flac").write_bytes(b"")
    code, _, err = _index(capsys, d, checkpoint, tmp_path / "i")
    assert code == 2
    assert "none of its 2 audio files" in err and "a.wav" in err and "b.flac" in err


def test_index_refuses_a_text_model_other_than_the_checkpoints(capsys, checkpoint, folder, tmp_path):
    from retrieval_lib.train import TrainResult

    result = TrainResult.load(checkpoint)
    if not S.checkpoint_provenance(result).get("text_model"):
        pytest.skip("checkpoints of this version do not record their text model")
    code, _, err = _run(capsys, "index", folder, "--checkpoint", checkpoint, "--out", tmp_path / "i",
                        "--random-passt", "--text-model", MPNET, "--no-progress")
    assert code == 2 and MPNET in err and "MiniLM" in err


def test_index_needs_a_checkpoint_file(capsys, folder, tmp_path):
    code, _, err = _index(capsys, folder, tmp_path / "nope.pt", tmp_path / "i")
    assert code == 2 and "nope.pt" in err


# ---------------------------------------------------------------------------------------------
# Indexes, the grown collection, the benchmark
# ---------------------------------------------------------------------------------------------

def _clustered(n, d, rng, n_clusters=50):
    centres = rng.normal(size=(n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + 0.3 * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.mark.parametrize("kind", S.KINDS)
def test_every_kind_finds_the_exact_neighbours_and_round_trips(kind, tmp_path):
    rng = np.random.default_rng(0)
    emb = _clustered(4000, 32, rng)
    queries = emb[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    exact_s, exact_i = S.exact_top_k(queries, emb, 10)
    # the exact reference itself: a plain full sort
    np.testing.assert_array_equal(exact_i[:, 0], np.argsort(-(queries @ emb.T), axis=1)[:, 0])
    names = [f"c{i}" for i in range(len(emb))]
    params = {"nprobe": 16} if kind in ("ivf", "ivfpq") else None
    index = S.AudioIndex.build(emb, names, kind, params, provenance={"text_model": "offline"})
    scores, idx = index.search_embeddings(queries, 10)
    assert S.recall_at_k(idx, exact_i) >= (0.99 if kind == "flat" else 0.9)
    index.save(tmp_path / kind)
    loaded = S.AudioIndex.load(tmp_path / kind)
    assert loaded.kind == kind and loaded.params == index.params and loaded.names == names
    scores2, idx2 = loaded.search_embeddings(queries, 10)
    np.testing.assert_array_equal(idx2, idx)


def test_build_rejects_bad_embeddings():
    with pytest.raises(ValueError, match="unit-norm"):
        S.AudioIndex.build(np.ones((3, 4), np.float32), ["a", "b", "c"])
    with pytest.raises(ValueError, match="one name per"):
        S.AudioIndex.build(np.eye(4, dtype=np.float32), ["a"])
    with pytest.raises(ValueError, match="unknown index kind"):
        S.AudioIndex.build(np.eye(4, dtype=np.float32), list("abcd"), "lsh")


def test_measure_search_and_recall():
    rng = np.random.default_rng(1)
    emb = _clustered(500, 16, rng)
    q = emb[:20]
    _, exact_i = S.exact_top_k(q, emb, 10)
    row = S.measure_search(lambda x, k: S.exact_top_k(x, emb, k), q, exact_i, 10, n_single=5)
    assert row["recall@10"] == 1.0 and row["queries/s (batch)"] > 0 and row["n_single"] == 5
    assert S.recall_at_k(exact_i[:, ::-1], exact_i) == 1.0     # order does not matter
    assert S.recall_at_k(exact_i[:, :5].repeat(2, 1), exact_i) == 0.5


def test_grown_collection_keeps_the_sources_and_is_reproducible():
    rng = np.random.default_rng(2)
    src = rng.normal(-3, 2, size=(30, 527)).astype(np.float32)
    chunks = list(S.grow_logits(src, 100, seed=3, chunk=40))
    grown = np.concatenate([c for _, c in chunks])
    assert [s for s, _ in chunks] == [0, 40, 80] and grown.shape == (100, 527)
    np.testing.assert_array_equal(grown[:30], src)             # the corpus's clips come first
    assert np.isfinite(grown).all()
    again = np.concatenate([c for _, c in S.grow_logits(src, 100, seed=3, chunk=40)])
    np.testing.assert_array_equal(grown, again)
    # a mixture holds at least the events of its first clip (probabilities only grow), up to noise
    assert (grown[30:].mean() > src.mean())


@pytest.mark.slow
def test_benchmark_smoke_mode(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_speed.py"), "--smoke",
                           "--json", str(out)], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SYNTHETIC" in proc.stdout and "exact baseline" in proc.stdout
    result = json.loads(out.read_text())
    methods = [r["method"] for r in result["rows"]]
    assert any(m.startswith("exact: numpy") for m in methods) and "FAISS flat (exact)" in methods
    assert any("IVF" in m for m in methods)
    for r in result["rows"]:
        assert 0.0 <= r["recall@10"] <= 1.0 and r["bytes/clip"] > 0
