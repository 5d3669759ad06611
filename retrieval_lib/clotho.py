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
import http.client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import warnings
from pathlib import Path

import numpy as np

from .core import (CHECKSUMS_ENV, ZENODO_URL_ENV, atomic_write_json, atomic_write_text, check_plain_name,
                   ensure_dir, file_hash, open_private_append, read_csv, read_json, refuse_symlink,
                   remove_file)
from .text import clean_caption

ZENODO_RECORD = "4783391"
# Where the files come from. `{name}` is replaced by the file name (URL-quoted). Override with the
# base_url argument or the environment variable RETRIEVAL_LIB_ZENODO_URL: either a template with
# {name} or a folder URL (the file name is then appended after a slash), e.g. a mirror.
ZENODO_URL = "https://zenodo.org/records/" + ZENODO_RECORD + "/files/{name}?download=1"
URL_ENV = ZENODO_URL_ENV
# CHECKSUMS_ENV names a JSON file {file name: "md5:<hex>" or "sha256:<hex>"} replacing the table
# below (a mirror whose files differ, a new Clotho release); the checksums argument does the same.
# Where each downloaded file came from and which checksum table checked it (data_dir/SOURCE_RECORD)
SOURCE_RECORD = ".retrieval_lib_sources.json"

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
        value = str(value).strip().lower()
        if ":" not in value:          # a bare hex string: its length says which algorithm
            value = ("md5:" if len(value) == 32 else "sha256:") + value
        algorithm, _, digest = value.partition(":")
        digest = digest.strip()
        lengths = {"md5": 32, "sha256": 64}
        if algorithm not in lengths or len(digest) != lengths[algorithm] or \
                any(ch not in "0123456789abcdef" for ch in digest):
            raise ValueError(f"checksum of {name}: use md5:<32 hex digits> or sha256:<64 hex digits>, "
                             f"got {str(checksums[name])!r}")
        table[name] = f"{algorithm}:{digest}"
    return table


def _verified(path: Path, known: str) -> bool:
    """Whether `path` carries the checksum `known`; a stamp (size, mtime, checksum) next to it
    spares hashing 7.5 GB again on every call."""
    stamp = path.with_name(f".{path.name}.verified")
    refuse_symlink(stamp, "checksum stamp")
    st = path.stat()
    tag = f"{known} {st.st_size} {st.st_mtime_ns}"
    if stamp.is_file() and stamp.read_text(errors="replace").strip() == tag:
        return True
    algorithm, value = known.split(":", 1)
    if file_hash(path, algorithm) != value:
        return False
    atomic_write_text(stamp, tag + "\n")       # a new file renamed into place: no link followed
    return True


def _content_range_total(headers) -> int | None:
    """The total size in a Content-Range header ("bytes 0-9/123" or "bytes */123")."""
    value = (headers or {}).get("Content-Range") if headers is not None else None
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _content_range_start(headers) -> int | None:
    value = headers.get("Content-Range") if headers is not None else None
    if not value or not value.startswith("bytes ") or "-" not in value:
        return None
    first = value[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def download_file(url: str, dest, known: str | None, progress: bool = True, timeout: float = 60.0,
                  chunk: int = 1 << 20) -> Path:
    """Download `url` to `dest`, resumably, checked against `known` ("md5:..." / "sha256:...").

    Bytes go to a hidden `.{name}.part` file beside dest, created by this function (a link or
    anything but a regular file planted at that name is refused, never written through); dest
    itself only ever appears complete and verified (an atomic rename). After an interruption the
    next call asks the server for the missing bytes only (HTTP Range); a server that ignores
    Range, or answers with another range, sends the whole file and the download restarts from
    zero. A finished file with the wrong checksum is deleted (never kept as if good) and
    reported with both checksums. HTTP 416 ("nothing left to send") is trusted only when the
    partial file has exactly the size the server reports; otherwise it restarts from zero.
    """
    import urllib.request

    dest = Path(dest)
    ensure_dir(dest.parent)
    part = dest.with_name(f".{dest.name}.part")
    refuse_symlink(part, "partial download")
    if part.exists() and not part.is_file():
        raise ValueError(f"{part} is not a regular file; the partial download is written only to "
                         "a file retrieval_lib created. Remove it and run again.")
    for attempt in range(2):        # a stale partial file is thrown away once, then restarted
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "retrieval_lib"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:
                total = _content_range_total(err.headers)
                if total is not None and total == have:
                    response = None          # the partial file holds the whole file already
                else:
                    remove_file(part)        # stale: longer than the file, or size unknown
                    continue
            else:
                raise RuntimeError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
        except OSError as err:
            raise RuntimeError(f"download of {url} failed: {err} (interrupted downloads resume on "
                               f"the next call)") from err
        if response is not None:
            with response:
                resumed = bool(have) and response.status == 206 and \
                    _content_range_start(response.headers) in (have, None)
                if have and not resumed:
                    remove_file(part)        # the server sends the whole file: start again
                    have = 0
                total = response.headers.get("Content-Length")
                total = int(total) + (have if resumed else 0) if total else None
                bar = None
                if progress:
                    from tqdm.auto import tqdm
                    bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name)
                try:
                    out, _ = open_private_append(part)
                    with out:
                        for block in iter(lambda: response.read(chunk), b""):
                            out.write(block)
                            if bar is not None:
                                bar.update(len(block))
                except (OSError, http.client.HTTPException) as err:
                    size = part.stat().st_size if part.exists() else 0
                    raise RuntimeError(f"download of {url} was interrupted after {size} bytes "
                                       f"({type(err).__name__}: {err}); call again to resume "
                                       f"from {part.name}") from err
                finally:
                    if bar is not None:
                        bar.close()
                # http.client returns a short body without an error when the connection drops
                if total is not None and part.stat().st_size < total:
                    raise RuntimeError(f"download of {url} was interrupted after "
                                       f"{part.stat().st_size} of {total} bytes; call again to "
                                       f"resume from {part.name}")
        break
    if known:
        algorithm, value = known.split(":", 1)
        got = file_hash(part, algorithm)
        if got != value:
            remove_file(part)
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


def _extract(archive: Path, data_dir: Path, clotho_split: str, progress: bool = True) -> None:
    """Unpack a split's archive into data_dir/{split}, atomically: into a fresh hidden temporary
    folder first (a random name, created by this call), renamed into place once complete; an
    interrupted extraction leaves no half folder (leftover temporary folders of earlier runs are
    removed) and restarts on the next call. Members that are links, absolute or leave the folder
    are refused before anything is written. Unpacking Clotho's development archive takes minutes:
    a progress bar (or a line before and after) says so."""
    import py7zr

    for old in data_dir.glob(f".{clotho_split}.extracting*"):
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
    with py7zr.SevenZipFile(archive, mode="r") as z:
        members = z.list()
        for m in members:
            name = m.filename.replace("\\", "/")
            if getattr(m, "is_symlink", False) or name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"{archive}: member {m.filename!r} is a link or leaves the "
                                 "extraction folder; refusing to unpack this archive")
    total = sum(int(getattr(m, "uncompressed", 0) or 0) for m in members)
    started = time.time()
    print(f"unpacking {archive.name} ({total / 1e9:.1f} GB, {len(members)} files) into "
          f"{data_dir / clotho_split}; this takes a few minutes for the larger splits", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{clotho_split}.extracting-", dir=data_dir))
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            z.extractall(path=tmp, callback=_unpack_progress(total, archive.name) if progress else None)
        inner = tmp / clotho_split
        if not inner.is_dir():   # an archive without the split folder: take what it holds
            entries = [e for e in tmp.iterdir() if not e.name.startswith(".")]
            inner = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        os.replace(inner, data_dir / clotho_split)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"unpacked {archive.name} in {time.time() - started:.0f} s", flush=True)


def _unpack_progress(total: int, name: str):
    """A py7zr extraction callback feeding a tqdm bar (bytes written)."""
    from py7zr.callbacks import ExtractCallback
    from tqdm.auto import tqdm

    bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=f"unpacking {name}")

    class Progress(ExtractCallback):
        def report_start_preparation(self): pass
        def report_start(self, processing_file_path, processing_bytes): pass
        def report_update(self, decompressed_bytes): pass
        def report_warning(self, message): warnings.warn(f"py7zr: {message}")
        def report_end(self, processing_file_path, wrote_bytes): bar.update(int(wrote_bytes or 0))
        def report_postprocess(self): bar.close()

    return Progress()


def checksum_source(checksums=None) -> str:
    """Which checksum table checksum_table(checksums) uses, in words (for the records)."""
    if checksums is not None:
        return "a checksum table given by the caller"
    if os.environ.get(CHECKSUMS_ENV):
        return f"the checksum table {os.environ[CHECKSUMS_ENV]} (${CHECKSUMS_ENV})"
    return PUBLISHED


PUBLISHED = "the published Clotho v2.1 MD5s"


def download_clotho(data_dir, splits=tuple(SPLIT_MAP.values()), progress: bool = True,
                    base_url: str | None = None, checksums=None, download: bool = True) -> Path:
    """Make data_dir hold Clotho v2.1: captions CSVs + one folder of WAVs per split.

    What is already there is used and never downloaded again: a split whose CSV and WAV folder
    exist is left as it is; an archive already in data_dir is checked and unpacked. Missing
    files are downloaded (about 7.5 GB) from base_url / $RETRIEVAL_LIB_ZENODO_URL / Zenodo,
    resumably, and checked against `checksums` / $RETRIEVAL_LIB_CLOTHO_CHECKSUMS / the published
    MD5s. download=False raises FileNotFoundError instead of downloading. Where each file came
    from and which table checked it is recorded in data_dir/.retrieval_lib_sources.json (read by
    `release_record`, which says whether the data is the complete, published release).
    """
    data_dir = ensure_dir(data_dir, "Clotho folder")
    table = checksum_table(checksums)
    table_name = checksum_source(checksums)
    record_path = refuse_symlink(data_dir / SOURCE_RECORD, "download record")
    try:
        record = read_json(record_path, "download record") if record_path.is_file() else {}
    except ValueError:
        record = {}                 # a damaged record is rebuilt; it only describes the files
    record = record if isinstance(record, dict) else {}
    changed = False
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
                entry = record.get(path.name, {"origin": "already in the folder"})
                entry.update(checksum=known, table=table_name if known else None)
                record[path.name], changed = entry, True
                continue
            if not download:
                raise FileNotFoundError(f"{path} is missing and download=False; put Clotho v2.1 "
                                        f"(archives or unpacked folders + CSVs) in {data_dir}")
            url = file_url(path.name, base_url)
            download_file(url, path, known, progress=progress)
            record[path.name] = {"origin": url, "checksum": known, "table": table_name if known else None}
            changed = True
        if not _has_audio(data_dir, split):
            _extract(archive, data_dir, split, progress=progress)
    if changed:
        atomic_write_json(record_path, record)
    return data_dir


def release_record(data_dir, n_clips: dict | None = None) -> dict:
    """What a Clotho folder holds, for a corpus's provenance, and whether it may be compared
    with the paper: only the complete release (5,929 clips) whose files match the published
    MD5s is. The captions CSVs are checked against the published MD5s here (they are small);
    the archives' checks come from the download record; unpacked audio that no archive
    accompanies cannot be checked and is said to be unchecked.

    n_clips: {clotho split: clips actually used} (clips skipped as unreadable reduce it).
    Returns {"summary", "comparable_with_paper", "n_clips", "expected_clips", "files"}."""
    data_dir = Path(data_dir)
    try:
        record = read_json(data_dir / SOURCE_RECORD, "download record") \
            if (data_dir / SOURCE_RECORD).is_file() and not (data_dir / SOURCE_RECORD).is_symlink() else {}
    except ValueError:
        record = {}
    record = record if isinstance(record, dict) else {}
    files, published_ok, origins = {}, True, set()
    for split in EXPECTED_CLIPS:
        for path in (captions_csv(data_dir, split), audio_archive(data_dir, split)):
            entry = dict(record.get(path.name, {}))
            if path.name.endswith(".csv") and path.is_file():
                entry["published_md5"] = file_hash(path, "md5") == MD5[path.name]
            elif path.name.endswith(".7z"):
                entry["published_md5"] = entry.get("table") == PUBLISHED and \
                    entry.get("checksum") == f"md5:{MD5[path.name]}"
                if not entry.get("table") and not path.exists():
                    entry["published_md5"] = None        # unpacked copy: nothing to check
            published_ok &= entry.get("published_md5") is not False
            if entry.get("origin"):
                origins.add(entry["origin"].split("?")[0].rsplit("/", 1)[0] + "/")
            files[path.name] = entry
    counts = dict(n_clips or {})
    total, expected = sum(counts.values()), sum(EXPECTED_CLIPS.values())
    complete = bool(counts) and all(counts.get(s) == n for s, n in EXPECTED_CLIPS.items())
    csv_ok = all(files[f"clotho_captions_{s}.csv"].get("published_md5") for s in EXPECTED_CLIPS)
    unchecked_audio = [s for s in EXPECTED_CLIPS if files[f"clotho_audio_{s}.7z"].get("published_md5") is None]
    comparable = complete and published_ok and csv_ok
    where = ("downloaded from " + ", ".join(sorted(origins))) if origins and \
        not origins <= {"already in the folder/"} else f"the folder {data_dir}"
    if comparable:
        summary = (f"Clotho v2.1 (Zenodo record {ZENODO_RECORD}), complete ({total:,} clips), "
                   f"from {where}; captions files match the published MD5s"
                   + ("; archives checked against the published MD5s" if not unchecked_audio
                      else f"; audio of {', '.join(unchecked_audio)} from an unpacked copy, not checksummed"))
    else:
        why = []
        if not complete:
            why.append(f"{total:,} of {expected:,} clips")
        if not csv_ok or not published_ok:
            tables = sorted({e.get("table") for e in files.values() if e.get("table") and e.get("table") != PUBLISHED})
            why.append("files that do not match the published Clotho v2.1 checksums"
                       + (f" (checked against {', '.join(tables)})" if tables else ""))
        summary = (f"Clotho-shaped data from {where}: {'; '.join(why)}. Its numbers are not "
                   "comparable with the paper's.")
    return {"summary": summary, "comparable_with_paper": comparable, "n_clips": counts,
            "expected_clips": dict(EXPECTED_CLIPS), "files": files}


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

    Refuses (ValueError naming the file and line) text that is not UTF-8, NUL bytes, a header
    naming a column twice or lacking one, a row with extra fields (an unquoted comma would shift
    the captions), file names that are not plain names inside the split's folder ("../x",
    absolute paths), duplicate file names, and captions that are empty or have no word left once
    cleaned.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    rows, seen = [], set()
    for line, row in read_csv(path, CAPTION_COLUMNS, "captions file"):
        where = f"{path}, line {line}"
        if not (row["file_name"] or "").strip():
            raise ValueError(f"{where}: empty file_name")
        name = check_plain_name(row["file_name"], where)
        if name in seen:
            raise ValueError(f"{where}: duplicate file_name {name!r}")
        seen.add(name)
        caps = []
        for col in CAPTION_COLUMNS[1:]:
            cap = row[col]
            if cap is None or not cap.strip():
                raise ValueError(f"{where} ({name}): {col} is empty")
            try:
                clean_caption(cap)
            except ValueError as err:
                raise ValueError(f"{where} ({name}): {col} has no word: {err}") from err
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
