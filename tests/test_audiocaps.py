"""Real AudioCaps from a user folder (retrieval_lib.audiocaps), on a generated tiny folder:
official CSV layout, the clip names download tools use, missing clips, clear errors."""
import numpy as np
import pytest

from rehearsal_support import make_tiny_audiocaps, write_audiocaps_csv

from retrieval_lib.audiocaps import load_audiocaps, read_captions

pytestmark = pytest.mark.slow   # one random PaSST build + a few short forward passes


@pytest.fixture(scope="module")
def extractor():
    from retrieval_lib.audio import make_passt as make_extractor
    return make_extractor("10s", pretrained=False, device="cpu", batch_size=4, autocast="fp32", seed=0)


def test_read_captions_groups_rows_per_clip(tmp_path):
    make_tiny_audiocaps(tmp_path)
    rows = read_captions(tmp_path / "val.csv")
    assert [k for k, _, _ in rows] == ["yt_val0_10", "yt_val1_20", "yt_val2_5"]
    assert all(len(caps) == 5 for _, _, caps in rows)


def test_tiny_audiocaps_corpus(tmp_path, extractor, text_encoder):
    make_tiny_audiocaps(tmp_path / "ac")
    with pytest.warns(UserWarning, match="AudioCaps val: 1 of 3 clips not found"):
        corpus = load_audiocaps(tmp_path / "ac", tmp_path / "cache", extractor=extractor,
                                text_encoder=text_encoder, progress=False)
    assert (corpus.train.n_clips, corpus.val.n_clips, corpus.test.n_clips) == (3, 2, 2)
    assert corpus.train.n_captions == 3 and corpus.test.n_captions == 10
    assert corpus.provenance["source"] == "audiocaps" and not corpus.is_synthetic
    assert corpus.provenance["skipped"]["val"] == [{"file": "yt_val1_20", "error": "clip not found"}]
    assert corpus.train.clip_names == ["train/yt_train0_30.wav", "train/Yyt-train1.wav",
                                       "train/yt_train2_12.5.flac"]
    assert np.isfinite(corpus.train.logits).all() and corpus.train.logits.shape == (3, 527)
    # different tones give different logits
    assert not np.allclose(corpus.train.logits[0], corpus.train.logits[1])
    # loaded from the cache the second time (no model needed), refused for another text model
    again = load_audiocaps(tmp_path / "ac", tmp_path / "cache", text_model="offline",
                           passt_pretrained=False, progress=False)
    np.testing.assert_array_equal(again.test.logits, corpus.test.logits)
    with pytest.raises(ValueError, match="asked for 'sentence-transformers/all-mpnet-base-v2'"):
        load_audiocaps(tmp_path / "ac", tmp_path / "cache", passt_pretrained=False)


def test_strict_refuses_missing_clips(tmp_path, extractor, text_encoder):
    make_tiny_audiocaps(tmp_path / "ac")
    with pytest.raises(FileNotFoundError, match=r"AudioCaps val: 1 clip\(s\) not found, e.g. \['yt_val1_20'\]"):
        load_audiocaps(tmp_path / "ac", tmp_path / "cache", extractor=extractor,
                       text_encoder=text_encoder, strict=True, progress=False)


def test_clear_errors_for_missing_csv_column_and_audio(tmp_path, text_encoder, extractor):
    root = make_tiny_audiocaps(tmp_path / "ac")
    (root / "test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="test.csv .*audiocap_id, youtube_id, start_time, caption"):
        load_audiocaps(root, tmp_path / "c1", extractor=extractor, text_encoder=text_encoder)
    write_audiocaps_csv(root / "test.csv", [("1", "x", "0")], columns=("audiocap_id", "youtube_id", "start_time"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['caption'\]"):
        load_audiocaps(root, tmp_path / "c2", extractor=extractor, text_encoder=text_encoder)
    write_audiocaps_csv(root / "test.csv", [("1", "gone", "0", "a dog barks")])
    with pytest.raises(FileNotFoundError, match="AudioCaps test: none of the 1 clips .*gone_0.wav"):
        load_audiocaps(root, tmp_path / "c3", extractor=extractor, text_encoder=text_encoder)
    with pytest.raises(FileNotFoundError, match="AudioCaps folder not found"):
        load_audiocaps(tmp_path / "nowhere", tmp_path / "c4")
