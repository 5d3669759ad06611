"""How the checkpoint fixtures of format 2 in this folder were made (kept as a record).

They were written by retrieval_lib at commit cbc6873 (checkpoint format 2: provenance in
PaSST-specific keys `passt_variant`, `passt_pretrained`, `n_tags`; config without a loss
field), with torch 2.11 on CPU, by running this script from the repository root at that commit:

    PYTHONPATH=. python tests/data/make_format2_checkpoints.py

Files:
    format2_corpus.npz        the small random corpus both models were trained on (24 "logits"
                              per clip, 16-d text): train 30 clips, val and test 10 clips, 5
                              captions per clip, W_t (24, 16)
    format2_naive_layer.pt    train_naive, LayerNorm, lam 0.8, 3 epochs, batch 16, seed 3
    format2_fast_batch.pt     the hand-written fast trainer, BatchNorm, lam 0.5, 3 epochs,
                              batch 16, seed 4, select "last"

The provenance they record says PaSST "10s", pretrained, text model "offline" (the MiniLM
alias): the numbers are random, the labels only exercise the comparison of old keys.
tests/test_train.py loads them with today's code. Running this script with a later version of
the library writes files of that version's format, not format 2.
"""
from pathlib import Path

import numpy as np

from retrieval_lib.data import Corpus, RetrievalSplit
from retrieval_lib.train import TrainConfig, train_model, train_naive

HERE = Path(__file__).resolve().parent
IN, D = 24, 16
PROVENANCE = {"source": "clotho", "dataset": "test fixture (random numbers)", "text_model": "offline",
              "passt_variant": "10s", "passt_pretrained": True}


def make_arrays(seed: int = 11) -> dict:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(IN, D))
    out = {}
    for name, n in (("train", 30), ("val", 10), ("test", 10)):
        logits = rng.normal(-1.0, 2.0, (n, IN))
        clip = np.repeat(np.arange(n), 5)
        text = logits[clip] @ mix + rng.normal(size=(5 * n, D)) * np.sqrt(IN)
        out[f"{name}_logits"] = logits.astype(np.float32)
        out[f"{name}_text_emb"] = text.astype(np.float32)
        out[f"{name}_caption_clip"] = clip.astype(np.int64)
    out["tag_emb"] = rng.normal(size=(IN, D)).astype(np.float32)
    return out


def corpus_from(arrays: dict, provenance: dict) -> Corpus:
    splits = [RetrievalSplit(s, arrays[f"{s}_logits"], arrays[f"{s}_text_emb"], arrays[f"{s}_caption_clip"])
              for s in ("train", "val", "test")]
    return Corpus(*splits, arrays["tag_emb"], dict(provenance))


if __name__ == "__main__":
    arrays = make_arrays()
    np.savez_compressed(HERE / "format2_corpus.npz", **arrays)
    corpus = corpus_from(arrays, PROVENANCE)
    naive = train_naive(TrainConfig(norm="layer", lam=0.8, epochs=3, batch_size=16, seed=3), corpus,
                        device="cpu")
    naive.save(HERE / "format2_naive_layer.pt")
    fast = train_model(TrainConfig(norm="batch", lam=0.5, epochs=3, batch_size=16, seed=4, select="last"),
                       corpus, device="cpu")
    fast.save(HERE / "format2_fast_batch.pt")
    print(naive.provenance, naive.best_epoch, naive.history["val_map"])
    print(fast.best_epoch, fast.history["val_map"])
