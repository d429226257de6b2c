"""A shallow ensemble: several readout heads on one Allegro backbone, a committee at little more than one model's cost.

An Allegro model's energy is linear in its last layer: the edge readout is one linear map of each edge's final
features f_e (192 numbers for the shipped model) to an edge energy, and everything after it (the sum over each
atom's edges, the average-neighbour normalisation, the per-species scale and shift) is linear with coefficients that
depend on species only. So with a readout weight w + delta the energy is E_0 + D(delta), D = sum_e c_e alpha f_e . delta
(c_e = dE/d(edge energy e), alpha the layer's weight scale), and its forces F_0 - dD/dx. A head is such a delta.

``fit_heads`` makes K heads by refitting the last layer on bootstrap resamples of training frames (energy and force
least squares, the backbone frozen: linear, solved exactly from each frame's design, ``-dG/dx`` by batched backward
passes), centres them (their mean is the trained readout, so the ensemble's mean is the model itself) and scales them
so that the per-atom force deviation matches the actual force error on calibration frames (``scale``). ``HeadsPotential``
evaluates the model once and the K heads' forces in one batched backward pass; it is a committee for the engine and
the ASE calculator (``member_forces``, ``force_deviation``). Eager only: the heads need the edge features, which a
compiled file does not expose. Units: eV, Angstrom.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tea_align.files import atomic_path, save_figure

from .edges import periodic_edges
from .potential import AllegroPotential, PotentialResult
from .provenance import model_level

log = logging.getLogger("allegro_fm_model")
#: the heads file's format tag
HEADS_FORMAT = "allegro-fm-heads/1"


@dataclass(frozen=True)
class Heads:
    """K readout-weight deltas (K, D), centred (they sum to 0) and scaled; ``model_sha256``: the model file they belong
    to; ``scale``: the calibration factor already applied; ``meta``: how they were made (frames, seed, errors)."""

    deltas: np.ndarray
    model_sha256: str
    scale: float
    meta: dict

    def save(self, path: str | Path) -> Path:
        """Write an npz (atomically)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                deltas=self.deltas,
                meta=np.array(
                    json.dumps(
                        {
                            "format": HEADS_FORMAT,
                            "model_sha256": self.model_sha256,
                            "scale": self.scale,
                            **self.meta,
                        }
                    )
                ),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Heads:
        """Read a heads file; ValueError naming it when it is not one."""
        path = Path(path)
        try:
            with np.load(path) as z:
                deltas, meta = np.asarray(z["deltas"], dtype=np.float64), json.loads(str(z["meta"]))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise ValueError(f"{path}: not a heads file ({type(exc).__name__}: {exc})") from exc
        if meta.get("format") != HEADS_FORMAT or deltas.ndim != 2 or len(deltas) < 2:
            raise ValueError(f"{path}: not a heads file of format {HEADS_FORMAT}")
        return cls(deltas, meta.pop("model_sha256"), float(meta.pop("scale")), meta)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _readout(model):
    """(linear layer, alpha) of an eager Allegro model's edge readout; ValueError when it is not one linear layer."""
    mlp = getattr(getattr(model, "edge_readout", None), "mlp_module", None)
    layers = list(getattr(mlp, "mlp", []))
    if len(layers) != 1 or not hasattr(layers[0], "weight") or layers[0].weight.shape[1] != 1:
        raise ValueError(
            "shallow-ensemble heads need an Allegro model whose edge readout is one linear layer (D -> 1)"
        )
    lin = layers[0]
    if getattr(lin, "bias", None) is not None:
        raise ValueError("shallow-ensemble heads: a readout with a bias is not supported")
    return lin, float(getattr(lin, "alpha", 1.0))


class HeadsPotential(AllegroPotential):
    """An eager Allegro model with shallow-ensemble heads: the model's own results (energy, forces, virial, per-atom
    energies and virials) plus each head's forces (``member_forces``) and ``force_deviation``, a committee to the engine
    and the ASE calculator. Build with ``load_heads_potential``."""

    def __init__(self, model, species, cutoff: float, heads: Heads, device: str = "cpu", fast=None):
        super().__init__(model, species, cutoff, device=device, device_edges=False)
        #: the same model compiled (``CompiledAllegroPotential``), or None: used for the calls without heads
        self.fast = fast
        import torch  # lazy: torch takes seconds to import; only model paths need it

        self.heads = heads
        _, self.alpha = _readout(self._energy_model)
        self._deltas = torch.as_tensor(heads.deltas.T, dtype=self.dtype, device=self.device)
        self.member_weights = np.full(len(heads.deltas), 1.0 / len(heads.deltas))
        #: False: skip the heads' forces (the model's own results are unchanged; no ``member_forces``). The MD engine
        #: turns it on only at the steps that report or guard the deviation ([run] fdev_every)
        self.members_wanted = True

    def force_deviation(self, member_forces: np.ndarray) -> np.ndarray:
        """Per-atom force deviation (eV/A) of the heads' total forces (K, n, 3): sqrt(mean_k |F_k - F_mean|^2)."""
        f = np.asarray(member_forces, dtype=np.float64)
        return np.sqrt(((f - f.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))

    def compute(self, positions, types, edge_index, n_local: int, edge_shifts=None):
        """As ``AllegroPotential.compute``, with each head's forces (``member_forces``) while ``members_wanted``; without
        them, by the compiled ``fast`` file when there is one (the same model, to float32 round-off)."""
        if self.fast is not None and not self.members_wanted:
            self.fast.per_atom_virial = self.per_atom_virial
            return self.fast.compute(positions, types, edge_index, n_local, edge_shifts)
        return super().compute(positions, types, edge_index, n_local, edge_shifts)

    def _evaluate(self, pos, types_t, ei, n_local: int, edge_shifts) -> PotentialResult:
        import torch  # lazy: torch takes seconds to import; only model paths need it
        from nequip.data import AtomicDataDict as K  # lazy: nequip imports torch

        n = pos.shape[0]
        vec, out, atomic, energy = self._forward(pos, types_t, ei, n_local, edge_shifts)
        feats, edge_e = out[K.EDGE_FEATURES_KEY], out[K.EDGE_ENERGY_KEY]
        g, c = torch.autograd.grad(energy, [vec, edge_e], retain_graph=True, allow_unused=True)
        res = self._result(vec, g, ei, n, n_local, atomic, energy)
        k = self._deltas.shape[1]
        if not self.members_wanted or g is None or not vec.shape[0]:
            return res  # no heads wanted, or nothing to differentiate
        d = (c.detach().view(-1, 1) * self.alpha * (feats @ self._deltas)).sum(dim=0)  # (K,) eV
        (gk,) = torch.autograd.grad(
            d,
            [vec],
            grad_outputs=torch.eye(k, dtype=self.dtype, device=self.device),
            is_grads_batched=True,
        )
        dk = torch.zeros((k, n, 3), dtype=self.dtype, device=self.device)  # head forces - model's
        dk.index_add_(1, ei[0], gk)
        dk.index_add_(1, ei[1], -gk)
        return replace(
            res,
            member_forces=res.forces[None] + dk.detach().double().cpu().numpy(),
            member_weights=self.member_weights.copy(),
        )


def load_heads_potential(
    model, heads: str | Path, device: str = "cpu", fast=None
) -> HeadsPotential:
    """The eager model of ``model`` (a .ckpt / .nequip.zip or a shipped name) with the heads file ``heads``; refused
    (ValueError naming both files) when the heads were made for another model file. ``fast``: the same model compiled
    (a Potential), used for the calls that do not want the heads (allegro-fm-md's steps between ``fdev_every``)."""
    from .loading import _graph_model, resolve_model  # lazy: loading imports this module's users

    path = resolve_model(model)
    h = Heads.load(heads)
    if h.model_sha256 != file_sha256(path):
        raise ValueError(f"{heads}: heads made for another model file than {path} (sha256 differs)")
    m = _graph_model(path)
    meta = m.metadata
    pot = HeadsPotential(m, str(meta["type_names"]).split(), float(meta["r_max"]), h, device, fast)
    pot.level_of_theory = model_level(path)
    pot.source = path.resolve()
    pot.heads_source = Path(heads).resolve()
    return pot


@dataclass
class _FrameDesign:
    """One frame's linear model of a readout delta: energy E_0 + g . delta, forces F_0 + B delta (eV, eV/A)."""

    n: int
    g: np.ndarray  # (D,)
    b: np.ndarray  # (N * 3, D)
    e_res: float  # E_ref - E_0
    f_res: np.ndarray  # (N * 3,) F_ref - F_0
    f_ref: np.ndarray  # (N, 3)


def _design(pot: AllegroPotential, atoms, chunk: int = 48) -> _FrameDesign:
    """The frame's design (``_FrameDesign``) from the eager model: one forward pass and D batched backward passes."""
    import torch  # lazy: torch takes seconds to import; only model paths need it
    from nequip.data import AtomicDataDict as K  # lazy: nequip imports torch

    _, alpha = _readout(pot._energy_model)
    types = torch.as_tensor(pot.types_of(atoms.get_chemical_symbols()), device=pot.device)
    ei_np, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, pot.cutoff)
    ei = torch.as_tensor(ei_np, device=pot.device)
    pos = torch.as_tensor(atoms.positions, dtype=pot.dtype, device=pot.device)
    n = len(atoms)
    vec, out, atomic, energy = pot._forward(pos, types, ei, n, sh)
    gvec, c = torch.autograd.grad(energy, [vec, out[K.EDGE_ENERGY_KEY]], retain_graph=True)
    f0 = pot._result(vec, gvec, ei, n, n, atomic, energy).forces  # the model's forces (eV/A)
    feats = out[K.EDGE_FEATURES_KEY]
    gsum = (c.detach().view(-1, 1) * alpha * feats).sum(dim=0)  # (D,): d energy / d delta
    d = gsum.shape[0]
    cols = []
    for s in range(
        0, d, chunk
    ):  # -dG/dx for each readout component, a chunk of backward passes at a time
        m = min(chunk, d - s)
        sel = torch.zeros((m, d), dtype=pot.dtype, device=pot.device)
        sel[torch.arange(m), torch.arange(s, s + m)] = 1
        (gk,) = torch.autograd.grad(
            gsum, [vec], grad_outputs=sel, is_grads_batched=True, retain_graph=True
        )
        bk = torch.zeros((m, n, 3), dtype=pot.dtype, device=pot.device)
        bk.index_add_(1, ei[0], gk)
        bk.index_add_(1, ei[1], -gk)
        cols.append(bk.detach().double().reshape(m, -1).cpu().numpy())
    f_ref = np.asarray(atoms.get_forces(), dtype=np.float64)
    return _FrameDesign(
        n,
        gsum.detach().double().cpu().numpy(),
        np.concatenate(cols).T,
        float(atoms.get_potential_energy()) - float(energy.detach()),
        (f_ref - f0).reshape(-1),
        f_ref,
    )


def _normal(fd: _FrameDesign, energy_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame's normal equations of energy_weight ((E - E_ref) / N)^2 + mean over components (F - F_ref)^2."""
    ge = fd.g / fd.n
    m = energy_weight * np.outer(ge, ge) + fd.b.T @ fd.b / (3 * fd.n)
    v = energy_weight * ge * fd.e_res / fd.n + fd.b.T @ fd.f_res / (3 * fd.n)
    return m, v


def fit_heads(
    model,
    train_frames,
    calibration_frames,
    n_heads: int = 4,
    seed: int = 0,
    energy_weight: float = 8.0,
    ridge: float = 1e-6,
    progress: bool = True,
) -> Heads:
    """``n_heads`` readout heads of ``model`` (a model file or shipped name, or an eager ``AllegroPotential``) refitted
    on bootstrap resamples of
    ``train_frames`` (ASE Atoms labelled at the model's level: energy eV, forces eV/A), centred on the trained readout
    and scaled so that on ``calibration_frames`` the mean squared per-atom force deviation equals the mean squared
    per-atom force error (per-atom: |F - F_ref|^2 vs fdev^2). ``ridge``: Tikhonov term, relative to the mean diagonal
    of the normal matrix. Returns the Heads (save them beside the model)."""
    from tea_align import Progress  # lazy: a bar only here

    from .loading import _graph_model, resolve_model  # lazy: loading imports this module's users

    if isinstance(model, AllegroPotential):  # an eager potential in memory (its heads name no file)
        pot, path, sha = model, Path(type(model).__name__), ""
    else:
        path = resolve_model(model)
        m = _graph_model(path)
        meta = m.metadata
        pot = AllegroPotential(m, str(meta["type_names"]).split(), float(meta["r_max"]))
        sha = file_sha256(path)
    train_frames, calibration_frames = list(train_frames), list(calibration_frames)
    if n_heads < 2 or not train_frames or not calibration_frames:
        raise ValueError("fit_heads needs n_heads >= 2, training frames and calibration frames")
    bar = Progress(
        len(train_frames) + len(calibration_frames),
        desc="heads: frames",
        unit="frame",
        enabled=progress,
    )
    normals = []
    for a in train_frames:
        normals.append(_normal(_design(pot, a), energy_weight))
        bar.update(1)
    rng = np.random.default_rng(seed)
    d = normals[0][0].shape[0]
    lam = ridge * float(np.mean([np.trace(mm) for mm, _ in normals])) / d
    deltas = []
    for _ in range(n_heads):
        counts = rng.multinomial(len(normals), np.full(len(normals), 1.0 / len(normals)))
        mm = sum(c * nm[0] for c, nm in zip(counts, normals, strict=True) if c) + lam * np.eye(d)
        vv = sum(c * nm[1] for c, nm in zip(counts, normals, strict=True) if c)
        deltas.append(np.linalg.solve(mm, vv))
    deltas = np.array(deltas)
    deltas -= deltas.mean(axis=0)  # the ensemble's mean is the trained readout
    raw_dev2, err2 = [], []
    for a in calibration_frames:
        fd = _design(pot, a)
        heads = (fd.b @ deltas.T).T.reshape(n_heads, fd.n, 3)  # head forces minus the model's
        raw_dev2.append(((heads - heads.mean(0)) ** 2).sum(axis=2).mean(axis=0))
        f0 = fd.f_ref - fd.f_res.reshape(fd.n, 3)
        err2.append(((f0 - fd.f_ref) ** 2).sum(axis=1))
        bar.update(1)
    bar.close()
    raw, err = float(np.mean(np.concatenate(raw_dev2))), float(np.mean(np.concatenate(err2)))
    scale = float(np.sqrt(err / raw)) if raw > 0 else 1.0
    log.info(
        "heads: %d on %d frames; calibration RMS force error %.3f eV/A, raw deviation %.3g eV/A -> scale %.3g",
        n_heads,
        len(train_frames),
        np.sqrt(err),
        np.sqrt(raw),
        scale,
    )
    return Heads(
        deltas * scale,
        sha,
        scale,
        {
            "model": path.name,
            "heads": n_heads,
            "seed": seed,
            "train_frames": len(train_frames),
            "calibration_frames": len(calibration_frames),
            "energy_weight": energy_weight,
            "ridge": ridge,
            "calibration_rms_force_error_eV_A": float(np.sqrt(err)),
            "raw_rms_deviation_eV_A": float(np.sqrt(raw)),
        },
    )


@dataclass(frozen=True)
class Calibration:
    """Per-atom force deviation (eV/A) of an ensemble against its actual per-atom force error |F - F_ref| (eV/A) on
    labelled frames, with each atom's group (the frame's ``info["structure"]`` or its file)."""

    fdev: np.ndarray
    error: np.ndarray
    group: np.ndarray

    def table(self) -> str:
        """Markdown: per group, atoms, RMS error, RMS deviation, their ratio and the rank correlation."""
        from scipy.stats import spearmanr  # lazy: scipy only for this table

        rows = [
            "| frames of | atoms | RMS force error (eV/A) | RMS deviation (eV/A) | deviation / error | Spearman rho |",
            "|---|---|---|---|---|---|",
        ]
        for g in [*sorted(set(self.group.tolist())), "all"]:
            sel = np.ones(len(self.group), bool) if g == "all" else self.group == g
            e, d = self.error[sel], self.fdev[sel]
            rms_e, rms_d = float(np.sqrt((e**2).mean())), float(np.sqrt((d**2).mean()))
            rho = float(spearmanr(d, e).statistic) if sel.sum() > 2 else float("nan")
            rows.append(
                f"| {g} | {int(sel.sum())} | {rms_e:.3f} | {rms_d:.3f} | {rms_d / rms_e:.2f} | {rho:.2f} |"
            )
        return "\n".join(rows) + "\n"

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Per-atom deviation vs error (log-log, every atom), the RMS error in deviation bins, and y = x."""
        import matplotlib  # lazy: matplotlib only when plotting

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: see above

        fig, ax = plt.subplots(figsize=(5.2, 4.6))
        floor = 1e-3
        d, e = np.maximum(self.fdev, floor), np.maximum(self.error, floor)
        for g in sorted(set(self.group.tolist())):
            sel = self.group == g
            ax.scatter(d[sel], e[sel], s=3, alpha=0.35, label=g)
        edges = np.logspace(np.log10(d.min()), np.log10(d.max()), 12)
        idx = np.digitize(d, edges)
        centres, rms = [], []
        for k in range(1, len(edges)):
            sel = idx == k
            if sel.sum() >= 10:
                centres.append(np.sqrt(edges[k - 1] * edges[k]))
                rms.append(np.sqrt((self.error[sel] ** 2).mean()))
        ax.plot(centres, rms, "k-o", ms=4, label="RMS error per bin")
        lim = [min(d.min(), e.min()), max(d.max(), e.max())]
        ax.plot(lim, lim, "k--", lw=0.8, label="error = deviation")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="per-atom force deviation (eV/A)",
            ylabel="per-atom force error |F - F_ref| (eV/A)",
            title=title,
        )
        ax.legend(fontsize=7, markerscale=3)
        return save_figure(fig, path)


def calibrate(pot, frames, names=None) -> Calibration:
    """Per-atom force deviation of a committee or heads potential against the actual force error on labelled ASE
    frames (forces eV/A); ``names``: each frame's group (default ``info["structure"]``)."""
    fdev, err, group = [], [], []
    for k, a in enumerate(frames):
        ref = np.asarray(a.get_forces(), dtype=np.float64)
        ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, pot.cutoff)
        r = pot.compute(a.positions, pot.types_of(a.get_chemical_symbols()), ei, len(a), sh)
        err.append(np.linalg.norm(r.forces - ref, axis=1))
        fdev.append(pot.force_deviation(r.member_forces))
        name = names[k] if names is not None else str(a.info.get("structure", "frames"))
        group.append(np.full(len(a), name, dtype=object))
    return Calibration(np.concatenate(fdev), np.concatenate(err), np.concatenate(group).astype(str))
