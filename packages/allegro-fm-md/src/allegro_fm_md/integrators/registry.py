"""Integrator kinds of the run file, registered like potential kinds: adding one is adding a file.

A kind is an ``IntegratorKind``: its name (``[run] integrator = "name"``), the dataclass of its own options (the run
file's ``[run.name]`` table, validated by that schema: types and ``metadata["range"]``, schema.py) and a ``build``
function. Built-in kinds register themselves in their own modules (nve.py, langevin.py, nhc.py, fire.py; the
modifiers npt.py and deform.py), as LAMMPS styles do; other packages add kinds through the entry-point group
``allegro_fm_md.integrators`` (the entry point names an ``IntegratorKind``), a script through ``register_integrator``.

A *modifier* (``modifier=True``) wraps the chosen integrator when its table is present in the run file: the
stochastic-cell-rescaling barostat ``[run.npt]`` and the uniaxial deformation ``[run.deform]``, applied in ``order``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from typing import Any

from ..errors import MDInputError
from ..schema import check_values

ENTRY_POINT_GROUP = "allegro_fm_md.integrators"


@dataclass(frozen=True)
class IntegratorKind:
    """One run-file integrator kind.

    ``build(run, options, inner)`` returns the integrator (contracts.Integrator): ``run`` is the run file's ``RunSpec``
    (dt_fs, steps, temperature_K, temperature_end_K, seed: ``temperature_schedule(run)`` gives the bath target),
    ``options`` an instance of ``options`` (this kind's table), ``inner`` the integrator a modifier wraps (None for a
    base kind). It raises MDInputError (or ValueError) for inconsistent settings. ``needs_periodic_cell``: refused for
    slabs and molecules (barostats, deformation, cell relaxation). ``doc``: one line for ``--help`` texts and errors."""

    name: str
    options: type
    build: Callable[[Any, Any, Any], Any]
    modifier: bool = False
    order: int = 0
    needs_periodic_cell: bool = False
    doc: str = ""

    def parse(self, table: dict, where: str = "run file") -> Any:
        """This kind's options from a run-file table (MDInputError naming ``where``, the table and the key)."""
        check_values(where, f"run.{self.name}", self.options, table)
        return self.options(**table)

    def keys(self) -> tuple[str, ...]:
        """The option names of this kind's table."""
        return tuple(f.name for f in fields(self.options))


_REGISTERED: dict[str, IntegratorKind] = {}


def register_integrator(kind: IntegratorKind) -> IntegratorKind:
    """Make ``kind`` available to run files (a later registration of the same name replaces it). Returns ``kind``."""
    if not isinstance(kind, IntegratorKind):
        raise TypeError(f"register_integrator takes an IntegratorKind, not {type(kind).__name__}")
    _REGISTERED[kind.name] = kind
    return kind


def integrator_kinds() -> dict[str, IntegratorKind]:
    """All kinds: built-ins (registered by their modules), installed packages' entry points, registered ones."""
    kinds = dict(_REGISTERED)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in kinds:
            try:
                kind = ep.load()
            except (
                Exception
            ) as exc:  # a broken plug-in is named, not a traceback from deep inside importlib
                raise MDInputError(
                    f"integrator plug-in {ep.name!r} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(kind, IntegratorKind) or kind.name != ep.name:
                raise MDInputError(
                    f"integrator plug-in {ep.name!r} ({ep.value}) is not an IntegratorKind named {ep.name!r}"
                )
            kinds[ep.name] = kind
    return kinds


def temperature_schedule(run) -> float | Callable[[float], float]:
    """The bath target of a run: ``temperature_K``, or a linear ramp to ``temperature_end_K`` over the run (K of fs)."""
    t0, t1, total = run.temperature_K, run.temperature_end_K, run.steps * run.dt_fs
    return (
        t0 if t1 is None else (lambda t: t0 + (t1 - t0) * min(t / total, 1.0) if total > 0 else t1)
    )


def build_integrator(run):
    """The integrator of a ``RunSpec``: its kind's ``build``, then each modifier whose table is given, in ``order``."""
    kinds = integrator_kinds()
    kind = kinds.get(run.integrator)
    if kind is None or kind.modifier:
        base = sorted(k for k, v in kinds.items() if not v.modifier)
        raise MDInputError(f"unknown integrator {run.integrator!r}; known: {', '.join(base)}")
    try:
        integ = kind.build(run, run.option(kind.name), None)
        for mod in sorted(
            (kinds[n] for n in run.options if kinds[n].modifier), key=lambda k: k.order
        ):
            integ = mod.build(run, run.options[mod.name], integ)
    except ValueError as exc:  # the kinds' own checks (time step, friction, ...) are bad input
        raise MDInputError(str(exc)) from exc
    return integ
