"""Real AudioCaps from a folder the user supplies, through the same pipeline as Clotho.

AudioCaps (Kim et al., 2019) cannot be downloaded from one place: its clips are YouTube
excerpts that everyone fetches themselves. The paper pretrains its "-AC" system on it. This
module reads what a user has:

    AUDIOCAPS_DIR/train.csv, val.csv, test.csv    the official captions CSVs, columns
                                                  audiocap_id, youtube_id, start_time, caption
                                                  (one row per caption: train has 1 caption per
                                                  clip, val and test 5)
    AUDIOCAPS_DIR/{train,val,test}/<clip>         the audio (also accepted: AUDIOCAPS_DIR/audio/
                                                  {split}/, AUDIOCAPS_DIR/audio/, AUDIOCAPS_DIR/)

A clip is found under any of the names download tools use: `{youtube_id}_{start_time}`,
`Y{youtube_id}`, `{youtube_id}`, `{audiocap_id}` (start_time as written in the CSV, or as an
integer), with the extension .wav, .flac or .ogg. A missing clip is reported by name (missing
YouTube videos are common) and skipped with its captions, recorded in the provenance, or
refused with strict=True; a split with no clip found, a missing CSV or a missing column is an
error that says what was expected.

`load_audiocaps` builds the embedding corpus once (PaSST logits resumable in shards, sentence
embeddings of the cleaned captions, the 527 tag names) into cache_dir/audiocaps and loads it
afterwards, refusing a cache made with another text model or PaSST.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from .core import DEFAULT_AUDIO_FRONTEND, check_plain_name, check_provenance, read_csv
from .data import SPLITS, Corpus
from .text import clean_caption

COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
EXTENSIONS = (".wav", ".flac", ".ogg")


def captions_csv(audiocaps_dir, split: str) -> Path:
    return Path(audiocaps_dir) / f"{split}.csv"


def read_captions(path) -> list:
    """[(clip key, {"youtube_id", "start_time", "audiocap_ids"}, [captions]), ...] in file order,
    one entry per clip (rows sharing youtube_id and start_time are one clip). Refuses (naming
    the file and line) what core.read_csv refuses (not UTF-8, NUL bytes, a column named twice,
    extra fields), empty ids, a start_time that is not a number, ids that are not plain names
    (they become file names) and captions with no word."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AudioCaps captions file not found: {path} (expected the official "
                                f"train.csv / val.csv / test.csv with columns {', '.join(COLUMNS)})")
    clips: dict = {}
    for line, row in read_csv(path, COLUMNS, "AudioCaps captions file"):
        where = f"{path}, line {line}"
        yt, start = (row["youtube_id"] or "").strip(), (row["start_time"] or "").strip()
        cap_id, caption = (row["audiocap_id"] or "").strip(), row["caption"] or ""
        if not yt or not start:
            raise ValueError(f"{where}: empty youtube_id or start_time")
        check_plain_name(yt, where)
        if cap_id:
            check_plain_name(cap_id, where)
        try:
            float(start)
        except ValueError:
            raise ValueError(f"{where}: start_time {start!r} is not a number") from None
        try:
            clean_caption(caption)
        except ValueError as err:
            raise ValueError(f"{where} (audiocap_id {cap_id}): {err}") from None
        key = f"{yt}_{start}"
        entry = clips.setdefault(key, {"youtube_id": yt, "start_time": start, "audiocap_ids": [],
                                       "captions": []})
        entry["audiocap_ids"].append(cap_id)
        entry["captions"].append(caption.strip())
    if not clips:
        raise ValueError(f"{path}: no caption rows")
    return [(key, {k: v for k, v in e.items() if k != "captions"}, e["captions"]) for key, e in clips.items()]


def audio_folders(audiocaps_dir, split: str) -> list:
    root = Path(audiocaps_dir)
    return [d for d in (root / split, root / "audio" / split, root / "audio", root) if d.is_dir()]


def candidate_names(info: dict) -> list:
    start = info["start_time"]
    starts = [start]
    try:
        as_int = str(int(float(start)))
        if as_int != start:
            starts.append(as_int)
    except ValueError:  # pragma: no cover - read_captions checked it
        pass
    stems = [f"{info['youtube_id']}_{s}" for s in starts] + [f"Y{info['youtube_id']}", info["youtube_id"]]
    stems += list(info["audiocap_ids"])
    return [stem + ext for stem in stems for ext in EXTENSIONS]


def find_clip(folders, info: dict) -> Path | None:
    for folder in folders:
        for name in candidate_names(info):
            if (folder / name).is_file():
                return folder / name
    return None


def load_audiocaps(audiocaps_dir, cache_dir=None, text_model: str | None = None,
                   passt_variant: str | None = None, *, passt_pretrained: bool = True,
                   passt_batch_size: int | None = None, autocast=None, device=None,
                   strict: bool = False, shard_size: int = 128, progress: bool = True,
                   extractor=None, text_encoder=None,
                   frontend: str = DEFAULT_AUDIO_FRONTEND) -> Corpus:
    """The AudioCaps embedding corpus (train / val / test) of the clips in audiocaps_dir.

    Built once into cache_dir/audiocaps (default cache: sources.data_dirs) and loaded from there
    afterwards; a cache made with another text model / audio front end / weights is refused.
    frontend: a registered front-end name (passt_variant "10s" is the older spelling of
    "passt-10s"); extractor / text_encoder: ready objects (tests); else built from the other
    arguments.
    """
    from . import __version__
    from .pipeline import WORK, corpus_tags, embed_split, make_text_encoder
    from .frontends import make_frontend
    from .sources import data_dirs, requested_provenance

    audiocaps_dir = Path(audiocaps_dir)
    if not audiocaps_dir.is_dir():
        raise FileNotFoundError(f"AudioCaps folder not found: {audiocaps_dir}")
    cache_dir = data_dirs(cache_dir=cache_dir)[1]
    target = cache_dir / "audiocaps"
    if passt_variant is not None:
        frontend = f"passt-{passt_variant}"
    if extractor is not None:
        frontend, passt_pretrained = extractor.name, extractor.pretrained
    asked = requested_provenance(getattr(text_encoder, "model_name", None) or text_model,
                                 frontend=frontend, pretrained=passt_pretrained)
    if (target / "corpus.json").exists():
        corpus = Corpus.load(target)
        check_provenance(corpus.provenance, asked, f"the AudioCaps embedding cache in {target}")
        return corpus

    # read and check every CSV and find every clip before loading any model
    listing = {}
    for split in SPLITS:
        rows = read_captions(captions_csv(audiocaps_dir, split))
        folders = audio_folders(audiocaps_dir, split)
        found, missing = [], []
        for key, info, caps in rows:
            path = find_clip(folders, info)
            if path is None:
                missing.append(key)
            else:
                found.append((path, caps, key))
        if missing and strict:
            raise FileNotFoundError(f"AudioCaps {split}: {len(missing)} clip(s) not found, e.g. "
                                    f"{missing[:5]} (looked in {[str(f) for f in folders]} for "
                                    f"names like {candidate_names(rows[0][1])[:4]})")
        if not found:
            raise FileNotFoundError(f"AudioCaps {split}: none of the {len(rows)} clips of "
                                    f"{captions_csv(audiocaps_dir, split).name} was found; looked in "
                                    f"{[str(f) for f in folders] or '(no folder)'} for names like "
                                    f"{candidate_names(rows[0][1])[:4]}")
        if missing:
            warnings.warn(f"AudioCaps {split}: {len(missing)} of {len(rows)} clips not found and "
                          f"skipped with their captions (e.g. {missing[:3]})")
        listing[split] = (found, missing)

    if extractor is None:
        extractor = make_frontend(frontend, pretrained=passt_pretrained, device=device,
                                  batch_size=passt_batch_size, autocast=autocast)
    if text_encoder is None:
        text_encoder = make_text_encoder(text_model, device)
    work_root = target / WORK
    splits, skipped_all = {}, {}
    for split in SPLITS:
        found, missing = listing[split]
        # names relative to the audiocaps folder: unique across the accepted layouts
        rows = [(str(p.relative_to(audiocaps_dir)), caps) for p, caps, _ in found]
        splits[split], skipped = embed_split(split, audiocaps_dir, rows, extractor, text_encoder,
                                             work_root / split, shard_size, strict, progress)
        skipped_all[split] = [{"file": k, "error": "clip not found"} for k in missing] + skipped
    provenance = {
        "source": "audiocaps",
        "dataset": f"AudioCaps (user-supplied clips in {audiocaps_dir})",
        "text_model": str(text_encoder.model_name),
        "text_dim": int(splits["train"].text_emb.shape[1]),
        "caption_cleaning": "retrieval_lib.text.clean_caption",
        **extractor.describe(),
        "library_version": __version__,
        "skipped": skipped_all,
        "n_clips": {s: splits[s].n_clips for s in SPLITS},
        "n_captions": {s: splits[s].n_captions for s in SPLITS},
    }
    corpus = Corpus(splits["train"], splits["val"], splits["test"],
                    corpus_tags(extractor, text_encoder), provenance)
    check_provenance(provenance, asked, "the AudioCaps corpus just built")
    corpus.save(target)
    return corpus


__all__ = ["COLUMNS", "load_audiocaps", "read_captions", "find_clip", "candidate_names"]
