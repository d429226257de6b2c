"""TorchSim (``torch-sim-atomistic``) interface of every model file we load: the shipped name, ``.nequip.zip``,
``.nequip.pt2`` and nequip 0.6 TorchScript files (``afm256_01_HL.pt``), one public class instead of a private nequip
call. It evaluates each system of a batched ``SimState`` through the same Potential call as allegro-fm-md and the ASE
calculator (``load_potential``: edges by ``edges.periodic_edges``), so the three agree to round-off.

Cost: systems are evaluated one after another (a Python loop over the batch, numpy edges); TorchSim's batching
saves its own integrator overhead, not model time. For many small systems on a GPU, nequip's own TorchSim
calculator batches the model call (our ``.nequip.zip`` files load there too).

    from torch_sim import initialize_state, integrate
    model = AllegroFMModel("allegro-fm-mini")
    out = model(initialize_state(list_of_atoms, model.device, model.dtype))  # energy [S], forces [N, 3], stress [S, 3, 3]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers
from torch_sim.models.interface import ModelInterface  # the optional [torchsim] extra
from torch_sim.state import SimState

from .edges import periodic_edges
from .loading import load_potential


class AllegroFMModel(ModelInterface):
    """A TorchSim model of an Allegro-FM model file or loaded potential.

    Args:
        model: a shipped model's name, a model file's path, or a loaded potential (``load_potential``).
        device: where the model runs (cpu, cuda, xpu); TorchSim's tensors are returned there too.
        dtype: dtype of the returned tensors (the model computes in its own precision).
        compute_stress: return ``stress`` (eV/A^3, ASE's sign: positive under tension) for periodic systems
            (zeros for a system that is not periodic along all three axes).
        compute_forces: return ``forces`` (eV/A); the Potential call computes them in any case.
    """

    def __init__(
        self,
        model: str | Path | object = "allegro-fm-mini",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        compute_stress: bool = True,
        compute_forces: bool = True,
    ):
        super().__init__()
        self._device = torch.device(device)
        self._dtype = dtype
        self._compute_stress = bool(compute_stress)
        self._compute_forces = bool(compute_forces)
        self._memory_scales_with = "n_atoms_x_density"  # a radial cutoff
        if isinstance(model, str | Path):
            model = load_potential(model, str(self._device))
        self.potential = model
        self.symbols = {atomic_numbers[e]: e for e in model.species}  # atomic number -> element

    def forward(self, state: SimState | dict, **kwargs) -> dict[str, torch.Tensor]:
        """Energy [n_systems] (eV), forces [n_atoms, 3] (eV/A) and stress [n_systems, 3, 3] (eV/A^3) of every system.

        Args:
            state: a ``SimState`` (or a dict with positions [N, 3] A, cell [S, 3, 3] A as TorchSim's column vectors,
                pbc, atomic_numbers [N], system_idx [N]).

        Returns:
            ``energy``, ``forces`` (when compute_forces), ``stress`` (when compute_stress), on the model's device and
            dtype. ValueError naming the atom when an element is not one of the model's.
        """
        s = state if isinstance(state, SimState) else SimState(**state)
        pos = s.positions.detach().cpu().numpy().astype(np.float64)
        cells = s.row_vector_cell.detach().cpu().numpy().astype(np.float64)
        numbers = s.atomic_numbers.detach().cpu().numpy()
        system = s.system_idx.detach().cpu().numpy()
        pbc = np.broadcast_to(
            np.asarray(s.pbc.detach().cpu().numpy() if torch.is_tensor(s.pbc) else s.pbc, bool),
            (3,),
        )
        n_sys = int(s.n_systems)
        energy, forces, stress = np.zeros(n_sys), np.zeros_like(pos), np.zeros((n_sys, 3, 3))
        for k in range(n_sys):
            idx = np.flatnonzero(system == k)
            p, cell = pos[idx], cells[k]
            unknown = [i for i in idx if numbers[i] not in self.symbols]
            if unknown:
                raise ValueError(
                    f"atom {int(unknown[0])} (system {k}): element Z={int(numbers[unknown[0]])} is not known to "
                    f"this model (it knows {sorted(self.symbols.values())})"
                )
            types = self.potential.types_of([self.symbols[int(z)] for z in numbers[idx]])
            ei, shifts = periodic_edges(p, cell, pbc, self.potential.cutoff)
            r = self.potential.compute(p, types, ei, len(idx), shifts)
            energy[k], forces[idx] = r.energy, r.forces
            if pbc.all():
                stress[k] = -np.asarray(r.virial) / abs(np.linalg.det(cell))
        out = {"energy": torch.as_tensor(energy, device=self._device, dtype=self._dtype)}
        if self._compute_forces:
            out["forces"] = torch.as_tensor(forces, device=self._device, dtype=self._dtype)
        if self._compute_stress:
            out["stress"] = torch.as_tensor(stress, device=self._device, dtype=self._dtype)
        return out
