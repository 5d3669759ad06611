"""Search at scale: an index over audio embeddings, queried by free text.

The paper ranks ~1,000 clips by brute force (one matrix product). A real collection holds
millions of clips; this module puts the trained system to work on one:

* `make_index` / `AudioIndex` wrap a FAISS index over the fused audio embeddings e_at (eq. 2-6,
  unit norm, so inner product = cosine). Kinds: "flat" (exact, every clip scored), "ivf"
  (IVF-flat: clips bucketed by k-means, a query scans the `nprobe` nearest buckets), "ivfpq"
  (IVF with product-quantised codes, top candidates re-scored exactly) and "hnsw" (a graph).
  An AudioIndex keeps its clip names and a provenance (checkpoint, text model, PaSST variant)
  and saves / loads as a folder.
* `folder_logits` extracts PaSST logits of every audio file of a folder with the corpus
  pipeline's windowing and resampling (audio.load_audio + audio.PasstLogitExtractor), resumably
  (shards, like the pipeline), skipping unreadable files by name.
* `index_folder` (`retrieval-lib index`) = logits -> checkpoint's audio encoder -> index on disk;
  `open_index(...).search(query)` (`retrieval-lib search`) encodes the query with the index's
  own text model (eq. 1) and returns the best files. A query model or checkpoint that differs
  from the index's is refused, naming both.
* `grow_logits` makes a large, clearly synthetic collection from a corpus (mixtures of its
  clips' events plus noise) for measuring search at scale (chapter 11, benchmarks/search_speed.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__

KINDS = ("flat", "ivf", "ivfpq", "hnsw")
# What soundfile (libsndfile) reads; anything else in a folder is reported and skipped.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                    ".snd", ".w64", ".caf", ".opus")
INDEX_FORMAT = 1
_INDEX_FILE, _NAMES_FILE, _META_FILE, _WORK = "index.faiss", "names.json", "index.json", "_work"


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("search needs FAISS: pip install faiss-cpu "
                          "(or pip install 'retrieval_lib[search]')") from err
    return faiss


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


def make_index(kind: str, d: int, n: int, params: dict | None = None):
    """An empty FAISS index of `kind` for n vectors of dimension d (inner product metric)."""
    faiss = _faiss()
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
    faiss = _faiss()
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
    Returns (index, params actually used).
    """
    faiss = _faiss()
    x = np.ascontiguousarray(audio_emb, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty (n, d) array of embeddings, got shape {x.shape}")
    n, d = x.shape
    index, p = make_index(kind, d, n, params)
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
    return index, p


def index_bytes(index) -> int:
    """Bytes of the index written to disk (what it holds in memory, give or take headers);
    through a temporary file, so a 3 GB index is not copied in memory to be measured."""
    import tempfile

    faiss = _faiss()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        return int(os.path.getsize(path))


def measure_search(search_fn, query_emb, exact_idx=None, k: int = 10, n_single: int = 100) -> dict:
    """Speed and quality of a search function `search_fn(queries (m, d), k) -> (scores, idx)`.

    queries/s for the whole batch in one call and for `n_single` queries one at a time (a user
    typing), and recall@k against `exact_idx` (the exact top-k of the same queries) if given.
    """
    q = np.ascontiguousarray(query_emb, dtype=np.float32)
    t0 = time.perf_counter()
    _, idx = search_fn(q, k)
    batch_s = time.perf_counter() - t0
    n_single = min(n_single, len(q))
    t0 = time.perf_counter()
    for i in range(n_single):
        search_fn(q[i:i + 1], k)
    single_s = time.perf_counter() - t0
    row = {"queries/s (batch)": len(q) / batch_s, "queries/s (single)": n_single / single_s,
           "batch seconds": batch_s, "n_queries": len(q), "n_single": n_single}
    if exact_idx is not None:
        row[f"recall@{k}"] = recall_at_k(idx, np.asarray(exact_idx)[:, :k])
    return row


def exact_top_k(query_emb, audio_emb, k: int = 10, chunk: int = 100_000):
    """Exact top-k by matrix product with torch (the brute force of chapter 10, in chunks of
    clips so a large collection never needs an (n_queries, n_clips) matrix in memory).
    Returns (scores, indices), each (n_queries, k), best first."""
    import torch

    q = torch.as_tensor(np.ascontiguousarray(query_emb, dtype=np.float32))
    a = torch.as_tensor(np.ascontiguousarray(audio_emb, dtype=np.float32))
    k = min(k, a.shape[0])
    best_s = torch.full((q.shape[0], k), -float("inf"))
    best_i = torch.zeros((q.shape[0], k), dtype=torch.long)
    for s in range(0, a.shape[0], chunk):
        scores = q @ a[s:s + chunk].T                       # (n_queries, chunk)
        top_s, top_i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        cat_s, cat_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i + s], 1)
        best_s, pos = torch.topk(cat_s, k, dim=1)
        best_i = torch.gather(cat_i, 1, pos)
    return best_s.numpy(), best_i.numpy()


def recall_at_k(approx_idx, exact_idx) -> float:
    """Mean fraction of the exact top-k found by the approximate search (k = row length)."""
    approx_idx, exact_idx = np.asarray(approx_idx), np.asarray(exact_idx)
    k = exact_idx.shape[1]
    hits = [len(set(a[:k].tolist()) & set(e.tolist())) for a, e in zip(approx_idx, exact_idx)]
    return float(np.mean(hits) / k)


# ---------------------------------------------------------------------------------------------
# The index with its names and provenance
# ---------------------------------------------------------------------------------------------

def canonical_text_model(name) -> str:
    """One spelling per sentence model (the offline MiniLM has several aliases)."""
    from .text import OFFLINE_ALIASES, OFFLINE_TEXT_MODEL

    name = str(name)
    return OFFLINE_TEXT_MODEL if name in OFFLINE_ALIASES else name


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class QueryMismatch(ValueError):
    """A query that would be encoded with another text model or checkpoint than the index's."""


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
        audio_emb = np.asarray(audio_emb, dtype=np.float32)
        names = [str(n) for n in names]
        if audio_emb.ndim != 2 or len(names) != audio_emb.shape[0]:
            raise ValueError(f"need one name per embedding row: {len(names)} names, "
                             f"embeddings of shape {audio_emb.shape}")
        norms = np.linalg.norm(audio_emb, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise ValueError("audio embeddings must be unit-norm (the audio encoder's output, eq. 2-6)")
        index, p = build_faiss(audio_emb, kind, params, seed=seed)
        return cls(index, names, kind, p, dict(provenance or {}))

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
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(query_emb, dtype=np.float32)))
        if q.shape[1] != self.dim:
            raise ValueError(f"query embeddings are {q.shape[1]}-d but the index holds {self.dim}-d "
                             f"audio embeddings")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return self.index.search(q, min(int(k), self.n_clips))

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
        theirs = file_sha256(checkpoint)
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

    def save(self, directory) -> Path:
        """index.faiss + names.json + index.json (kind, params, provenance); index.json last."""
        faiss = _faiss()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / ("tmp_" + _INDEX_FILE)
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, directory / _INDEX_FILE)
        (directory / _NAMES_FILE).write_text(json.dumps(self.names))
        meta = {"format": INDEX_FORMAT, "kind": self.kind, "params": self.params,
                "n_clips": self.n_clips, "dim": self.dim, "provenance": self.provenance}
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory) -> "AudioIndex":
        faiss = _faiss()
        directory = Path(directory)
        meta_path = directory / _META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory} holds no search index (no {_META_FILE}); "
                                    f"build one with `retrieval-lib index <audio folder> --out {directory}`")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"{directory}: index format {meta.get('format')!r}, this library reads "
                             f"format {INDEX_FORMAT}; rebuild the index")
        index = faiss.read_index(str(directory / _INDEX_FILE))
        names = json.loads((directory / _NAMES_FILE).read_text())
        set_search_params(index, meta["kind"], meta["params"])
        return cls(index, names, meta["kind"], meta["params"], meta.get("provenance", {}))


# ---------------------------------------------------------------------------------------------
# From a folder of audio files to logits (resumable) and to an index
# ---------------------------------------------------------------------------------------------

def list_audio(folder):
    """(audio files, other files) under `folder`, as sorted paths relative to it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    audio, other = [], []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            (audio if path.suffix.lower() in AUDIO_EXTENSIONS else other).append(
                path.relative_to(folder).as_posix())
    return audio, other


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _load_shards(work_dir: Path) -> dict:
    """{file: (stamp, logits)} from the finished shards; later shards win (a re-extracted file)."""
    done = {}
    for shard in sorted(work_dir.glob("shard_*.npz")):
        with np.load(shard) as z:
            for name, stamp, row in zip(z["names"].tolist(), z["stamps"].tolist(), z["logits"]):
                done[name] = (stamp, row)
    return done


def passt_settings(variant: str, pretrained: bool, seed: int | None = None) -> dict:
    """What the logits of a folder depend on (compared on resume, so shards never mix)."""
    from .audio import PASST_SR, VARIANTS

    spec = VARIANTS[variant]
    out = {"passt_variant": variant, "passt_arch": spec["arch"], "passt_pretrained": bool(pretrained),
           "sample_rate": PASST_SR, "window_s": spec["window_ms"] / 1000, "hop_s": spec["hop_ms"] / 1000}
    if not pretrained:
        out["random_seed"] = seed   # two random networks give unrelated logits
    return out


def folder_logits(folder, extractor, work_dir, shard_size: int = 16, progress: bool = True,
                  settings: dict | None = None):
    """PaSST logits of every audio file under `folder`, resuming from shards in `work_dir`.

    Each file is read with audio.load_audio (mono, resampled to 32 kHz) and forwarded by the
    extractor with the corpus pipeline's windowing. Every `shard_size` files a shard is written
    (atomically), so an interrupted run resumes; a file changed since (size or time) is redone.
    Unreadable, corrupt, too short and non-audio files are reported by name and skipped.
    `extractor`: a PasstLogitExtractor, or a function returning one (called only when some file
    needs PaSST, so a finished folder costs no model build). `settings`: what the logits depend
    on (default: passt_settings of the extractor), refused on resume if it changed.
    Returns (names, (n, 527) logits, skipped [{"file", "error"}]).
    """
    from .audio import MIN_SAMPLES, PASST_SR, AudioError, load_audio
    from .pipeline import _atomic_savez, _check_work_settings

    folder, work_dir = Path(folder), Path(work_dir)
    audio, other = list_audio(folder)
    skipped = [{"file": name, "error": "not an audio file (extension not in "
                                       "retrieval_lib.search.AUDIO_EXTENSIONS)"} for name in other]
    if not audio:
        listed = f" (it holds {len(other)} other files, e.g. {other[:3]})" if other else " (it is empty)"
        raise ValueError(f"{folder}: no audio file to index{listed}; audio files end in "
                         f"{', '.join(AUDIO_EXTENSIONS[:5])}, ...")
    if settings is None:
        settings = passt_settings(extractor.variant, extractor.pretrained)
    _check_work_settings(work_dir, settings)   # refuse shards made by another PaSST
    done = _load_shards(work_dir)
    stamps = {name: _stamp(folder / name) for name in audio}
    todo = [n for n in audio if n not in done or done[n][0] != stamps[n]]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(audio), initial=len(audio) - len(todo), desc="PaSST logits", unit="file")
    next_id = max([int(p.stem.split("_")[1]) + 1 for p in work_dir.glob("shard_*.npz")], default=0)
    for s in range(0, len(todo), shard_size):
        names, waves = [], []
        for name in todo[s:s + shard_size]:
            try:
                wave = load_audio(folder / name, PASST_SR, resample=True)
                if wave.size < MIN_SAMPLES:
                    raise AudioError(f"{folder / name}: {wave.size / PASST_SR:.3f} s is too short for "
                                     f"PaSST (at least {MIN_SAMPLES / PASST_SR:.2f} s)")
            except AudioError as err:
                skipped.append({"file": name, "error": str(err)})
                continue
            names.append(name)
            waves.append(wave)
        if names:
            if not hasattr(extractor, "logits"):
                extractor = extractor()   # built on first use
            logits = extractor.logits(waves).astype(np.float32)
            _atomic_savez(work_dir / f"shard_{next_id:05d}.npz", names=np.array(names),
                          stamps=np.array([stamps[n] for n in names]), logits=logits)
            next_id += 1
            done.update({n: (stamps[n], row) for n, row in zip(names, logits)})
        if bar is not None:
            bar.update(len(todo[s:s + shard_size]))
    if bar is not None:
        bar.close()
    kept = [n for n in audio if n in done and done[n][0] == stamps[n]]
    if not kept:
        raise ValueError(f"{folder}: none of its {len(audio)} audio files could be read: "
                         + "; ".join(f"{x['file']}: {x['error']}" for x in skipped[:5]))
    logits = np.stack([done[n][1] for n in kept]).astype(np.float32)
    return kept, logits, skipped


def checkpoint_provenance(result) -> dict:
    """The checkpoint's provenance dict, or {} for a checkpoint saved before it was recorded."""
    prov = getattr(result, "provenance", None)
    return dict(prov) if isinstance(prov, dict) else {}


def _pick(what: str, from_checkpoint, asked, default=None):
    """A setting from the checkpoint's provenance, checked against what the user asked."""
    if from_checkpoint is not None and asked is not None and \
            canonical_text_model(from_checkpoint) != canonical_text_model(asked):
        raise QueryMismatch(f"the checkpoint was trained with {what} {from_checkpoint!r}, but "
                            f"{asked!r} was asked: use {from_checkpoint!r} (or leave the option out)")
    value = from_checkpoint if from_checkpoint is not None else asked
    if value is None:
        value = default
    if value is None:
        raise ValueError(f"the checkpoint does not record its {what}; pass it explicitly "
                         f"(--{what.replace(' ', '-')})")
    return value


def embed_logits(result, logits, tag_emb, chunk: int = 65_536) -> np.ndarray:
    """(n, d) float32 fused audio embeddings e_at (eq. 2-6) of (n, 527) logits."""
    import torch

    model = result.build_model(tag_emb)
    out = []
    with torch.no_grad():
        for s in range(0, len(logits), chunk):
            out.append(model(torch.as_tensor(np.asarray(logits[s:s + chunk], dtype=np.float32))).numpy())
    return np.concatenate(out).astype(np.float32)


def index_folder(folder, checkpoint, out, *, kind: str = "flat", params: dict | None = None,
                 text_model: str | None = None, passt_variant: str | None = None,
                 random_passt: bool = False, extractor=None, text_encoder=None,
                 batch_size: int = 8, device=None, amp=None, shard_size: int = 16,
                 progress: bool = True, seed: int = 0) -> dict:
    """Index every audio file under `folder` with a trained checkpoint; write the index to `out`.

    The text model (for W_t, eq. 3-4, and later for the queries) and the PaSST variant come
    from the checkpoint's provenance when it records them; `text_model` / `passt_variant`
    are then only checked against it (a mismatch is refused, naming both). Logits are cached
    in out/_work, so a second run resumes or adds new files only (PaSST is built only when
    some file needs it). extractor: a ready PasstLogitExtractor (else one is built from
    passt_variant / random_passt / device / batch_size / amp); seed: the random PaSST's seed
    (recorded with the logits) and k-means'. Returns a summary dict.
    """
    from .audio import PasstLogitExtractor
    from .tags import encode_tag_names
    from .text import TextEncoder
    from .train import TrainResult

    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    result = TrainResult.load(checkpoint)
    prov = checkpoint_provenance(result)
    text_model = _pick("text model", prov.get("text_model"),
                       text_model if text_model is None else str(text_model))
    variant = _pick("passt variant", prov.get("passt_variant"), passt_variant, default="10s")
    started = time.perf_counter()
    if extractor is None:
        pretrained = not random_passt
        extractor = lambda: PasstLogitExtractor(variant, pretrained=pretrained, device=device,  # noqa: E731
                                                batch_size=batch_size, amp=amp,
                                                seed=None if pretrained else seed)
    else:
        pretrained = extractor.pretrained
        if extractor.variant != variant:
            raise QueryMismatch(f"the checkpoint was trained on PaSST {variant!r} logits, "
                                f"the extractor is PaSST {extractor.variant!r}")
    if prov.get("passt_pretrained") is True and not pretrained:
        warnings.warn("random-weight PaSST with a checkpoint trained on pretrained PaSST logits: "
                      "the search results are meaningless (plumbing test only)")
    if prov.get("synthetic") and pretrained:
        warnings.warn("the checkpoint was trained on simulated logits, not on PaSST's: train one "
                      "on real data (chapter 6 with DATA = 'clotho') to search real sounds")
    names, logits, skipped = folder_logits(folder, extractor, out / _WORK, shard_size, progress,
                                           settings=passt_settings(variant, pretrained, seed))
    encoder = text_encoder if text_encoder is not None else TextEncoder(text_model, device=device)
    if canonical_text_model(encoder.model_name) != canonical_text_model(text_model):
        raise QueryMismatch(f"the checkpoint was trained with text model {text_model!r}, "
                            f"the encoder given is {encoder.model_name!r}")
    tag_emb = encode_tag_names(encoder)                 # W_t in the checkpoint's text space
    out_dim = result.state_dict["linear.weight"].shape[0]
    if tag_emb.shape[1] != out_dim:
        raise QueryMismatch(f"text model {text_model!r} gives {tag_emb.shape[1]}-d embeddings but the "
                            f"checkpoint {checkpoint.name} projects audio to {out_dim}-d")
    audio_emb = embed_logits(result, logits, tag_emb)
    provenance = {
        "text_model": str(text_model),
        "passt_variant": variant,
        "passt_pretrained": bool(pretrained),
        "checkpoint": {"file": checkpoint.name, "path": str(checkpoint.resolve()),
                       "sha256": file_sha256(checkpoint), "config": result.config.label(),
                       "provenance": prov},
        "folder": str(Path(folder).resolve()),
        "skipped": skipped,
        "library_version": __version__,
    }
    if not pretrained:
        provenance["warning"] = "random-weight PaSST: the index is for plumbing tests only"
    index = AudioIndex.build(audio_emb, names, kind, params, provenance, seed=seed)
    index.save(out)
    return {"out": out, "n_indexed": len(names), "skipped": skipped, "index": index,
            "seconds": time.perf_counter() - started}


def open_index(directory, *, text_model: str | None = None, checkpoint=None) -> AudioIndex:
    """Load an index; refuse it when `text_model` or `checkpoint` (what the caller means to
    query with) differ from those it was built with."""
    index = AudioIndex.load(directory)
    if text_model is not None:
        index.check_text_model(text_model)
    if checkpoint is not None:
        index.check_checkpoint(checkpoint)
    return index


def search_folder_index(directory, query, k: int = 10, *, text_model: str | None = None,
                        checkpoint=None, encoder=None, device=None) -> list:
    """`retrieval-lib search`: the k best files of an index for a free-text query."""
    from .text import TextEncoder

    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"empty query {query!r}: type a description of a sound, "
                         f"e.g. 'a dog barks while rain falls'")
    index = open_index(directory, text_model=text_model, checkpoint=checkpoint)
    if encoder is None:
        encoder = TextEncoder(index.text_model, device=device)
    return index.search(query, encoder, k)


# ---------------------------------------------------------------------------------------------
# A large collection grown from a corpus (synthetic, for measuring search at scale)
# ---------------------------------------------------------------------------------------------

GROWN_NOTE = ("SYNTHETIC grown collection: mixtures of the corpus's clips (event probabilities "
              "combined, plus noise on the logits), embedded by the trained audio encoder")


def grow_logits(logits, n: int, seed: int = 0, noise: float = 0.5, chunk: int = 65_536):
    """Yield (start, (m, 527) logits) chunks of n synthetic clips grown from source clips.

    Clip i mixes two source clips a, b: the probability of each event is that of either
    occurring, p = 1 - (1 - p_a)(1 - g p_b) with a random gain g in [0, 1] (g = 0: a alone, a
    near-duplicate), then Gaussian noise of std `noise` is added to the logits. The first rows
    are the source clips themselves. The result keeps the corpus's structure (its events,
    their co-occurrences), which is what approximate indexes exploit, unlike i.i.d. noise.
    """
    src = np.asarray(logits, dtype=np.float32)
    p_src = 1.0 / (1.0 + np.exp(-src.astype(np.float64)))
    n_src = src.shape[0]
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        a = rng.integers(0, n_src, m)
        b = rng.integers(0, n_src, m)
        gain = rng.uniform(0, 1, (m, 1)) * (rng.uniform(size=(m, 1)) < 0.7)
        p = 1.0 - (1.0 - p_src[a]) * (1.0 - gain * p_src[b])
        p = np.clip(p, 1e-7, 1 - 1e-7)
        out = (np.log(p) - np.log1p(-p)).astype(np.float32)
        out += rng.normal(0, noise, out.shape).astype(np.float32)
        first = max(0, min(n_src - start, m))   # the source clips come first, unchanged
        if first:
            out[:first] = src[start:start + first]
        yield start, out


def grown_embeddings(result, logits, tag_emb, n: int, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """(n, d) float32 embeddings of a grown collection (see grow_logits), built chunk by chunk."""
    d = result.state_dict["linear.weight"].shape[0]
    out = np.empty((n, d), dtype=np.float32)
    for start, chunk in grow_logits(logits, n, seed, noise):
        out[start:start + len(chunk)] = embed_logits(result, chunk, tag_emb)
    return out


__all__ = ["KINDS", "AUDIO_EXTENSIONS", "AudioIndex", "QueryMismatch", "build_faiss", "make_index",
           "default_params", "exact_top_k", "recall_at_k", "index_bytes", "measure_search", "list_audio",
           "folder_logits", "passt_settings", "embed_logits", "index_folder", "open_index", "search_folder_index",
           "grow_logits", "grown_embeddings", "GROWN_NOTE", "canonical_text_model"]


# ---------------------------------------------------------------------------------------------
# Command line: `retrieval-lib index` and `retrieval-lib search` (registered by __main__.py)
# ---------------------------------------------------------------------------------------------

def add_cli_commands(sub) -> None:
    """Add the `index` and `search` subcommands to the library's argparse subparsers."""
    from .audio import VARIANTS

    p = sub.add_parser("index", help="index a folder of audio files for text search",
                       description="PaSST logits of every audio file in a folder (resumable; unreadable "
                                   "files reported and skipped) -> the checkpoint's audio encoder -> "
                                   "a FAISS index saved in --out.")
    p.add_argument("folder", help="folder of audio files (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="a trained model (TrainResult.save, e.g. from chapter 6)")
    p.add_argument("--out", required=True, help="index folder (also holds the resumable logits in _work/)")
    p.add_argument("--kind", default="flat", choices=KINDS,
                   help="flat: exact (default; right up to ~10^5 files); ivf / ivfpq / hnsw: approximate")
    p.add_argument("--text-model", default=None,
                   help="sentence model of the checkpoint (default: read from the checkpoint)")
    p.add_argument("--passt-variant", default=None, choices=sorted(VARIANTS),
                   help="PaSST variant of the checkpoint's logits (default: read from it, else 10s)")
    p.add_argument("--random-passt", action="store_true",
                   help="random-initialised PaSST (no download; for plumbing tests only)")
    p.add_argument("--batch-size", type=int, default=8, help="PaSST windows per forward pass")
    p.add_argument("--shard-size", type=int, default=16, help="files per resumable shard")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="fp32 PaSST forward passes even on CUDA")
    p.add_argument("--seed", type=int, default=0, help="seed of the random PaSST and of k-means")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    q = sub.add_parser("search", help="search an index by a free-text query",
                       description="Encode the query with the index's own text model (eq. 1) and "
                                   "print the best files with their scores (cosine).")
    q.add_argument("index", help="index folder written by `retrieval-lib index`")
    q.add_argument("query", help='a description of a sound, e.g. "a dog barks while rain falls"')
    q.add_argument("-k", type=int, default=10, help="number of files shown (default 10)")
    q.add_argument("--text-model", default=None,
                   help="refuse the index unless it was built for this text model")
    q.add_argument("--checkpoint", default=None,
                   help="refuse the index unless it was built with this checkpoint")
    q.add_argument("--device", default=None, help="device of the sentence model")


def run_cli_command(args) -> int:
    """Run `index` or `search`; bad input gives one line on stderr and exit status 2."""
    import sys

    from .audio import AudioError

    try:
        if args.command == "index":
            if args.batch_size < 1 or args.shard_size < 1:
                raise ValueError("--batch-size and --shard-size must be >= 1")
            out = index_folder(args.folder, args.checkpoint, args.out, kind=args.kind,
                               text_model=args.text_model, passt_variant=args.passt_variant,
                               random_passt=args.random_passt, batch_size=args.batch_size,
                               device=args.device, amp=False if args.no_amp else None,
                               shard_size=args.shard_size, progress=not args.no_progress,
                               seed=args.seed)
            index = out["index"]
            print(f"indexed {out['n_indexed']} files into {out['out']} ({index.kind}, {index.dim}-d, "
                  f"text model {index.text_model}) in {out['seconds']:.1f} s")
            for item in out["skipped"]:
                print(f"skipped {item['file']}: {item['error']}")
            if "warning" in index.provenance:
                print(f"NOTE: {index.provenance['warning']}")
            return 0
        if args.command == "search":
            if args.k < 1:
                raise ValueError(f"-k must be >= 1, got {args.k}")
            hits = search_folder_index(args.index, args.query, args.k, text_model=args.text_model,
                                       checkpoint=args.checkpoint, device=args.device)
            index_meta = json.loads((Path(args.index) / _META_FILE).read_text())
            print(f"query: {args.query}")
            print(f"{'rank':>4}  {'score':>6}  file")
            for hit in hits:
                print(f"{hit['rank']:>4}  {hit['score']:6.3f}  {hit['file']}")
            if "warning" in index_meta.get("provenance", {}):
                print(f"NOTE: {index_meta['provenance']['warning']}")
            return 0
    except (ValueError, FileNotFoundError, AudioError) as err:
        print(f"retrieval-lib {args.command}: error: {err}", file=sys.stderr)
        return 2
    raise ValueError(f"not a search command: {args.command!r}")
