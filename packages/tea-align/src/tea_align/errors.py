"""The one exception type of tea-align: it always names the file and, when known, the frame."""

from __future__ import annotations


class TeaAlignError(Exception):
    """Bad input or an impossible request.

    Attributes: ``path`` (file concerned, or None), ``frame`` (ordinal of the frame in that file, or
    None), ``key`` (the frame's identifier in its source, e.g. an mp-id, or None).
    """

    def __init__(
        self, message: str, *, path: object = None, frame: int | None = None, key: str | None = None
    ):
        self.message = message
        self.path = None if path is None else str(path)
        self.frame = frame
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.frame is not None:
            where.append(f"frame {self.frame}" + (f" ({self.key})" if self.key else ""))
        elif self.key:
            where.append(self.key)
        return (": ".join(where) + ": " if where else "") + self.message
