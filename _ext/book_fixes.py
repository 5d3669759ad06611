"""Sphinx hooks of the book: fixes to the HTML of Jupyter Book 1.x's stack, found by
tests/test_browser.py, and the figures the Markdown pages need.

1. sphinx-thebe registers its inline configuration script twice on every page
   (`const THEBE_JS_URL = ...` declared twice: a JavaScript SyntaxError on every page); other
   inline scripts are repeated too. Identical script entries are kept once.
2. pydata-sphinx-theme reads the page's colour mode from the template variable `default_mode`,
   which nothing sets here, and then logs "Got invalid theme mode" on every page. The book sets
   "auto" (follow the reader's system setting).
3. Docstrings are reStructuredText, where docutils turns any "word@word" into an e-mail link:
   "mAP@10" became a mailto: link on the API page. `autodoc-process-docstring` escapes every "@"
   that is not part of a real e-mail address (outside inline literals, literal blocks and
   doctest lines). It also gives the docstrings' plain-text layouts (an indented block under a
   line, a list right after a paragraph) the blank lines and literal-block markers reST needs
   (`fix_docstring_layout`), so the API page builds without warnings and without rewording.
4. The book's CSS (_ext/static/book.css): table cells padded (no "0.535 ± 0.0070.385 ± 0.007"),
   numbers right-aligned, wide tables scroll inside the column instead of leaving the page.
5. The landing page's generated parts, written into book/_generated/ (git-ignored) when the
   build starts, so they are never stale: the system diagram, drawn from the library
   (`retrieval_lib.diagram.save_system_diagram`), and the table of chapters (title, the paper's
   sections from each chapter's "Paper section reproduced" line, a reading time estimated from
   the chapter's words and visible code, its Colab link from the repository in _config.yml).
"""
from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
GENERATED = "book/_generated"      # relative to the source folder (the repository root)

# "@" followed by a domain with a dot and a top-level name is an address; anything else
# ("mAP@10", "R@k", "@property") is not, and is escaped
_AT = re.compile(r"(?<=[\w)\]])@(?![\w-]+(\.[\w-]+)*\.[A-Za-z]{2,}\b)")
_LITERAL = re.compile(r"(``.+?``|`[^`]+`_?)")


def escape_at_signs(line: str) -> str:
    """The reST line with every non-e-mail "@" escaped ("mAP@10" -> "mAP\\@10"), leaving inline
    literals (``...``), interpreted text (`...`) and doctest lines (>>> ...) as they are."""
    if line.lstrip().startswith((">>>", "...")):
        return line
    parts = _LITERAL.split(line)
    return "".join(part if i % 2 else _AT.sub(r"\\@", part) for i, part in enumerate(parts))


_BULLET = re.compile(r"^\s*([*+-]|\d+[.)]|#\.)\s+\S")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _plain(line: str) -> bool:
    """A line of an ordinary paragraph: not a list item, field, directive, doctest or literal
    block marker (those legitimately take indented lines after them)."""
    s = line.strip()
    return bool(s) and not (_BULLET.match(line) or s.startswith((":", ".. ", ">>>", "..."))
                            or s.endswith("::"))


def fix_docstring_layout(lines: list[str]) -> list[str]:
    """Plain-text docstring layouts made valid reStructuredText, without changing their words.

    The library's docstrings are written to read well in a terminal: an indented block right
    under a line (a formula, a file table, a numbered procedure), or a bullet list straight after
    a paragraph. reST reads those as errors ("Unexpected indentation", "Block quote ends without
    a blank line"). Here an indented block after a paragraph line (with or without a blank line
    between) becomes a literal block, shown as it is written; a list gets the blank lines reST
    needs before and after it.
    """
    out: list[str] = []
    i, n = 0, len(lines)
    list_indent = None                      # indentation of the bullets of the current list
    while i < n:
        line = lines[i]
        if not line.strip():
            out.append(line)
            i += 1
            continue
        prev_i = next((k for k in range(len(out) - 1, -1, -1) if out[k].strip()), None)
        prev = out[prev_i] if prev_i is not None else None
        blank_before = prev_i is not None and prev_i < len(out) - 1
        if prev is not None and _indent(line) > _indent(prev) and _plain(prev) and list_indent is None \
                and (not blank_before or prev.rstrip().endswith(":")):
            # an indented block under a paragraph line: a literal block
            base = _indent(prev)
            out[prev_i] = prev.rstrip()[:-1] + "::" if prev.rstrip().endswith(":") else prev.rstrip() + " ::"
            if not blank_before:
                out.append("")
            while i < n and (not lines[i].strip() or _indent(lines[i]) > base):
                out.append(lines[i])
                i += 1
            while out and not out[-1].strip():
                out.pop()
            out.append("")
            continue
        if _BULLET.match(line):
            if prev is not None and not blank_before and list_indent is None:
                out.append("")             # a list right after a paragraph
            list_indent = _indent(line) if list_indent is None else min(list_indent, _indent(line))
        elif list_indent is not None and _indent(line) <= list_indent:
            if not blank_before:
                out.append("")             # the paragraph after a list
            list_indent = None
        out.append(line)
        i += 1
    return out


def _escape_docstring(app, what, name, obj, options, lines):
    fixed = fix_docstring_layout(list(lines))
    in_literal_block = False
    block_indent = 0
    for i, line in enumerate(fixed):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if in_literal_block:
            if stripped and indent <= block_indent:
                in_literal_block = False
            else:
                continue
        fixed[i] = escape_at_signs(line)
        if stripped.endswith("::"):
            in_literal_block, block_indent = True, indent
    lines[:] = fixed


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


def _add_static(app, config):
    if str(STATIC) not in [str(p) for p in config.html_static_path]:
        config.html_static_path.append(str(STATIC))


def _draw_figures(app):
    """The landing page's system diagram, from the library (see the module docstring)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from retrieval_lib.diagram import save_system_diagram

    out = Path(app.srcdir) / GENERATED
    save_system_diagram(out / "system_diagram.svg")


# Reading time: prose at WORDS_PER_MINUTE, visible code (not collapsed, not removed) at
# CODE_LINES_PER_MINUTE, rounded to 5 minutes; running the cells is not counted.
WORDS_PER_MINUTE = 200
CODE_LINES_PER_MINUTE = 20
_SECTION = re.compile(r"\*{0,2}Paper sections? reproduced:?\*{0,2}:?\s*(?P<text>.+?)(?:\n\s*\n|$)", re.S)


def reading_minutes(notebook) -> int:
    """Estimated reading time of a chapter (see WORDS_PER_MINUTE, CODE_LINES_PER_MINUTE)."""
    prose = " ".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|\{[a-z:]+\}|\([\w-]+\)=", " ", prose, flags=re.S)
    words = len(re.findall(r"[A-Za-z0-9][\w'-]*", prose))
    code = sum(len(c.source.splitlines()) for c in notebook.cells if c.cell_type == "code"
               and not {"remove-cell", "hide-input", "remove-input"} & set(c.metadata.get("tags", [])))
    minutes = words / WORDS_PER_MINUTE + code / CODE_LINES_PER_MINUTE
    return max(5, 5 * round(minutes / 5))


def chapter_rows(srcdir: Path, toc_path: Path, colab_base: str | None) -> list[dict]:
    """Title, paper sections, reading time and Colab link of every chapter in the toc."""
    import nbformat
    import yaml

    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    rows = []
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            path = srcdir / f"{entry['file']}.ipynb"
            if not path.exists():
                continue
            nb = nbformat.read(path, as_version=4)
            first = nb.cells[0].source if nb.cells else ""
            title = next((line[2:].strip() for line in first.splitlines() if line.startswith("# ")), path.stem)
            m = _SECTION.search(first)
            section = re.sub(r"\s*\([^)]*\)", "", m.group("text")).strip().rstrip(".") if m else "–"
            section = " ".join(section.split())
            number = re.match(r"(\d+)_", path.name)
            rows.append({"number": int(number.group(1)) if number else None, "title": title,
                         "doc": "/" + entry["file"], "section": section or "–",
                         "minutes": reading_minutes(nb),
                         "colab": f"{colab_base}/{entry['file']}.ipynb" if colab_base else None})
    return rows


def chapter_table(rows: list[dict]) -> str:
    """The landing page's table of chapters, as MyST Markdown."""
    lines = ["| chapter | paper | reading time | run it |", "|---|---|---|---|"]
    for r in rows:
        title = f"{r['number']}. {{doc}}`{r['title']} <{r['doc']}>`" if r["number"] else \
            f"{{doc}}`{r['title']} <{r['doc']}>`"
        colab = f"[Open in Colab]({r['colab']})" if r["colab"] else "–"
        lines.append(f"| {title} | {r['section']} | ~{r['minutes']} min | {colab} |")
    total = sum(r["minutes"] for r in rows)
    lines.append("")
    lines.append(f"Reading times are estimates from each chapter's own text: prose at "
                 f"{WORDS_PER_MINUTE} words a minute plus visible code at {CODE_LINES_PER_MINUTE} "
                 f"lines a minute, rounded to 5 minutes (about {total // 60} h {total % 60:02d} min "
                 f"in all); running the cells, and the exercises, take extra.")
    return "\n".join(lines) + "\n"


def _colab_base(config) -> str | None:
    options = getattr(config, "html_theme_options", {}) or {}
    url = options.get("repository_url") or ""
    m = re.match(r"https?://github\.com/([^/]+)/([^/#?]+)", url)
    if not m:
        return None
    branch = options.get("repository_branch") or "main"
    return f"https://colab.research.google.com/github/{m.group(1)}/{m.group(2)}/blob/{branch}"


def _write_chapter_table(app):
    """book/_generated/chapters.md: the landing page's chapter table, from the chapters."""
    srcdir = Path(app.srcdir)
    toc_path = Path(getattr(app.config, "external_toc_path", None) or srcdir / "_toc.yml")
    if not toc_path.is_absolute():
        toc_path = srcdir / toc_path
    out = srcdir / GENERATED / "chapters.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = chapter_table(chapter_rows(srcdir, toc_path, _colab_base(app.config)))
    if not out.exists() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")     # its event must exist before it is connected
    app.connect("html-page-context", _fix_page, priority=900)
    app.connect("autodoc-process-docstring", _escape_docstring, priority=900)   # after napoleon
    app.connect("config-inited", _add_static)
    app.connect("builder-inited", _draw_figures)
    app.connect("builder-inited", _write_chapter_table)
    app.add_css_file("book.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
