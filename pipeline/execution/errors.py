"""How a server's steps stop early, and how an internal error is told."""

from __future__ import annotations

import logging
import secrets

log = logging.getLogger(__name__)


class Cancelled(Exception):
    pass


class Interrupted(Exception):
    """byoi is shutting down: the slot stays where it is and the next start resumes it."""


def internal_error(what: str) -> str:
    """Log the trace under a short reference and return what a person may be shown."""
    ref = secrets.token_hex(3)
    log.exception("%s failed on an internal error, reference %s", what, ref)
    return f"internal error (reference {ref})"
