"""The runner's steps of one server: launch, scripts, register, drain, terminate, rollback.

Mixed into the Runner (as LifecycleSteps is), whose records it writes through ``_record``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from pipeline.domain import roll
from pipeline.domain.models import RunKind, Step, creates_server
from pipeline.execution import bake, scripts
from pipeline.execution.errors import internal_error
from pipeline.execution.lifesteps import LifecycleSteps, Slot, probe_script
from pipeline.state.steps import ServerEvent
from providers.base import (
    TAG_APP,
    TAG_ENV,
    TAG_KEY,
    TAG_RUN,
    Image,
    LaunchRequest,
    ProviderError,
    ScriptFailed,
    ScriptResult,
    Server,
    Target,
)

log = logging.getLogger(__name__)
Alike = tuple[scripts.Script, scripts.Script]
"""The scrub and probe scripts, the same for every server of a run."""


class ServerSteps(LifecycleSteps):
    def _record(
        self,
        slot: Slot,
        events: Sequence[ServerEvent],
        unless_cancelled: Sequence[ServerEvent] = (),
    ) -> bool:
        raise NotImplementedError

    # steps ------------------------------------------------------------------------------

    def _do(self, slot: Slot, step: Step) -> None:
        kind, number = slot.run.kind, slot.record.slot
        launches = kind in (RunKind.SCALE_UP, RunKind.BAKE)
        if launches or (kind == RunKind.ROLL and roll.is_new(number)):
            self._launched_step(slot, step)
        elif kind in (RunKind.SCALE_DOWN, RunKind.ROLL):
            self._scale_down_step(slot, step)
        elif kind == RunKind.PRUNE:
            self._prune_step(slot)
        else:
            self._refresh_step(slot, step)

    def _launch(self, slot: Slot) -> Server:
        image = slot.provider.resolve_image(slot.run.image_id)
        return slot.provider.launch(self._request(slot, image))

    def _request(self, slot: Slot, image: Image) -> LaunchRequest:
        """What launching the slot's server asks of the provider."""
        tags = {TAG_RUN: str(slot.run.id), TAG_APP: slot.run.app, TAG_ENV: slot.run.env}
        if slot.run.kind == RunKind.BAKE:
            del tags[TAG_ENV]  # a builder is no member of the env's fleet
        return LaunchRequest(
            key=slot.record.key,
            name=slot.record.key,
            image=image,
            spec=slot.env.spec,
            tags=tags,
            scripts=self._scripts(slot),
        )

    def _scripts(self, slot: Slot, alike: Alike | None = None) -> tuple[scripts.Script, ...]:
        """The scripts a new server runs, in order: a builder bakes, a server deploys.
        ``alike`` (``_alike``) are those every server of the run runs alike, made once."""
        if slot.scripts is None:
            deploy = slot.env.deploy
            scrub, probe = alike or self._alike(slot)
            if slot.run.kind == RunKind.BAKE:
                slot.scripts = (bake.script(slot.env), scrub, probe)
            else:
                made = [scrub, scripts.deploy(deploy, slot.run, slot.record.key), probe]
                if deploy.health_command:
                    made.append(scripts.health(deploy, slot.run, slot.record.key))
                slot.scripts = tuple(made)
        return slot.scripts

    def _alike(self, slot: Slot) -> Alike:
        """The scripts every server of the slot's run runs alike: scrub and probe."""
        return scripts.scrub(slot.env.deploy), probe_script(slot.env)

    def _ensure_server(self, slot: Slot) -> Server:
        # A resumed slot finds its server again through the idempotent launch.
        if slot.server is None:
            self._launched(slot, self._launch(slot))
        return slot.server  # type: ignore[return-value] # set by _launched

    def _launched(self, slot: Slot, server: Server) -> None:
        slot.server = server
        self.checkpoint(f"launched:{slot.record.slot}")  # seen by the cloud, not yet stored
        slot.pending.append(("launched", {"provider_id": server.id}))

    def _launched_step(self, slot: Slot, step: Step) -> None:
        """A step of a server the run launches (a scale-up's, a roll's new one, a bake's
        builder): clone launches it, a script step runs its script, then probe, snapshot or
        register."""
        server = self._ensure_server(slot)
        steps = {s.name: s for s in self._scripts(slot)}
        if step in (Step.SCRUB, Step.DEPLOY, Step.BAKE):
            self._script(slot, step.value, steps[step.value])
        elif step == Step.PROBE:
            self._probe(slot, server)
        elif step == Step.SNAPSHOT:
            self._snapshot(slot, server)
        elif step == Step.REGISTER:
            if "health" in steps:
                self._script(slot, "health check", steps["health"])
            # Stored before the call: a crash in it must still deregister on rollback.
            self._record(slot, [("registering", {"registered": True})])
            slot.registering = True
            slot.provider.register(server, self._target(slot))

    def _script(self, slot: Slot, what: str, script: scripts.Script) -> None:
        result = slot.provider.run_script(self._ensure_server(slot), script)
        self._scripted(slot, what, script, result)

    def _scripted(
        self, slot: Slot, what: str, script: scripts.Script, result: ScriptResult
    ) -> None:
        """Take a script's result: its report goes with the slot's next write; a failure raises."""
        if not result.ok:
            tail = _clipped(printable(result.tail(3)).replace("\n", " | ")) or "(no output)"
            raise ScriptFailed(
                f"{what} {_ended(result.exit_code)}: {tail}",
                exit_code=result.exit_code,
                output=result.output,
            )
        report = _summary(script.name, result.output)
        slot.pending.append((f"{script.name}_output", {"note": report}))

    def _target(self, slot: Slot) -> Target:
        return Target(slot.run.target, slot.env.drain_seconds)

    def _find(self, slot: Slot) -> Server | None:
        live = slot.provider.list_servers({TAG_APP: slot.run.app, TAG_ENV: slot.run.env})
        return next((s for s in live if s.id == slot.record.provider_id), None)

    def _scale_down_step(self, slot: Slot, step: Step) -> None:
        server = self._find(slot)
        if server is None:
            return  # already gone: the goal of both steps holds
        if step == Step.DRAIN:
            slot.draining = True  # before the call: it may take the server out, then fail
            slot.provider.deregister(server, self._target(slot))
        else:
            slot.provider.terminate(server)

    # rollback ---------------------------------------------------------------------------

    def _rollback(self, slot: Slot, what: str = "rolled back") -> str | None:
        """Undo a slot that launches: deregister and terminate whatever carries its key. A
        scale-down's server that a drain took out of service is put back into it."""
        if slot.run.kind == RunKind.SCALE_DOWN:
            return self._back_in_service(slot)
        if not creates_server(slot.run.kind, slot.record.slot):
            return None
        try:
            servers = slot.provider.list_servers({TAG_KEY: slot.record.key})
            # Only this slot's thread changes its `registered`: no need to read the whole run
            # (a cancelled 1,000-server run would read it 1,000 times).
            registered = slot.record.registered or slot.registering
            for server in servers:
                if registered:
                    slot.provider.deregister(server, Target(slot.run.target, 0.0))
                slot.provider.terminate(server)
        except ProviderError as exc:
            log.warning("rollback of %s failed: %s", slot.record.key, exc.reason)
            return f"rollback failed: {exc.reason}; the reconciler will retry"
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            reason = internal_error(f"rollback of {slot.record.key}")
            return f"rollback failed: {reason}; the reconciler will retry"
        self._record(slot, [("rolled_back", {"registered": False})])
        names = ", ".join(s.id for s in servers)
        return f"{what} (terminated {names})" if servers else f"{what} (nothing created)"

    def _back_in_service(self, slot: Slot) -> str | None:
        """A cancelled or failed scale-down leaves its server running: if its drain began, the
        server is registered again (registering a member is a no-op), not left out of
        service."""
        drained = slot.draining or slot.record.step in (Step.DRAIN, Step.TERMINATE)
        if not drained:
            return None
        target, name = slot.run.target, slot.record.provider_id or slot.record.key
        try:
            server = self._find(slot)
            if server is None:
                return None  # terminated already: nothing to put back
            slot.provider.register(server, self._target(slot))
        except ProviderError as exc:
            log.warning("putting %s back into %s failed: %s", name, target, exc.reason)
            return f"still out of {target}: registering it again failed ({exc.reason})"
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            reason = internal_error(f"registering {name} again")
            return f"still out of {target}: registering it again failed ({reason})"
        return f"back in {target}"


NOTE_CHARS = 500
"""The longest report of a script kept with its server (the output is the provider's)."""


def _summary(name: str, output: str) -> str:
    """Script ``name``'s report in one line: scrub's removals, or its last line of output;
    what it printed is shown, not obeyed (``printable``)."""
    if name == "scrub" and ("removed " in output or "emptied " in output):
        lines = [line.strip() for line in output.splitlines()]
        cleaned = [line.split(" ", 1)[1] for line in lines if line.startswith(REMOVALS)]
        if cleaned:
            removed = printable(f"scrubbed {len(cleaned)}: " + ", ".join(cleaned))
            return removed if len(removed) <= NOTE_CHARS else removed[:NOTE_CHARS] + "…"
    return _clipped(printable(_last_line(output)))


REMOVALS = ("removed ", "emptied ")
"""How scrub's lines begin (pipeline/execution/sh/scrub.sh); another script's are its own."""


def _last_line(output: str) -> str:
    """The last line of ``output`` with any text, stripped, found from its end: a deploy's
    output can be long, and a thousand servers report at once."""
    text = output.rstrip()
    lines = text[text.rfind("\n") + 1 :].splitlines()  # the other line ends, if any
    return lines[-1].strip() if lines else ""


def _clipped(text: str) -> str:
    """``text`` kept to its last NOTE_CHARS characters (a line's end says how it ended)."""
    return text if len(text) <= NOTE_CHARS else "…" + text[-NOTE_CHARS:]


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters written out (``\\x1b``): a script's output is shown
    in a terminal and in chat, where an escape sequence must not clear the screen or ring."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _ended(exit_code: int) -> str:
    """How a script ended: ``exited 3``, or ``was killed by signal 9`` (a negative code)."""
    return f"was killed by signal {-exit_code}" if exit_code < 0 else f"exited {exit_code}"
