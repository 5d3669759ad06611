"""Data sources, the analysis helpers and the plotting helpers (rendered headless)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from retrieval_lib import analysis, paper, plots  # noqa: E402
from tiny_corpus import tiny_corpus as _corpus, tiny_split as _split  # noqa: E402
from retrieval_lib.sources import data_note, load_corpus  # noqa: E402




def test_unknown_source_refused():
    with pytest.raises(ValueError, match="DATA must be one of"):
        load_corpus("audiocaps")


def test_data_note_says_what_the_data_and_weights_were():
    assert "synthetic" in data_note(_corpus()).lower()
    complete = _corpus("clotho")
    complete.provenance.update(dataset="Clotho v2.1 (Zenodo record 4783391), complete (5,929 clips)",
                               comparable_with_paper=True, audio_frontend="passt-10s",
                               audio_pretrained=True, audio_weights="sha256:" + "ab" * 32,
                               audio={"weights_file": "passt-s-f128-p16-s10-ap.476-swa.pt"},
                               text_model="sentence-transformers/all-mpnet-base-v2")
    note = data_note(complete)
    assert "can be compared with the paper's" in note and "sha256 abababababab" in note
    assert "passt-s-f128-p16-s10-ap.476-swa.pt" in note and "synthetic" not in note.lower()
    mirror = _corpus("clotho")
    mirror.provenance.update(dataset="Clotho-shaped data from http://127.0.0.1:8000/: 16 of 5,929 "
                                     "clips. Its numbers are not comparable with the paper's.",
                             comparable_with_paper=False, passt_variant="10s", passt_pretrained=False,
                             passt_seed=0, passt_weights_sha1="cd" * 20)
    note = data_note(mirror)
    assert "16 of 5,929 clips" in note and "not comparable" in note and "can be compared" not in note
    assert "without trained weights" in note and "passt-10s" in note
    legacy = _corpus("clotho")           # a cache built before the release was recorded
    legacy.provenance.update(dataset="Clotho v2.1 (Zenodo record 4783391)", passt_variant="10s",
                             passt_pretrained=True)
    note = data_note(legacy)
    assert "was not recorded" in note and "can be compared" not in note and "12 clips" in note


def test_clotho_source_loads_a_complete_cache(tmp_path):
    corpus = _corpus("clotho")
    corpus.provenance.update(text_model="sentence-transformers/all-mpnet-base-v2",
                             passt_variant="10s", passt_pretrained=True)
    corpus.save(tmp_path / "clotho")
    loaded = load_corpus("clotho", cache_dir=tmp_path)
    assert not loaded.is_synthetic and loaded.test.n_clips == 3


def test_pair_scores_match_hand_computation():
    split = _split("s", 5, d=3)
    audio = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    out = analysis.pair_scores(audio, split, batch_size=4, seed=0)
    from retrieval_lib.text import query_embedding
    q = query_embedding(split.text_emb)
    expected_pos = sorted(float(q[i] @ audio[split.caption_clip[i]]) for i in range(split.n_captions))
    np.testing.assert_allclose(sorted(out["pos"]), expected_pos, atol=1e-6)
    # every impostor score is one of the caption-vs-other-clip scores
    allowed = {round(float(q[i] @ audio[c]), 5) for i in range(10) for c in range(5) if c != split.caption_clip[i]}
    assert {round(float(v), 5) for v in out["audio_imp"]} <= allowed


def test_top_k_orders_by_score():
    split = _split("s", 4)
    rows = analysis.top_k(torch.tensor([0.1, 0.9, -0.2, 0.5]), split, k=3)
    assert [r["clip"] for r in rows] == ["c1.wav", "c3.wav", "c0.wav"]
    assert rows[0]["a reference caption"] == "caption 2"   # clip 1's first caption
    with pytest.raises(ValueError, match="one per clip"):
        analysis.top_k(torch.zeros(3), split)


def test_plots_render_and_stamp_synthetic():
    hist = {"train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9], "val_map": [0.1, 0.2], "test_map": [0.1, 0.15]}
    fig, axes = plt.subplots(1, 5, figsize=(20, 3))
    plots.plot_training_curves(hist, axes[0], synthetic=True)
    plots.plot_score_distributions({"pos": np.r_[0.5, 0.6], "audio_imp": np.r_[0.1], "caption_imp": np.r_[0.0]},
                                   axes[1], synthetic=True)
    plots.plot_metric_spread({"layer": [0.3, 0.32], "none": [0.2, 0.25]}, axes[2], synthetic=True,
                             paper=paper.NORM_MAP10)
    plots.plot_lambda_curve([0, 0.5, 1], [[0.1, 0.12], [0.3, 0.31], [0.28, 0.3]], axes[3],
                            synthetic=True, paper=paper.LAMBDA_MAP10)
    plots.plot_rank_histogram([1, 2, 3, 60], axes[4], synthetic=True)
    for ax in axes:
        assert any(t.get_text() == plots.SYNTHETIC_STAMP for t in ax.texts)
    plots.plot_rank_histogram([4, 5], axes[4], synthetic=True)   # a second system on the same axes
    assert sum(t.get_text() == plots.SYNTHETIC_STAMP for t in axes[4].texts) == 1
    fig.canvas.draw()
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.plot_rank_histogram([1, 2], ax, synthetic=False)
    assert not any(t.get_text() == plots.SYNTHETIC_STAMP for t in ax.texts)
    plt.close(fig)


def test_paper_numbers_consistent():
    assert paper.TABLE1_DEVTEST["PaSST-MPnet-tags"]["mAP@10"] == paper.NORM_MAP10["layer"] == paper.LAMBDA_MAP10[0.8]
    assert paper.LAMBDA_MAP10[1.0] == paper.TABLE1_DEVTEST["PaSST-MPnet"]["mAP@10"]
    assert paper.N_PARAMS == 2 * 527 + 527 * 768 + 768


def test_text_encoder_for_reads_the_provenance(monkeypatch):
    import retrieval_lib.text as text
    from retrieval_lib.sources import text_encoder_for
    seen = []
    monkeypatch.setattr(text, "TextEncoder", lambda name, device=None: seen.append(name) or name)
    c = _corpus()
    c.provenance["text_model"] = text.OFFLINE_TEXT_MODEL
    assert text_encoder_for(c) == text.OFFLINE_TEXT_MODEL
    # ... which TextEncoder resolves to the packaged MiniLM, like "offline"
    assert text.resolve_model_name(text.OFFLINE_TEXT_MODEL) == text.resolve_model_name("offline") \
        == text.offline_model_path()
    c.provenance["text_model"] = "sentence-transformers/all-mpnet-base-v2"
    assert text_encoder_for(c) == "sentence-transformers/all-mpnet-base-v2"
    del c.provenance["text_model"]
    with pytest.raises(ValueError, match="which text model"):
        text_encoder_for(c)
