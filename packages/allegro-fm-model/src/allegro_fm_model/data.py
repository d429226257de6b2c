"""A nequip dataset over tea-align aligned-dataset files (schema v1): no conversion step.

Frames are read through ``tea_align.open_dataset`` (the public reader; the file is opened lazily in
each DataLoader worker). A file of at most ``CACHE_ATOMS`` atoms is read once, in one streaming
pass, and kept in memory as tensors: one HDF5 read per frame per epoch cost ~20 % of a CPU training
step (py-spy, Allegro-FM-mini v2 run); larger files are read per frame. Energies are the aligned
total energies (eV), forces eV/A, stress eV/A^3 with ASE's sign, which is nequip's convention;
missing stress is NaN (ignored by losses and metrics with ``ignore_nan``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tea_align
from ase.data import atomic_numbers
from nequip.data import AtomicDataDict
from nequip.data.dataset import AtomicDataset
from tea_align import TeaAlignError
from tea_align.elements import MAX_Z

#: Files of at most this many atoms are held in memory (positions, forces, types: 56 bytes per atom in float64, plus
#: the per-frame tensors).
CACHE_ATOMS = 5_000_000


def reference_energies(path: str | Path) -> dict[str, float]:
    """Per-element energies (eV/atom) of the Alignment embedded in an aligned dataset (empty if none)."""
    with tea_align.open_dataset(path) as ds:
        al = ds.alignment
    return dict(al.reference_energies) if al is not None else {}


class TeaAlignDataset(AtomicDataset):
    """nequip ``AtomicDataset`` of a schema-v1 file; ``indices`` optionally selects a subset of frames.

    ``type_names`` are the model's elements: a frame with another element is an error naming the
    file and frame. ``cache``: hold the selected frames in memory (None: when the file has at most
    ``CACHE_ATOMS`` atoms); the file is read in one streaming pass on first use.
    """

    def __init__(
        self,
        file_name: str,
        type_names: Sequence[str],
        indices: Sequence[int] | None = None,
        transforms: list[Callable] = [],  # noqa: B006 (nequip's signature)
        cache: bool | None = None,
    ):
        super().__init__(transforms=transforms)
        self.file_name = str(file_name)
        self.type_names = list(type_names)
        with tea_align.open_dataset(self.file_name) as ds:  # validates schema version and units now
            self._n = len(ds)
            self.indices = (
                np.arange(self._n) if indices is None else np.asarray(indices, dtype=np.int64)
            )
            self.cache = (
                ds.n_atoms <= CACHE_ATOMS if cache is None else bool(cache)
            )  # the file's atoms bound the selection's
        self._ds = None
        self._cached: dict[int, AtomicDataDict.Type] | None = None
        self._z_to_type = np.full(MAX_Z + 1, -1, dtype=np.int64)
        for t, sym in enumerate(self.type_names):
            self._z_to_type[atomic_numbers[sym]] = t

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_ds"] = None  # h5py handles do not cross process boundaries
        d["_cached"] = None  # each worker reads its own copy
        return d

    def _frame_to_data(self, frame, i: int) -> AtomicDataDict.Type:
        import torch  # lazy: torch takes seconds to import; only model paths need it

        types = self._z_to_type[frame.numbers]
        if (types < 0).any():
            bad = frame.symbols[int(np.argmax(types < 0))]
            raise TeaAlignError(
                f"element {bad} is not among the model's {len(self.type_names)} types",
                path=self.file_name,
                frame=i,
                key=frame.key,
            )
        dt = torch.get_default_dtype()
        d = {
            AtomicDataDict.POSITIONS_KEY: torch.tensor(frame.positions, dtype=dt),
            AtomicDataDict.ATOM_TYPE_KEY: torch.as_tensor(types),
            AtomicDataDict.TOTAL_ENERGY_KEY: torch.tensor([[frame.energy]], dtype=dt),
            AtomicDataDict.PBC_KEY: torch.tensor(frame.pbc).view(1, 3),
            AtomicDataDict.CELL_KEY: torch.tensor(frame.cell, dtype=dt).view(1, 3, 3),
            AtomicDataDict.NUM_NODES_KEY: torch.tensor([frame.n_atoms]),
        }
        if frame.forces is not None:
            d[AtomicDataDict.FORCE_KEY] = torch.tensor(frame.forces, dtype=dt)
        stress = frame.stress if frame.stress is not None else np.full((3, 3), np.nan)
        d[AtomicDataDict.STRESS_KEY] = torch.tensor(stress, dtype=dt).view(1, 3, 3)
        return d

    def _fill_cache(self) -> dict[int, AtomicDataDict.Type]:
        wanted = set(self.indices.tolist())
        with tea_align.open_dataset(
            self.file_name
        ) as ds:  # iteration streams the file in blocks of frames
            return {i: self._frame_to_data(f, i) for i, f in enumerate(ds) if i in wanted}

    def _get_data_list(self, indices) -> list[AtomicDataDict.Type]:
        idx = np.atleast_1d(self.indices[indices])
        if self.cache:
            if self._cached is None:
                self._cached = self._fill_cache()
            return [
                {k: v.clone() for k, v in self._cached[int(i)].items()} for i in idx
            ]  # the model may flag inputs for grad
        if self._ds is None:
            self._ds = tea_align.open_dataset(self.file_name)
        return [self._frame_to_data(self._ds[int(i)], int(i)) for i in idx]


class MixedDataset(AtomicDataset):
    """Frames of several schema-v1 files as one nequip dataset (nequip trains on one training dataset): ``parts`` is a
    list of ``{"file_name": ..., "indices": [...]}`` (indices may repeat: a repeated frame weighs more), read as
    ``TeaAlignDataset``s. Used for fine-tuning with replay (the new data and the replay set, ``training.py``)."""

    def __init__(
        self,
        parts: Sequence[dict],
        type_names: Sequence[str],
        transforms: list[Callable] = [],  # noqa: B006 (nequip's signature)
    ):
        super().__init__(transforms=transforms)
        self.parts = [TeaAlignDataset(p["file_name"], type_names, p.get("indices")) for p in parts]
        self._bounds = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._bounds[-1])

    def _get_data_list(self, indices) -> list[AtomicDataDict.Type]:
        out = []
        for i in np.atleast_1d(np.arange(len(self))[indices]):
            k = int(np.searchsorted(self._bounds, i, side="right")) - 1
            out += self.parts[k]._get_data_list(int(i - self._bounds[k]))
        return out
