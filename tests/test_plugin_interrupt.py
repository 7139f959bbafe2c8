"""Ctrl-C during generation leaves no half-written cache entry."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from pytest_prisyn.store import Store

BIG = """
import pytest

@pytest.mark.prisyn("tech", n_users=30000, n_items=20000, n_interactions=3000000)
def test_big(prisyn_dataset):
    pass
"""


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_interrupted_generation_leaves_nothing_half_written(
    pytester: pytest.Pytester, delay: float
) -> None:
    pytester.makepyfile(BIG)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--prisyn-backend=simulate",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)

    store = Store(pytester.path / ".prisyn")
    for fingerprint in store.fingerprints():
        assert store.get(fingerprint) is not None, output
    assert store.damaged == []
    store.close()
