"""The paper's experiments, one module each; ``run_experiment`` runs one and returns its ExperimentResult.

Each module has ``experiment(ctx) -> (markdown, plots, data)``; ``ctx.quick`` selects the CI-sized settings
(`allegro-fm-bench run all --quick`), otherwise the paper's.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from tea_align.files import write_text_atomic

from ..report import ExperimentResult, provenance
from ._common import Context
from .transition1x import Skipped

#: name -> (title, module); the order of the report
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "params": ("1. Parameter counts vs Table 1", "params"),
    "eos": ("2. Equation of state of tobermorite 11 A", "eos"),
    "gr": ("3. Pair distribution functions of T11 at 300 K", "gr"),
    "neb": ("4. Carbonic acid decomposition barrier (NEB)", "neb"),
    "tensile": ("5. Tensile test of T11 along z", "tensile"),
    "carbonation": ("6. C-S-H nanoparticle in H2O/CO2 at 1200 K", "carbonation"),
    "transition1x": ("7. Transition1x reactions", "transition1x"),
    "scaling": ("8. Scaling of allegro-fm-md over MPI ranks", "scaling"),
}

log = logging.getLogger("allegro_fm_bench")


def resolve_model(model: str) -> str:
    """A model file path (absolute) from a path or a shipped model's name (allegro-fm-mini); ValueError otherwise."""
    from allegro_fm_model import (
        resolve_model as model_file,
    )  # lazy: allegro-fm-model imports torch and nequip

    try:
        return str(model_file(model).resolve())
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(
            f"model {model!r} is neither a file nor a shipped model name ({exc})"
        ) from exc


def run_experiment(
    name: str, model: str, outdir: str | Path, quick: bool = False
) -> ExperimentResult:
    """Run experiment ``name`` with ``model`` (path or shipped name) into outdir/name; a failure becomes a
    result with status "failed: ..." (the traceback goes to the log), never an exception."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    title, module = EXPERIMENTS[name]
    outdir = Path(outdir)
    ctx = Context(resolve_model(model), outdir / name, quick, outdir / "cache")
    ctx.outdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    t0 = time.perf_counter()
    log.info("experiment %s (%s settings)", name, "quick" if quick else "paper")
    try:
        mod = importlib.import_module(f"{__name__}.{module}")
        text, plots, data = mod.experiment(ctx)
        status = "ok"
    except Skipped as exc:
        text, plots, data, status = f"Skipped: {exc}\n", [], {}, f"skipped: {exc}"
    except Exception as exc:  # noqa: BLE001 - one failed experiment must not lose the others' results
        log.error("experiment %s failed:\n%s", name, traceback.format_exc())
        text, plots, data, status = (
            f"The experiment stopped with an error: `{type(exc).__name__}: {exc}`\n",
            [],
            {},
            f"failed: {type(exc).__name__}: {exc}",
        )
    wall = time.perf_counter() - t0
    prov = provenance(ctx.model, "quick (CI-sized)" if quick else "paper", wall, started)
    res = ExperimentResult(name, title, text, tuple(plots), status, prov, data)
    write_text_atomic(
        ctx.outdir / "result.json",
        json.dumps(
            {"name": name, "status": status, "data": data, "provenance": asdict(prov)},
            indent=1,
            default=float,
        ),
    )
    return res
