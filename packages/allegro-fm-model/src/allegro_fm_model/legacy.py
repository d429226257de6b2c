"""Legacy deployed models: TorchScript files made by ``nequip-deploy build`` with nequip 0.6.x / Allegro 0.3.0.

The published Allegro-FM weights (``afm256_01_HL.pt``, ``afm512_01_HL.pt``, the files RXMD-NN loads) are such
files; nequip >= 0.7 cannot read them. They need no nequip at all to run: the file holds the TorchScript code and
weights, and ``nequip-deploy`` stored its metadata as extra files of the archive (``r_max``, ``type_names``,
``n_species``, ``model_dtype``, ``default_dtype``, versions, the training ``config``...).

The call is the one ``pair_allegro`` (pair_nequip_allegro v0.6) makes: a dict of ``pos`` (all atoms, local and
ghost, unwrapped), ``edge_index`` (edges centred on local atoms only) and ``atom_types``; the model returns
``atomic_energy`` (N, 1) and ``forces`` (N, 3) = -dE_all/dx. Allegro puts each edge's energy on its centre atom,
so a ghost atom (no edge centred on it) carries only its per-species shift, a constant: the forces are those of
the local energy, and only the local atomic energies are summed (the shifts of ghosts never enter the energy).
Periodic shifts become explicit ghost copies (as for the compiled file). The virial is W = sum_i x_i (x) F_i over
all atoms given, which equals -sum_edges r_ij (x) dE/dr_ij because the local energy depends on differences only.
Units: eV, Angstrom (the published files' units; nequip stores none).
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from pathlib import Path

import numpy as np
from tea_align.elements import type_indices

from .compiled import edge_copy_graph, fold_copies, ghost_graph, graph_tensors, per_atom_virials
from .potential import PotentialResult
from .provenance import LEVEL_KEY, UNKNOWN_LEVEL

log = logging.getLogger(__name__)

#: metadata keys nequip-deploy 0.6.x writes (nequip/scripts/deploy.py), plus Allegro's per-edge-type cutoff and the level
#: of theory that fine-tuning here records (provenance.py)
METADATA_KEYS = (
    "config",
    "nequip_version",
    "torch_version",
    "e3nn_version",
    "code_commits",
    "r_max",
    "n_species",
    "type_names",
    "_jit_bailout_depth",
    "_jit_fusion_strategy",
    "allow_tf32",
    "default_dtype",
    "model_dtype",
    "per_edge_type_cutoff",
    LEVEL_KEY,
)

_DTYPES = {"float32": "float32", "float64": "float64"}


class LegacyModelError(ValueError):
    """A file that is not a readable nequip 0.6.x deployed model (the message names the file and what was expected)."""


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def read_legacy_metadata(path: str | Path) -> dict[str, str]:
    """The metadata nequip-deploy stored in a TorchScript file (strings; "" for keys it did not write), without
    loading the model. Raises ``LegacyModelError`` naming the file if it is not a TorchScript archive or holds no
    nequip metadata, and if it was written by nequip >= 0.7 (a different format)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found")
    if not zipfile.is_zipfile(path):
        raise LegacyModelError(
            f"{path}: not a TorchScript archive; expected a model deployed with nequip-deploy build "
            "(nequip 0.6.x), a .ckpt, .nequip.zip or .nequip.pt2"
        )
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        extra = {n.split("/extra/", 1)[1]: n for n in names if "/extra/" in n}
        if not any(
            "/code/__torch__" in n for n in names
        ):  # TorchScript archives hold their code; torch.save ones do not
            hint = (
                " (a nequip 0.6 training file such as best_model.pth? deploy it first: nequip-deploy build)"
                if any(n.endswith("data.pkl") for n in names)
                else ""
            )
            raise LegacyModelError(
                f"{path}: a torch archive but not a TorchScript model{hint}; expected a model deployed "
                "with nequip-deploy build (nequip 0.6.x)"
            )
        meta = {
            k: zf.read(extra[k]).decode("utf-8", "replace") if k in extra else ""
            for k in METADATA_KEYS
        }
    if not meta["nequip_version"]:
        raise LegacyModelError(
            f"{path}: a TorchScript model without nequip metadata (no extra/nequip_version); expected a "
            "model deployed with nequip-deploy build (nequip 0.6.x)"
        )
    if _version_tuple(meta["nequip_version"]) >= (0, 7):
        raise LegacyModelError(
            f"{path}: a TorchScript file of nequip {meta['nequip_version']}; only nequip 0.6.x deployed "
            "models are read as TorchScript: compile or package the model with nequip >= 0.7 "
            "(.nequip.pt2 / .nequip.zip)"
        )
    missing = [k for k in ("r_max", "type_names") if not meta[k]]
    if missing:
        raise LegacyModelError(
            f"{path}: nequip {meta['nequip_version']} deployed model without {', '.join(missing)} metadata"
        )
    return meta


def is_torchscript_archive(path: str | Path) -> bool:
    """True when ``path`` is a TorchScript archive (a zip holding ``code/__torch__``), whatever wrote it."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/__torch__" in n for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _set_jit_options(meta: dict[str, str], device: str) -> None:
    """The TorchScript settings nequip 0.6.x applies when it loads a deployed model (fusion strategy, TF32), and on
    the CPU TorchScript's simple graph executor instead of the profiling one: in MD the edge count changes every
    step, the profiling executor re-specialises the graph until its bailout depth is spent, and the CPU wheel has no
    fuser for it to feed (benchmarks/bench_legacy.py with and without --profiling-executor: 270 atoms 3595 vs 2864
    atom-steps/s; 960 atoms within noise).
    On GPUs the profiling executor (which feeds the fuser) is kept. The executor is a process-wide setting; no other
    model kind here runs through TorchScript."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    torch._C._jit_set_profiling_executor(torch.device(device).type != "cpu")

    strategy = meta.get("_jit_fusion_strategy", "")
    if strategy:
        pairs = [item.split(",") for item in strategy.split(";") if item]
        try:
            torch.jit.set_fusion_strategy([(kind, int(depth)) for kind, depth in pairs])
        except (ValueError, RuntimeError) as exc:  # a malformed value only costs speed
            log.warning("ignoring the file's _jit_fusion_strategy %r (%s)", strategy, exc)
    if meta.get("allow_tf32", "") in ("0", "1") and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = bool(int(meta["allow_tf32"]))
        torch.backends.cudnn.allow_tf32 = bool(int(meta["allow_tf32"]))


def load_legacy_module(path: str | Path, device: str = "cpu", freeze: bool = True):
    """(TorchScript module, metadata) of a nequip 0.6.x deployed model on ``device``; ``freeze`` inlines the
    weights for speed (as pair_allegro does), ``freeze=False`` keeps them as parameters (fine-tuning)."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    path = Path(path)
    meta = read_legacy_metadata(path)
    with (
        warnings.catch_warnings()
    ):  # torch >= 2.10 marks TorchScript deprecated; these files exist only as TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.load(str(path), map_location=device)
        except (
            Exception
        ) as exc:  # TorchScript deserialisation errors (damaged archive, unknown ops)
            raise LegacyModelError(
                f"{path}: TorchScript could not load this nequip {meta['nequip_version']} model "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]})"
            ) from exc
        module.eval()
        if freeze and hasattr(module, "training"):
            module = torch.jit.freeze(module)
        _set_jit_options(meta, device)
    return module, meta


class LegacyAllegroPotential:
    """A nequip 0.6.x / Allegro 0.3.0 deployed TorchScript model behind the engine's Potential call (same
    ``compute`` signature and results as ``AllegroPotential``: eV, eV/A, virial eV). With ``per_atom_virial`` on, the
    call runs on ``compiled.edge_copy_graph`` (one ghost per edge) and returns per-atom virials too."""

    #: True: ``compute`` also returns per-atom virials (eV), through ``edge_copy_graph``
    per_atom_virial: bool = False

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch  # lazy: torch takes seconds to import; only model paths need it

        self.path = Path(path)
        self.device = torch.device(device)
        self.model, self.metadata = load_legacy_module(self.path, device)
        self.species = tuple(self.metadata["type_names"].split())
        n_species = self.metadata["n_species"]
        if n_species and int(n_species) != len(self.species):
            raise LegacyModelError(
                f"{self.path}: n_species = {n_species} but type_names lists {len(self.species)} types"
            )
        self.cutoff = float(self.metadata["r_max"])
        # inputs go in the default dtype; nequip 0.6.1 casts to model_dtype inside (files before 0.6.1: float32 only)
        default = self.metadata["default_dtype"] or "float32"
        self.dtype = getattr(torch, _DTYPES.get(default, "float32"))
        self.model_dtype = self.metadata["model_dtype"] or default
        self.level_of_theory = self.metadata[LEVEL_KEY] or UNKNOWN_LEVEL
        self.versions = {
            k: self.metadata[k]
            for k in ("nequip_version", "torch_version", "e3nn_version")
            if self.metadata[k]
        }

    def describe(self) -> str:
        """One line: file, versions, cutoff and the elements the file covers (read from its metadata)."""
        return (
            f"{self.path.name}: nequip {self.versions.get('nequip_version', '?')} deployed Allegro model, "
            f"{self.model_dtype}, r_max {self.cutoff:g} A, level of theory {self.level_of_theory}, {len(self.species)} elements: "
            f"{' '.join(self.species)}"
        )

    def types_of(self, symbols) -> np.ndarray:
        """Type indices of element symbols in the file's type order; ValueError naming the first unknown element."""
        return type_indices(self.species, symbols)

    def compute(
        self, positions, types, edge_index, n_local: int, edge_shifts=None
    ) -> PotentialResult:
        """As ``AllegroPotential.compute``: energy (eV) of the local atoms, forces (eV/A) on all atoms given, virial (eV)."""

        per_edge = self.per_atom_virial and np.asarray(edge_index).size > 0
        if per_edge:
            pos, typ, ei, copy_of, vec = edge_copy_graph(
                positions, types, edge_index, n_local, edge_shifts
            )
        else:  # min_edges 1: the TorchScript graph crashes (SIGSEGV) on an empty edge list
            pos, typ, ei, copy_of = ghost_graph(
                positions, types, edge_index, n_local, edge_shifts, self.cutoff, min_edges=1
            )
        data = graph_tensors(
            pos, ei, typ, ("pos", "edge_index", "atom_types"), self.dtype, self.device
        )
        out = self.model(data)
        atomic = out["atomic_energy"].detach().reshape(-1).double().cpu().numpy()
        f_all = out["forces"].detach().double().cpu().numpy()
        forces = fold_copies(f_all, copy_of, len(positions))
        real = copy_of >= 0
        virial = pos[real].T @ f_all[real]  # sum_i x_i (x) F_i (see module docstring)
        per_atom = None
        if self.per_atom_virial:
            per_atom = (
                per_atom_virials(vec, ei[0], f_all[len(positions) :], n_local)
                if per_edge
                else np.zeros((n_local, 3, 3))  # no edges: no virial
            )
        return PotentialResult(
            energy=float(atomic[:n_local].sum()),
            forces=forces,
            virial=virial,
            atomic_energies=atomic[:n_local].copy(),
            atomic_virials=per_atom,
        )
