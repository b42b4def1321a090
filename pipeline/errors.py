"""Errors the CLI turns into one ``Error: …`` line, each with its documented exit code."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

# Exit codes of every command (README, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # a source or step failed; what succeeded is kept
EXIT_USAGE = 2  # usage or configuration error; nothing written
EXIT_LOCKED = 75  # another run holds the writer lock; nothing done (EX_TEMPFAIL)


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` for errors we did not foresee (driver errors carry
    the SQL and more on further lines; ``-v`` logs them whole). A database driver's error is
    named as one, with the driver's own message: ``database error: database is locked
    (OperationalError)`` rather than SQLAlchemy's wrapper text."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        lines = str(error.orig).strip().splitlines()
        return f"database error: {lines[0] if lines else ''} ({type(error.orig).__name__})"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class TrendsError(Exception):
    """Base of the errors users see as one line; ``exit_code`` says how the command ends."""

    exit_code = EXIT_FAILED

    def lines(self) -> list[str]:
        """What the CLI prints, one ``Error:`` line each."""
        return [str(self)]


class UsageError(TrendsError):
    """The command was asked for something it cannot do (bad option value, refused SQL)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The configuration file or an environment override is invalid."""

    def __init__(self, origin: str, key: str, problem: str):
        super().__init__(f"{origin}: {key}: {problem}")
        self.origin = origin
        self.key = key
        self.problem = problem


class LockHeld(TrendsError):
    """Another writer (cron, scheduler, backfill) is running."""

    exit_code = EXIT_LOCKED


class StepFailed(TrendsError):
    """One or more sources failed or stopped early; what succeeded is kept."""

    exit_code = EXIT_FAILED

    def __init__(self, *messages: str):
        super().__init__("; ".join(messages))
        self.messages = list(messages)

    def lines(self) -> list[str]:
        return self.messages
