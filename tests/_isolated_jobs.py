"""Jobs for the isolation tests; a module of its own so spawned workers can import them."""

import os
import signal
import time


def sleep_forever() -> None:
    while True:
        time.sleep(1)


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def add(a: int, b: int) -> int:
    return a + b
