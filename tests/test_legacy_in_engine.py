"""A nequip 0.6.x deployed TorchScript model (the published Allegro-FM weights' format) runs unchanged through
``allegro-fm-md run``: as TorchScript (``compile = false``) it conserves energy in NVE; by default it is compiled on
first use through its plain-PyTorch port (``legacy_port.py``) and runs on 1 and 2 MPI ranks with the same results;
``allegro-fm evaluate`` accepts it.

The fixture model is float32 (as the published files are), so N ranks agree with 1 rank to float32 round-off, not
bit for bit: forces summed in another order differ by ~1e-6 eV/A and positions drift apart by ~1e-7 A over 40 steps.
The tolerances below (1e-5 A, 1e-4 eV) allow that and nothing more.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import ase.io
import numpy as np
import pytest
from afm_testutil import LEGACY as MODEL
from afm_testutil import MPIEXEC
from allegro_fm_md.scaling import mpi_command

RUN = """
[system]
structure = "calcite.extxyz"
replicate = [3, 3, 1]          # 270 atoms, 13.0 A between faces > 2 x 5.2 A
[potential]
kind = "allegro"
model = "{model}"
options = {{ compile = {compile} }}
[run]
integrator = "nve"
dt_fs = 0.5
steps = {steps}
temperature_K = 300
skin = 1.0
seed = 1
[output]
dir = "out"
thermo_every = 10
trajectory_every = 20
restart_every = 20
"""


def _setup(folder: Path, steps: int, compile: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    calcite = ase.io.read(MODEL.parent / "structures.extxyz", 1)
    ase.io.write(folder / "calcite.extxyz", calcite)
    f = folder / "run.toml"
    f.write_text(RUN.format(model=MODEL, steps=steps, compile=str(compile).lower()))
    return f


def test_nve_conserves_energy(tmp_path):
    from allegro_fm_md.cli import main

    assert main(["run", str(_setup(tmp_path, 200, compile=False)), "-q"]) == 0
    t = np.loadtxt(tmp_path / "out" / "thermo.log")
    etot = t[:, 5] / 270
    print(
        f"legacy model NVE, 270 atoms, 100 fs: total-energy spread {np.ptp(etot):.2e} eV/atom, T {t[0, 2]:.0f} -> {t[-1, 2]:.0f} K"
    )
    assert np.ptp(t[:, 2]) > 20  # atoms move: kinetic and potential energy exchange
    assert np.ptp(etot) < 3e-4  # float32 model; the potential energy swings by ~0.04 eV/atom


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec (pip install mpi4py mpich)")
def test_two_ranks_equal_one_rank(tmp_path):
    """The compiled port (the default for a nequip 0.6 file; compiled once, the ranks wait on the cache lock)."""
    pytest.importorskip("mpi4py")
    from allegro_fm_md.cli import main
    from allegro_fm_model import CompiledAllegroPotential
    from allegro_fm_model.plugin import md_potential

    class Spec:
        model, models, options = str(MODEL), [], {}

    assert isinstance(md_potential(Spec(), None, "cpu"), CompiledAllegroPotential)

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["run", str(_setup(one, 40)), "-q"]) == 0
    f = _setup(two, 40)
    subprocess.run(
        mpi_command(2, "run", str(f), "-q"),
        check=True,
        timeout=300,
        capture_output=True,
    )
    t1, t2 = np.loadtxt(one / "out" / "thermo.log"), np.loadtxt(two / "out" / "thermo.log")
    r1, r2 = np.load(one / "out" / "restart.npz"), np.load(two / "out" / "restart.npz")
    dx, de = np.abs(r2["positions"] - r1["positions"]).max(), np.abs(t2[:, 3] - t1[:, 3]).max()
    print(
        f"2 ranks vs 1 rank after 40 steps: max |dx| {dx:.1e} A, max |dE_pot| {de:.1e} eV, "
        f"max |dF| {np.abs(r2['forces'] - r1['forces']).max():.1e} eV/A"
    )
    assert dx < 1e-5 and de < 1e-4
    np.testing.assert_allclose(r2["forces"], r1["forces"], atol=1e-4)


def test_evaluate_accepts_the_legacy_file(tmp_path):
    """``allegro-fm evaluate`` with the legacy file on labels = its own predictions + known offsets (2 meV/atom,
    3 meV/A): it reports exactly those offsets."""
    import tea_align
    from allegro_fm_model import AllegroFMCalculator, load_potential
    from allegro_fm_model.cli import main
    from allegro_fm_model.evaluate import evaluate
    from ase.calculators.singlepoint import SinglePointCalculator

    pot = load_potential(MODEL)
    frames = []
    for a in ase.io.read(MODEL.parent / "train.extxyz", ":48:6"):
        a.calc = AllegroFMCalculator(pot)
        e, f = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=e + 0.002 * len(a), forces=f + 0.003)
        frames.append(b)
    ase.io.write(tmp_path / "x.extxyz", frames)
    tea_align.convert([f"{tmp_path / 'x.extxyz'},level=L,name=mix"], tmp_path / "x.h5")
    err = evaluate(pot, str(tmp_path / "x.h5"))
    assert err.frames == len(frames) == 8
    assert err.energy["all"] == pytest.approx(2.0, rel=1e-3)
    assert err.forces["all"] == pytest.approx(3.0, rel=1e-3)
    assert (
        main(["evaluate", str(MODEL), str(tmp_path / "x.h5"), "-o", str(tmp_path / "eval.md")]) == 0
    )
    assert "| mix |" in (tmp_path / "eval.md").read_text()
