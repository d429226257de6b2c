"""Every reader: frames written, ingested into schema v1 and read back are identical; units converted once."""

from __future__ import annotations

import json
from pathlib import Path

import ase.stress
import h5py
import numpy as np
import pytest
import tea_align
from ase.calculators.singlepoint import SinglePointCalculator
from tea_align import synthetic
from tea_align.readers import InputSpec, detect_format, read_frames
from tea_align.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def _roundtrip(spec, tmp_path, compression="gzip"):
    frames = list(read_frames(spec))
    s = tea_align.convert([spec], tmp_path / "ingest.h5", compression=compression)
    assert s.frames == len(frames)
    with tea_align.open_dataset(tmp_path / "ingest.h5") as ds:
        back = list(ds)
        assert len(ds) == len(frames)
        assert ds[-1] == frames[-1]
        assert ds.alignment is None
    assert back == frames
    return frames


def test_extxyz_roundtrip_with_stress(tmp_path, rng):
    import ase.io

    ats = []
    for k, a in enumerate(synthetic.crystals(rng, 5)):
        a.calc = SinglePointCalculator(
            a,
            energy=-1.5 * k,
            forces=rng.normal(size=(len(a), 3)),
            stress=rng.normal(size=6) * 0.01,
        )
        ats.append(a)
    ase.io.write(tmp_path / "x.extxyz", ats)
    frames = _roundtrip(InputSpec.parse(f"{tmp_path / 'x.extxyz'},level=PBE,name=mine"), tmp_path)
    assert (
        frames[3].source == "mine" and frames[3].level_of_theory == "PBE" and frames[3].index == 3
    )
    np.testing.assert_allclose(
        frames[2].stress, ase.stress.voigt_6_to_full_3x3_stress(ats[2].get_stress())
    )
    np.testing.assert_allclose(
        frames[4].positions, ats[4].positions, atol=1e-8
    )  # extxyz keeps 8 decimals


def test_mptrj_json_roundtrip_and_units(tmp_path, rng):
    ats = [synthetic.label(a, synthetic.LEVEL_S) for a in synthetic.crystals(rng, 7)]
    for a in ats:  # add a stress result in ASE units
        a.calc.results["stress"] = rng.normal(size=6) * 0.01
    synthetic.write_mptrj_json(ats, tmp_path / "mp.json")
    assert detect_format(tmp_path / "mp.json") == "mptrj"
    frames = _roundtrip(InputSpec(tmp_path / "mp.json"), tmp_path)
    assert frames[0].level_of_theory.startswith("PBE")
    assert frames[5].key == "mp-1002/mp-1002-5-0"
    for f, a in zip(frames, ats):
        assert f.energy == a.get_potential_energy()
        np.testing.assert_allclose(f.forces, a.get_forces())
        # kBar with VASP sign in the file -> eV/A^3 with ASE sign here
        np.testing.assert_allclose(
            f.stress, ase.stress.voigt_6_to_full_3x3_stress(a.calc.results["stress"]), rtol=1e-12
        )
        np.testing.assert_allclose(f.positions, a.positions)


def test_mptrj_streams_across_buffer_boundaries(tmp_path, rng, monkeypatch):
    ats = [synthetic.label(a, synthetic.LEVEL_S) for a in synthetic.crystals(rng, 9)]
    synthetic.write_mptrj_json(ats, tmp_path / "mp.json")
    from tea_align.readers import mptrj

    ref = list(read_frames(tmp_path / "mp.json"))
    orig = mptrj._Cursor.__init__
    monkeypatch.setattr(
        mptrj._Cursor,
        "__init__",
        lambda self, fh, path, chunk=1 << 20: orig(self, fh, path, chunk=7),
    )
    assert list(read_frames(tmp_path / "mp.json")) == ref


def test_spice_hdf5_roundtrip_and_units(tmp_path, rng):
    ats = [synthetic.label(a, synthetic.LEVEL_T) for a in synthetic.molecules(rng, 8)]
    synthetic.write_spice_h5(ats, tmp_path / "spice.h5", per_molecule=2)
    assert detect_format(tmp_path / "spice.h5") == "spice"
    frames = _roundtrip(InputSpec(tmp_path / "spice.h5"), tmp_path)
    assert len(frames) == 8
    by_e = {round(a.get_potential_energy(), 6): a for a in ats}
    for f in frames:
        a = by_e[round(f.energy, 6)]
        np.testing.assert_allclose(f.positions, a.positions, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f.forces, a.get_forces(), rtol=1e-10, atol=1e-10)
        assert not f.pbc.any() and f.stress is None
    with h5py.File(tmp_path / "spice.h5") as h5:  # really atomic units on disk
        g = h5[next(iter(h5))]
        assert g["dft_total_energy"][0] * HARTREE_TO_EV == pytest.approx(
            frames[0].energy, rel=1e-14
        )
        assert g["conformations"][0, 0, 0] * BOHR_TO_ANGSTROM == pytest.approx(
            frames[0].positions[0, 0], rel=1e-14
        )


def _write_t1x(path, reactions):
    with h5py.File(path, "w") as h5:
        for split, formula, rxn, z, pos, e, f in reactions:
            g = h5.require_group(f"{split}/{formula}/{rxn}")
            g["atomic_numbers"] = np.asarray(z, dtype=np.int8)
            g["positions"] = np.asarray(pos)
            g["wB97x_6-31G(d).energy"] = np.asarray(e)
            g["wB97x_6-31G(d).forces"] = np.asarray(f)
            for sub, m in (("reactant", 0), ("product", -1)):
                s = g.create_group(sub)
                s["positions"] = np.asarray(pos)[m : m + 1] if m == 0 else np.asarray(pos)[m:]


def test_transition1x_roundtrip(tmp_path, rng):
    rx = []
    for k, split in enumerate(("train", "val", "test")):
        m = synthetic.molecules(rng, 3)[k]
        pos = np.array([m.positions + rng.normal(0, 0.05, m.positions.shape) for _ in range(4)])
        rx.append(
            (
                split,
                m.get_chemical_formula(),
                f"rxn{k}",
                m.numbers,
                pos,
                rng.normal(size=4) - 1000,
                rng.normal(size=pos.shape),
            )
        )
    _write_t1x(tmp_path / "t1x.h5", rx)
    assert detect_format(tmp_path / "t1x.h5") == "transition1x"
    frames = _roundtrip(InputSpec(tmp_path / "t1x.h5"), tmp_path)
    assert len(frames) == 12
    assert frames[5].key == f"val/{rx[1][1]}/rxn1/1"
    np.testing.assert_array_equal(frames[5].positions, rx[1][4][1])
    assert frames[5].level_of_theory.startswith("wB97x/6-31G(d)")


@pytest.mark.skipif(
    not (SHARED / "transition1x_sample").exists(),
    reason="../shared/data/transition1x_sample not present",
)
def test_real_transition1x_endpoints(tmp_path):
    """Real Transition1x v4 endpoint geometries in the dataset's HDF5 layout; energies relative to reactant."""
    ends = json.loads((SHARED / "transition1x_sample" / "endpoints.json").read_text())["paths"]
    refs = {
        p["reaction_id"]: p
        for p in json.loads(
            (SHARED / "transition1x_sample" / "dft_reference_energies.json").read_text()
        )["paths"]
    }
    rx = []
    for p in ends:
        formula, rxn = p["reaction_id"].split("/")
        e = refs[p["reaction_id"]]["relative_energies_ev"]
        pos = np.array([p["reactant_positions"], p["product_positions"]])
        rx.append(
            ("test", formula, rxn, p["atomic_numbers"], pos, [e[0], e[-1]], np.zeros_like(pos))
        )
    _write_t1x(tmp_path / "t1x.h5", rx)
    frames = _roundtrip(InputSpec(tmp_path / "t1x.h5"), tmp_path)
    assert len(frames) == 2 * len(ends) == 16
    from ase import Atoms

    for f in frames:
        assert Atoms(f.numbers).get_chemical_formula(mode="hill") == Atoms(
            f.key.split("/")[1]
        ).get_chemical_formula(mode="hill")
        assert f.n_atoms == 7
        d = np.linalg.norm(f.positions[:, None] - f.positions[None], axis=-1) + 10 * np.eye(7)
        assert d.min() > 0.85  # real molecules: no overlapping atoms
    # each frame, found by its key (split/formula/rxn/image), carries the energy and geometry the published files give
    # that reaction's end (the reader's order and the writer's are not trusted), and no product lies above its band's
    # transition state (the published barrier)
    by_id = {p["reaction_id"]: p for p in ends}
    for f in frames:
        _, formula, rxn, image = f.key.split("/")
        rid, end = f"{formula}/{rxn}", int(image)
        e = refs[rid]["relative_energies_ev"]
        assert f.energy == pytest.approx(e[0] if end == 0 else e[-1], abs=1e-12)
        np.testing.assert_allclose(
            f.positions,
            by_id[rid]["reactant_positions" if end == 0 else "product_positions"],
            atol=1e-12,
        )
        assert f.energy < e[refs[rid]["transition_state_index"]]


def test_aligned_dataset_embeds_alignment_and_provenance(demo_data, tmp_path):
    from tea_testutil import specs

    paths, truth = demo_data
    al = tea_align.fit([paths["anchors"]], specs(paths), target_level=synthetic.LEVEL_T)
    s = tea_align.apply(al, specs(paths), tmp_path / "aligned.h5", compression="lzf")
    assert s.frames == 34
    with tea_align.open_dataset(tmp_path / "aligned.h5") as ds:
        assert ds.alignment == al and ds.target_level == synthetic.LEVEL_T
        names = {src.name: src for src in ds.sources}
        assert (
            names["periodic"].level_of_theory == synthetic.LEVEL_S
            and names["periodic"].format == "mptrj"
        )
        for f in ds:
            if f.source == "periodic":
                # the exact transform of the synthetic levels (not the fit's numbers): E_T = alpha E_S + sum_Z (eps_T - alpha eps_S)
                exact = truth.alpha * f.energy_raw + sum(
                    truth.eps_t[s] - truth.alpha * truth.eps_s[s] for s in f.symbols
                )
                assert f.energy == pytest.approx(exact, abs=1e-6 * f.n_atoms)
            else:
                assert f.energy == f.energy_raw
        assert ds.preprocessing["dropped"] == {"noble_gas": 0, "max_force": 0}
