"""The built book, read in a real browser, offline.

Headless Chromium (Debian's `chromium`, driven by playwright; scripts/setup_book_assets.sh
installs it) opens every page of the built HTML from a local server on 127.0.0.1, with every
other host blocked, as a reader without internet would, at 1280 px wide (and takes a second
screenshot at 390 px, a phone). What a page must not have, by category:

* offline: raw TeX visible in its text (MathJax did not run) or a MathJax TeX error; an image
  that does not load (or any failed request to the book itself); a JavaScript error;
* structure: a chapter whose section headings, and whose "On this page" contents, lack
  "Summary" or "Exercises"; a heading (or a rubric made of one) inside an admonition or a
  dropdown;
* width: a code block (cell input or output) or a displayed equation wider than its column
  (measured: scrollWidth > clientWidth of the <pre>, the typeset equation's box against its
  parent's), with every collapsed cell opened first;
* numbering: a displayed equation without its number (a MathJax \\tag label, or Sphinx's);
* links: a "mailto:" link that is not a real e-mail address (docutils turns "mAP@10" into one);
* words: words about the project's history (the list of tests/_book_build.py) in the page's text;
* tables: a header row that is empty but for its first cell (pandas' index-name row), a count
  printed as a float ("17778.0").

Screenshots of every page at both widths go to $BOOK_SCREENSHOTS (default _build/screenshots).
Each category is shown to catch a deliberately broken copy of a chapter
(`test_the_check_catches_*`). BOOK_PAGES (comma-separated globs of page paths, e.g.
"index.html,book/0[1-5]*") restricts the pages checked, for quick local runs on an existing
build (BOOK_HTML).
"""
from __future__ import annotations

import fnmatch
import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from _book_build import history_words

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
WIDE, PHONE = 1280, 390
CATEGORIES = ("offline", "structure", "width", "numbering", "links", "words", "tables")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup_book_assets.sh installs it)"),
]

# TeX that MathJax would have typeset: delimiters and the commands the book uses
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(frac|vec|ell|text|mathrm|mathbb|sum|lambda|eta|sqrt|lfloor|big|tag)\b")
REAL_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")

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

# Everything the layout checks measure, in one pass (after opening every collapsed block).
LAYOUT_JS = """async () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden, .toggle-details__container').forEach(e => {
    e.classList.remove('toggle-hidden'); });
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const main = document.querySelector('main') || document.body;
  const clean = t => (t || '').replace(/[#¶]\\s*$/, '').replace(/^\\s*[0-9.]+\\s+/, '').trim();
  const out = {h2: [], toc: [], nested: [], wideCode: [], wideMath: [], untagged: [], mailto: [],
               emptyHeader: [], floatCounts: []};
  main.querySelectorAll('h2').forEach(h => out.h2.push(clean(h.innerText)));
  document.querySelectorAll('nav.page-toc a, .bd-toc-nav a, #pst-page-navigation-heading-2 ~ * a')
      .forEach(a => out.toc.push(clean(a.innerText)));
  main.querySelectorAll('.admonition, details, .sd-dropdown, aside.topic').forEach(box => {
    box.querySelectorAll('h1, h2, h3, h4, h5, h6, p.rubric').forEach(h =>
      out.nested.push(clean(h.innerText).slice(0, 60)));
  });
  const pres = new Set(main.querySelectorAll('pre'));
  pres.forEach(pre => {
    if (pre.clientWidth > 0 && pre.scrollWidth > pre.clientWidth + 2) {
      const where = pre.closest('.cell_output, .output') ? 'output' : 'code';
      const line = (pre.innerText.split('\\n').reduce((a, b) => b.length > a.length ? b : a, ''));
      out.wideCode.push({where, over: pre.scrollWidth - pre.clientWidth, line: line.slice(0, 70)});
    }
  });
  main.querySelectorAll('mjx-container[display="true"]').forEach(c => {
    const parent = c.parentElement;
    const box = parent.getBoundingClientRect();
    let right = 0, left = 1e9;
    c.querySelectorAll('mjx-math, mjx-mtable, mjx-labels').forEach(e => {
      const r = e.getBoundingClientRect();
      if (r.width > 0) { right = Math.max(right, r.right); left = Math.min(left, r.left); }
    });
    const text = (c.getAttribute('aria-label') || c.innerText || '').slice(0, 60);
    const tooWide = c.scrollWidth > c.clientWidth + 2 || parent.scrollWidth > parent.clientWidth + 2
                    || right > box.right + 2 || left < box.left - 2;
    if (tooWide) out.wideMath.push(text);
    const tagged = c.querySelector('mjx-labels, mjx-mlabeledtr') ||
                   (parent.querySelector && parent.querySelector('.eqno'));
    if (!tagged) out.untagged.push(text);
  });
  main.querySelectorAll('a[href^="mailto:"]').forEach(a =>
    out.mailto.push({href: a.getAttribute('href'), text: a.innerText}));
  main.querySelectorAll('table').forEach(t => {
    t.querySelectorAll('thead tr').forEach(tr => {
      const cells = Array.from(tr.children);
      if (cells.length > 1 && cells[0].innerText.trim() !== '' &&
          cells.slice(1).every(c => c.innerText.trim() === ''))
        out.emptyHeader.push(cells[0].innerText.trim().slice(0, 40));
    });
    t.querySelectorAll('td').forEach(td => {
      const v = td.innerText.trim();
      if (/^-?[0-9]{4,}[.]0+$/.test(v)) out.floatCounts.push(v);
    });
  });
  return out;
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


def is_chapter(rel: str) -> bool:
    return re.match(r"(.*/)?\d\d_[^/]+\.html$", rel) is not None


def layout_problems(layout: dict, chapter: bool) -> list[tuple[str, str]]:
    """(category, message) of every layout problem in LAYOUT_JS's measurements."""
    p = []
    if chapter:
        for needed in ("Summary", "Exercises"):
            if needed not in layout["h2"]:
                p.append(("structure", f'no "{needed}" section heading (h2: {layout["h2"]})'))
            if needed not in layout["toc"]:
                p.append(("structure", f'"{needed}" missing from the page contents ("On this page")'))
    for heading in layout["nested"]:
        p.append(("structure", f"heading inside an admonition or dropdown: {heading!r}"))
    for wide in layout["wideCode"]:
        p.append(("width", f"{wide['where']} wider than its column by {wide['over']} px: {wide['line']!r}"))
    for text in layout["wideMath"]:
        p.append(("width", f"displayed equation wider than its column: {text!r}"))
    for text in layout["untagged"]:
        p.append(("numbering", f"displayed equation without a number (\\tag): {text!r}"))
    for link in layout["mailto"]:
        if not REAL_EMAIL.match(link["href"].removeprefix("mailto:")):
            p.append(("links", f"mailto link that is not an e-mail address: {link['text']!r} -> {link['href']}"))
    for row in layout["emptyHeader"]:
        p.append(("tables", f"table header row empty but for {row!r} (an index name: reset or name the index)"))
    for value in layout["floatCounts"][:5]:
        p.append(("tables", f"a count printed as a float: {value}"))
    return p


def check_page(browser, url: str, screenshot: Path | None = None, chapter: bool | None = None) -> list[str]:
    """Every problem a reader would meet on one page, as "category: message" (empty when fine)."""
    problems: list[tuple[str, str]] = []
    context = browser.new_context(viewport={"width": WIDE, "height": 900})
    origin = "/".join(url.split("/", 3)[:3])
    # offline: anything not served by the book itself is refused, as without internet
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin)
                  else route.abort())
    page = context.new_page()
    page.on("pageerror", lambda err: problems.append(("offline", f"JavaScript error: {err}")))
    page.on("console", lambda msg: problems.append(("offline", f"console error: {msg.text}"))
            if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(("offline", f"HTTP {r.status}: {r.url}"))
            if r.status >= 400 and r.url.startswith(origin) else None)
    if chapter is None:
        chapter = is_chapter(url)
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        math = page.evaluate(MATHJAX_DONE_JS)
        if math["errors"]:
            problems.append(("offline", f"MathJax reports {math['errors']} TeX error(s)"))
        problems += [("offline", f"image did not load: {src}") for src in page.evaluate(IMAGES_JS)]
        prose = page.evaluate(VISIBLE_PROSE_JS)
        for m in list(RAW_TEX.finditer(prose))[:5]:
            context_text = prose[max(0, m.start() - 40):m.end() + 40].replace("\n", " ")
            problems.append(("offline", f"raw TeX visible: ...{context_text}..."))
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot.with_name(screenshot.stem + f"-{WIDE}.png")), full_page=True)
        problems += layout_problems(page.evaluate(LAYOUT_JS), chapter)
        text = page.evaluate("() => (document.querySelector('main') || document.body).innerText")
        for words in sorted(set(history_words(text))):
            problems.append(("words", f"words about the project's history: {words!r}"))
        if screenshot is not None:     # the page as a phone shows it: reloaded, cells collapsed
            page.set_viewport_size({"width": PHONE, "height": 844})
            page.reload(wait_until="load", timeout=60_000)
            page.wait_for_load_state("networkidle", timeout=30_000)
            page.evaluate(MATHJAX_DONE_JS)
            page.evaluate(IMAGES_JS)
            page.screenshot(path=str(screenshot.with_name(screenshot.stem + f"-{PHONE}.png")), full_page=True)
    finally:
        context.close()
    return [f"{category}: {message}" for category, message in problems]


def _pages(html: Path) -> list[Path]:
    """Every page of the build, except redirect stubs (a meta refresh to the real page), and only
    those matching $BOOK_PAGES when it is set."""
    patterns = [p.strip() for p in os.environ.get("BOOK_PAGES", "").split(",") if p.strip()]
    pages = sorted(p for p in html.rglob("*.html")
                   if not {"_static", "_sources", "_images"} & set(p.relative_to(html).parts)
                   and not p.name.startswith("_broken")
                   and not re.search(r'http-equiv="refresh"', p.read_text(encoding="utf-8")[:2000], re.I))
    if patterns:
        pages = [p for p in pages if any(fnmatch.fnmatch(p.relative_to(html).as_posix(), g) for g in patterns)]
    return pages


@pytest.fixture(scope="module")
def reports(site, browser):
    """{page: [problem, ...]} for every page, checked once for all the tests below."""
    html, base = site
    pages = _pages(html)
    assert pages, "the build has no pages (or BOOK_PAGES matches none)"
    out = {}
    for p in pages:
        rel = p.relative_to(html).as_posix()
        shot = SCREENSHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")
        out[rel] = check_page(browser, f"{base}/{rel}", shot, chapter=is_chapter(rel))
    return out


def _report(reports: dict, category: str) -> tuple[int, str]:
    failing = {rel: [p for p in probs if p.startswith(category + ":")] for rel, probs in reports.items()}
    failing = {rel: probs for rel, probs in failing.items() if probs}
    text = "\n".join(f"{rel}:\n  " + "\n  ".join(probs[:12]) for rel, probs in failing.items())
    return len(failing), text


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_page(reports, category):
    n, text = _report(reports, category)
    assert n == 0, f"{n} of {len(reports)} pages fail the '{category}' checks " \
                   f"(screenshots in {SCREENSHOTS}):\n{text}"


def test_chapters_were_checked(reports):
    if not os.environ.get("BOOK_PAGES"):
        assert sum(is_chapter(rel) for rel in reports) >= 10, sorted(reports)


# ---------------------------------------------------------------------------------------------
# Each check catches a deliberately broken copy of a chapter
# ---------------------------------------------------------------------------------------------

def _chapter_page(html: Path, prefix: str = "02_") -> Path:
    return next(p for p in sorted(html.rglob(f"{prefix}*.html")) if "_sources" not in p.parts)


def _broken(site, browser, edit, prefix: str = "02_") -> list[str]:
    """The problems of a copy of a chapter page changed by edit(html text) -> html text."""
    html, base = site
    chapter = _chapter_page(html, prefix)
    text = chapter.read_text(encoding="utf-8")
    broken_text = edit(text)
    assert broken_text != text, "the edit changed nothing: the test would prove nothing"
    broken = chapter.with_name(f"_broken_{prefix}check.html")
    broken.write_text(broken_text, encoding="utf-8")
    try:
        return check_page(browser, f"{base}/{broken.relative_to(html).as_posix()}", chapter=True)
    finally:
        broken.unlink()


def _insert(snippet: str):
    """An edit that puts `snippet` at the start of the page's article."""
    def edit(text):
        marker = re.search(r'<article[^>]*class="[^"]*bd-article[^"]*"[^>]*>', text) or re.search(r"<main[^>]*>", text)
        assert marker, "no <article class='bd-article'> or <main> to insert into"
        return text[:marker.end()] + snippet + text[marker.end():]
    return edit


def test_the_check_catches_broken_math(site, browser):
    """A chapter whose MathJax cannot load shows raw TeX: the check must say so."""
    def edit(text):
        broken_text, n = re.subn(r'<script[^>]*src="[^"]*mathjax[^"]*"[^>]*>\s*</script>', "", text)
        assert n >= 1, "the page has no MathJax script to remove"
        return broken_text
    problems = _broken(site, browser, edit)
    assert any(p.startswith("offline: raw TeX visible") for p in problems), problems


def test_the_check_catches_a_missing_exercises_heading(site, browser):
    def edit(text):
        return re.sub(r"<h2>(.*?Exercises.*?)</h2>", r"<p>\1</p>", text, flags=re.S)
    problems = _broken(site, browser, edit)
    assert any(p.startswith('structure: no "Exercises" section heading') for p in problems), problems


def test_the_check_catches_a_heading_inside_an_admonition(site, browser):
    box = ('<div class="admonition warning"><p class="admonition-title">Warning</p><p>Unclosed.</p>'
           '<p class="rubric">Summary inside the box</p></div>')
    problems = _broken(site, browser, _insert(box))
    assert any(p.startswith("structure: heading inside an admonition") and "Summary inside" in p
               for p in problems), problems


def test_the_check_catches_a_code_cell_wider_than_the_column(site, browser):
    code = '<div class="highlight"><pre>' + "result = compute(" + ", ".join(f"arg{i}" for i in range(60)) + ")</pre></div>"
    problems = _broken(site, browser, _insert(code))
    assert any(p.startswith("width: code wider than its column") and "arg1" in p for p in problems), problems


def test_the_check_catches_a_wide_unnumbered_equation(site, browser):
    terms = " + ".join(f"x_{{{i}}}^2" for i in range(80))
    math = f'<div class="math notranslate nohighlight">\\[ S = {terms} \\]</div>'
    problems = _broken(site, browser, _insert(math))
    assert any(p.startswith("width: displayed equation wider") for p in problems), problems
    assert any(p.startswith("numbering: displayed equation without a number") for p in problems), problems


def test_the_check_catches_a_mailto_link_from_an_at_sign(site, browser):
    links = ('<p><a class="reference external" href="mailto:mAP@10">mAP@10</a> and '
             '<a href="mailto:thomas.pellegrini@irit.fr">the author</a></p>')
    problems = [p for p in _broken(site, browser, _insert(links)) if p.startswith("links:")]
    assert len(problems) == 1 and "mAP@10" in problems[0], problems     # the real address is fine


def test_the_check_catches_history_words(site, browser):
    problems = _broken(site, browser, _insert("<p>An earlier version of this chapter said so.</p>"))
    assert any(p.startswith("words:") and "earlier version" in p for p in problems), problems


def test_the_check_catches_unreadable_tables(site, browser):
    table = ('<table class="dataframe"><thead><tr><th></th><th>clips</th></tr><tr><th>split</th><th></th></tr>'
             '</thead><tbody><tr><th>train</th><td>17778.0</td></tr></tbody></table>')
    problems = _broken(site, browser, _insert(table))
    assert any(p.startswith("tables: table header row empty but for 'split'") for p in problems), problems
    assert any(p.startswith("tables: a count printed as a float: 17778.0") for p in problems), problems
