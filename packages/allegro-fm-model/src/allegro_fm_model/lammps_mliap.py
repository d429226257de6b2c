"""The object inside an Allegro-FM LAMMPS ML-IAP file (``pair_style mliap unified FILE 0``).

nequip's ``NequIPLAMMPSMLIAPWrapper`` is written for LAMMPS's KOKKOS ML-IAP data (it reads ``eatoms`` back as an array
and hands pair forces over with ``update_pair_forces_gpu``), which a plain (non-KOKKOS) LAMMPS build does not offer:
there ``eatoms`` is write-only and only ``update_pair_forces`` exists. ``AllegroFMMLIAPWrapper`` keeps nequip's model
handling unchanged and, when LAMMPS hands it plain ML-IAP data, passes it through a small adapter that gives nequip's
code the calls it expects on host memory; KOKKOS data goes to nequip's code as it is. One file runs in both builds.
"""

from __future__ import annotations

import numpy as np
import torch
from nequip.integrations.lammps_mliap.lmp_mliap_wrapper import NequIPLAMMPSMLIAPWrapper


class _HostMLIAPData:
    """Plain ML-IAP data seen through the KOKKOS data's interface (host arrays, eV and eV/A)."""

    def __init__(self, data):
        self._data = data
        self.nlocal = int(
            getattr(data, "nlocal", data.nlistatoms)
        )  # older plain builds name it nlistatoms only
        self.eatoms = torch.zeros(
            data.nlistatoms, dtype=torch.float64
        )  # nequip copies per-atom energies in here
        self.energy = 0.0

    def __getattr__(self, name):  # rij, pair_i, pair_j, elems, ntotal, npairs, ...
        return getattr(self._data, name)

    def update_pair_forces_gpu(self, fij: torch.Tensor) -> None:
        """Pair forces (npairs, 3) eV/A: hand them to LAMMPS through the plain build's call."""
        self._data.update_pair_forces(
            np.ascontiguousarray(fij.detach().cpu().numpy(), dtype=np.float64)
        )

    def flush(self) -> None:
        """Write the per-atom and total energies (eV) into LAMMPS."""
        try:
            self._data.eatoms = np.ascontiguousarray(self.eatoms.numpy(), dtype=np.float64)
        except (
            ValueError
        ):  # "attempt to set NULL eatoms": LAMMPS asked for no per-atom energies this step
            pass
        self._data.energy = float(self.energy)


class AllegroFMMLIAPWrapper(NequIPLAMMPSMLIAPWrapper):
    """nequip's ML-IAP wrapper that also runs in a LAMMPS built without KOKKOS (CPU, MPI)."""

    def compute_forces(self, lmp_data):
        """Energies (eV) and pair forces (eV/A) of the atoms LAMMPS hands over, written back into LAMMPS."""
        if "kokkos" in type(lmp_data).__module__.lower():
            return super().compute_forces(lmp_data)
        host = _HostMLIAPData(lmp_data)
        if (
            host.nlocal == 0 or lmp_data.npairs <= 1
        ):  # nequip returns early: LAMMPS still needs zero energies
            host.flush()
            return None
        super().compute_forces(host)
        host.flush()
        return None


def to_any_lammps(wrapper: NequIPLAMMPSMLIAPWrapper) -> AllegroFMMLIAPWrapper:
    """The same wrapper (same model bytes and settings) as an ``AllegroFMMLIAPWrapper``."""
    wrapper.__class__ = AllegroFMMLIAPWrapper
    return wrapper
