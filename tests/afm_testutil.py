"""Shared pieces of the cross-package tests: the nequip 0.6 fixture model and the environment's mpiexec."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

#: the nequip 0.6.1 + Allegro 0.3.0 deployed TorchScript fixture (float32; the published weights' format)
LEGACY = (
    Path(__file__).parents[1]
    / "packages"
    / "allegro-fm-model"
    / "tests"
    / "data"
    / "legacy"
    / "legacy-allegro-0.3.0.pth"
)
#: mpiexec of this environment (pip's mpich), else one on PATH, else None
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
