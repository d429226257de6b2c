"""Experiment 5: tensile test of tobermorite 11 A along z at 300 K (paper Fig. 4: brittle fracture near a strain
of 0.15 with FM512, a clean cleavage plane between the Ca double layers; 1e10 /s and 5e9 /s give the same curve).

The model-relaxed T11 cell replicated 2 x 2 x 1 is thermalised at 300 K (Langevin), then strained along z at a
constant engineering strain rate around the same thermostat (allegro-fm-md's UniaxialDeformation; the other
box lengths are held, as in a uniaxial-strain test); the stress szz (GPa, tension positive) comes from the
thermo log. The paper strains stepwise (0.48 ps per strain, stress averaged over the last 0.29 ps); this is the
continuous-rate equivalent. Yield strain: the strain at the stress maximum; fracture: the stress falling below
half its maximum afterwards; the fracture plane: the widest empty slab along z in the last frame, with the
elements bounding it.
"""

from __future__ import annotations

import ase.io
import numpy as np
from ase import units
from tea_align.files import save_figure

from ._common import Context, md, plt, read_thermo, relaxed_t11

PAPER_FRACTURE_STRAIN = 0.15  # FM512 and QMD; FM256: yield at 0.13


def fracture_plane(atoms, bins: int = 200) -> tuple[float, float, dict[str, int]]:
    """(z of the widest empty slab as a fraction of the cell's c, its width A, element counts within 2 A of it)."""
    frac = atoms.get_scaled_positions(wrap=True)[:, 2]
    c = float(np.linalg.norm(atoms.cell[2]))
    zs = np.sort(frac)
    gaps = np.diff(np.concatenate([zs, zs[:1] + 1.0]))
    k = int(np.argmax(gaps))
    mid = (zs[k] + gaps[k] / 2) % 1.0
    d = np.abs(((frac - mid) + 0.5) % 1.0 - 0.5) * c
    near = atoms[d < gaps[k] * c / 2 + 2.0].get_chemical_symbols()
    return float(mid), float(gaps[k] * c), {s: near.count(s) for s in sorted(set(near))}


def analyse(strain: np.ndarray, stress: np.ndarray, window: int = 5) -> dict:
    """Peak stress (GPa), strain at the peak, and the fracture strain (stress below half the peak after it; nan if
    none) of a stress-strain curve, smoothed by a running mean over ``window`` points (fewer at the ends: zero padding
    would halve the last points and read as a fracture)."""
    w = np.ones(min(window, len(stress)))
    s = np.convolve(stress, w, mode="same") / np.convolve(np.ones(len(stress)), w, mode="same")
    k = int(np.argmax(s))
    after = np.flatnonzero(s[k:] < 0.5 * s[k])
    return {
        "peak_GPa": float(s[k]),
        "yield_strain": float(strain[k]),
        "fracture_strain": float(strain[k + after[0]]) if len(after) else float("nan"),
        "smoothed": s,
    }


def stress_field(frame, axis: str = "z") -> tuple[np.ndarray, np.ndarray]:
    """(position along ``axis`` (A, wrapped into the cell), per-atom stress s_axis,axis (GPa, tension > 0)) of a
    trajectory frame with per-atom stresses (``[output] per_atom = ["stress"]``). Per-atom stress here is the atom's
    virial over the atomic volume V/N (ASE's per-atom stresses times N): its mean over the atoms is the potential part
    of the cell's stress."""
    k = "xyz".index(axis)
    s = frame.get_stresses(voigt=False)[:, k, k] * len(frame) / units.GPa
    return frame.get_positions(wrap=True)[:, k], s


def run(
    ctx: Context,
    crystal,
    eq: int,
    rates=(1e12,),
    max_strain: float = 0.25,
    temperature_K: float = 300.0,
    dt_fs: float = 0.5,
    axis: str = "z",
) -> dict:
    """Thermalise ``crystal`` (any periodic structure) for ``eq`` steps of ``dt_fs`` fs at ``temperature_K`` (Langevin), then
    strain it along ``axis`` at each engineering strain rate in ``rates`` (1/s) to ``max_strain``, around the same
    thermostat; returns {rate: {"strain", "stress" (GPa, tension > 0, from the thermo log), analyse()'s numbers,
    the fracture plane}}."""
    therm = md(
        ctx,
        crystal,
        f"thermalise-{temperature_K:g}K",
        integrator="langevin",
        friction_per_fs=0.02,
        steps=eq,
        trajectory_every=eq,
        temperature_K=temperature_K,
        dt_fs=dt_fs,
    )
    out = {}
    for rate in rates:
        steps = int(round(max_strain / (rate * 1e-15) / dt_fs))
        d = md(
            ctx,
            crystal,
            f"strain-{rate:.0e}",
            integrator="langevin",
            friction_per_fs=0.01,
            steps=eq + steps,
            deform_axis=axis,
            strain_rate_per_fs=rate * 1e-15,
            thermo_every=max(steps // 200, 1),
            trajectory_every=max(steps // 20, 1),
            restart_from=str(therm / "restart.npz"),
            temperature_K=temperature_K,
            dt_fs=dt_fs,
            per_atom=("stress",),
        )
        th = read_thermo(d / "thermo.log")
        sel = th["step"] > eq
        strain = rate * 1e-15 * (th["time_fs"][sel] - eq * dt_fs)
        stress = th[f"s{axis}{axis}_GPa"][sel]
        frames = ase.io.read(d / "trajectory.extxyz", ":")
        z, gap, near = fracture_plane(frames[-1])
        a = analyse(strain, stress)
        peak_step = eq + int(round(a["yield_strain"] / (rate * 1e-15) / dt_fs))
        peak = min(frames, key=lambda f: abs(int(f.info["step"]) - peak_step))
        ase.io.write(d / "peak_stress_frame.extxyz", peak)  # with its per-atom stresses
        out[rate] = {
            "strain": strain,
            "stress": stress,
            **a,
            "plane_z_frac": z,
            "gap_A": gap,
            "near": near,
            "peak_frame": peak,
            "peak_frame_strain": rate * 1e-15 * (float(peak.info["time_fs"]) - eq * dt_fs),
        }
    return out


def experiment(ctx: Context) -> tuple[str, list[str], dict]:
    """Quick: strain rate 1e12 /s to 0.25 (the paper's rates are 100-200 x slower); paper: 1e10 and 5e9 /s."""
    eq = 100 if ctx.quick else 2000  # 0.5 fs steps
    rates = (1e12,) if ctx.quick else (1e10, 5e9)  # 1/s
    max_strain = 0.25
    t11 = relaxed_t11(ctx) * (2, 2, 1)
    curves = run(ctx, t11, eq, rates, max_strain)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 4))
    rows = [
        "| strain rate (1/s) | peak stress (GPa) | strain at peak | fracture strain | paper | fracture plane (z/c, gap A, atoms near) |",
        "|---|---|---|---|---|---|",
    ]
    data = {}
    for rate, a in curves.items():
        strain, stress = a["strain"], a["stress"]
        ax.plot(strain, stress, lw=0.6, alpha=0.5)
        ax.plot(strain, a["smoothed"], label=f"{rate:.0e} /s")
        frac_s = (
            f"{a['fracture_strain']:.3f}"
            if np.isfinite(a["fracture_strain"])
            else f"none up to {strain.max():.2f}"
        )
        rows.append(
            f"| {rate:.0e} | {a['peak_GPa']:.2f} | {a['yield_strain']:.3f} | {frac_s} | {PAPER_FRACTURE_STRAIN} | "
            f"{a['plane_z_frac']:.2f}, {a['gap_A']:.1f}, {a['near']} |"
        )
        data[f"{rate:.0e}"] = {
            k: v for k, v in a.items() if k not in ("smoothed", "strain", "stress", "peak_frame")
        }
    ax.axvline(PAPER_FRACTURE_STRAIN, color="k", ls=":", label="paper: fracture (FM512, QMD)")
    ax.set_xlabel("engineering strain (z)")
    ax.set_ylabel("stress szz (GPa, tension > 0)")
    ax.set_title(f"T11 tensile test, {len(t11)} atoms, 300 K")
    ax.legend()
    plot = save_figure(fig, ctx.outdir / "stress_strain.png")
    first = next(iter(curves.values()))
    field = plot_stress_field(
        first["peak_frame"],
        ctx.outdir / "stress_field.png",
        f"per-atom szz at strain {first['peak_frame_strain']:.3f} (nearest frame to the peak stress)",
    )
    text = (
        f"T11 {len(t11)} atoms, Langevin 300 K: {eq} steps of 0.5 fs thermalisation, then uniaxial strain along z to "
        f"{max_strain}. Paper: brittle fracture at strain 0.15 (FM512, QMD), cleavage between the Ca double layers; "
        "strain-rate effect negligible.\n\n" + "\n".join(rows) + "\n"
    )
    text += (
        "\nPer-atom stress at the peak (`stress_field.png`; the frame with its per-atom stresses is "
        "`strain-RATE/peak_stress_frame.extxyz`): each atom's virial over the atomic volume V/N, along z; the binned "
        "mean shows where the load is carried and where the crack opens.\n"
    )
    return (
        text,
        [str(plot.relative_to(ctx.outdir.parent)), str(field.relative_to(ctx.outdir.parent))],
        data,
    )


def plot_stress_field(frame, path, title: str, axis: str = "z", bins: int = 40):
    """Per-atom stress along ``axis`` of a frame (``stress_field``): every atom by element and the binned mean (GPa)."""
    z, s = stress_field(frame, axis)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 4))
    symbols = np.array(frame.get_chemical_symbols())
    for el in sorted(set(symbols)):
        sel = symbols == el
        ax.scatter(z[sel], s[sel], s=4, alpha=0.5, label=el)
    c = float(np.linalg.norm(frame.cell["xyz".index(axis)]))
    edges = np.linspace(0, c, bins + 1)
    idx = np.clip(np.digitize(z, edges) - 1, 0, bins - 1)
    mean = np.array([s[idx == k].mean() if (idx == k).any() else np.nan for k in range(bins)])
    ax.plot(0.5 * (edges[1:] + edges[:-1]), mean, "k-", lw=1.5, label="mean per slab")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"{axis} (A)")
    ax.set_ylabel(f"per-atom s{axis}{axis} (GPa, tension > 0)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=3)
    return save_figure(fig, path)
