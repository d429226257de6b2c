"""Readers against literal, hand-computed numbers (files written here with json/h5py, not with the project's writers,
so a sign or unit constant shared by writer and reader cannot cancel):

- MPtrj stress: kBar with VASP's sign (positive = compressive). 1 kBar = 1e8 Pa and 1 eV/A^3 = 1.602176634e11 Pa, so
  10 kBar -> -6.241509074e-3 eV/A^3 in ASE's convention (tensile positive).
- SPICE: Bohr, Hartree and the Hartree/Bohr *gradient*: 0.01 Ha/Bohr -> force -0.5142208619 eV/A
  (27.211386245988 / 0.529177210903 = 51.42208619 eV/A per Ha/Bohr); -1.5 Ha -> -40.817079369 eV; 2 Bohr -> 1.058354422 A.
- Transition1x: eV and Angstrom, unchanged.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from tea_align.readers import InputSpec, read_frames

KBAR = 6.241509074e-4  # eV/A^3 per kBar (hand-computed above)


def test_mptrj_stress_kbar_with_vasp_sign(tmp_path):
    site = lambda el, xyz: {"species": [{"element": el, "occu": 1}], "xyz": xyz}  # noqa: E731
    frame = {
        "structure": {
            "lattice": {"matrix": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]]},
            "sites": [site("Na", [0, 0, 0]), site("Cl", [2.0, 2.0, 2.0])],
        },
        "uncorrected_total_energy": -6.5,
        "force": [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]],
        "stress": [[10.0, 1.0, 0.0], [1.0, 20.0, 0.0], [0.0, 0.0, 30.0]],
    }
    voigt = dict(frame, stress=[10.0, 20.0, 30.0, 0.0, 0.0, 1.0])  # xx yy zz yz xz xy
    (tmp_path / "mp.json").write_text(json.dumps({"mp-1": {"0": frame, "1": voigt}}))
    frames = list(read_frames(InputSpec.parse(str(tmp_path / "mp.json"))))
    assert len(frames) == 2
    for f in frames:
        assert f.energy == -6.5
        np.testing.assert_array_equal(f.forces, [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])
        np.testing.assert_allclose(
            f.stress,
            [
                [-6.241509074e-3, -6.241509074e-4, 0],
                [-6.241509074e-4, -1.2483018148e-2, 0],
                [0, 0, -1.8724527222e-2],
            ],
            rtol=1e-7,
            atol=1e-15,
        )  # ASE: CODATA 2014 e


def test_spice_hartree_bohr_gradient(tmp_path):
    with h5py.File(tmp_path / "spice.h5", "w") as h5:
        g = h5.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1])
        g["conformations"] = np.array([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])  # Bohr
        g["dft_total_energy"] = np.array([-1.5])  # Hartree
        g["dft_total_gradient"] = np.array(
            [[[0.01, 0.0, 0.0], [0.0, -0.02, 0.0], [-0.01, 0.02, 0.0]]]
        )  # Hartree/Bohr
    (f,) = read_frames(InputSpec.parse(f"{tmp_path / 'spice.h5'},format=spice"))
    assert f.energy == pytest.approx(
        -40.817079369, rel=1e-7
    )  # ASE's CODATA 2014 Hartree differs at 1e-8
    np.testing.assert_allclose(f.positions[1], [1.058354422, 0, 0], rtol=1e-7)
    np.testing.assert_allclose(
        f.forces[0], [-0.5142208619, 0, 0], rtol=1e-6
    )  # force = -gradient (CODATA 2014 vs 2018: 4e-7)
    np.testing.assert_allclose(f.forces[1], [0, 1.0284417238, 0], rtol=1e-6)


def test_transition1x_values_pass_unchanged(tmp_path):
    pos = np.array([[[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]], [[0.0, 0.0, 0.0], [1.3, 0.1, 0.0]]])
    e = np.array([-3000.25, -2999.75])
    forces = np.array([[[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]], [[0.1, 0.2, 0.0], [-0.1, -0.2, 0.0]]])
    with h5py.File(tmp_path / "t1x.h5", "w") as h5:
        g = h5.create_group("train/CO/rxn0001")
        g["atomic_numbers"] = np.array([6, 8])
        g["positions"] = pos
        g["wB97x_6-31G(d).energy"] = e
        g["wB97x_6-31G(d).forces"] = forces
    frames = list(read_frames(InputSpec.parse(f"{tmp_path / 't1x.h5'},format=transition1x")))
    assert [f.energy for f in frames] == [-3000.25, -2999.75]
    for f, p, fo in zip(frames, pos, forces, strict=True):
        np.testing.assert_array_equal(f.positions, p)
        np.testing.assert_array_equal(f.forces, fo)
        assert list(f.numbers) == [6, 8]
