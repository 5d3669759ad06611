"""The embedding corpus: what the learnable part of the system trains on.

A RetrievalSplit holds, for one split, the PaSST logits of its clips and the sentence
embeddings e_s of its captions (5 per clip in Clotho). A Corpus holds train / val / test splits
and W_t, plus a provenance dict saying where the numbers came from ("source" is "synthetic"
for the generated corpus: every figure drawn from it must say so).

On-disk format (a directory), written by Corpus.save and read by Corpus.load:
    corpus.json            provenance (source, models, sample rate, windowing, versions),
                           and under "_files" the sha256 of every file below
    tag_emb.npy            W_t, (527, d) float32 (absent for a front end without class names)
    {split}.npz            logits (n_clips, 527) f32, text_emb (n_captions, d) f32,
                           caption_clip (n_captions,) int64
    {split}.json           {"clip_names": [...], "captions": [...]}
    checksums.json         sha256 of every file above except corpus.json

Saving is safe against interruption: corpus.json (the "complete" mark) is removed first, every
file is written under a temporary name and renamed into place, checksums.json and corpus.json
come last. Loading checks every file against checksums.json, so a corpus mixed from two saves
or a truncated file is refused with the file's name instead of loading silently.
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core import atomic_write, atomic_write_json, ensure_dir, read_json, remove_file, sha256_file

CHECKSUMS = "checksums.json"
FILES_KEY = "_files"   # in corpus.json: the sha256 of every other file of the save

SPLITS = ("train", "val", "test")


@dataclass
class RetrievalSplit:
    name: str
    logits: np.ndarray        # (n_clips, 527) pre-sigmoid PaSST logits
    text_emb: np.ndarray      # (n_captions, d) sentence embeddings e_s
    caption_clip: np.ndarray  # (n_captions,) index of each caption's clip
    clip_names: list = field(default_factory=list)
    captions: list = field(default_factory=list)

    def __post_init__(self):
        self.logits = np.ascontiguousarray(self.logits, dtype=np.float32)
        self.text_emb = np.ascontiguousarray(self.text_emb, dtype=np.float32)
        self.caption_clip = np.ascontiguousarray(self.caption_clip, dtype=np.int64)
        self.validate()

    @property
    def n_clips(self) -> int:
        """Number of clips."""
        return self.logits.shape[0]

    @property
    def n_captions(self) -> int:
        """Number of captions."""
        return self.text_emb.shape[0]

    def validate(self) -> None:
        """Raise ValueError (naming the split) for bad shapes, indices, counts, NaN / inf."""
        where = f"split {self.name!r}"
        if self.logits.ndim != 2 or self.text_emb.ndim != 2:
            raise ValueError(f"{where}: logits and text_emb must be 2-d")
        if self.caption_clip.shape != (self.n_captions,):
            raise ValueError(f"{where}: caption_clip must have one entry per caption")
        if self.n_captions and (self.caption_clip.min() < 0 or self.caption_clip.max() >= self.n_clips):
            raise ValueError(f"{where}: caption_clip indices out of range [0, {self.n_clips})")
        for arr, what in ((self.logits, "logits"), (self.text_emb, "text_emb")):
            if not np.isfinite(arr).all():
                raise ValueError(f"{where}: {what} contain NaN or inf")
        if self.clip_names and len(self.clip_names) != self.n_clips:
            raise ValueError(f"{where}: {len(self.clip_names)} clip names for {self.n_clips} clips")
        if self.captions and len(self.captions) != self.n_captions:
            raise ValueError(f"{where}: {len(self.captions)} captions for {self.n_captions} embeddings")

    def subset(self, n_clips: int, name: str | None = None) -> "RetrievalSplit":
        """The first n_clips clips and their captions (for quick runs); n_clips >= 1 (a larger
        number than the split holds keeps every clip)."""
        if isinstance(n_clips, bool) or not isinstance(n_clips, numbers.Integral) or n_clips < 1:
            raise ValueError(f"subset needs a number of clips >= 1, got {n_clips!r}")
        keep = self.caption_clip < n_clips
        return RetrievalSplit(
            name or self.name, self.logits[:n_clips], self.text_emb[keep], self.caption_clip[keep],
            self.clip_names[:n_clips],
            [c for c, k in zip(self.captions, keep) if k] if self.captions else [])

    def save(self, directory: Path) -> None:
        """Write {name}.npz and {name}.json into `directory`, each atomically."""
        directory = Path(directory)
        atomic_write(directory / f"{self.name}.npz", lambda f: np.savez(
            f, logits=self.logits, text_emb=self.text_emb, caption_clip=self.caption_clip))
        meta = json.dumps({"clip_names": list(self.clip_names), "captions": list(self.captions)})
        atomic_write(directory / f"{self.name}.json", lambda f: f.write(meta.encode()))

    @classmethod
    def load(cls, directory: Path, name: str) -> "RetrievalSplit":
        """Read split `name` from `directory`; an unreadable file raises ValueError naming it."""
        directory = Path(directory)
        path = directory / f"{name}.npz"
        if not path.exists():
            raise FileNotFoundError(f"no split {name!r} in {directory} (missing {path.name})")
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in ("logits", "text_emb", "caption_clip")}
        except Exception as err:     # BadZipFile, EOFError, KeyError (missing array), ...
            raise ValueError(f"{path}: cannot read the split ({type(err).__name__}: {err}); the file "
                             "is truncated or corrupt: rebuild the corpus") from err
        meta_path = directory / f"{name}.json"
        try:
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{meta_path}: not valid JSON ({err}); the file is truncated or "
                             "corrupt: rebuild the corpus") from err
        return cls(name, **arrays, clip_names=meta.get("clip_names", []),
                   captions=meta.get("captions", []))


@dataclass
class Corpus:
    """Train / val / test splits, W_t and a provenance record.

    tag_emb is W_t, (n_classes, d): the text embeddings of the audio front end's class names
    (the 527 AudioSet tags for PaSST), or None for a front end without class names, which has
    no tag branch (eq. 3-6): only lam = 1 models can be trained on it.
    """
    train: RetrievalSplit
    val: RetrievalSplit
    test: RetrievalSplit
    tag_emb: "np.ndarray | None"   # W_t (n_classes, d), or None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.tag_emb is not None:
            self.tag_emb = np.ascontiguousarray(self.tag_emb, dtype=np.float32)
            if self.tag_emb.ndim != 2:
                raise ValueError(f"tag_emb must be (n_classes, d), got shape {self.tag_emb.shape}")
        d = self.dim
        sizes = {split.logits.shape[1] for split in self.splits()}
        if len(sizes) != 1:
            raise ValueError(f"the splits hold audio vectors of different sizes {sorted(sizes)}")
        for split in self.splits():
            if split.text_emb.shape[1] != d:
                raise ValueError(f"split {split.name!r}: text embeddings are {split.text_emb.shape[1]}-d "
                                 f"but {'tag' if self.tag_emb is not None else 'train text'} "
                                 f"embeddings are {d}-d (encode everything with the same model)")
            if self.tag_emb is not None and split.logits.shape[1] != self.tag_emb.shape[0]:
                raise ValueError(f"split {split.name!r}: {split.logits.shape[1]} logits per clip but "
                                 f"{self.tag_emb.shape[0]} tag embeddings")

    @property
    def is_synthetic(self) -> bool:
        """True for the generated corpus (provenance source "synthetic")."""
        return self.provenance.get("source") == "synthetic"

    @property
    def has_tags(self) -> bool:
        """Whether the corpus has W_t (its audio front end has class names)."""
        return self.tag_emb is not None

    @property
    def dim(self) -> int:
        """Size d of the text (and tag) embeddings."""
        return int(self.tag_emb.shape[1] if self.tag_emb is not None else self.train.text_emb.shape[1])

    @property
    def audio_dim(self) -> int:
        """Size of one audio vector (527 PaSST logits)."""
        return int(self.train.logits.shape[1])

    def splits(self) -> tuple:
        """(train, val, test)."""
        return (self.train, self.val, self.test)

    def save(self, directory: "str | os.PathLike") -> Path:
        """Write the corpus into `directory`, safe against interruption (see the module doc)."""
        directory = ensure_dir(directory, "corpus folder")
        # corpus.json marks a complete corpus: gone while the files change
        for stale in ("corpus.json", CHECKSUMS, "tag_emb.npy"):
            remove_file(directory / stale)
        names = []
        if self.tag_emb is not None:
            atomic_write(directory / "tag_emb.npy", lambda f: np.save(f, self.tag_emb))
            names.append("tag_emb.npy")
        for split in self.splits():
            split.save(directory)
        names += [f"{s.name}{ext}" for s in self.splits() for ext in (".npz", ".json")]
        sums = {n: sha256_file(directory / n) for n in names}
        atomic_write_json(directory / CHECKSUMS, sums)
        # corpus.json, written last, carries the checksums too: deleting checksums.json does
        # not turn a folder mixed from two saves into a corpus
        atomic_write_json(directory / "corpus.json", {**self.provenance, FILES_KEY: sums})
        return directory

    @classmethod
    def load(cls, directory: "str | os.PathLike") -> "Corpus":
        """Read a corpus saved by Corpus.save, checking every file against the checksums that
        corpus.json (and checksums.json) record; corpora saved before checksums existed load
        without the check."""
        directory = Path(directory)
        if not (directory / "corpus.json").is_file():
            raise FileNotFoundError(f"{directory} holds no complete corpus (no corpus.json)")
        hint = "rebuild the corpus (or import its archive again)"
        provenance = read_json(directory / "corpus.json", "corpus record", hint)
        if not isinstance(provenance, dict):
            raise ValueError(f"{directory / 'corpus.json'}: not a corpus record (a JSON object); {hint}")
        sums = provenance.pop(FILES_KEY, None)
        listed = read_json(directory / CHECKSUMS, "checksum list", hint) \
            if (directory / CHECKSUMS).exists() else None
        if sums is not None and listed is not None and listed != sums:
            raise ValueError(f"{directory / CHECKSUMS} differs from the checksums in corpus.json: "
                             f"the folder mixes two saves; {hint}")
        sums = sums if sums is not None else listed
        if sums is not None:
            if not isinstance(sums, dict):
                raise ValueError(f"{directory}: the recorded checksums are not a list of files; {hint}")
            for name, want in sums.items():
                path = directory / str(name)
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: missing, but listed among the corpus's files: "
                                            f"the corpus is incomplete; {hint}")
                if sha256_file(path) != want:
                    raise ValueError(f"{path}: its content differs from the corpus that was saved "
                                     f"(sha256 mismatch: truncated, or mixed from two saves); {hint}")
        splits = [RetrievalSplit.load(directory, s) for s in SPLITS]
        tag_path = directory / "tag_emb.npy"
        tag_emb = None
        if tag_path.exists() or sums is None or "tag_emb.npy" in sums:
            try:
                tag_emb = np.load(tag_path, allow_pickle=False)
            except Exception as err:
                raise ValueError(f"{tag_path}: cannot read W_t ({type(err).__name__}: {err}); "
                                 f"{hint}") from err
        try:
            return cls(*splits, tag_emb=tag_emb, provenance=provenance)
        except ValueError as err:
            raise ValueError(f"{directory}: {err}; {hint}") from err
