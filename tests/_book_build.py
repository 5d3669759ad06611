"""One build of the book per test session, shared by tests/test_book.py and tests/test_browser.py,
and the rules both tests apply to the words of a page.

`build_book()` runs `jupyter-book build -W --keep-going` once (warnings are errors, but the build
goes on to the end so every warning is reported), into a temporary folder, with a fresh data
cache, offline, and returns a `BookBuild` (html folder, seconds, log, return code, the warnings,
the execution time of every notebook). `built_html()` returns the html folder to check: $BOOK_HTML
if set (an existing build, for quick local runs of the browser test; the strict build test always
builds), else the shared build's, as long as it produced HTML (a build that only warned still has
pages to read).

`history_words(text)`: the phrases that narrate this project's history instead of speaking about
the paper and the data ("an earlier version", "the team", "we now", ...), one list for the
notebook sources (test_book) and the rendered pages (test_browser).
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class BookBuildError(AssertionError):
    pass


# Phrases about the project's own history. Each is specific enough not to catch ordinary prose
# about the paper ("the paper's code, an earlier version of ..." would be caught, and should be
# reworded as what the code does).
HISTORY_PATTERNS = [
    r"\ban? (earlier|previous|older|former|first) (version|draft|edition|revision)s?\b",
    r"\bearlier versions? of (this|the) (book|chapter|page|figure|library|table)\b",
    r"\bthe team\b", r"\bthe team's\b", r"\bour team\b",
    r"\bwe now\b", r"\bnow uses\b", r"\bnow use\b", r"\bis now (computed|drawn|shown|done)\b",
    r"\bthe goal we set\b", r"\bgoal we set\b",
    r"\bthis session\b", r"\bthis session's\b",
    r"\b(before|after) (this|the) (change|rewrite|refactor(ing)?|session)\b",
    r"\bused to (be|say|print|show|use)\b",
    r"\bwe (changed|fixed|rewrote|renamed|replaced|removed)\b",
    r"\bhas been (fixed|rewritten|renamed|reworked)\b",
    r"\bwas (renamed|rewritten|reworked)\b",
    r"\bno longer (prints|shows|uses|says)\b",
    r"\bthe old (version|code|chapter|page|figure|library)\b",
    r"\bin the (last|previous) (commit|release|round)\b",
]
_HISTORY = re.compile("|".join(f"(?:{p})" for p in HISTORY_PATTERNS), re.I)


_QUOTED = re.compile(r'"[^"]{0,400}"|“[^”]{0,400}”')


def history_words(text: str) -> list[str]:
    """Every phrase of `text` that narrates the project's history (empty when none). Quoted
    passages ("..."), the paper's own words, are not the book's narration and are skipped."""
    return [m.group(0) for m in _HISTORY.finditer(_QUOTED.sub(" ", text))]


# A warning line of a Sphinx / Jupyter Book log: "path:line: WARNING: ..." or "WARNING: ..."
_WARNING = re.compile(r"(WARNING|ERROR|CRITICAL):")
# not Sphinx's: the kernel's notice on every notebook (ZMQ transport), printed by ipykernel
_NOT_A_BUILD_WARNING = re.compile(r"\[IPKernelApp\] WARNING|Kernel is running over TCP")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build_warnings(log: str) -> list[str]:
    """The build's warnings and errors, one line each (ANSI colours removed)."""
    lines = [_ANSI.sub("", line).strip() for line in log.splitlines()]
    return [line for line in lines if _WARNING.search(line) and not _NOT_A_BUILD_WARNING.search(line)]


_EXECUTING = re.compile(r"(?P<path>\S+\.ipynb): Executing notebook")
_EXECUTED = re.compile(r"(?P<path>\S+\.ipynb): Executed notebook in (?P<s>[0-9.]+) seconds")


def execution_times(log: str) -> dict[str, float]:
    """{chapter file name: seconds} of every notebook the build executed (from myst-nb's log)."""
    times = {}
    for line in (_ANSI.sub("", raw) for raw in log.splitlines()):
        m = _EXECUTED.search(line)
        if m:
            times[Path(m.group("path")).stem] = float(m.group("s"))
    return times


@dataclass
class BookBuild:
    html: Path
    seconds: float
    log: str
    returncode: int
    warnings: list
    times: dict


@functools.lru_cache(maxsize=1)
def build_book() -> BookBuild:
    """A fresh strict build of the whole book (-W --keep-going); raises only if no HTML came out."""
    out = Path(tempfile.mkdtemp(prefix="book_build_"))
    env = {**os.environ, "RETRIEVAL_LIB_CACHE": str(out / "cache"), "HF_HUB_OFFLINE": "1",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    env.pop("MPLBACKEND", None)   # MPLBACKEND=Agg would silence the notebooks' inline figures
    jb = Path(sys.executable).with_name("jupyter-book")
    start = time.perf_counter()
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "--keep-going"],
                          capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    (out / "build.log").write_text(log, encoding="utf-8")
    html = out / "_build" / "html"
    if not (html / "index.html").exists() and not any(html.glob("book/*.html")):
        raise BookBuildError(log[-6000:])
    return BookBuild(html, seconds, log, proc.returncode, build_warnings(log), execution_times(log))


def built_html(prefer_existing: bool = True) -> Path:
    """The HTML folder to check: $BOOK_HTML if set (and prefer_existing), else the shared build's."""
    given = os.environ.get("BOOK_HTML")
    if prefer_existing and given:
        return Path(given)
    return build_book().html
