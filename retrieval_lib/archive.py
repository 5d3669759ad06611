"""One real extraction serves everyone: the embedding cache as one checksummed archive.

Extracting Clotho for real (7.5 GB download, ~59k PaSST windows) takes most of an hour on a
Colab GPU; its result, the embedding cache (527 logits per clip, one sentence embedding per
caption and tag name), is ~100 MB. `export_cache` packs that cache into one .tar file:

    retrieval_lib_cache/MANIFEST.json   format, provenance (text model, PaSST variant and weights,
                                        dataset, library version) and the sha256 of every file
    retrieval_lib_cache/<corpus files>  exactly what data.Corpus.save writes

and writes the archive's own sha256 beside it (<archive>.sha256, `sha256sum -c` format).
`import_cache` (and `load_corpus("clotho", archive=..., archive_sha256=...)`) takes a path or a
URL (downloaded with pooch, checked against the sha256), refuses an archive whose provenance
differs from what was asked before unpacking anything, checks every file against the manifest
and moves the corpus into place atomically (corpus.json last).

CLI: `python -m retrieval_lib export-cache --cache-dir DIR [--out FILE]` and
`python -m retrieval_lib import-cache ARCHIVE --cache-dir DIR [--sha256 HEX]`.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from . import __version__
from .core import (UnsafePathError, atomic_write_json, atomic_write_text, check_provenance,
                   ensure_dir, is_within, parse_sha256, read_json, refuse_symlink, remove_file,
                   sha256_file)
from .data import Corpus

FORMAT = "retrieval_lib embedding cache"
FORMAT_VERSION = 1
PREFIX = "retrieval_lib_cache"
MANIFEST = "MANIFEST.json"
IMPORTED_MARKER = ".imported_from.json"


def corpus_dir(cache_dir) -> Path:
    """The folder holding corpus.json: cache_dir itself (the CLI pipeline's layout) or
    cache_dir/clotho (load_corpus's layout)."""
    cache_dir = Path(cache_dir)
    for candidate in (cache_dir, cache_dir / "clotho"):
        if (candidate / "corpus.json").is_file():
            return candidate
    raise FileNotFoundError(f"no complete embedding cache (corpus.json) in {cache_dir} or "
                            f"{cache_dir / 'clotho'}")


def _default_name(provenance: dict) -> str:
    model = str(provenance.get("text_model", "model")).rstrip("/").rsplit("/", 1)[-1]
    model = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in model)
    return f"clotho-embeddings-{model}-passt{provenance.get('passt_variant', '')}.tar"


def export_cache(cache_dir, out=None) -> dict:
    """Pack the embedding cache in cache_dir into one archive; returns {"path", "sha256",
    "provenance", "files"}. The corpus is loaded (and so validated) before it is packed. An
    output inside the cache folder is refused (it would overwrite the cache's own files); the
    archive and its .sha256 file appear complete or not at all."""
    source = corpus_dir(cache_dir)
    corpus = Corpus.load(source)
    provenance = corpus.provenance
    out = Path(out) if out is not None else source.parent / _default_name(provenance)
    if out.is_dir() or not out.suffix:     # a folder (existing, or a name without extension)
        out = out / _default_name(provenance)
    if is_within(out.parent, source):
        raise UnsafePathError(f"--out {out} lies inside the cache folder {source}: the archive "
                              "would be written among the files it packs; choose a folder outside it")
    ensure_dir(out.parent, "output folder")
    if out.exists() and not out.is_file():
        raise UnsafePathError(f"{out} exists and is not a file; choose another --out")
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        staged = Path(tmp) / PREFIX
        corpus.save(staged)              # exactly the corpus files, nothing else of the cache
        files = {p.name: sha256_file(p) for p in sorted(staged.iterdir()) if p.is_file()}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "provenance": provenance,
                    "files": files, "exported_by": f"retrieval_lib {__version__}",
                    "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        partial = Path(tmp) / out.name
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(f"{PREFIX}/{MANIFEST}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))      # first member: read without unpacking
            for name in files:
                tar.add(staged / name, arcname=f"{PREFIX}/{name}", recursive=False)
        digest = sha256_file(partial)
        sha_file = Path(str(out) + ".sha256")
        remove_file(sha_file)        # never a stale one beside the new archive (a link: the link)
        os.replace(partial, out)
    atomic_write_text(sha_file, f"{digest}  {out.name}\n")
    return {"path": out, "sha256": digest, "provenance": provenance, "files": files}


def _is_url(archive) -> bool:
    return isinstance(archive, str) and archive.split("://", 1)[0].lower() in ("http", "https", "ftp")


def fetch_archive(archive, sha256: str | None = None, download_dir=None, progress: bool = True) -> Path:
    """A local path to the archive: a URL is downloaded with pooch (checked against sha256, kept
    in download_dir and reused when already there); a path is checked against sha256. sha256 is
    accepted as users paste it (core.parse_sha256: "sha256:<hex>", a line of the .sha256 file)."""
    if sha256 is not None:
        sha256 = parse_sha256(sha256, "the archive's sha256")
    if _is_url(archive):
        import logging

        import pooch

        name = archive.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "embedding-cache.tar"
        download_dir = ensure_dir(download_dir or tempfile.gettempdir(), "download folder")
        refuse_symlink(download_dir / name, "downloaded archive")
        logger = pooch.get_logger()
        level = logger.level
        logger.setLevel(logging.WARNING)      # no "use this value as known_hash" hint
        try:
            path = pooch.retrieve(archive, known_hash=f"sha256:{sha256}" if sha256 else None,
                                  fname=name, path=download_dir, progressbar=progress)
        except ValueError as err:            # pooch: hash mismatch
            raise ValueError(f"{archive}: {err}") from None
        except Exception as err:             # HTTPError, ConnectionError, ...
            raise ValueError(f"cannot download the archive {archive} ({type(err).__name__}: "
                             f"{err})") from None
        finally:
            logger.setLevel(level)
        if sha256 is None:
            print(f"note: no sha256 given for {archive}: downloaded unverified (sha256 "
                  f"{sha256_file(path)})")
        return Path(path)
    path = Path(archive).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"embedding cache archive not found: {path}")
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256:
            raise ValueError(f"{path}: sha256 is {got}, expected {sha256}; the archive is damaged "
                             f"or not the one meant")
    return path


def _open_tar(path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable embedding cache archive ({type(err).__name__}: "
                         f"{err}); the file is damaged, truncated or not an export-cache archive") from err


def read_manifest(path) -> dict:
    """The manifest of an archive; a damaged archive or manifest raises ValueError naming it."""
    try:
        with _open_tar(path) as tar:
            try:
                member = tar.getmember(f"{PREFIX}/{MANIFEST}")
            except KeyError:
                raise ValueError(f"{path} is not an embedding cache archive (no {PREFIX}/{MANIFEST})") from None
            manifest = json.loads(tar.extractfile(member).read())
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: the archive is damaged or cut ({type(err).__name__}: {err}); "
                         "download or export it again") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: its {MANIFEST} is damaged or cut ({type(err).__name__}: "
                         f"{err}); export the cache again") from err
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: its {MANIFEST} is not a manifest (a JSON object)")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown archive format {manifest.get('format')!r} version "
                         f"{manifest.get('format_version')!r} (this library reads {FORMAT!r} "
                         f"version {FORMAT_VERSION})")
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("provenance"), dict):
        raise ValueError(f"{path}: its {MANIFEST} lacks the list of files or the provenance")
    return manifest


def import_cache(archive, target, sha256: str | None = None, expect: dict | None = None,
                 progress: bool = True) -> Corpus:
    """Unpack an exported embedding cache (path or URL) into the folder `target`.

    expect: what the caller asks for (model-neutral keys, e.g. sources.requested_provenance:
    text_model, audio_frontend, audio_pretrained); an archive whose provenance differs is refused
    (core.check_provenance, both sides named) before anything is written. A target already
    imported from the same archive is left alone; a target holding another complete corpus is
    refused rather than overwritten. The corpus files move into place with corpus.json last.
    """
    target = Path(target)
    ensure_dir(target.parent, "cache folder")
    path = fetch_archive(archive, sha256, download_dir=target.parent / ".archives", progress=progress)
    digest = parse_sha256(sha256) if sha256 else sha256_file(path)
    marker = refuse_symlink(target / IMPORTED_MARKER, "import record")
    if (target / "corpus.json").is_file():
        try:
            same = marker.is_file() and read_json(marker, "import record").get("sha256") == digest
        except (ValueError, AttributeError):
            same = False
        if same:
            corpus = Corpus.load(target)
            if expect:
                check_provenance(corpus.provenance, expect, f"the embedding cache in {target}")
            return corpus
        raise ValueError(f"{target} already holds an embedding cache that was not imported from "
                         f"{archive}; use another CACHE_DIR, or delete {target} to replace it")
    manifest = read_manifest(path)
    if expect:
        check_provenance(manifest["provenance"], expect, f"the archive {archive}")
    files = manifest["files"]
    with tempfile.TemporaryDirectory(prefix=".import-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        try:
            with _open_tar(path) as tar:
                for member in tar.getmembers():
                    head, _, name = member.name.partition("/")
                    if name == MANIFEST:
                        continue
                    # only the regular files the manifest lists, flat under the prefix: no links,
                    # no absolute or parent paths, nothing else written anywhere
                    if head != PREFIX or not member.isfile() or name not in files or "/" in name:
                        raise ValueError(f"{path}: unexpected member {member.name!r}")
                    with tar.extractfile(member) as src, (tmp / name).open("xb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"{path}: the archive is damaged or cut ({type(err).__name__}: {err}); "
                             "download or export it again") from err
        missing = sorted(set(files) - {p.name for p in tmp.iterdir()})
        if missing:
            raise ValueError(f"{path}: files listed in the manifest are missing: {missing}")
        for name, want in files.items():
            got = sha256_file(tmp / name)
            if got != want:
                raise ValueError(f"{path}: {name} has sha256 {got}, the manifest says {want}")
        corpus = Corpus.load(tmp)        # a complete, consistent corpus before anything moves
        ensure_dir(target, "cache folder")
        atomic_write_json(marker, {"sha256": digest, "source": str(archive)})
        for name in sorted(files, key=lambda n: n == "corpus.json"):   # corpus.json last
            refuse_symlink(target / name, "corpus file")
            os.replace(tmp / name, target / name)
    return corpus


# ---------------------------------------------------------------------------------------------
# Command line (hooked into python -m retrieval_lib)
# ---------------------------------------------------------------------------------------------

def add_cli_commands(sub) -> None:
    e = sub.add_parser("export-cache", help="pack an embedding cache into one checksummed archive",
                       description="Pack the embedding cache (corpus.json + arrays) with its "
                                   "provenance into one .tar; its sha256 goes to <archive>.sha256.")
    e.add_argument("--cache-dir", required=True,
                   help="folder holding corpus.json (the pipeline's --cache-dir), or its parent "
                        "with a clotho/ subfolder (load_corpus's cache_dir)")
    e.add_argument("--out", default=None, help="archive file or folder (default: beside the cache)")
    i = sub.add_parser("import-cache", help="unpack an exported embedding cache (path or URL)",
                       description="Unpack an archive made by export-cache into CACHE_DIR/clotho, "
                                   "where load_corpus('clotho', cache_dir=CACHE_DIR) finds it.")
    i.add_argument("archive", help="path or http(s) URL of the archive")
    i.add_argument("--cache-dir", required=True, help="load_corpus's cache_dir")
    i.add_argument("--sha256", default=None,
                   help="expected sha256 of the archive (hex, 'sha256:<hex>', or the .sha256 line)")
    i.add_argument("--text-model", default=None,
                   help="refuse the archive unless its captions were encoded with this text model "
                        "(e.g. the chapters' default sentence-transformers/all-mpnet-base-v2)")
    i.add_argument("--frontend", default=None,
                   help="refuse the archive unless its audio vectors come from this front end "
                        "(e.g. passt-10s)")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli_command(args) -> int:
    """export-cache / import-cache; errors are raised for the CLI's one-line reporting."""
    if args.command == "export-cache":
        out = export_cache(args.cache_dir, args.out)
        p = out["provenance"]
        print(f"archive: {out['path']}\nsha256: {out['sha256']}\ntext model: {p.get('text_model')}  "
              f"audio: {p.get('audio_frontend') or p.get('passt_variant')} "
              f"(pretrained={p.get('audio_pretrained', p.get('passt_pretrained'))})  "
              f"source: {p.get('source')}")
        return 0
    target = Path(args.cache_dir) / "clotho"
    expect = {}
    if args.text_model:
        from .core import canonical_text_model
        expect["text_model"] = canonical_text_model(args.text_model)
    if args.frontend:
        expect["audio_frontend"] = args.frontend
    corpus = import_cache(args.archive, target, sha256=args.sha256, expect=expect or None,
                          progress=not args.no_progress)
    print(f"imported into {target}: {sum(s.n_clips for s in corpus.splits())} clips, text model "
          f"{corpus.provenance.get('text_model')}")
    return 0


__all__ = ["export_cache", "import_cache", "fetch_archive", "read_manifest", "corpus_dir", "sha256_file",
           "add_cli_commands", "run_cli_command"]
