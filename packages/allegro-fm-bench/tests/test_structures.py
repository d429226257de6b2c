"""Structure builders reproduce the published crystallographic facts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from allegro_fm_bench import structures as S
from ase.geometry import get_distances

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tobermorite"


def _density(a) -> float:
    return float(a.get_masses().sum() / a.get_volume() * 1.66053907)  # g/cc


def _min_dist(a) -> float:
    _, d = get_distances(a.positions, cell=a.cell, pbc=a.pbc)
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def test_tobermorite_composition_and_geometry():
    t = S.tobermorite_11a()
    assert t.get_chemical_formula() == "H24Ca8O44Si12"
    assert (
        abs(_density(t) - 2.44) < 0.03
    )  # published hydrogenated cells: 2.441 g/cc (experiment 2.46)
    sym = np.array(t.get_chemical_symbols())
    _, d = get_distances(t.positions, cell=t.cell, pbc=True)
    np.fill_diagonal(d, np.inf)
    # every H is bonded to exactly one O at 0.97 A and is at least 1.4 A from anything else
    for k in np.flatnonzero(sym == "H"):
        near = np.sort(d[k])
        assert abs(near[0] - 0.97) < 1e-6 and sym[np.argmin(d[k])] == "O" and near[1] > 1.4, (
            k,
            near[:3],
        )
    # silicate framework: each Si has 4 O within 1.8 A
    assert all(((sym == "O") & (d[k] < 1.8)).sum() == 4 for k in np.flatnonzero(sym == "Si"))
    assert np.array_equal(S.tobermorite_11a(seed=0).positions, t.positions)  # deterministic


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/tobermorite not present")
def test_tobermorite_framework_equals_the_cod_file():
    """The built Ca/Si/O framework equals COD 8103889 without its two quarter-occupied Ca sites."""
    import warnings

    import ase.io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ase.io.read(SHARED / "tob11a_hamid_COD8103889.cif", store_tags=True)
    occ = ref.info["occupancy"]
    full = [
        i for i, k in enumerate(ref.arrays["spacegroup_kinds"]) if max(occ[str(k)].values()) == 1.0
    ]
    ref = ref[full]
    t = S.tobermorite_11a()
    fw = t[[a.symbol != "H" for a in t]][: len(ref)]
    assert sorted(fw.get_chemical_symbols()) == sorted(ref.get_chemical_symbols())
    np.testing.assert_allclose(fw.cell.cellpar(), ref.cell.cellpar(), atol=1e-3)
    _, d = get_distances(fw.positions, ref.positions, cell=ref.cell, pbc=True)
    assert d.min(axis=1).max() < 1e-3


@pytest.mark.parametrize(
    "build, formula, density, bond",
    [
        (S.portlandite, "H2CaO2", 2.24, ("O", "H", 0.94)),
        (S.calcite, "C6Ca6O18", 2.71, ("C", "O", 1.28)),
        (S.quartz, "O6Si3", 2.65, ("Si", "O", 1.605)),
    ],
)
def test_crystals_match_published_densities(build, formula, density, bond):
    a = build()
    assert a.get_chemical_formula() == formula
    assert abs(_density(a) - density) < 0.02
    sym = np.array(a.get_chemical_symbols())
    _, d = get_distances(
        a.positions[sym == bond[0]], a.positions[sym == bond[1]], cell=a.cell, pbc=True
    )
    assert abs(d.min() - bond[2]) < 0.01


def test_water_box_density_and_spacing():
    w = S.water_box(32, seed=1)
    assert w.get_chemical_formula() == "H64O32" and abs(_density(w) - 1.0) < 1e-6
    o = w.positions[w.numbers == 8]
    _, d = get_distances(o, cell=w.cell, pbc=True)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 2.5
    assert _min_dist(w) > 0.9


def test_carbonic_acid_path_keeps_atom_order():
    p = S.carbonic_acid_path(5)
    assert len(p) == 5 and all(i.get_chemical_formula() == "CH2O3" for i in p)
    co2 = [float(np.linalg.norm(i.positions[2] - i.positions[0])) for i in p]
    assert co2[0] == pytest.approx(1.34, abs=0.01) and co2[-1] > 3.0 and np.all(np.diff(co2) > 0)


def _bonds(atoms, a, b, cut):
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cut)
    s = np.array(atoms.get_chemical_symbols())
    m = (s[i] == a) & (s[j] == b)
    return i[m], d[m]


@pytest.mark.parametrize(
    "name, builder, density, pair, bond, cn",
    [
        ("alpha-cristobalite", "alpha_cristobalite", 2.33, ("Si", "O"), 1.602, 4),
        ("stishovite", "stishovite", 4.29, ("Si", "O"), 1.757, 6),
        ("silica sodalite", "silica_sodalite", 1.74, ("Si", "O"), 1.657, 4),
        ("aragonite", "aragonite", 2.93, ("C", "O"), 1.279, 3),
        ("lime", "lime", 3.35, ("Ca", "O"), 2.405, 6),
        ("silicon", "silicon", 2.33, ("Si", "Si"), 2.352, 4),
        ("dry ice", "dry_ice", 1.64, ("C", "O"), 1.154, 2),
    ],
)
def test_v2_crystals_have_their_published_density_bonds_and_coordination(
    name, builder, density, pair, bond, cn
):
    from ase.data import atomic_masses

    a = getattr(S, builder)()
    rho = atomic_masses[a.numbers].sum() / a.get_volume() * 1.66053906660
    assert rho == pytest.approx(density, abs=0.02), name
    i, d = _bonds(a, *pair, bond + 0.15)
    assert d.min() == pytest.approx(bond, abs=0.01), name
    centres = [k for k, s in enumerate(a.get_chemical_symbols()) if s == pair[0]]
    assert all((i == k).sum() == cn for k in centres), name


def test_ice_ih_obeys_the_ice_rules():
    """Every O has exactly two H at 0.98 A, every O-O bond (2.76 A) carries exactly one H, density 0.92 g/cm3, and
    two seeds give different proton arrangements (disorder) on the same O lattice."""
    from ase.data import atomic_masses
    from ase.neighborlist import neighbor_list

    ice = S.ice_ih(seed=0)
    o = [k for k, s in enumerate(ice.get_chemical_symbols()) if s == "O"]
    assert len(ice) == 3 * len(o) == 96
    i, _ = _bonds(ice, "O", "H", 1.1)
    assert all((i == k).sum() == 2 for k in o)
    assert atomic_masses[ice.numbers].sum() / ice.get_volume() * 1.66053906660 == pytest.approx(
        0.92, abs=0.01
    )
    oo_i, oo_j, oo_D = neighbor_list("ijD", ice[o], 3.0)
    h = ice.positions[[k for k, s in enumerate(ice.get_chemical_symbols()) if s == "H"]]
    for a, b, vec in zip(oo_i, oo_j, oo_D):
        if a < b:  # the H on bond a-b sits 0.98 A from one end along the bond
            mid = [
                ice[o].positions[a] + 0.98 * vec / np.linalg.norm(vec),
                ice[o].positions[a] + (1 - 0.98 / np.linalg.norm(vec)) * vec,
            ]
            from ase.geometry import get_distances

            near = sum(
                int(get_distances(p[None], h, cell=ice.cell, pbc=True)[1].min() < 1e-6) for p in mid
            )
            assert near == 1
    other = S.ice_ih(seed=1)
    assert np.allclose(other.positions[: len(o)], ice.positions[: len(o)])
    assert not np.allclose(other.positions[len(o) :], ice.positions[len(o) :])


def test_melt_and_molecular_box_starts():
    from ase.data import atomic_masses
    from ase.geometry import get_distances

    m = S.random_packing("Ca16Si16O48", 2.7, seed=0)
    assert m.get_chemical_formula() == "Ca16O48Si16"
    assert atomic_masses[m.numbers].sum() / m.get_volume() * 1.66053906660 == pytest.approx(
        2.7, rel=1e-6
    )
    d = get_distances(m.positions, cell=m.cell, pbc=True)[1]
    assert d[np.triu_indices(len(m), 1)].min() >= 2.0
    box = S.molecular_box("H2CO3", 12, 1.5, seed=0)
    assert box.get_chemical_formula() == "C12H24O36" and len(box) == 72
    d = get_distances(box.positions, cell=box.cell, pbc=True)[1]
    mol = np.repeat(np.arange(12), 6)
    assert d[mol[:, None] != mol[None, :]].min() >= 2.0


def test_mini_v2_families_build_and_hold_out_whole_families():
    from allegro_fm_bench.mini.minidata import (
        FAMILIES,
        HELDOUT_MOLECULES,
        MORE_MOLECULES,
        ROUND2_CLUSTERS,
        ROUND2_MOLECULES,
        crystals,
    )
    from ase.build import molecule

    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names)) == 19
    held = {f.name for f in FAMILIES if f.held_out}
    assert held == {"aragonite", "sodalite-SiO2", "ice-Ih", "Ca2SiO4-melt"}
    assert {n for n, _ in crystals(held_out=True)} == held and not held & {n for n, _ in crystals()}
    assert not set(HELDOUT_MOLECULES) & (
        set(MORE_MOLECULES) | set(S.MOLECULES) | set(ROUND2_MOLECULES)
    )
    # round 2 only appends (a grown dataset keeps round 1's frames first, and each family's seed is its index)
    rounds = [f.round for f in FAMILIES]
    assert rounds == sorted(rounds) and {f.name for f in FAMILIES if f.round == 2} == {
        "Ca3SiO5-melt",
        "SiO2-melt",
    }
    assert all(set(molecule(m).get_chemical_symbols()) <= {"H", "C", "O"} for m in ROUND2_MOLECULES)
    # the held-out methanol-water clusters stay unseen: no round-2 dimer is methanol with water
    assert all(sorted(c) != ["CH3OH", "H2O"] for c in ROUND2_CLUSTERS)


def test_mini_data_stages_resume_share_and_take_over(tmp_path):
    """A stage present on disk is read, not remade; a stage locked by a live process is skipped (None); a dead process's
    lock is taken over; parts of a split stage are made one by one and a whole file of an earlier version is used as is."""
    import os
    import subprocess

    from allegro_fm_bench.mini.minidata import _stage, _stages
    from ase import Atoms

    made = []

    def make(tag):
        made.append(tag)
        return [Atoms("H", positions=[(0, 0, len(made))], info={"structure": tag})]

    assert len(_stage(tmp_path, "a", lambda: make("a"))) == 1 and made == ["a"]
    assert _stage(tmp_path, "a", lambda: make("again"))[0].info["config_type"] == "a" and made == [
        "a"
    ]
    (tmp_path / "b.lock").write_text(f"{os.getppid()}\n")  # a live process holds stage b
    assert _stage(tmp_path, "b", lambda: make("b")) is None and "b" not in made
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "b.lock").write_text(f"{dead.pid}\n")  # its holder died: taken over
    assert (
        _stage(tmp_path, "b", lambda: make("b")) is not None
        and "b" in made
        and not (tmp_path / "b.lock").exists()
    )
    jobs = list(range(5))
    got = _stages(tmp_path, "c", jobs, lambda j, desc: sum((make(f"c{x}") for x in j), []), 2)
    assert len(got) == 5 and sorted(p.name for p in tmp_path.glob("c.part*.extxyz")) == [
        "c.part00.extxyz",
        "c.part01.extxyz",
        "c.part02.extxyz",
    ]
    (tmp_path / "d.extxyz").write_text((tmp_path / "a.extxyz").read_text())
    assert (
        len(_stages(tmp_path, "d", jobs, lambda j, desc: [], 2)) == 1
    )  # the earlier version's whole stage file


def test_reaction_path_frames_from_a_reference_neb_folder(tmp_path):
    """Round 2's reaction-path stage: each band image and the saddle of a finished reference NEB, as is and rattled by the
    settings' path rattles (the files are not changed); a folder without a finished NEB is an error naming it."""
    import ase.io
    from allegro_fm_bench.mini.minidata import MiniDataSettings, _reaction_path_jobs

    band = S.carbonic_acid_path(5)
    ase.io.write(tmp_path / "images.extxyz", band)
    ase.io.write(tmp_path / "saddle.extxyz", band[2])
    before = (tmp_path / "images.extxyz").read_bytes()
    st = MiniDataSettings()
    jobs = _reaction_path_jobs(tmp_path, st, np.random.default_rng(0))
    assert (
        len(jobs) == 6 * len(st.path_rattles)
        and (tmp_path / "images.extxyz").read_bytes() == before
    )
    plain = [a for _, a, g in jobs if "rattle" not in g]
    assert [g for _, _, g in jobs if "rattle" not in g][-1] == "reference CI-NEB (PBE) saddle"
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(plain, [*band, band[2]]))
    rattled = [a for _, a, g in jobs if "rattle" in g]
    assert all(
        0 < np.abs(a.positions - plain[k // (len(st.path_rattles) - 1)].positions).max() < 1.0
        for k, a in enumerate(rattled)
    )
    (tmp_path / "saddle.extxyz").unlink()
    with pytest.raises(ValueError, match="no finished reference NEB"):
        _reaction_path_jobs(tmp_path, st, np.random.default_rng(0))


def test_model_band_frames_are_the_inner_images_of_both_pathways():
    """Round 2's active-learning stage: the inner images of a calculator's own quick NEB bands (in-plane and H2O
    rotation, 7 images each), as they are and rattled; ASE's EMT stands in for a model here (it runs in seconds)."""
    from allegro_fm_bench.mini.minidata import MiniDataSettings, _model_band_jobs
    from allegro_fm_bench.neb import endpoints
    from ase.calculators.emt import EMT

    st = MiniDataSettings()
    jobs = _model_band_jobs(EMT(), "emt", st, np.random.default_rng(0), steps=30)
    assert len(jobs) == 2 * 5 * len(st.path_rattles)
    gens = [g for _, _, g in jobs]
    assert (
        sum("(in-plane)" in g for g in gens)
        == sum("(H2O rotation)" in g for g in gens)
        == 5 * len(st.path_rattles)
    )
    assert {f for f, _, _ in jobs} == {"CH2O3"} and all(
        not a.pbc.any() for _, a, _ in jobs
    )  # H2CO3 -> H2O + CO2
    reactant, product = endpoints(EMT())
    plain = [a for _, a, g in jobs if "rattle" not in g]
    # inner images only: none is an endpoint
    assert all(
        min(np.abs(a.positions - e.positions).max() for e in (reactant, product)) > 1e-3
        for a in plain
    )
