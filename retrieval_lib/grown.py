"""A large, clearly SYNTHETIC collection grown from a corpus, for measuring search at scale
(chapter 11, benchmarks/search_speed.py): mixtures of the corpus's clips' events plus noise,
embedded by a trained audio encoder. Never presented as real data."""
from __future__ import annotations

import numpy as np

from .folders import embed_logits


GROWN_NOTE = ("SYNTHETIC grown collection: mixtures of the corpus's clips (event probabilities "
              "combined, plus noise on the logits), embedded by the trained audio encoder")


def grow_logits(logits, n: int, seed: int = 0, noise: float = 0.5, chunk: int = 65_536):
    """Yield (start, (m, 527) logits) chunks of n synthetic clips grown from source clips.

    Clip i mixes two source clips a, b: the probability of each event is that of either
    occurring, p = 1 - (1 - p_a)(1 - g p_b) with a random gain g in [0, 1] (g = 0: a alone, a
    near-duplicate), then Gaussian noise of std `noise` is added to the logits. The first rows
    are the source clips themselves. The result keeps the corpus's structure (its events,
    their co-occurrences), which is what approximate indexes exploit, unlike i.i.d. noise.
    """
    src = np.asarray(logits, dtype=np.float32)
    p_src = 1.0 / (1.0 + np.exp(-src.astype(np.float64)))
    n_src = src.shape[0]
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        a = rng.integers(0, n_src, m)
        b = rng.integers(0, n_src, m)
        gain = rng.uniform(0, 1, (m, 1)) * (rng.uniform(size=(m, 1)) < 0.7)
        p = 1.0 - (1.0 - p_src[a]) * (1.0 - gain * p_src[b])
        p = np.clip(p, 1e-7, 1 - 1e-7)
        out = (np.log(p) - np.log1p(-p)).astype(np.float32)
        out += rng.normal(0, noise, out.shape).astype(np.float32)
        first = max(0, min(n_src - start, m))   # the source clips come first, unchanged
        if first:
            out[:first] = src[start:start + first]
        yield start, out


def grown_embeddings(result, logits, tag_emb, n: int, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """(n, d) float32 embeddings of a grown collection (see grow_logits), built chunk by chunk."""
    d = result.state_dict["linear.weight"].shape[0]
    out = np.empty((n, d), dtype=np.float32)
    for start, chunk in grow_logits(logits, n, seed, noise):
        out[start:start + len(chunk)] = embed_logits(result, chunk, tag_emb)
    return out


__all__ = ["GROWN_NOTE", "grow_logits", "grown_embeddings"]
