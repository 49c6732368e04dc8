"""One synthetic person: a recipe (source photographs with weights, shape edits, looks) and the
rigged face it builds.

A recipe is a typed, frozen, hashable value: it goes into the corpus metadata as it is, and the
face it builds is the same in every process (``identity_rig`` caches it per process: workers
build each speaker's face once, on first use).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from avsr.data.synth.identities.geometry import CANVAS, EYE_DISTANCE, ShapeEdit, to_canvas, warp_to
from avsr.data.synth.identities.looks import Looks, face_outline
from avsr.data.synth.identities.sources import Source
from avsr.data.synth.rig import FaceRig, person_mask, rig_photo

WEIGHT_TOLERANCE = 1e-3  # how far weights may sum from 1
LANDMARK_TOLERANCE = 0.12  # re-detected landmarks further than this (eye distances, on average) are not used


@dataclass(frozen=True)
class Identity:
    """A person made from real photographs.

    ``sources`` are (photograph, weight) pairs, weights summing to 1, the largest first: one source
    is that person reshaped; several are a morph (the landmarks averaged with the weights, each
    photograph warped to the average, the faces cross-dissolved; hair, neck and background come
    from the first source).

    ``features`` optionally mixes the sources differently per facial feature, as a photofit does
    (eyes and brows, nose, mouth, the rest of the face: one weight tuple each, over ``sources`` in
    order, each summing to 1); the shape still follows ``sources``' weights, which are then the
    features' mean.
    """

    name: str
    sources: tuple[tuple[Source, float], ...]
    shape: ShapeEdit = field(default_factory=ShapeEdit)
    looks: Looks = field(default_factory=Looks)
    features: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("an identity needs at least one source photograph")
        # To the 4 decimals a corpus's metadata records: a recorded recipe rebuilds as it was.
        total = sum(weight for _, weight in self.sources)
        if abs(total - 1) > WEIGHT_TOLERANCE or any(weight <= 0 for _, weight in self.sources):
            raise ValueError(f"source weights must be positive and sum to 1, not {[w for _, w in self.sources]}")
        if self.features is not None:
            if len(self.features) != len(FEATURES) or any(
                len(w) != len(self.sources) or abs(sum(w) - 1) > WEIGHT_TOLERANCE for w in self.features
            ):
                raise ValueError(f"features need {len(FEATURES)} weight tuples over the sources, each summing to 1")

    def weight_of(self, source_name: str) -> float:
        return sum(weight for source, weight in self.sources if source.name == source_name)

    def recipe(self) -> dict:
        """What the metadata records: sources (name, package, path, licence, weight) and edits."""
        return {
            "name": self.name,
            "sources": [{**asdict(source), "weight": round(weight, 4)} for source, weight in self.sources],
            "shape": asdict(self.shape),
            "looks": asdict(self.looks),
            "features": None
            if self.features is None
            else {feature: [round(w, 4) for w in weights] for feature, weights in zip(FEATURES, self.features)},
        }

    @classmethod
    def from_recipe(cls, recipe: dict, sources: dict[str, Source]) -> Identity:
        """The identity a ``recipe()`` describes (as a corpus's metadata records it); photographs
        are looked up by name in ``sources``, never by a recorded path. ValueError when the
        recipe is malformed or names a photograph not in ``sources``."""
        try:
            names = [entry["name"] for entry in recipe["sources"]]
            missing = [name for name in names if name not in sources]
            if missing:
                raise ValueError(f"needs the photograph {missing[0]!r}, which is not among the sources given")
            weights = [float(entry["weight"]) for entry in recipe["sources"]]
            features = recipe.get("features")
            if features is not None:
                features = tuple(tuple(float(w) for w in features[name]) for name in FEATURES)
            shape, looks = dict(recipe["shape"]), dict(recipe["looks"])
            for key in ("skin", "facial_hair_colour", "glasses_colour"):
                if key in looks:
                    looks[key] = tuple(looks[key])
            return cls(
                str(recipe["name"]),
                tuple((sources[name], w) for name, w in zip(names, weights)),
                ShapeEdit(**shape),
                Looks(**looks),
                features,
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an identity recipe ({type(error).__name__}: {error})") from None

    def build(self) -> FaceRig:
        """The rigged face: (CANVAS, CANVAS, 3) image, its 68 landmarks and person mask."""
        canonical = [(canonical_source(source), weight) for source, weight in self.sources]
        mean = sum(weight * landmarks for (_, landmarks), weight in canonical) / sum(weight for _, weight in canonical)
        target = self.shape.apply(mean)
        warped = [
            (warp_to(image, landmarks, target).astype(np.float32), weight) for (image, landmarks), weight in canonical
        ]
        image = warped[0][0]
        if len(warped) > 1:
            blend = (
                _photofit(warped, target, self.features)
                if self.features
                else sum(weight * picture for picture, weight in warped) / sum(w for _, w in warped)
            )
            # Cross-dissolve the face only: blended hair and backgrounds would be ghosts.
            face = np.zeros(image.shape[:2], np.uint8)
            cv2.fillPoly(face, [np.round(face_outline(target)).astype(np.int32)], 255)
            face = cv2.GaussianBlur(face.astype(np.float32) / 255.0, (0, 0), 0.12 * EYE_DISTANCE)[..., None]
            image = face * blend + (1 - face) * image
        image = np.clip(image, 0, 255).astype(np.uint8)
        mask = person_mask(image.shape[:2], target)
        image = self.looks.apply(image, target, mask)
        return FaceRig(image, _checked_landmarks(image, target), mask)


FEATURES = ("eyes", "nose", "mouth", "face")


def _feature_masks(target: np.ndarray, shape: tuple[int, int]) -> list[np.ndarray]:
    """Soft (H, W) masks of eyes-and-brows, nose, mouth, and the rest, summing to 1 everywhere."""
    unit = EYE_DISTANCE
    regions = []
    for points, grow in (
        (np.vstack([target[17:27], target[36:48]]), 0.25),
        (target[27:36], 0.2),
        (target[48:68], 0.25),
    ):
        mask = np.zeros(shape, np.uint8)
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255)
        mask = cv2.dilate(mask, np.ones((int(grow * unit) | 1,) * 2, np.uint8))
        regions.append(cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 0.1 * unit))
    total = np.maximum(sum(regions), 1.0)
    regions = [region / total for region in regions]
    return [*regions, np.clip(1.0 - sum(regions), 0, 1)]


def _photofit(warped: list[tuple[np.ndarray, float]], target: np.ndarray, features) -> np.ndarray:
    """Per-feature mixes of the warped photographs, each first matched in colour (mean and spread
    inside the face) to the whole mix, so that the seams between features do not show."""
    face = np.zeros(warped[0][0].shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(face_outline(target)).astype(np.int32)], 255)
    inside = face > 0
    pictures = [picture for picture, _ in warped]
    weights = np.array([weight for _, weight in warped])
    means = np.array([p[inside].mean(axis=0) for p in pictures])
    spreads = np.array([p[inside].std(axis=0) + 1e-3 for p in pictures])
    mean, spread = weights @ means, weights @ spreads
    matched = [(p - m) * (spread / s) + mean for p, m, s in zip(pictures, means, spreads)]
    masks = _feature_masks(target, face.shape)
    out = np.zeros_like(pictures[0])
    for mask, mix in zip(masks, features):
        out += mask[..., None] * sum(w * p for w, p in zip(mix, matched))
    return out


def _checked_landmarks(image: np.ndarray, intended: np.ndarray) -> np.ndarray:
    """dlib's landmarks of the edited face when it finds them near where the edit put them (what
    the lip-sync check will see), else the intended ones."""
    from avsr.data.synth.recognise import landmarker

    found = landmarker(0)(image)
    if found is None:
        return intended
    error = np.linalg.norm(found - intended, axis=1).mean() / EYE_DISTANCE
    return found.astype(np.float64) if error < LANDMARK_TOLERANCE else intended


@lru_cache(maxsize=32)
def canonical_source(source: Source) -> tuple[np.ndarray, np.ndarray]:
    """A source photograph rigged and brought to the canonical frame: (CANVAS, CANVAS, 3) uint8 RGB
    and (68, 2) landmarks; where the photograph does not reach, a blur of its edge."""
    rig = rig_photo(source.load())
    image, landmarks = to_canvas(rig.image, rig.landmarks)
    from avsr.data.synth.identities.geometry import canonical_transform

    matrix = canonical_transform(rig.landmarks)
    coverage = cv2.warpAffine(
        np.ones(rig.image.shape[:2], np.float32), matrix, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR
    )
    if coverage.min() < 1:
        edge = cv2.warpAffine(
            rig.image, matrix, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        soft = cv2.GaussianBlur(edge.astype(np.float32), (0, 0), 0.25 * EYE_DISTANCE)
        coverage = cv2.GaussianBlur(coverage, (0, 0), 2.0)[..., None]
        image = np.clip(coverage * image + (1 - coverage) * soft, 0, 255).astype(np.uint8)
    return image, landmarks


@lru_cache(maxsize=64)
def identity_rig(identity: Identity) -> FaceRig:
    """The identity's rig, built once per process (about half a second), on one BLAS thread so
    that every process computes the same pixels."""
    from avsr.parallel import one_blas_thread

    with one_blas_thread():
        return identity.build()
