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
import hashlib
import http.client
import io
import json
import os
import urllib.error
import warnings
from pathlib import Path

import numpy as np

from .text import clean_caption

ZENODO_RECORD = "4783391"
# Where the files come from. `{name}` is replaced by the file name (URL-quoted). Override with the
# base_url argument or the environment variable RETRIEVAL_LIB_ZENODO_URL: either a template with
# {name} or a folder URL (the file name is then appended after a slash), e.g. a mirror.
ZENODO_URL = "https://zenodo.org/records/" + ZENODO_RECORD + "/files/{name}?download=1"
URL_ENV = "RETRIEVAL_LIB_ZENODO_URL"
# A JSON file {file name: "md5:<hex>" or "sha256:<hex>"} replacing the table below (a mirror
# whose files differ, a new Clotho release); the checksums argument does the same in code.
CHECKSUMS_ENV = "RETRIEVAL_LIB_CLOTHO_CHECKSUMS"

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

def file_url(name: str, base_url: str | None = None) -> str:
    """The URL of one Clotho file: base_url, else $RETRIEVAL_LIB_ZENODO_URL, else Zenodo."""
    from urllib.parse import quote

    base = base_url or os.environ.get(URL_ENV) or ZENODO_URL
    if "{name}" in base:
        return base.replace("{name}", quote(name))
    return base.rstrip("/") + "/" + quote(name)


def checksum_table(checksums=None) -> dict:
    """{file name: "md5:<hex>" | "sha256:<hex>"}: the argument, else the JSON file named by
    $RETRIEVAL_LIB_CLOTHO_CHECKSUMS, else the published MD5s of Clotho v2.1."""
    if checksums is None and os.environ.get(CHECKSUMS_ENV):
        path = Path(os.environ[CHECKSUMS_ENV])
        try:
            checksums = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{CHECKSUMS_ENV}={path}: cannot read a JSON checksum table ({err})") from err
    if checksums is None:
        return {name: f"md5:{value}" for name, value in MD5.items()}
    table = {}
    for name, value in dict(checksums).items():
        value = str(value).lower()
        if ":" not in value:          # a bare hex string: its length says which algorithm
            value = ("md5:" if len(value) == 32 else "sha256:") + value
        if value.split(":", 1)[0] not in ("md5", "sha256"):
            raise ValueError(f"checksum of {name}: use md5:<hex> or sha256:<hex>, got {value!r}")
        table[name] = value
    return table


def file_hash(path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, known: str) -> bool:
    """Whether `path` carries the checksum `known`; a stamp (size, mtime, checksum) next to it
    spares hashing 7.5 GB again on every call."""
    stamp = path.with_name(f".{path.name}.verified")
    st = path.stat()
    tag = f"{known} {st.st_size} {st.st_mtime_ns}"
    if stamp.exists() and stamp.read_text().strip() == tag:
        return True
    algorithm, value = known.split(":", 1)
    if file_hash(path, algorithm) != value:
        return False
    stamp.write_text(tag + "\n")
    return True


def download_file(url: str, dest, known: str | None, progress: bool = True, timeout: float = 60.0,
                  chunk: int = 1 << 20) -> Path:
    """Download `url` to `dest`, resumably, checked against `known` ("md5:..." / "sha256:...").

    Bytes go to a hidden `.{name}.part` file beside dest; dest itself only ever appears complete
    and verified (an atomic rename). After an interruption the next call asks the server for the
    missing bytes only (HTTP Range); a server that ignores Range sends the whole file and the
    download restarts from zero. A finished file with the wrong checksum is deleted (never kept
    as if good) and reported with both checksums.
    """
    import urllib.request

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "retrieval_lib"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:      # nothing left to send: the part file is complete
            response = None
        else:
            raise RuntimeError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
    except OSError as err:
        raise RuntimeError(f"download of {url} failed: {err} (interrupted downloads resume on "
                           f"the next call)") from err
    if response is not None:
        with response:
            resumed = have and response.status == 206
            mode = "ab" if resumed else "wb"
            total = response.headers.get("Content-Length")
            total = int(total) + (have if resumed else 0) if total else None
            bar = None
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                           desc=dest.name)
            try:
                with part.open(mode) as out:
                    for block in iter(lambda: response.read(chunk), b""):
                        out.write(block)
                        if bar is not None:
                            bar.update(len(block))
            except (OSError, http.client.HTTPException) as err:
                raise RuntimeError(f"download of {url} was interrupted after {part.stat().st_size} "
                                   f"bytes ({type(err).__name__}: {err}); call again to resume "
                                   f"from {part.name}") from err
            finally:
                if bar is not None:
                    bar.close()
            # http.client returns a short body without an error when the connection drops
            if total is not None and part.stat().st_size < total:
                raise RuntimeError(f"download of {url} was interrupted after {part.stat().st_size} "
                                   f"of {total} bytes; call again to resume from {part.name}")
    if known:
        algorithm, value = known.split(":", 1)
        got = file_hash(part, algorithm)
        if got != value:
            part.unlink()
            raise ValueError(f"{dest.name} from {url}: {algorithm} is {got}, expected {value}; the "
                             f"file was deleted (a changed file on the server, or a wrong checksum "
                             f"table: see {CHECKSUMS_ENV})")
    else:
        warnings.warn(f"no known checksum for {dest.name}: it was downloaded UNVERIFIED")
    os.replace(part, dest)
    if known:
        _verified(dest, known)
    return dest


def existing_split(data_dir, clotho_split: str) -> bool:
    """Whether data_dir already holds a split ready to read: its captions CSV and its folder of
    WAV files (as the archive unpacks, or aac-datasets' clotho_audio_files/ layout)."""
    try:
        audio_dir(data_dir, clotho_split)
    except FileNotFoundError:
        return False
    return captions_csv(data_dir, clotho_split).is_file()


def _extract(archive: Path, data_dir: Path, clotho_split: str) -> None:
    """Unpack a split's archive into data_dir/{split}, atomically: into a hidden temporary folder
    first, renamed into place once complete (an interrupted extraction leaves no half folder; its
    temporary folder is removed and the extraction restarts on the next call)."""
    import shutil

    import py7zr

    tmp = data_dir / f".{clotho_split}.extracting"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            z.extractall(path=tmp)
        inner = tmp / clotho_split
        if not inner.is_dir():   # an archive without the split folder: take what it holds
            entries = [e for e in tmp.iterdir() if not e.name.startswith(".")]
            inner = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if inner == tmp:
            os.replace(tmp, data_dir / clotho_split)
        else:
            os.replace(inner, data_dir / clotho_split)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def download_clotho(data_dir, splits=tuple(SPLIT_MAP.values()), progress: bool = True,
                    base_url: str | None = None, checksums=None, download: bool = True) -> Path:
    """Make data_dir hold Clotho v2.1: captions CSVs + one folder of WAVs per split.

    What is already there is used and never downloaded again: a split whose CSV and WAV folder
    exist is left as it is; an archive already in data_dir is checked and unpacked. Missing
    files are downloaded (about 7.5 GB) from base_url / $RETRIEVAL_LIB_ZENODO_URL / Zenodo,
    resumably, and checked against `checksums` / $RETRIEVAL_LIB_CLOTHO_CHECKSUMS / the published
    MD5s. download=False raises FileNotFoundError instead of downloading.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    table = checksum_table(checksums)
    for split in splits:
        _check_split(split)
        csv_path, archive = captions_csv(data_dir, split), audio_archive(data_dir, split)
        if existing_split(data_dir, split):
            continue
        for path in (csv_path,) + (() if _has_audio(data_dir, split) else (archive,)):
            known = table.get(path.name)
            if path.exists():
                if known and not _verified(path, known):
                    algorithm = known.split(":", 1)[0]
                    raise ValueError(f"{path} exists but its {algorithm} is "
                                     f"{file_hash(path, algorithm)}, expected {known.split(':', 1)[1]}; "
                                     f"delete it to download it again, or pass its checksum")
                continue
            if not download:
                raise FileNotFoundError(f"{path} is missing and download=False; put Clotho v2.1 "
                                        f"(archives or unpacked folders + CSVs) in {data_dir}")
            download_file(file_url(path.name, base_url), path, known, progress=progress)
        if not _has_audio(data_dir, split):
            _extract(archive, data_dir, split)
    return data_dir


def _has_audio(data_dir, clotho_split: str) -> bool:
    try:
        audio_dir(data_dir, clotho_split)
        return True
    except FileNotFoundError:
        return False


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
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:   # e.g. a CSV re-saved as Latin-1 by a spreadsheet
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte {raw[err.start]:#04x}: "
                         f"{err.reason}); Clotho's CSVs are UTF-8: re-save the file as UTF-8") from err
    with io.StringIO(text, newline="") as f:
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
