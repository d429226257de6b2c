"""Deployment: ``package_model`` (checkpoint -> ``.nequip.zip``), ``compile_model`` (-> AOTInductor ``.nequip.pt2``) and
``export_lammps_mliap``: the LAMMPS ML-IAP file through nequip's ``nequip-prepare-lmp-mliap`` (needs the
``lammps`` Python package; running it needs a LAMMPS built with ML-IAP's Python coupling, with or without KOKKOS:
see ``lammps_mliap.py``).
``compile_model``: the AOTInductor ``.nequip.pt2`` deployment file (see ``compiled.py``); checkpoints and
``.nequip.zip`` packages run eagerly on any torch device, a ``.nequip.pt2`` on the device type it was built for.
"""

from __future__ import annotations

from pathlib import Path

from .loading import builtin_model_path, load_potential


def package_model(checkpoint: str | Path, out: str | Path, check_atoms=None) -> Path:
    """Build the deployable ``.nequip.zip`` of a training checkpoint with nequip-package (atomic write),
    then check that it predicts the same energy and forces as the checkpoint (on ``check_atoms``, default
    a small rattled structure of the model's first elements). Returns the written path."""
    import os
    import subprocess
    import sys
    import tempfile

    import numpy as np

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
        new = load_potential(tmp)
        if check_atoms is None:
            from ase import Atoms

            rng = np.random.default_rng(0)
            sp = ref.species[: min(3, len(ref.species))]
            check_atoms = Atoms([sp[i % len(sp)] for i in range(8)], positions=rng.uniform(0, 4.0, (8, 3)) + 1.5 * np.eye(3)[np.arange(8) % 3])
        from .calculator import periodic_edges

        pos = check_atoms.positions
        ei, sh = periodic_edges(pos, np.array(check_atoms.cell), check_atoms.pbc, ref.cutoff)
        types = ref.types_of(check_atoms.get_chemical_symbols())
        a, b = ref.compute(pos, types, ei, len(pos), sh), new.compute(pos, types, ei, len(pos), sh)
        if not (abs(a.energy - b.energy) < 1e-5 * max(1.0, abs(a.energy)) and np.allclose(a.forces, b.forces, atol=1e-4)):
            raise RuntimeError(f"packaged model disagrees with {checkpoint}: energy {b.energy} vs {a.energy} eV")
        os.replace(tmp, out)
    finally:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def export_lammps_mliap(model: str | Path, out: str | Path, compile: bool = False) -> Path:
    """Write the LAMMPS ML-IAP file (``pair_style mliap unified OUT 0``; ``pair_coeff * * <elements>``) of a
    checkpoint, a ``.nequip.zip`` package or a shipped model's name, through nequip-prepare-lmp-mliap, atomically;
    checks that the file holds the model's elements and cutoff. ``compile``: let LAMMPS torch.compile it at start."""
    import shutil
    import subprocess
    import sys

    import torch

    src = Path(model)
    if not src.exists():
        src = builtin_model_path(str(model))
    out = Path(out)
    if not out.name.endswith(".nequip.lmp.pt"):
        raise ValueError(f"{out}: the LAMMPS ML-IAP file name must end in .nequip.lmp.pt")
    prep = shutil.which("nequip-prepare-lmp-mliap", path=str(Path(sys.executable).parent)) or shutil.which("nequip-prepare-lmp-mliap")
    if not prep:
        raise RuntimeError("nequip-prepare-lmp-mliap not found (it ships with nequip)")
    try:
        import lammps.mliap  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("the LAMMPS ML-IAP file needs the lammps Python package: pip install lammps") from exc
    tmp = out.with_name(out.name.replace(".nequip.lmp.pt", ".tmp.nequip.lmp.pt"))
    cmd = [prep, str(src), str(tmp)] + ([] if compile else ["--no-compile"])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"nequip-prepare-lmp-mliap failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    from .lammps_mliap import to_any_lammps

    try:
        wrapper = to_any_lammps(torch.load(tmp, weights_only=False))  # runs in KOKKOS and plain (CPU) ML-IAP builds
        torch.save(wrapper, tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    pot = load_potential(src)
    if list(wrapper.element_types) != list(pot.species) or abs(2 * wrapper.rcutfac - pot.cutoff) > 1e-6:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ML-IAP file disagrees with the model: {wrapper.element_types} / {2 * wrapper.rcutfac} A vs "
                           f"{pot.species} / {pot.cutoff} A")
    tmp.replace(out)
    return out


def lammps_mliap_input(model_file: str | Path, data_file: str | Path, species) -> str:
    """LAMMPS input lines that read ``data_file`` (metal units: eV, A, ps; atomic style; periodic) and use the
    ML-IAP ``model_file`` of ``export_lammps_mliap`` for LAMMPS atom types 1.. = ``species``; append the run."""
    return (f"units metal\natom_style atomic\nboundary p p p\nread_data {data_file}\n"
            f"pair_style mliap unified {model_file} 0\npair_coeff * * {' '.join(species)}\n")


def lammps_environment(lmp: str | Path, lmp_python: str | Path | None = None) -> dict:
    """Environment variables for running the LAMMPS binary ``lmp`` on an Allegro-FM ML-IAP file: this Python
    environment's bin/ first on PATH (LAMMPS's embedded interpreter then finds torch, nequip, allegro_fm_model),
    its lib/ (MPI) and the binary's folder (liblammps) on LD_LIBRARY_PATH, that build's ``python/`` folder
    (``lmp_python``, its own ``lammps`` package) on PYTHONPATH, one OpenMP thread per rank."""
    import os
    import sys

    env_bin = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=os.pathsep.join([str(env_bin), os.environ.get("PATH", "")]),
               LD_LIBRARY_PATH=os.pathsep.join([str(env_bin.parent / "lib"), str(Path(lmp).resolve().parent),
                                                os.environ.get("LD_LIBRARY_PATH", "")]))
    if lmp_python:
        env["PYTHONPATH"] = os.pathsep.join([str(lmp_python), os.environ.get("PYTHONPATH", "")])
    return env


def compile_model(model: str | Path, out: str | Path, device: str = "cpu", check_atoms=None, tol: float = 1e-4) -> Path:
    """AOTInductor-compile a checkpoint, ``.nequip.zip`` or shipped model's name into ``out`` (``.nequip.pt2``) for
    ``device`` through nequip's export (minutes: a C++ build), then check that the file gives the eager model's
    energy, forces and virial on ``check_atoms`` (default: a rattled periodic cell of the model's elements) to
    ``tol`` (relative) before moving it into place."""
    import numpy as np

    from .compiled import CompiledAllegroPotential, compile_graph_model, example_cell

    src = Path(model)
    if not src.exists():
        src = builtin_model_path(str(model))
    out = Path(out)
    eager = load_potential(src, device)
    tmp = out.with_name(".check-" + out.name)
    compile_graph_model(eager.model, tmp, device)
    try:
        comp = CompiledAllegroPotential(tmp, device)
        if check_atoms is None:
            check_atoms = example_cell(eager.species)
        from .calculator import periodic_edges

        ei, sh = periodic_edges(check_atoms.positions, np.array(check_atoms.cell), check_atoms.pbc, eager.cutoff)
        types = eager.types_of(check_atoms.get_chemical_symbols())
        a = eager.compute(check_atoms.positions, types, ei, len(check_atoms), sh)
        b = comp.compute(check_atoms.positions, types, ei, len(check_atoms), sh)
        scale_f = max(1.0, float(np.abs(a.forces).max()))
        scale_w = max(1.0, float(np.abs(a.virial).max()))
        if not (abs(a.energy - b.energy) <= tol * max(1.0, abs(a.energy)) and np.abs(a.forces - b.forces).max() <= tol * scale_f
                and np.abs(a.virial - b.virial).max() <= tol * scale_w):
            raise RuntimeError(f"compiled model disagrees with {src}: energy {b.energy} vs {a.energy} eV, max force difference "
                               f"{np.abs(a.forces - b.forces).max():.2e} eV/A, virial {np.abs(a.virial - b.virial).max():.2e} eV")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out

