"""A Ctrl-C reaches the shell's main thread, whichever thread the kernel hands it to.

A signal sent to the process goes to any of its threads that does not block it. On another
thread Python only notes it, to be handled once the main thread runs Python code again; a main
thread waiting at the prompt (in readline, or reading a pipe) runs none, so the Ctrl-C went
unseen until Enter was pressed (seen in one try of three during a 1,000-server run, whose
threads start scripts all the time). While ``relayed`` holds, the interpreter's wakeup fd tells
a small thread of each signal, and on a Ctrl-C that thread pokes the main thread with SIGURG
(ignored by default, so a late poke is harmless), whose handler here does nothing: the main
thread's wait is interrupted and the Ctrl-C is handled there at once. Blocking SIGINT in every
other thread would do too, but the scripts those threads start would inherit the blocked
signal.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def relayed() -> Iterator[None]:
    """Relay Ctrl-C to the main thread while the block runs (nothing outside the main thread,
    where Python takes no signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    before = signal.signal(signal.SIGURG, _nothing)
    try:
        old = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter after all
        signal.signal(signal.SIGURG, before)
        os.close(read)
        os.close(write)
        yield
        return
    relay = threading.Thread(target=_relay, args=(read,), name="shell-interrupts", daemon=True)
    relay.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old)
        os.close(write)  # the relay reads the end of the pipe and stops
        relay.join(5)
        signal.signal(signal.SIGURG, before)


def _relay(read: int) -> None:
    main = threading.main_thread().ident
    try:
        while chunk := os.read(read, 64):
            if signal.SIGINT in chunk and main is not None:
                signal.pthread_kill(main, signal.SIGURG)
    finally:
        os.close(read)


def _nothing(signum: int, frame: FrameType | None) -> None:
    """The poke only interrupts the main thread's wait; the pending Ctrl-C does the rest."""
