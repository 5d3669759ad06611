"""relevance: the DCASE 2025 and TAU loaders on small files written in exactly the formats of
CPJKU/dcase2025_task6_baseline (resources/metadata_eval.csv) and
xieh97/retrieval-relevance-crowdsourcing (data/{relevance_data,text_data,audio_metadata}/),
their mapping onto a corpus split, what they report, what they refuse, and the metrics on top."""
import math
import warnings

import numpy as np
import pytest
import torch

from retrieval_lib.data import RetrievalSplit
from retrieval_lib.metrics import ndcg_at_k, ndcg_per_query, retrieval_metrics
from retrieval_lib.relevance import (Relevance, load_dcase2025_relevance, load_tau_relevance,
                                     match_key, own_clip_relevance)

CLIPS = ["bird_in_rain.wav", "woodsbirds.wav", "SYnth_NoisesAX8.wav", "Regent's conversation.wav",
         "train.wav", "other.wav"]
CAPTIONS = [  # (caption, clip): as the Clotho reader stores them (stripped)
    ("A Bicycle rides past people walking, while birds are singing.", 0),
    ("Rain falls on leaves.", 0),
    ("Birds chirp in the woods.", 1),
    ("A UFO sound is being made from a video game.", 2),
    ("People talk in a room.", 3),
    ("A train coming down the track with cars passing by on the side of it,", 4),
    ("Something else entirely.", 5),
]


def make_split(name="test", clips=CLIPS, captions=CAPTIONS):
    return RetrievalSplit(name, np.zeros((len(clips), 4)), np.ones((len(captions), 3)),
                          np.array([c for _, c in captions]), list(clips), [t for t, _ in captions])


# the real file's header and quoting (csv with minimal quoting: fields with a comma are quoted)
DCASE_TEXT = '''query,audio_filenames
"A Bicycle rides past people walking, while birds are singing.","['bird_in_rain.wav', 'woodsbirds.wav']"
A UFO sound is being made from a video game.,"['SYnth_NoisesAX8.wav']"
"A train coming down the track with cars passing by on the side of it, ","['Regent&#39;s conversation.wav', 'train.wav', 'bird_in_rain.wav']"
'''


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_match_key():
    assert match_key("  A  Dog\tbarks,  ") == "a dog barks,"
    assert match_key("Regent&#39;s conversation.wav") == match_key("regent's Conversation.WAV")
    assert match_key("Ｃafé") == match_key("café")          # NFKC: full-width letters
    assert match_key("a dog barks.") != match_key("a dog barks")   # punctuation is kept


def test_dcase_file_maps_onto_the_split(tmp_path):
    path = write(tmp_path / "resources" / "metadata_eval.csv", DCASE_TEXT)
    split = make_split()
    for where in (path, tmp_path, tmp_path / "resources"):     # the file, the repo, its folder
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rel = load_dcase2025_relevance(where, split)
        assert not rel.graded and rel.split == "test" and "DCASE 2025" in rel.source
        assert rel.query_index.tolist() == [0, 3, 5]
        assert rel.values.tolist() == [[True, True, False, False, False, False],
                                       [False, False, True, False, False, False],
                                       [True, False, False, True, True, False]]
        assert rel.relevant_per_query().tolist() == [2, 1, 3]
        assert rel.missing_queries == () and rel.missing_clips == ()


def test_metrics_on_the_dcase_relevance_by_hand(tmp_path):
    rel = load_dcase2025_relevance(write(tmp_path / "m.csv", DCASE_TEXT), make_split())
    scores = np.zeros((7, 6))
    scores[0] = [0.1, 0.9, 0.8, 0.0, 0.0, 0.0]   # relevant 1 (rank 1), 0 (rank 3): AP = (1 + 2/3) / 2
    scores[3] = [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]   # relevant 2 at rank 3: AP = 1/3
    scores[5] = [0.6, 0.0, 0.0, 0.9, 0.1, 0.8]   # relevant 3, 0, 4 at ranks 1, 3, 4: (1 + 2/3 + 3/4) / 3
    scores[6] = 5.0                              # not a query: ignored
    m = retrieval_metrics(scores, rel)
    assert m["mAP@10"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 3 + (1 + 2 / 3 + 3 / 4) / 3) / 3)
    assert (m["R@1"], m["R@5"], m["median rank"]) == (pytest.approx(2 / 3), 1.0, 1.0)
    assert retrieval_metrics(torch.from_numpy(scores), rel) == m
    with pytest.raises(ValueError, match=r"scores have shape \(6, 6\).*7 captions x 6 clips"):
        retrieval_metrics(scores[:6], rel)


def test_absent_queries_and_clips_are_reported_and_refused_when_strict(tmp_path):
    text = DCASE_TEXT + ('A cat that the corpus lacks.,"[\'woodsbirds.wav\']"\n'
                         'Rain falls on leaves.,"[\'gone_1.wav\', \'gone_2.wav\']"\n'
                         'Birds chirp in the woods.,"[\'woodsbirds.wav\', \'gone_1.wav\']"\n')
    path = write(tmp_path / "metadata_eval.csv", text)
    with pytest.warns(UserWarning) as caught:
        rel = load_dcase2025_relevance(path, make_split())
    message = str(caught[0].message)
    assert "1 of 6 queries are not captions of split 'test' ('A cat that the corpus lacks.')" in message
    assert "2 clip(s) it names are not in the split ('gone_1.wav', 'gone_2.wav')" in message
    assert "1 queries keep no relevant clip of the split ('Rain falls on leaves.')" in message
    assert rel.missing_queries == ("A cat that the corpus lacks.",)
    assert rel.missing_clips == ("gone_1.wav", "gone_2.wav")
    assert rel.dropped_queries == ("Rain falls on leaves.",)
    assert rel.query_index.tolist() == [0, 3, 5, 2]               # the partial query is kept
    assert rel.values[3].tolist() == [False, True, False, False, False, False]
    with pytest.raises(ValueError, match=r"1 of 6 queries are not captions.*strict=True"):
        load_dcase2025_relevance(path, make_split(), strict=True)
    only_clip = write(tmp_path / "b.csv", 'query,audio_filenames\nRain falls on leaves.,"[\'gone.wav\', \'other.wav\']"\n')
    with pytest.raises(ValueError, match=r"1 clip\(s\) it names are not in the split \('gone.wav'\)"):
        load_dcase2025_relevance(only_clip, make_split(), strict=True)


def test_a_file_for_another_split_is_refused(tmp_path):
    other = make_split(clips=[f"x{i}.wav" for i in range(6)],
                       captions=[(f"caption {i}", i % 6) for i in range(7)])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of its 3 queries"):
        load_dcase2025_relevance(write(tmp_path / "m.csv", DCASE_TEXT), other)


def test_clip_names_with_folders_and_entities_still_match(tmp_path):
    clips = ["eval/bird_in_rain.wav", "eval/woodsbirds.wav", "SYnth_NoisesAX8.wav",
             "Regent&#39;s conversation.wav", "train.wav", "other.wav"]
    rel = load_dcase2025_relevance(write(tmp_path / "m.csv", DCASE_TEXT), make_split(clips=clips))
    assert rel.values[2].tolist() == [True, False, False, True, True, False]


@pytest.mark.parametrize("text, message", [
    ("query\nA dog.\n", r"missing column\(s\) \['audio_filenames'\]"),
    ("audio_filenames,query,query\n\"['a.wav']\",x,y\n", r"column\(s\) \['query'\] appear more than once"),
    ("", "empty file"),
    ("query,audio_filenames\n", "no data rows"),
    ("query,audio_filenames\nA dog barks, loudly.,\"['a.wav']\"\n", r"line 2: 3 fields but the header has 2"),
    ("query,audio_filenames\nA dog barks.\n", r"line 2: 1 fields but the header has 2"),
    ("query,audio_filenames\nA dog.,a.wav\n", "must be a Python list of file names"),
    ("query,audio_filenames\nA dog.,\"[1, 2]\"\n", r"must be a list of strings, got \['int'\]"),
    ("query,audio_filenames\nA dog.,\"[['a.wav']]\"\n", r"list of strings, got \['list'\]"),
    ("query,audio_filenames\nA dog.,\"['a.wav', None]\"\n", r"list of strings, got \['NoneType', 'str'\]"),
    ("query,audio_filenames\nA dog.,\"[__import__('os').getcwd()]\"\n", "not a readable Python list"),
    ("query,audio_filenames\nA dog.,\"['a.wav'\"\n", "must be a Python list"),
    ("query,audio_filenames\nA dog.,\"['a.wav',, 'b.wav']\"\n", "not a readable Python list"),
    ("query,audio_filenames\nA dog.,[]\n", "empty list: the query has no relevant clip"),
    ("query,audio_filenames\nA dog.,\"['a.wav', ' ']\"\n", "empty file name"),
    ("query,audio_filenames\nA dog.,\"['a.wav', 'a.wav']\"\n", "names 'a.wav' more than once"),
    ("query,audio_filenames\n,\"['a.wav']\"\n", "line 2: empty query"),
    ("query,audio_filenames\nA dog.,\"['a.wav']\"\nA dog.,\"['b.wav']\"\n", r"line 3: query 'A dog.' already given on line 2"),
    ("query,audio_filenames\nA dog.,\"['a.wav']\"\n  a DOG. ,\"['b.wav']\"\n", "already given on line 2"),
    ("query,audio_filenames\nA d\x00og.,\"['a.wav']\"\n", "line 2: a NUL byte"),
])
def test_malformed_dcase_files_are_refused_with_the_line(tmp_path, text, message):
    path = write(tmp_path / "metadata_eval.csv", text)
    with pytest.raises(ValueError, match=message) as err:
        load_dcase2025_relevance(path, make_split())
    assert "metadata_eval.csv" in str(err.value)


def test_dcase_file_that_is_not_utf8_or_absent(tmp_path):
    path = tmp_path / "metadata_eval.csv"
    path.write_bytes("query,audio_filenames\nUn café.,\"['a.wav']\"\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"metadata_eval\.csv, line 2: not UTF-8"):
        load_dcase2025_relevance(path, make_split())
    with pytest.raises(FileNotFoundError, match="relevance file not found"):
        load_dcase2025_relevance(tmp_path / "nope.csv", make_split())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no metadata_eval.csv in"):
        load_dcase2025_relevance(tmp_path / "empty", make_split())


def test_a_split_without_texts_or_names_is_refused(tmp_path):
    path = write(tmp_path / "m.csv", DCASE_TEXT)
    bare = RetrievalSplit("test", np.zeros((6, 4)), np.ones((7, 3)), np.array([c for _, c in CAPTIONS]))
    with pytest.raises(ValueError, match="has no caption texts"):
        load_dcase2025_relevance(path, bare)
    named = RetrievalSplit("test", np.zeros((6, 4)), np.ones((7, 3)), np.array([c for _, c in CAPTIONS]),
                           [], [t for t, _ in CAPTIONS])
    with pytest.raises(ValueError, match="has no clip names"):
        load_dcase2025_relevance(path, named)


# -- TAU Audio-Text Graded Relevances ------------------------------------------------------------

TAU_TEXT = '''split,tid,fid,text,tokens
clotho_evaluation,t0=,f0=,"A Bicycle rides past people walking, while birds are singing.","['a', 'bicycle', 'rides', 'past', 'people', 'walking', 'while', 'birds', 'are', 'singing']"
clotho_evaluation,t1=,f2=,A UFO sound is being made from a video game.,"['a', 'ufo', 'sound', 'is', 'being', 'made', 'from', 'a', 'video', 'game']"
clotho_evaluation,t2=,f9=,A query whose caption the corpus lacks.,"['a', 'query']"
'''
TAU_AUDIO = '''split,fid,file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license
clotho_evaluation,f0=,bird_in_rain.wav,bird;rain,1,https://freesound.org/people/x/sounds/1,,x,http://creativecommons.org/publicdomain/zero/1.0/
clotho_evaluation,f1=,woodsbirds.wav,birds,2,https://freesound.org/people/x/sounds/2,"[1024, 845524]",x,http://creativecommons.org/licenses/by/3.0/
clotho_evaluation,f2=,SYnth_NoisesAX8.wav,synth,3,https://freesound.org/people/x/sounds/3,,x,http://creativecommons.org/publicdomain/zero/1.0/
clotho_evaluation,f3=,Regent&#39;s conversation.wav,talk,4,https://freesound.org/people/x/sounds/4,,x,http://creativecommons.org/publicdomain/zero/1.0/
clotho_evaluation,f9=,not_in_corpus.wav,none,9,https://freesound.org/people/x/sounds/9,,x,http://creativecommons.org/publicdomain/zero/1.0/
'''
TAU_RELEVANCES = '''tid,fid,fid_group,rating
t0=,f0=,TP,90
t0=,f1=,C15,60
t0=,f3=,C15,0
t0=,f2=,TN,5
t1=,f2=,TP,100
t1=,f0=,C15,30
t1=,f9=,TN,0
t2=,f9=,TP,80
'''


def tau_repo(root, relevances=TAU_RELEVANCES, text=TAU_TEXT, audio=TAU_AUDIO, tau_split="evaluation"):
    write(root / "data" / "relevance_data" / f"{tau_split}_relevances.csv", relevances)
    write(root / "data" / "text_data" / f"{tau_split}_text.csv", text)
    write(root / "data" / "audio_metadata" / f"{tau_split}_audio_metadata.csv", audio)
    return root


def test_tau_files_map_onto_the_split_as_gains(tmp_path):
    root = tau_repo(tmp_path)
    with pytest.warns(UserWarning, match=r"1 of 3 queries are not captions.*1 clip\(s\) it names are not "
                                         r"in the split \('not_in_corpus.wav'\)"):
        rel = load_tau_relevance(root, make_split())
    assert rel.graded and "TAU" in rel.source and "evaluation split" in rel.source
    assert rel.query_index.tolist() == [0, 3]
    np.testing.assert_array_equal(rel.values, [[90, 60, 5, 0, 0, 0], [30, 0, 100, 0, 0, 0]])
    assert rel.judged.tolist() == [[True, True, True, True, False, False],
                                   [True, False, True, False, False, False]]
    assert rel.missing_queries == ("A query whose caption the corpus lacks.",)
    # the data folder works as the path too, and strict refuses
    with pytest.warns(UserWarning):
        load_tau_relevance(root / "data", make_split())
    with pytest.raises(ValueError, match="strict=True"):
        load_tau_relevance(root, make_split(), strict=True)


def test_ndcg_on_tau_relevance_by_hand(tmp_path):
    with pytest.warns(UserWarning):
        rel = load_tau_relevance(tau_repo(tmp_path), make_split())
    scores = np.zeros((7, 6))
    scores[0] = [0.2, 0.9, 0.1, 0.5, 0.95, 0.0]   # judged order: 1 (60), 3 (0), 0 (90), 2 (5); 4 unrated
    scores[3] = [0.9, 0.0, 0.5, 0.0, 0.0, 0.0]    # judged order: 0 (30), 2 (100)
    q0 = (60 + 0 / math.log2(3) + 90 / 2 + 5 / math.log2(5)) / (90 + 60 / math.log2(3) + 5 / 2)
    q1 = (30 + 100 / math.log2(3)) / (100 + 30 / math.log2(3))
    np.testing.assert_allclose(ndcg_per_query(scores, rel), [q0, q1])
    assert ndcg_at_k(scores, rel) == pytest.approx((q0 + q1) / 2)
    # every clip ranked, unrated ones as gain 0: query 0's unrated clip 4 now leads
    full = (0 + 60 / math.log2(3) + 0 / 2 + 90 / math.log2(5) + 5 / math.log2(6)) / (90 + 60 / math.log2(3) + 5 / 2)
    assert ndcg_per_query(scores[rel.query_index], rel.values)[0] == pytest.approx(full)
    with pytest.raises(ValueError, match="graded relevance has no single set of relevant clips"):
        retrieval_metrics(scores, rel)
    binary = rel.binarize(50)
    assert binary.values.tolist() == [[True, True, False, False, False, False],
                                      [False, False, True, False, False, False]]
    # binary metrics rank every clip: query 0's unrated clip 4 (0.95) is ahead of clip 1 (0.9),
    # query 1's clip 0 (30 < 50: not relevant) ahead of clip 2
    m = retrieval_metrics(scores, binary)
    assert (m["R@1"], m["R@5"], m["median rank"]) == (0.0, 1.0, 2.0)
    assert m["mAP@10"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1 / 2) / 2)   # q0: ranks 2 and 4


def test_binarize_drops_queries_left_without_a_relevant_clip(tmp_path):
    with pytest.warns(UserWarning):
        rel = load_tau_relevance(tau_repo(tmp_path), make_split())
    high = rel.binarize(95)
    assert high.query_index.tolist() == [3]
    assert high.dropped_queries == ("A Bicycle rides past people walking, while birds are singing.",)
    for bad in (0, -1, float("nan"), "50", True):
        with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
            rel.binarize(bad)
    with pytest.raises(ValueError, match="already binary"):
        high.binarize(1)


def test_tau_split_names(tmp_path):
    root = tau_repo(tmp_path, tau_split="validation")
    with pytest.warns(UserWarning):
        rel = load_tau_relevance(root, make_split("val"))        # val -> validation
    assert "validation split" in rel.source
    with pytest.raises(FileNotFoundError, match="evaluation_relevances.csv"):
        load_tau_relevance(root, make_split("test"))
    with pytest.raises(ValueError, match="has no TAU counterpart: pass tau_split"):
        load_tau_relevance(root, make_split("dev-test"))
    with pytest.raises(ValueError, match="tau_split must be one of"):
        load_tau_relevance(root, make_split(), tau_split="eval")
    with pytest.warns(UserWarning):
        load_tau_relevance(root, make_split("anything"), tau_split="validation")


@pytest.mark.parametrize("row, message", [
    ("t1=,f1=,C15,abc", "rating 'abc' is not a number"),
    ("t1=,f1=,C15,101", "rating '101' is outside 0-100"),
    ("t1=,f1=,C15,-1", "outside 0-100"),
    ("t1=,f1=,C15,nan", "outside 0-100"),
    ("t1=,f1=,C15,", "rating '' is not a number"),
    ("t0=,f0=,C15,50", r"line 10: the pair tid 't0=', fid 'f0=' is already rated on line 2"),
    ("tX=,f1=,C15,50", "tid 'tX=' is not in evaluation_text.csv"),
    ("t0=,fX=,C15,50", "fid 'fX=' is not in evaluation_audio_metadata.csv"),
    ("t0=,f1=,C15,50,extra", "line 10: 5 fields but the header has 4"),
    ("t0=,f1=", "line 10: 2 fields but the header has 4"),
])
def test_malformed_tau_relevances_are_refused_with_the_line(tmp_path, row, message):
    root = tau_repo(tmp_path, relevances=TAU_RELEVANCES + row + "\n")
    with pytest.raises(ValueError, match=message) as err:
        load_tau_relevance(root, make_split())
    assert "evaluation_" in str(err.value)


@pytest.mark.parametrize("which, text, message", [
    ("relevances", "tid,fid,fid_group\nt0=,f0=,TP\n", r"missing column\(s\) \['rating'\]"),
    ("text", "split,tid,fid,tokens\nx,t0=,f0=,a\n", r"missing column\(s\) \['text'\]"),
    ("audio", "split,fid,keywords\nx,f0=,a\n", r"missing column\(s\) \['file_name'\]"),
    ("text", TAU_TEXT + 'clotho_evaluation,t1=,f2=,Again.,"[]"\n', "tid 't1=' given twice"),
    ("audio", TAU_AUDIO + "clotho_evaluation,f2=,dup.wav,a,1,u,,x,l\n", "fid 'f2=' given twice"),
    ("text", "split,tid,fid,text,tokens\nx,t0=,f0=,,a\n", "empty text"),
])
def test_malformed_tau_id_files_are_refused(tmp_path, which, text, message):
    root = tau_repo(tmp_path, **{which: text})
    with pytest.raises(ValueError, match=message):
        load_tau_relevance(root, make_split())


def test_missing_tau_files_are_named(tmp_path):
    root = tau_repo(tmp_path)
    (root / "data" / "text_data" / "evaluation_text.csv").unlink()
    with pytest.raises(FileNotFoundError, match="evaluation_text.csv"):
        load_tau_relevance(root, make_split())


# -- the Relevance object itself ---------------------------------------------------------------

def test_own_clip_relevance_is_the_paper_ground_truth(rng):
    split = make_split()
    rel = own_clip_relevance(split)
    scores = rng.normal(size=(7, 6))
    assert retrieval_metrics(scores, rel) == retrieval_metrics(scores, split.caption_clip)
    assert rel.relevant_per_query().tolist() == [1] * 7


@pytest.mark.parametrize("kwargs, message", [
    ({"values": np.ones(3, dtype=bool)}, "must be \\(n_queries, n_clips\\)"),
    ({"values": np.array([["a"]])}, "booleans or gains"),
    ({"values": np.array([[np.nan, 1.0]])}, "finite and >= 0"),
    ({"query_index": np.array([0, 0])}, "a caption appears twice"),
    ({"query_index": np.array([0, 9])}, r"query_index must lie in \[0, 6\]"),
    ({"query_index": np.array([0.0, 1.0])}, "one caption row per query"),
    ({"query_index": np.array([0])}, "one caption row per query"),
    ({"judged": np.ones((2, 3), dtype=bool)}, "judged must be a boolean matrix"),
])
def test_relevance_refuses_inconsistent_fields(kwargs, message):
    fields = {"values": np.eye(2, 6, dtype=bool), "query_index": np.array([0, 1]), "n_captions": 7,
              "source": "hand-made"}
    with pytest.raises(ValueError, match=message):
        Relevance(**{**fields, **kwargs})
