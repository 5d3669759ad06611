"""FAISS indexes over unit-norm audio embeddings, and `AudioIndex`, an index saved with its clip
names and provenance.

Kinds: "flat" (exact, every clip scored), "ivf" (IVF-flat: clips bucketed by k-means, a query
scans the `nprobe` nearest buckets), "ivfpq" (IVF with product-quantised codes, top candidates
re-scored exactly) and "hnsw" (a graph). The embeddings are e_at of eq. 2-6 (unit norm), so inner
product = cosine. A collection too small for an approximate kind's training (fewer clips than
its buckets, or than a product quantiser's codebook) gets an exact index instead, with a note.

An AudioIndex folder holds index.json (kind, parameters, provenance, and the names and sha256 of
its data files, written last) and the data files themselves under names unique to each save
(index-<id>.faiss, names-<id>.json): a save that is interrupted leaves the previous index.json
pointing at the previous files, so a reader sees the old index or the new one, never the new
vectors with the old names. Folders of the first format (index.faiss, names.json) still load.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core import (atomic_write_json, canonical_text_model, check_k, ensure_dir, normalize_provenance,
                   read_json, refuse_symlink, remove_file, sha256_file)

KINDS = ("flat", "ivf", "ivfpq", "hnsw")
INDEX_FORMAT = 2
META_FILE = "index.json"
LEGACY_FILES = {"index": "index.faiss", "names": "names.json"}     # format 1


def faiss_module():
    """The faiss module, or an ImportError saying how to install it."""
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("search needs FAISS: pip install faiss-cpu "
                          "(or pip install 'retrieval_lib[search]')") from err
    return faiss


class QueryMismatch(ValueError):
    """A query that would be encoded with another text model or checkpoint than the index's."""


# ---------------------------------------------------------------------------------------------
# FAISS indexes
# ---------------------------------------------------------------------------------------------

def default_nlist(n: int) -> int:
    """Number of IVF buckets: about 4 sqrt(n), a power of two, at least 1 and at most n / 39
    (k-means wants ~39 training points per bucket)."""
    target = 4 * np.sqrt(max(n, 1))
    nlist = 2 ** int(round(np.log2(target)))
    return int(max(1, min(nlist, n // 39 or 1)))


def default_nprobe(nlist: int) -> int:
    """Buckets scanned per query: 1/64 of them, at least 16 (or all when there are fewer)."""
    return int(min(nlist, max(16, nlist // 64)))


def default_params(kind: str, n: int, d: int) -> dict:
    """Build and search settings of each kind (chosen from the measurements of chapter 11 and
    benchmarks/search_speed.py on grown collections of 2 x 10^5 and 10^6 clips)."""
    if kind == "flat":
        return {}
    if kind == "ivf":
        # recall@10 ~0.95-0.97 with text queries on the grown collections of chapter 11
        return {"nlist": default_nlist(n), "nprobe": default_nprobe(default_nlist(n))}
    if kind == "ivfpq":
        m = next(m for m in (d // 8, d // 4, d // 2, d, 1) if m >= 1 and d % m == 0)
        # 8-bit codebooks need ~10^4 training points; smaller collections get 4-bit ones
        return {"nlist": default_nlist(n), "nprobe": default_nprobe(default_nlist(n)), "m": m,
                "nbits": 8 if n >= 10_000 else 4,
                "k_factor": 32, "refine": "flat"}   # 10^6 clips: recall@10 0.92 with 8, 0.97 with 32
    if kind == "hnsw":
        return {"M": 32, "ef_construction": 80, "ef_search": 128}
    raise ValueError(f"unknown index kind {kind!r}; choose one of {KINDS}")


def min_clips(kind: str, params: dict) -> int:
    """The fewest clips an index of `kind` with `params` can be trained on (FAISS fails below)."""
    if kind == "ivf":
        return int(params["nlist"])
    if kind == "ivfpq":
        return max(int(params["nlist"]), 2 ** int(params["nbits"]))
    return 1


def make_index(kind: str, d: int, n: int, params: dict | None = None):
    """An empty FAISS index of `kind` for n vectors of dimension d (inner product metric)."""
    faiss = faiss_module()
    p = {**default_params(kind, n, d), **(params or {})}
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(d), p
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(p["M"]), ip)
        index.hnsw.efConstruction = int(p["ef_construction"])
        return index, p
    quantizer = faiss.IndexFlatIP(d)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, d, int(p["nlist"]), ip)
    else:
        index = faiss.IndexIVFPQ(quantizer, d, int(p["nlist"]), int(p["m"]), int(p["nbits"]), ip)
        if p.get("refine"):
            # re-score the best k * k_factor PQ candidates with exact (or 8-bit) vectors
            fine = faiss.IndexFlatIP(d) if p["refine"] == "flat" else \
                faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
            index = faiss.IndexRefine(index, fine)
    return index, p   # FAISS's Python wrapper keeps the quantizer alive with the index


def set_search_params(index, kind: str, params: dict) -> None:
    """Apply the search-time settings (nprobe, ef_search, k_factor) to a built index."""
    faiss = faiss_module()
    if kind in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    if kind == "ivfpq" and params.get("refine"):
        faiss.downcast_index(index).k_factor = float(params["k_factor"])
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = int(params["ef_search"])


def build_faiss(audio_emb: np.ndarray, kind: str = "flat", params: dict | None = None,
                train_size: int | None = None, seed: int = 0, chunk: int = 100_000):
    """Train (when the kind needs it) and fill an index with (n, d) float32 embeddings.

    IVF kinds train k-means (10 iterations) on a random sample of at most 40 points per bucket
    (`train_size`): FAISS's minimum without a warning is 39, its usual 64 costs 60 % more.
    A collection smaller than the kind needs (min_clips) gets an exact "flat" index when the
    parameters are the defaults (params then holds "fallback", a sentence saying why), and is
    refused when the parameters were given explicitly.
    Returns (index, params actually used); params["kind"] is the kind built.
    """
    faiss = faiss_module()
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {KINDS}")
    x = np.ascontiguousarray(audio_emb, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty (n, d) array of embeddings, got shape {x.shape}")
    n, d = x.shape
    p = {**default_params(kind, n, d), **(params or {})}
    need = min_clips(kind, p)
    if n < need:
        if params:
            raise ValueError(f"an {kind} index with {params} needs at least {need} clips to train, "
                             f"got {n}; use kind 'flat' (exact) or smaller parameters")
        note = (f"{n} clips are too few for an {kind} index (it trains on at least {need}): an exact "
                "flat index was built instead, which is also the fastest at this size")
        index, _ = make_index("flat", d, n)
        index.add(x)
        return index, {"kind": "flat", "fallback": note}
    index, p = make_index(kind, d, n, p)
    if not index.is_trained:
        size = min(n, train_size or 40 * int(p["nlist"]))
        sample = x if size == n else x[np.sort(np.random.default_rng(seed).choice(n, size, replace=False))]
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = int(p.get("kmeans_iters", 10))
        ivf.cp.seed = seed
        ivf.cp.max_points_per_centroid = max(64, -(-size // int(p["nlist"])))
        index.train(sample)
    for s in range(0, n, chunk):   # chunks bound the temporary memory of HNSW / PQ encoding
        index.add(x[s:s + chunk])
    set_search_params(index, kind, p)
    return index, {**p, "kind": kind}


def index_bytes(index) -> int:
    """Bytes of the index written to disk (what it holds in memory, give or take headers);
    through a temporary file, so a 3 GB index is not copied in memory to be measured."""
    faiss = faiss_module()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        return int(os.path.getsize(path))


# ---------------------------------------------------------------------------------------------
# The index with its names and provenance
# ---------------------------------------------------------------------------------------------

@dataclass
class AudioIndex:
    """A FAISS index over unit-norm audio embeddings, with clip names and provenance."""
    index: object
    names: list
    kind: str = "flat"
    params: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.names) != self.index.ntotal:
            raise ValueError(f"{len(self.names)} names for an index of {self.index.ntotal} vectors")

    @classmethod
    def build(cls, audio_emb, names, kind: str = "flat", params: dict | None = None,
              provenance: dict | None = None, seed: int = 0) -> "AudioIndex":
        """Build an index of `kind` (see build_faiss) over unit-norm embeddings, one name each."""
        audio_emb = np.asarray(audio_emb, dtype=np.float32)
        names = [str(n) for n in names]
        if audio_emb.ndim != 2 or len(names) != audio_emb.shape[0]:
            raise ValueError(f"need one name per embedding row: {len(names)} names, "
                             f"embeddings of shape {audio_emb.shape}")
        if not np.isfinite(audio_emb).all():
            raise ValueError("audio embeddings contain NaN or inf")
        norms = np.linalg.norm(audio_emb, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise ValueError("audio embeddings must be unit-norm (the audio encoder's output, eq. 2-6)")
        index, p = build_faiss(audio_emb, kind, params, seed=seed)
        built = p.pop("kind")
        return cls(index, names, built, p, dict(provenance or {}))

    @property
    def n_clips(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def text_model(self):
        return self.provenance.get("text_model")

    def search_embeddings(self, query_emb, k: int = 10):
        """(scores, indices) of the k best clips for (n_queries, d) query embeddings e_q."""
        k = check_k(k)
        q = np.asarray(query_emb)
        if q.dtype.kind not in "fiu":
            raise ValueError(f"query embeddings must be real numbers, got dtype {q.dtype}")
        q = np.ascontiguousarray(np.atleast_2d(q.astype(np.float32)))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"query embeddings are {q.shape[-1]}-d but the index holds {self.dim}-d "
                             f"audio embeddings")
        if not np.isfinite(q).all():
            raise ValueError("query embeddings contain NaN or inf")
        return self.index.search(q, min(k, self.n_clips))

    def check_text_model(self, text_model) -> None:
        """Refuse a query encoder other than the one the index's checkpoint was trained with."""
        mine = self.text_model
        if mine is None:
            raise QueryMismatch("this index does not record its text model, so no query can be "
                                "encoded in its space safely; rebuild it with `retrieval-lib index`")
        if canonical_text_model(text_model) != canonical_text_model(mine):
            raise QueryMismatch(
                f"the index was built with text model {mine!r} (checkpoint "
                f"{self.provenance.get('checkpoint', {}).get('file', '?')}), but the query would be "
                f"encoded with {text_model!r}: scores across two sentence models mean nothing. "
                f"Query with {mine!r}, or rebuild the index from a checkpoint trained with {text_model!r}.")

    def check_checkpoint(self, checkpoint) -> None:
        """Refuse a checkpoint other than the one whose audio encoder embedded the index."""
        info = self.provenance.get("checkpoint") or {}
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
        theirs = sha256_file(checkpoint)
        if info.get("sha256") != theirs:
            raise QueryMismatch(
                f"the index was built with checkpoint {info.get('file', '?')} (sha256 "
                f"{str(info.get('sha256'))[:12]}), but the query names checkpoint {Path(checkpoint).name} "
                f"(sha256 {theirs[:12]}): its audio embeddings live in another space. Rebuild the index "
                f"with `retrieval-lib index ... --checkpoint {checkpoint}`.")

    def search(self, queries, encoder, k: int = 10) -> list:
        """The k best files for each free-text query, encoded with `encoder` (the index's own
        text model, checked) and eq. 1. One query (a str) gives one list of
        {"rank", "file", "score"}; a list of queries gives a list of such lists."""
        from .text import query_embedding

        k = check_k(k)
        single = isinstance(queries, str)
        texts = [queries] if single else list(queries)
        if not texts:
            raise ValueError("no query given")
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"empty query {t!r}: type a description of a sound, "
                                 f"e.g. 'a dog barks while rain falls'")
        self.check_text_model(getattr(encoder, "model_name", "?"))
        try:
            sentence_emb = encoder.encode(texts)
        except ValueError as err:   # clean_caption: nothing left after removing punctuation
            raise ValueError(f"query refused: {err}") from err
        query_emb = query_embedding(sentence_emb).numpy()      # eq. 1, (n_queries, d)
        scores, idx = self.search_embeddings(query_emb, k)
        out = [[{"rank": r + 1, "file": self.names[i], "score": float(s)}
                for r, (s, i) in enumerate(zip(row_s, row_i)) if i >= 0]
               for row_s, row_i in zip(scores, idx)]
        return out[0] if single else out

    # -- saving and loading -------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write the index into `directory` (see the module docstring: new data files under a
        fresh name, index.json last, the previous save's files removed afterwards)."""
        faiss = faiss_module()
        directory = ensure_dir(directory, "index folder")
        meta_path = refuse_symlink(directory / META_FILE, "index record")
        previous = _data_files(directory, meta_path)
        save_id = uuid.uuid4().hex[:12]
        files = {"index": f"index-{save_id}.faiss", "names": f"names-{save_id}.json"}
        fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".faiss.tmp", dir=directory)
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            os.replace(tmp, directory / files["index"])
        finally:
            remove_file(tmp)
        atomic_write_json(directory / files["names"], self.names, indent=None)
        meta = {"format": INDEX_FORMAT, "kind": self.kind, "params": self.params,
                "n_clips": self.n_clips, "dim": self.dim, "provenance": self.provenance,
                "files": {role: {"file": name, "sha256": sha256_file(directory / name)}
                          for role, name in files.items()}}
        atomic_write_json(meta_path, meta)          # the switch: old files until here, new after
        stale = set(previous) | {p.name for pattern in ("index-*.faiss", "names-*.json")
                                 for p in directory.glob(pattern)}   # also of interrupted saves
        for name in stale - set(files.values()):
            remove_file(directory / name)
        return directory

    @classmethod
    def load(cls, directory) -> "AudioIndex":
        """Read an index folder (both formats); a missing or damaged file raises an error that
        names it and says what to do."""
        faiss = faiss_module()
        directory = Path(directory)
        meta_path = directory / META_FILE
        rebuild = f"rebuild it with `retrieval-lib index <audio folder> --out {directory}`"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} holds no search index (no {META_FILE}); build one "
                                    f"with `retrieval-lib index <audio folder> --out {directory}`")
        meta = read_json(meta_path, "index record", rebuild)
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_path}: not an index record (a JSON object); {rebuild}")
        if meta.get("format") not in (1, INDEX_FORMAT):
            raise ValueError(f"{directory}: index format {meta.get('format')!r}, this library reads "
                             f"formats 1 and {INDEX_FORMAT}; {rebuild}")
        kind, params = meta.get("kind"), meta.get("params")
        if kind not in KINDS or not isinstance(params, dict):
            raise ValueError(f"{meta_path}: names the index kind {kind!r} (known: {', '.join(KINDS)}) "
                             f"or lacks its parameters; {rebuild}")
        files = _files_of(meta, meta_path, rebuild)
        for role, entry in files.items():
            path = directory / entry["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing ({role} of the index); {rebuild}")
            if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
                raise ValueError(f"{path}: its content differs from what {META_FILE} records "
                                 f"(damaged, or from another save); {rebuild}")
        index_path = directory / files["index"]["file"]
        try:
            index = faiss.read_index(str(index_path))
        except Exception as err:       # FAISS raises RuntimeError with C++ text
            raise ValueError(f"{index_path}: not a readable FAISS index ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); {rebuild}") from None
        names = read_json(directory / files["names"]["file"], "clip names", rebuild)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{directory / files['names']['file']}: not a list of clip names; {rebuild}")
        if len(names) != index.ntotal:
            raise ValueError(f"{directory}: {len(names)} names for an index of {index.ntotal} "
                             f"vectors (files from two saves); {rebuild}")
        try:
            set_search_params(index, kind, params)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{meta_path}: the {kind} parameters {params} do not fit the index "
                             f"({type(err).__name__}: {err}); {rebuild}") from None
        return cls(index, names, kind, params, meta.get("provenance") or {})


def _files_of(meta: dict, meta_path: Path, rebuild: str) -> dict:
    if meta.get("format") == 1:
        return {role: {"file": name} for role, name in LEGACY_FILES.items()}
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != set(LEGACY_FILES) or \
            not all(isinstance(v, dict) and isinstance(v.get("file"), str) for v in files.values()):
        raise ValueError(f"{meta_path}: does not list the index's files; {rebuild}")
    for entry in files.values():
        if "/" in entry["file"] or "\\" in entry["file"] or entry["file"].startswith("."):
            raise ValueError(f"{meta_path}: names a file outside the index folder "
                             f"({entry['file']!r}); {rebuild}")
    return files


def _data_files(directory: Path, meta_path: Path) -> list[str]:
    """The data files of the index currently saved in `directory` (to remove after a new save)."""
    out = list(LEGACY_FILES.values())
    try:
        meta = read_json(meta_path, "index record") if meta_path.is_file() else None
        if isinstance(meta, dict) and isinstance(meta.get("files"), dict):
            out += [e["file"] for e in meta["files"].values() if isinstance(e, dict)
                    and isinstance(e.get("file"), str) and "/" not in e["file"]]
    except ValueError:
        pass
    return out


def index_frontend(index: AudioIndex) -> str | None:
    """The audio front end whose vectors an index holds (from its provenance, any format)."""
    return normalize_provenance(index.provenance).get("audio_frontend")


__all__ = ["KINDS", "AudioIndex", "QueryMismatch", "build_faiss", "make_index", "default_params",
           "default_nlist", "default_nprobe", "set_search_params", "index_bytes", "min_clips",
           "faiss_module", "index_frontend"]
