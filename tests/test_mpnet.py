"""The genuine all-mpnet-base-v2 laid out as a hub cache by scripts/setup_mpnet.py (setup_env.sh).

These tests need that cache (setup_env.sh always lays it out); conftest sets HF_HUB_OFFLINE=1,
the same way a Colab session loads a model it downloaded before.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval_lib.model import AudioEncoder
from retrieval_lib.text import DEFAULT_TEXT_MODEL, TextEncoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import setup_mpnet  # noqa: E402


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


@pytest.fixture(scope="module")
def mpnet(single_thread_module):
    return TextEncoder(DEFAULT_TEXT_MODEL, device="cpu")


@pytest.fixture(scope="module")
def single_thread_module():
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_hub_cache_is_laid_out_and_pinned():
    snap = setup_mpnet.installed_snapshot(_hf_home())
    assert snap is not None, "run scripts/setup_env.sh: the MPNet hub cache is missing or invalid"
    folder = setup_mpnet.cache_folder(_hf_home())
    assert (folder / "refs" / "main").read_text().strip() == snap.name
    assert setup_mpnet.sha256(snap / "model.safetensors") == setup_mpnet.SAFETENSORS_SHA256


def test_mpnet_loads_offline_and_encodes_768d(mpnet):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    emb = mpnet.encode(["A dog barks in the distance.", "Rain falls on a tin roof."])
    assert emb.shape == (2, 768) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    near, far = mpnet.encode(["a dog is barking", "water drips from a tap"])
    assert emb[0] @ near > emb[0] @ far   # a real sentence model, not random weights


def test_paper_parameter_count_with_mpnet(mpnet):
    model = AudioEncoder(out_dim=mpnet.dim)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == 406_558          # the paper's "407k": LN 2x527 + Linear 527x768 + 768


def test_text_encoder_leaves_the_environment_alone():
    """Loading a local model must not set HF_HUB_OFFLINE for the process (it broke later downloads)."""
    code = ("import os; os.environ.pop('HF_HUB_OFFLINE', None); os.environ.pop('TRANSFORMERS_OFFLINE', None)\n"
            "from retrieval_lib.text import TextEncoder\n"
            "TextEncoder('offline', device='cpu'); TextEncoder('sentence-transformers/all-mpnet-base-v2', device='cpu')\n"
            "print('HF_HUB_OFFLINE' in os.environ)")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # no proxy: a hub request would fail fast rather than hang (the cache must answer first)
    env.update(HF_HUB_ETAG_TIMEOUT="1", HF_HUB_DOWNLOAD_TIMEOUT="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_missing_model_offline_is_a_clear_error():
    with pytest.raises(OSError, match="cannot load the sentence model 'sentence-transformers/not-a-model'"):
        TextEncoder("sentence-transformers/not-a-model", device="cpu")


def test_setup_is_idempotent_and_checks_the_hash(tmp_path, capsys):
    """A second run only re-hashes; a corrupted weight file is detected as not installed."""
    snap = setup_mpnet.install(_hf_home(), sys.executable, None)
    assert "already in the hub cache" in capsys.readouterr().out
    # a copy of the cache with one flipped byte is not accepted
    fake_home = tmp_path / "hf"
    fake = setup_mpnet.cache_folder(fake_home) / "snapshots" / snap.name
    fake.mkdir(parents=True)
    (fake.parent.parent / "refs").mkdir()
    (fake.parent.parent / "refs" / "main").write_text(snap.name)
    for f in ("modules.json",):
        (fake / f).write_bytes((snap / f).read_bytes())
    data = bytearray((snap / "model.safetensors").read_bytes()[:4096])
    data[-1] ^= 1
    (fake / "model.safetensors").write_bytes(bytes(data))
    assert setup_mpnet.installed_snapshot(fake_home) is None
