"""What fine-tuning gained and lost: errors of the starting model and the fine-tuned one on the same datasets
(``allegro-fm evaluate --before START --after NEW DATA [DATA ...]``).

Each dataset (the new data's held-out frames, a replay or reference set of what the model knew) is evaluated with
both models (``evaluate.evaluate``: energy meV/atom, forces meV/A, stress MPa); the report is a markdown table with the
change of each error and a bar plot of the force errors before and after.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import tea_align
from tea_align.files import write_bytes_atomic, write_text_atomic

from .evaluate import Errors, evaluate
from .loading import load_potential
from .provenance import dataset_level


@dataclass(frozen=True)
class Forgetting:
    """Errors of the models ``before`` and ``after`` fine-tuning on each dataset (name -> ``Errors``)."""

    before: str
    after: str
    datasets: tuple[str, ...]
    errors_before: tuple[Errors, ...]
    errors_after: tuple[Errors, ...]
    #: each dataset's level of theory (read once, when the report is made)
    levels: tuple[str, ...] = ()

    def rows(self) -> list[dict]:
        """One dict per dataset: frames, level, and energy/force/stress RMSE before and after (the ``all`` group)."""
        out = []
        levels = self.levels or tuple(dataset_level(d) for d in self.datasets)
        for name, level, a, b in zip(self.datasets, levels, self.errors_before, self.errors_after):
            out.append(
                {
                    "dataset": Path(name).name,
                    "level": level,
                    "frames": a.frames,
                    **{
                        f"{q}_{w}": getattr(e, q).get("all")
                        for q in ("energy", "forces", "stress")
                        for w, e in (("before", a), ("after", b))
                    },
                }
            )
        return out

    def markdown(self) -> str:
        """The table: each dataset's RMSEs before -> after and the change (negative: better)."""

        def f(v):
            return "-" if v is None else f"{v:.2f}"

        def ch(a, b):
            return "-" if a is None or b is None or a == 0 else f"{100.0 * (b - a) / a:+.1f} %"

        lines = [
            f"Before: `{Path(self.before).name}`, after: `{Path(self.after).name}`.",
            "",
            "| data | level | frames | force RMSE before (meV/A) | after | change "
            "| energy RMSE before (meV/atom) | after | change | stress RMSE before (MPa) | after |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows():
            lines.append(
                f"| {r['dataset']} | {r['level']} | {r['frames']} | {f(r['forces_before'])} | {f(r['forces_after'])} | "
                f"{ch(r['forces_before'], r['forces_after'])} | {f(r['energy_before'])} | {f(r['energy_after'])} | "
                f"{ch(r['energy_before'], r['energy_after'])} | {f(r['stress_before'])} | {f(r['stress_after'])} |"
            )
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Bar plot of the force RMSE of each dataset before and after (PNG, written atomically)."""
        import matplotlib  # lazy: plotting only when a report is written

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: see above

        rows = self.rows()
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(rows), 3.6))
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r["forces_before"] or 0 for r in rows], 0.4, label="before")
        ax.bar([i + 0.2 for i in x], [r["forces_after"] or 0 for r in rows], 0.4, label="after")
        ax.set_xticks(list(x), [r["dataset"] for r in rows], rotation=20, ha="right")
        ax.set_ylabel("force RMSE (meV/A)")
        ax.set_title(f"{Path(self.before).name} -> {Path(self.after).name}", fontsize=9)
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        return write_bytes_atomic(path, buf.getvalue())


def forgetting(
    before: str | Path,
    after: str | Path,
    datasets,
    device: str = "cpu",
    refit_offsets: bool = False,
) -> Forgetting:
    """Errors of model ``before`` and model ``after`` (files or shipped names) on each of ``datasets`` (tea-align
    schema v1). ``refit_offsets``: energy errors after per-element offsets (data at another level than a model)."""
    datasets = tuple(str(d) for d in datasets)
    if not datasets:
        raise ValueError("--before/--after need at least one dataset to evaluate on")
    for d in datasets:
        with tea_align.open_dataset(d):
            pass  # a missing or malformed file is named before any model runs
    pa, pb = load_potential(before, device), load_potential(after, device)
    eb = tuple(evaluate(pa, d, refit_offsets=refit_offsets) for d in datasets)
    ea = tuple(evaluate(pb, d, refit_offsets=refit_offsets) for d in datasets)
    return Forgetting(
        str(before), str(after), datasets, eb, ea, tuple(dataset_level(d) for d in datasets)
    )


def write_report(report: Forgetting, out: str | Path) -> tuple[Path, Path]:
    """``out`` (markdown) and the plot beside it (same name, .png)."""
    out = Path(out)
    png = out.with_suffix(".png")
    report.plot(png)
    text = report.markdown() + f"\n![force errors before and after]({png.name})\n"
    return write_text_atomic(out, text), png
