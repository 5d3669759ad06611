"""Rehearsal of the real-data path, with only the network boundary replaced.

What is real here: the library's download code (HTTP, Range resume, checksums, 7z extraction),
hear21passt's pretrained-weights loading (a random-weight PaSST-S state dict under the release's
file name in a temporary TORCH_HOME; torch.hub finds it instead of downloading), the genuine
all-mpnet-base-v2 from the hub cache laid out by scripts/setup_env.sh, the pipeline, the
embedding-cache archive, and every chapter of the book executed with DATA = "clotho".
What stands in: a LocalServer on 127.0.0.1 plays Zenodo (and the archive host), serving a tiny
Clotho-shaped release whose file names hold spaces, commas, quotes and non-ASCII letters
(tests/rehearsal_support.py). No test here reaches beyond 127.0.0.1.

The chapters: each one in _toc.yml is executed with nbclient after a cell injected right after
its `parameters` cell (DATA = "clotho", the folders, PASST_BATCH / AUTOCAST / DEVICE, and small
settings so the whole rehearsal stays within minutes). No code-cell output of a real-data run may
contain the word "synthetic", except the lines matched by SYNTHETIC_ALLOWED (documented there).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from rehearsal_support import AWKWARD_NAMES, LocalServer, install_random_passt_checkpoint, \
    make_clotho_release, make_tiny_audiocaps

from retrieval_lib import archive, clotho
from retrieval_lib.core import sha256_file
from retrieval_lib.sources import load_corpus

ROOT = Path(__file__).resolve().parents[1]
MPNET = "sentence-transformers/all-mpnet-base-v2"
SPLITS = ("development", "validation", "evaluation")

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------
# Fixtures: release, server, TORCH_HOME with the PaSST checkpoint, environment
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def release(tmp_path_factory):
    # 10 s clips (one PaSST window each); the 8th development clip lasts 11 s (5 windows: the
    # long-clip windowing path). 21 windows in all: the extraction stays within a few minutes.
    return make_clotho_release(tmp_path_factory.mktemp("zenodo"), long_every=8)


@pytest.fixture(scope="session")
def server(release):
    with LocalServer(release["files"], lifetime=1200) as s:
        yield s


@pytest.fixture(scope="session")
def real_env(tmp_path_factory, release, server):
    """TORCH_HOME with the checkpoint; Zenodo URL and checksums pointing at the local server."""
    torch_home = tmp_path_factory.mktemp("torch_home")
    checkpoint = install_random_passt_checkpoint(torch_home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        mp.setenv(clotho.URL_ENV, server.url)
        mp.setenv(clotho.CHECKSUMS_ENV, str(release["checksums_json"]))
        yield {"torch_home": torch_home, "checkpoint": checkpoint}


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, real_env, server):
    """The first real-path run: download + extraction + PaSST (pretrained path) + MPNet."""
    root = tmp_path_factory.mktemp("real")
    before = server.count()
    start = time.time()
    corpus = load_corpus("clotho", clotho_dir=root / "clotho", cache_dir=root / "cache",
                         passt_batch_size=4, autocast="fp32", device="cpu", progress=False)
    return {"root": root, "corpus": corpus, "requests": server.count() - before,
            "seconds": time.time() - start, "checkpoint": real_env["checkpoint"]}


# ---------------------------------------------------------------------------------------------
# Download: counted requests, interruption and resume, restart, interrupted extraction
# ---------------------------------------------------------------------------------------------

def test_interrupted_download_resumes_with_a_range_request(tmp_path, release, server):
    name = "clotho_audio_validation.7z"
    size = release["files"][name].stat().st_size
    server.cut[name] = size // 3
    n0 = len(server.requests)
    with pytest.raises(RuntimeError, match="interrupted after .* call again to resume"):
        clotho.download_clotho(tmp_path, splits=("validation",), base_url=server.url,
                               checksums=release["checksums"], progress=False)
    assert not (tmp_path / name).exists()                       # nothing that looks complete
    assert (tmp_path / f".{name}.part").stat().st_size == size // 3
    clotho.download_clotho(tmp_path, splits=("validation",), base_url=server.url,
                           checksums=release["checksums"], progress=False)
    new = server.requests[n0:]
    assert [n for _, n, _ in new] == ["clotho_captions_validation.csv", name, name]
    assert new[-1][2] == f"bytes={size // 3}-"                  # only the missing bytes
    assert not (tmp_path / f".{name}.part").exists()
    assert sorted(p.name for p in (tmp_path / "validation").iterdir()) == sorted(release["clips"]["validation"])
    # a third call: everything is there, zero requests
    n1 = len(server.requests)
    clotho.download_clotho(tmp_path, splits=("validation",), base_url=server.url,
                           checksums=release["checksums"], progress=False)
    assert len(server.requests) == n1


def test_server_ignoring_range_restarts_cleanly(tmp_path, release, server):
    name = "clotho_audio_evaluation.7z"
    size = release["files"][name].stat().st_size
    server.cut[name] = size // 2
    with pytest.raises(RuntimeError, match="interrupted"):
        clotho.download_file(server.url + name, tmp_path / name, release["checksums"][name], progress=False)
    server.ignore_range = True
    try:
        clotho.download_file(server.url + name, tmp_path / name, release["checksums"][name], progress=False)
    finally:
        server.ignore_range = False
    assert (tmp_path / name).read_bytes() == release["files"][name].read_bytes()


def test_wrong_checksum_deletes_the_download(tmp_path, release, server):
    name = "clotho_captions_evaluation.csv"
    with pytest.raises(ValueError, match="md5 is .* expected 0{32}; the file was deleted"):
        clotho.download_file(server.url + name, tmp_path / name, "md5:" + "0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_extraction_leaves_nothing_and_restarts(tmp_path, release, server, monkeypatch):
    import py7zr

    original = py7zr.SevenZipFile.extractall

    def extract_then_die(self, path=None, **kw):
        original(self, path=path, **kw)       # files written ...
        raise KeyboardInterrupt               # ... then the runtime is interrupted

    monkeypatch.setattr(py7zr.SevenZipFile, "extractall", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        clotho.download_clotho(tmp_path, splits=("evaluation",), base_url=server.url,
                               checksums=release["checksums"], progress=False)
    assert not (tmp_path / "evaluation").exists()
    assert not list(tmp_path.glob(".*extracting*"))
    monkeypatch.setattr(py7zr.SevenZipFile, "extractall", original)
    n0 = len(server.requests)
    clotho.download_clotho(tmp_path, splits=("evaluation",), base_url=server.url,
                           checksums=release["checksums"], progress=False)
    assert len(server.requests) == n0          # the archive was kept: no new download
    assert sorted(p.name for p in (tmp_path / "evaluation").iterdir()) == sorted(release["clips"]["evaluation"])


# ---------------------------------------------------------------------------------------------
# The real path end to end: first run, second run, archive round trip, provenance refusal
# ---------------------------------------------------------------------------------------------

def test_first_run_downloads_each_file_once_and_builds_the_corpus(real_run, release):
    corpus = real_run["corpus"]
    assert real_run["requests"] == 6                 # 3 captions CSVs + 3 audio archives
    p = corpus.provenance
    assert p["source"] == "clotho" and not corpus.is_synthetic
    assert p["audio_pretrained"] is True and p["audio_frontend"] == "passt-10s"
    # the weights are identified by the file actually loaded: the random checkpoint under the
    # release's name, not the release (nothing calls it AudioSet-trained)
    assert p["audio_weights"] == "sha256:" + sha256_file(real_run["checkpoint"])
    # a 16-clip mirror checked against a replaced checksum table is not called Clotho v2.1
    assert p["comparable_with_paper"] is False
    assert "16 of 5,929 clips" in p["dataset"] and "not comparable" in p["dataset"]
    assert "127.0.0.1" in p["dataset"] and "Zenodo record" not in p["dataset"]
    assert p["text_model"] == MPNET and corpus.dim == 768
    assert corpus.train.clip_names == release["clips"]["development"]
    assert set(corpus.train.clip_names) <= set(AWKWARD_NAMES)
    assert (corpus.train.n_clips, corpus.val.n_clips, corpus.test.n_clips) == (8, 4, 4)
    assert np.isfinite(corpus.train.logits).all() and p["skipped"] == {"train": [], "val": [], "test": []}
    print(f"\nrehearsal: first real run {real_run['seconds']:.0f} s, {real_run['requests']} requests")


def test_second_run_makes_no_request(real_run, server):
    before = server.count()
    again = load_corpus("clotho", clotho_dir=real_run["root"] / "clotho",
                        cache_dir=real_run["root"] / "cache", progress=False)
    assert server.count() == before
    np.testing.assert_array_equal(again.test.logits, real_run["corpus"].test.logits)
    # the raw copy alone is enough too: a fresh download_clotho call downloads nothing
    clotho.download_clotho(real_run["root"] / "clotho", progress=False)
    assert server.count() == before


def test_pretrained_path_loaded_the_checkpoint_from_torch_home(real_env):
    """build_passt(pretrained=True) equals the random net whose state dict is in TORCH_HOME."""
    import torch

    from retrieval_lib.audio import build_passt

    model = build_passt("10s", pretrained=True, device="cpu")
    saved = torch.load(real_env["torch_home"] / "hub" / "checkpoints" /
                       "passt-s-f128-p16-s10-ap.476-swa.pt", weights_only=True)
    name = "blocks.0.attn.qkv.weight"
    assert torch.equal(model.net.state_dict()[name], saved[name])


def test_archive_round_trip_over_http(real_run, tmp_path, server):
    out = archive.export_cache(real_run["root"] / "cache", tmp_path / "export")
    server.files[out["path"].name] = out["path"]
    url = server.url + out["path"].name
    before = server.count()
    loaded = load_corpus("clotho", cache_dir=tmp_path / "elsewhere", archive=url,
                         archive_sha256=out["sha256"], progress=False)
    assert server.count() - before == 1
    original = real_run["corpus"]
    assert loaded.provenance == original.provenance
    for a, b in zip(loaded.splits(), original.splits()):
        np.testing.assert_array_equal(a.logits, b.logits)
        np.testing.assert_array_equal(a.text_emb, b.text_emb)
        assert a.clip_names == b.clip_names and a.captions == b.captions
    again = load_corpus("clotho", cache_dir=tmp_path / "elsewhere", archive=url,
                        archive_sha256=out["sha256"], progress=False)
    assert server.count() - before == 1               # cached download, cache already imported
    np.testing.assert_array_equal(again.tag_emb, original.tag_emb)


def test_provenance_refusal_names_both(real_run, tmp_path, server):
    out = archive.export_cache(real_run["root"] / "cache", tmp_path / "x.tar")
    with pytest.raises(ValueError, match=r"text_model: cache has 'sentence-transformers/all-mpnet-base-v2', "
                                         r"asked for 'sentence-transformers/all-MiniLM-L6-v2'"):
        load_corpus("clotho", cache_dir=tmp_path / "c", archive=out["path"], text_model="offline")
    with pytest.raises(ValueError, match="audio_frontend: cache has 'passt-10s', asked for 'passt-30s'"):
        load_corpus("clotho", cache_dir=real_run["root"] / "cache", passt_variant="30s")
    with pytest.raises(ValueError, match="audio_pretrained: cache has True, asked for False"):
        load_corpus("clotho", cache_dir=real_run["root"] / "cache", passt_pretrained=False)
    # the archive carries what the data and weights were
    manifest = archive.read_manifest(out["path"])["provenance"]
    assert manifest["comparable_with_paper"] is False
    assert manifest["audio_weights"] == "sha256:" + sha256_file(real_run["checkpoint"])


# ---------------------------------------------------------------------------------------------
# Every chapter of the book, with DATA = "clotho"
# ---------------------------------------------------------------------------------------------

# Small settings so that each chapter runs in well under a minute on the tiny release (a name a
# chapter does not define is harmless). Everything else keeps the chapter's own default.
SMALL = {
    "book/04_audio_encoder": {"PRETRAINED": True},          # the TORCH_HOME checkpoint path
    "book/06_training": {"SEEDS": [0], "AC_EPOCHS": 2, "AC_N_TRAIN": 50, "EXERCISE_EPOCHS": 2},
    "book/07_ablations": {"SEEDS": [0], "LAMBDAS": [0.0, 0.8, 1.0], "MARGINS": [0.4, 1.0]},
    "book/08_model_selection": {"SEEDS": [0]},
    "book/09_since_2022": {"SEEDS": [0]},
    "book/11_search_at_scale": {"N_CLIPS": 3000, "N_QUERIES": 20, "N_SINGLE": 5, "NPROBES": [4, 8]},
}

# Lines of a real-data run's output that may say "synthetic", per chapter, and why:
# chapter 11 grows the real collection with generated mixtures to time search at scale; that
# collection is labelled synthetic on purpose (search.GROWN_NOTE: "SYNTHETIC grown collection:
# ..."), whatever DATA is. Only lines naming the grown collection are allowed; any other line of
# chapter 11 that says "synthetic" fails like in every other chapter.
SYNTHETIC_ALLOWED = {
    "book/11_search_at_scale": [re.compile(r"grown collection", re.I)],
}


def _toc_chapters():
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f for f in files if (ROOT / f"{f}.ipynb").exists()]


def _output_texts(cell):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            yield out.get("text", "")
        elif out.get("output_type") == "error":
            yield "\n".join(out.get("traceback", []))
        else:
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):
                    yield value if isinstance(value, str) else "".join(value)


def synthetic_mentions(nb, chapter):
    """(cell index, line) of every code-cell output line that says "synthetic" and is not
    covered by SYNTHETIC_ALLOWED."""
    allowed = SYNTHETIC_ALLOWED.get(chapter, [])
    hits = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for text in _output_texts(cell):
            for line in text.splitlines():
                if "synthetic" in line.lower() and not any(p.search(line) for p in allowed):
                    hits.append((i, line.strip()[:200]))
    return hits


def test_synthetic_scan_finds_unlabelled_mentions():
    """The scan itself: a real-data output saying "synthetic" is caught, an allowed line is not."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok\nSynthetic data: x\n"),
                    nbformat.v4.new_output("display_data", data={"text/markdown": "**synthetic**"})]
    nb.cells = [cell]
    assert [line for _, line in synthetic_mentions(nb, "book/01")] == ["Synthetic data: x", "**synthetic**"]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="SYNTHETIC grown collection: x\n")]
    assert synthetic_mentions(nb, "book/11_search_at_scale") == []
    assert synthetic_mentions(nb, "book/10_search") != []


def inject_overrides(nb, values: dict) -> int:
    """Insert a cell assigning `values` right after the `parameters` cell; returns its index."""
    import nbformat
    index = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(index) == 1, "a chapter needs exactly one cell tagged 'parameters'"
    source = "# injected by tests/test_rehearsal.py\n" + "\n".join(f"{k} = {v!r}" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index[0] + 1, cell)
    return index[0] + 1


@pytest.fixture(scope="session")
def chapter_env(real_run):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRIEVAL_LIB_CLOTHO", str(real_run["root"] / "clotho"))
        mp.setenv("RETRIEVAL_LIB_CACHE", str(real_run["root"] / "cache"))
        mp.setenv("MPLBACKEND", "agg")
        mp.setenv("OMP_NUM_THREADS", "2")
        yield real_run


def run_chapter(chapter, root, server, tmp_path, **extra):
    """Execute a chapter with DATA = "clotho" (+ SMALL and extra overrides); returns the notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
    values = {"DATA": "clotho", "CLOTHO_DIR": str(root / "clotho"), "CACHE_DIR": str(root / "cache"),
              "USE_DRIVE": False, "PASST_BATCH": 4, "AUTOCAST": None, "DEVICE": "cpu",
              "AUDIOCAPS_DIR": None, **SMALL.get(chapter, {}), **extra}
    inject_overrides(nb, values)
    before = server.count()
    start = time.time()
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "book")}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / f"{Path(chapter).name}.executed.ipynb")
    print(f"\nrehearsal: {chapter} executed in {time.time() - start:.0f} s")
    assert server.count() == before, f"{chapter} made HTTP requests: the cache should serve it"
    hits = synthetic_mentions(nb, chapter)
    assert not hits, f"{chapter}: real-data outputs mention 'synthetic': {hits[:5]}"
    return nb


@pytest.mark.parametrize("chapter", _toc_chapters())
def test_chapter_runs_on_real_data(chapter, chapter_env, server, tmp_path):
    nb = run_chapter(chapter, chapter_env["root"], server, tmp_path)
    text = "\n".join(t for c in nb.cells if c.cell_type == "code" for t in _output_texts(c))
    if "show_data_note(" in "\n".join(c.source for c in nb.cells if c.cell_type == "code"):
        # the page says what it ran on: a 16-clip mirror, not comparable, and which weights
        assert "16 of 5,929 clips" in text and "not comparable with the paper" in text, chapter
        assert "can be compared with the paper" not in text, chapter
        assert sha256_file(chapter_env["checkpoint"])[:12] in text, chapter


def test_chapter_6_with_real_audiocaps(chapter_env, server, tmp_path):
    """AUDIOCAPS_DIR set: chapter 6 pretrains the -AC system on the user's AudioCaps folder
    (retrieval_lib.audiocaps, pretrained PaSST from TORCH_HOME, MPNet) and reports it as real."""
    ac = make_tiny_audiocaps(tmp_path / "audiocaps")
    # two seeds: the chapter's "Ensemble (2 models)" row pairs -AC models of different seeds
    nb = run_chapter("book/06_training", chapter_env["root"], server, tmp_path, AUDIOCAPS_DIR=str(ac),
                     SEEDS=[0, 1])
    text = "\n".join(t for c in nb.cells if c.cell_type == "code" for t in _output_texts(c))
    assert "AudioCaps (real, from" in text
    assert "-AC" in text
