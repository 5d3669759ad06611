"""The book's pages follow its conventions (fast checks of the sources), and the book builds
strictly (the slow test: every chapter executes on its default synthetic CPU data and the build
has zero warnings).

The conventions (shared by every chapter, see the notebooks' first cells):

1. Top of a chapter: the only H1, objectives and "Paper section reproduced"; a `remove-cell` Colab
   install; the `parameters` cell (also `hide-input`) starting with DATA, CLOTHO_DIR, CACHE_DIR,
   USE_DRIVE, PASST_BATCH, AUTOCAST, DEVICE, one comment each; a `hide-input` setup cell calling
   `setup_chapter`; the corpus loaded with every data parameter and `show_data_note(corpus)`.
   SEEDS, where a chapter has it, goes through `seed_list`. No per-chapter boilerplate left
   (`hf_logging`, `%config`, `data_dirs`, the old GPU warning).
2. Code fits the column: no code line longer than 88 characters.
3. Every displayed equation carries \\tag{N} (the paper's eq. N) or \\tag{C.k} (the chapter's own)
   and a MyST target right before it: (chC-eqN)= or (chC-eqC-k)=, unique in the book.
4. Figures: a cell that shows a figure carries mystnb figure metadata (name fig-chC-..., unique
   in the book, a caption that does not say "synthetic"), and the text refers to it with
   {numref}; no italic "Figure:" paragraphs.
6. "## Summary" and "## Exercises" are real headings, every fence closes on a line of its own, no
   heading sits inside a directive, and every exercise has a solution or a worked hint (a
   dropdown titled Solution / Hint, or an executed `hide-input` code cell); code solutions are
   code cells, executed by the build, never code blocks in a dropdown.
7. No words about the project's history (the list shared with the browser test).

Each rule is a function returning the problems it finds; `test_rules_catch_*` feed each one a
deliberately broken cell and check it complains.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from _book_build import history_words

ROOT = Path(__file__).resolve().parents[1]

PARAMETERS = ("DATA", "CLOTHO_DIR", "CACHE_DIR", "USE_DRIVE", "PASST_BATCH", "AUTOCAST", "DEVICE")
MAX_LINE = 88
SETUP_CALL = "CLOTHO_DIR, CACHE_DIR, DEVICE = setup_chapter(DATA, CLOTHO_DIR, CACHE_DIR, USE_DRIVE, DEVICE)"
LOAD_CALL = ("corpus = load_corpus(DATA, cache_dir=CACHE_DIR, clotho_dir=CLOTHO_DIR, "
             "passt_batch_size=PASST_BATCH, autocast=AUTOCAST, device=DEVICE)")
BOILERPLATE = {
    "hf_logging": "Hugging Face logging set by hand (setup_chapter does it)",
    "%config": "%config magic (setup_chapter sets SVG figures)",
    "disable_progress_bar": "progress bars disabled by hand (setup_chapter does it)",
    "data_dirs(": "folders resolved by hand (setup_chapter does it)",
    "without a GPU. Building": "the old per-chapter GPU warning (setup_chapter prints it when it matters)",
}


# ---------------------------------------------------------------------------------------------
# The book's files
# ---------------------------------------------------------------------------------------------

def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def _chapters():
    """The executable chapters (notebooks) of the toc; the reference pages are Markdown."""
    return [f for f in _toc_files() if (ROOT / f"{f}.ipynb").exists()]


def _pages():
    return [f for f in _toc_files() if (ROOT / f"{f}.md").exists()] + ["book/index"]


def _read(name):
    return nbformat.read(ROOT / f"{name}.ipynb", as_version=4)


def _chapter_number(name) -> int:
    m = re.match(r"(\d+)_", Path(name).name)
    assert m, f"{name}: a chapter file is named NN_topic.ipynb"
    return int(m.group(1))


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


CHAPTERS = _chapters()


# ---------------------------------------------------------------------------------------------
# Markdown structure: fences, headings, equations
# ---------------------------------------------------------------------------------------------

_COLON_OPEN = re.compile(r"^(:{3,})\{([\w-]+)\}(.*)$")
_COLON_CLOSE = re.compile(r"^(:{3,})\s*$")
_TICK = re.compile(r"^(`{3,}|~{3,})(.*)$")


def walk_markdown(text: str):
    """(line number, line, state) for every line; state: 'code' inside a code block, 'directive'
    inside a directive (colon fence or ```{name}), 'text' elsewhere. Also returns the problems
    of the fences themselves."""
    stack, problems, out = [], [], []      # stack of (kind, marker length, name)
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.lstrip()
        in_code = bool(stack) and stack[-1][0] == "code"
        tick = _TICK.match(stripped)
        if in_code:
            kind, length, _ = stack[-1]
            if tick and len(tick.group(1)) >= length and not tick.group(2).strip():
                stack.pop()
                out.append((n, line, "code"))
                continue
            out.append((n, line, "code"))
            continue
        if tick:
            marker, info = tick.group(1), tick.group(2).strip()
            if info.startswith("{"):
                stack.append(("tickdirective", len(marker), info))
            elif info == "" and stack and stack[-1][0] == "tickdirective" and len(marker) >= stack[-1][1]:
                stack.pop()
            else:
                stack.append(("code", len(marker), info))
            out.append((n, line, "directive"))
            continue
        opened = _COLON_OPEN.match(stripped)
        closed = _COLON_CLOSE.match(stripped)
        if opened:
            stack.append(("colon", len(opened.group(1)), opened.group(2)))
            out.append((n, line, "directive"))
            continue
        if closed:
            if not stack or stack[-1][0] != "colon":
                problems.append(f"line {n}: a closing ':::' with no open directive")
            elif len(closed.group(1)) < stack[-1][1]:
                problems.append(f"line {n}: closing fence shorter than its opening")
            else:
                stack.pop()
            out.append((n, line, "directive"))
            continue
        if ":::" in line:
            problems.append(f"line {n}: ':::' with text on the same line (a fence must be alone on "
                            f"its line, or the directive never closes): {line.strip()[:60]!r}")
        out.append((n, line, "directive" if stack else "text"))
    for kind, _, name in stack:
        problems.append(f"a {'code block' if kind == 'code' else 'directive ' + name!r} is never closed")
    return out, problems


def fence_problems(text: str) -> list[str]:
    """Unclosed fences, closing fences with text, headings inside a directive."""
    lines, problems = walk_markdown(text)
    for n, line, state in lines:
        if state == "directive" and re.match(r"^\s*#{1,6} ", line):
            problems.append(f"line {n}: heading inside a directive (admonition, dropdown): {line.strip()!r}")
    return problems


def text_lines(text: str) -> list[str]:
    """The lines of ordinary text (not code, not inside a directive)."""
    lines, _ = walk_markdown(text)
    return [line for _, line, state in lines if state == "text"]


_TARGET = re.compile(r"^\((?P<label>[\w-]+)\)=\s*$")


def display_equations(text: str):
    """(target label or None, equation source) of every $$ ... $$ block outside code."""
    lines, _ = walk_markdown(text)
    blocks, current, previous = [], None, None
    for _, line, state in lines:
        if state == "code":
            continue
        s = line.strip()
        if current is None:
            if s.startswith("$$"):
                rest = s[2:]
                if rest.endswith("$$") and len(rest) >= 2:
                    blocks.append((previous, rest[:-2]))
                else:
                    current = [rest]
            elif s:
                previous = s
            continue
        if s.endswith("$$"):
            current.append(s[:-2])
            blocks.append((previous, "\n".join(current)))
            current, previous = None, None
        else:
            current.append(s)
    if current is not None:
        blocks.append((previous, "\n".join(current) + "\n<unclosed $$>"))
    out = []
    for before, source in blocks:
        m = _TARGET.match(before or "")
        out.append((m.group("label") if m else None, source))
    return out


def equation_problems(text: str, chapter: int | None) -> tuple[list[str], list[str]]:
    """(problems, labels) of the displayed equations of a page (chapter=None: a reference page)."""
    problems, labels = [], []
    for label, source in display_equations(text):
        short = " ".join(source.split())[:50]
        if "<unclosed $$>" in source:
            problems.append(f"a $$ block is never closed: {short!r}")
            continue
        tags = re.findall(r"\\tag\{([^}]*)\}", source)
        if len(tags) != 1:
            problems.append(f"a displayed equation needs exactly one \\tag (found {len(tags)}): {short!r}")
            continue
        if label is None:
            problems.append(f"no MyST target line, e.g. (ch4-eq2)=, right before the equation "
                            f"\\tag{{{tags[0]}}}: {short!r}")
            continue
        labels.append(label)
        if chapter is None:
            continue
        tag = tags[0].strip()
        paper = re.fullmatch(r"[1-7]", tag)
        own = re.fullmatch(rf"{chapter}\.(\d+)", tag)
        if paper:
            expected = f"ch{chapter}-eq{tag}"
        elif own:
            expected = f"ch{chapter}-eq{chapter}-{own.group(1)}"
        else:
            problems.append(f"\\tag{{{tag}}}: use the paper's number (1-7) or {chapter}.k for this "
                            f"chapter's own equations")
            continue
        if label != expected:
            problems.append(f"\\tag{{{tag}}} carries the target ({label})=, expected ({expected})=")
    for env in re.findall(r"^\s*\\begin\{(equation|align|gather|multline)\*?\}", "\n".join(text_lines(text)), re.M):
        problems.append(f"a bare \\begin{{{env}}} block: write $$ ... \\tag{{..}} $$ instead")
    return problems, labels


def heading_names(text: str, level: int = 2) -> list[str]:
    return [line[level + 1:].strip() for line in text_lines(text) if re.match(rf"^{'#' * level} ", line)]


# ---------------------------------------------------------------------------------------------
# Rules over one chapter
# ---------------------------------------------------------------------------------------------

def layout_problems(nb, name: str) -> list[str]:
    """Convention 1: the cells at the top of a chapter, in order, with their tags."""
    p = []
    cells = nb.cells
    if len(cells) < 4:
        return [f"{name}: too few cells for the chapter layout"]
    intro, colab, params, setup = cells[:4]
    if intro.cell_type != "markdown" or not re.match(r"^# \S", intro.source):
        p.append("cell 0 must be the markdown title cell starting with the H1")
    else:
        if "Objectives" not in intro.source:
            p.append("cell 0 has no objectives")
        if "Paper section reproduced:" not in intro.source:
            p.append('cell 0 lacks "Paper section reproduced: ..."')
    h1 = [i for i, c in enumerate(cells) if c.cell_type == "markdown"
          and any(re.match(r"^# ", line) for line in text_lines(c.source))]
    if h1 != [0]:
        p.append(f"the H1 title must be the only one, in cell 0 (H1 in cells {h1})")
    if colab.cell_type != "code" or "remove-cell" not in _tags(colab) \
            or 'if "google.colab" in sys.modules:' not in colab.source or "%pip install" not in colab.source:
        p.append('cell 1 must be the Colab install (code, tags ["remove-cell"], '
                 '`if "google.colab" in sys.modules:` and %pip install)')
    if params.cell_type != "code" or not {"parameters", "hide-input"} <= set(_tags(params)):
        p.append('cell 2 must be the parameters cell with tags ["parameters", "hide-input"]')
    else:
        assigned = re.findall(r"^([A-Za-z_]\w*)\s*=", params.source, re.M)
        if tuple(assigned[:len(PARAMETERS)]) != PARAMETERS:
            p.append(f"the parameters cell must start with {', '.join(PARAMETERS)} (found {assigned[:7]})")
        lower = [v for v in assigned if not v.isupper()]
        if lower:
            p.append(f"parameters are UPPER_CASE: {lower}")
        for line in params.source.splitlines():
            if re.match(r"^[A-Z_][A-Z0-9_]*\s*=", line) and "#" not in line:
                p.append(f"parameter without a comment: {line.strip()[:60]!r}")
    if setup.cell_type != "code" or "hide-input" not in _tags(setup):
        p.append('cell 3 must be the setup cell with tags ["hide-input"]')
    elif re.sub(r"\s+", "", SETUP_CALL) not in re.sub(r"\s+", "", setup.source).replace(",)", ")") \
            or "from retrieval_lib.chapter import" not in setup.source:
        p.append(f"cell 3 must import from retrieval_lib.chapter and call `{SETUP_CALL}`")
    if any("parameters" in _tags(c) for c in cells[3:]):
        p.append("more than one parameters cell")
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and "load_corpus(" in cell.source:
            flat = re.sub(r"\s+", "", cell.source).replace(",)", ")")   # black's trailing comma
            if "corpus=load_corpus(DATA" in flat:
                if re.sub(r"\s+", "", LOAD_CALL) not in flat:
                    p.append(f"cell {i}: load the corpus with every data parameter: `{LOAD_CALL}`")
                elif "show_data_note(corpus)" not in cell.source:
                    p.append(f"cell {i}: show_data_note(corpus) right after load_corpus")
    return p


def seeds_problems(nb) -> list[str]:
    params = next((c for c in nb.cells if "parameters" in _tags(c)), None)
    if params is None or not re.search(r"^SEEDS\s*=", params.source, re.M):
        return []
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c is not params)
    if not re.search(r"^SEEDS\s*=\s*seed_list\(SEEDS\)", code, re.M):
        return ["SEEDS is a parameter but never goes through `SEEDS = seed_list(SEEDS)`"]
    return []


def _code_blocks(nb):
    """(where, source) of every piece of code a reader sees: code cells and fenced code blocks."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if "remove-cell" not in _tags(cell):     # a removed cell is not on the page
                yield f"cell {i}", cell.source
        else:
            lines, _ = walk_markdown(cell.source)
            code = [line for _, line, state in lines if state == "code"]
            if code:
                yield f"cell {i} (code block)", "\n".join(code)


def line_length_problems(nb) -> list[str]:
    p = []
    for where, source in _code_blocks(nb):
        for n, line in enumerate(source.splitlines(), start=1):
            if len(line) > MAX_LINE:
                p.append(f"{where} line {n}: {len(line)} characters: {line.strip()[:50]!r}...")
    return p


def boilerplate_problems(nb) -> list[str]:
    p = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for needle, why in BOILERPLATE.items():
            if needle in cell.source:
                p.append(f"cell {i}: {why}")
    return p


def markdown_problems(nb, chapter: int) -> tuple[list[str], list[str]]:
    """(problems, equation labels): fences, headings in directives, equations, "Figure:"."""
    p, labels = [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        p += [f"cell {i}: {x}" for x in fence_problems(cell.source)]
        eq, lab = equation_problems(cell.source, chapter)
        p += [f"cell {i}: {x}" for x in eq]
        labels += lab
        for line in text_lines(cell.source):
            if re.match(r"^\s*[*_]Figure[ :]", line):
                p.append(f"cell {i}: an italic 'Figure:' paragraph (caption the figure cell instead)")
    return p, labels


def figure_problems(nb, chapter: int) -> tuple[list[str], list[str]]:
    """(problems, figure names) of convention 4."""
    p, names = [], []
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        shows = cell.source.count("plt.show()") + len(re.findall(r"^\s*display\(fig\)", cell.source, re.M))
        if shows and not figure:
            p.append(f"cell {i} shows a figure without mystnb figure metadata (name, caption)")
        if shows > 1:
            p.append(f"cell {i} shows {shows} figures: one figure per cell")
        if figure and re.search(r"^\s*display\(", cell.source, re.M):
            p.append(f"cell {i}: a figure cell must display nothing else (myst-nb would give "
                     f"every displayed output the figure's name: duplicate targets)")
        if not figure:
            continue
        name, caption = figure.get("name", ""), figure.get("caption", "")
        if not re.fullmatch(rf"fig-ch{chapter}-[a-z0-9-]+", name or ""):
            p.append(f"cell {i}: figure name {name!r} must look like fig-ch{chapter}-something")
        if not caption or len(caption.split()) < 4:
            p.append(f"cell {i}: figure {name!r} needs a caption (a sentence)")
        elif "synthetic" in caption.lower():
            p.append(f"cell {i}: figure {name!r}: the caption must hold on both data sources; "
                     f"the figure's own stamp says 'synthetic data'")
        if not re.search(rf"\{{numref\}}`([^`]*<)?{re.escape(name)}>?`", markdown):
            p.append(f"figure {name!r} is never referenced with {{numref}}")
        names.append(name)
    return p, names


def exercise_problems(nb) -> list[str]:
    """Convention 6: Summary and Exercises headings, a solution or hint for every exercise."""
    p = []
    headings = [h for c in nb.cells if c.cell_type == "markdown" for h in heading_names(c.source)]
    for needed in ("Summary", "Exercises"):
        if needed not in headings:
            p.append(f'no "## {needed}" heading (a real heading, not inside an admonition)')
    if "Exercises" not in headings:
        return p
    if "Summary" in headings and headings.index("Summary") > headings.index("Exercises"):
        p.append("Summary comes after Exercises")
    in_section, exercises, solutions = False, 0, 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines, _ = walk_markdown(cell.source)
            for _, line, state in lines:
                if state == "text" and re.match(r"^## ", line):
                    in_section = line[3:].strip() == "Exercises"
                    continue
                if not in_section:
                    continue
                if state == "text" and (re.match(r"^\d+\.\s", line) or re.match(r"^#{3,4} Exercise", line)):
                    exercises += 1
                opened = _COLON_OPEN.match(line.strip()) or re.match(r"^`{3,}\{([\w-]+)\}(.*)$", line.strip())
                if opened:
                    kind = opened.group(2 if opened.re is _COLON_OPEN else 1)
                    title = opened.group(3 if opened.re is _COLON_OPEN else 2).strip()
                    if kind == "dropdown" and re.match(r"(Solution|Hint|Worked hint|Answer)", title, re.I):
                        solutions += 1
                if state != "code" and re.match(r"^\s*(`{3,}|~{3,})\s*(python|py|ipython3?)\b", line):
                    p.append("a code solution in a code block: make it an executed code cell (tags hide-input)")
        elif in_section and cell.cell_type == "code" and "hide-input" in _tags(cell):
            solutions += 1
    if exercises == 0:
        p.append("the Exercises section has no numbered exercise")
    if solutions < exercises:
        p.append(f"{exercises} exercises but {solutions} solutions or hints (a dropdown titled "
                 f"'Solution'/'Hint', or an executed code cell tagged hide-input, for each)")
    return p


def history_problems(nb) -> list[str]:
    p = []
    for i, cell in enumerate(nb.cells):
        words = history_words(cell.source)
        if words:
            p.append(f"cell {i}: words about the project's history: {words}")
    return p


# ---------------------------------------------------------------------------------------------
# The rules applied to every chapter
# ---------------------------------------------------------------------------------------------

def test_toc_lists_every_notebook_and_page_once():
    listed = _toc_files()
    assert len(listed) == len(set(listed))
    on_disk = sorted(str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").glob("*.ipynb"))
    assert sorted(_chapters()) == on_disk
    for f in listed:
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f
    numbers = [_chapter_number(c) for c in CHAPTERS]
    assert numbers == sorted(numbers), f"chapters out of order in _toc.yml: {numbers}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_layout(name):
    nb = _read(name)
    problems = layout_problems(nb, name) + seeds_problems(nb) + boilerplate_problems(nb)
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", CHAPTERS)
def test_code_fits_the_column(name):
    problems = line_length_problems(_read(name))
    assert not problems, f"{name}: {len(problems)} code lines over {MAX_LINE} characters " \
                         f"(black -l 88, then shorten strings and comments):\n  " + "\n  ".join(problems[:30])


@pytest.mark.parametrize("name", CHAPTERS)
def test_markdown_fences_equations_and_figures(name):
    nb = _read(name)
    chapter = _chapter_number(name)
    problems, _ = markdown_problems(nb, chapter)
    problems += figure_problems(nb, chapter)[0]
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", CHAPTERS)
def test_summary_exercises_and_solutions(name):
    problems = exercise_problems(_read(name))
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", CHAPTERS + _pages())
def test_no_words_about_the_projects_history(name):
    if (ROOT / f"{name}.ipynb").exists():
        problems = history_problems(_read(name))
    else:
        words = history_words((ROOT / f"{name}.md").read_text(encoding="utf-8"))
        problems = [f"words about the project's history: {words}"] if words else []
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", _pages())
def test_reference_pages_fences_and_equations(name):
    text = (ROOT / f"{name}.md").read_text(encoding="utf-8")
    problems = fence_problems(text) + equation_problems(text, None)[0]
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


def test_labels_and_figure_names_are_unique_in_the_book():
    seen: dict = {}
    duplicates = []
    for name in CHAPTERS:
        nb = _read(name)
        chapter = _chapter_number(name)
        labels = markdown_problems(nb, chapter)[1] + figure_problems(nb, chapter)[1]
        for label in labels:
            if label in seen:
                duplicates.append(f"{label}: {seen[label]} and {name}")
            seen.setdefault(label, name)
    assert not duplicates, "\n".join(duplicates)


def test_notebooks_are_saved_without_outputs():
    for name in CHAPTERS:
        nb = _read(name)
        with_output = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("outputs")]
        assert not with_output, f"{name}: cells {with_output} carry outputs (the build executes them)"


# ---------------------------------------------------------------------------------------------
# The rules are not vacuous: each one catches a deliberately broken cell
# ---------------------------------------------------------------------------------------------

def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def _md(text):
    return nbformat.v4.new_markdown_cell(text)


def _code(text, tags=(), figure=None):
    metadata = {"tags": list(tags)}
    if figure:
        metadata["mystnb"] = {"figure": figure}
    return nbformat.v4.new_code_cell(text, metadata=metadata)


def _black(call):
    """The call as black formats it (split after the opening parenthesis)."""
    head, args = call.split("(", 1)
    return f"{head}(\n    {args[:-1]}\n)"


def _good_top():
    return [_md("# Title\n\nWhy.\n\n**Objectives.** x\n\n**Paper section reproduced:** 2.1."),
            _code('import sys\nif "google.colab" in sys.modules:  # Colab\n    %pip install -q x',
                  ["remove-cell"]),
            _code("\n".join(f"{v} = None  # what it is" for v in PARAMETERS) + "\nSEEDS = [0, 1]  # seeds",
                  ["parameters", "hide-input"]),
            _code("from retrieval_lib.chapter import seed_list, setup_chapter\n" + _black(SETUP_CALL)
                  + "\nSEEDS = seed_list(SEEDS)", ["hide-input"]),
            _code(_black(LOAD_CALL).replace(", passt", ",\n    passt") + "\nshow_data_note(corpus)")]


def test_rules_accept_a_well_formed_chapter():
    nb = _nb(*_good_top(),
             _md("(ch2-eq7)=\n$$\nL = 1 \\tag{7}\n$$\n\n(ch2-eq2-1)=\n$$ x = 2 \\tag{2.1} $$\n\n"
                 "See {numref}`fig-ch2-x`."),
             _code("plt.show()", figure={"name": "fig-ch2-x", "caption": "What the figure shows here."}),
             _md("## Summary\n\n* a\n\n## Exercises\n\n1. Do it.\n\n:::{dropdown} Solution\nDone.\n:::\n"
                 "2. Compute it."),
             _code("print(2)", ["hide-input"]))
    assert layout_problems(nb, "x") == [] and seeds_problems(nb) == []
    assert markdown_problems(nb, 2)[0] == [] and markdown_problems(nb, 2)[1] == ["ch2-eq7", "ch2-eq2-1"]
    assert figure_problems(nb, 2) == ([], ["fig-ch2-x"])
    assert exercise_problems(nb) == [] and history_problems(nb) == [] and line_length_problems(nb) == []


@pytest.mark.parametrize("broken, expected", [
    (lambda cells: cells.pop(1), "Colab install"),                                 # no Colab cell
    (lambda cells: cells[2].metadata.update(tags=["parameters"]), "hide-input"),   # not collapsed
    (lambda cells: setattr(cells[2], "source", cells[2].source.replace("DATA = None", "X = 1  # x\nDATA = None")),
     "must start with DATA"),
    (lambda cells: setattr(cells[2], "source", cells[2].source.replace("DEVICE = None  # what it is", "DEVICE = None")),
     "without a comment"),
    (lambda cells: setattr(cells[3], "source", "import x"), "setup_chapter"),
    (lambda cells: setattr(cells[4], "source", "corpus = load_corpus(DATA, cache_dir=CACHE_DIR)"),
     "every data parameter"),
    (lambda cells: setattr(cells[4], "source", _black(LOAD_CALL)), "show_data_note"),
    (lambda cells: setattr(cells[0], "source", "# Title\n\nno objectives"), "objectives"),
    (lambda cells: cells.append(_md("# Second title")), "only one"),
])
def test_rules_catch_a_broken_layout(broken, expected):
    cells = _good_top()
    broken(cells)
    problems = layout_problems(_nb(*cells), "x")
    assert any(expected.lower() in p.lower() for p in problems), problems


def test_rules_catch_seeds_not_through_seed_list():
    cells = _good_top()
    cells[3].source = cells[3].source.replace("\nSEEDS = seed_list(SEEDS)", "")
    assert any("seed_list" in p for p in seeds_problems(_nb(*cells)))


@pytest.mark.parametrize("source", ["hf_logging.disable_progress_bar()", '%config InlineBackend.figure_formats = ["svg"]',
                                    "CLOTHO_DIR, CACHE_DIR = data_dirs(CLOTHO_DIR, CACHE_DIR)"])
def test_rules_catch_boilerplate(source):
    assert boilerplate_problems(_nb(_code(source)))


@pytest.mark.parametrize("text, expected", [
    (":::{warning}\nbox\n:::\n", None),
    (":::{warning}\nbox text and then ::: the rest\n\n## Summary\n", "text on the same line"),
    (":::{warning}\nbox\n\n## Summary\n", "never closed"),
    (":::{dropdown} Solution\n## Exercises\n:::\n", "heading inside a directive"),
    ("```{admonition} Note\n### inside\n```\n", "heading inside a directive"),
    ("```python\n# a comment, not a heading\n```\n", None),
    ("```python\nx = 1\n", "never closed"),
    ("text\n:::\n", "no open directive"),
])
def test_rules_catch_broken_fences(text, expected):
    problems = fence_problems(text)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("text, expected", [
    ("$$\nx = 1\n$$", "exactly one \\tag"),
    ("$$ x = 1 \\tag{2} $$", "no MyST target"),
    ("(ch3-eq2)=\n$$ x = 1 \\tag{2} $$", "expected (ch4-eq2)="),
    ("(ch4-eq4-1)=\n$$ x = 1 \\tag{3.1} $$", "use the paper's number"),
    ("(ch4-eq1)=\n$$ x = 1 \\tag{1} \\tag{2} $$", "exactly one"),
    ("(ch4-eq1)=\n$$\nx = 1 \\tag{1}\n", "never closed"),
    ("\\begin{equation}\nx\n\\end{equation}", "bare \\begin{equation}"),
])
def test_rules_catch_unnumbered_or_unlabelled_equations(text, expected):
    problems, _ = equation_problems(text, 4)
    assert any(expected in p for p in problems), problems


def test_equations_inside_code_blocks_are_not_equations():
    assert equation_problems("```latex\n$$ x $$\n```\n", 4) == ([], [])


@pytest.mark.parametrize("figure, extra, expected", [
    (None, "", "without mystnb figure metadata"),
    ({"name": "fig-x", "caption": "A sentence of four words."}, "{numref}`fig-x`", "must look like fig-ch5"),
    ({"name": "fig-ch5-x", "caption": ""}, "{numref}`fig-ch5-x`", "needs a caption"),
    ({"name": "fig-ch5-x", "caption": "The synthetic corpus and its tags."}, "{numref}`fig-ch5-x`",
     "both data sources"),
    ({"name": "fig-ch5-x", "caption": "A sentence of four words."}, "", "never referenced"),
])
def test_rules_catch_unnamed_uncaptioned_or_unreferenced_figures(figure, extra, expected):
    nb = _nb(_md(extra), _code("plt.plot(x)\nplt.show()", figure=figure))
    problems, _ = figure_problems(nb, 5)
    assert any(expected in p for p in problems), problems


def test_rules_catch_a_figure_cell_that_displays_something_else():
    nb = _nb(_md("{numref}`fig-ch4-x`"), _code("plt.show()\ndisplay(Audio(x))",
                                                figure={"name": "fig-ch4-x", "caption": "A plot and a player."}))
    assert any("must display nothing else" in p for p in figure_problems(nb, 4)[0])


def test_rules_catch_two_figures_in_one_cell_and_italic_figure_paragraphs():
    nb = _nb(_md("*Figure: a plot.*"), _code("plt.show()\nplt.show()",
                                               figure={"name": "fig-ch5-x", "caption": "Two plots in one cell."}))
    assert any("one figure per cell" in p for p in figure_problems(nb, 5)[0])
    assert any("italic 'Figure:'" in p for p in markdown_problems(nb, 5)[0])


@pytest.mark.parametrize("cells, expected", [
    ([_md("## Summary\n\n## Exercises\n\n1. One.\n2. Two.\n\n:::{dropdown} Solution\nx\n:::")],
     "2 exercises but 1 solutions"),
    ([_md("## Exercises\n\n1. One.\n\n:::{dropdown} Hint\nx\n:::")], '"## Summary"'),
    ([_md("## Summary\n\n:::{note}\n## Exercises\n:::")], '"## Exercises"'),
    ([_md("## Summary\n\n## Exercises\n\n1. One.\n\n:::{dropdown} Solution\n```python\nx = 1\n```\n:::")],
     "code block"),
    ([_md("## Summary\n\n## Exercises\n\nThink about it.")], "no numbered exercise"),
    ([_md("## Exercises\n\n1. One.\n\n:::{dropdown} Solution\nx\n:::\n\n## Summary")], "after Exercises"),
])
def test_rules_catch_missing_exercise_sections_and_solutions(cells, expected):
    problems = exercise_problems(_nb(*cells))
    assert any(expected in p for p in problems), problems


def test_an_executed_solution_cell_counts():
    nb = _nb(_md("## Summary\n\n## Exercises\n\n1. One.\n"), _code("print(1)", ["hide-input"]))
    assert exercise_problems(nb) == []


def test_rules_catch_long_code_lines_in_cells_and_code_blocks():
    long = "x = " + "1 + " * 30 + "1"
    assert len(long) > MAX_LINE
    assert line_length_problems(_nb(_code(long)))
    assert line_length_problems(_nb(_md(f":::{{dropdown}} Solution\n```python\n{long}\n```\n:::")))
    assert not line_length_problems(_nb(_md(long)))          # prose wraps: only code counts


@pytest.mark.parametrize("text", ["An earlier version of this chapter said so.", "The team's earlier measurement.",
                                  "We now compute it twice.", "The goal we set for this chapter.",
                                  "the library now uses 40 buckets"])
def test_rules_catch_history_words(text):
    assert history_problems(_nb(_md(text)))


@pytest.mark.parametrize("text", ["The paper's first version of the system.", "Once trained, e_a is no longer "
                                  "orthogonal to e_t.", "The earlier layers of PaSST.", "The team of annotators"
                                  " is not named"[4:], "PaSST is used to embed the clips.",
                                  'The paper: *"thus, we removed this option"*.'])
def test_history_words_spare_ordinary_prose(text):
    assert history_words(text) == []


# ---------------------------------------------------------------------------------------------
# The strict build (slow)
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_book_builds_strictly():
    from _book_build import BookBuildError, build_book

    try:
        build = build_book()   # shared with tests/test_browser.py: one build per session
    except BookBuildError as err:
        pytest.fail(f"the book build failed:\n{err}")
    html, log = build.html, build.log
    print(f"book built in {build.seconds:.0f} s; notebooks executed in (s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in build.times.items()))
    assert not build.warnings, f"the build printed {len(build.warnings)} warnings (-W: each is an " \
                               f"error):\n" + "\n".join(build.warnings)
    assert build.returncode == 0, f"the build failed:\n{log[-6000:]}"
    for name in CHAPTERS:
        page = (html / f"{name}.html").read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" not in page, f"{name} shows a traceback"
        if "plt." in (ROOT / f"{name}.ipynb").read_text(encoding="utf-8"):   # chapters that draw figures
            # a figure of the notebook's own (not the Colab logo of the page header)
            assert re.search(r'<img[^>]+src="[^"]*_images/[^"]+\.(png|svg)"', page), f"{name} has no figure"
        assert "synthetic" in page.lower(), f"{name} does not say its data is synthetic"
    assert (html / "book" / "index.html").exists() or (html / "index.html").exists()
    # offline math: MathJax is served from the build, not a CDN
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists(), "run scripts/setup_book_assets.sh"
    # Sphinx adds MathJax only to pages with math: every page that loads it must load the local
    # copy, and the chapters with equations must load it
    loading = []
    for name in CHAPTERS:
        page = (html / f"{name}.html").read_text(encoding="utf-8")
        scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, flags=re.I)
        assert all(re.match(r"[./]*_static/mathjax/tex-chtml\.js", s) for s in scripts), \
            f"{name} loads MathJax from elsewhere: {scripts}"
        if scripts:
            loading.append(name)
        assert "cdn.jsdelivr.net/npm/mathjax" not in page
    assert "book/02_metrics" in loading and len(loading) >= len(CHAPTERS) // 2, \
        f"MathJax is not loaded locally by the chapters with equations (only {loading})"


# ---------------------------------------------------------------------------------------------
# The API page: every public module, every docstring valid reST after the book's hook
# ---------------------------------------------------------------------------------------------

def _book_fixes():
    import importlib.util
    spec = importlib.util.spec_from_file_location("book_fixes", ROOT / "_ext" / "book_fixes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_modules():
    import pkgutil

    import retrieval_lib
    return sorted(m.name for m in pkgutil.iter_modules(retrieval_lib.__path__) if not m.name.startswith("_"))


def test_the_api_page_documents_every_public_module():
    text = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\.\. automodule:: retrieval_lib\.(\w+)", text, re.M)
    missing = sorted(set(_public_modules()) - set(documented))
    assert not missing, f"book/api.md has no section for {missing}"
    assert len(documented) == len(set(documented)), "a module is documented twice (duplicate targets)"
    top = re.search(r"^\.\. automodule:: retrieval_lib\n((?:   .*\n)*)", text, re.M)
    assert top and ":no-members:" in top.group(1), \
        "the top-level module must not re-document the re-exported names (duplicate targets)"


def _docstrings():
    import importlib
    import inspect

    for mod_name in _public_modules():
        module = importlib.import_module(f"retrieval_lib.{mod_name}")
        yield mod_name, module
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            yield f"{mod_name}.{name}", obj
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                        yield f"{mod_name}.{name}.{attr}", value


def test_every_docstring_is_valid_rest_after_the_books_hook():
    """What autodoc does with a docstring (napoleon, then the book's hook), parsed by docutils:
    no warning, so the API page builds with -W. (Cross-references need Sphinx: the build checks
    those.)"""
    import inspect
    import io

    import docutils.core
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    fixes = _book_fixes()
    config = Config(napoleon_use_param=True, napoleon_use_rtype=True)
    problems = []
    for name, obj in _docstrings():
        doc = inspect.getdoc(obj)
        if not doc:
            continue
        lines = str(GoogleDocstring(doc, config)).splitlines()
        fixes._escape_docstring(None, None, name, obj, None, lines)
        stream = io.StringIO()
        docutils.core.publish_doctree("\n".join(lines), settings_overrides={"warning_stream": stream,
                                                                           "report_level": 2})
        if stream.getvalue():
            problems.append(f"{name}: {stream.getvalue().strip()[:200]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("line, expected", [
    ("mAP@10 of the model", "mAP\\@10 of the model"),
    ("R@1, R@5 and R@10.", "R\\@1, R\\@5 and R\\@10."),
    ("write to thomas.pellegrini@irit.fr", "write to thomas.pellegrini@irit.fr"),
    ("the key ``mAP@10`` of the dict", "the key ``mAP@10`` of the dict"),
    (">>> metrics['mAP@10']", ">>> metrics['mAP@10']"),
    ("`mAP@10` as a role's text and mAP@16 after", "`mAP@10` as a role's text and mAP\\@16 after"),
])
def test_the_hook_escapes_at_signs_that_are_not_e_mail_addresses(line, expected):
    assert _book_fixes().escape_at_signs(line) == expected


def test_the_hook_makes_plain_text_layouts_valid_rest():
    import io

    import docutils.core

    fixes = _book_fixes()
    samples = [
        "Metrics:\n    R@k    = mean [rank <= k]\n    mAP@10 = mean 1/rank\nThe end.",
        "In order,\n  1. first\n     still first\n  2. second\nAfter.",
        "A paragraph.\n* a bullet\n  continued\n* another\nBack to text.",
        "Files:\n\n    a/MANIFEST.json   format, provenance\n                      and hashes\n"
        "    a/<corpus files>  what Corpus.save writes\n\nMore text.",
    ]
    for text in samples:
        before, after = io.StringIO(), io.StringIO()
        docutils.core.publish_doctree(text, settings_overrides={"warning_stream": before, "report_level": 2})
        lines = text.splitlines()
        fixes._escape_docstring(None, None, "x", None, None, lines)
        docutils.core.publish_doctree("\n".join(lines), settings_overrides={"warning_stream": after,
                                                                           "report_level": 2})
        assert before.getvalue(), f"the sample is valid reST already, it proves nothing: {text!r}"
        assert after.getvalue() == "", (text, lines, after.getvalue())
        words = lambda t: " ".join(re.sub(r"[\\:]", "", t).split())   # noqa: E731
        assert words("\n".join(lines)) == words(text)                  # not one word changed
