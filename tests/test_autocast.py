"""PaSST under autocast: fp16 / bf16 logits against fp32 logits of the same windows.

Stated tolerance (the book's "Running this book" page and README quote it), measured on CPU
with a seeded random-weight PaSST-S on three 10 s windows (tones + noise):
    bf16: max |logit difference| 0.012 = 2.2 % of the logits' standard deviation, correlation
          0.99998, the same top-10 classes per clip;
    fp16: max |difference| 0.0016 = 0.3 % of the standard deviation, correlation 0.9999996.
The test allows 3x those: bf16 <= 6 % of the std, fp16 <= 1 % of the std, and asks that the
top-5 classes of every clip agree. It also checks that autocast really ran (the outputs differ
from fp32), so it cannot pass by ignoring the setting.
"""
import numpy as np
import pytest
import torch

from retrieval_lib.audio import autocast_dtype, make_passt as make_extractor

pytestmark = pytest.mark.slow


def test_autocast_setting_is_parsed():
    assert autocast_dtype(None, "cpu") is None and autocast_dtype(None, "cuda") is torch.float16
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16 and autocast_dtype("fp16", "cuda") is torch.float16
    assert autocast_dtype(True, "cpu") is torch.bfloat16 and autocast_dtype("fp32", "cuda") is None
    assert autocast_dtype(False, "cuda") is None
    with pytest.raises(ValueError, match="autocast must be"):
        autocast_dtype("int8", "cpu")


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(0)
    t = np.arange(32000 * 10) / 32000
    return [(0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
            for f in (220.0, 880.0, 3000.0)]


@pytest.fixture(scope="module")
def extractor():
    ex = make_extractor("10s", pretrained=False, device="cpu", batch_size=3, autocast="bf16", seed=0)
    assert ex.amp and ex.amp_dtype is torch.bfloat16 and ex.batch_size == 3
    return ex


@pytest.fixture(scope="module")
def reference(extractor, windows):
    extractor.amp = False
    return extractor.logits(windows)


@pytest.mark.parametrize("name, dtype, rel_tol, min_corr", [
    ("bf16", torch.bfloat16, 0.06, 0.9995),
    ("fp16", torch.float16, 0.01, 0.99999),
])
def test_reduced_precision_logits_match_fp32(extractor, windows, reference, name, dtype, rel_tol, min_corr):
    ref = reference
    extractor.amp, extractor.amp_dtype = True, dtype   # what make_extractor(autocast=name) sets
    low = extractor.logits(windows)
    assert low.dtype == np.float32 and np.isfinite(low).all()
    diff = np.abs(low - ref)
    assert diff.max() > 0, f"{name}: identical to fp32, autocast did not run"
    assert diff.max() <= rel_tol * ref.std(), (name, float(diff.max()), float(ref.std()))
    assert np.corrcoef(low.ravel(), ref.ravel())[0, 1] >= min_corr
    for a, b in zip(low, ref):
        assert set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5])
