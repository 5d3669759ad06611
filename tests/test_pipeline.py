"""End-to-end tests of the Clotho pipeline on FAKE Clotho-shaped data, offline.

A random-initialised PaSST and the packaged all-MiniLM-L6-v2 stand in for the real models; the
clips are short (2 s, plus one 12 s clip that goes through the windowing) to keep PaSST's CPU cost
small. Covered: reading the real CSV layout, resume after an interruption without recomputing a
finished shard, a corrupt and a missing WAV reported by name, an empty caption refused, the CLI.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from retrieval_lib.audio import AudioError, PasstLogitExtractor, build_passt, load_audio
from retrieval_lib.clotho import (CAPTION_COLUMNS, FAKE_MARKER, SPLIT_MAP, make_fake_clotho,
                                  read_captions_csv)
from retrieval_lib.data import Corpus
from retrieval_lib.core import AudioFrontend, ProvenanceMismatch, ShardStore
from retrieval_lib.pipeline import run_pipeline
from retrieval_lib.text import TextEncoder

REPO = Path(__file__).resolve().parents[1]
COUNTS = {"development": 4, "validation": 2, "evaluation": 2}


@pytest.fixture(scope="module")
def passt():
    return build_passt("10s", pretrained=False, device="cpu", seed=0)


@pytest.fixture(scope="module")
def text_encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return TextEncoder("offline", device="cpu")


@pytest.fixture
def fake_dir(tmp_path):
    # development clip 3 lasts 12 s (windowed); every other clip 2 s
    return make_fake_clotho(tmp_path / "clotho", COUNTS, seconds=(2.0, 2.0, 2.0, 12.0))


class CountingExtractor(AudioFrontend):
    """Wraps a front end; counts clips, and can fail on a given call (a simulated crash)."""

    def __init__(self, inner, fail_on_call=None):
        self.inner, self.fail_on_call = inner, fail_on_call
        self.calls, self.n_clips = 0, 0
        self.name, self.pretrained = inner.name, inner.pretrained
        self.sample_rate, self.output_dim, self.class_names = inner.sample_rate, inner.output_dim, inner.class_names

    def describe(self):
        return self.inner.describe()

    def embed(self, waves):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        self.n_clips += len(waves)
        return self.inner.embed(waves)


def load_shards(work):
    return ShardStore(work, {}).load()


# ---------------------------------------------------------------------------------------------
# Clotho files
# ---------------------------------------------------------------------------------------------

def test_make_fake_clotho_has_the_real_layout(fake_dir):
    assert (fake_dir / FAKE_MARKER).exists()
    for split, n in COUNTS.items():
        with open(fake_dir / f"clotho_captions_{split}.csv", newline="") as f:
            assert tuple(next(csv.reader(f))) == CAPTION_COLUMNS
        rows = read_captions_csv(fake_dir / f"clotho_captions_{split}.csv")
        assert len(rows) == n and all(len(caps) == 5 for _, caps in rows)
        for name, _ in rows:
            assert name.startswith("fake")
            info = sf.info(str(fake_dir / split / name))
            assert info.samplerate == 44100 and info.channels == 1
    assert sf.info(str(fake_dir / "development" / "fake development clip_003.wav")).duration == pytest.approx(12.0)


def _write_csv(path, rows, header=CAPTION_COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_read_captions_csv_errors_name_file_and_row(tmp_path):
    good = ["a.wav", "one", "two", "three", "four", "five"]
    path = tmp_path / "caps.csv"
    _write_csv(path, [good, ["b.wav", "one", "  ", "three", "four", "five"]])
    with pytest.raises(ValueError, match=r"caps\.csv, line 3 \(b\.wav\): caption_2 is empty"):
        read_captions_csv(path)
    _write_csv(path, [good, ["c.wav", "one", "two", "...", "four", "five"]])
    with pytest.raises(ValueError, match=r"line 3 \(c\.wav\): caption_3 has no word"):
        read_captions_csv(path)
    _write_csv(path, [good], header=CAPTION_COLUMNS[:4])
    with pytest.raises(ValueError, match=r"missing column.*caption_4"):
        read_captions_csv(path)
    _write_csv(path, [good, good])
    with pytest.raises(ValueError, match="duplicate file_name 'a.wav'"):
        read_captions_csv(path)
    # a comma inside a quoted caption, as in real Clotho rows
    _write_csv(path, [["d e.wav", "a dog, then a cat", "two", "three", "four", "five"]])
    assert read_captions_csv(path) == [("d e.wav", ["a dog, then a cat", "two", "three", "four", "five"])]


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_pipeline_end_to_end_with_interruption_and_resume(fake_dir, tmp_path, passt, text_encoder):
    cache = tmp_path / "cache"
    inner = PasstLogitExtractor(model=passt, pretrained=False, batch_size=4)
    crashing = CountingExtractor(inner, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(fake_dir, cache, extractor=crashing, text_encoder=text_encoder, shard_size=2,
                     epochs=2, progress=False)
    shard0 = cache / "_work" / "train" / "shard_00000.npz"
    assert shard0.exists() and not (cache / "corpus.json").exists()
    first = load_shards(cache / "_work" / "train")
    assert sorted(first) == ["fake development clip_000.wav", "fake development clip_001.wav"]
    before = shard0.read_bytes()

    resumed = CountingExtractor(inner)
    out = run_pipeline(fake_dir, cache, extractor=resumed, text_encoder=text_encoder, shard_size=2,
                       epochs=2, progress=False)
    # the two clips of the finished shard were not recomputed; the 6 others were
    assert resumed.n_clips == sum(COUNTS.values()) - 2
    assert shard0.read_bytes() == before

    corpus = Corpus.load(cache)
    assert corpus.is_synthetic and corpus.provenance["generator"].endswith("make_fake_clotho")
    prov = corpus.provenance
    assert prov["audio_frontend"] == "passt-10s" and prov["audio_pretrained"] is False
    assert prov["audio_weights"].startswith("params:sha1=")       # a hand-built network
    assert prov["audio_sample_rate"] == 32000 and prov["audio"]["windowing"]["hop_s"] == 2.5
    assert prov["skipped"] == {"train": [], "val": [], "test": []} and "warning" in prov
    assert [corpus.train.n_clips, corpus.val.n_clips, corpus.test.n_clips] == [4, 2, 2]
    assert corpus.train.n_captions == 20 and corpus.dim == 384 and corpus.tag_emb.shape == (527, 384)
    # the stored logits are those of the extractor (resumed clips and the shard's ones alike)
    names = corpus.train.clip_names
    for i in (0, 2):
        wav = load_audio(fake_dir / "development" / names[i])
        np.testing.assert_allclose(corpus.train.logits[i], inner.logits([wav])[0], atol=1e-4)
    np.testing.assert_allclose(corpus.train.text_emb[:5],
                               text_encoder.encode(corpus.train.captions[:5]), atol=1e-5)

    with open(out["results_path"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["system"] for r in rows] == ["PaSST-MPnet", "PaSST-MPnet-tags"]
    assert [float(r["lam"]) for r in rows] == [1.0, 0.8]
    assert all(0.0 <= float(r["mAP@10"]) <= 1.0 for r in rows) and all(r["epochs"] == "2" for r in rows)
    index = json.loads((out["checkpoints"] / "index.json").read_text())
    assert len(index) == 2 and all((out["checkpoints"] / e["file"]).exists() for e in index)

    # a third run finds everything done: no PaSST call at all
    idle = CountingExtractor(inner)
    run_pipeline(fake_dir, cache, extractor=idle, text_encoder=text_encoder, epochs=1, progress=False)
    assert idle.calls == 0


@pytest.mark.slow
def test_corrupt_and_missing_wavs_are_reported_and_skipped(tmp_path, passt, text_encoder):
    data = make_fake_clotho(tmp_path / "clotho", {"development": 3, "validation": 2, "evaluation": 2},
                            seconds=(2.0,))
    bad = data / "development" / "fake development clip_001.wav"
    bad.write_bytes(b"RIFF....WAVEfmt this is not audio" * 20)
    (data / "evaluation" / "fake evaluation clip_000.wav").unlink()
    inner = PasstLogitExtractor(model=passt, pretrained=False, batch_size=4)

    # strict: refused, naming the file, before any shard of the split is written
    with pytest.raises(AudioError, match="clip_001.wav"):
        run_pipeline(data, tmp_path / "strict", extractor=inner, text_encoder=text_encoder,
                     strict=True, epochs=1, progress=False)
    assert not list((tmp_path / "strict" / "_work" / "train").glob("shard_*.npz"))

    with pytest.warns(UserWarning) as record:
        out = run_pipeline(data, tmp_path / "cache", extractor=inner, text_encoder=text_encoder,
                           epochs=1, progress=False)
    messages = " ".join(str(w.message) for w in record)
    assert "fake development clip_001.wav" in messages and "fake evaluation clip_000.wav" in messages
    corpus = out["corpus"]
    skipped = corpus.provenance["skipped"]
    assert [s["file"] for s in skipped["train"]] == ["fake development clip_001.wav"]
    assert "cannot read audio" in skipped["train"][0]["error"]
    assert [s["file"] for s in skipped["test"]] == ["fake evaluation clip_000.wav"]
    assert "no such audio file" in skipped["test"][0]["error"]
    assert corpus.train.clip_names == ["fake development clip_000.wav", "fake development clip_002.wav"]
    assert corpus.train.n_captions == 10 and corpus.test.n_clips == 1 and corpus.test.n_captions == 5
    assert set(corpus.train.caption_clip.tolist()) == {0, 1}
    # never zero-filled: no row of logits is the logits of silence
    silence = inner.logits([np.zeros(2 * 32000, np.float32)])[0]
    assert not np.any(np.all(np.isclose(corpus.train.logits, silence, atol=1e-5), axis=1))


def test_empty_caption_refused_before_extraction(tmp_path, text_encoder):
    data = make_fake_clotho(tmp_path / "clotho", 2, seconds=(1.0,))
    path = data / "clotho_captions_validation.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows[2][4] = ""   # second clip, caption_4
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)

    class NoPasst(AudioFrontend):
        name, output_dim, pretrained = "passt-10s", 527, False

        def embed(self, waves):
            raise AssertionError("PaSST must not run when a CSV is bad")

    with pytest.raises(ValueError, match=r"clotho_captions_validation\.csv, line 3 .*caption_4 is empty"):
        run_pipeline(data, tmp_path / "cache", extractor=NoPasst(), text_encoder=text_encoder,
                     progress=False)


def test_cache_made_with_another_passt_is_refused(fake_dir, tmp_path, text_encoder):
    cache = tmp_path / "cache"
    (cache / "_work").mkdir(parents=True)
    (cache / "_work" / "train").mkdir(parents=True)
    (cache / "_work" / "train" / "settings.json").write_text(json.dumps({"passt_variant": "20s"}))

    class Stub(AudioFrontend):
        name, output_dim, pretrained = "passt-10s", 527, False

        def embed(self, waves):
            raise AssertionError("no extraction into a folder of another front end's shards")

    with pytest.raises(ProvenanceMismatch, match="audio_frontend: shards 'passt-20s', this run 'passt-10s'.*another cache folder"):
        run_pipeline(fake_dir, cache, extractor=Stub(), text_encoder=text_encoder, progress=False)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _cli(*args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "retrieval_lib", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_help():
    proc = _cli("pipeline", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--data-dir", "--cache-dir", "--download", "--text-model", "--frontend",
                 "--random-weights", "--batch-size", "--epochs", "--results", "--strict"):
        assert flag in proc.stdout
    assert "passt-10s" in proc.stdout and "logmel-stats" in proc.stdout
    bad = _cli("pipeline", "--data-dir", "x", "--cache-dir", "y", "--batch-size", "0")
    assert bad.returncode == 2 and "must be an integer >= 1" in bad.stderr


@pytest.mark.slow
def test_cli_tiny_real_run(tmp_path):
    data = make_fake_clotho(tmp_path / "clotho", 2, seconds=(1.5,))
    results = tmp_path / "out" / "res.csv"
    proc = _cli("pipeline", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
                "--random-passt", "--text-model", "offline", "--epochs", "1", "--device", "cpu",
                "--results", str(results), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "-tags" in proc.stdout and "FAKE" in proc.stdout
    assert results.exists()
    prov = json.loads((tmp_path / "cache" / "corpus.json").read_text())
    assert prov["text_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert prov["audio_pretrained"] is False and prov["audio_weights"].startswith("random:seed=0:sha1=")
