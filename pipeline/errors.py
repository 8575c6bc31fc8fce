"""byoi's errors: one root, and the errors a person can fix.

    ByoiError                     everything byoi raises on purpose
    ├── UserError                 a person can fix it; ``message`` says what and how
    │   ├── CommandError          the text is not a command (pipeline.domain.commands)
    │   ├── Refused               the caller may not do this to this app or run
    │   ├── Busy                  the environment already has a run in flight
    │   ├── ProviderFailed        a provider refused a call a plan needed
    │   └── UnavailableProvider   a configured provider cannot be built (bot.wiring)
    ├── ConfigError               byoi.yml or a manifest has problems (pipeline.config.yamlsrc)
    ├── ActiveRunExists           the store refused a second active run (pipeline.state.store)
    ├── Cancelled, Interrupted    a run's slot stops (pipeline.execution.runner)
    └── Inconsistency             byoi's own records contradict each other: a bug

Services raise; each edge (the shell, the chat app, the command line; see bot/) turns errors
into replies in one place: a UserError is shown with its message (and usage line), anything
else is logged under a reference (``logged``) and the person is told only that reference.

Provider errors (providers.base.ProviderError) are the port's own: providers import nothing of
the pipeline, so a service translates them where it calls a provider (``provider_errors`` in
pipeline/services/lookup.py), the way httpx maps httpcore's errors. This module imports nothing.
"""

from __future__ import annotations

import logging
import secrets


class ByoiError(Exception):
    """The root of every exception byoi defines."""


class UserError(ByoiError):
    """Something the person who asked can fix; shown only to them, with the usage line of the
    command when the way it was typed is what is wrong."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return self.message


class CommandError(UserError):
    """The text is not a command byoi knows, or not typed the way the command takes it."""

    usage: str

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message, usage)

    def __str__(self) -> str:
        return f"{self.message}\nUsage: {self.usage}"


class Refused(UserError):
    """The caller is not allowed to do this (not an operator or approver, another channel)."""


class Busy(UserError):
    """The environment already has a run in flight; one at a time."""


class ProviderFailed(UserError):
    """A provider refused a call a plan needed; the message says it the way a person can act on."""


class Inconsistency(ByoiError):
    """byoi's own records contradict each other (a run it stored is gone): a bug, never a
    person's mistake, so the edges report it as an internal error."""


def logged(log: logging.Logger, what: str) -> str:
    """Log the exception being handled under a short reference and return the reference, the
    only part of an internal error a person is shown."""
    ref = secrets.token_hex(3)
    log.exception("%s failed on an internal error, reference %s", what, ref)
    return ref
