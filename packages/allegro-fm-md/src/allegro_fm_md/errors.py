"""Errors of allegro-fm-md that mean bad input (exit status 2 in the CLI); everything else is a bug (exit 1).

``MDInputError`` subclasses ValueError, so callers that catch ValueError keep working.
"""

from __future__ import annotations


class MDInputError(ValueError):
    """Bad input: a run file, structure, model, restart or trajectory that cannot be used; the message names it."""
