"""Error types the app shows to a person: each says what went wrong and where.

Every error raised on bad user input derives from `DGRError`, so a page can catch one type, show the message and
keep running.
"""

from __future__ import annotations


class DGRError(Exception):
    """Base class for errors whose message is meant for the user."""


class DataError(DGRError):
    """A dataset file or mapping is unreadable, empty, malformed or wrongly mapped.

    The message names the file, the record or line when known, and the problem.
    """

    def __init__(self, problem: str, *, file: str | None = None, record: int | str | None = None):
        self.problem, self.file, self.record = problem, file, record
        where = []
        if file:
            where.append(str(file))
        if record is not None:
            where.append(f"record {record}")
        super().__init__(f"{': '.join(where)}: {problem}" if where else problem)


class ModelLoadError(DGRError):
    """A model id or path cannot be loaded (unknown, offline, missing files, remote code refused)."""


class SpecError(DGRError):
    """A job spec or config is malformed; raised before any model is loaded."""


class JobCancelled(DGRError):
    """The job saw its cancel flag and stopped cleanly."""
