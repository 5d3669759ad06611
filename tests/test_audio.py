"""Tests of retrieval_lib.audio: reading WAVs, and PaSST logit extraction against hear21passt.

The PaSST tests use one random-initialised network (no download) shared by the module; a CPU
forward pass of a 10 s window costs a few seconds, so the clips are few and short.
"""
import urllib.error

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from retrieval_lib import audio
from retrieval_lib.audio import AudioError, PasstLogitExtractor, build_passt, load_audio, mel_spectrogram

SR = audio.PASST_SR


# ---------------------------------------------------------------------------------------------
# load_audio
# ---------------------------------------------------------------------------------------------

def test_load_audio_mono_at_target_rate(tmp_path):
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == (SR,)
    np.testing.assert_allclose(y, x, atol=1e-7)


def test_load_audio_averages_channels(tmp_path):
    left = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    right = np.full(1000, 0.25, dtype=np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "st.wav"), (left + right) / 2, atol=1e-7)


def test_load_audio_resamples_clotho_rate(tmp_path):
    sr_in = 44100
    t = np.arange(int(1.5 * sr_in)) / sr_in
    sf.write(tmp_path / "c.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr_in,
             subtype="FLOAT")
    y = load_audio(tmp_path / "c.wav")
    assert y.shape == (int(1.5 * SR),)
    # the 1 kHz tone survives: its spectral peak sits at 1 kHz at the new rate
    spec = np.abs(np.fft.rfft(y[2000:-2000]))
    peak_hz = np.argmax(spec) * SR / (y.size - 4000)
    assert abs(peak_hz - 1000) < 5


def test_load_audio_refuses_other_rate_without_resampling(tmp_path):
    sf.write(tmp_path / "r.wav", np.zeros(4410, np.float32), 44100)
    with pytest.raises(ValueError, match=r"r\.wav.*44100.*32000"):
        load_audio(tmp_path / "r.wav", resample=False)


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "nan"])
def test_load_audio_bad_files_name_the_file(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.wav"
    if kind == "empty":
        sf.write(path, np.zeros(0, np.float32), SR)
    elif kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00not a wave file at all" * 10)
    elif kind == "nan":
        x = np.zeros(100, np.float32)
        x[10] = np.nan
        sf.write(path, x, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=f"bad_{kind}.wav"):
        load_audio(path)


# ---------------------------------------------------------------------------------------------
# PaSST
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def passt():
    return build_passt("10s", pretrained=False, device="cpu", seed=0)


def test_build_passt_is_eval_logits_model(passt):
    assert not passt.training and passt.mode == "logits"
    assert passt.max_model_window == 10 * SR and passt.scene_hop == SR * 5 // 2
    # seeded random initialisation is reproducible
    again = build_passt("10s", pretrained=False, device="cpu", seed=0)
    assert torch.equal(again.net.head[-1].weight, passt.net.head[-1].weight)


def test_build_passt_download_failure_is_explained(monkeypatch):
    from hear21passt.models import passt as passt_models

    def offline(**kwargs):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(passt_models, "get_model", offline)
    with pytest.raises(RuntimeError, match="could not download.*pretrained=False"):
        build_passt("10s", pretrained=True, device="cpu")


def test_extractor_input_checks(passt):
    ex = PasstLogitExtractor(model=passt, pretrained=False)
    assert ex.amp is False            # CPU default: fp32
    assert ex.logits([]).shape == (0, 527)
    with pytest.raises(ValueError, match="clip 1.*too short"):
        ex.logits([np.zeros(SR, np.float32), np.zeros(100, np.float32)])
    with pytest.raises(ValueError, match="clip 0.*1-d"):
        ex.logits([np.zeros((2, SR), np.float32)])
    with pytest.raises(ValueError, match="clip 0.*NaN"):
        ex.logits([np.full(SR, np.nan, np.float32)])
    assert [ex.n_windows(n) for n in (SR, 10 * SR, 10 * SR + 1, 17 * SR)] == [1, 1, 5, 7]


def test_mel_spectrogram_shape(passt):
    mel = mel_spectrogram(np.random.default_rng(0).standard_normal(SR).astype(np.float32), passt)
    assert mel.shape == (128, (SR - 1) // 320 + 1) and np.isfinite(mel).all()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Input image size", "ignore:stft with return_complex",
                            "ignore::FutureWarning")   # hear21passt's own reference path
def test_batched_extraction_matches_hear21passt_per_clip(passt):
    rng = np.random.default_rng(1)
    seconds = (4, 17, 10, 4)   # two 4 s clips share a forward pass; 17 s is windowed
    clips = [(0.1 * rng.standard_normal(s * SR)).astype(np.float32) for s in seconds]
    # batch_size 3 puts windows of the 17 s clip in several batches
    ours = PasstLogitExtractor(model=passt, pretrained=False, batch_size=3).logits(clips)
    assert ours.shape == (4, 527) and ours.dtype == np.float32
    with torch.no_grad():
        ref = np.stack([passt.get_scene_embeddings(torch.from_numpy(c)[None])[0].numpy() for c in clips])
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    # not trivially equal: different clips give different logits
    assert np.abs(ref[0] - ref[3]).max() > 1e-3


@pytest.mark.slow
def test_20s_variant_builds_and_extracts():
    ex = PasstLogitExtractor("20s", pretrained=False, device="cpu", seed=0)
    assert ex.window == 20 * SR and ex.n_windows(17 * SR) == 1 and ex.n_windows(25 * SR) == 6
    out = ex.logits([np.zeros(2 * SR, np.float32), 0.1 * np.ones(SR, np.float32)])
    assert out.shape == (2, 527) and np.isfinite(out).all()


# ---------------------------------------------------------------------------------------------
# Hostile inputs: integer PCM, paths instead of waveforms, truncated WAVs
# ---------------------------------------------------------------------------------------------

def test_integer_pcm_is_scaled_by_its_dtype_range():
    f = audio._as_float_wave
    np.testing.assert_array_equal(f(np.array([-32768, 0, 16384], np.int16), "x"), [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(f(np.array([-2 ** 31, 2 ** 30], np.int32), "x"), [-1.0, 0.5])
    np.testing.assert_array_equal(f(np.array([0, 128, 192], np.uint8), "x"), [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(f(torch.tensor([-16384], dtype=torch.int16), "x"), [-0.5])
    x = np.array([0.25, -0.5], np.float64)
    np.testing.assert_array_equal(f(x, "x"), x.astype(np.float32))     # floats unchanged
    with pytest.raises(ValueError, match="clip 3: unsigned uint16"):
        f(np.array([1, 2], np.uint16), "clip 3")


def test_int16_clip_gives_the_logits_of_its_float_version(passt):
    ex = PasstLogitExtractor(model=passt, pretrained=False)
    pcm = (np.random.default_rng(2).standard_normal(SR) * 3000).astype(np.int16)
    got = ex.logits([pcm])
    want = ex.logits([pcm.astype(np.float32) / 32768])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # the same numbers as unscaled floats are not audio in [-1, 1]: refused, not sent to PaSST
    with pytest.raises(ValueError, match="clip 0: samples reach 1[0-9]{4}, far above full scale"):
        ex.logits([pcm.astype(np.float32)])


@pytest.mark.parametrize("peak", [17.0, 9000.0, 32767.0])
def test_float_audio_far_above_full_scale_is_refused(passt, tmp_path, peak):
    """A float WAV (or array) holding integer-scaled values: refused by load_audio and by the
    extractor, with the peak; a float signal a little above 1 (clipping) is still accepted."""
    ex = PasstLogitExtractor(model=passt, pretrained=False)
    wave = np.sin(np.linspace(0, 200, SR)).astype(np.float32) * peak
    path = tmp_path / "loud.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"loud\.wav: samples reach .*rescale"):
        load_audio(path)
    with pytest.raises(ValueError, match="far above full scale"):
        ex.logits([wave])
    sf.write(path, wave / peak * 1.3, SR, subtype="FLOAT")
    assert np.abs(load_audio(path)).max() == pytest.approx(1.3, rel=1e-3)


def test_reversed_views_and_bad_target_rates(passt):
    ex = PasstLogitExtractor(model=passt, pretrained=False)
    wave = np.sin(np.linspace(0, 50, SR)).astype(np.float32) * 0.5
    np.testing.assert_allclose(ex.logits([wave[::-1]]), ex.logits([wave[::-1].copy()]), atol=1e-6)
    for bad in (0, -1, 2.5, True, "32000"):
        with pytest.raises(ValueError, match="target_sr must be a sample rate"):
            load_audio(__file__, target_sr=bad)


def test_paths_where_waveforms_are_expected_are_explained(passt, tmp_path):
    ex = PasstLogitExtractor(model=passt, pretrained=False)
    with pytest.raises(ValueError, match="clip 0: got a file path.*load_audio"):
        ex.logits([str(tmp_path / "a.wav")])
    with pytest.raises(ValueError, match="clip 1: got a file path"):
        ex.logits([np.zeros(SR, np.float32), tmp_path / "b.wav"])
    with pytest.raises(ValueError, match="got a path.*load_audio"):
        ex.logits(str(tmp_path / "a.wav"))
    with pytest.raises(ValueError, match="strings"):
        ex.logits([np.array(["a.wav", "b.wav"])])
    with pytest.raises(AudioError, match="file path, got ndarray"):
        load_audio(np.zeros(10))


def _truncated_wav(path, declared_s=2.0, held_s=0.5):
    x = (0.1 * np.random.default_rng(0).standard_normal(int(declared_s * SR))).astype(np.float32)
    sf.write(path, x, SR, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:44 + int(held_s * SR) * 2])     # 44-byte header, 2 bytes a sample
    return path


def test_truncated_wav_is_refused_naming_the_file(tmp_path):
    path = _truncated_wav(tmp_path / "cut.wav")
    assert sf.read(path)[0].shape == (SR // 2,)        # libsndfile alone reads it silently
    with pytest.raises(AudioError, match=r"cut\.wav: the WAV header declares 2\.00 s .* only 0\.50 s"):
        load_audio(path)
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros(SR, np.float32), SR, subtype="PCM_16")
    assert audio.wav_truncation(whole) is None and load_audio(whole).shape == (SR,)


class _StubEmbed:
    """Counts the waveforms it embeds; the vector of a clip is its length (527 times)."""

    def __init__(self):
        self.seen = 0

    def __call__(self, waves):
        self.seen += len(waves)
        return np.stack([np.full(527, float(len(w)), np.float32) for w in waves])


def _store(work):
    from retrieval_lib.core import ShardStore
    return ShardStore(work, {"audio_frontend": "stub", "audio_weights": "none"})


def _items(folder, names):
    return [(n, folder / n) for n in names]


def test_pipeline_treats_a_truncated_wav_like_a_corrupt_file(tmp_path):
    from retrieval_lib.pipeline import embed_split
    from retrieval_lib.core import AudioFrontend

    class Stub(AudioFrontend):
        name, output_dim, sample_rate = "stub", 527, SR
        embed = staticmethod(_StubEmbed())

    class Text:
        model_name = "stub-text"

        def encode(self, texts, clean=True, show_progress=False):
            return np.ones((len(texts), 4), np.float32)

    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "good.wav", np.zeros(SR, np.float32), SR)
    _truncated_wav(folder / "cut.wav")
    rows = [("good.wav", ["a good clip"]), ("cut.wav", ["a cut clip"])]
    with pytest.warns(UserWarning, match="cut.wav"):
        split, skipped = embed_split("train", folder, rows, Stub(), Text(), tmp_path / "work",
                                     progress=False)
    assert split.clip_names == ["good.wav"] and split.captions == ["a good clip"]
    assert [s["file"] for s in skipped] == ["cut.wav"] and "declares 2.00 s" in skipped[0]["error"]
    with pytest.raises(AudioError, match="cut.wav"):
        embed_split("train", folder, rows[1:], Stub(), Text(), tmp_path / "work2", strict=True,
                    progress=False)


def test_shard_numbers_do_not_come_from_counting_files(tmp_path):
    folder, work = tmp_path / "clips", tmp_path / "work"
    folder.mkdir()
    names = [f"c{i}.wav" for i in range(4)]
    for i, n in enumerate(names):
        sf.write(folder / n, np.zeros(SR + i * 1000, np.float32), SR)
    read = lambda path: load_audio(path, SR)  # noqa: E731
    _store(work).extract(_items(folder, names[:3]), read, _StubEmbed(), shard_size=1, progress=False)
    assert sorted(p.name for p in work.glob("shard_*.npz")) == \
        ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    (work / "shard_00000.npz").unlink()              # a deleted shard: its clip is redone
    embed = _StubEmbed()
    done, _ = _store(work).extract(_items(folder, names), read, embed, shard_size=1, progress=False)
    assert embed.seen == 2 and set(done) == set(names)   # c0 and c3, nothing else recomputed
    assert done["c3.wav"][0] == SR + 3000                 # the vector of the right clip
    # new shards got fresh numbers: nothing overwrote shard_00001 / shard_00002
    assert sorted(p.name for p in work.glob("shard_*.npz")) == \
        ["shard_00001.npz", "shard_00002.npz", "shard_00003.npz", "shard_00004.npz"]
    assert set(_store(work).load()) == set(names)
    (work / "shard_00004.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="shard_00004.npz: damaged shard.*delete this file"):
        _store(work).load()


def test_shards_of_the_first_format_still_resume(tmp_path):
    """Shards written before the front-end interface (keys names/logits, PaSST-specific
    settings.json) are read, and their settings are compared in model-neutral keys."""
    from retrieval_lib.core import ProvenanceMismatch, ShardStore
    work = tmp_path / "work"
    work.mkdir()
    np.savez(work / "shard_00000.npz", names=np.array(["a.wav"]), logits=np.ones((1, 527), np.float32))
    old = {"passt_variant": "10s", "passt_pretrained": False, "passt_seed": 0,
           "passt_weights_sha1": "ab" * 20, "sample_rate": 32000}
    (work / "settings.json").write_text(json.dumps(old))
    same = {"audio_frontend": "passt-10s", "audio_pretrained": False,
            "audio_weights": f"random:seed=0:sha1={'ab' * 20}", "audio_sample_rate": 32000}
    store = ShardStore(work, same)
    store.check_settings()
    assert list(store.load()) == ["a.wav"]
    other = dict(same, audio_weights=f"random:seed=1:sha1={'cd' * 20}")
    with pytest.raises(ProvenanceMismatch, match="audio_weights: shards .*seed=0.*this run .*seed=1"):
        ShardStore(work, other).check_settings()


def test_resume_check_includes_the_random_passt_seed(passt, tmp_path):
    from retrieval_lib.core import ProvenanceMismatch, ShardStore
    a = PasstLogitExtractor(model=passt, pretrained=False, seed=0).settings()
    b = PasstLogitExtractor(model=passt, pretrained=False, seed=1).settings()
    assert a["audio_weights"].startswith("random:seed=0:sha1=") and a["audio_frontend"] == "passt-10s"
    ShardStore(tmp_path, a).check_settings()
    ShardStore(tmp_path, a).check_settings()                 # same settings: resumes
    with pytest.raises(ProvenanceMismatch, match="audio_weights: shards 'random:seed=0"):
        ShardStore(tmp_path, b).check_settings()
