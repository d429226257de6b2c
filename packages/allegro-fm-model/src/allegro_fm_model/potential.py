"""The model side of the model -> MD boundary: ``AllegroPotential.compute``.

An MD rank holds local atoms [0, n_local) and ghost atoms [n_local, N) (periodic images or other
ranks' atoms, positions already unwrapped). It passes only edges i -> j whose centre i is local.
Allegro's energy is a sum of edge energies centred on each atom, so

    E_local = sum_{i < n_local} E_i        (no rank computes another rank's energy)

and its gradient with respect to every edge vector r_ij = x_j - x_i + shift_ij gives forces on
local and ghost atoms alike (the engine sends ghost forces back to their owners) and the virial
W = -sum_edges r_ij (x) dE/dr_ij (eV; ASE stress = -W / V). Units: Angstrom, eV, eV/Angstrom.

Per-atom virials (``per_atom_virial = True``): W_i = -sum_{edges i -> j} r_ij (x) dE/dr_ij, the strain derivative of
E_i (Allegro's E_i depends on the edges centred on i alone). They sum to W, are translation-invariant and local to
the rank that owns i; ASE's per-atom stress is -W_i / V.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tea_align.elements import type_indices


@dataclass(frozen=True)
class PotentialResult:
    """Output of one ``compute`` call: energy (eV) of local atoms, forces (N, 3) eV/A on all atoms
    given, virial (3, 3) eV (W = -sum r_ij (x) dE/dr_ij), per-atom energies (n_local,) eV."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray
    atomic_energies: np.ndarray
    #: (n_local, 3, 3) eV, W_i = -sum_{edges i -> j} r_ij (x) dE/dr_ij, when ``per_atom_virial`` is on; else None
    atomic_virials: np.ndarray | None = None
    #: (K, N, 3) eV/A, each committee member's forces (committee.CommitteePotential); None for one model
    member_forces: np.ndarray | None = None
    #: (K,) the committee's weights (sum 1); None for one model
    member_weights: np.ndarray | None = None


class AllegroPotential:
    """Wraps a nequip Allegro model (eager) behind the engine's Potential call.

    ``species`` are the model's type names; ``types`` passed to ``compute`` index into them.
    ``device`` is a torch device string (cpu, cuda, xpu); computation runs in the model's dtype and
    results come back as float64 numpy arrays. ``device_edges`` (default: True on any device but the CPU): an engine
    may call ``compute_from_candidates`` instead, so that the neighbour pairs stay on the device between list rebuilds
    and only positions go in and forces come out per step.
    """

    #: the level of theory of the energies (``provenance.py``; ``load_potential`` sets it from the file)
    level_of_theory: str = "unknown"
    #: True: ``compute`` also returns per-atom virials (module docstring)
    per_atom_virial: bool = False

    def __init__(
        self,
        model,
        species: Sequence[str],
        cutoff: float,
        device: str = "cpu",
        device_edges: bool | None = None,
    ):
        import torch  # lazy: torch takes seconds to import; only model paths need it

        self.device = torch.device(device)
        self.device_edges = (
            self.device.type != "cpu" if device_edges is None else bool(device_edges)
        )
        self._candidates = None  # (key, candidate pairs on the device, types on the device)
        self.model = model.to(self.device).eval()
        self.species = tuple(species)
        self.cutoff = float(cutoff)
        self.dtype = next(model.parameters()).dtype
        self._energy_model = model.model.func  # the energy graph inside nequip's ForceStressOutput

    def types_of(self, symbols: Sequence[str]) -> np.ndarray:
        """Type indices of element symbols; ValueError naming the first unknown element."""
        return type_indices(self.species, symbols)

    def compute(
        self,
        positions: np.ndarray,
        types: np.ndarray,
        edge_index: np.ndarray,
        n_local: int,
        edge_shifts: np.ndarray | None = None,
    ) -> PotentialResult:
        """Energy of the local atoms, forces on all atoms given and the virial (see module docstring).

        positions (N, 3) A; types (N,) ints; edge_index (2, E) with edge_index[0] < n_local;
        edge_shifts (E, 3) A added to x_j - x_i (periodic images without ghost copies), or None.
        """
        import torch  # lazy: torch takes seconds to import; only model paths need it

        ei = torch.as_tensor(np.ascontiguousarray(edge_index), dtype=torch.long, device=self.device)
        if ei.numel() and int(ei[0].max()) >= n_local:
            raise ValueError(
                "edge_index has an edge centred on a ghost atom; only local centres are allowed"
            )
        pos = torch.as_tensor(np.asarray(positions), dtype=self.dtype, device=self.device)
        types_t = torch.as_tensor(np.asarray(types), dtype=torch.long, device=self.device)
        return self._evaluate(pos, types_t, ei, n_local, edge_shifts)

    def compute_from_candidates(
        self,
        positions: np.ndarray,
        types: np.ndarray,
        candidates: np.ndarray,
        n_local: int,
        key: object,
    ) -> PotentialResult:
        """``compute`` with the edges chosen on this potential's device: ``candidates`` (2, E) are the pairs of a Verlet
        list (within cutoff + skin, centres local), sent to the device with ``types`` only when ``key`` changes (after a
        list rebuild); per call only the positions (N, 3) A go over, the pairs within ``cutoff`` are selected on the
        device, and the forces come back. Equal to ``compute`` on the host-filtered edges."""
        import torch  # lazy: torch takes seconds to import; only model paths need it

        if self._candidates is None or self._candidates[0] != key:
            cand = torch.as_tensor(
                np.ascontiguousarray(candidates), dtype=torch.long, device=self.device
            )
            if cand.numel() and int(cand[0].max()) >= n_local:
                raise ValueError(
                    "candidate pairs include one centred on a ghost atom; only local centres are allowed"
                )
            self._candidates = (
                key,
                cand,
                torch.as_tensor(np.asarray(types), dtype=torch.long, device=self.device),
            )
        _, cand, types_t = self._candidates
        pos = torch.as_tensor(np.asarray(positions), dtype=self.dtype, device=self.device)
        d = pos[cand[1]] - pos[cand[0]]
        ei = cand[:, (d * d).sum(dim=1) < self.cutoff**2]
        return self._evaluate(pos, types_t, ei, n_local, None)

    def _forward(self, pos, types_t, ei, n_local: int, edge_shifts):
        """The energy graph on device tensors: (edge vectors A with grad, the model's output dict, per-atom energies of
        the local atoms eV, their sum)."""
        import torch  # lazy: torch takes seconds to import; only model paths need it
        from nequip.data import AtomicDataDict as K  # lazy: nequip imports torch

        vec = pos[ei[1]] - pos[ei[0]]
        if edge_shifts is not None:
            vec = vec + torch.as_tensor(
                np.asarray(edge_shifts), dtype=self.dtype, device=self.device
            )
        vec = vec.detach().requires_grad_(True)
        data = {
            K.POSITIONS_KEY: pos,
            K.EDGE_INDEX_KEY: ei,
            K.ATOM_TYPE_KEY: types_t,
            K.EDGE_VECTORS_KEY: vec,
        }
        out = self._energy_model(data)
        atomic = out[K.PER_ATOM_ENERGY_KEY].view(-1)[:n_local]
        return vec, out, atomic, atomic.sum()

    def _result(self, vec, g, ei, n: int, n_local: int, atomic, energy) -> PotentialResult:
        """Forces on the n atoms, virial and (``per_atom_virial``) per-atom virials from the edge gradients g = dE/dr."""
        import torch  # lazy: torch takes seconds to import; only model paths need it

        if g is None:  # no edges
            g = torch.zeros_like(vec)
        forces = torch.zeros((n, 3), dtype=self.dtype, device=self.device)
        forces.index_add_(0, ei[0], g)  # r_ij = x_j - x_i: dE/dx_i = -g, F_i = +g
        forces.index_add_(0, ei[1], -g)
        virial = -(vec.detach().T @ g)
        per_atom = None
        if self.per_atom_virial:  # each edge's -r (x) dE/dr on its centre atom
            w = torch.zeros((n_local, 3, 3), dtype=self.dtype, device=self.device)
            w.index_add_(0, ei[0], -(vec.detach()[:, :, None] * g[:, None, :]))
            per_atom = w.double().cpu().numpy()
        return PotentialResult(
            energy=float(energy.detach()),
            forces=forces.detach().double().cpu().numpy(),
            virial=virial.detach().double().cpu().numpy(),
            atomic_energies=atomic.detach().double().cpu().numpy(),
            atomic_virials=per_atom,
        )

    def _evaluate(self, pos, types_t, ei, n_local: int, edge_shifts) -> PotentialResult:
        """The model on device tensors: positions, types, edge index (and optional shifts, A)."""
        import torch  # lazy: torch takes seconds to import; only model paths need it

        vec, _, atomic, energy = self._forward(pos, types_t, ei, n_local, edge_shifts)
        (g,) = torch.autograd.grad(energy, vec, allow_unused=True)
        return self._result(vec, g, ei, pos.shape[0], n_local, atomic, energy)
