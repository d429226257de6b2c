"""allegro_fm_md: a distributed, strictly-local MD engine for Allegro-FM models.

What exists:

- ``build_edges``, ``VerletList``: numba cell lists over local + ghost atoms with a Verlet skin (neighbor.py)
- ``periodic_halo``, ``fold_forces``, ``wrap``: periodic images as ghosts on one rank (ghosts.py)
- ``Decomposition``, ``GhostExchange``: MPI spatial decomposition, ghost exchange, migration (comm.py)
- ``ForceEvaluator``, ``DistributedForceEvaluator``: where forces are computed, one rank or MPI (forces.py)
- ``Potential``, ``PotentialResult``, ``check_potential``: the force-provider contract every potential meets, and its
  conformance check; ``PerAtomVirialPotential`` (per-atom virials) and ``CommitteeLikePotential`` (member forces, per-atom
  force deviation): its optional capabilities; ``Integrator``: what Simulation drives (contracts.py; defaults in ``IntegratorBase``)
- ``LennardJones``, ``Morse``: reference potentials with the same call as Allegro-FM's (reference.py)
- ``State`` (state.py); ``VelocityVerlet``, ``Langevin``, ``NoseHooverChain``, ``FIREIntegrator``, ``CRescaleNPT``,
  ``UniaxialDeformation``: one file per run-file kind under integrators/, each registering itself; ``IntegratorKind``,
  ``register_integrator``, ``integrator_kinds``: the kinds, built in or from the ``allegro_fm_md.integrators`` entry
  points (integrators/registry.py); ``FIRE``, ``relax_cell``, ``EngineCalculator`` (minimize.py)
- ``Comm`` (contracts.py): every call the engine makes on a communicator; ``SerialComm`` / ``SERIAL``: one process
- ``Simulation``: a loop of integrator step, guards and reporters (thermo log, trajectories, restart files, or your own:
  reporters.py; ``ForceDeviationGuard``: a committee's records and stop), per-atom outputs (``[output] per_atom``:
  energy, stress, force deviation), one rank or MPI; ``RankFailure``,
  ``abort_all``: a failing rank stops every rank with its name and step (simulation.py, trajectory.py)
- ``RunFile``, ``run``: the TOML run file and ``allegro-fm-md run`` (runfile.py, cli.py); ``register_potential_kind``,
  ``potential_kinds``: run-file potential kinds, built in or from the ``allegro_fm_md.potentials`` entry points
  (potentials.py)
- ``radial_distribution``: g(r) and coordination numbers, ``allegro-fm-md rdf`` (analysis.py)
- ``time_engine``, ``pingpong``, ``project_weak_scaling``: scaling measurements and the many-rank model (scaling.py;
  ``allegro-fm-md scale`` is the MPI worker)

Not yet: a tilting (triclinic-shape) barostat; GPU runs (not tested here).
"""

from .__about__ import __version__
from .analysis import RDF, radial_distribution, read_frames
from .comm import SERIAL, Decomposition, GhostExchange, SerialComm, choose_grid, world
from .contracts import (
    Comm,
    CommitteeLikePotential,
    ConformanceReport,
    Guard,
    Integrator,
    PerAtomVirialPotential,
    Potential,
    PotentialContractError,
    PotentialResult,
    Reporter,
    check_potential,
)
from .errors import MDInputError
from .forces import DistributedForceEvaluator, ForceEvaluator, ForceResult
from .ghosts import Halo, fold_forces, periodic_halo, plane_spacings, wrap
from .integrators import (
    CRescaleNPT,
    FIREIntegrator,
    IntegratorBase,
    IntegratorContractError,
    IntegratorKind,
    Langevin,
    NoseHooverChain,
    UniaxialDeformation,
    VelocityVerlet,
    check_integrator,
    integrator_kinds,
    register_integrator,
    verlet_step,
)
from .minimize import FIRE, EngineCalculator, relax_cell
from .neighbor import VerletList, build_edges
from .potentials import potential_kinds, register_potential_kind
from .reference import LennardJones, Morse
from .reporters import (
    THERMO_COLUMNS,
    FiniteGuard,
    ForceDeviationGuard,
    MinDistanceGuard,
    ReporterBase,
    RestartReporter,
    Thermo,
    ThermoReporter,
    TrajectoryReporter,
)
from .restart import RestartFile, read_restart_file, restart_atoms, write_restart_file
from .runfile import OutputSpec, PotentialSpec, RunFile, RunSpec, SystemSpec, run
from .scaling import (
    TimedPotential,
    mpi_command,
    mpiexec_path,
    pingpong,
    project_weak_scaling,
    time_engine,
)
from .simulation import RankFailure, Simulation, SimulationError, abort_all
from .state import State

__all__ = [
    "__version__",
    "Halo",
    "fold_forces",
    "periodic_halo",
    "plane_spacings",
    "wrap",
    "VerletList",
    "build_edges",
    "LennardJones",
    "Morse",
    "Potential",
    "PotentialResult",
    "check_potential",
    "PotentialContractError",
    "ConformanceReport",
    "Integrator",
    "IntegratorBase",
    "verlet_step",
    "Reporter",
    "Guard",
    "MDInputError",
    "THERMO_COLUMNS",
    "FiniteGuard",
    "ForceDeviationGuard",
    "PerAtomVirialPotential",
    "CommitteeLikePotential",
    "MinDistanceGuard",
    "ReporterBase",
    "RestartReporter",
    "Thermo",
    "ThermoReporter",
    "TrajectoryReporter",
    "potential_kinds",
    "register_potential_kind",
    "RestartFile",
    "read_restart_file",
    "restart_atoms",
    "write_restart_file",
    "Comm",
    "ForceEvaluator",
    "ForceResult",
    "State",
    "VelocityVerlet",
    "Langevin",
    "Simulation",
    "SimulationError",
    "Decomposition",
    "GhostExchange",
    "SerialComm",
    "choose_grid",
    "world",
    "DistributedForceEvaluator",
    "RunFile",
    "run",
    "NoseHooverChain",
    "UniaxialDeformation",
    "RDF",
    "radial_distribution",
    "read_frames",
    "CRescaleNPT",
    "FIRE",
    "relax_cell",
    "EngineCalculator",
    "FIREIntegrator",
    "RankFailure",
    "abort_all",
    "SystemSpec",
    "PotentialSpec",
    "RunSpec",
    "OutputSpec",
    "TimedPotential",
    "time_engine",
    "pingpong",
    "project_weak_scaling",
    "mpiexec_path",
    "mpi_command",
    "SERIAL",
    "IntegratorKind",
    "integrator_kinds",
    "register_integrator",
    "check_integrator",
    "IntegratorContractError",
]
