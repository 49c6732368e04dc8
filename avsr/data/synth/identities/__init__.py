"""Synthetic people: many distinct identities made from a few real, permissively licensed photographs.

``sources`` lists the photographs (installed with their packages, never downloaded), ``geometry``
brings them to one canonical frame and reshapes faces through their landmarks, ``looks`` paints
skin tone, hair, facial hair, glasses and age, ``identity`` is the recipe and the rig it builds,
``cast`` chooses a corpus's identities: disjoint between splits and distinct by dlib's recogniser.
"""

from avsr.data.synth.identities.geometry import ShapeEdit
from avsr.data.synth.identities.identity import Identity, identity_rig
from avsr.data.synth.identities.looks import Looks
from avsr.data.synth.identities.sources import SOURCES, Source, user_sources

__all__ = ["SOURCES", "Identity", "Looks", "ShapeEdit", "Source", "identity_rig", "user_sources"]
