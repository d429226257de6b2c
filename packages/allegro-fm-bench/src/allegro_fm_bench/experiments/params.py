"""Experiment 1: trainable parameters of the FM presets against the paper's Table 1."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamsResult:
    rows: tuple[tuple[str, int, int], ...]  # (preset, ours, paper)

    def markdown(self) -> str:
        lines = [
            "| preset | parameters (ours) | paper (Table 1) | difference |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {o:,} | {p:,} | {100 * (o / p - 1):+.1f} % |" for n, o, p in self.rows]
        return "\n".join(lines) + "\n"


def run() -> ParamsResult:
    """Build each paper preset over the 89 elements and count its trainable parameters."""
    from allegro_fm_model import (
        PRESETS,
        build_model,
    )  # lazy: allegro-fm-model imports torch and nequip
    from allegro_fm_model.model import (
        count_parameters,
    )  # lazy: allegro-fm-model imports torch and nequip

    return ParamsResult(
        tuple((n, count_parameters(build_model(p)), p.paper_parameters) for n, p in PRESETS.items())
    )


def experiment(ctx) -> tuple[str, list[str], dict]:
    """Report-runner entry: the table (no model needed)."""
    r = run()
    return r.markdown(), [], {n: {"ours": o, "paper": p} for n, o, p in r.rows}
