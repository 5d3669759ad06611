"""The book builds strictly: every chapter in _toc.yml executes top to bottom on its default
(synthetic, CPU) data, renders to HTML with its figures, and says where its data came from.

This is the slowest test (it runs every notebook once, a few minutes on 2 cores).
"""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


PARAMETERS = ("DATA", "CLOTHO_DIR", "CACHE_DIR", "USE_DRIVE", "PASST_BATCH", "AUTOCAST", "DEVICE")


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def _chapters():
    """The executable chapters (notebooks) of the toc; the reference pages are Markdown."""
    return [f for f in _toc_files() if (ROOT / f"{f}.ipynb").exists()]


def test_toc_lists_every_notebook_and_page_once():
    listed = _toc_files()
    assert len(listed) == len(set(listed))
    on_disk = sorted(str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").glob("*.ipynb"))
    assert sorted(_chapters()) == on_disk
    for f in listed:
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f


def test_every_chapter_has_the_data_parameters():
    """Issue 8: every chapter can be pointed at real data, a cache on Drive and a device."""
    import nbformat
    for name in _chapters():
        nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
        params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, name
        for var in PARAMETERS:
            assert re.search(rf"^{var} = ", params[0].source, re.M), f"{name}: parameters cell lacks {var}"
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        if "load_corpus(" in code:
            assert "data_dirs(CLOTHO_DIR, CACHE_DIR, use_drive=USE_DRIVE)" in code, name
            assert not re.search(r"load_corpus\(DATA\)", code), f"{name}: load_corpus without the data parameters"


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
def test_book_builds_strictly():
    from _book_build import BookBuildError, build_book

    try:
        html, seconds, log = build_book()   # shared with tests/test_browser.py: one build per session
    except BookBuildError as err:
        pytest.fail(f"the book build failed:\n{err}")
    print(f"book built in {seconds:.0f} s")
    for name in _chapters():
        page = (html / f"{name}.html").read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" not in page, f"{name} shows a traceback"
        if "plt." in (ROOT / f"{name}.ipynb").read_text(encoding="utf-8"):   # chapters that draw figures
            # a figure of the notebook's own (not the Colab logo of the page header)
            assert re.search(r'<img[^>]+src="[^"]*_images/[^"]+\.(png|svg)"', page), f"{name} has no figure"
        assert "synthetic" in page.lower(), f"{name} does not say its data is synthetic"
    assert (html / "book" / "index.html").exists() or (html / "index.html").exists()
    # offline math: MathJax is served from the build, not a CDN
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists(), "run scripts/setup_book_assets.sh"
    # Sphinx adds MathJax only to pages with math (chapter 1 has none): every page that loads it
    # must load the local copy, and the chapters with equations must load it
    loading = []
    for name in _chapters():
        page = (html / f"{name}.html").read_text(encoding="utf-8")
        scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, flags=re.I)
        assert all(re.match(r"[./]*_static/mathjax/tex-chtml\.js", s) for s in scripts), \
            f"{name} loads MathJax from elsewhere: {scripts}"
        if scripts:
            loading.append(name)
    assert "book/02_metrics" in loading and len(loading) >= len(_chapters()) // 2, \
        f"MathJax is not loaded locally by the chapters with equations (only {loading})"
    assert "cdn.jsdelivr.net/npm/mathjax" not in page
