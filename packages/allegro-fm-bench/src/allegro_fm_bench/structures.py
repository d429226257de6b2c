"""Structure builders from published crystallographic facts (citations in each function). Units: Angstrom.

Nothing is downloaded: each crystal is made from its space group and asymmetric unit with ase.spacegroup,
or (tobermorite) from the published fractional coordinates with the two symmetry operations written out.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_masses, atomic_numbers
from ase.geometry import get_distances
from ase.mep import NEB
from ase.neighborlist import neighbor_list
from ase.spacegroup import crystal
from scipy.spatial import cKDTree

# Hamid, Z. Kristallogr. 154, 189 (1981), tobermorite 11 A, space group P 1 1 21 (Hall 'P 2c'),
# a=6.69 b=7.39 c=22.77 A, gamma=123.49 deg (COD 8103889, public domain). The two Ca sites of
# occupancy 0.25 (interlayer Ca5, Ca6) are left out, which gives the ordered Ca8Si12O36 framework.
_HAMID_CELL = (6.69, 7.39, 22.77, 90.0, 90.0, 123.49)
_HAMID_SITES = [
    ("O", 0.484, 0.357, 0.4108),
    ("Ca", 0.75, 0.25, 0.0),
    ("O", -0.18, 0.785, 0.113),
    ("O", 0.015, 0.137, 0.0189),
    ("O", 0.068, 0.909, 0.211),
    ("O", 0.25, 0.0, 0.348),
    ("O", 0.484, 0.372, 0.0189),
    ("O", -0.175, 0.288, 0.306),
    ("Ca", 0.75, 0.25, 0.413),
    ("O", 0.1, 0.425, 0.213),
    ("O", 0.25, 0.83, 0.12),
    ("O", 0.015, 0.122, 0.4108),
    ("O", 0.25, 0.17, 0.12),
    ("O", 0.25, 0.645, 0.31),
    ("O", 0.484, 0.856, 0.0189),
    ("Si", 0.25, 0.287, 0.056),
    ("Ca", 0.75, 0.75, 0.0),
    ("Si", 0.084, 0.417, 0.282),
    ("Si", 0.25, 0.207, 0.372),
    ("O", 0.25, 0.335, 0.31),
    ("O", 0.484, 0.872, 0.4108),
    ("O", 0.25, 0.5, 0.077),
    ("O", 0.015, 0.638, 0.4108),
    ("O", 0.015, 0.622, 0.0189),
    ("Si", 0.25, 0.707, 0.056),
    ("Si", 0.068, 0.909, 0.141),
    ("Si", 0.25, 0.787, 0.373),
    ("Ca", 0.75, 0.75, 0.413),
]
_OH = 0.97  # O-H bond length (A)


def _nearest(points: np.ndarray, atoms: Atoms) -> np.ndarray:
    """Distance (A) from each point to the nearest atom of the periodic ``atoms`` (27 images, KD-tree)."""
    shifts = (
        np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
        @ atoms.cell.array
    )
    images = (atoms.positions[None] + shifts[:, None]).reshape(-1, 3)
    return cKDTree(images).query(points)[0]


def _free_direction(
    atoms: Atoms,
    origin: np.ndarray,
    axis: np.ndarray,
    cone_deg: float,
    rng: np.random.Generator,
    length: float,
) -> np.ndarray:
    """The point ``length`` A from ``origin`` within ``cone_deg`` of ``axis`` farthest from every other atom (periodic)."""
    axis = axis / np.linalg.norm(axis)
    v = rng.normal(size=(400, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    v = v[np.degrees(np.arccos(np.clip(v @ axis, -1, 1))) <= cone_deg]
    p = origin + length * v
    _, d = get_distances(p, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    d[np.abs(d - length) < 1e-6] = np.inf  # the atom at ``origin`` itself
    return p[np.argmax(d.min(axis=1))]


def tobermorite_11a(seed: int = 0) -> Atoms:
    """Hydrogenated tobermorite 11 A, Ca8Si12O44H24 (2 x Ca4Si6O15(OH)2.5H2O), 88 atoms, unrelaxed.

    Framework: Hamid (1981) coordinates, partial interlayer Ca dropped. Hydrogenation (not in the
    X-ray data; this builder's rule, deterministic for a seed): the 8 non-bridging silicate O with at
    most one Ca within 2.75 A become Si-OH (H 0.97 A away, on the free side); 8 water molecules are put
    at the interlayer points farthest from all atoms. Relax before use (the data generator does, at PBE
    level); published relaxed cells of this composition have density 2.44 g/cc.
    """
    rng = np.random.default_rng(seed)
    a, b, c, al, be, ga = _HAMID_CELL
    cell = Atoms(cell=[a, b, c, al, be, ga], pbc=True).cell
    symbols, frac = [], []
    for s, x, y, z in _HAMID_SITES:
        for f in ((x, y, z), (-x, -y, z + 0.5)):  # the two operations of P 1 1 21
            symbols.append(s)
            frac.append(np.mod(f, 1.0))
    atoms = Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)
    sym = np.array(atoms.get_chemical_symbols())
    _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    hydrogens = []
    for k in np.flatnonzero(sym == "O"):
        n_si = int(((sym == "Si") & (d[k] < 1.8)).sum())
        n_ca = int(((sym == "Ca") & (d[k] < 2.75)).sum())
        if n_si == 1 and n_ca <= 1:
            si = np.flatnonzero((sym == "Si") & (d[k] < 1.8))[0]
            vec = atoms.positions[k] - atoms.positions[si]
            vec -= atoms.cell.array.T @ np.round(
                np.linalg.solve(atoms.cell.array.T, vec)
            )  # minimum image
            hydrogens.append(_free_direction(atoms, atoms.positions[k], vec, 70.0, rng, _OH))
    if len(hydrogens) != 8:
        raise RuntimeError(f"tobermorite builder: expected 8 silanol sites, found {len(hydrogens)}")
    atoms += Atoms("H8", positions=np.array(hydrogens))
    # 8 water oxygens at the interlayer points farthest from everything (greedy over a fine grid)
    g = np.stack(
        np.meshgrid(
            np.linspace(0, 1, 14, endpoint=False),
            np.linspace(0, 1, 14, endpoint=False),
            np.linspace(0, 1, 90, endpoint=False),
            indexing="ij",
        ),
        -1,
    ).reshape(-1, 3)
    pts = g @ atoms.cell.array
    placed: list[np.ndarray] = []
    for _ in range(8):
        cur = atoms if not placed else atoms + Atoms(f"O{len(placed)}", positions=placed)
        placed.append(pts[np.argmax(_nearest(pts, cur))])
    for o in placed:
        h1 = _free_direction(atoms, o, rng.normal(size=3), 180.0, rng, _OH)
        # second H at 104.5 deg from the first, on the free side
        u = (h1 - o) / _OH
        w = rng.normal(size=(200, 3))
        w -= (w @ u)[:, None] * u
        w /= np.linalg.norm(w, axis=1)[:, None]
        h2 = o + _OH * (np.cos(np.radians(104.5)) * u + np.sin(np.radians(104.5)) * w)
        _, dd = get_distances(h2, atoms.positions, cell=atoms.cell, pbc=True)
        best = h2[np.argmax(dd.min(axis=1))]
        atoms += Atoms("OH2", positions=[o, h1, best])
    atoms.info["name"] = "tobermorite-11A"
    atoms.info["source"] = (
        "Hamid, Z. Kristallogr. 154, 189 (1981); hydrogenated by allegro_fm_bench.structures"
    )
    return atoms


def portlandite() -> Atoms:
    """Portlandite Ca(OH)2, P-3m1, a=3.589 c=4.911 A (Desgranges et al., Acta Cryst. B49, 812 (1993))."""
    return crystal(
        ["Ca", "O", "H"],
        [(0, 0, 0), (1 / 3, 2 / 3, 0.2341), (1 / 3, 2 / 3, 0.4248)],
        spacegroup=164,
        cellpar=[3.589, 3.589, 4.911, 90, 90, 120],
    )


def calcite() -> Atoms:
    """Calcite CaCO3, R-3c (hexagonal setting), a=4.988 c=17.061 A, O x=0.2578 (Maslen et al., Acta Cryst. B51, 929 (1995))."""
    return crystal(
        ["Ca", "C", "O"],
        [(0, 0, 0), (0, 0, 0.25), (0.2578, 0, 0.25)],
        spacegroup=167,
        cellpar=[4.988, 4.988, 17.061, 90, 90, 120],
    )


def quartz() -> Atoms:
    """Alpha-quartz SiO2, P3221, a=4.9160 c=5.4054 A (Levien, Prewitt, Weidner, Am. Mineral. 65, 920 (1980));
    origin shifted to ase's setting of group 154 (Si-O 1.605 and 1.614 A, as published)."""
    return crystal(
        ["Si", "O"],
        [(0.4697, 0, 2 / 3), (0.4135, 0.2669, 0.7858)],
        spacegroup=154,
        cellpar=[4.916, 4.916, 5.4054, 90, 90, 120],
    )


def alpha_cristobalite() -> Atoms:
    """Alpha-cristobalite SiO2, P4(1)2(1)2, a=4.9709 c=6.9278 A (Pluth, Smith, Faber, J. Appl. Phys. 57, 1045 (1985)); Si-O 1.60 A."""
    return crystal(
        ["Si", "O"],
        [(0.3003, 0.3003, 0), (0.2392, 0.1044, 0.1787)],
        spacegroup=92,
        cellpar=[4.9709, 4.9709, 6.9278, 90, 90, 90],
    )


def stishovite() -> Atoms:
    """Stishovite SiO2 (rutile type, six-fold Si, 4.29 g/cm3), P4(2)/mnm, a=4.1773 c=2.6655 A, O x=0.3062
    (Ross et al., Am. Mineral. 75, 739 (1990))."""
    return crystal(
        ["Si", "O"],
        [(0, 0, 0), (0.3062, 0.3062, 0)],
        spacegroup=136,
        cellpar=[4.1773, 4.1773, 2.6655, 90, 90, 90],
    )


def silica_sodalite() -> Atoms:
    """Pure-silica sodalite (a zeolite framework, SOD), I-43m, a=8.83 A, Si 12d, O 24g (0.1414, 0.1414, 0.4413)
    (Richardson et al., J. Phys. Chem. 93, 8279 (1989)); Si-O 1.66 A as built, relax before use."""
    return crystal(
        ["Si", "O"],
        [(0.25, 0.5, 0), (0.1414, 0.1414, 0.4413)],
        spacegroup=217,
        cellpar=[8.83] * 3 + [90] * 3,
    )


def aragonite() -> Atoms:
    """Aragonite CaCO3, Pnma (the published Pmcn setting with axes relabelled), a=5.741 b=4.962 c=7.968 A
    (de Villiers, Am. Mineral. 56, 758 (1971)); C-O 1.28 A, Ca nine-fold."""
    return crystal(
        ["Ca", "C", "O", "O"],
        [
            (0.7597, 0.25, 0.4150),
            (-0.0852, 0.25, 0.7622),
            (-0.0962, 0.25, 0.9225),
            (-0.0862, 0.4736, 0.6810),
        ],
        spacegroup=62,
        cellpar=[5.741, 4.962, 7.968, 90, 90, 90],
    )


def lime() -> Atoms:
    """Lime CaO, rock salt, a=4.811 A (conventional cubic cell, 8 atoms)."""
    return bulk("CaO", "rocksalt", a=4.811, cubic=True)


def silicon() -> Atoms:
    """Diamond-cubic Si, a=5.431 A (conventional cell, 8 atoms)."""
    return bulk("Si", "diamond", a=5.431, cubic=True)


def dry_ice() -> Atoms:
    """Solid CO2 (dry ice), Pa-3, a=5.624 A, O x=0.1185 (Simon & Peters, Acta Cryst. B36, 2750 (1980)); C=O 1.15 A."""
    return crystal(
        ["C", "O"],
        [(0, 0, 0), (0.1185, 0.1185, 0.1185)],
        spacegroup=205,
        cellpar=[5.624] * 3 + [90] * 3,
    )


def ice_ih(repeat: tuple[int, int, int] = (2, 2, 2), seed: int = 0, oh: float = 0.98) -> Atoms:
    """Proton-disordered hexagonal ice Ih: O on the wurtzite lattice of P6(3)/mmc, a=4.519 c=7.357 A, O z=0.0625
    (O-O 2.76 A; Röttger et al., Acta Cryst. B50, 644 (1994)), ``repeat`` unit cells, and H placed by the ice rules
    (each O donates two and accepts two H bonds, one H per O-O bond, ``oh`` A from its O): the O-O bond graph is
    4-regular, so orienting its edges along a random Euler circuit gives every O in-degree 2 and out-degree 2
    (hand-written: no library builds proton-disordered ice). Relax before use."""
    o = (
        crystal(
            ["O"],
            [(1 / 3, 2 / 3, 0.0625)],
            spacegroup=194,
            cellpar=[4.519, 4.519, 7.357, 90, 90, 120],
        )
        * repeat
    )
    i, j, shift = neighbor_list("ijS", o, 3.0)
    rng = np.random.default_rng(seed)
    edges = [
        (int(a), int(b), tuple(int(x) for x in s))
        for a, b, s in zip(i, j, shift)
        if (a, b, tuple(s)) < (b, a, tuple(-s))
    ]
    adj: dict[int, list[int]] = {k: [] for k in range(len(o))}
    for e, (a, b, _) in enumerate(edges):
        adj[a].append(e)
        adj[b].append(e)
    for k in adj:
        rng.shuffle(adj[k])
    if any(len(v) != 4 for v in adj.values()):
        raise RuntimeError("ice_ih: the O lattice is not four-coordinated (repeat too small?)")
    used = np.zeros(len(edges), bool)
    donor_to: list[tuple[int, np.ndarray]] = []  # (donor O, vector to the acceptor O)
    stack, path = [int(rng.integers(len(o)))], []
    while (
        stack
    ):  # Hierholzer's algorithm: the circuit's direction orients each bond donor -> acceptor
        v = stack[-1]
        while adj[v] and used[adj[v][-1]]:
            adj[v].pop()
        if not adj[v]:
            path.append(stack.pop())
            continue
        e = adj[v].pop()
        used[e] = True
        a, b, s = edges[e]
        vec = o.positions[b] + np.array(s) @ o.cell.array - o.positions[a]
        donor_to.append((v, vec if v == a else -vec))
        stack.append(b if v == a else a)
    h = [o.positions[d] + oh * vec / np.linalg.norm(vec) for d, vec in donor_to]
    ice = o + Atoms(f"H{len(h)}", positions=h)
    ice.info["name"] = "ice-Ih"
    return ice


def random_packing(
    formula: str, density_g_cc: float, seed: int = 0, min_distance: float = 2.0
) -> Atoms:
    """Atoms of ``formula`` (e.g. "Ca16Si16O48") placed at random in a cubic periodic box of ``density_g_cc``, every pair
    at least ``min_distance`` A apart: the start of a melt-quench (run MD at high temperature before use)."""
    numbers = Atoms(formula).numbers
    rng = np.random.default_rng(seed)
    side = (atomic_masses[numbers].sum() / 6.02214076e23 / density_g_cc) ** (1 / 3) * 1e8
    a = Atoms(cell=[side] * 3, pbc=True)
    for z in rng.permutation(numbers):
        for _ in range(20_000):
            p = rng.random(3) * side
            if (
                not len(a)
                or get_distances(p[None], a.positions, cell=a.cell, pbc=True)[1].min()
                >= min_distance
            ):
                a += Atoms(numbers=[z], positions=[p])
                break
        else:
            raise RuntimeError(
                f"random_packing: cannot place {formula} {min_distance} A apart at {density_g_cc} g/cm3"
            )
    a.info["name"] = f"{formula}-random"
    return a


def molecular_box(
    name: str, n: int, density_g_cc: float, seed: int = 0, min_distance: float = 2.6
) -> Atoms:
    """``n`` randomly oriented copies of molecule ``name`` ("H2CO3": cis,trans carbonic acid; else ase's G2) in a
    cubic periodic box of ``density_g_cc``, centres at least ``min_distance`` A apart and no two molecules' atoms closer
    than 2.0 A."""
    m = carbonic_acid_path(2)[0] if name == "H2CO3" else molecule(name)
    m.positions -= m.get_center_of_mass()
    rng = np.random.default_rng(seed)
    side = (n * m.get_masses().sum() / 6.02214076e23 / density_g_cc) ** (1 / 3) * 1e8
    box = Atoms(cell=[side] * 3, pbc=True)
    centres: list[np.ndarray] = []
    for _ in range(200_000):
        if len(centres) == n:
            break
        p = rng.random(3) * side
        if (
            centres
            and get_distances(p[None], np.array(centres), cell=box.cell, pbc=True)[1].min()
            < min_distance
        ):
            continue
        c = m.copy()
        c.rotate(rng.random() * 360, rng.normal(size=3), center=(0, 0, 0))
        c.positions += p
        if (
            len(box)
            and get_distances(c.positions, box.positions, cell=box.cell, pbc=True)[1].min() < 2.0
        ):
            continue
        centres.append(p)
        box += c
    if len(centres) < n:
        raise RuntimeError(f"molecular_box: cannot place {n} {name} at {density_g_cc} g/cm3")
    box.info["name"] = f"{name}-box-{n}"
    return box


def _add_waters(host: Atoms, n: int, rng: np.random.Generator, draw, fits, what: str) -> Atoms:
    """``host`` plus ``n`` randomly oriented H2O whose O sits at ``draw()`` (A) where ``fits(p, centres)`` accepts it
    (rejection sampling, at most 200 000 draws)."""
    w = molecule("H2O")
    w.positions -= w.positions[0]
    centres: list[np.ndarray] = []
    for _ in range(200_000):
        if len(centres) == n:
            return host
        p = draw()
        if not fits(p, centres):
            continue
        centres.append(p)
        m = w.copy()
        m.rotate(rng.random() * 360, rng.normal(size=3))
        m.positions += p
        host += m
    if len(centres) == n:
        return host
    raise RuntimeError(f"cannot place {n} water molecules {what}")


def water_box(
    n_molecules: int = 32, density_g_cc: float = 1.0, seed: int = 0, min_distance: float = 2.5
) -> Atoms:
    """A cubic periodic box of randomly placed and oriented H2O at ``density_g_cc`` (O-O at least ``min_distance`` A)."""
    rng = np.random.default_rng(seed)
    mass = n_molecules * 18.015 / 6.02214076e23  # g
    side = (mass / density_g_cc) ** (1 / 3) * 1e8  # A
    box = Atoms(cell=[side] * 3, pbc=True)

    def fits(p, centres):
        return (
            not centres
            or get_distances(p[None], np.array(centres), cell=box.cell, pbc=True)[1].min()
            >= min_distance
        )

    box = _add_waters(
        box,
        n_molecules,
        rng,
        lambda: rng.random(3) * side,
        fits,
        f"{min_distance} A apart in {side:.2f} A",
    )
    box.info["name"] = f"water-{n_molecules}"
    return box


def slab_with_water(
    crystal: Atoms, n_water: int, gap_A: float = 14.0, layer_A: float = 6.0, seed: int = 0
) -> Atoms:
    """``crystal`` as a slab open along its third cell vector (pbc = T, T, F) with ``n_water`` randomly placed and oriented
    H2O in a ``layer_A`` thick layer 2.2 A above its top (O-O >= 2.6 A, O-slab >= 2.2 A); the third vector is made normal
    to the slab and lengthened by ``gap_A`` (water layer + vacuum), so the result also runs fully periodic."""
    t = crystal.copy()
    cell = np.array(t.cell)
    normal = np.cross(cell[0], cell[1])
    normal /= np.linalg.norm(normal)
    cell[2] = normal * (abs(float(cell[2] @ normal)) + gap_A)
    t.set_cell(cell, scale_atoms=False)
    t.pbc = (True, True, False)
    top = float(np.max(t.positions @ normal))
    slab = t.positions.copy()
    rng = np.random.default_rng(seed)

    def draw():
        return (
            rng.random() * cell[0]
            + rng.random() * cell[1]
            + normal * (top + 2.2 + rng.random() * layer_A)
        )

    def fits(p, centres):
        d = get_distances(p[None], np.array(centres + list(slab)), cell=cell, pbc=t.pbc)[1][0]
        return d[len(centres) :].min() >= 2.2 and (not centres or d[: len(centres)].min() >= 2.6)

    t = _add_waters(t, n_water, rng, draw, fits, f"in a {layer_A} A layer")
    t.info["name"] = f"{crystal.info.get('name', crystal.get_chemical_formula())}-slab+{n_water}H2O"
    return t


def carbonic_acid_path(n_images: int = 9) -> list[Atoms]:
    """Linear interpolation (IDPP) from cis,trans-H2CO3 to CO2 + H2O (same atom order), endpoints included.

    Geometries from textbook bond lengths (C=O 1.205, C-O 1.34, O-H 0.97; CO2 1.16, H2O 0.96 A /
    104.5 deg); a starting band, not a converged path.
    """
    # atom order: C, O1 (carbonyl), O2, O3, H on O2, H on O3 (pointing at O2 in the product)
    r = Atoms(
        "CO3H2",
        positions=[
            (0, 0, 0),
            (0, 1.205, 0),
            (1.160, -0.670, 0),
            (-1.160, -0.670, 0),
            (1.995, -0.180, 0),
            (-1.120, -1.637, 0),
        ],
    )
    p = Atoms(
        "CO3H2",
        positions=[
            (0, 0, 0),
            (0, 1.16, 0),
            (2.95, -1.40, 0),
            (0, -1.16, 0),
            (3.37, -0.55, 0),
            (2.20, -1.92, 0),
        ],
    )
    if n_images < 2:
        raise ValueError("carbonic_acid_path needs n_images >= 2 (the two endpoints)")
    images = [r] + [r.copy() for _ in range(n_images - 2)] + [p]
    if n_images > 2:
        NEB(images, method="improvedtangent").interpolate("idpp")  # interpolation only
    return images


MOLECULES = ("H2O", "CO2", "CO", "H2", "CH4", "CH3OH", "HCOOH", "H2CO", "C2H6", "CH3COOH")


def small_molecules() -> list[Atoms]:
    """The H/C/O molecules of the mini dataset (ase.build.molecule geometries, G2 set)."""
    return [molecule(n) for n in MOLECULES]


FORMAL_CHARGE = {"Ca": 2, "Si": 4, "O": -2, "H": 1, "C": 4}


def csh_nanoparticle(radius_A: float = 12.0, crystal: Atoms | None = None) -> Atoms:
    """A C-S-H nanoparticle: the atoms of a tobermorite 11 A supercell (``crystal``, default tobermorite_11a())
    whose heavy atoms lie within ``radius_A`` of the supercell centre, plus the H atoms bonded to kept O atoms
    (so OH groups and water stay whole). Non-periodic, centred at the origin. The paper cuts its particle
    (1.2 nm) from amorphous C-S-H made with CLAYFF; this one is cut from the crystal. ``info["formal_charge"]``
    is the net formal charge (Ca +2, Si +4, O -2, H +1, C +4) of the cut."""
    base = crystal if crystal is not None else tobermorite_11a()
    spacing = np.abs(np.linalg.det(base.cell)) / np.linalg.norm(
        np.cross(base.cell[[1, 2, 0]], base.cell[[2, 0, 1]]), axis=1
    )
    reps = tuple(int(np.ceil((2 * radius_A + 6.0) / s)) for s in spacing)
    sc = base * reps
    centre = sc.cell.sum(axis=0) / 2
    pos = sc.positions
    sym = np.array(sc.get_chemical_symbols())
    heavy = (sym != "H") & (np.linalg.norm(pos - centre, axis=1) <= radius_A)
    keep = heavy.copy()
    o_idx = np.flatnonzero(sym == "O")
    for h in np.flatnonzero(sym == "H"):
        d = sc.get_distances(h, o_idx, mic=True)
        if heavy[o_idx[np.argmin(d)]] and d.min() < 1.25:
            keep[h] = True
    np_atoms = sc[keep]
    np_atoms.positions -= centre
    # unwrap: every kept atom is within radius + 1.25 A of the centre, far from the supercell faces
    np_atoms.set_cell(None)
    np_atoms.pbc = False
    np_atoms.info["formal_charge"] = int(
        sum(FORMAL_CHARGE[x] for x in np_atoms.get_chemical_symbols())
    )
    np_atoms.info["name"] = f"csh-np-r{radius_A:g}"
    return np_atoms


def nanoparticle_in_fluid(
    particle: Atoms,
    box_A: float,
    co2_fraction: float = 0.5,
    density_g_cc: float = 1.0,
    min_distance: float = 1.8,
    seed: int = 0,
) -> Atoms:
    """``particle`` at the centre of a periodic cubic box of edge ``box_A`` filled with H2O and CO2 molecules
    (``co2_fraction`` of the molecules are CO2) at ``density_g_cc`` in the volume the particle leaves free.
    Molecules sit on a shuffled cubic lattice with random orientations, at least ``min_distance`` A from every
    atom placed before (periodic); raises if the density cannot be packed."""
    rng = np.random.default_rng(seed)
    box = Atoms(cell=[box_A] * 3, pbc=True)
    p = particle.copy()
    p.set_cell(box.cell)
    p.pbc = True
    p.positions += box_A / 2
    r_np = float(np.linalg.norm(particle.positions, axis=1).max()) + min_distance
    v_free = box_A**3 - 4.0 / 3.0 * np.pi * r_np**3
    m_h2o = atomic_masses[atomic_numbers["H"]] * 2 + atomic_masses[atomic_numbers["O"]]
    m_co2 = atomic_masses[atomic_numbers["C"]] + 2 * atomic_masses[atomic_numbers["O"]]
    m_mean = co2_fraction * m_co2 + (1 - co2_fraction) * m_h2o
    n_mol = int(round(density_g_cc * v_free / 1.66053906660 / m_mean))
    n_co2 = int(round(co2_fraction * n_mol))
    kinds = ["CO2"] * n_co2 + ["H2O"] * (n_mol - n_co2)
    rng.shuffle(kinds)
    n_side = int(
        np.ceil(1.3 * (box_A**3 / (v_free / max(n_mol, 1))) ** (1 / 3))
    )  # ~2x the sites needed
    grid = (
        (np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5)
        * box_A
        / n_side
    )
    grid = grid[np.linalg.norm(grid - box_A / 2, axis=1) > r_np]
    rng.shuffle(grid)
    placed = p.positions.copy()
    out = p.copy()
    templates = {"H2O": molecule("H2O"), "CO2": molecule("CO2")}
    gi = 0
    for kind in kinds:
        ok = False
        while gi < len(grid) and not ok:
            site = grid[gi]
            gi += 1
            for _ in range(30):
                m = templates[kind].copy()
                m.rotate(rng.normal(size=3), rng.uniform(0, 360), center="COM")
                m.positions += site - m.get_center_of_mass()
                d = m.positions[:, None, :] - placed[None, :, :]
                d -= box_A * np.round(d / box_A)
                if np.sqrt((d**2).sum(-1)).min() >= min_distance:
                    out += m
                    placed = np.concatenate([placed, m.positions])
                    ok = True
                    break
        if not ok:
            raise ValueError(
                f"nanoparticle_in_fluid: cannot pack {n_mol} molecules at {density_g_cc} g/cc in a {box_A} A box "
                f"(min distance {min_distance} A): placed {len(out) - len(p)} atoms' worth"
            )
    out.wrap()
    out.info["name"] = f"{particle.info.get('name', 'np')}-in-H2O-CO2"
    out.info.update(n_h2o=n_mol - n_co2, n_co2=n_co2, particle_atoms=len(p))
    return out
