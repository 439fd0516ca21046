"""Jobs for the executor's tests (tests/test_executor.py, tests/test_ingest_scale.py): module-level functions, so
local processes and Ray tasks can run them."""
import os
import time

SETUP_VARIABLE = "MMSYNTH_TEST_SETUP"


def square(n: int) -> int:
    time.sleep(0.02 * (n % 3 == 0))  # some jobs finish after later ones
    return n * n


def fails_on_five(n: int) -> int:
    if n == 5:
        raise ValueError(f"job {n} is bad")
    return n


def pid(_) -> int:
    return os.getpid()


def mark() -> None:
    """A setup: marks the process it runs in."""
    os.environ[SETUP_VARIABLE] = "set"


def marked(_) -> str | None:
    return os.environ.get(SETUP_VARIABLE)
