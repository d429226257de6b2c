"""Errors of allegro-fm-md that mean bad input (exit status 2 in the CLI); everything else is a bug (exit 1).

``MDInputError`` subclasses ValueError, so callers that catch ValueError keep working.
"""

from __future__ import annotations


class MDInputError(ValueError):
    """Bad input: a run file, structure, model, restart or trajectory that cannot be used; the message names it."""


class SimulationError(RuntimeError):
    """A guard stopped the run; ``step`` and ``atoms`` say where."""

    def __init__(self, message: str, step: int, atoms: tuple[int, ...] = ()):
        self.step, self.atoms = step, atoms
        super().__init__(
            f"step {step}: {message}" + (f" (atoms {', '.join(map(str, atoms))})" if atoms else "")
        )
