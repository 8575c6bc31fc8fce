"""Who may request runs and who may approve them (DESIGN.md §6). Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline.config.model import EnvConfig
from pipeline.domain.models import Run


def is_member(
    user: str,
    refs: Iterable[str],
    groups: Mapping[str, tuple[str, ...]],
    user_groups: frozenset[str] = frozenset(),
) -> bool:
    """Does ``user`` match one of ``refs``: `*`, their id, an @group or a user-group id."""
    for ref in refs:
        if ref in ("*", user) or ref in user_groups:
            return True
        if ref.startswith("@") and user in groups.get(ref[1:], ()):
            return True
    return False


def request_refusal(
    user: str,
    env: EnvConfig,
    groups: Mapping[str, tuple[str, ...]],
    user_groups: frozenset[str] = frozenset(),
) -> str | None:
    if is_member(user, env.operators, groups, user_groups):
        return None
    return f"You are not an operator of {env.app}/{env.name}; ask someone who is."


def approval_refusal(
    user: str,
    run: Run,
    env: EnvConfig,
    groups: Mapping[str, tuple[str, ...]],
    user_groups: frozenset[str] = frozenset(),
) -> str | None:
    """Why ``user`` may not approve ``run``, or None if they may."""
    if not is_member(user, env.approval.approvers, groups, user_groups):
        return f"You are not an approver for {env.app}/{env.name}."
    if user == run.requester and not env.approval.self_approval:
        return "You requested this run; someone else has to approve it."
    if user in run.approvers:
        return f"You already approved {run.label}."
    return None
