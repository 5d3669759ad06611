"""data: RetrievalSplit / Corpus validation, subset() and the on-disk round trip."""
import json

import numpy as np
import pytest

from retrieval_lib.data import SPLITS, Corpus, RetrievalSplit

N_CLASSES, DIM = 4, 3  # small stand-ins for 527 logits and d-dimensional text embeddings


def make_split(name, n_clips=3, caption_clip=(0, 0, 1, 2, 1), seed=0, names=True):
    gen = np.random.default_rng(seed)
    caption_clip = np.asarray(caption_clip)
    return RetrievalSplit(
        name,
        logits=gen.normal(size=(n_clips, N_CLASSES)),
        text_emb=gen.normal(size=(len(caption_clip), DIM)),
        caption_clip=caption_clip,
        clip_names=[f"{name}_clip{i}.wav" for i in range(n_clips)] if names else [],
        captions=[f"caption {j} of clip {c} – été" for j, c in enumerate(caption_clip)] if names else [],
    )


def make_corpus(source="clotho"):
    return Corpus(
        make_split("train", 3, (0, 0, 1, 2, 1), seed=1),
        make_split("val", 2, (1, 0), seed=2),
        make_split("test", 4, (3, 2, 1, 0, 0, 3), seed=3),
        tag_emb=np.random.default_rng(4).normal(size=(N_CLASSES, DIM)),
        provenance={"source": source, "text_model": "minilm", "sample_rate": 32000,
                    "windowing": {"window_s": 10.0, "hop_s": 2.5}, "versions": ["a", 1]},
    )


# ---------------------------------------------------------------- RetrievalSplit

def test_split_coerces_dtypes_and_counts():
    s = make_split("train")
    assert s.logits.dtype == np.float32 and s.text_emb.dtype == np.float32
    assert s.caption_clip.dtype == np.int64
    assert s.logits.flags["C_CONTIGUOUS"]
    assert (s.n_clips, s.n_captions) == (3, 5)


def test_split_without_names_is_valid():
    s = make_split("val", names=False)
    assert s.clip_names == [] and s.captions == []


def test_subset_keeps_first_clips_and_their_captions():
    s = make_split("train", n_clips=4, caption_clip=(0, 2, 1, 0, 3, 2, 1))
    sub = s.subset(2)
    assert sub.name == "train" and s.subset(2, name="mini").name == "mini"
    np.testing.assert_array_equal(sub.logits, s.logits[:2])
    # captions of clips 0 and 1, in their original order: positions 0, 2, 3, 6
    np.testing.assert_array_equal(sub.caption_clip, [0, 1, 0, 1])
    np.testing.assert_array_equal(sub.text_emb, s.text_emb[[0, 2, 3, 6]])
    assert sub.clip_names == s.clip_names[:2]
    assert sub.captions == [s.captions[i] for i in (0, 2, 3, 6)]
    # the original is untouched
    assert s.n_clips == 4 and s.n_captions == 7
    # subset of a split without names
    bare = make_split("x", names=False).subset(1)
    assert bare.n_clips == 1 and bare.n_captions == 2 and bare.captions == []


@pytest.mark.parametrize("caption_clip", [(0, 0, 1, 3, 1), (0, -1, 1, 2, 1)])
def test_caption_clip_out_of_range(caption_clip):
    with pytest.raises(ValueError, match="out of range"):
        make_split("train", 3, caption_clip)


def test_caption_clip_wrong_length():
    with pytest.raises(ValueError, match="one entry per caption"):
        RetrievalSplit("train", np.zeros((2, N_CLASSES)), np.zeros((3, DIM)), [0, 1])


@pytest.mark.parametrize("what, bad", [("logits", np.nan), ("logits", np.inf),
                                        ("text_emb", np.nan), ("text_emb", -np.inf)])
def test_nonfinite_values(what, bad):
    arrays = {"logits": np.zeros((2, N_CLASSES)), "text_emb": np.zeros((3, DIM))}
    arrays[what][1, 1] = bad
    with pytest.raises(ValueError, match=f"{what} contain NaN or inf"):
        RetrievalSplit("train", caption_clip=[0, 1, 1], **arrays)


def test_mismatched_name_counts():
    with pytest.raises(ValueError, match="2 captions for 3 embeddings"):
        RetrievalSplit("train", np.zeros((2, N_CLASSES)), np.zeros((3, DIM)), [0, 1, 1],
                       captions=["a", "b"])
    with pytest.raises(ValueError, match="3 clip names for 2 clips"):
        RetrievalSplit("train", np.zeros((2, N_CLASSES)), np.zeros((3, DIM)), [0, 1, 1],
                       clip_names=["a", "b", "c"])


def test_non_matrix_arrays():
    with pytest.raises(ValueError, match="2-d"):
        RetrievalSplit("train", np.zeros(N_CLASSES), np.zeros((1, DIM)), [0])


# ---------------------------------------------------------------- Corpus

def test_is_synthetic_and_dim():
    assert make_corpus("synthetic").is_synthetic
    assert not make_corpus("clotho").is_synthetic
    c = make_corpus()
    c.provenance = {}
    assert not c.is_synthetic
    assert c.dim == DIM
    assert [s.name for s in c.splits()] == list(SPLITS)


def test_text_and_tag_dimensions_must_agree():
    splits = [make_split(n, seed=i) for i, n in enumerate(SPLITS)]
    with pytest.raises(ValueError, match="text embeddings are 3-d but tag embeddings are 5-d"):
        Corpus(*splits, tag_emb=np.zeros((N_CLASSES, 5)))
    with pytest.raises(ValueError, match="logits per clip"):
        Corpus(*splits, tag_emb=np.zeros((N_CLASSES + 1, DIM)))


def test_save_load_roundtrip(tmp_path):
    c = make_corpus()
    out = c.save(tmp_path / "corpus")
    assert out == tmp_path / "corpus"
    names = {p.name for p in out.iterdir()}
    assert names == {"corpus.json", "tag_emb.npy", "checksums.json"} | {f"{s}.{ext}" for s in SPLITS
                                                                         for ext in ("npz", "json")}
    d = Corpus.load(out)
    assert d.provenance == c.provenance
    assert d.tag_emb.dtype == np.float32
    np.testing.assert_array_equal(d.tag_emb, c.tag_emb)
    for a, b in zip(c.splits(), d.splits()):
        assert a.name == b.name
        np.testing.assert_array_equal(a.logits, b.logits)
        np.testing.assert_array_equal(a.text_emb, b.text_emb)
        np.testing.assert_array_equal(a.caption_clip, b.caption_clip)
        assert b.caption_clip.dtype == np.int64
        assert a.clip_names == b.clip_names and a.captions == b.captions
    # the provenance file is plain, readable JSON
    assert json.loads((out / "corpus.json").read_text())["source"] == "clotho"
    # loading accepts a str path too
    assert Corpus.load(str(out)).test.n_captions == 6


def test_synthetic_flag_survives_roundtrip(tmp_path):
    make_corpus("synthetic").save(tmp_path)
    assert Corpus.load(tmp_path).is_synthetic


def test_load_without_corpus_json_names_the_path(tmp_path):
    empty = tmp_path / "nothing here"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="corpus.json") as info:
        Corpus.load(empty)
    assert str(empty) in str(info.value)
    # a corpus whose write was interrupted before corpus.json counts as incomplete
    c = make_corpus()
    c.save(tmp_path / "partial")
    (tmp_path / "partial" / "corpus.json").unlink()
    with pytest.raises(FileNotFoundError, match="corpus.json"):
        Corpus.load(tmp_path / "partial")


def test_load_missing_split_file(tmp_path):
    make_corpus().save(tmp_path)
    (tmp_path / "val.npz").unlink()
    with pytest.raises(FileNotFoundError, match="val"):
        Corpus.load(tmp_path)


def test_split_roundtrip_without_names_file(tmp_path):
    s = make_split("train")
    s.save(tmp_path)
    (tmp_path / "train.json").unlink()
    back = RetrievalSplit.load(tmp_path, "train")
    np.testing.assert_array_equal(back.text_emb, s.text_emb)
    assert back.clip_names == [] and back.captions == []


def _make_legacy(directory):
    """Turn a saved corpus into one of the first format: no checksums anywhere."""
    (directory / "checksums.json").unlink()
    record = json.loads((directory / "corpus.json").read_text())
    record.pop("_files")
    (directory / "corpus.json").write_text(json.dumps(record))


def test_deleting_checksums_does_not_make_a_mixed_folder_a_corpus(tmp_path):
    """corpus.json carries the checksums too: a split copied in from another save, with
    checksums.json deleted (or left in place), is refused by name."""
    a, b = make_corpus(), make_corpus()
    b.val.logits[:] += 1.0
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    for split_file in ("val.npz", "val.json"):
        (tmp_path / "a" / split_file).write_bytes((tmp_path / "b" / split_file).read_bytes())
    with pytest.raises(ValueError, match=r"val\.npz: its content differs"):
        Corpus.load(tmp_path / "a")
    (tmp_path / "a" / "checksums.json").unlink()
    with pytest.raises(ValueError, match=r"val\.npz: its content differs"):
        Corpus.load(tmp_path / "a")
    # a checksums.json copied from the other save disagrees with corpus.json
    (tmp_path / "a" / "checksums.json").write_bytes((tmp_path / "b" / "checksums.json").read_bytes())
    with pytest.raises(ValueError, match="mixes two saves"):
        Corpus.load(tmp_path / "a")


def test_load_validates_what_it_reads(tmp_path):
    make_corpus().save(tmp_path)
    _make_legacy(tmp_path)                      # a corpus saved before checksums existed
    np.savez(tmp_path / "test.npz", logits=np.zeros((2, N_CLASSES), np.float32),
             text_emb=np.zeros((2, DIM), np.float32), caption_clip=np.array([0, 5]))
    (tmp_path / "test.json").write_text(json.dumps({"clip_names": [], "captions": []}))
    with pytest.raises(ValueError, match="out of range"):
        Corpus.load(tmp_path)


# -- interrupted saves, truncated files, subsets ------------------------------------------------

def test_interrupted_resave_leaves_no_loadable_mixture(tmp_path, monkeypatch):
    a, b = make_corpus(), make_corpus()
    b.train.logits[:] += 1.0
    a.save(tmp_path)
    calls = []

    def crash_on_val(self, directory):
        calls.append(self.name)
        if self.name == "val":
            raise KeyboardInterrupt("power cut")
        original(self, directory)

    original = RetrievalSplit.save
    monkeypatch.setattr(RetrievalSplit, "save", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        b.save(tmp_path)
    monkeypatch.undo()
    assert calls == ["train", "val"]               # train.npz is already b's, val.npz still a's
    with pytest.raises(FileNotFoundError, match="no complete corpus"):
        Corpus.load(tmp_path)
    assert not list(tmp_path.glob(".*tmp*"))       # no temporary file left behind
    b.save(tmp_path)                               # a finished save loads again
    np.testing.assert_array_equal(Corpus.load(tmp_path).train.logits, b.train.logits)


def test_a_file_from_another_save_is_refused_by_name(tmp_path):
    make_corpus().save(tmp_path / "a")
    other = make_corpus()
    other.val.logits[:] += 1.0
    other.save(tmp_path / "b")
    (tmp_path / "a" / "val.npz").write_bytes((tmp_path / "b" / "val.npz").read_bytes())
    with pytest.raises(ValueError, match=r"val\.npz: its content differs.*mixed from two saves"):
        Corpus.load(tmp_path / "a")


@pytest.mark.parametrize("with_checksums", [True, False])
def test_truncated_npz_names_the_file(tmp_path, with_checksums):
    make_corpus().save(tmp_path)
    if not with_checksums:
        (tmp_path / "checksums.json").unlink()
    data = (tmp_path / "train.npz").read_bytes()
    (tmp_path / "train.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"train\.npz: .*(truncated|differs)"):
        Corpus.load(tmp_path)


@pytest.mark.parametrize("bad", [-1, 0, 1.5, True, "2"])
def test_subset_refuses_bad_counts(bad):
    with pytest.raises(ValueError, match="subset needs a number of clips >= 1"):
        make_split("train").subset(bad)


def test_subset_counts_clips_from_the_start():
    s = make_split("train")
    assert s.subset(1).n_clips == 1 and s.subset(10 ** 6).n_clips == s.n_clips
