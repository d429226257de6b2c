"""The report of ``allegro-fm-bench run``: one markdown file with every experiment's table next to the paper's
numbers, its plots, and the provenance (model, code versions, machine, wall time) of each experiment."""

from __future__ import annotations

import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tea_align.files import write_text_atomic


@dataclass(frozen=True)
class Provenance:
    """Where a number came from: model file (and its sha256), package versions, machine, settings, wall time (s)."""

    model: str
    model_sha256: str
    versions: dict[str, str]
    machine: str
    settings: str
    wall_s: float
    started: str

    def markdown(self) -> str:
        v = ", ".join(f"{k} {x}" for k, x in self.versions.items())
        return (
            f"*model* `{self.model}` (sha256 {self.model_sha256[:12]}); *settings* {self.settings}; *wall time* "
            f"{self.wall_s:.0f} s; *started* {self.started}; *machine* {self.machine}; *code* {v}\n"
        )


@dataclass(frozen=True)
class ExperimentResult:
    """One experiment's outcome: ``markdown`` (tables, numbers next to the paper's), ``plots`` (paths relative to
    the report), ``status`` ("ok" or "failed: <reason>"), and its provenance."""

    name: str
    title: str
    markdown: str
    plots: tuple[str, ...] = ()
    status: str = "ok"
    provenance: Provenance | None = None
    data: dict = field(default_factory=dict)


def _versions() -> dict[str, str]:
    out = {}
    for name in (
        "allegro-fm-bench",
        "allegro-fm-md",
        "allegro-fm-model",
        "tea-align",
        "nequip",
        "nequip-allegro",
        "torch",
        "ase",
        "pyscf",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def machine() -> str:
    """One line: CPU model, cores, memory, OS, Python, torch threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(
            next(
                x
                for x in Path("/proc/meminfo").read_text().splitlines()
                if x.startswith("MemTotal")
            ).split()[1]
        )
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    import torch  # lazy: torch takes seconds to import; only model paths need it

    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, torch threads {torch.get_num_threads()}"
    )


def model_sha256(path: str | Path) -> str:
    """sha256 of a model file ('' if it is not a file)."""
    p = Path(path)
    if not p.is_file():
        return ""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(model_path: str, settings: str, wall_s: float, started: float) -> Provenance:
    """Provenance of an experiment that started at ``started`` (time.time()) and ran ``wall_s`` seconds."""
    return Provenance(
        str(model_path),
        model_sha256(model_path),
        _versions(),
        machine(),
        settings,
        float(wall_s),
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
    )


def write_report(results: list[ExperimentResult], path: str | Path, header: str = "") -> Path:
    """Write the markdown report atomically (tmp file + rename); plots are referenced relative to it."""
    path = Path(path)
    lines = ["# Allegro-FM: the paper's results, reproduced", "", header, ""]
    lines += ["| experiment | status | wall time (s) |", "|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.title} | {r.status} | {r.provenance.wall_s:.0f} |"
            if r.provenance
            else f"| {r.title} | {r.status} | |"
        )
    for r in results:
        lines += ["", f"## {r.title}", "", f"Status: **{r.status}**", "", r.markdown.rstrip(), ""]
        lines += [f"![{r.name}]({p})" for p in r.plots]
        if r.provenance:
            lines += ["", r.provenance.markdown()]
    return write_text_atomic(path, "\n".join(lines) + "\n")
