"""The book builds strictly: every chapter in _toc.yml executes top to bottom on its default
(synthetic, CPU) data, renders to HTML with its figures, and says where its data came from.

This is the slowest test (it runs every notebook once, a few minutes on 2 cores).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _chapters():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_toc_lists_every_notebook_once():
    listed = sorted(_chapters())
    on_disk = sorted(str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").glob("*.ipynb"))
    assert listed == on_disk


def test_notebooks_are_saved_without_outputs():
    import nbformat
    for name in _chapters():
        nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
        with_output = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("outputs")]
        assert not with_output, f"{name}: cells {with_output} carry outputs (the build executes them)"
        h1 = [c for c in nb.cells if c.cell_type == "markdown" and re.search(r"^# ", c.source, re.M)]
        assert len(h1) == 1, f"{name}: a chapter has exactly one H1 title"
        params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1 and "DATA" in params[0].source, f"{name}: needs one parameters cell with DATA"


@pytest.mark.slow
def test_book_builds_strictly(tmp_path):
    env = {**os.environ, "RETRIEVAL_LIB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    out = tmp_path / "out"
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out)],
                          capture_output=True, text=True, env=env, timeout=3600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    html = out / "_build" / "html"
    for name in _chapters():
        page = (html / f"{name}.html").read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" not in page, f"{name} shows a traceback"
        assert re.search(r"<img[^>]+(\.png|data:image/png)", page), f"{name} has no figure"
        assert "synthetic" in page.lower(), f"{name} does not say its data is synthetic"
    assert (html / "book" / "index.html").exists() or (html / "index.html").exists()
