"""Replay sets for fine-tuning: configurations labelled by the starting model itself (``allegro-fm make-replay``).

Fine-tuning on new data alone makes a model forget what it knew. Replaying data the model was fitted to guards
against that (MACE's multihead replay, SevenNet's experience replay); when the original training data is not at
hand (the published files' MPtrj + SPICE), configurations labelled by the model itself are the practical replay
(MACE's "mode 2"). ``make_replay`` builds such a set from structures the user names: each structure, rattled
copies, strained copies (periodic cells) and, optionally, snapshots of a short ``allegro-fm-md`` run, all labelled
with the model's energy, forces and stress, written as a tea-align schema-v1 dataset whose level of theory is the
model's ``level_of_theory`` and whose source is named ``replay-<model file>``, so the level checks of ``finetune`` and
``evaluate`` treat it like any other data. A model that records no level (the published nequip 0.6 files) gives a
replay set at level "unknown": like the model itself, it is then mixed with data of any level, with a log line
(provenance.check_levels), since nothing tells which level its energies are on.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ase.io
import numpy as np
import tea_align
from ase.calculators.singlepoint import SinglePointCalculator
from tea_align import Progress

from .calculator import AllegroFMCalculator
from .loading import load_potential, resolve_model
from .provenance import UNKNOWN_LEVEL, LevelMismatchError, dataset_level

log = logging.getLogger("allegro_fm_model")


def replay_level(potential) -> str:
    """The level of theory a model-labelled replay set records: the model's own (``UNKNOWN_LEVEL`` if it has none)."""
    return getattr(potential, "level_of_theory", "") or UNKNOWN_LEVEL


def check_replay_level(replay: str | Path, data: str | Path) -> str:
    """The replay set's level of theory; LevelMismatchError naming both levels when it and the new data's are known and
    differ (the two energy scales are never mixed silently); an unknown level is logged."""
    r_lv, d_lv = dataset_level(replay), dataset_level(data)
    if UNKNOWN_LEVEL in (r_lv, d_lv):
        log.info("replay %s at level %r, data %s at %r: not checked", replay, r_lv, data, d_lv)
    elif r_lv != d_lv:
        raise LevelMismatchError(
            f"{replay}: replay energies at level of theory {r_lv!r}, but the new data {data} is at {d_lv!r}; align "
            f"one onto the other with tea-align (fit/apply --target {r_lv!r}) before mixing them"
        )
    return r_lv


def _variants(atoms, rattles, strains, copies: int, rng) -> list:
    """The structure, ``copies`` rattled copies per amplitude (A) and, for a periodic cell, ``copies`` random
    symmetric strains per magnitude (plus a small rattle)."""
    out = [atoms.copy()]
    for sigma in rattles:
        for _ in range(copies):
            a = atoms.copy()
            a.positions += rng.normal(0.0, sigma, a.positions.shape)
            out.append(a)
    if atoms.pbc.all():
        for eps in strains:
            for _ in range(copies):
                a = atoms.copy()
                e = rng.uniform(-eps, eps, (3, 3))
                a.set_cell(np.array(a.cell) @ (np.eye(3) + 0.5 * (e + e.T)), scale_atoms=True)
                a.positions += rng.normal(0.0, 0.02, a.positions.shape)
                out.append(a)
    return out


def _md_snapshots(model, atoms, steps: int, every: int, temperature_K: float, seed: int):
    """Frames of a short NVT (Langevin) ``allegro-fm-md run`` of ``atoms`` with ``model`` (subprocess: this package
    does not import the engine), every ``every`` steps."""
    exe = shutil.which("allegro-fm-md") or str(Path(sys.executable).with_name("allegro-fm-md"))
    if not Path(exe).exists():
        raise FileNotFoundError(
            "md_steps > 0 needs allegro-fm-md (pip install allegro-fm-md): the snapshots come from its runs"
        )
    with tempfile.TemporaryDirectory() as d:
        ase.io.write(Path(d) / "start.extxyz", atoms)
        (Path(d) / "run.toml").write_text(
            f'[system]\nstructure = "start.extxyz"\n[potential]\nkind = "allegro"\nmodel = "{model}"\n'
            f'[run]\nintegrator = "langevin"\ndt_fs = 0.5\nsteps = {steps}\ntemperature_K = {temperature_K}\n'
            f'seed = {seed}\nmin_distance = 0.5\n[output]\ndir = "out"\nthermo_every = {every}\n'
            f"trajectory_every = {every}\nrestart_every = {steps}\n"
        )
        p = subprocess.run(
            [exe, "run", "run.toml", "-q"],
            cwd=d,
            capture_output=True,
            text=True,
            env=dict(os.environ),
        )
        if p.returncode:
            raise RuntimeError(
                f"allegro-fm-md run for the replay snapshots failed ({p.returncode}): {p.stderr[-1500:]}"
            )
        frames = ase.io.read(Path(d) / "out" / "trajectory.extxyz", ":")
    return [f for f in frames[1:]]  # frame 0 is the start structure, already in the set


def make_replay(
    model: str | Path,
    structures,
    out: str | Path,
    *,
    rattle: tuple[float, ...] = (0.03, 0.08),
    strain: tuple[float, ...] = (0.02,),
    copies: int = 3,
    md_steps: int = 0,
    md_every: int = 20,
    temperature_K: float = 300.0,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Label configurations with ``model`` (file or shipped name) and write them to ``out`` (tea-align schema v1,
    atomically): each of ``structures`` (ase.Atoms or files ase.io reads, every frame), ``copies`` rattled copies
    per amplitude in ``rattle`` (A), ``copies`` random symmetric strains per magnitude in ``strain`` (periodic
    cells), and with ``md_steps`` > 0 snapshots every ``md_every`` steps of a Langevin ``allegro-fm-md`` run at
    ``temperature_K``. Energies eV, forces eV/A, stress eV/A^3 (periodic). Returns ``out``."""
    src = resolve_model(model)
    pot = load_potential(src, device)
    level = replay_level(pot)
    starts = []
    for s in structures:
        if isinstance(s, (str, Path)):
            try:
                starts += ase.io.read(s, ":")
            except Exception as exc:  # ase.io's parse errors, whatever the format
                raise ValueError(f"{s}: not a structure file ase.io reads ({exc})") from exc
        else:
            starts.append(s)
    if not starts:
        raise ValueError("make_replay needs at least one structure")
    rng = np.random.default_rng(seed)
    frames = []
    for k, a in enumerate(starts):
        pot.types_of(a.get_chemical_symbols())  # unknown elements: refused naming the atom
        frames += _variants(a, rattle, strain, copies, rng)
        if md_steps > 0:
            frames += _md_snapshots(src, a, md_steps, md_every, temperature_K, seed + k)
    calc = AllegroFMCalculator(pot)
    labelled = []
    bar = Progress(len(frames), desc="label replay", unit="frame", enabled=progress)
    for a in frames:
        a = a.copy()
        # the model's labels replace whatever the structure carried (its level of theory, energies): keep its names
        a.info = {k: a.info[k] for k in ("config_type", "name") if k in a.info}
        a.arrays = {k: v for k, v in a.arrays.items() if k in ("numbers", "positions")}
        a.calc = calc
        e, f = a.get_potential_energy(), a.get_forces()
        st = a.get_stress() if a.pbc.all() else None
        a.calc = SinglePointCalculator(
            a, energy=e, forces=f, **({"stress": st} if st is not None else {})
        )
        labelled.append(a)
        bar.update(1)
    bar.close()
    out = Path(out)
    with tempfile.TemporaryDirectory() as d:
        xyz = Path(d) / "replay.extxyz"
        ase.io.write(xyz, labelled)
        tea_align.convert([f"{xyz},level={level},name=replay-{src.name}"], out)
    log.info("%s: %d replay frames labelled by %s (level %s)", out, len(labelled), src.name, level)
    return out
