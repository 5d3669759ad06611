"""The built book, read in a real browser, offline.

Headless Chromium (Debian's `chromium`, driven by playwright; scripts/setup_book_assets.sh
installs it) opens every page of the built HTML from a local server on 127.0.0.1, with every
other host blocked, as a reader without internet would. A page fails if

* raw TeX is visible in its rendered text (\\( ... \\), $$, \\frac, ...: MathJax did not run) or
  MathJax reports a TeX error,
* an image does not load (or any request to the book itself fails),
* it logs a JavaScript error (an uncaught exception or a console error).

A screenshot of every page is saved for review in $BOOK_SCREENSHOTS (default:
_build/screenshots). `test_the_check_catches_broken_math` proves the check is not vacuous: a copy
of a chapter without its MathJax script must fail it.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup_book_assets.sh installs it)"),
]

# TeX that MathJax would have typeset: delimiters and the commands the book uses
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(frac|vec|ell|text|mathrm|mathbb|sum|lambda|eta|sqrt|lfloor|big)\b")

# The text a reader sees, without code (code may legitimately contain backslashes and $).
VISIBLE_PROSE_JS = """() => {
  const body = document.querySelector('main') || document.body;
  const copy = body.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .cell_input, textarea')
      .forEach(e => e.remove());
  return copy.innerText;
}"""

IMAGES_JS = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.complete ? null :
      new Promise(resolve => { img.onload = img.onerror = resolve; setTimeout(resolve, 5000); })));
  return images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'));
}"""

MATHJAX_DONE_JS = """async () => {
  if (!window.MathJax) return {present: false, errors: 0};
  if (MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  return {present: true, errors: document.querySelectorAll('mjx-merror').length,
          typeset: document.querySelectorAll('mjx-container').length};
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """(html folder, base URL) of the built book served on 127.0.0.1 for this module."""
    from _book_build import BookBuildError, built_html

    try:
        html = built_html()
    except BookBuildError as err:
        pytest.fail(f"the book build failed:\n{err}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield html, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def check_page(browser, url: str, screenshot: Path | None = None) -> list[str]:
    """Every problem a reader would meet on one page (empty when the page is fine)."""
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    base = url.split("/", 3)[:3]
    origin = "/".join(base)
    # offline: anything not served by the book itself is refused, as without internet
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin)
                  else route.abort())
    page = context.new_page()
    page.on("pageerror", lambda err: problems.append(f"JavaScript error: {err}"))
    page.on("console", lambda msg: problems.append(f"console error: {msg.text}") if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 and r.url.startswith(origin) else None)
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        math = page.evaluate(MATHJAX_DONE_JS)
        if math["errors"]:
            problems.append(f"MathJax reports {math['errors']} TeX error(s)")
        broken = page.evaluate(IMAGES_JS)
        problems += [f"image did not load: {src}" for src in broken]
        prose = page.evaluate(VISIBLE_PROSE_JS)
        for m in list(RAW_TEX.finditer(prose))[:5]:
            context_text = prose[max(0, m.start() - 40):m.end() + 40].replace("\n", " ")
            problems.append(f"raw TeX visible: ...{context_text}...")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    return problems


def _pages(html: Path) -> list[Path]:
    """Every page of the build, except redirect stubs (a meta refresh to the real page)."""
    return sorted(p for p in html.rglob("*.html")
                  if not {"_static", "_sources", "_images"} & set(p.relative_to(html).parts)
                  and not re.search(r'http-equiv="refresh"', p.read_text(encoding="utf-8")[:2000], re.I))


def test_every_page_reads_offline(site, browser):
    html, base = site
    pages = _pages(html)
    assert any(p.name.startswith("01_") for p in pages), "the build has no chapter pages"
    failures = {}
    for p in pages:
        rel = p.relative_to(html).as_posix()
        shot = SCREENSHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")
        problems = check_page(browser, f"{base}/{rel}", shot)
        if problems:
            failures[rel] = problems
    report = "\n".join(f"{rel}:\n  " + "\n  ".join(probs) for rel, probs in failures.items())
    assert not failures, f"{len(failures)} of {len(pages)} pages fail in the browser " \
                         f"(screenshots in {SCREENSHOTS}):\n{report}"


def test_the_check_catches_broken_math(site, browser):
    """A chapter whose MathJax cannot load shows raw TeX: the check must say so."""
    html, base = site
    chapter = next(p for p in _pages(html) if p.name.startswith("02_"))   # the metrics chapter: many formulas
    text = chapter.read_text(encoding="utf-8")
    broken_text, n = re.subn(r'<script[^>]*src="[^"]*mathjax[^"]*"[^>]*>\s*</script>', "", text)
    assert n >= 1, "the page has no MathJax script to remove"
    broken = chapter.with_name("_broken_math_check.html")
    broken.write_text(broken_text, encoding="utf-8")
    try:
        problems = check_page(browser, f"{base}/{broken.relative_to(html).as_posix()}")
    finally:
        broken.unlink()
    assert any(p.startswith("raw TeX visible") for p in problems), problems
