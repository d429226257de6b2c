"""Typed frames: one labelled structure (``Frame``) and a column batch of them (``FrameBatch``).

``Frame`` is the package boundary type (what ``open_dataset`` yields). ``FrameBatch`` is the
struct-of-arrays form every pipeline stage works on, so that alignment, filtering and writing are
vectorised over thousands of frames at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from .elements import MAX_Z, z_to_symbol
from .errors import TeaAlignError

#: |E|/atom above this (eV) is not a total energy of any element (the heaviest all-electron atoms are ~1e6 eV):
#: such frames are refused (overflowing sums give NaN statistics otherwise)
MAX_ABS_ENERGY_PER_ATOM = 1.0e7
#: |coordinate| (A) beyond which a frame is refused: no molecule or cell is that large, and float64 loses the
#: sub-Angstrom detail of a structure placed there
MAX_ABS_COORDINATE = 1.0e6


def _ro(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Frame:
    """One labelled structure, in eV, Angstrom, eV/Angstrom, eV/Angstrom^3 (ASE sign: tensile positive).

    ``cell`` rows are lattice vectors (zeros for a molecule); ``forces``/``stress`` are None when the
    source has none. ``energy`` is the total energy at ``level_of_theory`` (after alignment when read
    from an aligned dataset, where ``energy_raw`` keeps the source's value). ``source`` names the
    dataset, ``key`` the frame's identifier in it, ``index`` its ordinal in the source file.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: np.ndarray | None
    stress: np.ndarray | None
    source: str
    level_of_theory: str
    key: str = ""
    index: int = -1
    energy_raw: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", _ro(np.asarray(self.numbers, dtype=np.int64).copy()))
        object.__setattr__(
            self,
            "positions",
            _ro(np.asarray(self.positions, dtype=np.float64).reshape(-1, 3).copy()),
        )
        object.__setattr__(
            self, "cell", _ro(np.asarray(self.cell, dtype=np.float64).reshape(3, 3).copy())
        )
        object.__setattr__(self, "pbc", _ro(np.asarray(self.pbc, dtype=bool).reshape(3).copy()))
        if self.forces is not None:
            object.__setattr__(
                self, "forces", _ro(np.asarray(self.forces, dtype=np.float64).reshape(-1, 3).copy())
            )
        if self.stress is not None:
            object.__setattr__(
                self, "stress", _ro(np.asarray(self.stress, dtype=np.float64).reshape(3, 3).copy())
            )
        object.__setattr__(self, "energy", float(self.energy))

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def symbols(self) -> list[str]:
        return [z_to_symbol(z) for z in self.numbers]

    def to_ase(self):
        """This frame as an ``ase.Atoms`` with a SinglePointCalculator holding energy/forces/stress."""
        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        kw = {"energy": self.energy}
        if self.forces is not None:
            kw["forces"] = np.array(self.forces)
        if self.stress is not None:
            kw["stress"] = full_3x3_to_voigt_6_stress(self.stress)
        atoms.calc = SinglePointCalculator(atoms, **kw)
        atoms.info.update(source=self.source, level_of_theory=self.level_of_theory)
        if self.key:  # ase's extxyz parser mishandles an empty value
            atoms.info["key"] = self.key
        return atoms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented

        def same(a, b):
            if a is None or b is None:
                return a is None and b is None
            return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)

        return (
            same(self.numbers, other.numbers)
            and same(self.positions, other.positions)
            and same(self.cell, other.cell)
            and same(self.pbc, other.pbc)
            and same(self.forces, other.forces)
            and same(self.stress, other.stress)
            and (self.energy == other.energy or (np.isnan(self.energy) and np.isnan(other.energy)))
            and (self.source, self.level_of_theory, self.key, self.index)
            == (other.source, other.level_of_theory, other.key, other.index)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class SourceInfo:
    """Where frames came from: dataset name, file path, reader format and level of theory."""

    name: str
    path: str
    format: str
    level_of_theory: str


@dataclass
class FrameBatch:
    """Struct-of-arrays of F frames with A atoms in all (ragged per-frame atoms via ``offsets``).

    Units as in ``Frame``. ``source_id`` indexes ``sources``; missing forces/stress are NaN with
    ``has_forces``/``has_stress`` False.
    """

    numbers: np.ndarray  # (A,) int
    positions: np.ndarray  # (A, 3)
    forces: np.ndarray  # (A, 3)
    offsets: np.ndarray  # (F + 1,) int64
    cell: np.ndarray  # (F, 3, 3)
    pbc: np.ndarray  # (F, 3) bool
    energy: np.ndarray  # (F,)
    energy_raw: np.ndarray  # (F,)
    stress: np.ndarray  # (F, 3, 3)
    has_forces: np.ndarray  # (F,) bool
    has_stress: np.ndarray  # (F,) bool
    source_id: np.ndarray  # (F,) int32
    index: np.ndarray  # (F,) int64
    key: np.ndarray  # (F,) object (str)
    sources: list[SourceInfo] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.offsets)

    def frame_of_atom(self) -> np.ndarray:
        """(A,) index of the frame each atom belongs to."""
        return np.repeat(np.arange(self.n_frames), self.n_atoms)

    def composition(self, max_z: int = MAX_Z) -> np.ndarray:
        """(F, max_z + 1) count of atoms of each atomic number in each frame."""
        flat = self.frame_of_atom() * (max_z + 1) + self.numbers
        counts = np.bincount(flat, minlength=self.n_frames * (max_z + 1))
        return counts.reshape(self.n_frames, max_z + 1)

    def level_ids(self, levels: Sequence[str]) -> np.ndarray:
        """(F,) index into ``levels`` of each frame's level of theory."""
        lut = np.array([levels.index(s.level_of_theory) for s in self.sources], dtype=np.int32)
        return lut[self.source_id] if len(lut) else np.zeros(0, dtype=np.int32)

    def select(self, mask: np.ndarray) -> FrameBatch:
        """The frames where ``mask`` (F,) is True, in order."""
        mask = np.asarray(mask, dtype=bool)
        atom_mask = np.repeat(mask, self.n_atoms)
        n = self.n_atoms[mask]
        offsets = np.zeros(len(n) + 1, dtype=np.int64)
        np.cumsum(n, out=offsets[1:])
        return FrameBatch(
            numbers=self.numbers[atom_mask],
            positions=self.positions[atom_mask],
            forces=self.forces[atom_mask],
            offsets=offsets,
            cell=self.cell[mask],
            pbc=self.pbc[mask],
            energy=self.energy[mask],
            energy_raw=self.energy_raw[mask],
            stress=self.stress[mask],
            has_forces=self.has_forces[mask],
            has_stress=self.has_stress[mask],
            source_id=self.source_id[mask],
            index=self.index[mask],
            key=self.key[mask],
            sources=self.sources,
        )

    def frame(self, i: int) -> Frame:
        """Frame ``i`` of this batch as a typed ``Frame``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        src = self.sources[int(self.source_id[i])]
        return Frame(
            numbers=self.numbers[a:b],
            positions=self.positions[a:b],
            cell=self.cell[i],
            pbc=self.pbc[i],
            energy=float(self.energy[i]),
            forces=self.forces[a:b] if self.has_forces[i] else None,
            stress=self.stress[i] if self.has_stress[i] else None,
            source=src.name,
            level_of_theory=src.level_of_theory,
            key=str(self.key[i]),
            index=int(self.index[i]),
            energy_raw=float(self.energy_raw[i]),
        )

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def where(self, i: int) -> dict:
        """Keyword arguments for TeaAlignError locating frame ``i`` (its file, ordinal and key)."""
        return {
            "path": self.sources[int(self.source_id[i])].path,
            "frame": int(self.index[i]),
            "key": str(self.key[i]),
        }

    def validate(self) -> None:
        """Raise TeaAlignError naming the first bad frame: non-finite values, unknown Z, shape mismatch."""
        n = self.n_atoms
        bad_z = (self.numbers < 1) | (self.numbers > MAX_Z)
        if bad_z.any():
            i = int(self.frame_of_atom()[np.argmax(bad_z)])
            raise TeaAlignError(
                f"unknown atomic number {int(self.numbers[np.argmax(bad_z)])}", **self.where(i)
            )
        if (n == 0).any():
            raise TeaAlignError("frame has no atoms", **self.where(int(np.argmax(n == 0))))
        with np.errstate(all="ignore"):
            e_atom = np.abs(self.energy) / np.maximum(n, 1)
        checks = [
            ("energy is not finite", ~np.isfinite(self.energy)),
            (
                f"energy per atom beyond {MAX_ABS_ENERGY_PER_ATOM:g} eV (not an energy in eV: check the units)",
                np.isfinite(self.energy) & (e_atom > MAX_ABS_ENERGY_PER_ATOM),
            ),
            ("cell is not finite", ~np.isfinite(self.cell).all(axis=(1, 2))),
            ("stress is not finite", self.has_stress & ~np.isfinite(self.stress).all(axis=(1, 2))),
        ]
        atom_frames = self.frame_of_atom()
        for what, arr, need in (
            ("positions", self.positions, None),
            ("forces", self.forces, self.has_forces),
        ):
            bad_atom = ~np.isfinite(arr).all(axis=1)
            if need is not None:
                bad_atom &= need[atom_frames]
            if bad_atom.any():
                atom = int(np.argmax(bad_atom))
                i = int(atom_frames[atom])
                raise TeaAlignError(
                    f"{what} of atom {atom - int(self.offsets[i])} are not finite", **self.where(i)
                )
        with np.errstate(invalid="ignore"):
            far = np.abs(self.positions).max(axis=1, initial=0.0) > MAX_ABS_COORDINATE
        if far.any():
            atom = int(np.argmax(far))
            i = int(atom_frames[atom])
            raise TeaAlignError(
                f"atom {atom - int(self.offsets[i])} is at {self.positions[atom].tolist()} A, beyond "
                f"{MAX_ABS_COORDINATE:g} A (not a structure in Angstrom: check the units)",
                **self.where(i),
            )
        for what, bad in checks:
            if bad.any():
                raise TeaAlignError(what, **self.where(int(np.argmax(bad))))


def batch_from_frames(frames: Sequence[Frame], sources: list[SourceInfo]) -> FrameBatch:
    """Pack typed frames into a FrameBatch; each frame's ``source`` must name one of ``sources``."""
    names = {s.name: i for i, s in enumerate(sources)}
    n = np.array([f.n_atoms for f in frames], dtype=np.int64)
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    np.cumsum(n, out=offsets[1:])
    nan3 = np.full((3, 3), np.nan)

    def cat(arrs, shape):
        return np.concatenate(arrs) if arrs else np.zeros(shape)

    return FrameBatch(
        numbers=cat([f.numbers for f in frames], (0,)).astype(np.int64),
        positions=cat([f.positions for f in frames], (0, 3)),
        forces=cat(
            [f.forces if f.forces is not None else np.full((f.n_atoms, 3), np.nan) for f in frames],
            (0, 3),
        ),
        offsets=offsets,
        cell=np.array([f.cell for f in frames]).reshape(-1, 3, 3),
        pbc=np.array([f.pbc for f in frames], dtype=bool).reshape(-1, 3),
        energy=np.array([f.energy for f in frames], dtype=np.float64),
        energy_raw=np.array(
            [f.energy if f.energy_raw is None else f.energy_raw for f in frames], dtype=np.float64
        ),
        stress=np.array([f.stress if f.stress is not None else nan3 for f in frames]).reshape(
            -1, 3, 3
        ),
        has_forces=np.array([f.forces is not None for f in frames], dtype=bool),
        has_stress=np.array([f.stress is not None for f in frames], dtype=bool),
        source_id=np.array([names[f.source] for f in frames], dtype=np.int32),
        index=np.array([f.index for f in frames], dtype=np.int64),
        key=np.array([f.key for f in frames], dtype=object),
        sources=sources,
    )


def rebatch(frames: Iterable[Frame], source: SourceInfo, size: int = 4096) -> Iterator[FrameBatch]:
    """Group a stream of frames of one source into FrameBatches of at most ``size`` frames."""
    buf: list[Frame] = []
    for f in frames:
        buf.append(f)
        if len(buf) >= size:
            yield batch_from_frames(buf, [source])
            buf = []
    if buf:
        yield batch_from_frames(buf, [source])
