"""How a server's steps stop early, and how an internal error is told."""

from __future__ import annotations

import logging

from pipeline.errors import ByoiError, logged

log = logging.getLogger(__name__)


class Cancelled(ByoiError):
    """The run's cancel was requested: the slot stops and rolls back."""


class Interrupted(ByoiError):
    """byoi is shutting down: the slot stays where it is and the next start resumes it."""


def internal_error(what: str) -> str:
    """Log the trace under a short reference and return what a person may be shown."""
    return f"internal error (reference {logged(log, what)})"
