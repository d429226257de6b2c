"""Validation of run-file tables against typed dataclasses (the run file's sections and every integrator kind's options).

A table's schema is a dataclass: each field's type says what a value must be (an int where an int is meant: no "10",
no 1.5; a float may be written as an int), and a field's ``metadata["range"] = (low, high, low_inclusive)`` (None:
unbounded) where the value must lie. Errors are ``MDInputError`` naming the file, table and key.
"""

from __future__ import annotations

import math
import typing
from dataclasses import fields
from pathlib import Path

from .errors import MDInputError


def field_range(klass, name: str, ranges: dict | None = None):
    """(low, high, low inclusive) of field ``name``: its metadata's "range", else ``ranges[name]``, else None."""
    for f in fields(klass):
        if f.name == name and "range" in f.metadata:
            return f.metadata["range"]
    return (ranges or {}).get(name)


def check_values(
    path: str | Path, table: str, klass, values: dict, ranges: dict | None = None
) -> None:
    """Each of ``values`` is a field of ``klass`` with the field's type, finite, within its range (see the module
    docstring). MDInputError naming ``path``, ``[table]`` and the key."""
    hints = typing.get_type_hints(klass)
    known = {f.name for f in fields(klass)}
    bad = set(values) - known
    if bad:
        raise MDInputError(
            f"{path}: unknown keys in [{table}]: {sorted(bad)}; known: {sorted(known)}"
        )
    for key, v in values.items():
        want = hints[key]
        where = f"{path}: [{table}] {key} = {v!r}"
        optional = type(None) in typing.get_args(want)
        base = (
            next((a for a in typing.get_args(want) if a is not type(None)), want)
            if optional
            else want
        )
        if v is None and optional:
            continue
        if base is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok and not math.isfinite(v):
                raise MDInputError(f"{where}: must be a finite number")
        elif base is int:
            ok = type(v) is int
        elif base is bool:
            ok = isinstance(v, bool)
        elif base is str:
            ok = isinstance(v, str)
        elif typing.get_origin(base) is dict or base is dict:
            ok = isinstance(v, dict)
        else:
            ok = True  # tuples are converted by the caller
        if not ok:
            raise MDInputError(
                f"{where}: must be {getattr(base, '__name__', base)}, not {type(v).__name__}"
            )
        rng = field_range(klass, key, ranges)
        if rng is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
            lo, hi, lo_incl = rng
            if (lo is not None and (v < lo if lo_incl else v <= lo)) or (hi is not None and v > hi):
                bound = (f"{'>=' if lo_incl else '>'} {lo}" if lo is not None else "") + (
                    f" and <= {hi:g}" if hi is not None else ""
                )
                raise MDInputError(f"{where}: must be {bound}")
