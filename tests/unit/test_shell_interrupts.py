"""A Ctrl-C that the kernel hands to another thread still interrupts the shell's main thread."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bot.shell import interrupts


def waited_for_ctrl_c_on_another_thread(relay: bool) -> float:
    """Seconds the main thread, blocked reading a pipe, took to see a Ctrl-C delivered to another
    thread. The other thread writes to the pipe after 2 s, so a Ctrl-C never relayed is only
    seen then."""
    read, write = os.pipe()

    def other() -> None:
        time.sleep(0.2)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # lands on this thread
        time.sleep(2)
        os.write(write, b"\n")

    thread = threading.Thread(target=other, daemon=True)
    begun = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            if relay:
                with interrupts.relayed():
                    thread.start()
                    os.read(read, 1)
                    time.sleep(1)  # the handler's next chance to run, if the read ended first
            else:
                thread.start()
                os.read(read, 1)
                time.sleep(1)
        return time.monotonic() - begun
    finally:
        thread.join(10)
        os.close(read)
        os.close(write)


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_a_ctrl_c_on_another_thread_interrupts_the_main_threads_wait_at_once() -> None:
    assert waited_for_ctrl_c_on_another_thread(relay=True) < 1.5
    # Without the relay the wait goes on until the read ends by itself.
    assert waited_for_ctrl_c_on_another_thread(relay=False) >= 2


def test_after_the_relay_signals_are_as_before() -> None:
    before = signal.getsignal(signal.SIGURG)
    with interrupts.relayed():
        pass
    assert signal.getsignal(signal.SIGURG) == before
    assert signal.set_wakeup_fd(-1) == -1  # none left behind
