"""Fine-tuning a nequip 0.6.x deployed TorchScript model (e.g. the published ``afm256_01_HL.pt``) directly.

Why TorchScript: the Allegro 0.3.0 weights cannot be carried into nequip-allegro >= 0.7's module. The two
architectures differ in function, not only in names: 0.3.0 embeds edges with a trainable per-basis Bessel
basis and a product type embedding feeding a three-layer two-body MLP, couples tensor features through
per-layer env-embedding MLPs and ``linears`` over the irreps, and reads out through a ``final_latent`` MLP and a
separate edge-energy MLP; nequip-allegro 0.8 has fixed Bessel weights, separate centre/neighbour embeddings
with a scalar-embedding MLP, per-path tensor-product weights over dense Wigner-3j buffers and a single linear
readout. No assignment of one set of weights to the other gives the same energies.

A deployed (unfrozen) TorchScript file keeps its weights as parameters, and its code still runs backwards:
in training mode nequip 0.6's force output builds the graph of the forces (``create_graph``) and Allegro's
sparse Wigner-3j products switch to their double-backward form. Only ``RescaleOutput`` changes meaning in
training mode (it stops rescaling), so it is kept in eval mode: the outputs stay in eV and eV/A. The loss is
the paper's: per-atom energy, force and stress mean squared errors weighted 8:1:1 (``TrainSettings``).

The result is written in the same format with the same metadata (it runs wherever the original does:
pair_allegro, RXMD-NN, this project), plus ``allegro_fm_finetune`` (what was done) as an extra file.
Checkpointed every epoch (``last.pth`` + ``trainer_state.pt``); a rerun resumes.

``engine="port"`` trains the plain-PyTorch port (``legacy_port.py``) instead of the TorchScript code: the same
function and loss, ordinary autograd; the trained values are written back into the TorchScript file (the same
output files), which ``allegro-fm export best.pth --compiled`` (or allegro-fm-md's compile on first use) compiles.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tea_align
from tea_align import Progress
from tea_align.elements import type_indices
from tea_align.files import write_bytes_atomic, write_text_atomic

from .compiled import ghost_graph
from .edges import periodic_edges
from .legacy import METADATA_KEYS, LegacyModelError, load_legacy_module
from .loading import resolve_model
from .provenance import LEVEL_KEY, UNKNOWN_LEVEL, check_levels, dataset_level
from .replay import check_replay_level
from .training import (
    TrainSettings,
    frame_repeats,
    frame_sources,
    run_split,
    species_weight_list,
    split_indices,
)

log = logging.getLogger(__name__)

#: groups of an Allegro 0.3.0 model that ``freeze`` can name (prefixes of the names below the energy graph)
LEGACY_FREEZE_GROUPS: dict[str, tuple[str, ...]] = {
    "embedding": ("radial_basis.", "typeembed.", "allegro.latents.0."),
    "readout": ("allegro.final_latent.", "edge_eng."),
}


#: the same groups in the port's parameter names (``legacy_port.Allegro030``)
PORT_FREEZE_GROUPS: dict[str, tuple[str, ...]] = {
    "embedding": ("bessel_weights", "type_embeddings", "basis_mlp.", "latents.0."),
    "readout": ("final_latent.", "edge_eng."),
}


def _group_prefixes(name: str, port: bool = False) -> tuple[str, ...]:
    groups = PORT_FREEZE_GROUPS if port else LEGACY_FREEZE_GROUPS
    if name in groups:
        return groups[name]
    if (
        name.startswith("layer") and name[5:].isdigit()
    ):  # layerK: the K-th Allegro layer's tensor path
        k = int(name[5:])
        if port:
            return (f"env_embed_mlps.{k}.", f"linear_w.{k}", f"latents.{k + 1}.")
        return (
            f"allegro.env_embed_mlps.{k}.",
            f"allegro.linears.{k}.",
            f"allegro.latents.{k + 1}.",
        )
    return (name,)


def _local_name(param_name: str) -> str:
    """A parameter's name below the energy graph (``...func.``), the part that names its role."""
    return param_name.split("func.", 1)[-1]


@dataclass(frozen=True)
class Graph:
    """One frame prepared for the TorchScript call: positions with ghost copies, edges, types; labels in eV, eV/A, eV/A^3."""

    pos: np.ndarray
    edge_index: np.ndarray
    types: np.ndarray
    copy_of: np.ndarray
    n_atoms: int
    energy: float
    forces: np.ndarray | None
    stress: np.ndarray | None
    volume: float


def _graphs(
    dataset: str, species: tuple[str, ...], cutoff: float, indices: list[int]
) -> list[Graph]:
    out = []
    with tea_align.open_dataset(dataset) as ds:
        for i in indices:
            fr = ds[i]
            try:
                types = type_indices(species, fr.symbols)
            except ValueError as exc:
                raise ValueError(f"{dataset}: frame {i}: {exc}") from exc
            ei, sh = periodic_edges(fr.positions, fr.cell, fr.pbc, cutoff)
            pos, typ, ei, copy_of = ghost_graph(fr.positions, types, ei, fr.n_atoms, sh, cutoff)
            periodic = bool(np.asarray(fr.pbc).all())
            forces = (
                None if fr.forces is None else np.array(fr.forces)
            )  # writable copies (torch refuses read-only views)
            stress = np.array(fr.stress) if periodic and fr.stress is not None else None
            out.append(
                Graph(
                    pos,
                    ei,
                    typ,
                    copy_of,
                    fr.n_atoms,
                    fr.energy,
                    forces,
                    stress,
                    abs(float(np.linalg.det(fr.cell))) if periodic else 0.0,
                )
            )
    return out


def _set_modes(module, training: bool) -> None:
    """Training mode for the force/stress graph and Allegro's products, eval mode for RescaleOutput (see module doc)."""
    module.train(training)
    if training:
        for _, sub in module.named_modules():
            if getattr(sub, "original_name", "") == "RescaleOutput":
                sub.training = False


def _predict(module, g: Graph, dtype, device):
    """(energy eV, forces (n, 3) eV/A, stress (3, 3) eV/A^3 or None) as differentiable tensors."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    data = {
        "pos": torch.as_tensor(g.pos, dtype=dtype, device=device),
        "edge_index": torch.as_tensor(g.edge_index, dtype=torch.long, device=device),
        "atom_types": torch.as_tensor(g.types, dtype=torch.long, device=device),
    }
    out = module(data)
    atomic = out["atomic_energy"].reshape(-1)
    f_all = out["forces"]
    real = torch.as_tensor(g.copy_of >= 0, device=device)
    idx = torch.as_tensor(g.copy_of[g.copy_of >= 0], dtype=torch.long, device=device)
    forces = torch.zeros((g.n_atoms, 3), dtype=f_all.dtype, device=device).index_add(
        0, idx, f_all[real]
    )
    stress = None
    if g.stress is not None:
        virial = data["pos"][real].T @ f_all[real]  # W = sum x (x) F (see legacy.py)
        stress = -virial / g.volume
    return atomic[: g.n_atoms].sum(), forces, stress


def _check_training_mode(module, g: Graph, dtype, device, src) -> None:
    """The outputs in the fine-tuning modes equal the deployed (eval) outputs: nothing but the graph changed."""
    _set_modes(module, False)
    e0, f0 = (t.detach() for t in _predict(module, g, dtype, device)[:2])
    _set_modes(module, True)
    e1, f1 = (t.detach() for t in _predict(module, g, dtype, device)[:2])
    de, df = abs(float(e1 - e0)), float((f1 - f0).abs().max())
    if de > 1e-5 * max(1.0, abs(float(e0))) or df > 1e-4 * max(1.0, float(f0.abs().max())):
        raise LegacyModelError(
            f"{src}: in training mode this file's outputs change (energy by {de:.3g} eV, forces by {df:.3g} "
            "eV/A): it has training-dependent modules this fine-tuning does not know; not fine-tuned"
        )


def _loss(module, g: Graph, s: TrainSettings, dtype, device, type_weights=None):
    """Per-frame loss (8:1:1 weights by default) and its parts (per-atom energy, force, stress squared errors).
    ``type_weights``: force-loss weight per type (``species_weights``), or None."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    e, f, st = _predict(module, g, dtype, device)
    parts = {"e": ((e - g.energy) / g.n_atoms) ** 2}
    loss = s.energy_weight * parts["e"]
    if g.forces is not None:
        sq = (f - torch.as_tensor(g.forces, dtype=f.dtype, device=device)) ** 2
        parts["f_sum"] = sq.detach().sum()  # unweighted, for the force RMSE of a set of frames
        if (
            type_weights is not None
        ):  # an atom of weight w counts w times; the mean stays over atoms
            w = torch.as_tensor(type_weights[g.types[: g.n_atoms]], dtype=f.dtype, device=device)
            sq = sq * w[:, None]
        parts["f"] = sq.mean()
        loss = loss + s.force_weight * parts["f"]
    if st is not None and g.stress is not None:
        parts["s"] = ((st - torch.as_tensor(g.stress, dtype=st.dtype, device=device)) ** 2).mean()
        loss = loss + s.stress_weight * parts["s"]
    return loss, parts


def shift_legacy_energies(module, offsets: dict[str, float], species, source="the model") -> None:
    """Add ``offsets`` (eV per element) to the per-species energy shifts of a nequip 0.6 TorchScript module or of its
    port (``legacy_port.Allegro030``), in place. The shifts are stored before the file's global energy scale, so each
    offset is divided by it. ValueError naming ``source`` when the model has no per-species shifts."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    if hasattr(module, "global_scale"):  # the port: its shifts buffer and its global scale
        shifts, scale = (module.shifts if module.has_shifts else None), float(module.global_scale)
    else:
        tensors = {**dict(module.named_buffers()), **dict(module.named_parameters())}
        key = next((k for k in tensors if k.endswith("per_species_rescale.shifts")), None)
        shifts = tensors[key] if key else None
        scale = 1.0
        # RescaleEnergyEtc's global scale (a scalar; absent or empty: 1)
        for k, t in tensors.items():
            if k.endswith("scale_by") and t.numel() == 1 and "per_species" not in k:
                scale *= float(t)
    if shifts is None or shifts.numel() != len(species):
        raise ValueError(
            f"{source}: the model has no per-species energy shifts (one per type): offsets cannot be refitted"
        )
    with torch.no_grad():
        for el, d in offsets.items():
            shifts[list(species).index(el)] += float(d) / scale


def _save_module(module, meta: dict[str, str], note: dict, path: Path, file_module=None) -> Path:
    """The module as a deployed file with the original metadata (+ what fine-tuning did), written atomically; a port
    is first written back into ``file_module`` (its TorchScript file), which is saved."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    _set_modes(module, False)
    if file_module is not None:
        module.write_back(file_module)
        module = file_module
        module.eval()
    extra = {k: v for k, v in meta.items() if v and k in METADATA_KEYS}
    extra["allegro_fm_finetune"] = json.dumps(note)
    buf = io.BytesIO()
    with (
        warnings.catch_warnings()
    ):  # TorchScript is deprecated in torch >= 2.10; this format exists only as TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, buf, _extra_files=extra)
    return write_bytes_atomic(path, buf.getvalue())


def finetune_legacy(
    s: TrainSettings, device: str = "cpu", progress: bool = True, engine: str = "torchscript"
) -> Path:
    """Fine-tune the nequip 0.6.x deployed model ``s.init_from`` on ``s.dataset`` (tea-align schema v1) for
    ``s.max_epochs`` epochs with Adam (``s.learning_rate``), ``s.batch_size`` frames per step, the groups in
    ``s.freeze`` (embedding, layerK, readout, or name prefixes) held fixed. Writes ``s.run_dir``/best.pth (lowest
    validation loss), last.pth, metrics.csv, settings.json; resumes from trainer_state.pt. ``engine``: "torchscript"
    (the file's own code) or "port" (``legacy_port``; the same files are written). Returns the run folder."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    if s.sam_rho > 0 or s.strategy not in ("auto", "single_device") or s.num_nodes != 1:
        raise ValueError(
            "fine-tuning a legacy TorchScript model runs on one device without SAM (sam_rho = 0, strategy auto)"
        )
    src = resolve_model(s.init_from)
    run = Path(s.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "trainer_state.pt"
    resume = state_path.exists() and (run / "last.pth").exists()
    if engine not in ("torchscript", "port"):
        raise ValueError(f"engine must be 'torchscript' or 'port', not {engine!r}")
    start = run / "last.pth" if resume else src
    module, meta = load_legacy_module(start, device, freeze=False)
    file_module = None
    if engine == "port":
        from .legacy_port import port_legacy  # lazy: the port module imports torch

        file_module, module = module, port_legacy(start, device)
        if module.constant_in_port:
            log.warning(
                "%s: the port holds %s as constants; they stay as they are",
                src,
                module.constant_in_port,
            )
    species = tuple(meta["type_names"].split())
    cutoff = float(meta["r_max"])
    level = dataset_level(s.dataset)
    check_levels(
        meta[LEVEL_KEY] or UNKNOWN_LEVEL, level, str(src), str(s.dataset), refit=s.refit_offsets
    )
    meta = {**meta, LEVEL_KEY: level}  # the fine-tuned files record their data's level
    dtype = getattr(torch, meta["default_dtype"] or "float32")
    with tea_align.open_dataset(s.dataset) as ds:
        n = len(ds)
    train_idx, val_idx, _ = run_split(s, n)
    type_weights = (
        np.array(species_weight_list(s.species_weights, species, str(src)))
        if s.species_weights
        else None
    )
    offsets: dict[str, float] = {}
    # the per-species shifts refitted on the training frames, once (a resumed run's file has them; it reads them
    # from its trainer state, below)
    if s.refit_offsets and not resume:
        from .evaluate import energy_offsets  # lazy: evaluate imports the model loaders
        from .loading import load_potential  # lazy: as above

        offsets = energy_offsets(load_potential(src, device), s.dataset, train_idx)
        shift_legacy_energies(
            file_module if file_module is not None else module, offsets, species, src
        )
        if file_module is not None:
            shift_legacy_energies(module, offsets, species, src)
        log.info(
            "refitted per-species energy shifts on %d training frames (eV): %s",
            len(train_idx),
            " ".join(f"{k} {v:+.6g}" for k, v in offsets.items()),
        )
    train_g, val_g = (
        _graphs(s.dataset, species, cutoff, train_idx),
        _graphs(s.dataset, species, cutoff, val_idx),
    )
    # per-source weights (oversample): a loss weight per training frame (through nequip: repeats)
    reps = (
        frame_repeats(frame_sources(s.dataset), dict(s.oversample), s.dataset)
        if s.oversample
        else None
    )
    train_w = [float(reps[i]) if reps else 1.0 for i in train_idx]
    replay_g, replay_val_g = [], []
    if s.replay:  # replay: the same energy scale as the new data, or refused naming both levels
        check_replay_level(s.replay, s.dataset)
        with tea_align.open_dataset(s.replay) as ds:
            r_train, r_val, _ = split_indices(len(ds), s.val_fraction, 0.0, s.seed)
        replay_g = _graphs(s.replay, species, cutoff, r_train)
        replay_val_g = _graphs(s.replay, species, cutoff, r_val)
        log.info(
            "replay: %d training and %d validation frames of %s, %.3g of the training frames per epoch, weight %g",
            len(replay_g),
            len(replay_val_g),
            s.replay,
            s.replay_fraction,
            s.replay_weight,
        )
    n_replay = int(round(s.replay_fraction * len(train_g))) if replay_g else 0

    prefixes = [p for name in s.freeze for p in _group_prefixes(name, port=engine == "port")]
    frozen, trainable = [], []
    for name, prm in module.named_parameters():
        if any(_local_name(name).startswith(p) for p in prefixes):
            prm.requires_grad_(False)
            frozen.append(name)
        else:
            prm.requires_grad_(True)
            trainable.append(prm)
    if prefixes and not frozen:
        groups = sorted(PORT_FREEZE_GROUPS if engine == "port" else LEGACY_FREEZE_GROUPS) + [
            "layer0",
            "layer1",
            "...",
        ]
        raise ValueError(f"freeze {list(s.freeze)} matched no parameter of {src}; groups: {groups}")
    if not trainable:
        raise ValueError(f"freeze {list(s.freeze)} leaves no parameter of {src} to train")
    opt = torch.optim.Adam(trainable, lr=s.learning_rate)
    rng = np.random.default_rng(s.seed)
    epoch0, best = 0, float("inf")
    if resume:
        st = torch.load(state_path, weights_only=False)
        opt.load_state_dict(st["optimizer"])
        epoch0, best = st["epoch"], st["best"]
        offsets = st.get("energy_offsets", {})
        rng.bit_generator.state = st["rng"]
        log.info("resuming %s at epoch %d", run, epoch0)
    write_text_atomic(
        run / "settings.json",
        json.dumps(
            {
                **asdict(s),
                "kind": "legacy-torchscript" if engine == "torchscript" else "legacy-port",
                "source": str(src),
                "frozen_parameters": frozen,
            },
            indent=1,
        ),
    )

    def val_loss(frames=None) -> tuple[float, float]:
        """(mean loss, force RMSE in meV/A over all their atoms) of ``frames`` (default the validation frames)."""
        frames = val_g if frames is None else frames
        if not frames:
            return float("nan"), float("nan")
        _set_modes(module, True)
        tot, fsq, fn = 0.0, 0.0, 0
        for g in frames:
            loss, parts = _loss(module, g, s, dtype, device, type_weights)
            tot += float(loss.detach())
            if "f_sum" in parts:
                fsq, fn = fsq + float(parts["f_sum"]), fn + 3 * g.n_atoms
        return tot / len(frames), (1000.0 * (fsq / fn) ** 0.5 if fn else float("nan"))

    _check_training_mode(module, train_g[0], dtype, device, src)
    metrics = run / "metrics.csv"
    if epoch0 == 0:
        (first, first_f), (first_r, first_rf) = val_loss(), val_loss(replay_val_g)
        write_text_atomic(
            metrics,
            "epoch,train_loss,val_loss,seconds,replay_val_loss,val_force_rmse_meV,replay_val_force_rmse_meV\n"
            f"0,,{first:.8g},0,{first_r:.8g},{first_f:.8g},{first_rf:.8g}\n",
        )
        log.info("epoch 0: validation loss %.6g", first)
    bar = Progress(
        s.max_epochs, desc="fine-tune", unit="epoch", enabled=progress, initial=epoch0
    )  # no redraws in a log
    for epoch in range(epoch0, s.max_epochs):
        t0 = time.perf_counter()
        _set_modes(module, True)
        # the epoch's frames: all new ones and a fresh draw of replay frames (weight replay_weight), shuffled together
        frames = list(zip(train_g, train_w, strict=True))
        if n_replay:
            pick = rng.choice(len(replay_g), n_replay, replace=n_replay > len(replay_g))
            frames += [(replay_g[k], s.replay_weight) for k in pick]
        order = rng.permutation(len(frames))
        tot = 0.0
        for b in range(0, len(order), s.batch_size):
            opt.zero_grad()
            batch = order[b : b + s.batch_size]
            for k in batch:
                g, w = frames[k]
                loss, _ = _loss(module, g, s, dtype, device, type_weights)
                (w * loss / len(batch)).backward()
                tot += float(loss.detach())
            opt.step()
        train_loss, (vl, vf) = tot / len(order), val_loss()
        rvl, rvf = val_loss(replay_val_g)
        note = {
            "source": src.name,
            "engine": engine,
            "epoch": epoch + 1,
            "dataset": Path(s.dataset).name,
            "frozen": list(s.freeze),
            "val_loss": vl,
            **({"oversample": dict(s.oversample)} if s.oversample else {}),
            **({"energy_offsets": offsets} if offsets else {}),
            **({"species_weights": dict(s.species_weights)} if s.species_weights else {}),
            **(
                {
                    "replay": Path(s.replay).name,
                    "replay_fraction": s.replay_fraction,
                    "replay_weight": s.replay_weight,
                    "replay_val_loss": rvl,
                }
                if s.replay
                else {}
            ),
        }
        if vl < best:
            best = vl
            _save_module(module, meta, note, run / "best.pth", file_module)
        _save_module(module, meta, note, run / "last.pth", file_module)
        buf = io.BytesIO()
        torch.save(
            {
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "rng": rng.bit_generator.state,
                "energy_offsets": offsets,
            },
            buf,
        )
        write_bytes_atomic(state_path, buf.getvalue())
        with open(metrics, newline="") as fh:
            rows = list(csv.reader(fh))
        rows.append(
            [
                str(epoch + 1),
                f"{train_loss:.8g}",
                f"{vl:.8g}",
                f"{time.perf_counter() - t0:.2f}",
                f"{rvl:.8g}",
                f"{vf:.8g}",
                f"{rvf:.8g}",
            ]
        )
        write_text_atomic(metrics, "\n".join(",".join(r) for r in rows) + "\n")
        log.info("epoch %d: train loss %.6g, validation loss %.6g", epoch + 1, train_loss, vl)
        bar.set_postfix(train=f"{train_loss:.4g}", val=f"{vl:.4g}")
        bar.update(1)
    bar.close()
    return run
