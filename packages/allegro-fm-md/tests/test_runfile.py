"""The TOML run file and the ``allegro-fm-md run`` command: a run, its outputs, and bad input stopped before step 0."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_md.cli import main
from allegro_fm_md.runfile import RunFile
from allegro_fm_md.scaling import mpi_command
from ase.build import bulk

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")

RUN = """
[system]
structure = "ar.extxyz"
replicate = [3, 3, 3]
[potential]
kind = "lj"
cutoff = 6.5
[run]
integrator = "{integrator}"
dt_fs = 4.0
steps = {steps}
temperature_K = 40
skin = 0.5
[output]
dir = "out"
thermo_every = 10
trajectory_every = 20
restart_every = 20
"""


def _setup(
    tmp_path: Path, integrator: str = "nve", steps: int = 40, extra: str = "", atoms=None
) -> Path:
    ase.io.write(
        tmp_path / "ar.extxyz",
        atoms if atoms is not None else bulk("Ar", "fcc", a=5.26, cubic=True),
    )
    f = tmp_path / "run.toml"
    f.write_text(RUN.format(integrator=integrator, steps=steps) + extra)
    return f


def test_run_writes_outputs_and_conserves_energy(tmp_path):
    f = _setup(tmp_path, steps=40)
    assert main(["run", str(f), "-q"]) == 0
    out = tmp_path / "out"
    t = np.loadtxt(out / "thermo.log")
    assert t[-1, 0] == 40 and len(t) == 5
    assert abs(t[-1, 5] - t[0, 5]) / 108 < 1e-5  # NVE: total energy per atom (eV)
    frames = ase.io.read(out / "trajectory.extxyz", ":")
    assert len(frames) == 3 and len(frames[0]) == 108
    assert (out / "restart.npz").exists() and (out / "trajectory.h5md").exists()
    assert main(["run", str(f), "-q"]) == 2  # the folder holds a run: never mixed with a new one
    assert main(["run", str(f), "-q", "--overwrite"]) == 0
    assert len(np.loadtxt(out / "thermo.log")) == 5


def test_resume_from_restart_equals_one_long_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert main(["run", str(_setup(a, steps=40)), "-q"]) == 0
    assert main(["run", str(_setup(b, steps=20)), "-q"]) == 0
    (b / "out" / "restart.npz").rename(b / "first.npz")
    f = _setup(b, steps=40, extra='restart_from = "first.npz"\n')
    assert RunFile.load(f).output.restart_from.endswith("first.npz")
    assert main(["run", str(f), "-q"]) == 0
    ta, tb = np.loadtxt(a / "out" / "thermo.log"), np.loadtxt(b / "out" / "thermo.log")
    np.testing.assert_array_equal(ta[-1, :13], tb[-1, :13])


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_key", "unknown keys in [run]"),
        ("cutoff_too_large", "larger than half the cell"),
        ("overlap", "closer than"),
        ("two_elements", "for one element"),
        ("truncated_restart", "not a readable restart file"),
        ("missing_structure", "cannot read structure"),
    ],
)
def test_bad_input_stops_before_any_step(tmp_path, capsys, case, message):
    atoms = None
    extra = ""
    f = _setup(tmp_path)
    if case == "unknown_key":
        f.write_text(f.read_text().replace("skin = 0.5", "skin = 0.5\nthermostat = 'x'"))
    elif case == "cutoff_too_large":
        f.write_text(f.read_text().replace("replicate = [3, 3, 3]", "replicate = [1, 1, 1]"))
    elif case == "overlap":
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
        atoms.positions[1] = atoms.positions[0] + 0.1
        f = _setup(tmp_path, atoms=atoms)
    elif case == "two_elements":
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
        atoms[0].symbol = "Kr"
        f = _setup(tmp_path, atoms=atoms)
    elif case == "truncated_restart":
        assert main(["run", str(f), "-q"]) == 0
        data = (tmp_path / "out" / "restart.npz").read_bytes()
        (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
        extra = 'restart_from = "cut.npz"\n'
        f = _setup(tmp_path, extra=extra)
        (tmp_path / "out" / "thermo.log").unlink()
    elif case == "missing_structure":
        (tmp_path / "ar.extxyz").write_text("3\nnot an extxyz file\n")
    assert main(["run", str(f), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if case == "overlap":
        assert "(0.173 A) (atoms " in err and "step 0" in err and "before any step" in err
    if case != "truncated_restart":
        assert not (tmp_path / "out" / "thermo.log").exists()  # nothing ran


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec (pip install mpi4py mpich)")
def test_cli_under_mpiexec_equals_one_rank(tmp_path):
    pytest.importorskip("mpi4py")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    assert main(["run", str(_setup(one, steps=40)), "-q"]) == 0
    f = _setup(two, steps=40)
    subprocess.run(
        mpi_command(2, "run", str(f), "-q"),
        check=True,
        timeout=300,
        capture_output=True,
    )
    t1, t2 = np.loadtxt(one / "out" / "thermo.log"), np.loadtxt(two / "out" / "thermo.log")
    np.testing.assert_allclose(t2[:, 2:13], t1[:, 2:13], rtol=0, atol=1e-9)
    r1, r2 = np.load(one / "out" / "restart.npz"), np.load(two / "out" / "restart.npz")
    np.testing.assert_allclose(r2["positions"], r1["positions"], rtol=0, atol=1e-9)


@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec (pip install mpi4py mpich)")
def test_nhc_tensile_run_on_two_ranks_equals_one_rank(tmp_path):
    """Nose-Hoover chain + uniaxial deformation along z: the cell changes every step (decomposition rebuilt)."""
    pytest.importorskip("mpi4py")
    extra = "tdamp_fs = 200.0\ndeform_axis = 'z'\nstrain_rate_per_fs = 1e-4\n"
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    for d in (one, two):
        f = _setup(d, integrator="nhc", steps=40)
        f.write_text(f.read_text().replace("skin = 0.5", "skin = 0.5\n" + extra))
    assert main(["run", str(one / "run.toml"), "-q"]) == 0
    subprocess.run(
        mpi_command(2, "run", str(two / "run.toml"), "-q"),
        check=True,
        timeout=300,
        capture_output=True,
    )
    t1, t2 = np.loadtxt(one / "out" / "thermo.log"), np.loadtxt(two / "out" / "thermo.log")
    np.testing.assert_allclose(t2[:, 2:13], t1[:, 2:13], rtol=0, atol=1e-9)
    r1 = np.load(one / "out" / "restart.npz")
    assert r1["cell"][2, 2] == pytest.approx(
        3 * 5.26 * (1 + 1e-4 * 160.0), rel=1e-12
    )  # 40 steps x 4 fs
    ref = (
        tmp_path / "ref"
    )  # the same run without deformation: tension raises sigma_zz (GPa) relative to it
    ref.mkdir()
    f = _setup(ref, integrator="nhc", steps=40)
    f.write_text(f.read_text().replace("skin = 0.5", "skin = 0.5\ntdamp_fs = 200.0\n"))
    assert main(["run", str(f), "-q"]) == 0
    t0 = np.loadtxt(ref / "out" / "thermo.log")
    assert t1[-1, 9] - t0[-1, 9] > 0.02 and abs(t1[-1, 7] - t0[-1, 7]) < t1[-1, 9] - t0[-1, 9]


def test_fire_run_stops_when_converged_and_two_ranks_agree(tmp_path):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.rattle(0.2, seed=2)
    runs = {}
    for n in (1, 2) if MPIEXEC else (1,):
        d = tmp_path / f"r{n}"
        d.mkdir()
        f = _setup(d, integrator="fire", steps=2000, atoms=atoms)
        f.write_text(f.read_text().replace("skin = 0.5", "skin = 0.5\nfmax = 1e-3"))
        if n == 1:
            assert main(["run", str(f), "-q"]) == 0
        else:
            subprocess.run(
                mpi_command(2, "run", str(f), "-q"),
                check=True,
                timeout=300,
                capture_output=True,
            )
        runs[n] = np.loadtxt(d / "out" / "thermo.log"), np.load(d / "out" / "restart.npz")
    t, r = runs[1]
    assert (
        t[-1, 0] < 2000 and np.sqrt((r["forces"] ** 2).sum(axis=1)).max() < 1e-3
    )  # stopped early, converged
    assert t[-1, 3] < t[0, 3]  # energy went down
    if 2 in runs:
        np.testing.assert_allclose(runs[2][0][:, 3], t[:, 3], rtol=0, atol=1e-9)
        np.testing.assert_allclose(runs[2][1]["positions"], r["positions"], rtol=0, atol=1e-8)


def test_cell_relaxation_from_the_run_file_reaches_zero_stress(tmp_path, capsys):
    """LJ argon strained 4 %: FIRE on positions + cell ends at zero stress, the LJ fcc minimum, written atomically;
    more than one rank and overlapping atoms are refused before any step."""
    from allegro_fm_md import run
    from ase import units

    ase.io.write(tmp_path / "ar.extxyz", bulk("Ar", "fcc", a=5.26 * 1.04, cubic=True))
    toml = RUN.format(integrator="fire", steps=400).replace(
        "dt_fs = 4.0", "relax_cell = true\nfmax = 0.001\ndt_fs = 4.0"
    )
    (tmp_path / "run.toml").write_text(toml)
    assert main(["run", str(tmp_path / "run.toml"), "-q"]) == 0
    assert "cell relaxation converged" in capsys.readouterr().out
    a = ase.io.read(tmp_path / "out" / "relaxed.extxyz")
    assert len(a) == 108 and a.info["converged"]
    a0 = ase.io.read(tmp_path / "ar.extxyz")
    assert np.allclose(a0.cell.lengths(), 5.26 * 1.04)  # the input is never modified
    from allegro_fm_md import EngineCalculator, LennardJones

    a.calc = EngineCalculator(LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5))
    assert np.abs(a.get_stress() / units.GPa).max() < 1e-2  # GPa; 0.12 GPa before relaxation
    # the zero-stress lattice constant of the same truncated LJ by ASE's own calculator (a root of its stress, found here:
    # 5.3498 A); 0.01 GPa of residual stress is 0.008 A at this crystal's 1.2 GPa/A
    from ase.calculators.lj import LennardJones as AseLJ
    from scipy.optimize import brentq

    def ase_pressure(lat):
        c = bulk("Ar", "fcc", a=lat, cubic=True) * (3, 3, 3)
        c.calc = AseLJ(sigma=3.40, epsilon=0.0104, rc=6.5)
        return c.get_stress()[0]

    assert a.cell.lengths() / 3 == pytest.approx(
        brentq(ase_pressure, 5.1, 5.5, xtol=1e-8), abs=0.01
    )

    from allegro_fm_md import SerialComm

    class TwoRanks(SerialComm):  # the Comm contract over one process, claiming a second rank
        size, rank = 2, 0

    with pytest.raises(ValueError, match="one rank"):
        run(RunFile.load(tmp_path / "run.toml"), comm=TwoRanks(), overwrite=True)
    bad = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    bad.positions[1] = bad.positions[0] + [0.1, 0.0, 0.0]
    ase.io.write(tmp_path / "ar.extxyz", bad)
    (tmp_path / "run.toml").write_text(
        toml.replace("replicate = [3, 3, 3]", "replicate = [1, 1, 1]")
    )
    assert main(["run", str(tmp_path / "run.toml"), "-q", "--overwrite"]) == 2
    assert "atoms 0 and 1 are 0.100 A apart" in capsys.readouterr().err


def test_anisotropic_npt_from_the_run_file_resumes_bit_for_bit(tmp_path):
    """barostat = "anisotropic" reaches the integrator from the run file (the axes scale independently: Lx/Ly leaves
    0.95, which isotropic scaling keeps; the physics is tested in test_nhc_deform.py); a run resumed from its restart
    file (barostat RNG included) equals one long run; an unknown barostat is refused before step 0."""
    strained = bulk("Ar", "fcc", a=5.26, cubic=True)
    strained.set_cell(strained.cell * [0.95, 1.0, 1.0], scale_atoms=True)
    npt = 'pressure_GPa = 0.0\ncompressibility_per_GPa = 0.3\ntaup_fs = 200.0\nbarostat = "anisotropic"\n'
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    fa = _setup(a, "langevin", 150, atoms=strained)
    fa.write_text(fa.read_text().replace("skin = 0.5", "skin = 0.5\n" + npt))
    assert main(["run", str(fa), "-q"]) == 0
    lx, ly, lz = ase.io.read(a / "out" / "trajectory.extxyz", -1).cell.lengths()
    assert abs(lx / ly - 0.95) > 1e-3 and abs(ly / lz - 1) > 1e-3
    fb = _setup(b, "langevin", 50, atoms=strained)
    fb.write_text(fb.read_text().replace("skin = 0.5", "skin = 0.5\n" + npt))
    assert main(["run", str(fb), "-q"]) == 0
    (b / "out" / "restart.npz").rename(b / "first.npz")
    fb.write_text(
        fb.read_text().replace("steps = 50", "steps = 150") + 'restart_from = "first.npz"\n'
    )
    assert main(["run", str(fb), "-q"]) == 0
    np.testing.assert_array_equal(
        np.loadtxt(a / "out" / "thermo.log")[-1, :13], np.loadtxt(b / "out" / "thermo.log")[-1, :13]
    )
    fb.write_text(fb.read_text().replace('"anisotropic"', '"semi"'))
    assert main(["run", str(fb), "-q", "--overwrite"]) == 2


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("steps = 40", 'steps = "10"', "[run] steps = '10': must be int, not str"),
        ("steps = 40", "steps = -5", "[run] steps = -5: must be >= 0"),
        ("steps = 40", "steps = 2.5", "[run] steps = 2.5: must be int, not float"),
        ("thermo_every = 10", "thermo_every = 0", "[output] thermo_every = 0: must be >= 1"),
        (
            "temperature_K = 40",
            "temperature_K = 1e308",
            "[run] temperature_K = 1e+308: must be >= 0.0 and <= 100000",
        ),
        ("temperature_K = 40", "temperature_K = -10", "[run] temperature_K = -10: must be >= 0.0"),
        (
            "temperature_K = 40",
            "temperature_K = nan",
            "[run] temperature_K = nan: must be a finite number",
        ),
        ("dt_fs = 4.0", "dt_fs = 0", "[run] dt_fs = 0: must be > 0.0"),
        (
            "cutoff = 6.5",
            'cutoff = 6.5\ndevice = "tpu"',
            "[potential] device = 'tpu': must be cpu, cuda, xpu",
        ),
    ],
)
def test_run_file_values_are_type_and_range_checked(tmp_path, capsys, old, new, message):
    """Hardening: wrong types and out-of-range values are refused with file, table and key named, before any output."""
    f = _setup(tmp_path)
    f.write_text(f.read_text().replace(old, new, 1))
    assert main(["run", str(f), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_frictions_of_a_first_run(tmp_path, capsys, monkeypatch):
    """A copied example runs where the command line says (`-o`, relative to the current directory, the run file's hash
    kept); a run shorter than thermo_every still logs and saves its last step and reports a finite drift; --dry-run
    refuses an unknown integrator before planning."""
    import json

    f = _setup(tmp_path, steps=3)  # thermo_every = 10, trajectory_every = 20
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", str(f), "-o", "mine", "-q"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "out").exists() and (work / "mine" / "thermo.log").exists()
    assert f"output in {work / 'mine'}" in out and "nan" not in out and "done: step 3," in out
    steps = np.loadtxt(work / "mine" / "thermo.log")[:, 0]
    assert steps.tolist() == [0, 3]
    from allegro_fm_md.analysis import read_frames

    assert [a.info["step"] for a in read_frames(work / "mine" / "trajectory.h5md")] == [0, 3]
    run_json = json.loads((work / "mine" / "run.json").read_text())
    assert run_json["runfile_sha256"] == RunFile.load(f).source_sha256
    (work / "taken").write_text("a file, not a folder\n")
    assert main(["run", str(f), "-o", "taken", "-q"]) == 2  # refused naming it, the file untouched
    assert "taken: the output folder is a file" in capsys.readouterr().err
    assert (work / "taken").read_text() == "a file, not a folder\n"
    bad = _setup(tmp_path, integrator="verlett")
    assert main(["run", str(bad), "--dry-run", "--ranks", "2"]) == 2
    assert "verlett" in capsys.readouterr().err
