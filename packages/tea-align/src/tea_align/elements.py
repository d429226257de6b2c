"""Element sets of the datasets the paper fuses.

MPtrj (Deng et al., CHGNet, 2023) covers 89 elements: Z = 1..83 (H..Bi) and Z = 89..94 (Ac..Pu);
Po, At, Rn, Fr and Ra never occur in it. SPICE/OFF23 elements are a subset. The union of the paper's
training data is therefore MPtrj's set, which is the model's 89-element type table
(``ALLEGRO_FM_ELEMENTS``). Frames with noble gases are dropped before training (the paper's
preprocessing), so He, Ne, Ar, Kr and Xe are in the type table but carry no training data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

#: Atomic numbers present in MPtrj.
MPTRJ_ATOMIC_NUMBERS: tuple[int, ...] = tuple(range(1, 84)) + tuple(range(89, 95))
#: Symbols of MPtrj's 89 elements, ordered by atomic number.
MPTRJ_ELEMENTS: tuple[str, ...] = tuple(chemical_symbols[z] for z in MPTRJ_ATOMIC_NUMBERS)
#: The Allegro-FM type table (89 elements, ordered by Z).
ALLEGRO_FM_ELEMENTS: tuple[str, ...] = MPTRJ_ELEMENTS
#: Noble gases: frames containing any of them are dropped by the paper's preprocessing.
NOBLE_GASES: frozenset[str] = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn", "Og"})
#: Largest atomic number tea-align accepts.
MAX_Z: int = 118

NOBLE_GAS_MASK: np.ndarray = np.zeros(MAX_Z + 1, dtype=bool)
NOBLE_GAS_MASK[[atomic_numbers[s] for s in NOBLE_GASES]] = True


def symbol_to_z(symbol: str) -> int:
    """Atomic number of an element symbol; raises ValueError naming the symbol if unknown."""
    z = atomic_numbers.get(str(symbol).strip())
    if z is None or z == 0 or z > MAX_Z:
        raise ValueError(f"unknown element symbol {symbol!r}")
    return z


def z_to_symbol(z: int) -> str:
    """Element symbol of an atomic number (1..118)."""
    if not 1 <= int(z) <= MAX_Z:
        raise ValueError(f"atomic number {z} is not an element (1..{MAX_Z})")
    return chemical_symbols[int(z)]


def type_indices(species: Sequence[str], symbols: Sequence[str]) -> np.ndarray:
    """Indices into a potential's ``species`` of element ``symbols`` (int64); ValueError naming the first unknown
    element and its atom. One lookup for every potential's ``types_of``."""
    lut = {s: i for i, s in enumerate(species)}
    out = np.empty(len(symbols), dtype=np.int64)
    for k, s in enumerate(symbols):
        if s not in lut:
            shown = list(species) if len(species) <= 10 else f"{len(species)} elements"
            raise ValueError(
                f"atom {k}: element {s!r} is not known to this potential (it knows {shown})"
            )
        out[k] = lut[s]
    return out
