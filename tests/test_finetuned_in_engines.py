"""What ``allegro-fm finetune`` writes from a nequip 0.6 file runs unchanged wherever that file runs (issue #36).

The fixture file fine-tuned for one epoch through the port engine, with everything #36 adds at once (a replay set
labelled by the file itself, per-species force weights, a per-source weight): its output

- runs in ``allegro-fm-md run`` (NVE, as TorchScript), whose step-0 potential energy is the ASE calculator's and whose
  total energy holds;
- runs in a LAMMPS built with the legacy ``pair_style allegro`` (pair_nequip_allegro v0.6.0; path in
  $AFM_LMP_ALLEGRO_LEGACY, recipe packages/allegro-fm-model/scripts/lammps_peer/build_legacy_pair_allegro.sh; skipped
  without it) on 1 and 2 MPI ranks, with the ASE calculator's energy, forces and pressure.

Float32 model: energies agree to 1e-6 eV/atom and forces to 1e-4 eV/A between engines (round-off, stated).
"""

from __future__ import annotations

import os

import ase.io
import numpy as np
import pytest
import tea_align
from afm_testutil import LEGACY, MPIEXEC

RUN = """
[system]
structure = "calcite.extxyz"
replicate = [3, 3, 1]
[potential]
kind = "allegro"
model = "{model}"
options = {{ compile = false }}
[run]
integrator = "nve"
dt_fs = 0.25
steps = 20
temperature_K = 300
skin = 1.0
seed = 1
[output]
dir = "out"
thermo_every = 5
"""


def _new_data(calcite, out, level: str, sigma: float, seed: int, distort: bool = False):
    """Six rattled calcite cells labelled by the shipped model (``distort``: energies + 10 meV/atom, forces x 1.1, so
    that a fine-tune has something to learn), written as a tea-align dataset ``out`` (source ``new``) at ``level``."""
    from allegro_fm_model import AllegroFMCalculator, load_potential
    from ase.calculators.singlepoint import SinglePointCalculator

    calc = AllegroFMCalculator(load_potential("allegro-fm-mini"))
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(6):
        a = calcite.copy()
        a.positions += rng.normal(0, sigma, a.positions.shape)
        a.calc = calc
        e, f, st = a.get_potential_energy(), a.get_forces(), a.get_stress()
        if distort:
            e, f = e + 0.01 * len(a), f * 1.1
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=st)
        frames.append(a)
    ase.io.write(out.with_suffix(".extxyz"), frames)
    tea_align.convert([f"{out.with_suffix('.extxyz')},level={level},name=new"], out)
    return out


def _md_matches_ase(model, calcite, folder):
    """``allegro-fm-md run`` of RUN with ``model`` on calcite 3x3x1; asserts its step-0 potential energy is the ASE
    calculator's (float32: 1e-6 eV/atom) and returns the thermo table."""
    from allegro_fm_md.cli import main
    from allegro_fm_model import AllegroFMCalculator, load_potential

    ase.io.write(folder / "calcite.extxyz", calcite)
    (folder / "run.toml").write_text(RUN.format(model=model))
    assert main(["run", str(folder / "run.toml"), "-q"]) == 0
    t = np.loadtxt(folder / "out" / "thermo.log")
    big = calcite.repeat((3, 3, 1))
    big.calc = AllegroFMCalculator(load_potential(model))
    assert t[0, 3] == pytest.approx(big.get_potential_energy(), abs=1e-6 * len(big))
    return t


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The fixture file fine-tuned (1 epoch, port engine) on calcite labelled by the shipped model, with replay
    (portlandite labelled by the file itself), species_weights {Ca = 2} and oversample {new = 2} (its source)."""
    from allegro_fm_model.legacy_finetune import finetune_legacy
    from allegro_fm_model.replay import make_replay
    from allegro_fm_model.training import TrainSettings

    d = tmp_path_factory.mktemp("tuned")
    calcite, portlandite = (
        ase.io.read(LEGACY.parent / "structures.extxyz", 1),
        ase.io.read(LEGACY.parent / "structures.extxyz", 0),
    )
    _new_data(calcite, d / "ft.h5", "L", 0.08, 3)
    make_replay(LEGACY, [portlandite.repeat((2, 2, 1))], d / "replay.h5", copies=2, progress=False)
    s = TrainSettings(
        dataset=str(d / "ft.h5"),
        run_dir=str(d / "run"),
        init_from=str(LEGACY),
        max_epochs=1,
        batch_size=3,
        learning_rate=5e-4,
        val_fraction=0.2,
        test_fraction=0.0,
        replay=str(d / "replay.h5"),
        species_weights=(("Ca", 2.0),),
        oversample=(("new", 2),),
    )
    out = finetune_legacy(s, progress=False, engine="port") / "best.pth"
    assert out.read_bytes() != LEGACY.read_bytes()
    return out, calcite


def test_the_fine_tuned_file_runs_in_allegro_fm_md(tuned, tmp_path):
    t = _md_matches_ase(*tuned, tmp_path)
    # NVE from a start far from this model's minimum (the potential energy falls by ~10 eV in 5 fs, T 300 -> 600 K): the
    # total energy moves by under 1 % of that (velocity Verlet at 0.25 fs, float32 model)
    de_pot, de_tot = np.ptp(t[:, 3]), np.ptp(t[:, 5])
    print(
        f"allegro-fm-md NVE: potential energy moved {de_pot:.3g} eV, total energy {de_tot:.2g} eV"
    )
    assert de_pot > 1.0 and de_tot < 0.01 * de_pot


@pytest.mark.parametrize("ranks", [1, 2])
def test_the_fine_tuned_file_runs_in_a_real_legacy_pair_allegro(tuned, tmp_path, ranks):
    lmp = os.environ.get("AFM_LMP_ALLEGRO_LEGACY", "")
    if not lmp:
        pytest.skip(
            "set AFM_LMP_ALLEGRO_LEGACY to a LAMMPS with pair_nequip_allegro v0.6.0 "
            "(packages/allegro-fm-model/scripts/lammps_peer/build_legacy_pair_allegro.sh)"
        )
    if ranks > 1 and MPIEXEC is None:
        pytest.skip("needs mpiexec (pip install mpi4py mpich)")
    from allegro_fm_model import AllegroFMCalculator, load_potential, pair_allegro_single_point

    model, calcite = tuned
    atoms = calcite.repeat((2, 1, 1))
    atoms.rattle(0.05, seed=4)
    pt = pair_allegro_single_point(lmp, atoms, model, tmp_path, ranks=ranks, mpiexec=MPIEXEC)
    e_lmp, f_lmp, p_lmp = pt.energy, pt.forces, pt.pressure_bar
    atoms.calc = AllegroFMCalculator(load_potential(model))
    e_ase, f_ase = atoms.get_potential_energy(), atoms.get_forces()
    p_ase = (
        -atoms.get_stress()[:3].mean() / 1e-4 * 160.21766208
    )  # eV/A^3 -> bar (LAMMPS metal units)
    print(
        f"{ranks} rank(s): |dE| {abs(e_lmp - e_ase):.2e} eV, max |dF| {np.abs(f_lmp - f_ase).max():.2e} eV/A, "
        f"|dP| {abs(p_lmp - p_ase):.2e} bar of {p_ase:.0f}"
    )
    assert e_lmp == pytest.approx(e_ase, abs=1e-6 * len(atoms))
    np.testing.assert_allclose(f_lmp, f_ase, atol=1e-4)
    assert p_lmp == pytest.approx(p_ase, rel=1e-4, abs=0.5)


def test_the_fine_tuned_file_records_what_was_done(tuned):
    """The fine-tuning note inside the file names the replay set and the weights."""
    import json
    import zipfile

    model, _ = tuned
    z = zipfile.ZipFile(model)
    note = json.loads(
        z.read(next(n for n in z.namelist() if n.endswith("extra/allegro_fm_finetune")))
    )
    assert note["engine"] == "port" and note["replay"] == "replay.h5"
    assert note["species_weights"] == {"Ca": 2.0} and note["oversample"] == {"new": 2}


def test_a_nequip_route_fine_tune_runs_in_allegro_fm_md_and_ase(tmp_path):
    """The shipped model fine-tuned through nequip (1 epoch, model-labelled replay, species weights): its best.ckpt
    runs in ``allegro-fm-md run`` (NVE, eager) with the ASE calculator's step-0 energy (float32: 1e-6 eV/atom)."""
    from allegro_fm_model import load_potential
    from allegro_fm_model.cli import main

    calcite = ase.io.read(LEGACY.parent / "structures.extxyz", 1)
    level = load_potential("allegro-fm-mini").level_of_theory
    _new_data(calcite, tmp_path / "new.h5", level, 0.06, 5, distort=True)
    from allegro_fm_model.replay import make_replay

    make_replay("allegro-fm-mini", [calcite], tmp_path / "replay.h5", copies=2, progress=False)
    (tmp_path / "ft.toml").write_text(
        '[train]\ndataset = "new.h5"\nrun_dir = "run"\ninit_from = "allegro-fm-mini"\nmax_epochs = 1\n'
        'batch_size = 2\nval_fraction = 0.34\ntest_fraction = 0.0\nreplay = "replay.h5"\n'
        "species_weights = {Ca = 2.0}\n"
    )
    assert main(["finetune", str(tmp_path / "ft.toml")]) == 0
    t = _md_matches_ase(tmp_path / "run" / "best.ckpt", calcite, tmp_path)
    assert np.all(np.isfinite(t[:, 5]))
