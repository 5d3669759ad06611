"""From Clotho WAVs and captions to trained models: the whole paper in one call.

`run_pipeline` (and `python -m retrieval_lib pipeline`) does, in order:

1. optionally download Clotho v2.1 (clotho.download_clotho);
2. read every split's captions CSV first, so a bad CSV is refused before hours of extraction;
3. extract PaSST logits for every clip (audio.PasstLogitExtractor), writing a shard
   cache_dir/_work/{split}/shard_NNNNN.npz (clip names + logits) every `shard_size` clips, so an
   interrupted run resumes where it stopped and recomputes nothing already written;
   a missing or unreadable WAV is reported by name and skipped with its captions (recorded in
   the provenance), or refused with strict=True; it is never replaced by zeros;
4. encode the cleaned captions and the 527 tag names with the sentence model;
5. write the embedding corpus with data.Corpus.save (the format every chapter reads);
6. train PaSST-MPnet (lam=1.0) and PaSST-MPnet-tags (lam=0.8) with train.train_models and write
   their test metrics (CSV) and checkpoints.
"""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .audio import PASST_SR, AudioError, PasstLogitExtractor, load_audio
from .clotho import SPLIT_MAP, ZENODO_RECORD, download_clotho, is_fake, read_split
from .data import SPLITS, Corpus, RetrievalSplit
from .tags import encode_tag_names
from .text import DEFAULT_TEXT_MODEL, OFFLINE_ALIASES, OFFLINE_TEXT_MODEL, TextEncoder
from .train import TrainConfig, results_table, save_results, train_models

SYSTEMS = {"PaSST-MPnet": 1.0, "PaSST-MPnet-tags": 0.8}   # name -> lam (paper section 3)
WORK = "_work"


# ---------------------------------------------------------------------------------------------
# Shards: the resumable part
# ---------------------------------------------------------------------------------------------

def _atomic_savez(path: Path, **arrays) -> None:
    """np.savez to a temporary name, then rename: a crash never leaves half a shard."""
    tmp = path.with_name("tmp_" + path.name)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_shards(work_dir: Path) -> dict:
    """{clip name: (527,) logits} from every finished shard of a split.

    An unreadable shard raises ValueError naming it (delete it: its clips are redone)."""
    done = {}
    for shard in sorted(Path(work_dir).glob("shard_*.npz")):
        try:
            with np.load(shard) as z:
                for name, row in zip(z["names"].tolist(), z["logits"]):
                    done[name] = row
        except Exception as err:     # BadZipFile, EOFError, KeyError, ...
            raise ValueError(f"{shard}: unreadable shard ({type(err).__name__}: {err}); delete it "
                             "and run again (only its clips are recomputed)") from err
    return done


def _next_shard_id(work_dir: Path) -> int:
    """1 + the highest shard number present (0 when none): never the number of an existing
    shard, even after one was deleted (counting files would reuse a number)."""
    ids = []
    for p in Path(work_dir).glob("shard_*.npz"):
        suffix = p.stem.split("_", 1)[1]
        if suffix.isdigit():
            ids.append(int(suffix))
    return max(ids, default=-1) + 1


def _check_work_settings(work_root: Path, settings: dict) -> None:
    """Refuse to mix shards made with another PaSST (variant, weights, and for a random
    PaSST its seed and weight fingerprint) into one corpus; the message names both sides."""
    path = work_root / "settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            diff = "; ".join(f"{k}: shards {old.get(k)!r} vs this run {settings.get(k)!r}"
                             for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k))
            raise ValueError(f"{work_root} holds logits extracted with {old}, but this run uses "
                             f"{settings} ({diff}); use another --cache-dir or delete {work_root}")
    else:
        work_root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2))


def extract_split(split: str, folder: Path, names: "list[str]", extractor: "PasstLogitExtractor",
                  work_dir: Path, shard_size: int = 128, strict: bool = False,
                  progress: bool = True) -> "tuple[dict, list[dict]]":
    """PaSST logits of a split's clips, resuming from the shards already in work_dir.

    Returns ({clip name: logits}, [{"file": ..., "error": ...} for skipped clips]).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    done = load_shards(work_dir)
    todo = [n for n in names if n not in done]
    skipped = []
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(names), initial=len(names) - len(todo), desc=f"PaSST logits ({split})",
                   unit="clip")
    next_id = _next_shard_id(work_dir)
    for s in range(0, len(todo), shard_size):
        chunk_names, waves = [], []
        for name in todo[s:s + shard_size]:
            try:
                waves.append(load_audio(folder / name, PASST_SR, resample=True))
                chunk_names.append(name)
            except AudioError as err:
                if strict:
                    raise AudioError(f"split {split!r}: {err} (strict mode: fix or remove the file)") from err
                skipped.append({"file": name, "error": str(err)})
                warnings.warn(f"skipping {name!r} in split {split!r} and its captions: {err}")
        if chunk_names:
            logits = extractor.logits(waves)
            _atomic_savez(work_dir / f"shard_{next_id:05d}.npz", names=np.array(chunk_names),
                          logits=logits.astype(np.float32))
            next_id += 1
            done.update(zip(chunk_names, logits))
        if bar is not None:
            bar.update(len(todo[s:s + shard_size]))
    if bar is not None:
        bar.close()
    return done, skipped


# ---------------------------------------------------------------------------------------------
# Text: cached per split, since MPNet on a CPU takes minutes for Clotho's 25k captions
# ---------------------------------------------------------------------------------------------

def _encode_cached(encoder: TextEncoder, texts, path: Path, progress: bool) -> np.ndarray:
    key = {"model": str(encoder.model_name), "texts": list(texts)}
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == key:
        return np.load(path)
    emb = encoder.encode(texts, clean=True, show_progress=progress)
    np.save(path, emb)
    meta.write_text(json.dumps(key))
    return emb


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------

AUTOCAST = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def autocast_dtype(autocast, device_type: str):
    """None -> the default (float16 on CUDA, off on CPU); False / "fp32" / "off" -> off;
    True -> float16 on CUDA, bfloat16 on CPU; "fp16" / "bf16" -> that dtype. Returns a torch
    dtype or None (full float32)."""
    import torch

    if autocast is None:
        return torch.float16 if device_type == "cuda" else None
    if autocast is False or (isinstance(autocast, str) and autocast.lower() in ("fp32", "float32", "off", "none")):
        return None
    if autocast is True:
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    key = str(autocast).lower()
    if key not in AUTOCAST:
        raise ValueError(f"autocast must be None, True, False, 'fp32', 'fp16' or 'bf16', got {autocast!r}")
    return getattr(torch, AUTOCAST[key])


def make_extractor(passt_variant: str = "10s", pretrained: bool = True, device=None,
                   batch_size: int | None = None, autocast=None, seed: int | None = None):
    """A PasstLogitExtractor with the chapters' knobs: device (None = cuda when available),
    batch_size (windows per forward pass; None = 32 on CUDA, 8 on CPU) and autocast (see
    autocast_dtype). The logits come back as float32 whatever the autocast dtype."""
    from .audio import default_device

    device = str(device or default_device())
    device_type = device.split(":")[0]
    if batch_size is None:
        batch_size = 32 if device_type == "cuda" else 8
    dtype = autocast_dtype(autocast, device_type)
    extractor = PasstLogitExtractor(passt_variant, pretrained=pretrained, device=device,
                                    batch_size=int(batch_size), amp=dtype is not None, seed=seed)
    if dtype is not None:
        extractor.amp_dtype = dtype
    return extractor


def make_text_encoder(text_model: str | None = None, device=None) -> TextEncoder:
    """The sentence model by name (None = the paper's all-mpnet-base-v2); the offline alias is
    recorded under the model's real name."""
    name = text_model or DEFAULT_TEXT_MODEL
    encoder = TextEncoder(name, device=device)
    if name in OFFLINE_ALIASES:
        encoder.model_name = OFFLINE_TEXT_MODEL   # say which model, not just "offline"
    return encoder


def embed_split(split: str, folder: Path, rows, extractor, text_encoder: TextEncoder, work_dir: Path,
                shard_size: int = 128, strict: bool = False, progress: bool = True):
    """One split of a corpus from its clips: rows = [(file name relative to folder, [captions])].

    PaSST logits are extracted resumably (extract_split), the cleaned captions of the clips that
    could be read are encoded (cached in work_dir). Returns (RetrievalSplit, skipped files).
    """
    names = [name for name, _ in rows]
    logits_by_name, skipped = extract_split(split, folder, names, extractor, work_dir, shard_size,
                                            strict, progress)
    kept = [(name, caps) for name, caps in rows if name in logits_by_name]
    if not kept:
        raise ValueError(f"split {split!r}: no usable clip left in {folder}")
    captions = [c for _, caps in kept for c in caps]
    caption_clip = np.repeat(np.arange(len(kept)), [len(caps) for _, caps in kept])
    text_emb = _encode_cached(text_encoder, captions, work_dir / "text_emb.npy", progress)
    return RetrievalSplit(split, np.stack([logits_by_name[n] for n, _ in kept]), text_emb,
                          caption_clip, [n for n, _ in kept], captions), skipped


def build_corpus(data_dir, cache_dir, extractor=None, text_encoder=None, shard_size: int = 128,
                 strict: bool = False, progress: bool = True, *, text_model: str | None = None,
                 passt_variant: str = "10s", pretrained: bool = True, batch_size: int | None = None,
                 autocast=None, device=None) -> Corpus:
    """Steps 2-5: captions, logits, sentence embeddings -> Corpus saved in cache_dir.

    extractor / text_encoder: ready objects; when None they are built from passt_variant,
    pretrained, batch_size, autocast, device (make_extractor) and text_model (make_text_encoder).
    """
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    # 2. read and check every CSV before any expensive step (and before loading any model)
    listing = {s: read_split(data_dir, SPLIT_MAP[s]) for s in SPLITS}
    if extractor is None:
        extractor = make_extractor(passt_variant, pretrained, device, batch_size, autocast)
    if text_encoder is None:
        text_encoder = make_text_encoder(text_model, device)
    work_root = cache_dir / WORK
    _check_work_settings(work_root, {k: v for k, v in extractor.describe().items() if k != "amp"})

    splits, skipped_all = {}, {}
    for s in SPLITS:
        folder, rows = listing[s]
        # 3. logits, resumable; 4. sentence embeddings of the cleaned captions
        splits[s], skipped_all[s] = embed_split(s, folder, rows, extractor, text_encoder,
                                                work_root / s, shard_size, strict, progress)
    tag_emb = encode_tag_names(text_encoder)
    fake = is_fake(data_dir)
    provenance = {
        # "synthetic" makes Corpus.is_synthetic true: figures drawn from fake data must say so
        "source": "synthetic" if fake else "clotho",
        "generator": "retrieval_lib.clotho.make_fake_clotho" if fake else None,
        "dataset": "FAKE Clotho-shaped data" if fake else f"Clotho v2.1 (Zenodo record {ZENODO_RECORD})",
        "split_map": dict(SPLIT_MAP),
        "text_model": str(text_encoder.model_name),
        "text_dim": int(tag_emb.shape[1]),
        "caption_cleaning": "retrieval_lib.text.clean_caption",
        **extractor.describe(),
        "library_version": __version__,
        "skipped": skipped_all,
        "n_clips": {s: splits[s].n_clips for s in SPLITS},
        "n_captions": {s: splits[s].n_captions for s in SPLITS},
    }
    if not extractor.pretrained:
        provenance["warning"] = ("random-initialised PaSST: the logits carry no knowledge of "
                                 "AudioSet; use this corpus for plumbing tests only")
    corpus = Corpus(splits["train"], splits["val"], splits["test"], tag_emb, provenance)
    corpus.save(cache_dir)
    return corpus


def train_and_report(corpus: Corpus, results_path, checkpoints_dir, epochs: int | None = None,
                     progress: bool = True) -> list:
    """Step 6: train the paper's two systems, write test metrics (CSV) and checkpoints."""
    base = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
    configs = [base.replace(lam=lam) for lam in SYSTEMS.values()]
    results = train_models(configs, corpus, progress=progress)
    rows = [{"system": name, "text_model": corpus.provenance.get("text_model"),
             "source": corpus.provenance.get("source"), **row}
            for name, row in zip(SYSTEMS, results_table(results, corpus, "test"))]
    results_path = Path(results_path)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    with results_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    save_results(results, checkpoints_dir)
    return rows


def run_pipeline(data_dir, cache_dir, download: bool = False, text_model: str = DEFAULT_TEXT_MODEL,
                 passt_variant: str = "10s", random_passt: bool = False, batch_size: int | None = None,
                 epochs: int | None = None, results=None, checkpoints=None, strict: bool = False,
                 shard_size: int = 128, device=None, amp: bool | None = None, progress: bool = True,
                 seed: int = 0, extractor=None, text_encoder=None, autocast=None,
                 base_url: str | None = None) -> dict:
    """Clotho -> corpus -> the paper's two systems. Returns {"corpus", "results", paths}.

    text_model: a sentence-transformers name or path, or "offline" for the packaged MiniLM.
    random_passt: build PaSST with random weights (seeded with `seed`; offline tests only).
    epochs: None = the paper's 50. results / checkpoints default to cache_dir/results.csv and
    cache_dir/checkpoints. extractor / text_encoder: ready objects to use instead of building
    them (tests, notebooks that already hold a model). batch_size (PaSST windows per forward
    pass), autocast (None / "fp16" / "bf16" / "fp32") and device: see make_extractor; amp=False
    is the same as autocast="fp32". base_url: where --download fetches Clotho (default
    $RETRIEVAL_LIB_ZENODO_URL, else Zenodo).
    """
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    if download:
        download_clotho(data_dir, progress=progress, base_url=base_url)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist (pass download=True / --download)")
    if amp is False:
        autocast = "fp32"
    elif amp is True and autocast is None:
        autocast = True
    if extractor is None:
        extractor = make_extractor(passt_variant, not random_passt, device, batch_size, autocast,
                                   seed=seed if random_passt else None)
    if text_encoder is None:
        text_encoder = make_text_encoder(text_model, device)
    corpus = build_corpus(data_dir, cache_dir, extractor, text_encoder, shard_size, strict, progress)
    results = Path(results) if results is not None else cache_dir / "results.csv"
    checkpoints = Path(checkpoints) if checkpoints is not None else cache_dir / "checkpoints"
    rows = train_and_report(corpus, results, checkpoints, epochs, progress)
    return {"corpus": corpus, "results": rows, "results_path": results, "checkpoints": checkpoints,
            "cache_dir": cache_dir}


__all__ = ["run_pipeline", "build_corpus", "make_extractor", "make_text_encoder", "autocast_dtype", "train_and_report", "extract_split", "load_shards", "SYSTEMS"]
