"""A SYNTHETIC Clotho-like corpus, for CPU runs and tests when real Clotho is absent.

Nothing here is real audio. Each synthetic clip is a mixture of 1-3 sound events (plus,
sometimes, an acoustic scene). Its "PaSST logits" are *simulated* from those events: the
event's own AudioSet classes and their parents fire, weakly for quiet events, together with
systematic confusions (classes a tagger tends to mistake for the event, whose names do not
describe it), random false alarms and noise. Five captions per clip are written from the
events with varied wording, and only the captions (and the 527 tag names) go through a real
sentence model. The corpus is built so that the paper's comparisons are meaningful: tag names
alone (lambda = 0) beat chance, and a trained projection beats tag names alone.

Every figure or number computed from it must say it is synthetic; `Corpus.is_synthetic`
tells (provenance "source": "synthetic").

The generator knows what it drew: `synthetic_ground_truth(spec)` re-simulates each clip's
events and scene and what each caption mentions (no text model, nothing stored), and
`synthetic_relevance(corpus)` turns that into many relevant clips per caption: every clip
holding all the events the caption mentions (and the scene it names). With the default spec a
test caption has 7.4 relevant clips on average (median 2, at most 50, of 400 clips); the DCASE
2025 file has 3.0 (median 3, at most 12, of 1,045).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from .core import DEFAULT_TEXT_MODEL, default_cache_dir
from .data import Corpus, RetrievalSplit
from .relevance import Relevance
from .tags import AUDIOSET_LABELS, N_TAGS

if TYPE_CHECKING:
    from .text import TextEncoder

SYNTHETIC_NOTE = ("Synthetic data: simulated PaSST logits and template captions, not Clotho. "
                  "Numbers show the method's behaviour, not the paper's results.")
SYNTHETIC_RELEVANCE_SOURCE = ("SYNTHETIC ground truth of the generator: a clip is relevant to a "
                              "caption when it holds every event the caption mentions (and the "
                              "scene it names)")

# event: (AudioSet classes it activates with their strength, systematic confusions, phrases)
# Phrases are full clauses; the caption writer joins them.
_EVENTS = {
    "dog": (["Dog", "Bark", "Domestic animals, pets", "Animal"], ["Growling", "Yip"],
            ["a dog barks", "a dog is barking", "dogs bark repeatedly", "a small dog yaps"]),
    "cat": (["Cat", "Meow", "Domestic animals, pets", "Animal"], ["Caterwaul", "Baby cry, infant cry"],
            ["a cat meows", "a cat is meowing", "a kitten mews softly"]),
    "birds": (["Bird", "Bird vocalization, bird call, bird song", "Chirp, tweet", "Animal"],
              ["Whistling", "Squeak"],
              ["birds chirp", "birds are singing", "a bird tweets", "several birds call to each other"]),
    "crow": (["Crow", "Caw", "Bird"], ["Squawk", "Duck"], ["a crow caws", "crows are cawing loudly"]),
    "rooster": (["Chicken, rooster", "Crowing, cock-a-doodle-doo", "Fowl"], ["Turkey", "Yell"],
                ["a rooster crows", "a rooster is crowing in a farmyard"]),
    "horse": (["Horse", "Clip-clop", "Livestock, farm animals, working animals"], ["Wood block", "Tap"],
              ["a horse trots by", "hooves clop on the road", "a horse walks on pavement"]),
    "insects": (["Insect", "Cricket", "Buzz"], ["Electric shaver, electric razor", "Mains hum"],
                ["insects buzz", "crickets chirp at night", "a fly buzzes around"]),
    "frog": (["Frog", "Croak"], ["Burping, eructation", "Duck"], ["frogs croak", "a frog is croaking"]),
    "rain": (["Rain", "Raindrop", "Rain on surface", "Water"], ["Frying (food)", "White noise", "Applause"],
             ["rain falls", "rain is pouring down", "raindrops hit a roof", "it is raining steadily"]),
    "thunder": (["Thunder", "Thunderstorm"], ["Boom", "Rumble", "Explosion"],
                ["thunder rumbles", "thunder cracks overhead", "a storm thunders in the distance"]),
    "wind": (["Wind", "Wind noise (microphone)"], ["Pink noise", "Rumble"],
             ["wind blows", "strong wind is blowing", "the wind howls"]),
    "stream": (["Stream", "Water", "Trickle, dribble"], ["Pour", "Sink (filling or washing)"],
               ["a stream flows", "water runs in a brook", "a creek babbles over rocks"]),
    "waves": (["Ocean", "Waves, surf", "Water"], ["Wind noise (microphone)", "Pink noise"],
              ["waves crash on the shore", "the sea washes onto the beach", "ocean waves roll in"]),
    "fire": (["Fire", "Crackle"], ["Rain on surface", "Sizzle"],
             ["a fire crackles", "wood burns and crackles in a fireplace"]),
    "footsteps": (["Walk, footsteps", "Run"], ["Knock", "Clicking"],
                  ["footsteps walk by", "a person walks on gravel", "someone is walking slowly",
                   "people walk on a wooden floor"]),
    "speech_man": (["Speech", "Male speech, man speaking"], ["Narration, monologue", "Conversation"],
                   ["a man talks", "a man is speaking", "a man says something"]),
    "speech_woman": (["Speech", "Female speech, woman speaking"], ["Narration, monologue", "Conversation"],
                     ["a woman talks", "a woman is speaking", "a lady speaks quietly"]),
    "crowd": (["Crowd", "Chatter", "Hubbub, speech noise, speech babble"], ["Speech", "Cheering"],
              ["a crowd chatters", "many people talk at once", "people are chatting in the background"]),
    "children": (["Children playing", "Children shouting", "Child speech, kid speaking"], ["Screaming", "Laughter"],
                 ["children play and shout", "kids are playing", "children laugh and yell"]),
    "laughter": (["Laughter", "Giggle"], ["Speech", "Chuckle, chortle"],
                 ["someone laughs", "people are laughing", "a person giggles"]),
    "baby": (["Baby cry, infant cry", "Crying, sobbing"], ["Cat", "Whimper"],
             ["a baby cries", "an infant is crying"]),
    "cough": (["Cough", "Throat clearing"], ["Bark", "Grunt"], ["a person coughs", "someone clears their throat"]),
    "applause": (["Applause", "Clapping", "Crowd"], ["Rain", "Crackle"],
                 ["an audience applauds", "people clap their hands", "applause fills a hall"]),
    "car": (["Car", "Vehicle", "Motor vehicle (road)", "Car passing by"], ["Traffic noise, roadway noise", "Whoosh, swoosh, swish"],
            ["a car drives by", "a car passes", "vehicles pass on a road"]),
    "traffic": (["Traffic noise, roadway noise", "Vehicle", "Motor vehicle (road)"], ["Rumble", "Wind"],
                ["traffic roars", "cars rush along a busy road", "traffic passes constantly"]),
    "horn": (["Vehicle horn, car horn, honking", "Toot"], ["Beep, bleep", "Train horn"],
             ["a car honks", "a horn blares", "drivers honk their horns"]),
    "siren": (["Siren", "Emergency vehicle", "Police car (siren)"], ["Whistle", "Sine wave"],
              ["a siren wails", "an ambulance siren passes", "a police siren sounds"]),
    "train": (["Train", "Rail transport", "Railroad car, train wagon"], ["Clickety-clack", "Rumble"],
              ["a train passes", "a train rattles along the tracks", "a train pulls into a station"]),
    "aircraft": (["Aircraft", "Fixed-wing aircraft, airplane", "Jet engine"], ["Rumble", "Wind"],
                 ["an airplane flies overhead", "a jet roars past", "a plane passes high above"]),
    "motorcycle": (["Motorcycle", "Engine", "Accelerating, revving, vroom"], ["Chainsaw", "Lawn mower"],
                   ["a motorcycle revs", "a motorbike accelerates away"]),
    "engine": (["Engine", "Idling", "Medium engine (mid frequency)"], ["Vacuum cleaner", "Mechanical fan"],
               ["an engine idles", "a motor is running", "an engine hums steadily"]),
    "bell": (["Church bell", "Bell"], ["Gong", "Chime"], ["church bells ring", "a bell tolls", "bells chime from a tower"]),
    "door": (["Door", "Slam"], ["Knock", "Thump, thud"], ["a door slams", "a door opens and closes", "someone shuts a door"]),
    "knock": (["Knock", "Tap"], ["Wood", "Door"], ["someone knocks on a door", "a person taps on wood"]),
    "dishes": (["Dishes, pots, and pans", "Cutlery, silverware", "Chink, clink"], ["Glass", "Clang"],
               ["dishes clatter", "plates and cutlery clink", "someone washes the dishes"]),
    "water_tap": (["Water tap, faucet", "Sink (filling or washing)", "Water"], ["Rain", "Stream"],
                  ["water runs from a tap", "a faucet is running", "water pours into a sink"]),
    "typing": (["Typing", "Computer keyboard"], ["Clicking", "Rain on surface"],
               ["someone types on a keyboard", "keys clatter as a person types"]),
    "clock": (["Clock", "Tick-tock", "Tick"], ["Clicking", "Tap"],
              ["a clock ticks", "a clock is ticking steadily"]),
    "music": (["Music", "Musical instrument"], ["Singing", "Speech"],
              ["music plays", "music is playing in the background", "a song plays on a radio"]),
    "guitar": (["Guitar", "Acoustic guitar", "Plucked string instrument", "Music"], ["Banjo", "Harp"],
               ["someone plays a guitar", "a guitar is strummed", "a person strums an acoustic guitar"]),
    "piano": (["Piano", "Keyboard (musical)", "Music"], ["Harpsichord", "Electric piano"],
              ["a piano plays", "someone plays a melody on the piano"]),
    "drill": (["Drill", "Power tool", "Tools"], ["Dental drill, dentist's drill", "Whir"],
              ["a power drill whirs", "someone drills into a wall"]),
    "hammer": (["Hammer", "Tools"], ["Knock", "Clang"], ["someone hammers a nail", "a hammer bangs on metal"]),
    "saw": (["Sawing", "Tools", "Wood"], ["Scrape", "Rub"], ["someone saws wood", "a saw cuts through a plank"]),
    "paper": (["Crumpling, crinkling", "Rustle"], ["Fire", "Crackle"],
              ["paper is crumpled", "someone rustles a plastic bag"]),
    "vacuum": (["Vacuum cleaner"], ["Hair dryer", "Engine", "Mechanical fan"],
               ["a vacuum cleaner runs", "someone vacuums the floor"]),
}

_SCENES = {
    "Outside, urban or manmade": ["in a busy street", "in the city", "on a city square"],
    "Outside, rural or natural": ["outdoors in the countryside", "in a quiet forest", "in a field"],
    "Inside, small room": ["in a small room", "inside a quiet room"],
    "Inside, large room or hall": ["in a large hall", "inside a big echoing hall"],
    "Inside, public space": ["in a train station", "in a busy shopping mall"],
}
_FAR = ["in the distance", "faintly", "in the background", "far away"]
_JOIN2 = ["{a} while {b}", "{a} and {b}", "{a} as {b}", "{a}, then {b}", "{a} over the sound of {b_ing}"]
_JOIN3 = ["{a}, {b} and {c}", "{a} while {b} and {c}", "{a} as {b}, and {c}"]


@dataclass(frozen=True)
class SyntheticSpec:
    n_train: int = 600           # clips (5 captions each): Clotho development has 3839
    n_val: int = 150
    n_test: int = 400            # Clotho evaluation ("dev-test") has 1045
    captions_per_clip: int = 5
    seed: int = 0
    style: str = "clotho"        # "clotho" | "audiocaps" (another event mix, 1 caption per clip)
    # the paper's all-mpnet-base-v2 (hub cache laid out by scripts/setup_env.sh); "offline" is the
    # packaged MiniLM (384-d, ~5x faster) the unit tests use
    text_model: str = DEFAULT_TEXT_MODEL


def _label_index() -> dict:
    return {name: i for i, name in enumerate(AUDIOSET_LABELS)}


def _event_tables() -> dict:
    """Per event: class indices and strengths, confusion indices (validated against the labels)."""
    index = _label_index()
    table = {}
    for key, (classes, confusions, phrases) in _EVENTS.items():
        missing = [c for c in classes + confusions if c not in index]
        if missing:
            raise RuntimeError(f"synthetic event {key!r} names unknown AudioSet classes {missing}")
        # the first class is the event itself; later ones (parents, siblings) fire less
        strength = [1.0] + [0.75 - 0.1 * j for j in range(len(classes) - 1)]
        table[key] = ([index[c] for c in classes], strength, [index[c] for c in confusions], phrases)
    return table


def _ing(phrase: str) -> str | None:
    """'birds are singing' -> 'birds singing'; None when the clause has no progressive form
    (guessing gerunds of simple-present verbs goes wrong: 'church bells ring')."""
    words = phrase.split()
    for i, w in enumerate(words):
        if w in ("is", "are"):
            return " ".join(words[:i] + words[i + 1:])
    return None


def _caption(rng, events, saliences, scene) -> "tuple[str, tuple, str | None]":
    """(caption, the events it mentions, the scene it names or None)."""
    order = list(range(len(events)))
    if rng.random() < 0.25:
        rng.shuffle(order)
    mentioned = [i for i in order
                 if i == int(np.argmax(saliences)) or rng.random() < 0.3 + 0.6 * saliences[i]]
    parts = []
    for i in mentioned:
        phrase = str(rng.choice(_EVENTS[events[i]][2]))
        if saliences[i] < 0.5 and rng.random() < 0.6:
            phrase += " " + str(rng.choice(_FAR))
        parts.append(phrase)
    if len(parts) == 1:
        text = parts[0]
    elif len(parts) == 2:
        b_ing = _ing(parts[1])
        templates = _JOIN2 if b_ing else [t for t in _JOIN2 if "{b_ing}" not in t]
        text = str(rng.choice(templates)).format(a=parts[0], b=parts[1], b_ing=b_ing)
    else:
        text = str(rng.choice(_JOIN3)).format(a=parts[0], b=parts[1], c=parts[2])
    named_scene = None
    if scene is not None and rng.random() < 0.5:
        text += " " + str(rng.choice(_SCENES[scene]))
        named_scene = scene
    return text[0].upper() + text[1:] + ".", tuple(events[i] for i in mentioned), named_scene


@dataclass(frozen=True)
class SplitTruth:
    """What the generator drew for one split: each clip's events and scene, and what each
    caption mentions. The ground truth behind `synthetic_relevance`."""
    clip_names: tuple
    captions: tuple
    caption_clip: tuple
    clip_events: tuple      # per clip: the event keys it contains (1-3)
    clip_scene: tuple       # per clip: its acoustic scene, or None
    caption_events: tuple   # per caption: the event keys it mentions (a subset of its clip's)
    caption_scene: tuple    # per caption: the scene it names, or None


def _simulate_split(rng, n_clips: int, n_captions: int, popularity: np.ndarray, tables, scene_ids,
                    prior: np.ndarray):
    """Simulated logits (n_clips, 527) and the split's truth (names, captions, events)."""
    keys = list(_EVENTS)
    logits = np.empty((n_clips, N_TAGS), dtype=np.float32)
    names, captions, caption_clip = [], [], []
    clip_events, clip_scene, caption_events, caption_scene = [], [], [], []
    for c in range(n_clips):
        n_ev = int(rng.choice([1, 2, 3], p=[0.2, 0.5, 0.3]))
        events = list(rng.choice(keys, size=n_ev, replace=False, p=popularity))
        sal = rng.uniform(0.3, 1.0, n_ev)
        sal[rng.integers(n_ev)] = rng.uniform(0.75, 1.0)   # one clearly audible event
        scene = None if rng.random() < 0.4 else str(rng.choice(list(_SCENES)))
        z = prior + rng.normal(0, 1.3, N_TAGS)
        for ev, s in zip(events, sal):
            idx, strength, confusions, _ = tables[ev]
            for j, w in zip(idx, strength):
                # salient events reach logits around +2 (sigmoid ~0.9); quiet ones stay near -3
                z[j] = max(z[j], -7.0 + 8.5 * s * w + rng.normal(0, 2.0))
            for j in confusions:
                z[j] = max(z[j], -7.0 + 9.5 * s * rng.uniform(0.6, 1.0) + rng.normal(0, 1.5))
        if scene is not None:
            z[scene_ids[scene]] = max(z[scene_ids[scene]], rng.normal(-1.0, 1.5))
        for j in rng.choice(N_TAGS, size=6, replace=False):   # false alarms
            z[j] = max(z[j], rng.normal(-2.0, 1.5))
        logits[c] = z
        events = [str(e) for e in events]
        names.append(f"synthetic_{c:05d}_" + "+".join(events) + ".wav")
        clip_events.append(tuple(events))
        clip_scene.append(scene)
        for _ in range(n_captions):
            text, mentioned, named_scene = _caption(rng, events, sal, scene)
            captions.append(text)
            caption_clip.append(c)
            caption_events.append(mentioned)
            caption_scene.append(named_scene)
    truth = SplitTruth(tuple(names), tuple(captions), tuple(caption_clip), tuple(clip_events),
                       tuple(clip_scene), tuple(caption_events), tuple(caption_scene))
    return logits, truth


def _simulate(spec: SyntheticSpec) -> dict:
    """{split name: (logits, SplitTruth)}: everything the generator draws, without text."""
    if min(spec.n_train, spec.n_val, spec.n_test) < 2 or spec.captions_per_clip < 1:
        raise ValueError("need at least 2 clips per split and 1 caption per clip")
    rng = np.random.default_rng(spec.seed)
    tables = _event_tables()
    index = _label_index()
    scene_ids = {s: index[s] for s in _SCENES}
    n_keys = len(_EVENTS)
    # Zipf-like event popularity: some events are common, which makes retrieval harder
    ranks = rng.permutation(n_keys) if spec.style == "audiocaps" else np.arange(n_keys)
    popularity = 1.0 / (ranks + 4.0) ** 0.8
    popularity /= popularity.sum()
    # per-class bias of the simulated tagger, fixed for the corpus
    prior = -7.0 + rng.normal(0, 0.8, N_TAGS)
    return {name: _simulate_split(rng, n, spec.captions_per_clip, popularity, tables, scene_ids, prior)
            for name, n in (("train", spec.n_train), ("val", spec.n_val), ("test", spec.n_test))}


def make_synthetic_corpus(spec: SyntheticSpec = SyntheticSpec(), text_encoder: "TextEncoder | None" = None,
                          show_progress: bool = False) -> Corpus:
    """Generate the corpus and encode its captions and the 527 tag names with a real model."""
    from .tags import encode_tag_names
    from .text import TextEncoder

    simulated = _simulate(spec)
    encoder = text_encoder if text_encoder is not None else TextEncoder(spec.text_model)
    splits = []
    for name, (logits, truth) in simulated.items():
        text_emb = encoder.encode(list(truth.captions), show_progress=show_progress)
        splits.append(RetrievalSplit(name, logits, text_emb, np.asarray(truth.caption_clip),
                                     list(truth.clip_names), list(truth.captions)))
    provenance = {"source": "synthetic", "note": SYNTHETIC_NOTE, "spec": asdict(spec),
                  "text_model": getattr(encoder, "model_name", spec.text_model),
                  "logits": "simulated from events (not PaSST)"}
    return Corpus(*splits, tag_emb=encode_tag_names(encoder), provenance=provenance)


@functools.lru_cache(maxsize=4)
def _truth(spec: SyntheticSpec) -> tuple:
    return tuple((name, truth) for name, (_, truth) in _simulate(spec).items())


def synthetic_ground_truth(spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """{split name: SplitTruth} for `spec`, re-simulated (no text model, nothing stored: the
    generator is deterministic from the spec; the last few specs are kept in memory)."""
    if not isinstance(spec, SyntheticSpec):
        raise ValueError(f"spec must be a SyntheticSpec, got {type(spec).__name__}")
    return dict(_truth(spec))


def _spec_of(corpus: Corpus) -> SyntheticSpec:
    if not corpus.is_synthetic:
        raise ValueError(f"synthetic relevance needs the synthetic corpus; this one's source is "
                         f"{corpus.provenance.get('source')!r} (load real judgments with the "
                         "loaders of retrieval_lib.relevance)")
    spec = corpus.provenance.get("spec")
    known = set(SyntheticSpec.__dataclass_fields__)
    if not isinstance(spec, dict) or not set(spec) <= known:
        made_by = corpus.provenance.get("generator", "unknown")
        raise ValueError(f"the synthetic corpus records no usable spec ({spec!r}; made by "
                         f"{made_by}): only corpora of make_synthetic_corpus have a ground truth "
                         "that can be re-simulated")
    return SyntheticSpec(**spec)


def synthetic_relevance(corpus: "Corpus | SyntheticSpec", split: str = "test") -> Relevance:
    """The generator's ground truth as a Relevance over one split (labelled synthetic).

    A clip is relevant to a caption when it contains every event the caption mentions and,
    if the caption names an acoustic scene, it was drawn in that scene. Loudness words ("in
    the distance") are ignored. A caption's own clip is always relevant (the caption is
    written from a subset of its events). Every caption is a query.

    corpus: a synthetic Corpus (its spec is read from its provenance and the re-simulated
    captions and clip names must equal the corpus's, else ValueError: it was made by another
    version of the generator), or a SyntheticSpec.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    spec = corpus if isinstance(corpus, SyntheticSpec) else _spec_of(corpus)
    truth = synthetic_ground_truth(spec)[split]
    if not isinstance(corpus, SyntheticSpec):
        have = getattr(corpus, split)
        if list(have.captions) != list(truth.captions) or list(have.clip_names) != list(truth.clip_names):
            raise ValueError(f"the {split} split of this synthetic corpus differs from what the "
                             f"generator makes for its spec {spec}: it was made by another version "
                             "of the generator; rebuild it (delete its cache folder)")
    keys = {k: i for i, k in enumerate(_EVENTS)}
    scenes = {s: i for i, s in enumerate(_SCENES)}
    n_clips, n_caps = len(truth.clip_names), len(truth.captions)
    clip_has = np.zeros((n_clips, len(keys)), dtype=bool)
    for c, evs in enumerate(truth.clip_events):
        clip_has[c, [keys[e] for e in evs]] = True
    caption_needs = np.zeros((n_caps, len(keys)), dtype=bool)
    for q, evs in enumerate(truth.caption_events):
        caption_needs[q, [keys[e] for e in evs]] = True
    # relevant <=> no mentioned event is missing from the clip
    missing = caption_needs.astype(np.int32) @ (~clip_has).astype(np.int32).T
    relevant = missing == 0
    clip_scene = np.array([scenes[s] if s is not None else -1 for s in truth.clip_scene])
    caption_scene = np.array([scenes[s] if s is not None else -1 for s in truth.caption_scene])
    named = caption_scene >= 0
    relevant[named] &= clip_scene[None, :] == caption_scene[named][:, None]
    own = np.asarray(truth.caption_clip)
    assert relevant[np.arange(n_caps), own].all(), "a caption must be relevant to its own clip"
    return Relevance(relevant, np.arange(n_caps), n_caps, SYNTHETIC_RELEVANCE_SOURCE, split)


def load_synthetic_corpus(spec: SyntheticSpec = SyntheticSpec(), cache_dir: "str | os.PathLike | None" = None,
                          text_encoder: "TextEncoder | None" = None) -> Corpus:
    """The synthetic corpus for `spec`: loaded from the cache when built before, else built
    and cached (a few seconds to a minute: the captions go through the sentence model)."""
    key = hashlib.sha1(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    directory = Path(cache_dir or default_cache_dir()) / f"synthetic-{key}"
    if (directory / "corpus.json").exists():
        try:
            return Corpus.load(directory)
        except (ValueError, OSError) as err:
            # a truncated or mixed cache (checked by Corpus.load) is rebuilt, not left to
            # break every later call
            warnings.warn(f"rebuilding the synthetic corpus cache in {directory}: {err}")
    corpus = make_synthetic_corpus(spec, text_encoder)
    corpus.save(directory)
    return corpus
