"""Writes the files in this folder with the library as it was at commit ccf7a0f (before the
audio front-end interface and the model-neutral provenance keys), so that tests can check that
caches, archives, indexes and checkpoints of that format still load.

It was run once, from a checkout of that commit:
    git worktree add /tmp/legacy ccf7a0f
    cd /tmp/legacy && PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python <this file> <output folder>
It is kept for the record; it does not run against today's library.

The PaSST network is replaced by a tiny seeded linear model with the same interface (the real
code paths of that commit run: PasstLogitExtractor, pipeline.build_corpus, Corpus.save,
archive.export_cache, train_naive + TrainResult.save, search.index_folder), so the files are
small. Everything here is synthetic: the WAVs are make_fake_clotho's tones.
"""
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from retrieval_lib import archive, search
from retrieval_lib.audio import PasstLogitExtractor
from retrieval_lib.clotho import make_fake_clotho
from retrieval_lib.pipeline import build_corpus
from retrieval_lib.text import TextEncoder
from retrieval_lib.train import TrainConfig, train_naive


class TinyPasst(torch.nn.Module):
    """Stands in for hear21passt's wrapper: (b, samples) -> (b, 527), same attributes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(64, 527)
        self.max_model_window = 10 * 32000
        self.scene_hop = 2500 * 32

    def forward(self, x):
        frames = x[:, : (x.shape[1] // 64) * 64].reshape(x.shape[0], -1, 64)
        return self.proj(frames.abs().mean(1) * 10)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "_tmp"
    raw = make_fake_clotho(work / "clotho", n_clips_per_split=4, seconds=(3.0, 12.0))
    text = TextEncoder("offline", device="cpu")
    extractor = PasstLogitExtractor("10s", pretrained=False, model=TinyPasst(), seed=0,
                                    batch_size=4)
    corpus = build_corpus(raw, out / "corpus", extractor, text, shard_size=2, progress=False)
    shutil.rmtree(out / "corpus" / "_work")
    exported = archive.export_cache(out / "corpus", out / "archive.tar")
    print("archive sha256", exported["sha256"])
    result = train_naive(TrainConfig(epochs=2, batch_size=8, seed=0), corpus)
    result.save(out / "checkpoint.pt")
    audio = work / "sounds"
    audio.mkdir()
    for p in sorted((raw / "evaluation").glob("*.wav"))[:3]:
        shutil.copy(p, audio / p.name.replace(" ", "_"))
    search.index_folder(audio, out / "checkpoint.pt", out / "index", extractor=extractor,
                        text_encoder=text, progress=False)
    shutil.rmtree(out / "index" / "_work")
    np.save(out / "expected_test_scores.npy", result.scores(corpus.test, corpus.tag_emb).numpy())
    shutil.rmtree(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
