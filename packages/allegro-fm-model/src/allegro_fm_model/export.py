"""Deployment: ``package_model`` (checkpoint -> ``.nequip.zip``) and ``compile_model`` (-> AOTInductor ``.nequip.pt2``),
each file checked against the eager model by the one ``check_same_predictions`` before it is moved into place (the
LAMMPS ML-IAP file: ``lammps.py``).
``compile_model``: the AOTInductor ``.nequip.pt2`` deployment file (see ``compiled.py``); checkpoints and
``.nequip.zip`` packages run eagerly on any torch device, a ``.nequip.pt2`` on the device type it was built for.
nequip 0.6.x / Allegro 0.3.0 deployed files (the published ``afm256_01_HL.pt``) are compiled through their plain-PyTorch
port (``legacy_port.py``) and checked against the TorchScript original.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .compiled import CompiledAllegroPotential, compile_graph_model, example_cell
from .edges import periodic_edges
from .legacy import LegacyAllegroPotential
from .loading import is_legacy_model, load_potential, resolve_model
from .provenance import write_zip_level


def check_same_predictions(
    reference, candidate, atoms=None, tol: float = 1e-5, what: str = "model"
) -> None:
    """RuntimeError unless ``candidate`` gives ``reference``'s energy, forces and virial on ``atoms`` (default: a rattled
    periodic cell of the model's elements, ``compiled.example_cell``) to ``tol``, relative to max(1, |value|)."""
    atoms = atoms if atoms is not None else example_cell(reference.species)
    ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, reference.cutoff)
    types = reference.types_of(atoms.get_chemical_symbols())
    a = reference.compute(atoms.positions, types, ei, len(atoms), sh)
    b = candidate.compute(atoms.positions, types, ei, len(atoms), sh)
    de, df, dw = (
        abs(a.energy - b.energy),
        float(np.abs(a.forces - b.forces).max()),
        float(np.abs(a.virial - b.virial).max()),
    )
    if not (
        de <= tol * max(1.0, abs(a.energy))
        and df <= tol * max(1.0, float(np.abs(a.forces).max()))
        and dw <= tol * max(1.0, float(np.abs(a.virial).max()))
    ):
        raise RuntimeError(
            f"{what} disagree: energy {b.energy} vs {a.energy} eV, max force difference {df:.2e} eV/A, "
            f"virial {dw:.2e} eV"
        )


def package_model(checkpoint: str | Path, out: str | Path, check_atoms=None) -> Path:
    """Build the deployable ``.nequip.zip`` of a training checkpoint with nequip-package (atomic write),
    then check that it predicts the checkpoint's energy, forces and virial (``check_same_predictions`` on
    ``check_atoms``). Returns the written path."""
    checkpoint, out = Path(checkpoint), Path(out)
    if not out.name.endswith(".nequip.zip"):
        raise ValueError(f"{out}: the deployed-model file must end in .nequip.zip")
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
    ref = load_potential(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir=out.parent, prefix=".package-")
    tmp = Path(tmpdir) / out.name
    try:
        cmd = [sys.executable, "-m", "nequip.scripts.package", "build", str(checkpoint), str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"nequip-package failed for {checkpoint}:\n{res.stderr[-2000:]}")
        write_zip_level(
            tmp, ref.level_of_theory
        )  # the checkpoint's level of theory travels with the package
        check_same_predictions(
            ref, load_potential(tmp), check_atoms, tol=1e-5, what=f"packaged model vs {checkpoint}"
        )
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def compile_model(
    model: str | Path, out: str | Path, device: str = "cpu", check_atoms=None, tol: float = 1e-4
) -> Path:
    """AOTInductor-compile a checkpoint, ``.nequip.zip``, shipped model's name or nequip 0.6.x deployed file (through
    ``legacy_port``; LegacyPortError names an option it does not implement) into ``out`` (``.nequip.pt2``) for
    ``device`` through nequip's export (minutes: a C++ build), then check that the file gives the eager model's (for
    a nequip 0.6 file: the TorchScript original's) energy, forces and virial on ``check_atoms`` (default: a rattled
    periodic cell of the model's elements) to ``tol`` (relative) before moving it into place."""
    src = resolve_model(model)
    out = Path(out)
    extra: dict[str, str] = {}
    if is_legacy_model(src):
        from .legacy_port import port_legacy  # lazy: the port module imports torch

        reference = LegacyAllegroPotential(src, device)
        graph_model = port_legacy(src, device)
        extra = legacy_provenance(src, reference.metadata)
    else:
        reference = load_potential(src, device)
        graph_model = reference.model
    tmp = out.with_name(".check-" + out.name)
    compile_graph_model(
        graph_model,
        tmp,
        device,
        level_of_theory=reference.level_of_theory,
        extra_metadata=extra,
        aten_scatter=bool(extra)
        and str(device).startswith("cpu"),  # the port on CPUs: measured faster
    )
    try:
        check_same_predictions(
            reference,
            CompiledAllegroPotential(tmp, device),
            check_atoms,
            tol=tol,
            what=f"compiled model vs {src}",
        )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def legacy_provenance(src: Path, meta: dict[str, str]) -> dict[str, str]:
    """What a compiled port records of its nequip 0.6 original: file name, SHA-256, versions and training config."""
    keep = ("nequip_version", "torch_version", "e3nn_version", "default_dtype", "config")
    out = {f"legacy_{k}": meta[k] for k in keep if meta.get(k)}
    out["legacy_source"] = src.name
    out["legacy_sha256"] = hashlib.sha256(src.read_bytes()).hexdigest()
    return out
