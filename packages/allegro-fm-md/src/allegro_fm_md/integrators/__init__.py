"""Time integration and minimisation: one file per run-file kind, each registering itself (registry.py).

- ``nve`` (nve.py): ``VelocityVerlet``
- ``langevin`` (langevin.py): ``Langevin`` (BAOAB, counter-based noise)
- ``nhc`` (nhc.py): ``NoseHooverChain``
- ``fire`` (fire.py): ``FIREIntegrator`` (minimisation)
- modifiers around them: ``[run.npt]`` (npt.py): ``CRescaleNPT``; ``[run.deform]`` (deform.py): ``UniaxialDeformation``

``base.py``: ``IntegratorBase`` (the contract's defaults), ``verlet_step``, ``Wrapper``; ``conformance.py``:
``check_integrator``, the public conformance check. ``State`` lives in state.py.
Add a kind: write a module with its integrator, an options dataclass and ``register_integrator(IntegratorKind(...))``,
or expose the ``IntegratorKind`` through the ``allegro_fm_md.integrators`` entry-point group of another package.
"""

from ..state import State
from . import deform, fire, langevin, nhc, npt, nve  # noqa: F401  (each module registers its kind)
from .base import IntegratorBase, Wrapper, verlet_step
from .conformance import IntegratorContractError, check_integrator
from .deform import UniaxialDeformation
from .fire import FIREIntegrator
from .langevin import Langevin
from .nhc import NoseHooverChain
from .npt import CRescaleNPT
from .nve import VelocityVerlet
from .registry import (
    ENTRY_POINT_GROUP,
    IntegratorKind,
    build_integrator,
    integrator_kinds,
    register_integrator,
    temperature_schedule,
)

__all__ = [
    "State",
    "IntegratorBase",
    "Wrapper",
    "verlet_step",
    "UniaxialDeformation",
    "FIREIntegrator",
    "Langevin",
    "NoseHooverChain",
    "CRescaleNPT",
    "VelocityVerlet",
    "ENTRY_POINT_GROUP",
    "IntegratorKind",
    "build_integrator",
    "integrator_kinds",
    "register_integrator",
    "temperature_schedule",
    "check_integrator",
    "IntegratorContractError",
]
