"""The shipped Allegro-FM-mini model and the README's main job (a short version of it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tobermorite-11a"


def test_shipped_model_is_small_and_knows_its_elements():
    from allegro_fm_model import builtin_model_path, load_potential

    path = builtin_model_path("allegro-fm-mini")
    assert path.stat().st_size < 10e6
    pot = load_potential("allegro-fm-mini")
    assert set(pot.species) == {"H", "C", "O", "Si", "Ca"} and pot.cutoff == 5.2
    card = (path.parent / "MODEL_CARD.md").read_text()
    assert "demonstration model" in card and "meV/atom" in card and "make_mini_model.sh" in card
    with pytest.raises(ValueError, match="unknown built-in model"):
        builtin_model_path("allegro-fm-huge")


def test_shipped_model_forces_are_minus_gradient():
    import ase.io
    from allegro_fm_model import AllegroFMCalculator, load_potential

    atoms = ase.io.read(EXAMPLE / "tobermorite-11A.extxyz")
    atoms.calc = AllegroFMCalculator(load_potential("allegro-fm-mini"))
    f = atoms.get_forces()
    h = 1e-3
    for i, ax in ((2, 2), (40, 0), (87, 1)):  # a Ca, a framework atom, a water H
        e = []
        for s in (h, -h):
            a = atoms.copy()
            a.calc = atoms.calc
            a.positions[i, ax] += s
            e.append(a.get_potential_energy())
        assert abs(-(e[0] - e[1]) / (2 * h) - f[i, ax]) < 2e-2  # float32 model


def test_main_job_short_run_is_stable(tmp_path):
    from allegro_fm_md.cli import main

    text = (EXAMPLE / "run.toml").read_text()
    text = text.replace('structure = "tobermorite-11A.extxyz"', f'structure = "{EXAMPLE / "tobermorite-11A.extxyz"}"')
    text = text.replace("steps = 400", "steps = 30").replace('dir = "../../runs/t11-300K"', 'dir = "out"')
    text = text.replace("trajectory_every = 20", "trajectory_every = 10")
    (tmp_path / "run.toml").write_text(text)
    assert main(["run", str(tmp_path / "run.toml"), "-q"]) == 0
    t = np.loadtxt(tmp_path / "out" / "thermo.log")
    assert t[-1, 0] == 30 and np.isfinite(t).all()
    assert abs(t[-1, 13] - t[0, 13]) / 352 < 5e-3  # conserved quantity (eV/atom) over 15 fs
    assert main(["rdf", str(tmp_path / "out" / "trajectory.h5md"), "-o", str(tmp_path / "gr.png")]) == 0
    table = (tmp_path / "gr.md").read_text()
    si_o = next(line for line in table.splitlines() if line.startswith("| Si-O |"))
    assert abs(float(si_o.split("|")[5]) - 4.0) < 0.05  # silicate tetrahedra stay tetrahedral
