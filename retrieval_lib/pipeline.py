"""From Clotho WAVs and captions to trained models: the whole paper in one call.

`run_pipeline` (and `python -m retrieval_lib pipeline`) does, in order:

1. optionally download Clotho v2.1 (clotho.download_clotho);
2. read every split's captions CSV first, so a bad CSV is refused before any model is built
   and before hours of extraction;
3. extract the audio front end's vectors (PaSST logits by default; any core.AudioFrontend) for
   every clip through core.ShardStore: a shard cache_dir/_work/{split}/shard_NNNNN.npz every
   `shard_size` clips, so an interrupted run resumes where it stopped and recomputes nothing
   already written; a missing or unreadable WAV is reported by name and skipped with its
   captions (recorded in the provenance), or refused with strict=True; never replaced by zeros;
4. encode the cleaned captions and the front end's class names (W_t, eq. 3-4) with the sentence
   model;
5. write the embedding corpus with data.Corpus.save (the format every chapter reads), with a
   provenance saying what the data is (clotho.release_record: the complete published release,
   or a mirror / a part of it) and what made the vectors (the front end's identity);
6. train the paper's two systems (lam = 1.0 and 0.8; only the first when the front end has no
   class names) with train_models on `device`, and write their test metrics (CSV) and
   checkpoints.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .audio import load_clip
from .clotho import SPLIT_MAP, download_clotho, is_fake, read_split, release_record
from .core import (DEFAULT_AUDIO_FRONTEND, DEFAULT_TEXT_MODEL, AudioFrontend, ShardStore,
                   atomic_write, atomic_write_json, canonical_text_model, ensure_dir, read_json)
from .data import SPLITS, Corpus, RetrievalSplit
from .frontends import make_frontend
from .tags import encode_tag_names
from .text import TextEncoder
from .train import TrainConfig, results_table, save_results, train_models

SYSTEMS = {"PaSST-MPnet": 1.0, "PaSST-MPnet-tags": 0.8}   # name -> lam (paper section 3)
WORK = "_work"


def system_names(frontend_name: str, text_model: str) -> dict:
    """{system name: lam} of the paper's two systems for a front end and a text model: the
    paper's names for PaSST + MPNet, "<front end>+<text model>" (and "-tags") otherwise."""
    if frontend_name.startswith("passt") and canonical_text_model(text_model) == DEFAULT_TEXT_MODEL:
        return dict(SYSTEMS)
    base = f"{frontend_name}+{str(canonical_text_model(text_model)).rsplit('/', 1)[-1]}"
    return {base: 1.0, f"{base}-tags": 0.8}


# ---------------------------------------------------------------------------------------------
# Text: cached per split, since MPNet on a CPU takes minutes for Clotho's 25k captions
# ---------------------------------------------------------------------------------------------

def _encode_cached(encoder: TextEncoder, texts, path: Path, progress: bool) -> np.ndarray:
    """Sentence embeddings of `texts`, cached in `path` (+ a .json key of model and texts)."""
    key = {"model": str(encoder.model_name), "texts": list(texts)}
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        try:
            if read_json(meta, "caption-embedding key") == key:
                emb = np.load(path, allow_pickle=False)
                if emb.shape[0] == len(key["texts"]):
                    return emb
        except (ValueError, OSError):
            pass                    # a damaged cache entry is recomputed
    emb = encoder.encode(texts, clean=True, show_progress=progress)
    atomic_write(path, lambda f: np.save(f, emb))
    atomic_write_json(meta, key, indent=None)
    return emb


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

def make_text_encoder(text_model: str | None = None, device=None) -> TextEncoder:
    """The sentence model by name (None = the paper's all-mpnet-base-v2); recorded under its
    canonical name (aliases such as "offline" resolved)."""
    return TextEncoder(text_model or DEFAULT_TEXT_MODEL, device=device)


def embed_split(split: str, folder: Path, rows, frontend: AudioFrontend, text_encoder: TextEncoder,
                work_dir: Path, shard_size: int = 128, strict: bool = False, progress: bool = True):
    """One split of a corpus from its clips: rows = [(file name relative to folder, [captions])].

    The front end's vectors are extracted resumably (core.ShardStore), the cleaned captions of
    the clips that could be read are encoded (cached in work_dir). Returns (RetrievalSplit,
    skipped files)."""
    store = ShardStore(work_dir, frontend.settings())
    items = [(name, Path(folder) / name) for name, _ in rows]
    vectors, skipped = store.extract(
        items, lambda path: load_clip(path, frontend.sample_rate, frontend.min_samples), frontend.embed,
        shard_size=shard_size, strict=strict, progress=progress,
        desc=f"{frontend.name} ({split})", unit="clip",
        on_skip=lambda name, err: warnings.warn(f"skipping {name!r} in split {split!r} and its "
                                                f"captions: {err}"))
    kept = [(name, caps) for name, caps in rows if name in vectors]
    if not kept:
        raise ValueError(f"split {split!r}: no usable clip left in {folder} "
                         f"({len(skipped)} unreadable, e.g. {skipped[:2]})")
    captions = [c for _, caps in kept for c in caps]
    caption_clip = np.repeat(np.arange(len(kept)), [len(caps) for _, caps in kept])
    text_emb = _encode_cached(text_encoder, captions, Path(work_dir) / "text_emb.npy", progress)
    return RetrievalSplit(split, np.stack([vectors[n] for n, _ in kept]), text_emb,
                          caption_clip, [n for n, _ in kept], captions), skipped


def _check_data_dir(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} is a file, not a folder: point to the folder "
                                "holding Clotho's captions CSVs and split folders")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist (pass download=True / "
                                "--download, or point to a copy of Clotho)")


def _as_frontend(frontend, *, frontend_name, pretrained, device, batch_size, autocast, seed,
                 progress) -> AudioFrontend:
    if frontend is None:
        return make_frontend(frontend_name, pretrained=pretrained, device=device,
                             batch_size=batch_size, autocast=autocast, seed=seed, progress=False)
    if not isinstance(frontend, AudioFrontend):
        raise ValueError(f"frontend must be a core.AudioFrontend (e.g. from frontends.make_frontend), "
                         f"got {type(frontend).__name__}")
    return frontend


def corpus_tags(frontend: AudioFrontend, text_encoder: TextEncoder) -> "np.ndarray | None":
    """W_t: the text embeddings of the front end's class names (None when it has none)."""
    return encode_tag_names(text_encoder, tuple(frontend.class_names)) if frontend.class_names else None


def build_corpus(data_dir, cache_dir, frontend: AudioFrontend | None = None,
                 text_encoder: TextEncoder | None = None, shard_size: int = 128, strict: bool = False,
                 progress: bool = True, *, text_model: str | None = None,
                 frontend_name: str = DEFAULT_AUDIO_FRONTEND, pretrained: bool = True,
                 batch_size: int | None = None, autocast=None, device=None,
                 seed: int | None = None, passt_variant: str | None = None) -> Corpus:
    """Steps 2-5: captions, audio vectors, sentence embeddings -> Corpus saved in cache_dir.

    frontend / text_encoder: ready objects; when None they are built from frontend_name
    ("passt-10s", ...; `passt_variant` "10s" is the older spelling), pretrained, batch_size,
    autocast, device, seed (frontends.make_frontend) and text_model (make_text_encoder).
    """
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    _check_data_dir(data_dir)
    if passt_variant is not None:
        frontend_name = f"passt-{passt_variant}"
    # 2. read and check every CSV before any expensive step (and before loading any model)
    listing = {s: read_split(data_dir, SPLIT_MAP[s]) for s in SPLITS}
    frontend = _as_frontend(frontend, frontend_name=frontend_name, pretrained=pretrained,
                            device=device, batch_size=batch_size, autocast=autocast, seed=seed,
                            progress=progress)
    if text_encoder is None:
        text_encoder = make_text_encoder(text_model, device)
    work_root = ensure_dir(cache_dir, "cache folder") / WORK

    splits, skipped_all = {}, {}
    for s in SPLITS:
        folder, rows = listing[s]
        # 3. audio vectors, resumable; 4. sentence embeddings of the cleaned captions
        splits[s], skipped_all[s] = embed_split(s, folder, rows, frontend, text_encoder,
                                                work_root / s, shard_size, strict, progress)
    tag_emb = corpus_tags(frontend, text_encoder)
    fake = is_fake(data_dir)
    n_clips = {s: splits[s].n_clips for s in SPLITS}
    release = None if fake else release_record(data_dir, {SPLIT_MAP[s]: n for s, n in n_clips.items()})
    provenance = {
        # "synthetic" makes Corpus.is_synthetic true: figures drawn from fake data must say so
        "source": "synthetic" if fake else "clotho",
        "generator": "retrieval_lib.clotho.make_fake_clotho" if fake else None,
        "dataset": "FAKE Clotho-shaped data" if fake else release["summary"],
        "comparable_with_paper": False if fake else release["comparable_with_paper"],
        "release": release,
        "split_map": dict(SPLIT_MAP),
        "text_model": str(text_encoder.model_name),
        "text_dim": int(splits["train"].text_emb.shape[1]),
        "caption_cleaning": "retrieval_lib.text.clean_caption",
        **frontend.describe(),
        "library_version": __version__,
        "skipped": skipped_all,
        "n_clips": n_clips,
        "n_captions": {s: splits[s].n_captions for s in SPLITS},
    }
    if not frontend.pretrained:
        provenance["warning"] = (f"audio front end {frontend.name} without trained weights: its "
                                 "vectors carry no knowledge of sounds; use this corpus for "
                                 "plumbing tests only") if frontend.name.startswith("passt") else \
            f"audio front end {frontend.name} has no learned weights"
    corpus = Corpus(splits["train"], splits["val"], splits["test"], tag_emb, provenance)
    corpus.save(cache_dir)
    return corpus


def train_and_report(corpus: Corpus, results_path, checkpoints_dir, epochs: int | None = None,
                     progress: bool = True, device=None) -> list:
    """Step 6: train the paper's two systems on `device`, write test metrics (CSV) and
    checkpoints. A corpus without W_t (a front end without class names) trains lam = 1 only."""
    base = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
    prov = corpus.provenance
    systems = system_names(prov.get("audio_frontend") or f"passt-{prov.get('passt_variant', '10s')}",
                           prov.get("text_model") or DEFAULT_TEXT_MODEL)
    if not corpus.has_tags:
        systems = {name: lam for name, lam in systems.items() if lam == 1.0}
    configs = [base.replace(lam=lam) for lam in systems.values()]
    results = train_models(configs, corpus, progress=progress, device=device)
    rows = [{"system": name, "text_model": prov.get("text_model"), "source": prov.get("source"), **row}
            for name, row in zip(systems, results_table(results, corpus, "test"))]
    results_path = Path(results_path)
    ensure_dir(results_path.parent)

    def write(f):
        import io
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        f.write(text.getvalue().encode())
    atomic_write(results_path, write)
    save_results(results, checkpoints_dir)
    return rows


def run_pipeline(data_dir, cache_dir, download: bool = False, text_model: str = DEFAULT_TEXT_MODEL,
                 passt_variant: str | None = None, random_passt: bool = False,
                 batch_size: int | None = None, epochs: int | None = None, results=None,
                 checkpoints=None, strict: bool = False, shard_size: int = 128, device=None,
                 amp: bool | None = None, progress: bool = True, seed: int = 0, extractor=None,
                 text_encoder=None, autocast=None, base_url: str | None = None, *,
                 frontend: "str | AudioFrontend" = DEFAULT_AUDIO_FRONTEND) -> dict:
    """Clotho -> corpus -> the paper's two systems. Returns {"corpus", "results", paths}.

    frontend: a registered front-end name ("passt-10s", the paper's) or a ready
    core.AudioFrontend (`extractor` is the older name of the latter; passt_variant "10s" the
    older spelling of "passt-10s"). random_passt: random weights (seeded with `seed`; offline
    tests only). text_model: a sentence-transformers name or path, or "offline" for the packaged
    MiniLM. epochs: None = the paper's 50. results / checkpoints default to
    cache_dir/results.csv and cache_dir/checkpoints. batch_size (PaSST windows per forward
    pass), autocast (None / "fp16" / "bf16" / "fp32") and device (every stage, training
    included). amp=False is the same as autocast="fp32". base_url: where download fetches
    Clotho (default $RETRIEVAL_LIB_ZENODO_URL, else Zenodo).
    """
    from .core import resolve_device

    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    device = str(resolve_device(device))       # checked before anything is downloaded or built
    if download:
        download_clotho(data_dir, progress=progress, base_url=base_url)
    _check_data_dir(data_dir)
    if amp is False:
        autocast = "fp32"
    elif amp is True and autocast is None:
        autocast = True
    if passt_variant is not None:
        frontend = f"passt-{passt_variant}"
    ready = extractor if extractor is not None else (frontend if isinstance(frontend, AudioFrontend) else None)
    corpus = build_corpus(data_dir, cache_dir, ready, text_encoder, shard_size, strict, progress,
                          text_model=text_model,
                          frontend_name=frontend if isinstance(frontend, str) else DEFAULT_AUDIO_FRONTEND,
                          pretrained=not random_passt, batch_size=batch_size, autocast=autocast,
                          device=device, seed=seed if random_passt else None)
    results = Path(results) if results is not None else cache_dir / "results.csv"
    checkpoints = Path(checkpoints) if checkpoints is not None else cache_dir / "checkpoints"
    rows = train_and_report(corpus, results, checkpoints, epochs, progress, device)
    return {"corpus": corpus, "results": rows, "results_path": results, "checkpoints": checkpoints,
            "cache_dir": cache_dir}


__all__ = ["run_pipeline", "build_corpus", "make_text_encoder", "train_and_report", "embed_split",
           "corpus_tags", "system_names", "SYSTEMS", "WORK"]
