"""The embedding corpus: what the learnable part of the system trains on.

A RetrievalSplit holds, for one split, the PaSST logits of its clips and the sentence
embeddings e_s of its captions (5 per clip in Clotho). A Corpus holds train / val / test splits
and W_t, plus a provenance dict saying where the numbers came from ("source" is "synthetic"
for the generated corpus: every figure drawn from it must say so).

On-disk format (a directory), written by Corpus.save and read by Corpus.load:
    corpus.json            provenance (source, models, sample rate, windowing, versions)
    tag_emb.npy            W_t, (527, d) float32
    {split}.npz            logits (n_clips, 527) f32, text_emb (n_captions, d) f32,
                           caption_clip (n_captions,) int64
    {split}.json           {"clip_names": [...], "captions": [...]}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
        return self.logits.shape[0]

    @property
    def n_captions(self) -> int:
        return self.text_emb.shape[0]

    def validate(self) -> None:
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
        """The first n_clips clips and their captions (for quick runs)."""
        keep = self.caption_clip < n_clips
        return RetrievalSplit(
            name or self.name, self.logits[:n_clips], self.text_emb[keep], self.caption_clip[keep],
            self.clip_names[:n_clips],
            [c for c, k in zip(self.captions, keep) if k] if self.captions else [])

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        np.savez(directory / f"{self.name}.npz", logits=self.logits, text_emb=self.text_emb,
                 caption_clip=self.caption_clip)
        (directory / f"{self.name}.json").write_text(
            json.dumps({"clip_names": list(self.clip_names), "captions": list(self.captions)}))

    @classmethod
    def load(cls, directory: Path, name: str) -> "RetrievalSplit":
        directory = Path(directory)
        path = directory / f"{name}.npz"
        if not path.exists():
            raise FileNotFoundError(f"no split {name!r} in {directory} (missing {path.name})")
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("logits", "text_emb", "caption_clip")}
        meta_path = directory / f"{name}.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return cls(name, **arrays, clip_names=meta.get("clip_names", []),
                   captions=meta.get("captions", []))


@dataclass
class Corpus:
    train: RetrievalSplit
    val: RetrievalSplit
    test: RetrievalSplit
    tag_emb: np.ndarray   # W_t (527, d)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.tag_emb = np.ascontiguousarray(self.tag_emb, dtype=np.float32)
        d = self.tag_emb.shape[1]
        for split in self.splits():
            if split.text_emb.shape[1] != d:
                raise ValueError(f"split {split.name!r}: text embeddings are {split.text_emb.shape[1]}-d "
                                 f"but tag embeddings are {d}-d (encode both with the same model)")
            if split.logits.shape[1] != self.tag_emb.shape[0]:
                raise ValueError(f"split {split.name!r}: {split.logits.shape[1]} logits per clip but "
                                 f"{self.tag_emb.shape[0]} tag embeddings")

    @property
    def is_synthetic(self) -> bool:
        return self.provenance.get("source") == "synthetic"

    @property
    def dim(self) -> int:
        return self.tag_emb.shape[1]

    def splits(self):
        return (self.train, self.val, self.test)

    def save(self, directory) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "tag_emb.npy", self.tag_emb)
        for split in self.splits():
            split.save(directory)
        # written last: its presence marks a complete corpus
        (directory / "corpus.json").write_text(json.dumps(self.provenance, indent=2))
        return directory

    @classmethod
    def load(cls, directory) -> "Corpus":
        directory = Path(directory)
        if not (directory / "corpus.json").exists():
            raise FileNotFoundError(f"{directory} holds no complete corpus (no corpus.json)")
        provenance = json.loads((directory / "corpus.json").read_text())
        splits = [RetrievalSplit.load(directory, s) for s in SPLITS]
        return cls(*splits, tag_emb=np.load(directory / "tag_emb.npy"), provenance=provenance)
