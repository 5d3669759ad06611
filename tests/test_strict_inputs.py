"""Hostile and careless inputs to the small helpers (issue 10): each gets a clear error that
names the problem, or the correct result. Expected values are worked out by hand here."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval_lib.analysis import top_k
from retrieval_lib.data import RetrievalSplit
from retrieval_lib.metrics import chance_metrics, ranks, retrieval_metrics
from retrieval_lib.model import AudioEncoder
from retrieval_lib.tags import fuse
from retrieval_lib.text import check_text_model, clean_caption, query_embedding

REPO = Path(__file__).resolve().parents[1]


# -- metrics ------------------------------------------------------------------------------------

def test_float_target_is_not_truncated():
    s = np.array([[0.1, 0.9, 0.5], [0.9, 0.1, 0.5]])
    with pytest.raises(ValueError, match=r"integer clip indices.*1\.7"):
        ranks(s, [1.7, 0.0])
    with pytest.raises(ValueError, match="integer clip indices"):
        retrieval_metrics(s, torch.tensor([np.nan, 0.0]))
    # whole-number floats are indices: caption 0's clip 1 is ranked first, caption 1's clip 2 second
    assert ranks(s, [1.0, 2.0]).tolist() == [1, 2]
    with pytest.raises(ValueError, match="booleans"):
        ranks(s, [True, False])


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (0, 0)])
def test_empty_scores_are_an_error_not_nan(shape):
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(np.zeros(shape), np.zeros(shape[0], dtype=int))


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_chance_metrics_needs_a_positive_clip_count(bad):
    with pytest.raises(ValueError, match="n_clips must be an integer >= 1"):
        chance_metrics(bad)


def test_chance_metrics_small_cases_by_hand():
    assert chance_metrics(1) == {"mAP@10": 1.0, "R@1": 1.0, "R@5": 1.0, "R@10": 1.0}
    m = chance_metrics(4)          # ranks 1..4 equally likely: mAP = (1 + 1/2 + 1/3 + 1/4) / 4
    assert m["mAP@10"] == pytest.approx(25 / 48) and m["R@1"] == 0.25 and m["R@5"] == 1.0


# -- analysis.top_k and RetrievalSplit.subset ----------------------------------------------------

def _split(n=4):
    return RetrievalSplit("test", np.zeros((n, 527)), np.ones((n, 3)), np.arange(n),
                          [f"c{i}.wav" for i in range(n)], [f"caption {i}" for i in range(n)])


@pytest.mark.parametrize("bad", [-1, 0, 2.5, None])
def test_top_k_refuses_bad_k(bad):
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        top_k([0.1, 0.4, 0.3, 0.2], _split(), k=bad)


def test_top_k_order_by_hand():
    rows = top_k([0.1, 0.4, 0.3, 0.2], _split(), k=2)
    assert [r["clip"] for r in rows] == ["c1.wav", "c2.wav"] and [r["rank"] for r in rows] == [1, 2]
    assert len(top_k([0.1, 0.4, 0.3, 0.2], _split(), k=10)) == 4     # fewer clips than k
    with pytest.raises(ValueError, match="NaN"):
        top_k([0.1, np.nan, 0.3, 0.2], _split())


def test_subset_minus_one_is_refused_not_n_minus_one():
    with pytest.raises(ValueError, match=">= 1, got -1"):
        _split().subset(-1)


# -- model, tags, text ------------------------------------------------------------------------------

def test_float64_tensor_into_audio_encoder_is_converted():
    enc = AudioEncoder(in_dim=4, out_dim=3, norm="layer", seed=0)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = enc(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, enc(x.float()), rtol=0, atol=0)
    torch.testing.assert_close(enc(x.numpy()), out, rtol=0, atol=0)    # numpy float64 too
    torch.testing.assert_close(enc(torch.tensor([[1, 2, 3, 4]])), enc(torch.tensor([[1.0, 2, 3, 4]])))


@pytest.mark.parametrize("lam", [torch.tensor(2.0), torch.tensor([[0.5], [1.5]]), torch.tensor(float("nan")),
                                 torch.tensor(-0.1), float("nan"), "0.5"])
def test_fuse_refuses_lambda_outside_0_1_also_as_tensor(lam):
    e = torch.eye(2)
    with pytest.raises(ValueError, match="lam"):
        fuse(e, e, lam)


def test_fuse_tensor_lambda_inside_0_1_works():
    got = fuse(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor(0.5))
    torch.testing.assert_close(got, torch.tensor([[2 ** -0.5, 2 ** -0.5]]))


def test_nan_text_embeddings_are_refused_by_query_embedding():
    e = np.ones((3, 4), np.float32)
    e[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(rows \[1\]\)"):
        query_embedding(e)
    e[1, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        query_embedding(torch.from_numpy(e))


@pytest.mark.parametrize("caption", ["“ ” …", "«»", "— –", "¿¡", "...", "“…”"])
def test_caption_of_only_punctuation_is_refused(caption):
    with pytest.raises(ValueError, match="no word|empty after cleaning"):
        clean_caption(caption)


def test_non_ascii_words_still_count():
    assert clean_caption("Café “noise”") == "Café “noise”"       # ASCII punctuation only is removed
    assert clean_caption("鳥が鳴く") == "鳥が鳴く"
    assert clean_caption("“A dog” barks…") == "“A dog” barks…"


def test_check_text_model_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Path(check_text_model("offline")).is_dir()
    with pytest.raises(ValueError, match="'bogus-model-xyz' is not in the local Hugging Face cache"):
        check_text_model("bogus-model-xyz")
    with pytest.raises(ValueError, match="no such folder"):
        check_text_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no sentence-transformers model"):
        check_text_model(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="neither a folder nor a hub id"):
        check_text_model("bad name!")


def test_cli_refuses_a_bogus_text_model_before_building_passt(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c",
                           "import sys, retrieval_lib.__main__ as m; rc = m.main(sys.argv[1:]); "
                           "print('passt built' if 'hear21passt' in sys.modules else 'passt not built'); "
                           "sys.exit(rc)",
                           "pipeline", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"),
                           "--text-model", "bogus", "--random-passt"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--text-model" in proc.stderr and "'bogus'" in proc.stderr
    assert "passt not built" in proc.stdout


def test_latin1_captions_csv_error_names_the_file_and_line(tmp_path):
    from retrieval_lib.clotho import CAPTION_COLUMNS, read_captions_csv
    lines = [",".join(CAPTION_COLUMNS),
             "a.wav," + ",".join(["A dog barks."] * 5),
             "b.wav," + ",".join(["Un café bruyant."] * 5)]
    path = tmp_path / "clotho_captions_development.csv"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(ValueError, match=r"clotho_captions_development\.csv, line 3: not UTF-8.*0xe9"):
        read_captions_csv(path)
    path.write_bytes("\n".join(lines).encode("utf-8"))          # the same text in UTF-8 reads
    assert read_captions_csv(path)[1] == ("b.wav", ["Un café bruyant."] * 5)
