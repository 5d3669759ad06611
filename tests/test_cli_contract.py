"""The command line's contract (issue 16): every subcommand, given missing, damaged or
wrong-type input, exits non-zero with ONE line on stderr naming the problem (no traceback);
Ctrl-C says "interrupted; run the same command again to resume" with no traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import torch_threads
from rehearsal_support import LocalServer
from retrieval_lib import archive
from retrieval_lib.cli import main
from retrieval_lib.data import Corpus, RetrievalSplit
from retrieval_lib.indexes import AudioIndex

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    """(exit status, stdout, stderr) of the CLI run in this process."""
    with torch_threads(1):
        code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, *argv, says: str):
    code, out, err = run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code not in (0, None), f"{argv}: exit status {code}"
    assert "Traceback" not in err + out, f"{argv}: traceback\n{err}"
    assert len(lines) == 1, f"{argv}: expected one line on stderr, got:\n{err}"
    assert says.lower() in lines[0].lower(), f"{argv}: {lines[0]!r} does not say {says!r}"
    assert lines[0].startswith(f"python -m retrieval_lib {argv[0]}: "), lines[0]
    return lines[0]


def _corpus():
    rng = np.random.default_rng(0)

    def split(name, n):
        return RetrievalSplit(name, rng.normal(size=(n, 527)), rng.normal(size=(2 * n, 4)),
                              np.repeat(np.arange(n), 2), [f"{name}{i}.wav" for i in range(n)],
                              [f"caption {i}" for i in range(2 * n)])
    return Corpus(split("train", 4), split("val", 2), split("test", 2), rng.normal(size=(527, 4)),
                  {"source": "clotho", "text_model": "offline", "audio_frontend": "passt-10s",
                   "audio_pretrained": True})


# ---------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def no_passt(monkeypatch):
    """Fail loudly if a command builds PaSST (bad input must be refused before)."""
    from retrieval_lib import audio

    def refuse(*a, **k):
        raise AssertionError("PaSST was built before the input was checked")
    monkeypatch.setattr(audio, "build_passt", refuse)


def test_pipeline_refusals(capsys, tmp_path, no_passt):
    cache = tmp_path / "cache"
    refused(capsys, "pipeline", "--data-dir", tmp_path / "nowhere", "--cache-dir", cache,
            "--text-model", "offline", says="does not exist")
    (tmp_path / "empty").mkdir()
    refused(capsys, "pipeline", "--data-dir", tmp_path / "empty", "--cache-dir", cache,
            "--text-model", "offline", says="no audio folder")
    for device, says in (("tpu", "--device"), ("cuda:7", "--device"), ("gpu", "--device"), ("", "--device")):
        refused(capsys, "pipeline", "--data-dir", tmp_path / "empty", "--cache-dir", cache,
                "--text-model", "offline", "--device", device, says=says)
    refused(capsys, "pipeline", "--data-dir", tmp_path / "empty", "--cache-dir", cache,
            "--text-model", "no/such-model-xyz", says="--text-model")
    refused(capsys, "pipeline", "--data-dir", tmp_path / "empty", "--cache-dir", cache,
            "--text-model", "offline", "--frontend", "beats-v9", says="unknown audio front end")
    (tmp_path / "afile").write_text("x")
    refused(capsys, "pipeline", "--data-dir", tmp_path / "afile", "--cache-dir", cache,
            "--text-model", "offline", says="is a file, not a folder")


@pytest.mark.parametrize("argv", [["pipeline", "--data-dir", "x", "--cache-dir", "y", "--batch-size", "0"],
                                  ["pipeline", "--data-dir", "x"],
                                  ["search", "ix", "q", "-k", "two"],
                                  ["index", "f", "--checkpoint", "c", "--out", "o", "--kind", "annoy"],
                                  ["frobnicate"]])
def test_argument_errors_exit_2_with_usage(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "error:" in err and "Traceback" not in err


def test_pipeline_over_a_damaged_shard_names_it(capsys, tmp_path):
    from retrieval_lib.clotho import make_fake_clotho
    data = make_fake_clotho(tmp_path / "clotho", 1, seconds=(1.0,))
    work = tmp_path / "cache" / "_work" / "train"
    work.mkdir(parents=True)
    (work / "shard_00000.npz").write_bytes(b"PK\x03\x04 cut short")
    line = refused(capsys, "pipeline", "--data-dir", data, "--cache-dir", tmp_path / "cache",
                   "--random-weights", "--text-model", "offline", "--epochs", "1", "--no-progress",
                   "--device", "cpu", says="shard_00000.npz: damaged shard")
    assert "delete this file" in line


# ---------------------------------------------------------------------------------------------
# index and search
# ---------------------------------------------------------------------------------------------

def test_index_refusals(capsys, tmp_path, no_passt):
    (tmp_path / "sounds").mkdir()
    (tmp_path / "sounds" / "readme.txt").write_text("no audio here")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(os.urandom(3000))
    refused(capsys, "index", tmp_path / "nowhere", "--checkpoint", ckpt, "--out", tmp_path / "o",
            says="not a readable checkpoint")
    refused(capsys, "index", tmp_path / "sounds", "--checkpoint", tmp_path / "none.pt", "--out",
            tmp_path / "o", says="no such checkpoint")
    (tmp_path / "taken").write_text("a file")
    refused(capsys, "index", tmp_path / "sounds", "--checkpoint", ckpt, "--out", tmp_path / "taken",
            says="is not a folder")
    refused(capsys, "index", tmp_path / "sounds", "--checkpoint", tmp_path, "--out", tmp_path / "o",
            says="no such checkpoint")
    refused(capsys, "index", tmp_path / "sounds", "--checkpoint", ckpt, "--out", tmp_path / "o",
            "--device", "tpu", says="--device")


@pytest.fixture
def index_dir(tmp_path):
    emb = np.random.default_rng(0).normal(size=(5, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ix = AudioIndex.build(emb, [f"c{i}.wav" for i in range(5)],
                          provenance={"text_model": "offline", "audio_frontend": "passt-10s"})
    return ix.save(tmp_path / "ix")


def test_search_refusals(capsys, tmp_path, index_dir):
    import json

    refused(capsys, "search", tmp_path / "nowhere", "a dog", says="holds no search index")
    refused(capsys, "search", index_dir, "   ", says="empty query")
    refused(capsys, "search", index_dir, "...", says="empty after cleaning")
    refused(capsys, "search", index_dir, "a dog", "--text-model", "sentence-transformers/all-mpnet-base-v2",
            says="the index was built with text model")
    meta = json.loads((index_dir / "index.json").read_text())
    (index_dir / "index.json").write_text(json.dumps({**meta, "provenance": {"text_model": "not-installed/xyz"}}))
    refused(capsys, "search", index_dir, "a dog", says="cannot be loaded here")
    (index_dir / meta["files"]["index"]["file"]).unlink()
    refused(capsys, "search", index_dir, "a dog", says="missing")
    (index_dir / "index.json").write_text("{not json")
    refused(capsys, "search", index_dir, "a dog", says="not valid JSON")


# ---------------------------------------------------------------------------------------------
# export-cache and import-cache
# ---------------------------------------------------------------------------------------------

def test_export_refusals(capsys, tmp_path):
    refused(capsys, "export-cache", "--cache-dir", tmp_path / "none", says="no complete embedding cache")
    _corpus().save(tmp_path / "c")
    refused(capsys, "export-cache", "--cache-dir", tmp_path / "c", "--out", tmp_path / "c" / "x.tar",
            says="inside the cache folder")
    (tmp_path / "c" / "val.npz").write_bytes(b"damaged")
    refused(capsys, "export-cache", "--cache-dir", tmp_path / "c", "--out", tmp_path / "x.tar",
            says="val.npz")


def test_import_refusals(capsys, tmp_path):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    cache = tmp_path / "cache"
    refused(capsys, "import-cache", tmp_path / "none.tar", "--cache-dir", cache, says="not found")
    (tmp_path / "noise.tar").write_bytes(os.urandom(5000))
    refused(capsys, "import-cache", tmp_path / "noise.tar", "--cache-dir", cache,
            says="not a readable embedding cache archive")
    refused(capsys, "import-cache", out["path"], "--cache-dir", cache, "--sha256", "0" * 64,
            says="sha256 is")
    refused(capsys, "import-cache", out["path"], "--cache-dir", cache, "--sha256", "xyz",
            says="not a sha256")
    refused(capsys, "import-cache", out["path"], "--cache-dir", cache, "--text-model",
            "sentence-transformers/all-mpnet-base-v2", says="text_model: cache has")
    refused(capsys, "import-cache", out["path"], "--cache-dir", cache, "--frontend", "passt-30s",
            says="audio_frontend: cache has 'passt-10s', asked for 'passt-30s'")
    assert not (cache / "clotho" / "corpus.json").exists()
    with LocalServer({}, lifetime=60) as server:
        refused(capsys, "import-cache", server.url + "missing.tar", "--cache-dir", cache,
                says="cannot download the archive")
    # and the same archive, asked for what it holds, imports
    code, text, err = run(capsys, "import-cache", out["path"], "--cache-dir", cache, "--sha256",
                          "sha256:" + out["sha256"] + "\n", "--text-model", "offline",
                          "--frontend", "passt-10s")
    assert code == 0, err


# ---------------------------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_without_a_traceback(tmp_path):
    from retrieval_lib.clotho import make_fake_clotho
    data = make_fake_clotho(tmp_path / "clotho", 3, seconds=(12.0,))     # several PaSST windows
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "retrieval_lib", "pipeline", "--data-dir", str(data),
                             "--cache-dir", str(tmp_path / "cache"), "--random-weights", "--text-model",
                             "offline", "--device", "cpu", "--epochs", "1", "--shard-size", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    work = tmp_path / "cache" / "_work" / "train"
    while time.time() < deadline and not list(work.glob("shard_*.npz")):   # extraction under way
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; run the same command again to resume" in err
    assert "Traceback" not in err + out
    assert list(work.glob("shard_*.npz")), "the finished shard was kept for the resume"
