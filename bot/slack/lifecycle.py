"""Start and stop of `byoi serve`: waiting for Slack, readiness, and one shutdown deadline.

Shutdown (SIGTERM or SIGINT) runs under one overall deadline, ``BYOI_SHUTDOWN_SECONDS``
(default 25, below the usual 30 s grace of process managers): stop taking requests, start no
new step, let the steps in flight finish and be stored, tell callers whose acked requests were
not carried out, show pending cards as far as Slack lets us, and exit. The next start resumes.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.health import Readiness

log = logging.getLogger(__name__)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self, keep: float = 0.0) -> float:
        """Seconds left, keeping ``keep`` seconds for what comes after."""
        return max(0.0, self.at - time.monotonic() - keep)


def on_stop_signals(stopping: threading.Event) -> None:
    """SIGTERM/SIGINT start the shutdown; a second one exits at once. The handler only sets
    ``stopping``: it runs in the main thread between two bytecodes, wherever that thread is,
    so it takes no lock a logging call would (``wait_for_stop`` says what came)."""

    def handle(signum: int, _frame: object) -> None:
        if stopping.is_set():
            os._exit(128 + signum)
        _received.append(signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def handle_signals() -> threading.Event:
    """The first thing `byoi serve` does: from here on SIGTERM or SIGINT sets the event it
    returns, and SIGUSR1 dumps every thread's stack. A SIGTERM during start-up is kept: the
    start-up (reconcile, resume) ends and the orderly shutdown follows, instead of a kill in
    the middle of resuming runs; a second one exits at once."""
    stopping = threading.Event()
    on_stop_signals(stopping)
    on_dump_signal()
    return stopping


def on_dump_signal() -> None:
    """SIGUSR1 writes every thread's stack to the log (stderr): what a byoi that seems stuck
    is waiting on (docs/operations.md)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


_received: list[str] = []


def wait_for_stop(stopping: threading.Event, poll: float = 0.5) -> None:
    """Block the main thread until SIGTERM or SIGINT. It waits in slices of ``poll`` seconds:
    a Python signal handler runs only when the main thread runs bytecode, and a signal the
    kernel hands to another thread does not wake a main thread blocked on a lock, so a
    pending handler could otherwise wait for good. Polled, it runs within ``poll``."""
    while not stopping.wait(poll):
        pass
    log.warning("%s received: shutting down", _received[-1] if _received else "stop")


def wait_for_slack(
    client: WebClient, stopping: threading.Event, readiness: Readiness, longest: float = 30.0
) -> bool:
    """Call auth.test until Slack answers, backing off up to ``longest`` seconds; one log
    line says what byoi waits for. False if a shutdown came first."""
    delay = 1.0
    said = False
    while not stopping.is_set():
        try:
            client.auth_test()
        except SlackApiError as exc:
            if exc.response.get("error") in ("invalid_auth", "not_authed", "account_inactive"):
                raise  # a wrong token does not get better by waiting
            reason = str(exc.response.get("error"))
        except (SlackClientError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        else:
            if said:
                log.warning("the Slack API answers again; carrying on")
            return True
        if not said:
            readiness.waiting_for = "the Slack API"
            log.warning(
                "waiting for the Slack API at %s (%s); retrying with back-off up to %gs, "
                "/healthz says not ready meanwhile",
                client.base_url,
                reason,
                longest,
            )
            said = True
        stopping.wait(delay)
        delay = min(longest, delay * 2)
    return False


def close_socket_mode(handler: Any, timeout: float = 1.0) -> None:
    """Close Socket Mode's WebSocket with a close frame (status 1000) and wait briefly for
    Slack's answer; slack_sdk's built-in client only drops the TCP connection."""
    client = handler.client
    client.auto_reconnect_enabled = False
    client.closed = True
    session = getattr(client, "current_session", None)
    if session is not None and session.is_active():
        from slack_sdk.socket_mode.builtin.frame_header import FrameHeader
        from slack_sdk.socket_mode.builtin.internals import _build_data_frame_for_sending

        frame = _build_data_frame_for_sending(struct.pack("!H", 1000), FrameHeader.OPCODE_CLOSE)
        try:
            with session.sock_send_lock:
                if session.sock is not None:
                    session.sock.send(frame)
            deadline = time.monotonic() + timeout
            while session.is_active() and time.monotonic() < deadline:
                time.sleep(0.02)
        except OSError as exc:
            log.info("Socket Mode connection already gone: %s", exc)
    handler.close()


def run_in_background(name: str, target: Callable[[], None]) -> threading.Thread:
    def guarded() -> None:
        try:
            target()
        except Exception:
            log.exception("%s failed", name)

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def shut_down_aside(work: Callable[[], None], poll: float = 0.5) -> None:
    """Run the shutdown ``work`` on a thread of its own while the main thread waits for it in
    slices of ``poll`` seconds: waiting on workers for up to the deadline, the main thread
    would run no handler for a second SIGTERM the kernel gave another thread, and the second
    signal must exit at once (``on_stop_signals``). Returns if ``work`` ended without ending
    the process (it raised: logged)."""
    thread = run_in_background("shutdown", work)
    while thread.is_alive():
        thread.join(poll)


def exit_now(code: int, busy: bool) -> None:
    """End the process now. Worker pools (the runner's, the scheduler's) are joined at
    interpreter exit, so a step or a scan still waiting on a cloud would hold the exit past
    the deadline; their work is stored, and the next start resumes it."""
    if busy:
        log.warning("exiting with steps still in flight; the next start resumes them")
    logging.shutdown()
    os._exit(code)
