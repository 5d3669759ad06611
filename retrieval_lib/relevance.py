"""Relevance judgments: which clips answer a caption, beyond the one it was written for.

The paper scores each caption against its own clip only (DCASE 2022). Since then:

* **DCASE 2025 task 6** scores with several relevant clips per query: the baseline repository
  CPJKU/dcase2025_task6_baseline ships `resources/metadata_eval.csv` (columns `query`, a
  Clotho evaluation caption, and `audio_filenames`, a Python-list string of Clotho evaluation
  file names; 1,037 queries, 1 to 12 clips, 3.0 on average). `load_dcase2025_relevance`.
* **TAU Audio-Text Graded Relevances** (Xie et al., DCASE 2023; repository
  xieh97/retrieval-relevance-crowdsourcing): crowdsourced ratings 0-100 of 17 clips per
  query, 200 queries per Clotho split, in `data/relevance_data/{split}_relevances.csv`
  (tid, fid, fid_group, rating), with the hashed ids mapped to caption text by
  `data/text_data/{split}_text.csv` and to file names by
  `data/audio_metadata/{split}_audio_metadata.csv`. `load_tau_relevance`.
* the synthetic corpus's generator ground truth: `synthetic.synthetic_relevance`.

Files are read from a path the user gives; nothing is downloaded. Every loader maps the file's
queries and clips onto one corpus split and returns a `Relevance`: a boolean matrix (or graded
gains) over the split's clips for a subset of its captions, with a `source` label to show next
to every number computed from it. Queries whose caption the split lacks, and clips the split
lacks, are reported (a warning counting them and naming a few, and the `missing_*` fields);
`strict=True` refuses them instead.

Matching: captions by their text and clips by their file name, both compared through
`match_key`: HTML entities decoded (Clotho file names spell the apostrophe `&#39;`),
Unicode NFKC, case folded, runs of white space made one space, ends stripped (the Clotho
reader strips captions; some queries end in ", "). Punctuation is kept, so two captions that
differ only in punctuation stay different. A file name also matches a split clip with a
folder in front of the same base name, when only one clip has that base name.
"""
from __future__ import annotations

import ast
import html
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .core import read_csv, sha256_file
from .metrics import caption_clip_relevance

if TYPE_CHECKING:
    from .data import RetrievalSplit

DCASE2025_FILE = "metadata_eval.csv"
DCASE2025_SOURCE = ("DCASE 2025 task 6 multi-positive ground truth "
                    "(CPJKU/dcase2025_task6_baseline, resources/metadata_eval.csv)")
TAU_SOURCE = "TAU Audio-Text Graded Relevances 2023 (Xie et al., DCASE 2023)"
TAU_SPLITS = ("development", "validation", "evaluation")
# corpus split name -> the Clotho split the TAU files are named after
TAU_SPLIT_OF = {"train": "development", "val": "validation", "test": "evaluation"}
TAU_MAX_RATING = 100.0
_MAX_LIST_CHARS = 100_000      # a list string longer than this is not a list of file names
_SHOWN = 5                     # names shown in a report


def match_key(text: str) -> str:
    """The key captions and file names are matched by (see the module docstring)."""
    text = unicodedata.normalize("NFKC", html.unescape(str(text)))
    return " ".join(text.casefold().split())


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:_SHOWN])
    return shown + (", ..." if len(names) > _SHOWN else "")


@dataclass(frozen=True, eq=False)
class Relevance:
    """Relevance of some captions of one split (the queries) to every clip of that split.

    values: (n_queries, n_clips) bool (binary), or float64 gains >= 0 (graded; 0 = unrated
    or rated 0). query_index: each query's row among the split's captions, so the split's
    score matrix (n_captions, n_clips) gives the queries' scores (`query_scores`).
    judged (graded only): the pairs that were rated.
    """
    values: np.ndarray
    query_index: np.ndarray
    n_captions: int
    source: str
    split: str = ""
    judged: "np.ndarray | None" = None
    queries: tuple = ()             # each query as the file gives it
    missing_queries: tuple = ()     # queries of the file that are not captions of the split
    missing_clips: tuple = ()       # clips named by the file that the split lacks
    dropped_queries: tuple = ()     # queries left without a relevant clip of the split

    def __post_init__(self):
        values = np.asarray(self.values)
        if values.ndim != 2:
            raise ValueError(f"relevance values must be (n_queries, n_clips), got shape {values.shape}")
        if values.dtype != bool:
            if values.dtype.kind not in "iuf":
                raise ValueError(f"relevance values must be booleans or gains, got {values.dtype}")
            values = values.astype(np.float64)
            if not np.isfinite(values).all() or (values < 0).any():
                raise ValueError("relevance gains must be finite and >= 0")
        index = np.asarray(self.query_index)
        if index.shape != (values.shape[0],) or (index.size and index.dtype.kind not in "iu"):
            raise ValueError(f"query_index must hold one caption row per query ({values.shape[0]}), "
                             f"got {index.dtype} of shape {index.shape}")
        index = index.astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.n_captions):
            raise ValueError(f"query_index must lie in [0, {self.n_captions - 1}]")
        if np.unique(index).size != index.size:
            raise ValueError("a caption appears twice among the queries")
        if self.judged is not None:
            judged = np.asarray(self.judged)
            if judged.shape != values.shape or judged.dtype != bool:
                raise ValueError(f"judged must be a boolean matrix of shape {values.shape}")
            object.__setattr__(self, "judged", judged)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "query_index", index)

    @property
    def graded(self) -> bool:
        """True for gains, False for a boolean matrix."""
        return self.values.dtype != bool

    @property
    def n_queries(self) -> int:
        return self.values.shape[0]

    @property
    def n_clips(self) -> int:
        return self.values.shape[1]

    def query_scores(self, scores):
        """The queries' rows of the split's scores (n_captions, n_clips): (n_queries, n_clips),
        numpy or torch as given."""
        shape = tuple(getattr(scores, "shape", np.shape(scores)))
        if shape != (self.n_captions, self.n_clips):
            raise ValueError(f"scores have shape {shape}, but this relevance ({self.source}) is for "
                             f"split {self.split!r} of {self.n_captions} captions x {self.n_clips} "
                             "clips: pass that split's full score matrix")
        if isinstance(scores, np.ndarray):
            return scores[self.query_index]
        try:
            import torch
            if isinstance(scores, torch.Tensor):
                return scores[torch.as_tensor(self.query_index, device=scores.device)]
        except ImportError:   # pragma: no cover - torch is a dependency
            pass
        return np.asarray(scores)[self.query_index]

    def relevant_per_query(self) -> np.ndarray:
        """Number of relevant clips of each query (graded: clips with a positive gain)."""
        return (self.values > 0).sum(axis=1) if self.graded else self.values.sum(axis=1)

    def binarize(self, threshold: float) -> "Relevance":
        """Graded -> binary: a rated clip is relevant when its gain >= threshold (> 0); unrated
        clips are not relevant. Queries left without a relevant clip are dropped (listed in
        dropped_queries)."""
        if not self.graded:
            raise ValueError("this relevance is already binary")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
                or not np.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        rel = self.values >= threshold
        keep = rel.any(axis=1)
        dropped = tuple(q for q, k in zip(self.queries, keep) if not k) if self.queries else ()
        return Relevance(rel[keep], self.query_index[keep], self.n_captions,
                         f"{self.source}, rating >= {threshold:g}", self.split, None,
                         tuple(q for q, k in zip(self.queries, keep) if k) if self.queries else (),
                         self.missing_queries, self.missing_clips, self.dropped_queries + dropped)

    def summary(self) -> dict:
        """Counts for a table: queries, relevant clips per query, what was left out."""
        per = self.relevant_per_query()
        return {"source": self.source, "split": self.split, "queries": self.n_queries,
                "clips": self.n_clips, "relevant per query (mean)": float(per.mean()) if per.size else 0.0,
                "relevant per query (max)": int(per.max()) if per.size else 0,
                "missing queries": len(self.missing_queries), "missing clips": len(self.missing_clips),
                "dropped queries": len(self.dropped_queries)}

    def __repr__(self) -> str:
        kind = "graded" if self.graded else "binary"
        return (f"Relevance({kind}, {self.n_queries} queries x {self.n_clips} clips of split "
                f"{self.split!r}, {self.relevant_per_query().mean():.2f} relevant per query; {self.source})")


def own_clip_relevance(split: "RetrievalSplit", source: str = "each caption's own clip (DCASE 2022)") -> Relevance:
    """The paper's ground truth as a Relevance: every caption is a query, its clip relevant."""
    return Relevance(caption_clip_relevance(split.caption_clip, split.n_clips),
                     np.arange(split.n_captions), split.n_captions, source, split.name)


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------

def _read_csv(path: Path, required: Sequence[str]) -> "list[tuple[int, dict]]":
    """core.read_csv with every row complete (a cut line refused) and at least one data row."""
    if not path.is_file():
        raise FileNotFoundError(f"relevance file not found: {path}")
    rows = read_csv(path, required, "relevance file", exact_fields=True)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return rows


def _name_list(text: str, where: str) -> list:
    """A Python-list string of file names -> list of str (ast.literal_eval of a list of
    non-empty strings only, no repeats)."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")) or len(text) > _MAX_LIST_CHARS:
        raise ValueError(f"{where}: audio_filenames must be a Python list of file names such as "
                         f"\"['a.wav', 'b.wav']\", got {text[:80]!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise ValueError(f"{where}: audio_filenames is not a readable Python list "
                         f"({type(err).__name__}: {err}): {text[:80]!r}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        kinds = sorted({type(v).__name__ for v in value}) if isinstance(value, list) else [type(value).__name__]
        raise ValueError(f"{where}: audio_filenames must be a list of strings, got {kinds}")
    names = [v.strip() for v in value]
    if not names:
        raise ValueError(f"{where}: audio_filenames is an empty list: the query has no relevant clip")
    if any(not n for n in names):
        raise ValueError(f"{where}: audio_filenames holds an empty file name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{where}: audio_filenames names {_few(repeated)} more than once")
    return names


class _SplitIndex:
    """Caption text -> caption row and file name -> clip index of one split (by match_key)."""

    def __init__(self, split: "RetrievalSplit"):
        if not split.captions:
            raise ValueError(f"split {split.name!r} has no caption texts: relevance judgments are "
                             "matched to captions by their text")
        if not split.clip_names:
            raise ValueError(f"split {split.name!r} has no clip names: relevance judgments are "
                             "matched to clips by file name")
        self.split = split
        self.caption = {}
        for i, c in enumerate(split.captions):
            self.caption.setdefault(match_key(c), i)      # a repeated caption: its first row
        self.clip, base = {}, {}
        for i, name in enumerate(split.clip_names):
            key = match_key(name)
            if key in self.clip:
                raise ValueError(f"split {split.name!r}: clips {split.clip_names[self.clip[key]]!r} "
                                 f"and {name!r} have the same name once normalised")
            self.clip[key] = i
            base.setdefault(match_key(PurePosixPath(str(name).replace("\\", "/")).name), []).append(i)
        self.base = {k: v[0] for k, v in base.items() if len(v) == 1}

    def caption_row(self, text: str) -> "int | None":
        return self.caption.get(match_key(text))

    def clip_index(self, name: str) -> "int | None":
        key = match_key(name)
        if key in self.clip:
            return self.clip[key]
        return self.base.get(match_key(PurePosixPath(str(name).replace("\\", "/")).name))


def _report(where: str, split: "RetrievalSplit", n_queries: int, missing_queries: list,
            missing_clips: list, dropped: list, strict: bool) -> None:
    """Warn about what the split lacks (strict: refuse missing queries and clips)."""
    parts = []
    if missing_queries:
        parts.append(f"{len(missing_queries)} of {n_queries} queries are not captions of split "
                     f"{split.name!r} ({_few(missing_queries)})")
    if missing_clips:
        parts.append(f"{len(missing_clips)} clip(s) it names are not in the split ({_few(missing_clips)})")
    if dropped:
        parts.append(f"{len(dropped)} queries keep no relevant clip of the split ({_few(dropped)})")
    if not parts:
        return
    if strict and (missing_queries or missing_clips):
        raise ValueError(f"{where}: " + "; ".join(parts) + " (strict=True)")
    warnings.warn(f"{where}: " + "; ".join(parts) + "; they are left out (strict=True refuses)",
                  stacklevel=3)


# ---------------------------------------------------------------------------------------------
# DCASE 2025 task 6
# ---------------------------------------------------------------------------------------------

def _dcase_file(path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        for candidate in (path / "resources" / DCASE2025_FILE, path / DCASE2025_FILE):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no {DCASE2025_FILE} in {path} (looked in {path / 'resources'} "
                                f"and {path}); it is resources/{DCASE2025_FILE} of "
                                "CPJKU/dcase2025_task6_baseline")
    return path


def load_dcase2025_relevance(path, split: "RetrievalSplit", strict: bool = False) -> Relevance:
    """The DCASE 2025 task 6 multi-positive ground truth on `split` (the Clotho evaluation
    split: corpus.test).

    path: the CSV (`metadata_eval.csv`), or the baseline repository (or its `resources`
    folder). Each row: `query` (a caption) and `audio_filenames` (a Python-list string of file
    names, parsed with ast.literal_eval and accepted only as a non-empty list of distinct
    strings). Refused (ValueError naming the file and line): missing columns, rows with extra
    or missing fields, malformed lists, a query given twice. Queries and clips the split lacks
    are reported (strict=True: refused). The relevant clips are exactly the listed ones: the
    file replaces the caption's own clip, it does not add to it (a query whose own clip the file
    does not list is scored without it).
    """
    file = _dcase_file(path)
    rows = _read_csv(file, ("query", "audio_filenames"))
    parsed, seen = [], {}
    for line, row in rows:
        where = f"{file}, line {line}"
        query = row["query"].strip()
        if not query:
            raise ValueError(f"{where}: empty query")
        key = match_key(query)
        if key in seen:
            raise ValueError(f"{where}: query {query!r} already given on line {seen[key]}")
        seen[key] = line
        parsed.append((query, _name_list(row["audio_filenames"], where)))
    index = _SplitIndex(split)
    queries, rows_of, cols, missing_q, missing_c, dropped = [], [], [], [], [], []
    for query, names in parsed:
        row = index.caption_row(query)
        found = []
        for n in names:
            c = index.clip_index(n)
            if c is None:
                missing_c.append(n)
            else:
                found.append(c)
        if row is None:
            missing_q.append(query)
        elif not found:
            dropped.append(query)
        else:
            queries.append(query)
            rows_of.append(row)
            cols.append(found)
    missing_c = list(dict.fromkeys(missing_c))
    _report(str(file), split, len(parsed), missing_q, missing_c, dropped, strict)
    if not queries:
        raise ValueError(f"{file}: none of its {len(parsed)} queries is a caption of split "
                         f"{split.name!r} with a clip of the split (is it the Clotho evaluation split?)")
    values = np.zeros((len(queries), split.n_clips), dtype=bool)
    for q, found in enumerate(cols):
        values[q, found] = True
    return Relevance(values, np.asarray(rows_of), split.n_captions,
                     f"{DCASE2025_SOURCE}, sha256 {sha256_file(file)[:12]}", split.name, None,
                     tuple(queries), tuple(missing_q), tuple(missing_c), tuple(dropped))


# ---------------------------------------------------------------------------------------------
# TAU Audio-Text Graded Relevances
# ---------------------------------------------------------------------------------------------

def _tau_files(path, tau_split: str) -> dict:
    root = Path(path).expanduser()
    data = root / "data" if (root / "data" / "relevance_data").is_dir() else root
    files = {"relevances": data / "relevance_data" / f"{tau_split}_relevances.csv",
             "text": data / "text_data" / f"{tau_split}_text.csv",
             "audio": data / "audio_metadata" / f"{tau_split}_audio_metadata.csv"}
    absent = [str(f) for f in files.values() if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"TAU graded relevances: missing {', '.join(absent)} (path is the "
                                "xieh97/retrieval-relevance-crowdsourcing repository or its data folder)")
    return files


def _id_map(path: Path, key: str, value: str) -> dict:
    out = {}
    for line, row in _read_csv(path, (key, value)):
        k, v = row[key].strip(), row[value]
        if not k:
            raise ValueError(f"{path}, line {line}: empty {key}")
        if k in out:
            raise ValueError(f"{path}, line {line}: {key} {k!r} given twice")
        if not v.strip():
            raise ValueError(f"{path}, line {line}: empty {value}")
        out[k] = v.strip()
    return out


def _rating(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: rating {text!r} is not a number") from None
    if not np.isfinite(value) or not 0 <= value <= TAU_MAX_RATING:
        raise ValueError(f"{where}: rating {text!r} is outside 0-{TAU_MAX_RATING:g}")
    return value


def load_tau_relevance(path, split: "RetrievalSplit", tau_split: "str | None" = None,
                       strict: bool = False) -> Relevance:
    """The TAU crowdsourced graded relevances on `split`: gains = ratings 0-100 (linear), with
    the rated pairs in `judged` (17 clips per query: the caption's own clip, 15 candidates and
    one random clip).

    path: the xieh97/retrieval-relevance-crowdsourcing repository, or its `data` folder.
    tau_split: "development" | "validation" | "evaluation"; by default the Clotho split of the
    corpus split (train -> development, val -> validation, test -> evaluation).
    Refused (ValueError naming the file and line): missing columns, rows with extra or missing
    fields, a rating that is not a number in 0-100, a (tid, fid) pair rated twice, ids that the
    text or audio metadata file does not know. Queries and clips the split lacks are reported
    (strict=True: refused); a query whose ratings are all 0 on the split's clips is dropped
    (its nDCG is undefined) and listed in dropped_queries.
    """
    if tau_split is None:
        if split.name not in TAU_SPLIT_OF:
            raise ValueError(f"split {split.name!r} has no TAU counterpart: pass tau_split, one of "
                             f"{list(TAU_SPLITS)}")
        tau_split = TAU_SPLIT_OF[split.name]
    if tau_split not in TAU_SPLITS:
        raise ValueError(f"tau_split must be one of {list(TAU_SPLITS)}, got {tau_split!r}")
    files = _tau_files(path, tau_split)
    text_of = _id_map(files["text"], "tid", "text")
    file_of = _id_map(files["audio"], "fid", "file_name")
    ratings, seen, order = {}, {}, []
    for line, row in _read_csv(files["relevances"], ("tid", "fid", "rating")):
        where = f"{files['relevances']}, line {line}"
        tid, fid = row["tid"].strip(), row["fid"].strip()
        if tid not in text_of:
            raise ValueError(f"{where}: tid {tid!r} is not in {files['text'].name}")
        if fid not in file_of:
            raise ValueError(f"{where}: fid {fid!r} is not in {files['audio'].name}")
        if (tid, fid) in seen:
            raise ValueError(f"{where}: the pair tid {tid!r}, fid {fid!r} is already rated on "
                             f"line {seen[tid, fid]}")
        seen[tid, fid] = line
        if tid not in ratings:
            ratings[tid] = {}
            order.append(tid)
        ratings[tid][fid] = _rating(row["rating"], where)
    index = _SplitIndex(split)
    queries, rows_of, gains, judged, missing_q, missing_c, dropped = [], [], [], [], [], [], []
    for tid in order:
        query = text_of[tid]
        row = index.caption_row(query)
        g = np.zeros(split.n_clips)
        j = np.zeros(split.n_clips, dtype=bool)
        for fid, rating in ratings[tid].items():
            c = index.clip_index(file_of[fid])
            if c is None:
                missing_c.append(file_of[fid])
            else:
                g[c], j[c] = rating, True
        if row is None:
            missing_q.append(query)
        elif not (g > 0).any():
            dropped.append(query)
        else:
            queries.append(query)
            rows_of.append(row)
            gains.append(g)
            judged.append(j)
    missing_c = list(dict.fromkeys(missing_c))
    _report(str(files["relevances"]), split, len(order), missing_q, missing_c, dropped, strict)
    if not queries:
        raise ValueError(f"{files['relevances']}: none of its {len(order)} queries is a caption of "
                         f"split {split.name!r} with a rated clip of the split")
    return Relevance(np.vstack(gains), np.asarray(rows_of), split.n_captions,
                     f"{TAU_SOURCE}, {tau_split} split, sha256 {sha256_file(files['relevances'])[:12]}",
                     split.name, np.vstack(judged), tuple(queries), tuple(missing_q),
                     tuple(missing_c), tuple(dropped))
