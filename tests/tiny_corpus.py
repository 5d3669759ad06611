"""A tiny random corpus (2 captions per clip, 4-d text space) for tests of page helpers."""
import numpy as np

from retrieval_lib.data import Corpus, RetrievalSplit


def tiny_split(name, n_clips, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return RetrievalSplit(name, rng.normal(size=(n_clips, 527)), rng.normal(size=(2 * n_clips, d)),
                          np.repeat(np.arange(n_clips), 2), [f"c{i}.wav" for i in range(n_clips)],
                          [f"caption {i}" for i in range(2 * n_clips)])


def tiny_corpus(source="synthetic"):
    tag = np.random.default_rng(1).normal(size=(527, 4))
    return Corpus(tiny_split("train", 6), tiny_split("val", 3), tiny_split("test", 3), tag,
                  {"source": source})
