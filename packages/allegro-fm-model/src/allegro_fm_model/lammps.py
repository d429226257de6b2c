"""Running Allegro-FM models in LAMMPS: the ML-IAP file (``export_lammps_mliap``, through nequip's
``nequip-prepare-lmp-mliap``; the object inside it is ``lammps_mliap.AllegroFMMLIAPWrapper``), the input lines that
use it (``lammps_mliap_input``) and the environment a LAMMPS binary needs to run it (``lammps_environment``); one
evaluation through ``pair_style allegro`` (``pair_allegro_single_point``: a check against the ASE calculator).
Needs the ``lammps`` Python package to write the file, and a LAMMPS built with ML-IAP's Python coupling (with or
without KOKKOS) to run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .loading import load_potential, resolve_model


def export_lammps_mliap(model: str | Path, out: str | Path, compile: bool = False) -> Path:
    """Write the LAMMPS ML-IAP file (``pair_style mliap unified OUT 0``; ``pair_coeff * * <elements>``) of a
    checkpoint, a ``.nequip.zip`` package or a shipped model's name, through nequip-prepare-lmp-mliap, atomically;
    checks that the file holds the model's elements and cutoff. ``compile``: let LAMMPS torch.compile it at start."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    src = resolve_model(model)
    out = Path(out)
    if not out.name.endswith(".nequip.lmp.pt"):
        raise ValueError(f"{out}: the LAMMPS ML-IAP file name must end in .nequip.lmp.pt")
    prep = shutil.which(
        "nequip-prepare-lmp-mliap", path=str(Path(sys.executable).parent)
    ) or shutil.which("nequip-prepare-lmp-mliap")
    if not prep:
        raise RuntimeError("nequip-prepare-lmp-mliap not found (it ships with nequip)")
    try:
        import lammps.mliap  # noqa: F401  (lazy: optional; only checks the ML-IAP coupling is there)
    except ImportError as exc:
        raise RuntimeError(
            "the LAMMPS ML-IAP file needs the lammps Python package: pip install lammps"
        ) from exc
    tmp = out.with_name(out.name.replace(".nequip.lmp.pt", ".tmp.nequip.lmp.pt"))
    cmd = [prep, str(src), str(tmp)] + ([] if compile else ["--no-compile"])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"nequip-prepare-lmp-mliap failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
        )
    try:
        from .lammps_mliap import (
            to_any_lammps,
        )  # lazy: nequip's wrapper needs LAMMPS's Python module, absent from a plain install

        wrapper = to_any_lammps(
            torch.load(tmp, weights_only=False)
        )  # runs in KOKKOS and plain (CPU) ML-IAP builds
        torch.save(wrapper, tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    pot = load_potential(src)
    if (
        list(wrapper.element_types) != list(pot.species)
        or abs(2 * wrapper.rcutfac - pot.cutoff) > 1e-6
    ):
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"ML-IAP file disagrees with the model: {wrapper.element_types} / {2 * wrapper.rcutfac} A vs "
            f"{pot.species} / {pot.cutoff} A"
        )
    tmp.replace(out)
    return out


def lammps_mliap_input(model_file: str | Path, data_file: str | Path, species) -> str:
    """LAMMPS input lines that read ``data_file`` (metal units: eV, A, ps; atomic style; periodic) and use the
    ML-IAP ``model_file`` of ``export_lammps_mliap`` for LAMMPS atom types 1.. = ``species``; append the run."""
    return (
        f"units metal\natom_style atomic\nboundary p p p\nread_data {data_file}\n"
        f"pair_style mliap unified {model_file} 0\npair_coeff * * {' '.join(species)}\n"
    )


def lammps_environment(lmp: str | Path, lmp_python: str | Path | None = None) -> dict:
    """Environment variables for running the LAMMPS binary ``lmp`` on an Allegro-FM ML-IAP file: this Python
    environment's bin/ first on PATH (LAMMPS's embedded interpreter then finds torch, nequip, allegro_fm_model),
    its lib/ (MPI) and the binary's folder (liblammps) on LD_LIBRARY_PATH, that build's ``python/`` folder
    (``lmp_python``, its own ``lammps`` package) on PYTHONPATH, one OpenMP thread per rank."""
    env_bin = Path(sys.executable).parent
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PATH=os.pathsep.join([str(env_bin), os.environ.get("PATH", "")]),
        LD_LIBRARY_PATH=os.pathsep.join(
            [
                str(env_bin.parent / "lib"),
                str(Path(lmp).resolve().parent),
                os.environ.get("LD_LIBRARY_PATH", ""),
            ]
        ),
    )
    if lmp_python:
        env["PYTHONPATH"] = os.pathsep.join([str(lmp_python), os.environ.get("PYTHONPATH", "")])
    return env


@dataclass(frozen=True)
class LammpsPoint:
    """One LAMMPS evaluation: potential energy (eV), forces (eV/A, in the Atoms' own frame), pressure (bar, metal
    units; no velocities: the virial alone)."""

    energy: float
    forces: np.ndarray
    pressure_bar: float


def pair_allegro_single_point(
    lmp: str | Path,
    atoms,
    model_file: str | Path,
    workdir: str | Path,
    ranks: int = 1,
    mpiexec: str | None = None,
) -> LammpsPoint:
    """Evaluate ``model_file`` on ``atoms`` (periodic) with LAMMPS's ``pair_style allegro`` (``lmp``: a LAMMPS built with
    pair_nequip_allegro; a ``.nequip.pt2`` / ``.nequip.pth`` file, or a nequip 0.6 ``.pth`` with the v0.6.0 pair) on
    ``ranks`` MPI ranks (``mpiexec``: default this environment's), ``run 0``, in ``workdir``. LAMMPS turns a
    triclinic cell so that a is along x and b in the xy plane: its forces are rotated back to the cell's frame.
    RuntimeError with the end of LAMMPS's output when it fails."""
    import ase.io  # lazy: only this entry point writes LAMMPS files
    from ase.calculators.lammps import Prism  # lazy: as above

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    species = sorted(set(atoms.get_chemical_symbols()))
    ase.io.write(work / "cell.data", atoms, format="lammps-data", specorder=species, masses=True)
    (work / "in.point").write_text(
        "units metal\natom_style atomic\natom_modify map yes\nnewton on\nread_data cell.data\n"
        f"pair_style allegro\npair_coeff * * {Path(model_file).resolve()} {' '.join(species)}\n"
        "thermo_style custom step pe press\nthermo_modify format float %.10f\n"
        "dump 1 all custom 1 forces.dump id fx fy fz\ndump_modify 1 sort id format float %.12g\nrun 0\n"
    )
    cmd = [str(lmp), "-in", "in.point", "-log", "log.lammps"]
    if ranks > 1:
        mpi = mpiexec or shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"
        cmd = [mpi, "-n", str(ranks), *cmd]
    p = subprocess.run(
        cmd,
        cwd=work,
        env=lammps_environment(lmp),  # this environment's MPI and one OpenMP thread per rank
        capture_output=True,
        text=True,
        timeout=600,
    )
    if p.returncode != 0:
        raise RuntimeError(
            f"{lmp} failed on {model_file} ({work}):\n{(p.stdout + p.stderr)[-3000:]}"
        )
    lines = p.stdout.splitlines()
    head = [ln.split()[:2] for ln in lines].index(["Step", "PotEng"])
    _, energy, press = map(float, lines[head + 1].split())
    forces = Prism(np.array(atoms.cell)).vector_to_ase(
        np.loadtxt(work / "forces.dump", skiprows=9)[:, 1:]
    )
    return LammpsPoint(energy, forces, press)
