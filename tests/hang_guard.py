"""The one wall-clock limit of the tests: a guard against hangs, never a speed requirement.

A child process (run.py, a worker, a helper script) that has not ended after HANG_GUARD seconds
is taken for hung and killed, and the test fails saying so. The slowest run.py call of the
suite takes about 3 minutes on a busy 2-core machine, so a slow machine never comes near it.
"""
import subprocess

import pytest

HANG_GUARD = 1800  # seconds


def message(what: str, limit: float = HANG_GUARD) -> str:
    return (f"{what} did not end within {limit:g} s: taken for a hang (this limit only "
            "catches hangs; a slow machine never comes near it)")


def run(command, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(command, **kwargs) under the hang guard."""
    try:
        return subprocess.run(command, timeout=HANG_GUARD, **kwargs)
    except subprocess.TimeoutExpired:
        pytest.fail(message(" ".join(str(word) for word in command)))
