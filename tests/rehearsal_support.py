"""Stand-ins for the network boundary of the real-data path (used by test_rehearsal.py).

* LocalServer: an HTTP server on 127.0.0.1 that plays Zenodo: serves named files, honours HTTP
  Range requests (or ignores them, to test a restart), can cut a response after N bytes (an
  interrupted download), counts every request, and shuts itself down after `lifetime` seconds
  whatever happens to the test.
* make_clotho_release: a tiny Clotho v2.1-shaped release (clotho_audio_{split}.7z unpacking to
  {split}/, clotho_captions_{split}.csv) whose WAV names hold spaces, commas, quotes and
  non-ASCII letters, with its checksum table.
* install_random_passt_checkpoint: a random-weight PaSST-S state dict saved under the release's
  file name in $TORCH_HOME/hub/checkpoints, so pretrained=True runs hear21passt's real loading
  code (torch.hub cache lookup, checkpoint filter, strict load).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

PASST_CHECKPOINT = "passt-s-f128-p16-s10-ap.476-swa.pt"

# awkward but legal file names: spaces, commas, both quote kinds, non-ASCII, a leading dash
AWKWARD_NAMES = [
    'rain on a "tin" roof, café.wav',
    "Träume im Wald 'nacht'.wav",
    "a,b,c  two  spaces.wav",
    "東京 駅のホーム.wav",
    "-dash start (1).wav",
    "ÉCOLE_récré;bell.wav",
    "plain_name.wav",
    "quote's and \"both\".wav",
    "naïve façade – en dash.wav",
    "last one.wav",
]

_WORDS = [("a dog", "barks"), ("rain", "falls on a roof"), ("a bell", "rings"), ("birds", "chirp"),
          ("a car", "drives past"), ("people", "talk"), ("water", "flows"), ("a door", "creaks"),
          ("wind", "blows hard"), ("a train", "passes by"), ("children", "shout"), ("a motor", "hums")]


class LocalServer:
    """A bounded-lifetime HTTP file server on 127.0.0.1 that counts requests."""

    def __init__(self, files: dict, lifetime: float = 900.0):
        self.files = {name: Path(path) for name, path in files.items()}
        self.requests: list = []          # (method, file name, Range header or None)
        self.cut: dict = {}               # name -> bytes sent before the connection drops (once)
        self.ignore_range = False
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):   # quiet
                pass

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                name = urllib.parse.unquote(path.rsplit("/", 1)[-1])
                rng = self.headers.get("Range")
                with server._lock:
                    server.requests.append(("GET", name, rng))
                    cut = server.cut.pop(name, None)
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name].read_bytes()
                start = 0
                if rng and not server.ignore_range and rng.startswith("bytes="):
                    start = int(rng[6:].split("-", 1)[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if cut is not None:          # an interrupted transfer: part of the body, then EOF
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.close)   # bounded lifetime
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files/"

    def start(self) -> "LocalServer":
        self._thread.start()
        self._timer.start()
        return self

    def close(self) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def count(self, name: str | None = None) -> int:
        with self._lock:
            return sum(1 for _, n, _ in self.requests if name is None or n == name)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def _tone(seconds: float, index: int, sr: int = 44100) -> np.ndarray:
    rng = np.random.default_rng(index)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 150.0 * 2 ** (index / 3)
    wave = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * (0.3 + index) * t))
    wave += 0.02 * rng.standard_normal(t.size)
    return (wave / np.abs(wave).max() * 0.8).astype(np.float32)


def make_clotho_release(root, counts=None, seconds=(10.0,), long_every: int = 0,
                        long_seconds: float = 11.0) -> dict:
    """Write a Clotho-shaped release into root/release; returns {"files": {name: path},
    "checksums": {name: "md5:..."}, "clips": {split: [names]}, "checksums_json": path}.

    counts: clips per Clotho split (default development 8, validation 4, evaluation 4). Every
    `long_every`-th clip lasts long_seconds (PaSST's windowing path), the others `seconds`.
    """
    import py7zr
    import soundfile as sf

    counts = counts or {"development": 8, "validation": 4, "evaluation": 4}
    root = Path(root)
    release, staging = root / "release", root / "staging"
    release.mkdir(parents=True, exist_ok=True)
    files, clips, k = {}, {}, 0
    for split, n in counts.items():
        folder = staging / split
        folder.mkdir(parents=True, exist_ok=True)
        rows, names = [], []
        for i in range(n):
            base = AWKWARD_NAMES[(k + i) % len(AWKWARD_NAMES)]
            name = base if i < len(AWKWARD_NAMES) else base.replace(".wav", f" {i}.wav")
            long = long_every and i % long_every == long_every - 1
            dur = long_seconds if long else seconds[i % len(seconds)]
            sf.write(folder / name, _tone(dur, k + i), 44100, subtype="PCM_16")
            src, act = _WORDS[(k + i) % len(_WORDS)]
            caps = [f"{src} {act}", f"{src.capitalize()} {act}, far away.",
                    f"Somewhere {src} {act} \"loudly\".", f"{src} {act} again and again",
                    f"One hears {src}; it {act}"]
            rows.append([name] + caps)
            names.append(name)
        k += n
        clips[split] = names
        csv_path = release / f"clotho_captions_{split}.csv"
        with csv_path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name"] + [f"caption_{j}" for j in range(1, 6)])
            w.writerows(rows)
        archive = release / f"clotho_audio_{split}.7z"
        with py7zr.SevenZipFile(archive, "w") as z:
            for name in names:
                z.write(folder / name, arcname=f"{split}/{name}")
        files[csv_path.name], files[archive.name] = csv_path, archive
    checksums = {name: "md5:" + hashlib.md5(p.read_bytes()).hexdigest() for name, p in files.items()}
    table = root / "checksums.json"
    table.write_text(json.dumps(checksums, indent=2))
    return {"files": files, "checksums": checksums, "clips": clips, "checksums_json": table}


def install_random_passt_checkpoint(torch_home, seed: int = 0) -> Path:
    """Save a random-weight PaSST-S state dict as $TORCH_HOME/hub/checkpoints/<release name>."""
    import torch
    from hear21passt.models import passt as passt_models

    path = Path(torch_home) / "hub" / "checkpoints" / PASST_CHECKPOINT
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(seed)
        net = passt_models.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(net.state_dict(), tmp)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# A tiny AudioCaps folder (official CSV layout, several clip naming schemes, one clip missing)
# ---------------------------------------------------------------------------------------------

def write_audiocaps_csv(path, rows, columns=None):
    from retrieval_lib.audiocaps import COLUMNS
    columns = columns or COLUMNS
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)


def _ac_tone(path, freq, seconds=1.0, sr=44100):
    import soundfile as sf
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def make_tiny_audiocaps(root, missing_val_clip=True):
    """train: 3 clips x 1 caption; val: 3 clips x 5 captions (the second without audio when
    `missing_val_clip`); test: 2 clips x 5 captions; several naming schemes."""
    cap_id = iter(range(1000, 2000))
    plan = {"train": [("yt_train0", "30"), ("yt-train1", "0"), ("yt_train2", "12.5")],
            "val": [("yt_val0", "10"), ("yt_val1", "20"), ("yt_val2", "5")],
            "test": [("yt_test0", "0"), ("yt_test1", "40")]}
    names = {"train": ["{yt}_{start}.wav", "Y{yt}.wav", "{yt}_{start}.flac"],
             "val": ["{yt}_{start}.wav", "{id}.wav", "Y{yt}.wav"], "test": ["{yt}.wav", "{yt}_{start}.wav"]}
    for split, clips in plan.items():
        folder = root / split
        folder.mkdir(parents=True)
        rows = []
        for i, (yt, start) in enumerate(clips):
            ids = [next(cap_id) for _ in range(1 if split == "train" else 5)]
            rows += [(k, yt, start, f"sound number {i} of {split}, caption {j}") for j, k in enumerate(ids)]
            if split == "val" and i == 1 and missing_val_clip:
                continue            # its video is gone: no audio
            name = names[split][i].format(yt=yt, start=start, id=ids[0])
            _ac_tone(folder / name, 200.0 * (i + 1) + 50 * len(split))
        write_audiocaps_csv(root / f"{split}.csv", rows)
    return root
