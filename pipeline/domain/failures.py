"""Provider failures said as a sentence a person can act on.

Capacity, quota and throttling errors carry an SDK's text (`InsufficientInstanceCapacity: We
currently do not have sufficient c5.24xlarge capacity in the Availability Zone you requested`);
people get what happened and what to try, the raw text goes to the log and the audit record.
"""

from __future__ import annotations

from providers.base import Capacity, LimitExceeded, ProviderError, ServerSpec, Throttled

_PLACE_KEY = {"digitalocean": "region"}
"""The manifest key that moves a server elsewhere, where it is not the zone."""


def explain(exc: ProviderError, provider: str, spec: ServerSpec | None = None) -> str:
    """What to tell a person about ``exc``; the reason itself for errors that are already plain."""
    size = spec.size if spec and spec.size else "this size"
    place = (spec.zone or spec.region) if spec else None
    where = f"in {place}" if place else "in this zone"
    if isinstance(exc, Capacity):
        other = _PLACE_KEY.get(provider, "zone (availability_zone)")
        return (
            f"{provider} has no capacity for {size} {where} right now. Try again in a few "
            f"minutes, or choose another {other} or size in the manifest."
        )
    if isinstance(exc, LimitExceeded):
        return (
            f"{provider} refused: an account quota or limit is reached (launching {size} "
            f"{where}). Ask for a higher quota, or scale something else down first."
        )
    if isinstance(exc, Throttled):
        return (
            f"{provider} is throttling byoi's requests (too many at once). Wait a minute and "
            "try again, or lower max_parallel."
        )
    return exc.reason


def is_explained(exc: ProviderError) -> bool:
    """Whether ``explain`` replaced the raw text, which then belongs in the log and audit."""
    return isinstance(exc, Capacity | LimitExceeded | Throttled)
