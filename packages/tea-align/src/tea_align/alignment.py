"""Total Energy Alignment: the fitted ``Alignment`` and how it is fitted from anchor structures.

Model (docs/tea.md has the derivation). For a frame x computed at a source level s, with n_Z(x)
atoms of element Z, the energy it would have at the target level t is

    E_t(x) = alpha_s * E_s(x) + sum_Z n_Z(x) * c_{s,Z}                                   (1)

with c_{s,Z} = eps_t(Z) - alpha_s * eps_s(Z), eps_l(Z) the isolated-atom ("inner core")
energy of Z at level l. Equivalently E_t - sum n eps_t = alpha_s (E_s - sum n eps_s): the
atomization energies are scaled by alpha_s (Atomization Energy Correction) after the per-element
reference is moved from eps_s to eps_t (Inner Core Energy Alignment, offsets
delta_{s,Z} = eps_t(Z) - eps_s(Z)). Forces and stress, derivatives of (1), scale by alpha_s.

Fitting uses anchors: structures computed at both levels. Where eps_s(Z) and eps_t(Z) are both
known (isolated-atom frames among the anchors, or given), c_{s,Z} is tied to them; the other
c_{s,Z} and alpha_s are found by linear least squares over the anchors' per-atom energies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .elements import MAX_Z, symbol_to_z, z_to_symbol
from .errors import TeaAlignError
from .files import write_text_atomic
from .frame import Frame, FrameBatch

ALIGNMENT_FORMAT = "tea-align/alignment"
ALIGNMENT_VERSION = 1


@dataclass(frozen=True)
class LevelShift:
    """The transform (1) for one source level: ``scale`` alpha (dimensionless), ``shifts`` c_Z (eV).

    ``inner_core_offsets`` delta_Z = eps_t - eps_s (eV) for elements whose isolated-atom energies are
    known at both levels. Anchor statistics are per-atom RMSEs (eV/atom) of E_t - E_s: raw, after
    ICEA alone (None when offsets do not cover the anchors), and after the full alignment.
    """

    level: str
    scale: float
    shifts: dict[str, float]
    inner_core_offsets: dict[str, float] = field(default_factory=dict)
    n_anchors: int = 0
    anchor_rmse_raw: float = float("nan")
    anchor_rmse_icea: float | None = None
    anchor_rmse_aligned: float = float("nan")

    def shift_vector(self) -> np.ndarray:
        """(MAX_Z + 1,) c_Z by atomic number; NaN for elements without a shift."""
        v = np.full(MAX_Z + 1, np.nan)
        for s, c in self.shifts.items():
            v[symbol_to_z(s)] = c
        return v


@dataclass(frozen=True)
class Alignment:
    """A fitted TEA alignment onto ``target_level``; versioned JSON via ``save``/``load``.

    ``levels`` maps each source level to its LevelShift; frames at ``target_level`` pass unchanged.
    ``atom_energies`` are the isolated-atom energies used (eV, per level and element);
    ``reference_energies`` per-element energies (eV/atom) of the aligned training data from a least
    squares fit of energy on composition (the model's per-element energy shifts); ``statistics`` holds
    the fit statistics of the data pass (see ``tea_align.stats``).
    """

    target_level: str
    levels: dict[str, LevelShift]
    atom_energies: dict[str, dict[str, float]] = field(default_factory=dict)
    reference_energies: dict[str, float] = field(default_factory=dict)
    statistics: dict = field(default_factory=dict)
    tea_align_version: str = ""

    # -- application -------------------------------------------------------------------------
    def known_levels(self) -> list[str]:
        return [self.target_level, *self.levels]

    def apply(self, batch: FrameBatch) -> FrameBatch:
        """Return ``batch`` with energies (eV), forces and stress moved onto the target level.

        ``energy_raw`` keeps the source value. Raises TeaAlignError naming the frame when its level
        is not part of this alignment or one of its elements has no shift for that level.
        """
        scale = np.ones(batch.n_frames)
        shift = np.zeros(batch.n_frames)
        if batch.n_frames:
            comp = batch.composition()
            for sid, src in enumerate(batch.sources):
                sel = batch.source_id == sid
                if not sel.any() or src.level_of_theory == self.target_level:
                    continue
                ls = self.levels.get(src.level_of_theory)
                if ls is None:
                    i = int(np.argmax(sel))
                    raise TeaAlignError(
                        f"level of theory {src.level_of_theory!r} is not in the alignment (known: {self.known_levels()})",
                        **batch.where(i),
                    )
                c = ls.shift_vector()
                present = comp[sel] > 0
                missing = present & np.isnan(c)[None, :]
                if missing.any():
                    row, z = np.argwhere(missing)[0]
                    i = int(np.flatnonzero(sel)[row])
                    raise TeaAlignError(
                        f"element {z_to_symbol(int(z))} has no alignment shift for level {ls.level!r}: "
                        "add anchors or an isolated-atom energy for it",
                        **batch.where(i),
                    )
                scale[sel] = ls.scale
                shift[sel] = comp[sel] @ np.nan_to_num(c)
        atom_scale = np.repeat(scale, batch.n_atoms)[:, None]
        return FrameBatch(
            numbers=batch.numbers,
            positions=batch.positions,
            forces=batch.forces * atom_scale,
            offsets=batch.offsets,
            cell=batch.cell,
            pbc=batch.pbc,
            energy=batch.energy_raw * scale + shift,
            energy_raw=batch.energy_raw,
            stress=batch.stress * scale[:, None, None],
            has_forces=batch.has_forces,
            has_stress=batch.has_stress,
            source_id=batch.source_id,
            index=batch.index,
            key=batch.key,
            sources=batch.sources,
        )

    # -- serialisation -----------------------------------------------------------------------
    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(
            {"format": ALIGNMENT_FORMAT, "version": ALIGNMENT_VERSION, **d},
            indent=1,
            allow_nan=True,
        )

    @classmethod
    def from_json(cls, text: str, path: str | Path | None = None) -> Alignment:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TeaAlignError(f"alignment is not valid JSON ({exc})", path=path) from exc
        if not isinstance(d, dict) or d.get("format") != ALIGNMENT_FORMAT:
            raise TeaAlignError(
                f"not a tea-align alignment (format {d.get('format') if isinstance(d, dict) else None!r})",
                path=path,
            )
        if d.get("version") != ALIGNMENT_VERSION:
            raise TeaAlignError(
                f"alignment version {d.get('version')} is not supported (this tea-align reads {ALIGNMENT_VERSION})",
                path=path,
            )
        try:
            levels = {k: LevelShift(**v) for k, v in d["levels"].items()}
            al = cls(
                target_level=d["target_level"],
                levels=levels,
                atom_energies=d.get("atom_energies", {}),
                reference_energies=d.get("reference_energies", {}),
                statistics=d.get("statistics", {}),
                tea_align_version=d.get("tea_align_version", ""),
            )
            for (
                lvl,
                ls,
            ) in levels.items():  # an alignment with NaN would write NaN energies into every frame
                numbers = {"scale": ls.scale, **{f"shifts.{k}": v for k, v in ls.shifts.items()}}
                for key, v in numbers.items():
                    if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                        raise TeaAlignError(
                            f"malformed alignment: level {lvl!r} {key} = {v!r} is not a finite number",
                            path=path,
                        )
                if not ls.scale > 0:
                    raise TeaAlignError(
                        f"malformed alignment: level {lvl!r} scale = {ls.scale!r} must be > 0",
                        path=path,
                    )
            return al
        except (KeyError, TypeError, AttributeError) as exc:
            raise TeaAlignError(f"malformed alignment ({exc})", path=path) from exc

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Alignment:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TeaAlignError(f"cannot read alignment ({exc.strerror})", path=path) from exc
        except UnicodeDecodeError as exc:
            raise TeaAlignError(
                f"alignment is not UTF-8 text ({exc.reason} at byte {exc.start})", path=path
            ) from exc
        return cls.from_json(text, path)


# ---------------------------------------------------------------------------------------------
# fitting from anchors


@dataclass(frozen=True)
class AnchorPair:
    """One structure computed at a source level and at the target level (energies in eV)."""

    level: str
    counts: np.ndarray  # (MAX_Z + 1,) atoms per element
    energy_source: float
    energy_target: float
    key: str = ""


def _is_isolated_atom(f: Frame) -> bool:
    if f.n_atoms != 1:
        return False
    if not f.pbc.any():
        return True
    lengths = np.linalg.norm(f.cell, axis=1)
    return bool(np.all(lengths[f.pbc] >= 10.0))


def _fingerprint(f: Frame) -> tuple:
    return (
        f.numbers.tobytes(),
        np.round(f.positions, 4).tobytes(),
        np.round(f.cell, 4).tobytes(),
        f.pbc.tobytes(),
    )


def collect_anchors(
    frames: Iterable[Frame], target_level: str
) -> tuple[list[AnchorPair], dict[str, dict[str, float]]]:
    """Pair frames of the same structure (same atoms, positions and cell within 1e-4 A) across levels.

    Returns the anchor pairs (source level vs target level) and the isolated-atom energies found
    (one-atom frames without periodicity or in a box of at least 10 A): {level: {element: eV}}.
    """
    by_fp: dict[tuple, dict[str, Frame]] = {}
    atoms: dict[str, dict[str, float]] = {}
    for f in frames:
        if _is_isolated_atom(f):
            sym = z_to_symbol(int(f.numbers[0]))
            prev = atoms.setdefault(f.level_of_theory, {}).get(sym)
            if prev is not None and abs(prev - f.energy) > 1e-6:
                raise TeaAlignError(
                    f"two isolated-atom energies for {sym} at {f.level_of_theory!r}: {prev} and {f.energy} eV",
                    frame=f.index,
                    key=f.key,
                )
            atoms[f.level_of_theory][sym] = f.energy
            continue
        by_fp.setdefault(_fingerprint(f), {}).setdefault(f.level_of_theory, f)
    pairs = []
    for group in by_fp.values():
        t = group.get(target_level)
        if t is None:
            continue
        counts = np.bincount(t.numbers, minlength=MAX_Z + 1)
        for level, f in group.items():
            if level != target_level:
                pairs.append(AnchorPair(level, counts, f.energy, t.energy, f.key or t.key))
    return pairs, atoms


def fit_level(
    level: str,
    pairs: list[AnchorPair],
    atom_energies: dict[str, dict[str, float]],
    target_level: str,
    fix_scale: float | None = None,
) -> LevelShift:
    """Least-squares fit of alpha and c_Z of eq. (1) for one source level (see module docstring)."""
    pairs = [p for p in pairs if p.level == level]
    eps_t = {symbol_to_z(k): v for k, v in atom_energies.get(target_level, {}).items()}
    eps_s = {symbol_to_z(k): v for k, v in atom_energies.get(level, {}).items()}
    tied = sorted(set(eps_t) & set(eps_s))
    if not pairs and fix_scale is None:
        raise TeaAlignError(
            f"no anchor structures computed at both {level!r} and {target_level!r}: "
            "the atomization-energy scale cannot be fitted (give anchors, or fix the scale)"
        )
    counts = np.array([p.counts for p in pairs]).reshape(-1, MAX_Z + 1)
    n = counts.sum(axis=1).astype(float) if pairs else np.zeros(0)
    es = np.array([p.energy_source for p in pairs])
    et = np.array([p.energy_target for p in pairs])
    present = np.flatnonzero(counts.sum(axis=0))
    free = [int(z) for z in present if z not in tied]
    et_ref = counts[:, tied] @ np.array([eps_t[z] for z in tied]) if tied else np.zeros(len(pairs))
    es_ref = counts[:, tied] @ np.array([eps_s[z] for z in tied]) if tied else np.zeros(len(pairs))
    y = (et - et_ref) / n if pairs else np.zeros(0)
    cols = [] if fix_scale is not None else [(es - es_ref) / n]
    cols += [counts[:, z] / n for z in free]
    if fix_scale is not None:
        y = y - fix_scale * (es - es_ref) / n
    unknowns = len(cols)
    if unknowns:
        X = np.column_stack(cols)
        sol, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
        if rank < unknowns:
            what = [] if fix_scale is not None else ["the scale"]
            raise TeaAlignError(
                f"anchors for {level!r} do not determine {', '.join(what + [z_to_symbol(z) for z in free])}: "
                f"{len(pairs)} anchors, rank {rank} < {unknowns}; add anchors of varied composition or isolated-atom energies"
            )
    else:
        sol = np.zeros(0)
    alpha = float(fix_scale) if fix_scale is not None else float(sol[0])
    c_free = sol if fix_scale is not None else sol[1:]
    shifts = {z_to_symbol(z): float(eps_t[z] - alpha * eps_s[z]) for z in tied}
    shifts.update({z_to_symbol(z): float(c) for z, c in zip(free, c_free)})
    offsets = {z_to_symbol(z): float(eps_t[z] - eps_s[z]) for z in tied}
    # statistics on the anchors, per atom
    rmse = lambda r: float(np.sqrt(np.mean(r**2))) if len(r) else float("nan")  # noqa: E731
    cvec = np.zeros(MAX_Z + 1)
    for s, c in shifts.items():
        cvec[symbol_to_z(s)] = c
    raw = (et - es) / n if pairs else np.zeros(0)
    aligned = (et - (alpha * es + counts @ cvec)) / n if pairs else np.zeros(0)
    icea = None
    if pairs and not free:
        dvec = np.zeros(MAX_Z + 1)
        dvec[tied] = [eps_t[z] - eps_s[z] for z in tied]
        icea = rmse((et - (es + counts @ dvec)) / n)
    return LevelShift(
        level=level,
        scale=alpha,
        shifts=shifts,
        inner_core_offsets=offsets,
        n_anchors=len(pairs),
        anchor_rmse_raw=rmse(raw),
        anchor_rmse_icea=icea,
        anchor_rmse_aligned=rmse(aligned),
    )


def fit_alignment(
    anchors: Iterable[Frame],
    target_level: str,
    levels: Iterable[str] = (),
    atom_energies: dict[str, dict[str, float]] | None = None,
    fix_scale: dict[str, float] | None = None,
) -> Alignment:
    """Fit the LevelShift of every source level found among the anchors (and ``levels``).

    ``atom_energies`` ({level: {element: eV}}) add to isolated-atom frames found in the anchors;
    ``fix_scale`` ({level: alpha}) skips the AEC fit for those levels (ICEA only when alpha = 1).
    """
    pairs, found = collect_anchors(anchors, target_level)
    merged: dict[str, dict[str, float]] = {k: dict(v) for k, v in found.items()}
    for lvl, d in (atom_energies or {}).items():
        for sym, e in d.items():
            symbol_to_z(sym)
            old = merged.setdefault(lvl, {}).get(sym)
            if old is not None and abs(old - e) > 1e-6:
                raise TeaAlignError(
                    f"isolated-atom energy of {sym} at {lvl!r} given as {e} eV but anchors say {old} eV"
                )
            merged[lvl][sym] = float(e)
    all_levels = {p.level for p in pairs} | set(levels) | (set(merged) - {target_level})
    all_levels.discard(target_level)
    fix_scale = fix_scale or {}
    if not all_levels:
        raise TeaAlignError(
            f"nothing to align: no anchors at a level other than the target {target_level!r}"
        )
    shifts = {
        lvl: fit_level(lvl, pairs, merged, target_level, fix_scale.get(lvl))
        for lvl in sorted(all_levels)
    }
    return Alignment(
        target_level=target_level,
        levels=shifts,
        atom_energies=merged,
        tea_align_version=__version__,
    )
