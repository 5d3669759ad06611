"""Clotho v2.1 access: download from Zenodo, read the caption CSVs, find the WAV files.

Clotho v2.1 (Drossos et al.) lives on Zenodo, record 4783391. Each split has an audio archive
(clotho_audio_{split}.7z, which unpacks into a folder named after the split) and a captions CSV
with the columns file_name, caption_1, ..., caption_5. The book maps the splits as the paper did:

    train = development (3839 clips), val = validation (1045), test = evaluation (1045, the
    paper's "dev-test").

`make_fake_clotho` writes a small directory with the same layout, filled with synthetic tones and
templated captions, for tests and CPU demos. It is fake data and says so: its WAV names start with
"fake", and it writes a FAKE_CLOTHO.txt marker that the pipeline turns into
provenance source "synthetic".
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from .text import clean_caption

ZENODO_RECORD = "4783391"
ZENODO_URL = "https://zenodo.org/records/" + ZENODO_RECORD + "/files/{name}?download=1"

# book split -> Clotho split
SPLIT_MAP = {"train": "development", "val": "validation", "test": "evaluation"}
EXPECTED_CLIPS = {"development": 3839, "validation": 1045, "evaluation": 1045}
N_CAPTIONS = 5
CAPTION_COLUMNS = ("file_name",) + tuple(f"caption_{k}" for k in range(1, N_CAPTIONS + 1))

# MD5 checksums of the Clotho v2.1 files as listed by two independent public dataset loaders
# (mirdata's dcase23_task6a REMOTES and aac-datasets' Clotho card), which agree on every value.
MD5 = {
    "clotho_audio_development.7z": "c8b05bc7acdb13895bb3c6a29608667e",
    "clotho_audio_validation.7z": "7dba730be08bada48bd15dc4e668df59",
    "clotho_audio_evaluation.7z": "4569624ccadf96223f19cb59fe4f849f",
    "clotho_captions_development.csv": "d4090b39ce9f2491908eebf4d5b09bae",
    "clotho_captions_validation.csv": "5879e023032b22a2c930aaa0528bead4",
    "clotho_captions_evaluation.csv": "1b16b9e57cf7bdb7f13a13802aeb57e2",
}

FAKE_MARKER = "FAKE_CLOTHO.txt"


def captions_csv(data_dir, clotho_split: str) -> Path:
    return Path(data_dir) / f"clotho_captions_{clotho_split}.csv"


def audio_archive(data_dir, clotho_split: str) -> Path:
    return Path(data_dir) / f"clotho_audio_{clotho_split}.7z"


def _check_split(clotho_split: str) -> None:
    if clotho_split not in EXPECTED_CLIPS:
        raise ValueError(f"unknown Clotho split {clotho_split!r}; expected one of "
                         f"{sorted(EXPECTED_CLIPS)} (book names {SPLIT_MAP} map onto them)")


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------

def download_clotho(data_dir, splits=tuple(SPLIT_MAP.values()), progress: bool = True) -> Path:
    """Download and unpack Clotho v2.1 into data_dir (about 7.5 GB of archives).

    pooch checks every file's MD5 and skips files already present with the right checksum;
    an archive is unpacked once (a hidden marker file records a finished extraction, so an
    interrupted extraction is redone rather than trusted).
    """
    import pooch

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in splits:
        _check_split(split)
        for path in (captions_csv(data_dir, split), audio_archive(data_dir, split)):
            md5 = MD5.get(path.name)
            if md5 is None:  # never happens for the files above; kept loud on purpose
                warnings.warn(f"no known checksum for {path.name}: it is downloaded UNVERIFIED")
            pooch.retrieve(ZENODO_URL.format(name=path.name),
                           known_hash=f"md5:{md5}" if md5 else None,
                           fname=path.name, path=data_dir, progressbar=progress)
        marker = data_dir / f".{split}_extracted"
        if not marker.exists():
            import py7zr
            with py7zr.SevenZipFile(audio_archive(data_dir, split), mode="r") as archive:
                archive.extractall(path=data_dir)
            marker.write_text("extraction finished\n")
    return data_dir


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def read_captions_csv(path) -> list:
    """[(file_name, [caption_1, ..., caption_5]), ...] from a Clotho captions CSV, in file order.

    Refuses (ValueError naming the file and row) missing columns, duplicate file names, and
    captions that are empty or have no word left once cleaned.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    # utf-8-sig: a byte-order mark must not end up glued to the first column's name
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in CAPTION_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected header "
                             f"{','.join(CAPTION_COLUMNS)}, found {','.join(header) or '(empty file)'}")
        rows, seen = [], set()
        for row_no, row in enumerate(reader, start=2):   # row 1 is the header
            name = (row["file_name"] or "").strip()
            if not name:
                raise ValueError(f"{path}, row {row_no}: empty file_name")
            if name in seen:
                raise ValueError(f"{path}, row {row_no}: duplicate file_name {name!r}")
            seen.add(name)
            caps = []
            for col in CAPTION_COLUMNS[1:]:
                cap = row[col]
                if cap is None or not cap.strip():
                    raise ValueError(f"{path}, row {row_no} ({name}): {col} is empty")
                try:
                    clean_caption(cap)
                except ValueError as err:
                    raise ValueError(f"{path}, row {row_no} ({name}): {col} has no word: {err}") from err
                caps.append(cap.strip())
            rows.append((name, caps))
    if not rows:
        raise ValueError(f"{path}: no caption rows")
    return rows


def audio_dir(data_dir, clotho_split: str) -> Path:
    """Folder holding a split's WAV files: data_dir/{split} (what the 7z archive unpacks to),
    or data_dir/clotho_audio_files/{split} (aac-datasets' layout)."""
    _check_split(clotho_split)
    candidates = [Path(data_dir) / clotho_split, Path(data_dir) / "clotho_audio_files" / clotho_split]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"no audio folder for Clotho split {clotho_split!r}; looked for "
                            + ", ".join(str(c) for c in candidates)
                            + " (download with download_clotho or --download)")


def read_split(data_dir, clotho_split: str):
    """(audio folder, [(file_name, captions)]) of one Clotho split."""
    _check_split(clotho_split)
    return audio_dir(data_dir, clotho_split), read_captions_csv(captions_csv(data_dir, clotho_split))


def is_fake(data_dir) -> bool:
    return (Path(data_dir) / FAKE_MARKER).exists()


# ---------------------------------------------------------------------------------------------
# Fake Clotho for tests and demos
# ---------------------------------------------------------------------------------------------

_SOURCES = ["a low hum", "a high pitched whistle", "a buzzing tone", "a soft drone", "a shrill beep",
            "a rumbling noise", "a chirping tone", "a steady whine"]
_ACTIONS = ["rises and falls", "stays steady", "pulses quickly", "fades in and out", "wobbles slowly"]
_PLACES = ["in a quiet room", "with some hiss behind it", "over faint static", "close to the microphone",
           "far away"]


def make_fake_clotho(root, n_clips_per_split=4, sr: int = 44100, seconds=(15.0, 20.0, 25.0, 30.0),
                     seed: int = 0) -> Path:
    """Write a FAKE Clotho-shaped directory: WAVs + caption CSVs in the real layout.

    n_clips_per_split: an int, or a dict {clotho split: int} (development / validation /
    evaluation). Clip i of a split lasts seconds[i % len(seconds)]. Each clip is a tone whose
    pitch, modulation and noise level depend on the clip, so PaSST logits differ between clips;
    its five captions are templated from the same parameters. Nothing here is real audio.
    """
    import soundfile as sf

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    counts = n_clips_per_split if isinstance(n_clips_per_split, dict) else \
        {s: int(n_clips_per_split) for s in EXPECTED_CLIPS}
    seconds = [float(s) for s in np.atleast_1d(seconds)]
    if not seconds or min(seconds) <= 0:
        raise ValueError(f"seconds must hold positive durations, got {seconds}")
    rng = np.random.default_rng(seed)
    for split in EXPECTED_CLIPS:
        n = counts.get(split, 0)
        if n < 1:
            raise ValueError(f"need at least one clip per split, got {n} for {split!r}")
        folder = root / split
        folder.mkdir(exist_ok=True)
        rows = []
        for i in range(n):
            # a space in the name, as in many real Clotho names
            name = f"fake {split} clip_{i:03d}.wav"
            dur = seconds[i % len(seconds)]
            src, act, place = (int(rng.integers(len(_SOURCES))), int(rng.integers(len(_ACTIONS))),
                               int(rng.integers(len(_PLACES))))
            t = np.arange(int(round(dur * sr))) / sr
            f0 = 110.0 * 2 ** (src / 2)                       # pitch from the source word
            mod = 1 + 0.5 * np.sin(2 * np.pi * (0.2 + act) * t)
            wave = 0.3 * mod * np.sin(2 * np.pi * f0 * t) + 0.02 * (1 + place) * rng.standard_normal(t.size)
            sf.write(folder / name, (wave / np.abs(wave).max() * 0.8).astype(np.float32), sr,
                     subtype="PCM_16")
            caps = [f"{_SOURCES[src]} {_ACTIONS[act]} {_PLACES[place]}",
                    f"{_SOURCES[src].capitalize()} that {_ACTIONS[act]}.",
                    f"Someone records {_SOURCES[src]} {_PLACES[place]}.",
                    f"There is {_SOURCES[src]}, and it {_ACTIONS[act]}.",
                    f"{_SOURCES[src]} {_PLACES[place]}; it {_ACTIONS[act]}"]
            rows.append([name] + caps)
        with captions_csv(root, split).open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(CAPTION_COLUMNS)
            w.writerows(rows)
    (root / FAKE_MARKER).write_text(
        "FAKE Clotho-shaped data written by retrieval_lib.clotho.make_fake_clotho: synthetic tones "
        "and templated captions, NOT the Clotho dataset. Results on it mean nothing about the paper.\n")
    return root
