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
    if not is_member(user, env.operators, groups, user_groups):
        return f"You are not an operator of {env.app}/{env.name}; ask someone who is."
    return _unapprovable(user, env, groups)


def _unapprovable(user: str, env: EnvConfig, groups: Mapping[str, tuple[str, ...]]) -> str | None:
    """Why a run ``user`` requests could never be approved: they may not approve their own,
    and too few others are named. Only when every approver is a user id (or a group of
    byoi.yml): a chat user group's members are known only when someone clicks."""
    approval = env.approval
    if not approval.required or approval.self_approval:
        return None
    people: set[str] = set()
    for ref in approval.approvers:
        members = groups.get(ref[1:], ()) if ref.startswith("@") else (ref,)
        if not all(m[:1] in ("U", "W") for m in members):
            return None
        people.update(members)
    others = sorted(people - {user})
    if len(others) >= approval.approvals:
        return None
    named = ", ".join(others) if others else "nobody else"
    return (
        f"Nobody could approve this run: {env.app}/{env.name} needs {approval.approvals} "
        f"approval(s) from approvers other than you ({named}). Ask another approver to request "
        "it, or name more approvers (or set self_approval) in byoi.yml."
    )


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
