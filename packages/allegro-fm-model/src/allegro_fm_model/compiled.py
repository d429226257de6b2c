"""Compiled deployment: an AOTInductor ``.nequip.pt2`` file made through nequip's export, and its Potential.

The file is compiled for nequip-allegro's ``pair_allegro`` target: inputs are positions, edge index and atom
types (periodic images are explicit ghost atoms, no cell), outputs per-atom energies, forces on every atom
given and the virial. That is the engine's Potential call (see ``potential.py``), so the same local/ghost
split works unchanged. Edges given with a periodic shift are turned into ghost copies before the call and
their forces folded back onto the original atoms.

TorchScript (``.nequip.pth``) is not offered: nequip refuses it on torch >= 2.10. A ``.nequip.pt2`` runs
only on the device type it was compiled for (nequip checks this when loading).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms
from tea_align.elements import type_indices

from .edges import periodic_edges
from .model import ensure_nequip_state
from .potential import PotentialResult
from .provenance import LEVEL_KEY, UNKNOWN_LEVEL

log = logging.getLogger(__name__)

#: nequip-allegro's compile target whose inputs/outputs are the engine's Potential call.
TARGET = "pair_allegro"
#: metadata key naming the dtype the file's positions input was traced with. AOTInductor does not check input dtypes
#: (float64 positions into a float32-traced file give NaN): files of allegro-fm-model < 0.1.0.dev1 took the model's
#: dtype and carry no key (found by a probe at load), nequip-compile's and ours since take float64.
POSITIONS_DTYPE_KEY = "afm_positions_dtype"


def example_cell(species):
    """A rattled periodic 3x3x3 simple-cubic cell (2.4 A spacing) of up to four of ``species``: the structure
    compiled files are traced on and checked with (sizes are dynamic in the file, so its size does not matter)."""
    sp = list(species)[: min(4, len(species))]
    g = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) * 2.4
    a = Atoms([sp[i % len(sp)] for i in range(len(g))], positions=g, cell=[7.2] * 3, pbc=True)
    a.rattle(0.1, seed=1)
    return a


def compile_graph_model(
    model,
    out: str | Path,
    device: str = "cpu",
    example=None,
    kernel_threads: int | None = 1,
    _positions_dtype=None,
    level_of_theory: str = UNKNOWN_LEVEL,
    extra_metadata: dict[str, str] | None = None,
    aten_scatter: bool = False,
) -> Path:
    """AOTInductor-compile an in-memory nequip Allegro GraphModel (``build_model`` or a loaded checkpoint) to
    ``out`` (``.nequip.pt2``, written atomically) for ``device``; nequip's export checks that the compiled file
    reproduces the eager model on ``example`` (ASE Atoms; default ``example_cell``). A C++ build: ~30 s for the mini model here.
    The file takes float64 positions and returns float64 energies and forces (nequip-compile's convention, what LAMMPS
    pair_allegro feeds); ``level_of_theory`` is recorded in its metadata (``provenance.py``);
    ``_positions_dtype`` (tests only) writes a file as allegro-fm-model < 0.1.0.dev1 did; ``extra_metadata`` (strings)
    is stored as well (a ported nequip 0.6 file's provenance, ``export.legacy_provenance``). ``aten_scatter``: compile
    with torch's deterministic mode on, so that scatter-adds (index_add) stay ATen's kernel instead of Inductor's
    generated loop (on the FM256-size port, 540 atoms, 1 thread: the scatters 0.6 s -> 0.05 s of a 3.6 s call) and sum
    in a fixed order.

    ``kernel_threads`` (CPU): the OpenMP threads of the generated C++ kernels, fixed at compile time (Inductor's
    ``cpp.threads``; None: torch's thread count when compiling). Default 1: an Allegro step is hundreds of small
    kernels, and with 2 threads each opens a parallel region whose barriers cost more than the work (measured here,
    shipped model, 352 atoms: compiled with 2 kernel threads 870 ms/step at 2 threads vs 151-207 ms with serial kernels;
    eager 300-340 ms); matrix products still use torch's threads (benchmarks/bench_force_eval.py)."""
    import allegro._compile  # noqa: F401  (registers the pair_allegro target)
    import torch  # lazy: torch takes seconds to import; only model paths need it
    from nequip.data import AtomicDataDict as K  # lazy: nequip imports torch
    from nequip.scripts._compile_utils import COMPILE_TARGET_DICT  # lazy: nequip imports torch
    from nequip.utils.aot import aot_export_model  # lazy: nequip imports torch
    from nequip.utils.aoti_metadata import (
        NEQUIP_AOTI_INPUTS_KEY,
        NEQUIP_AOTI_OUTPUTS_KEY,
        serialize_aoti_keys,
    )  # lazy: nequip imports torch
    from nequip.utils.global_state import get_latest_global_state  # lazy: nequip imports torch

    out = Path(out)
    if not out.name.endswith(".nequip.pt2"):
        raise ValueError(f"{out}: a compiled model file must end in .nequip.pt2")
    ensure_nequip_state()
    species = str(model.metadata["type_names"]).split()
    cutoff = float(model.metadata["r_max"])
    atoms = example if example is not None else example_cell(species)
    lut = {s: i for i, s in enumerate(species)}
    ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, cutoff)
    if ei.shape[1] == 0:
        raise ValueError("the example structure has no edges within the cutoff")
    pos, typ, ei, _ = _with_ghosts(
        atoms.positions, np.array([lut[s] for s in atoms.get_chemical_symbols()]), ei, sh
    )
    # positions in float64 whatever the model's dtype: nequip's convention (its global dtype; the model casts edge
    # lengths to model_dtype and returns float64 energies and forces), which LAMMPS pair_allegro feeds a .nequip.pt2
    pdtype = _positions_dtype or torch.float64
    data = {
        K.POSITIONS_KEY: torch.as_tensor(pos, dtype=pdtype, device=device),
        K.EDGE_INDEX_KEY: torch.as_tensor(ei, dtype=torch.long, device=device),
        K.ATOM_TYPE_KEY: torch.as_tensor(typ, dtype=torch.long, device=device),
    }
    tdict = COMPILE_TARGET_DICT[TARGET]
    dims = {
        "graph": torch.export.Dim.STATIC,
        "node": torch.export.Dim("num_nodes", min=2),
        "edge": torch.export.Dim("num_edges", min=2),
    }
    metadata = dict(model.metadata)
    metadata.update(get_latest_global_state(only_metadata_related=True))
    metadata = {k: str(int(v)) if isinstance(v, bool) else str(v) for k, v in metadata.items()}
    metadata[NEQUIP_AOTI_INPUTS_KEY] = serialize_aoti_keys(tdict["input"])
    metadata[NEQUIP_AOTI_OUTPUTS_KEY] = serialize_aoti_keys(tdict["output"])
    if _positions_dtype is None:
        metadata[POSITIONS_DTYPE_KEY] = "float64"
    metadata[LEVEL_KEY] = level_of_theory or UNKNOWN_LEVEL
    metadata.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".compile-", suffix=".nequip.pt2")
    os.close(fd)
    os.unlink(tmp)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        if aten_scatter:
            torch.use_deterministic_algorithms(True)
        aot_export_model(
            model=model.to(device).eval(),
            device=device,
            input_fields=tdict["input"],
            output_fields=tdict["output"],
            data=data,
            batch_map=dims,
            output_path=tmp,
            inductor_configs={
                "aot_inductor.metadata": metadata,
                **(
                    {"cpp.threads": int(kernel_threads)}
                    if kernel_threads and str(device).startswith("cpu")
                    else {}
                ),
            },
        )
        os.replace(tmp, out)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _with_ghosts(positions, types, edge_index, shifts):
    """Periodic images as explicit ghost atoms: one ghost per distinct (neighbour, shift) pair, at x_j + shift, and
    the edges with a non-zero shift pointed at it. Returns positions, types, edge index and, per returned atom,
    the index of the atom it copies."""
    positions, edge_index = np.asarray(positions, dtype=np.float64), np.array(edge_index)
    n = len(positions)
    if shifts is None:
        return positions, np.asarray(types), edge_index, np.arange(n)
    shifts = np.asarray(shifts, dtype=np.float64)
    moved = np.abs(shifts).sum(1) != 0
    j, sh = edge_index[1, moved], shifts[moved]
    # the same image of j is reached by several edges: one ghost each (shifts are lattice sums: equal ones round equally)
    key = np.concatenate([j[:, None].astype(np.float64), np.round(sh, 6)], axis=1)
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    edge_index[1, moved] = n + inv.reshape(-1)
    jg = j[first]
    return (
        np.concatenate([positions, positions[jg] + sh[first]]),
        np.concatenate([np.asarray(types), np.asarray(types)[jg]]),
        edge_index,
        np.concatenate([np.arange(n), jg]),
    )


def _pad_far_pair(positions, types, edge_index, copy_of, cutoff: float):
    """Two extra atoms of type 0, 2 x ``cutoff`` apart and far from all others, joined by two edges (beyond r_max: they
    contribute nothing): for models that cannot take an empty edge list. Their ``copy_of`` is -1 (forces dropped)."""
    far = (np.abs(positions).max() if len(positions) else 0.0) + 3 * cutoff
    pos = np.concatenate([positions, [[far, far, far], [far + 2 * cutoff, far, far]]])
    m = len(pos)
    ei = np.concatenate(
        [np.asarray(edge_index).reshape(2, -1), [[m - 2, m - 1], [m - 1, m - 2]]], axis=1
    )
    return pos, np.concatenate([np.asarray(types), [0, 0]]), ei, np.concatenate([copy_of, [-1, -1]])


def ghost_graph(
    positions, types, edge_index, n_local: int, edge_shifts, cutoff: float, min_edges: int = 1
):
    """The graph a ghost-atom model call takes (compiled and legacy files): edges checked to be centred on local
    atoms, periodic shifts turned into ghost copies, a far pair added when there are fewer than ``min_edges`` edges.
    Returns positions, types, edge index, and per atom the index of the atom it copies (-1: padding)."""
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    if edge_index.size and int(edge_index[0].max()) >= n_local:
        raise ValueError(
            "edge_index has an edge centred on a ghost atom; only local centres are allowed"
        )
    pos, typ, ei, copy_of = _with_ghosts(positions, types, edge_index, edge_shifts)
    if ei.shape[1] < min_edges:
        pos, typ, ei, copy_of = _pad_far_pair(pos, typ, ei, copy_of, cutoff)
    return pos, typ, ei, copy_of


def edge_copy_graph(positions, types, edge_index, n_local: int, edge_shifts):
    """The graph of a per-atom-virial call to a file that returns forces only (compiled and nequip 0.6 files): every
    edge i -> j points at its own ghost copy of j (at x_j + shift), so the force on copy e is -dE/dr_e exactly and
    W_i = sum_{e centred on i} r_e (x) F_copy_e. Forces on the atoms given are those of the ordinary call (each copy's
    force folded onto the atom it copies). Costs one model call on N + E nodes instead of N (node work only: the edges
    are the same). Returns positions, types, edge index, copy_of (per atom, the atom it copies) and edge vectors (A)."""
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    if ei.size and int(ei[0].max()) >= n_local:
        raise ValueError(
            "edge_index has an edge centred on a ghost atom; only local centres are allowed"
        )
    positions = np.asarray(positions, dtype=np.float64)
    n, e = len(positions), ei.shape[1]
    copies = positions[ei[1]] + (
        0.0 if edge_shifts is None else np.asarray(edge_shifts, np.float64)
    )
    vec = copies - positions[ei[0]]
    return (
        np.concatenate([positions, copies]),
        np.concatenate([np.asarray(types), np.asarray(types)[ei[1]]]),
        np.stack([ei[0], n + np.arange(e)]),
        np.concatenate([np.arange(n), ei[1]]),
        vec,
    )


def per_atom_virials(vec: np.ndarray, centres: np.ndarray, f_copies: np.ndarray, n_local: int):
    """W_i = sum_{e centred on i} r_e (x) F_copy_e (eV) of an ``edge_copy_graph`` call: (n_local, 3, 3)."""
    w = np.zeros((n_local, 3, 3))
    np.add.at(w, centres, vec[:, :, None] * f_copies[:, None, :])
    return w


def graph_tensors(pos, ei, typ, keys: tuple[str, str, str], dtype, device) -> dict:
    """The model call's inputs under ``keys`` (positions, edge index, types): positions (A) in ``dtype``, indices as
    long, on ``device``, each dense and row-major (compiled kernels assume it: a strided view gives wrong indices)."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    return {
        keys[0]: torch.as_tensor(pos, dtype=dtype, device=device).contiguous(),
        keys[1]: torch.as_tensor(ei, dtype=torch.long, device=device).contiguous(),
        keys[2]: torch.as_tensor(np.asarray(typ), dtype=torch.long, device=device).contiguous(),
    }


def fold_copies(f_all: np.ndarray, copy_of: np.ndarray, n: int) -> np.ndarray:
    """Forces (n, 3) on the atoms given: each ghost copy's force added to the atom it copies; padding dropped."""
    forces = np.zeros((n, 3))
    real = copy_of >= 0
    np.add.at(forces, copy_of[real], f_all[real])
    return forces


class CompiledAllegroPotential:
    """A ``.nequip.pt2`` file (``compile_graph_model``) behind the engine's Potential call; same ``compute``
    signature and results as ``AllegroPotential`` (eV, eV/A, virial eV). With ``per_atom_virial`` on, the call runs on
    ``edge_copy_graph`` (one ghost per edge) and returns per-atom virials too."""

    #: True: ``compute`` also returns per-atom virials (eV), through ``edge_copy_graph``
    per_atom_virial: bool = False

    def __init__(self, path: str | Path, device: str = "cpu"):
        import allegro._compile  # noqa: F401  (registers the pair_allegro target)
        import torch  # lazy: torch takes seconds to import; only model paths need it
        from nequip.model.inference_models.compiled import (
            load_compiled_model,
        )  # lazy: nequip imports torch

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: compiled model file not found")
        try:
            self.model, meta = load_compiled_model(str(path), device)
        except RuntimeError:
            raise
        except Exception as exc:
            raise ValueError(
                f"{path}: not a readable compiled model ({type(exc).__name__}: {exc})"
            ) from exc
        inputs = str(meta.get("nequip_aoti_inputs", "")).split()
        if "pos" not in inputs or "cell" in inputs:
            raise ValueError(
                f"{path}: compiled for another target (inputs {inputs!r}); recompile with allegro-fm export --compiled"
            )
        self.path = path
        self.device = torch.device(device)
        self.species = tuple(meta["type_names"])
        self.cutoff = float(meta["r_max"])
        self.level_of_theory = str(meta.get(LEVEL_KEY) or UNKNOWN_LEVEL)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[str(meta["model_dtype"])]
        key = meta.get(POSITIONS_DTYPE_KEY)
        self.positions_dtype = (
            {"float32": torch.float32, "float64": torch.float64}[key]
            if key
            else self._probe_positions_dtype()
        )
        if self.positions_dtype != torch.float64:
            log.warning(
                "%s: compiled by an older allegro-fm-model (float32 positions input): it runs here, but LAMMPS "
                "pair_allegro gives it float64 positions and would get NaN; recompile it with allegro-fm export "
                "--compiled",
                path,
            )

    def _probe_positions_dtype(self):
        """The positions dtype of a file without ``POSITIONS_DTYPE_KEY``: float64 (nequip's convention) if a float64
        two-atom graph gives float64 forces, else the model's dtype (older allegro-fm files). Safe for both: a float64
        buffer is larger than the float32 one the older files read."""
        import torch  # lazy: torch takes seconds to import; only model paths need it
        from nequip.data import AtomicDataDict as K  # lazy: nequip imports torch

        d = 0.6 * self.cutoff
        data = {
            K.POSITIONS_KEY: torch.tensor(
                [[0.0, 0.0, 0.0], [d, 0.0, 0.0]], dtype=torch.float64, device=self.device
            ),
            K.EDGE_INDEX_KEY: torch.tensor([[0, 1], [1, 0]], dtype=torch.long, device=self.device),
            K.ATOM_TYPE_KEY: torch.zeros(2, dtype=torch.long, device=self.device),
        }
        forces = self.model(data)[K.FORCE_KEY]
        return (
            torch.float64
            if forces.dtype == torch.float64 and bool(torch.isfinite(forces).all())
            else self.dtype
        )

    def types_of(self, symbols) -> np.ndarray:
        """Type indices of element symbols; ValueError naming the first unknown element."""
        return type_indices(self.species, symbols)

    def compute(
        self, positions, types, edge_index, n_local: int, edge_shifts=None
    ) -> PotentialResult:
        """As ``AllegroPotential.compute``: energy (eV) of the local atoms, forces (eV/A) on all atoms given, virial (eV)."""
        from nequip.data import AtomicDataDict as K  # lazy: nequip imports torch

        n_edges = np.asarray(edge_index).reshape(2, -1).shape[1]
        per_edge = self.per_atom_virial
        if per_edge:
            pos, typ, ei, copy_of, vec = edge_copy_graph(
                positions, types, edge_index, n_local, edge_shifts
            )
            if n_edges < 2:  # the file cannot take fewer than two edges
                pos, typ, ei, copy_of = _pad_far_pair(pos, typ, ei, copy_of, self.cutoff)
        else:
            pos, typ, ei, copy_of = ghost_graph(
                positions, types, edge_index, n_local, edge_shifts, self.cutoff, min_edges=2
            )
        data = graph_tensors(
            pos,
            ei,
            typ,
            (K.POSITIONS_KEY, K.EDGE_INDEX_KEY, K.ATOM_TYPE_KEY),
            self.positions_dtype,
            self.device,
        )
        o = self.model(data)
        atomic = o[K.PER_ATOM_ENERGY_KEY].detach().view(-1).double().cpu().numpy()[:n_local]
        f_all = o[K.FORCE_KEY].detach().double().cpu().numpy()
        forces = fold_copies(f_all, copy_of, len(positions))
        virial = o[K.VIRIAL_KEY].detach().double().cpu().numpy().reshape(3, 3)
        per_atom = None
        if self.per_atom_virial:
            n = len(positions)
            per_atom = per_atom_virials(vec, ei[0, :n_edges], f_all[n : n + n_edges], n_local)
        return PotentialResult(
            energy=float(atomic.sum()),
            forces=forces,
            virial=virial,
            atomic_energies=atomic,
            atomic_virials=per_atom,
        )
