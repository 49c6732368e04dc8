"""Choosing a corpus's people: one identity per speaker, disjoint between splits, distinct by dlib.

Training speakers are cast first, then validation, then test. A held-out (val or test) identity
may use a photograph that some training identity uses at no more than half weight, so that no
unseen speaker is mostly a training face. Each speaker draws candidates from its own seed until
one is at least ``margin`` from every identity already chosen (dlib's 128-D descriptor of its
neutral frame; dlib judges two faces closer than 0.6 the same person) and its lips pass the
lip-sync screen (``verify.screen_lip_sync``); when none of ``attempts`` candidates is far enough,
the farthest one that passes is kept and the shortfall shows in the reported distances. People to
``avoid`` (another corpus's, e.g. a word corpus whose lip reader will meet this one's test
speakers) count as chosen before everyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from avsr.data.synth.identities.ahead import Measurer
from avsr.data.synth.identities.geometry import ShapeEdit
from avsr.data.synth.identities.identity import Identity, canonical_source
from avsr.data.synth.identities.looks import Looks
from avsr.data.synth.identities.measured import identity_descriptor
from avsr.data.synth.identities.sources import Source
from avsr.data.synth.recognise import SAME_PERSON, distance_matrix
from avsr.data.synth.verify import SCREEN_THRESHOLD as LIP_SYNC_SCREEN

MARGIN = SAME_PERSON
# Measured candidates per speaker. The demo corpus (20 people): 12 left 15 of 190 pairs under 0.6
# (closest 0.549), 24 left 7 (0.572), 96 none (0.600). A speaker stops at its first candidate far
# enough, and a candidate no farther than the best so far costs one descriptor (no lip-sync screen).
ATTEMPTS = 96
DRAWS_PER_ATTEMPT = 4  # candidates drawn at most per counted attempt (about 4 in 10 fail the lip-sync screen)
HELD_OUT_LIMIT = 0.5  # largest weight a held-out identity may give a training speaker's photograph
MIX_SIZES = (1, 2, 3)  # how many photographs one identity blends ...
MIX_CHANCES = (0.3, 0.45, 0.25)  # ... and how often
SHAPE_STRENGTH = 1.0  # scale of the shape edits (ShapeEdit.sample)


class CastingError(ValueError):
    """No usable identity could be made from the photographs (one line, for the command)."""


@dataclass(frozen=True)
class Cast:
    """The chosen identities (one per speaker, in speaker order; spares after them) and their
    pairwise dlib distances."""

    identities: tuple[Identity, ...]
    splits: tuple[str, ...]  # per identity: train | val | test | spare
    distances: np.ndarray = field(repr=False)  # (N, N); NaN where dlib found no face
    lip_sync: tuple[float, ...] = ()  # per identity: its lowest correlation on the screening clips
    avoided: np.ndarray | None = field(default=None, repr=False)  # (N, M) distances to the M people avoided

    def report(self) -> dict:
        return distinctness_report(self.distances, list(self.splits), self.avoided)


def check_sources(sources: tuple[Source, ...]) -> None:
    """Load and rig every photograph now: ValueError naming the file when one is not an image or
    holds no face dlib can find."""
    for source in sources:
        try:
            canonical_source(source)
        except ValueError as error:
            message = str(error)
            if message.startswith("dlib found no face"):
                message = f"{source.file()}: no face found in the photograph"
            raise ValueError(message) from None


def descriptor_distances(identities: Sequence[Identity], others: Sequence[Identity] | None = None) -> np.ndarray:
    """(N, N) dlib distances between identities, or (N, M) to ``others``; NaN where one has no face."""

    def stacked(people: Sequence[Identity]) -> np.ndarray:
        descriptors = [identity_descriptor(identity) for identity in people]
        return (
            np.stack([d if d is not None else np.full(128, np.nan) for d in descriptors])
            if descriptors
            else np.zeros((0, 128))
        )

    return distance_matrix(stacked(identities), None if others is None else stacked(others))


def distinctness_report(distances: np.ndarray, splits: list[str], avoided: np.ndarray | None = None) -> dict:
    """Minimum distance over all pairs, over test-vs-train pairs, and the pairs under 0.6; with
    ``avoided`` (N, M), the closest of the N to the M people of another corpus too."""
    count = len(splits)
    pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
    values = [float(distances[i, j]) for i, j in pairs]
    train = [i for i, s in enumerate(splits) if s == "train"]
    held = {name: [i for i, s in enumerate(splits) if s == name] for name in ("val", "test")}

    def smallest(rows: list[int], columns: list[int]) -> float | None:
        found = [float(distances[i, j]) for i, j in product(rows, columns) if i != j]
        return round(min(found), 4) if found else None

    report = {
        "identities": count,
        "min_pair": round(min(values), 4) if values else None,
        "min_test_vs_train": smallest(held["test"], train),
        "min_val_vs_train": smallest(held["val"], train),
        "pairs": len(values),
        "pairs_under_threshold": sum(1 for value in values if not value >= SAME_PERSON),
        "threshold": SAME_PERSON,
    }
    if avoided is not None:
        across = avoided[:count].ravel()
        report["avoided"] = int(avoided.shape[1])
        report["min_vs_avoided"] = round(float(np.nanmin(across)), 4) if np.isfinite(across).any() else None
        report["pairs_under_threshold_vs_avoided"] = int(np.sum(~(across >= SAME_PERSON)))
    return report


def sample_identity(
    name: str, rng: np.random.Generator, sources: tuple[Source, ...], limits: dict[str, float]
) -> Identity:
    """A random recipe: 1-3 photographs with weights (each at most ``limits[source name]``),
    strong shape edits and new looks."""
    names = [source.name for source in sources]
    allowed = [s for s in sources if limits.get(s.name, 1.0) > 0]
    sizes = [k for k in MIX_SIZES if k <= len(allowed)]
    chances = np.array([MIX_CHANCES[MIX_SIZES.index(k)] for k in sizes])
    for _ in range(100):
        size = int(rng.choice(sizes, p=chances / chances.sum()))
        picks = sorted(rng.choice(len(allowed), size=size, replace=False).tolist())
        weights = rng.dirichlet([2.0] * size) if size > 1 else np.ones(1)
        weights = np.round(weights, 3)
        weights[0] = round(1 - weights[1:].sum(), 3)
        chosen = [allowed[i] for i in picks]
        if all(w > 0.05 and w <= limits.get(s.name, 1.0) + 1e-9 for s, w in zip(chosen, weights)):
            break
    else:  # the limits leave only an even blend of everything allowed
        chosen = list(allowed)
        weights = np.full(len(chosen), 1 / len(chosen))
    order = sorted(range(len(chosen)), key=lambda i: (-weights[i], names.index(chosen[i].name)))
    mix = tuple((chosen[i], float(weights[i])) for i in order)
    total = sum(w for _, w in mix)
    mix = tuple((s, w / total) for s, w in mix)
    features = _photofit(rng, [w for _, w in mix], [limits.get(s.name, 1.0) for s, _ in mix]) if len(mix) > 1 else None
    if features is not None:
        mix = tuple((s, float(np.mean([f[i] for f in features]))) for i, (s, _) in enumerate(mix))
    return Identity(name, mix, ShapeEdit.sample(rng, SHAPE_STRENGTH), Looks.sample(rng), features)


def _photofit(
    rng: np.random.Generator, weights: list[float], limits: list[float]
) -> tuple[tuple[float, ...], ...] | None:
    """Per-feature weights (eyes, nose, mouth, face): each feature mostly one photograph, picked
    in proportion to ``weights``; None when the features' mean would break a source's limit."""
    count = len(weights)
    features = []
    for _ in range(4):
        main = int(rng.choice(count, p=np.array(weights) / sum(weights)))
        mix = np.full(count, 0.15 / max(count - 1, 1))
        mix[main] = 0.85
        features.append(tuple(float(round(w, 4)) for w in mix / mix.sum()))
    means = np.mean(features, axis=0)
    if any(m > limit + 1e-9 for m, limit in zip(means, limits)):
        return None
    features = [tuple(float(w) for w in np.array(f) / sum(f)) for f in features]
    return tuple(features)


def cast_identities(
    splits: list[str],
    seeds: list[int],
    sources: tuple[Source, ...],
    margin: float = MARGIN,
    attempts: int = ATTEMPTS,
    avoid: tuple[Identity, ...] = (),
    measurer: Measurer | None = None,
) -> Cast:
    """One identity per entry of ``splits`` (train | val | test | spare), each drawn from its own
    seed in ``seeds``, at least ``margin`` from each other and from the people to ``avoid`` where
    it can: the result depends on the seeds, the photographs and ``avoid`` only (not on
    ``measurer``, whose workers measure candidates ahead of the decisions)."""
    measurer = measurer or Measurer()
    avoided = [d for d in map(identity_descriptor, avoid) if d is not None]
    order = sorted(range(len(splits)), key=lambda i: (("train", "val", "test", "spare").index(splits[i]), i))
    chosen: dict[int, Identity] = {}
    lip_sync: dict[int, float] = {}
    training_sources: dict[str, float] = {}
    for index in order:
        split = splits[index]
        limits = {} if split == "train" else {name: HELD_OUT_LIMIT for name in training_sources}
        if split != "train" and len(sources) == 1:
            limits = {}  # one photograph: nothing to hold out (reported by the morph-weight check)
        rng = np.random.default_rng(seeds[index])
        draws = (
            sample_identity(f"person{index:03d}", rng, sources, limits) for _ in range(attempts * DRAWS_PER_ATTEMPT)
        )
        best, best_distance, best_sync = None, -1.0, float("nan")
        measured = 0  # candidates whose distance counted: unreadable lips are drawn again
        for candidate, descriptor in measurer.descriptors(draws):
            if measured >= attempts:
                break
            if descriptor is None:
                continue
            nearest = min(
                (
                    float(np.linalg.norm(descriptor - other))
                    for other in [*avoided, *map(identity_descriptor, chosen.values())]
                    if other is not None
                ),
                default=np.inf,
            )
            if nearest <= best_distance:
                measured += 1
                continue  # screening only what would be kept
            sync = measurer.lip_sync(candidate)
            if not sync >= LIP_SYNC_SCREEN:
                continue
            measured += 1
            best, best_distance, best_sync = candidate, nearest, sync
            if nearest >= margin:
                break
        if best is None:
            raise CastingError(
                f"no face whose lips dlib can follow (lip sync >= {LIP_SYNC_SCREEN}) in "
                f"{attempts * DRAWS_PER_ATTEMPT} candidate identities; the photographs may be too small or turned away"
            )
        lip_sync[index] = best_sync
        chosen[index] = best
        if split == "train":
            for source, weight in best.sources:
                training_sources[source.name] = max(training_sources.get(source.name, 0.0), weight)
    identities = tuple(chosen[i] for i in range(len(splits)))
    screened = tuple(round(lip_sync[i], 4) for i in range(len(splits)))
    across = descriptor_distances(identities, avoid) if avoid else None
    return Cast(identities, tuple(splits), descriptor_distances(identities), screened, across)
