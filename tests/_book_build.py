"""One build of the book per test session, shared by tests/test_book.py and tests/test_browser.py.

`built_html()` runs `jupyter-book build` once (into a temporary folder, with a fresh data cache,
offline) and returns the path of its `_build/html`; a failed build raises with the log's tail.
Set BOOK_HTML to the `_build/html` of an existing build to check that one instead (quick local
runs of the browser test; the strict build test always builds).
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class BookBuildError(AssertionError):
    pass


@functools.lru_cache(maxsize=1)
def build_book() -> tuple[Path, float, str]:
    """(html folder, seconds, log) of a fresh strict build of the whole book."""
    out = Path(tempfile.mkdtemp(prefix="book_build_"))
    env = {**os.environ, "RETRIEVAL_LIB_CACHE": str(out / "cache"), "HF_HUB_OFFLINE": "1",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    env.pop("MPLBACKEND", None)   # MPLBACKEND=Agg would silence the notebooks' inline figures
    jb = Path(sys.executable).with_name("jupyter-book")
    start = time.perf_counter()
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out)],
                          capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BookBuildError(log[-6000:])
    return out / "_build" / "html", seconds, log


def built_html(prefer_existing: bool = True) -> Path:
    """The HTML folder to check: $BOOK_HTML if set (and prefer_existing), else a fresh build."""
    given = os.environ.get("BOOK_HTML")
    if prefer_existing and given:
        return Path(given)
    return build_book()[0]
