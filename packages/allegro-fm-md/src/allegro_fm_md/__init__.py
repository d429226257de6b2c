"""allegro_fm_md: a distributed, strictly-local MD engine for Allegro-FM models.

In progress (issue #4). What exists:

- ``build_edges``, ``VerletList``: numba cell lists over local + ghost atoms with a Verlet skin (neighbor.py)
- ``LennardJones``, ``Morse``: reference potentials with the same call as Allegro-FM's (reference.py)
- ``periodic_halo``, ``fold_forces``, ``wrap``: periodic images as ghosts on one rank (ghosts.py)

- ``ForceEvaluator``, ``State``, ``VelocityVerlet``: ``Langevin``: one-rank forces, NVE and NVT (forces.py, integrators.py)
- ``Simulation``: thermo log, restart files, guards on one rank (simulation.py)
- ``Decomposition``, ``GhostExchange``, ``DistributedForceEvaluator``: MPI spatial decomposition (comm.py)

- ``RunFile``, ``run``: the TOML run file and ``allegro-fm-md run`` (runfile.py, cli.py)

- ``NoseHooverChain``, ``UniaxialDeformation``: NVT by a thermostat chain, tensile deformation (integrators.py)
- ``radial_distribution``: g(r) and coordination numbers (analysis.py)

- ``CRescaleNPT``: NPT; ``FIRE``, ``relax_cell``, ``EngineCalculator``: minimisation (minimize.py)

Not yet: anisotropic NPT, dead-rank handling, benchmarks.
"""

from .__about__ import __version__
from .analysis import RDF, radial_distribution, read_frames
from .comm import Decomposition, GhostExchange, SerialComm, choose_grid, world
from .forces import DistributedForceEvaluator, ForceEvaluator, ForceResult
from .ghosts import Halo, fold_forces, periodic_halo, plane_spacings, wrap
from .integrators import CRescaleNPT, Langevin, NoseHooverChain, State, UniaxialDeformation, VelocityVerlet
from .minimize import FIRE, EngineCalculator, relax_cell
from .neighbor import VerletList, build_edges
from .reference import LennardJones, Morse, PairResult
from .runfile import RunFile, run
from .simulation import Simulation, SimulationError

__all__ = ["__version__", "Halo", "fold_forces", "periodic_halo", "plane_spacings", "wrap", "VerletList", "build_edges",
           "LennardJones", "Morse", "PairResult", "ForceEvaluator", "ForceResult", "State", "VelocityVerlet", "Langevin",
           "Simulation", "SimulationError", "Decomposition", "GhostExchange", "SerialComm", "choose_grid", "world",
           "DistributedForceEvaluator", "RunFile", "run", "NoseHooverChain", "UniaxialDeformation", "RDF", "radial_distribution",
           "read_frames", "CRescaleNPT", "FIRE", "relax_cell", "EngineCalculator"]
