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
    assert chance_metrics(1) == {"mAP@10": 1.0, "mAP@16": 1.0, "R@1": 1.0, "R@5": 1.0, "R@10": 1.0,
                                 "median rank": 1.0}
    m = chance_metrics(4)          # ranks 1..4 equally likely: mAP = (1 + 1/2 + 1/3 + 1/4) / 4
    assert m["mAP@10"] == pytest.approx(25 / 48) and m["R@1"] == 0.25 and m["R@5"] == 1.0


# -- scores and embeddings that would be silently wrong (issue 16) -------------------------------

from retrieval_lib.metrics import score  # noqa: E402


@pytest.mark.parametrize("which", ["text", "audio"])
@pytest.mark.parametrize("make", [lambda x: x.astype(np.complex128), lambda x: torch.from_numpy(x).to(torch.complex64),
                                  lambda x: (x + 1j * x).tolist()])
def test_score_refuses_complex_embeddings(which, make):
    t, a = np.ones((2, 3)), np.eye(3)
    t[0, 0] = 2.0
    args = (make(t), a) if which == "text" else (t, make(a))
    with pytest.raises(ValueError, match=rf"{which}_emb must be real numbers, got .*complex"):
        score(*args)


@pytest.mark.parametrize("rows", [[0], [1, 2], [0, 1, 2, 3]])
def test_score_refuses_nan_query_embeddings_naming_the_rows(rows):
    t = np.random.default_rng(0).normal(size=(4, 3))
    t[rows, 1] = np.nan
    with pytest.raises(ValueError, match=rf"text_emb contains NaN or inf \(rows \[{', '.join(map(str, rows))}\]\)"):
        score(t, np.eye(3))
    with pytest.raises(ValueError, match="audio_emb contains NaN or inf"):
        score(np.eye(3), np.where(np.eye(3) > 0, np.inf, 0.0))


def test_score_warns_about_text_rows_that_score_zero_everywhere():
    t = np.random.default_rng(0).normal(size=(5, 4))
    t[1] = 0.0            # all zero
    t[3] = 0.7            # constant: eq. 1's LayerNorm maps it to zero
    a = np.random.default_rng(1).normal(size=(6, 4))
    with pytest.warns(UserWarning, match=r"2 of 5 text embeddings are constant .* score 0 with every clip \(rows \[1, 3\]\)"):
        s = score(t, a)
    np.testing.assert_array_equal(s[[1, 3]].numpy(), 0.0)         # what the warning says
    # without eq. 1 a constant row is a real direction; only the zero row is flagged
    with pytest.warns(UserWarning, match=r"1 of 5 text embeddings are all zero: they score 0 with every clip \(rows \[1\]\)"):
        score(t, a, query=False)
    a[[0, 4]] = 0.0
    with pytest.warns(UserWarning, match=r"2 of 6 audio embeddings are all zero: they score 0 with every caption"):
        score(np.random.default_rng(2).normal(size=(3, 4)), a)


def test_score_of_healthy_embeddings_does_not_warn():
    import warnings
    gen = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score(gen.normal(size=(4, 5)), gen.normal(size=(3, 5)))
        score(torch.from_numpy(gen.normal(size=(4, 5))), torch.from_numpy(gen.normal(size=(3, 5))), query=False)


@pytest.mark.parametrize("bad, message", [
    (np.array([["a", "b"]]), "text_emb must be numbers"),
    ([[1.0, 2.0], [3.0]], "rectangular"),
    (np.zeros((2, 0)), "has no dimension"),
    (np.zeros(3), "must be 2-d"),
])
def test_score_refuses_other_malformed_embeddings(bad, message):
    with pytest.raises(ValueError, match=message):
        score(bad, np.eye(2))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int16])
def test_unsigned_and_small_integer_targets(dtype):
    s = np.array([[0.1, 0.9, 0.5], [0.9, 0.1, 0.5]])
    # caption 0's clip 2 is second (0.9 above it); caption 1's clip 0 is first
    assert ranks(s, np.array([2, 0], dtype=dtype)).tolist() == [2, 1]
    assert retrieval_metrics(s, np.array([2, 0], dtype=dtype))["mAP@10"] == pytest.approx(0.75)


def test_reversed_and_read_only_views_are_read_as_they_are():
    import warnings
    s = np.array([[0.1, 0.9, 0.5], [0.9, 0.1, 0.5], [0.3, 0.2, 0.1]])
    target = np.array([0, 0, 2])
    want = ranks(s[::-1], target[::-1].copy()).tolist()
    assert want == [3, 1, 3]                                # by hand, rows reversed
    frozen = s.copy()
    frozen.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ranks(s[::-1], target[::-1]).tolist() == want
        assert ranks(frozen, np.broadcast_to(np.array([0]), (3,))).tolist() == [3, 1, 1]
        assert retrieval_metrics(s[:, ::-1], np.eye(3, dtype=bool)[::-1]) == retrieval_metrics(s[:, ::-1], [2, 1, 0])
        top_k(np.array([0.1, 0.4, 0.3, 0.2])[::-1], _split(), k=1)


# -- analysis.top_k and RetrievalSplit.subset ----------------------------------------------------

def _split(n=4):
    return RetrievalSplit("test", np.zeros((n, 527)), np.ones((n, 3)), np.arange(n),
                          [f"c{i}.wav" for i in range(n)], [f"caption {i}" for i in range(n)])


@pytest.mark.parametrize("bad", [-1, 0, 2.5, 2.0, None, True, False, np.True_, "3", torch.tensor(2.0),
                                 np.float64(3.0)])
def test_top_k_refuses_bad_k(bad):
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        top_k([0.1, 0.4, 0.3, 0.2], _split(), k=bad)


@pytest.mark.parametrize("k", [np.int64(2), np.int32(2), np.uint8(2), torch.tensor(2)])
def test_top_k_accepts_numpy_and_tensor_integers(k):
    assert [r["clip"] for r in top_k([0.1, 0.4, 0.3, 0.2], _split(), k=k)] == ["c1.wav", "c2.wav"]


@pytest.mark.parametrize("scores, message", [
    ([0.1 + 1j, 0.4, 0.3, 0.2], "complex"),
    (torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=torch.complex64), "complex"),
    ([True, False, False, True], "booleans"),
    (np.zeros((2, 4)), "one query's scores"),
    (["a", "b", "c", "d"], "must be numbers"),
])
def test_top_k_refuses_bad_scores(scores, message):
    with pytest.raises(ValueError, match=message):
        top_k(scores, _split())


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"seed": 1.5}, "seed must be an integer >= 0"),
    ({"seed": True}, "seed must be an integer >= 0"),
    ({"audio_emb": np.ones((3, 3))}, r"audio_emb must be \(n_clips, d\) = \(4, 3\)"),
    ({"audio_emb": np.ones((4, 3)) * 1j}, "complex"),
    ({"audio_emb": np.full((4, 3), np.nan)}, "NaN"),
])
def test_pair_scores_refuses_bad_arguments(kwargs, message):
    from retrieval_lib.analysis import pair_scores
    args = {"audio_emb": np.ones((4, 3)), "split": _split(), **kwargs}
    with pytest.raises(ValueError, match=message):
        pair_scores(**args)


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
