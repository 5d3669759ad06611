"""Two fixes to the HTML that Jupyter Book 1.x's stack produces, found by tests/test_browser.py.

1. sphinx-thebe registers its inline configuration script twice on every page
   (`const THEBE_JS_URL = ...` declared twice: a JavaScript SyntaxError on every page); other
   inline scripts are repeated too. Identical script entries are kept once.
2. pydata-sphinx-theme reads the page's colour mode from the template variable `default_mode`,
   which nothing sets here, and then logs "Got invalid theme mode" on every page. The book sets
   "auto" (follow the reader's system setting).
"""
from __future__ import annotations


def _fix_page(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        context["default_mode"] = "auto"
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", None) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
