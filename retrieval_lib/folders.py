"""Index a folder of your own sounds with a trained checkpoint, and search it by free text.

* `folder_vectors` runs an audio front end (PaSST by default) over every audio file under a
  folder with the corpus pipeline's reading and resampling (audio.load_audio), resumably
  (core.ShardStore, like the pipeline), skipping unreadable files by name (also a file deleted
  between listing and reading);
* `index_folder` (`retrieval-lib index`) = vectors -> the checkpoint's audio encoder -> an
  AudioIndex on disk. The front end and the text model come from the checkpoint's provenance;
  a front end, text model or output size that differs from the checkpoint's is refused,
  naming both;
* `open_index(...)` / `search_folder_index` (`retrieval-lib search`) encode the query with the
  index's own text model (eq. 1) and return the best files.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .core import (DEFAULT_AUDIO_FRONTEND, AudioFrontend, ShardStore, canonical_text_model,
                   ensure_dir, normalize_provenance, sha256_file)
from .indexes import AudioIndex, QueryMismatch

# What soundfile (libsndfile) reads; anything else in a folder is reported and skipped.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                    ".snd", ".w64", ".caf", ".opus")
WORK = "_work"


def list_audio(folder) -> "tuple[list[str], list[str]]":
    """(audio files, other files) under `folder`, as sorted paths relative to it; hidden files
    and folders (a leading dot) are ignored, and so are links (never followed out of the folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    audio, other = [], []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink() or not path.is_file():
            continue
        (audio if path.suffix.lower() in AUDIO_EXTENSIONS else other).append(rel.as_posix())
    return audio, other


def _stamp(path: Path) -> str | None:
    """size:mtime of a file, None when it has gone (it is then skipped by name)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def folder_vectors(folder, frontend, work_dir, shard_size: int = 16, progress: bool = True,
                   settings: dict | None = None):
    """The front end's vectors of every audio file under `folder`, resuming from `work_dir`.

    frontend: a core.AudioFrontend, or a function returning one (called only when some file
    needs it, so a finished folder costs no model build; then `settings`, what the vectors
    depend on, must be given). A file changed since its shard (size or time) is redone.
    Unreadable, corrupt, too short, vanished and non-audio files are reported by name and
    skipped. Returns (names, (n, d) vectors, skipped [{"file", "error"}]).
    """
    from .audio import load_clip

    folder = Path(folder)
    audio, other = list_audio(folder)
    skipped = [{"file": name, "error": "not an audio file (extension not in "
                                       "retrieval_lib.folders.AUDIO_EXTENSIONS)"} for name in other]
    if not audio:
        listed = f" (it holds {len(other)} other files, e.g. {other[:3]})" if other else " (it is empty)"
        raise ValueError(f"{folder}: no audio file to index{listed}; audio files end in "
                         f"{', '.join(AUDIO_EXTENSIONS[:5])}, ...")
    if settings is None:
        settings = frontend.settings()
    built: list = []

    def get() -> AudioFrontend:
        if not built:
            built.append(frontend if isinstance(frontend, AudioFrontend) else frontend())
        return built[0]

    items = []
    for name in audio:
        stamp = _stamp(folder / name)
        if stamp is None:
            skipped.append({"file": name, "error": "the file disappeared before it could be read"})
        else:
            items.append((name, folder / name, stamp))
    sample_rate = int(settings.get("audio_sample_rate") or 32000)
    min_samples = int(settings.get("audio_min_samples") or 1)
    store = ShardStore(work_dir, settings)
    vectors, unread = store.extract(items, lambda path: load_clip(path, sample_rate, min_samples),
                                    lambda waves: get().embed(waves), shard_size=shard_size,
                                    progress=progress, desc="audio vectors", unit="file")
    skipped += unread
    kept = [name for name, _, _ in items if name in vectors and name not in {s["file"] for s in unread}]
    if not kept:
        raise ValueError(f"{folder}: none of its {len(audio)} audio files could be read: "
                         + "; ".join(f"{x['file']}: {x['error']}" for x in skipped[:5]))
    return kept, np.stack([vectors[n] for n in kept]).astype(np.float32), skipped


def checkpoint_provenance(result) -> dict:
    """The checkpoint's provenance in model-neutral keys ({} for a checkpoint saved before it
    was recorded)."""
    prov = getattr(result, "provenance", None)
    return normalize_provenance(prov) if isinstance(prov, dict) else {}


def _pick(what: str, from_checkpoint, asked, default=None, same=lambda a, b: a == b):
    """A setting from the checkpoint's provenance, checked against what the user asked."""
    if from_checkpoint is not None and asked is not None and not same(from_checkpoint, asked):
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
                 text_model: str | None = None, frontend: "str | AudioFrontend | None" = None,
                 random_weights: bool = False, text_encoder=None, batch_size: int | None = None,
                 device=None, autocast=None, shard_size: int = 16, progress: bool = True,
                 seed: int = 0, passt_variant: str | None = None, extractor=None,
                 random_passt: bool | None = None, amp=None) -> dict:
    """Index every audio file under `folder` with a trained checkpoint; write the index to `out`.

    The text model (for W_t, eq. 3-4, and later for the queries) and the audio front end come
    from the checkpoint's provenance when it records them; `text_model` / `frontend` are then
    only checked against it (a mismatch is refused, naming both). frontend: a registered name
    or a ready core.AudioFrontend (`extractor` is the older name; passt_variant "10s" the older
    spelling of "passt-10s"); random_weights builds it with random weights (plumbing tests; the
    older name is random_passt). The vectors are cached in out/_work, so a second run resumes
    or adds new files only (the front end is built only when some file needs it). seed: the
    random network's seed and k-means'. Returns a summary dict.
    """
    from .frontends import make_frontend
    from .tags import encode_tag_names
    from .text import TextEncoder
    from .train import TrainResult

    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    ensure_dir(out, "index folder (--out)")
    result = TrainResult.load(checkpoint)
    prov = checkpoint_provenance(result)
    text_model = _pick("text model", prov.get("text_model"),
                       None if text_model is None else str(text_model),
                       same=lambda a, b: canonical_text_model(a) == canonical_text_model(b))
    frontend = extractor if extractor is not None else frontend
    if passt_variant is not None and frontend is None:
        frontend = f"passt-{passt_variant}"
    random_weights = bool(random_weights or random_passt)
    if amp is False and autocast is None:
        autocast = "fp32"
    started = time.perf_counter()
    if isinstance(frontend, AudioFrontend):
        name = _pick("audio front end", prov.get("audio_frontend"), frontend.name)
        frontend.check_matches(prov, f"the checkpoint {checkpoint.name}")
        pretrained, get_frontend, settings = frontend.pretrained, frontend, frontend.settings()
    else:
        from .frontends import frontend_settings

        name = _pick("audio front end", prov.get("audio_frontend"), frontend, default=DEFAULT_AUDIO_FRONTEND)
        pretrained = not random_weights
        build_seed = None if pretrained else seed

        def get_frontend():           # built only when some file needs it
            return make_frontend(name, pretrained=pretrained, device=device, batch_size=batch_size,
                                 autocast=autocast, seed=build_seed)
        settings = frontend_settings(name, pretrained=pretrained, seed=build_seed)
        if settings is None:          # a front end that must be built to say what it is
            get_frontend = get_frontend()
            settings = get_frontend.settings()
    if prov.get("audio_dim") is not None and settings.get("audio_dim") not in (None, prov["audio_dim"]):
        raise QueryMismatch(f"the front end {name} gives {settings['audio_dim']} numbers per file but "
                            f"the checkpoint {checkpoint.name} was trained on {prov['audio_dim']}")
    if prov.get("audio_pretrained") is True and not pretrained:
        warnings.warn("a front end without trained weights, with a checkpoint trained on pretrained "
                      "vectors: the search results are meaningless (plumbing test only)")
    if prov.get("synthetic") and pretrained:
        warnings.warn("the checkpoint was trained on simulated logits, not on PaSST's: train one "
                      "on real data (chapter 6 with DATA = 'clotho') to search real sounds")
    names, vectors, skipped = folder_vectors(folder, get_frontend, out / WORK, shard_size, progress,
                                             settings=settings)
    want_dim = result.architecture.get("in_dim") if isinstance(result.architecture, dict) else None
    if want_dim is not None and vectors.shape[1] != want_dim:
        raise QueryMismatch(f"the front end {name} gives {vectors.shape[1]} numbers per file but the "
                            f"checkpoint {checkpoint.name} takes {want_dim}")
    encoder = text_encoder if text_encoder is not None else TextEncoder(text_model, device=device)
    if canonical_text_model(encoder.model_name) != canonical_text_model(text_model):
        raise QueryMismatch(f"the checkpoint was trained with text model {text_model!r}, "
                            f"the encoder given is {encoder.model_name!r}")
    if not settings.get("audio_classes"):
        tag_emb = None                  # a front end without class names: no tag branch
    elif isinstance(get_frontend, AudioFrontend) or not name.startswith("passt"):
        fe = get_frontend if isinstance(get_frontend, AudioFrontend) else get_frontend()
        tag_emb = encode_tag_names(encoder, tuple(fe.class_names))
    else:                               # PaSST not built (every file was done): AudioSet's names
        tag_emb = encode_tag_names(encoder)
    out_dim = result.state_dict["linear.weight"].shape[0]
    if tag_emb is not None and tag_emb.shape[1] != out_dim:
        raise QueryMismatch(f"text model {text_model!r} gives {tag_emb.shape[1]}-d embeddings but the "
                            f"checkpoint {checkpoint.name} projects audio to {out_dim}-d")
    audio_emb = embed_logits(result, vectors, tag_emb)
    provenance = {
        "text_model": canonical_text_model(text_model),
        **{k: v for k, v in settings.items() if k.startswith("audio_")},
        "checkpoint": {"file": checkpoint.name, "path": str(checkpoint.resolve()),
                       "sha256": sha256_file(checkpoint), "config": result.config.label(),
                       "provenance": prov},
        "folder": str(Path(folder).resolve()),
        "skipped": skipped,
        "library_version": __version__,
    }
    if not pretrained:
        provenance["warning"] = (f"audio front end {name} with random weights: the index is for "
                                 "plumbing tests only")
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
    from .core import check_k
    from .text import TextEncoder, check_text_model

    k = check_k(k)
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"empty query {query!r}: type a description of a sound, "
                         f"e.g. 'a dog barks while rain falls'")
    index = open_index(directory, text_model=text_model, checkpoint=checkpoint)
    if encoder is None:
        if index.text_model is None:
            index.check_text_model(None)
        try:
            check_text_model(index.text_model)
        except ValueError as err:
            raise ValueError(f"the index needs its text model {index.text_model!r} to encode "
                             f"queries, and it cannot be loaded here: {err}") from None
        encoder = TextEncoder(index.text_model, device=device)
    return index.search(query, encoder, k)


__all__ = ["AUDIO_EXTENSIONS", "list_audio", "folder_vectors", "embed_logits", "index_folder",
           "open_index", "search_folder_index", "checkpoint_provenance"]
