"""Hostile files and folders (issue 16): each class with several instances.

* unsafe: a link planted at a name the library writes (a download's `.part`, the checksum stamp
  `.verified`, shards, settings, the import record, the archive's `.sha256`, the index record)
  is refused by name, and the file it points to is never changed; archive members that leave
  the folder (`..`, absolute paths, links) are refused;
* silent: CSV rows that would shift or drop captions, file names that leave the split folder,
  HTTP 416 over a stale partial download, an export into the cache folder itself;
* unhelpful: damaged archives and manifests, sha256 as users paste it, a file that vanishes
  between listing and reading.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from rehearsal_support import LocalServer
from retrieval_lib import archive, clotho, core
from retrieval_lib.core import ShardStore, UnsafePathError
from retrieval_lib.data import Corpus, RetrievalSplit

VICTIM_TEXT = "my own notes, not to be touched\n"


@pytest.fixture
def victim(tmp_path):
    """A file outside the data folder that a planted link points to."""
    path = tmp_path / "outside" / "notes.txt"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT)
    return path


def _untouched(victim):
    assert victim.read_text() == VICTIM_TEXT, "a file outside the data folder was changed"


def _corpus(provenance=None):
    rng = np.random.default_rng(0)

    def split(name, n):
        return RetrievalSplit(name, rng.normal(size=(n, 527)), rng.normal(size=(2 * n, 4)),
                              np.repeat(np.arange(n), 2), [f"{name}{i}.wav" for i in range(n)],
                              [f"caption {i}" for i in range(2 * n)])
    return Corpus(split("train", 4), split("val", 2), split("test", 2), rng.normal(size=(527, 4)),
                  provenance or {"source": "clotho", "text_model": "offline", "audio_frontend": "passt-10s",
                                 "audio_pretrained": True})


# ---------------------------------------------------------------------------------------------
# Unsafe: links at predictable names
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / "payload.bin").write_bytes(os.urandom(300_000))
    with LocalServer({"payload.bin": root / "payload.bin"}, lifetime=600) as s:
        yield s, root / "payload.bin"


def test_a_link_at_the_partial_download_is_refused(tmp_path, victim, server):
    srv, payload = server
    dest = tmp_path / "data" / "payload.bin"
    dest.parent.mkdir()
    (dest.parent / ".payload.bin.part").symlink_to(victim)
    with pytest.raises(UnsafePathError, match=r"\.payload\.bin\.part is a symbolic link"):
        clotho.download_file(srv.url + "payload.bin", dest, None, progress=False)
    _untouched(victim)
    assert not dest.exists()


def test_a_folder_at_the_partial_download_is_refused(tmp_path, server):
    srv, _ = server
    dest = tmp_path / "payload.bin"
    (tmp_path / ".payload.bin.part").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        clotho.download_file(srv.url + "payload.bin", dest, None, progress=False)


def test_a_link_at_the_checksum_stamp_is_refused(tmp_path, victim, server):
    srv, payload = server
    known = "md5:" + core.file_hash(payload, "md5")
    dest = tmp_path / "payload.bin"
    (tmp_path / ".payload.bin.verified").symlink_to(victim)
    with pytest.raises(UnsafePathError, match=r"\.payload\.bin\.verified is a symbolic link"):
        clotho.download_file(srv.url + "payload.bin", dest, known, progress=False)
    _untouched(victim)


def test_http_416_over_a_stale_longer_partial_file_restarts(tmp_path, server):
    """A `.part` longer than the file (left by another file of the same name): the server says
    416; without a checksum the stale bytes must not be installed."""
    srv, payload = server
    dest = tmp_path / "payload.bin"
    (tmp_path / ".payload.bin.part").write_bytes(b"stale" * 100_000)     # 500 kB > 300 kB
    with pytest.warns(UserWarning, match="UNVERIFIED"):
        clotho.download_file(srv.url + "payload.bin", dest, None, progress=False)
    assert dest.read_bytes() == payload.read_bytes()
    # a complete partial file of exactly the right size is accepted on 416
    dest.unlink()
    (tmp_path / ".payload.bin.part").write_bytes(payload.read_bytes())
    n = srv.count()
    clotho.download_file(srv.url + "payload.bin", dest, "md5:" + core.file_hash(payload, "md5"),
                         progress=False)
    assert dest.read_bytes() == payload.read_bytes() and srv.count() == n + 1


def test_links_at_shard_and_settings_names_are_refused(tmp_path, victim):
    work = tmp_path / "work"
    work.mkdir()
    (work / "settings.json").symlink_to(victim)
    store = ShardStore(work, {"audio_frontend": "x"})
    with pytest.raises(UnsafePathError, match="settings.json is a symbolic link"):
        store.check_settings()
    (work / "settings.json").unlink()
    store.check_settings()
    (work / "shard_00000.npz").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="shard_00000.npz is a symbolic link"):
        store.load()
    written = store.write(["a"], np.zeros((1, 3)))      # a fresh number, never the link's
    assert written.name == "shard_00001.npz" and not written.is_symlink()
    _untouched(victim)


def test_links_at_the_import_record_and_the_archive_sha256(tmp_path, victim):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    target = tmp_path / "cache" / "clotho"
    target.mkdir(parents=True)
    (target / archive.IMPORTED_MARKER).symlink_to(victim)
    with pytest.raises(UnsafePathError, match=r"\.imported_from\.json is a symbolic link"):
        archive.import_cache(out["path"], target)
    sha = Path(str(out["path"]) + ".sha256")
    sha.unlink()
    sha.symlink_to(victim)
    archive.export_cache(tmp_path / "c", tmp_path / "a.tar")     # the link is replaced, not followed
    _untouched(victim)
    assert not sha.is_symlink() and sha.read_text().split()[1] == "a.tar"


def test_saving_over_links_replaces_them_and_never_writes_through(tmp_path, victim):
    corpus = _corpus()
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("corpus.json", "train.npz", "tag_emb.npy", "checksums.json"):
        (folder / name).symlink_to(victim)
    corpus.save(folder)
    _untouched(victim)
    assert not any((folder / n).is_symlink() for n in ("corpus.json", "train.npz"))
    assert Corpus.load(folder).train.n_clips == 4


def test_the_index_record_link_is_refused(tmp_path, victim):
    from retrieval_lib.indexes import AudioIndex
    emb = np.eye(4, dtype=np.float32)
    ix = AudioIndex.build(emb, list("abcd"))
    (tmp_path / "ix").mkdir()
    (tmp_path / "ix" / "index.json").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="index.json is a symbolic link"):
        ix.save(tmp_path / "ix")
    _untouched(victim)


@pytest.mark.parametrize("member", ["retrieval_lib_cache/../../evil.txt", "/tmp/evil.txt",
                                    "retrieval_lib_cache/sub/evil.txt", "elsewhere/evil.txt"])
def test_archive_members_that_leave_the_folder_are_refused(tmp_path, member):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    with tarfile.open(out["path"], "a") as tar:
        info = tarfile.TarInfo(member)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unexpected member"):
        archive.import_cache(out["path"], tmp_path / "t" / "clotho")
    assert not (tmp_path / "t" / "clotho" / "corpus.json").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_archive_links_are_refused(tmp_path, victim, kind):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    with tarfile.open(out["path"], "a") as tar:
        info = tarfile.TarInfo("retrieval_lib_cache/train.json")
        info.type, info.linkname = kind, str(victim)
        tar.addfile(info)
    with pytest.raises(ValueError, match="unexpected member"):
        archive.import_cache(out["path"], tmp_path / "t" / "clotho")
    _untouched(victim)


# ---------------------------------------------------------------------------------------------
# Silent: data that would be read wrong
# ---------------------------------------------------------------------------------------------

HEADER = list(clotho.CAPTION_COLUMNS)


def _csv(path, rows, header=HEADER, raw=None):
    if raw is not None:
        path.write_bytes(raw)
        return path
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


GOOD = ["a.wav", "one", "two", "three", "four", "five"]


@pytest.mark.parametrize("make, message", [
    # an unquoted comma: 7 fields for 6 columns, which would shift the captions
    (lambda p: _csv(p, [], raw=b"file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
                                b"a.wav,a dog, barking,two,three,four,five\n"), "7 fields for 6 columns"),
    (lambda p: _csv(p, [GOOD + ["extra"]]), "7 fields for 6 columns"),
    (lambda p: _csv(p, [GOOD], header=HEADER[:5] + ["file_name"]), r"names column\(s\) \['file_name'\] more than once"),
    (lambda p: _csv(p, [GOOD], header=HEADER + ["caption_1"]), "more than once"),
    (lambda p: _csv(p, [["b.wav", "a dog\x00barks", "two", "three", "four", "five"]]), "NUL byte"),
    (lambda p: _csv(p, [["../../etc/passwd", *GOOD[1:]]]), "not a plain file name"),
    (lambda p: _csv(p, [["/etc/passwd", *GOOD[1:]]]), "not a plain file name"),
    (lambda p: _csv(p, [["sub/a.wav", *GOOD[1:]]]), "not a plain file name"),
    (lambda p: _csv(p, [["..", *GOOD[1:]]]), "not a plain file name"),
    (lambda p: _csv(p, [], raw="file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
                               "é.wav,un,deux,trois,quatre,cinq\n".encode("latin-1")), "not UTF-8"),
])
def test_captions_csv_that_would_be_read_wrong_is_refused_by_line(tmp_path, make, message):
    path = make(tmp_path / "clotho_captions_development.csv")
    with pytest.raises(ValueError, match=message) as err:
        clotho.read_captions_csv(path)
    assert "clotho_captions_development.csv" in str(err.value)


def test_a_quoted_comma_and_a_short_row_are_handled(tmp_path):
    path = _csv(tmp_path / "c.csv", [["d e.wav", "a dog, then a cat", "two", "three", "four", "five"]])
    assert clotho.read_captions_csv(path)[0][1][0] == "a dog, then a cat"
    path = _csv(tmp_path / "c.csv", [["d.wav", "one", "two"]])
    with pytest.raises(ValueError, match=r"line 2 \(d\.wav\): caption_3 is empty"):
        clotho.read_captions_csv(path)


@pytest.mark.parametrize("row, message", [
    (["1", "../x", "0", "a dog barks"], "not a plain file name"),
    (["1", "abc", "0", "a dog barks", "extra"], "5 fields for 4 columns"),
    (["1", "abc", "ten", "a dog barks"], "start_time 'ten' is not a number"),
])
def test_audiocaps_csv_that_would_be_read_wrong_is_refused(tmp_path, row, message):
    from retrieval_lib.audiocaps import COLUMNS, read_captions
    path = _csv(tmp_path / "train.csv", [row], header=list(COLUMNS))
    with pytest.raises(ValueError, match=message):
        read_captions(path)


@pytest.mark.parametrize("where", ["cache", "cache/clotho", "cache/clotho/sub"])
def test_export_into_the_cache_folder_is_refused(tmp_path, where):
    _corpus().save(tmp_path / "cache" / "clotho")
    before = {p.name: p.read_bytes() for p in (tmp_path / "cache" / "clotho").iterdir()}
    out = tmp_path / where / "x.tar"
    if where == "cache":
        out = tmp_path / "cache" / "clotho" / "corpus.json"      # onto one of its own files
    with pytest.raises(UnsafePathError, match="inside the cache folder"):
        archive.export_cache(tmp_path / "cache", out)
    after = {p.name: p.read_bytes() for p in (tmp_path / "cache" / "clotho").iterdir()}
    assert after == before


# ---------------------------------------------------------------------------------------------
# Unhelpful: damaged archives, pasted hashes, vanished files
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(os.urandom(2000)), "not a readable embedding cache archive"),
    (lambda p: p.write_bytes(p.read_bytes()[:700]), "damaged|cut|not a readable"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "damaged|cut|sha256"),
    (lambda p: p.write_bytes(b""), "not a readable embedding cache archive"),
])
def test_damaged_archives_are_named(tmp_path, damage, message):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    damage(out["path"])
    with pytest.raises(ValueError, match=message) as err:
        archive.import_cache(out["path"], tmp_path / "t" / "clotho")
    assert "a.tar" in str(err.value)


def test_a_cut_manifest_is_named(tmp_path):
    path = tmp_path / "cut.tar"
    with tarfile.open(path, "w") as tar:
        data = b'{"format": "retrieval_lib embedding cache", "format_vers'
        info = tarfile.TarInfo(f"{archive.PREFIX}/{archive.MANIFEST}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="MANIFEST.json is damaged or cut"):
        archive.read_manifest(path)


@pytest.mark.parametrize("bad", ["", "abc", "sha256:", "0" * 63, "g" * 64, "md5:" + "0" * 32, 12345])
def test_malformed_sha256_is_refused_saying_what_one_looks_like(tmp_path, bad):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    with pytest.raises(ValueError, match="sha256"):
        archive.import_cache(out["path"], tmp_path / "t" / "clotho", sha256=bad)


def test_a_file_that_vanishes_between_listing_and_reading_is_skipped_by_name(tmp_path, monkeypatch):
    import soundfile as sf

    from retrieval_lib import folders
    from retrieval_lib.core import AudioFrontend

    class Tiny(AudioFrontend):
        name, output_dim, sample_rate = "tiny", 2, 16000

        def embed(self, waves):
            return np.stack([[len(w), w.mean()] for w in waves]).astype(np.float32)

    d = tmp_path / "sounds"
    d.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(d / name, np.zeros(16000, np.float32), 16000)
    real = folders.list_audio

    def listed_then_deleted(folder):
        audio, other = real(folder)
        (d / "b.wav").unlink()            # deleted after the listing
        return audio, other
    monkeypatch.setattr(folders, "list_audio", listed_then_deleted)
    names, vectors, skipped = folders.folder_vectors(d, Tiny(), tmp_path / "work", progress=False)
    assert names == ["a.wav", "c.wav"] and vectors.shape == (2, 2)
    assert [s["file"] for s in skipped] == ["b.wav"] and "disappeared" in skipped[0]["error"]


def test_checksum_tables_accept_hashes_as_pasted(tmp_path, monkeypatch):
    table = clotho.checksum_table({"a.csv": "MD5:" + "A" * 32 + "\n", "b.7z": " " + "b" * 64 + " "})
    assert table == {"a.csv": "md5:" + "a" * 32, "b.7z": "sha256:" + "b" * 64}
    with pytest.raises(ValueError, match="checksum of c.7z"):
        clotho.checksum_table({"c.7z": "crc32:1234"})


# ---------------------------------------------------------------------------------------------
# Reversed (negative-stride) numpy views and non-numbers, wherever arrays come in
# ---------------------------------------------------------------------------------------------

def test_reversed_views_give_the_results_of_their_copies():
    import torch

    from retrieval_lib.model import AudioEncoder
    from retrieval_lib.tags import fuse, tag_embedding

    rng = np.random.default_rng(0)
    logits, tag_emb = rng.normal(size=(5, 527)).astype(np.float32), rng.normal(size=(527, 8)).astype(np.float32)
    torch.testing.assert_close(tag_embedding(logits[::-1], tag_emb[::-1]),
                               tag_embedding(logits[::-1].copy(), tag_emb[::-1].copy()))
    model = AudioEncoder(527, 8, tag_emb=tag_emb[::-1], lam=0.8, seed=0)
    torch.testing.assert_close(model(logits[::-1]), model(logits[::-1].copy()))
    e = torch.nn.functional.normalize(torch.ones(2, 8), dim=-1)
    assert fuse(e, e, 0.5).shape == (2, 8)


@pytest.mark.parametrize("bad, message", [("abc", "must be numbers"), (np.array([["a"] * 527]), "must be numbers"),
                                          (np.ones((1, 527), bool), "must be numbers, got booleans"),
                                          (np.ones((1, 527), complex), "must be real numbers")])
def test_non_numbers_are_refused_by_name(bad, message):
    from retrieval_lib.model import AudioEncoder
    from retrieval_lib.tags import tag_embedding

    with pytest.raises(ValueError, match=f"logits {message}"):
        AudioEncoder(527, 8)(bad)
    with pytest.raises(ValueError, match=f"logits {message}"):
        tag_embedding(bad, np.ones((527, 8), np.float32))


def test_an_interrupted_resave_of_checkpoints_lists_none_of_the_old_set(tmp_path, monkeypatch):
    """save_results removes index.json first and writes it last: a crash in between leaves no
    list pairing new checkpoints with old ones."""
    from retrieval_lib import train
    from retrieval_lib.train import TrainConfig, TrainResult

    def result(seed):
        import torch
        w = torch.zeros(4, 527) + seed
        return TrainResult(TrainConfig(seed=seed), {"linear.weight": w, "linear.bias": torch.zeros(4),
                                                    "norm.weight": torch.ones(527), "norm.bias": torch.zeros(527)})
    train.save_results([result(0), result(1)], tmp_path / "ck")
    real = TrainResult.save
    calls = []

    def crash_second(self, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path)
    monkeypatch.setattr(TrainResult, "save", crash_second)
    with pytest.raises(KeyboardInterrupt):
        train.save_results([result(5), result(6)], tmp_path / "ck")
    assert not (tmp_path / "ck" / "index.json").exists()


def test_an_export_never_leaves_a_stale_sha256_beside_a_new_archive(tmp_path, monkeypatch):
    _corpus().save(tmp_path / "c")
    first = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    monkeypatch.setattr(archive, "atomic_write_text", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    other = _corpus({"source": "clotho", "text_model": "offline", "audio_frontend": "passt-20s",
                     "audio_pretrained": True})
    other.save(tmp_path / "c2")
    with pytest.raises(KeyboardInterrupt):
        archive.export_cache(tmp_path / "c2", tmp_path / "a.tar")
    sha = Path(str(first["path"]) + ".sha256")
    assert not sha.exists() or sha.read_text().split()[0] == core.sha256_file(first["path"])
