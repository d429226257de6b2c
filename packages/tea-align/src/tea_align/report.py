"""Alignment report: residuals before/after alignment per source and per element, as markdown and PNG."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .alignment import Alignment
from .errors import TeaAlignError
from .files import save_figure, write_text_atomic

log = logging.getLogger("tea_align")


def _f(v, scale: float = 1000.0) -> str:
    return "-" if v is None else f"{v * scale:.2f}"


def report_markdown(al: Alignment) -> str:
    """The report as markdown: the fitted transform per level, then residual tables (meV/atom)."""
    lines = [f"# TEA alignment onto `{al.target_level}`", ""]
    lines += [
        "## Fitted transform: E_target = scale * E_source + sum_Z n_Z shift_Z",
        "",
        "| source level | scale (AEC) | anchors | anchor RMSE raw | after ICEA only | after TEA |",
        "|---|---|---|---|---|---|",
    ]
    for lvl, ls in al.levels.items():
        lines.append(
            f"| {lvl} | {ls.scale:.8f} | {ls.n_anchors} | {_f(ls.anchor_rmse_raw)} | {_f(ls.anchor_rmse_icea)} "
            f"| {_f(ls.anchor_rmse_aligned)} |"
        )
    lines += [
        "",
        "Anchor RMSEs in meV/atom.",
        "",
        "| level | element | shift (eV) | inner-core offset (eV) |",
        "|---|---|---|---|",
    ]
    for lvl, ls in al.levels.items():
        for sym, c in ls.shifts.items():
            off = ls.inner_core_offsets.get(sym)
            lines.append(f"| {lvl} | {sym} | {c:.6f} | {'-' if off is None else f'{off:.6f}'} |")
    st = al.statistics
    if st:
        lines += [
            "",
            "## Composition-model residuals of the fused data (meV/atom)",
            "",
            f"All {st['frames']} frames: before {_f(st['rmse_before'])}, after {_f(st['rmse_after'])}.",
            "",
            "| source | level | frames | atoms | before | after |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in st["sources"].items():
            lines.append(
                f"| {name} | {s['level_of_theory']} | {s['frames']} | {s['atoms']} | {_f(s['rmse_before'])} | {_f(s['rmse_after'])} |"
            )
        lines += [
            "",
            "| element | frames | atoms | before | after | reference energy (eV/atom) |",
            "|---|---|---|---|---|---|",
        ]
        for sym, s in st["elements"].items():
            ref = al.reference_energies.get(sym)
            lines.append(
                f"| {sym} | {s['frames']} | {s['atoms']} | {_f(s['rmse_before'])} | {_f(s['rmse_after'])} "
                f"| {'-' if ref is None else f'{ref:.6f}'} |"
            )
        if st.get("dropped"):
            lines += [
                "",
                "Dropped by preprocessing: "
                + ", ".join(f"{k}: {v}" for k, v in st["dropped"].items()),
            ]
    return "\n".join(lines) + "\n"


def plot_residuals(al: Alignment, path: str | Path) -> Path:
    """Bar chart (log scale) of residual RMSE before/after alignment per source and per element."""
    import matplotlib  # lazy: matplotlib only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib only when plotting

    st = al.statistics
    if not st:
        raise TeaAlignError(
            "alignment has no data statistics (fit it with data to get a residual plot)"
        )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 3]})
    for ax, (title, groups) in zip(
        axes, (("per source", st["sources"]), ("per element", st["elements"]))
    ):
        names = list(groups)
        before = np.array([groups[k]["rmse_before"] or np.nan for k in names]) * 1000
        after = np.array([groups[k]["rmse_after"] or np.nan for k in names]) * 1000
        x = np.arange(len(names))
        ax.bar(x - 0.2, before, 0.4, label="before alignment", color="tab:red")
        ax.bar(x + 0.2, np.maximum(after, 1e-6), 0.4, label="after TEA", color="tab:blue")
        ax.set_xticks(
            x,
            names,
            rotation=30 if title == "per source" else 0,
            ha="right" if title == "per source" else "center",
        )
        ax.set_yscale("log")
        ax.set_ylabel("composition-model RMSE (meV/atom)")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"TEA onto {al.target_level}")
    return save_figure(fig, path, dpi=120)


def write_report(al: Alignment, outdir: str | Path) -> tuple[Path, Path | None]:
    """Write report.md (and residuals.png when the alignment has data statistics and matplotlib is installed) into ``outdir``."""
    outdir = Path(outdir)
    md = write_text_atomic(outdir / "report.md", report_markdown(al))
    png = None
    if al.statistics:
        try:
            png = plot_residuals(al, outdir / "residuals.png")
        except (
            ImportError
        ):  # the [plot] extra is not installed: the report stands without its figure
            log.warning(
                "matplotlib is not installed (pip install 'tea-align[plot]'): residuals.png not drawn"
            )
    return md, png
