"""What fine-tuning gained and lost: errors of the starting model and the fine-tuned one on the same datasets
(``allegro-fm evaluate --before START --after NEW DATA [DATA ...]``).

Each dataset (the new data's held-out frames, a replay or reference set of what the model knew) is evaluated with
both models (``evaluate.evaluate``: energy meV/atom, forces meV/A, stress MPa); the report is a markdown table with the
change of each error and a bar plot of the force errors before and after.

The forgetting curve (``forgetting_curve``, ``plot_curves``): a fine-tuning run's force RMSE, epoch by epoch, on the new
data's validation frames and on the replay set's held-out frames (a run with ``replay`` set; ``replay_fraction = 0``
only watches the replay set, for the run without replay). Read from the run's own logs: nequip's CSV log
(``val0``/``val1``) or a nequip 0.6 run's metrics.csv.
"""

from __future__ import annotations

import csv
import io
import math
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


@dataclass(frozen=True)
class Curve:
    """Force RMSE (meV/A) of a fine-tuning run after each epoch (epoch 0: the start) on the new data's validation
    frames (``new``) and the replay set's held-out frames (``replay``; NaN where not measured)."""

    run: str
    epochs: tuple[int, ...]
    new: tuple[float, ...]
    replay: tuple[float, ...]


def _f(x: str | None) -> float:
    return float(x) if x not in (None, "") else math.nan


def forgetting_curve(run_dir: str | Path) -> Curve:
    """The forgetting curve of a fine-tuning run folder (``allegro-fm finetune``'s run_dir): from nequip's CSV logs
    (``logs/version_*/metrics.csv``, val0 = new data, val1 = replay; a resumed run's later versions win) or a nequip 0.6
    run's ``metrics.csv``. ValueError naming the folder when it has neither."""
    run = Path(run_dir)
    by_epoch: dict[int, tuple[float, float]] = {}
    logs = sorted(
        run.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1])
    )
    if logs:
        for log in logs:
            for r in csv.DictReader(open(log, newline="")):
                new, rep = _f(r.get("val0_epoch/forces_rmse")), _f(r.get("val1_epoch/forces_rmse"))
                if not math.isnan(
                    new
                ):  # nequip's epoch k is the validation after k+1 epochs of training
                    by_epoch[int(r["epoch"]) + 1] = (1000.0 * new, 1000.0 * rep)
    elif (run / "metrics.csv").is_file():
        for r in csv.DictReader(open(run / "metrics.csv", newline="")):
            by_epoch[int(r["epoch"])] = (
                _f(r.get("val_force_rmse_meV")),
                _f(r.get("replay_val_force_rmse_meV")),
            )
    if not by_epoch:
        raise ValueError(
            f"{run}: no fine-tuning log (logs/version_*/metrics.csv or metrics.csv) with validation errors"
        )
    ep = sorted(by_epoch)
    return Curve(
        str(run), tuple(ep), tuple(by_epoch[e][0] for e in ep), tuple(by_epoch[e][1] for e in ep)
    )


def plot_curves(
    curves: dict[str, Curve], path: str | Path, start: tuple[float, float] | None = None
) -> Path:
    """Two panels, the new data's and the replay set's force RMSE by epoch, one line per run (label -> Curve); ``start``:
    the starting model's (new, replay) errors drawn as dotted lines. PNG, written atomically."""
    import matplotlib  # lazy: plotting only when a report is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: see above

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), sharex=True)
    for k, (ax, title) in enumerate(
        zip(axes, ("new data (validation frames)", "replay set (held-out frames)"))
    ):
        for label, c in curves.items():
            ax.plot(c.epochs, c.replay if k else c.new, label=label)
        if start is not None:
            ax.axhline(start[k], color="0.5", ls=":", lw=1, label="starting model")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("force RMSE (meV/A)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())
