"""The cache under pytest-xdist: single flight, identical replays, one merged summary.

Every behaviour runs without xdist, with ``-n 0`` and with ``-n 2``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fake_gemini import serving_fake_model
from gemini_server import GeminiServer

pytest.importorskip("xdist")

MODES = [[], ["-n", "0"], ["-n", "2"]]
MODE_IDS = ["no-xdist", "n0", "n2"]

SAME_DATASET_FOUR_TIMES = """
import pytest

@pytest.mark.prisyn("tech", n_users=12, n_items=40, n_interactions=150, seed=5)
@pytest.mark.parametrize("copy", range(4))
def test_same(prisyn_dataset, copy):
    assert len(prisyn_dataset) == 150
"""

LIFECYCLE = """
import hashlib
import pytest

@pytest.mark.prisyn(n_users=12, n_items=40, n_interactions=150)
@pytest.mark.parametrize(
    "prisyn_dataset", ["tech", "music", "foodie", "tech"], indirect=True
)
def test_record(prisyn_dataset, request):
    digest = hashlib.sha256(prisyn_dataset.to_csv().encode()).hexdigest()
    name = request.node.callspec.id.replace("/", "_")
    with open(f"hash-{name}.txt", "w") as out:
        out.write(digest)
"""


@pytest.fixture
def slow_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiServer]:
    # Slow enough that workers asking at once really overlap.
    with serving_fake_model(monkeypatch, "sk-xdist-test", latency=1.0) as server:
        yield server


def counts(result: pytest.RunResult) -> tuple[int, int]:
    match = re.search(
        r"datasets: (\d+) from cache, (\d+) generated", result.stdout.str()
    )
    assert match, result.stdout.str()
    return int(match.group(1)), int(match.group(2))


def hashes(pytester: pytest.Pytester) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(pytester.path.glob("hash-*.txt"))}


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_a_dataset_wanted_by_several_workers_is_paid_for_once(
    pytester: pytest.Pytester, slow_gemini: GeminiServer, mode: list[str]
) -> None:
    pytester.makepyfile(SAME_DATASET_FOUR_TIMES)

    result = pytester.runpytest_subprocess("--prisyn-backend=gemini", *mode)

    result.assert_outcomes(passed=4)
    assert slow_gemini.request_count == 1
    assert counts(result) == (0, 1)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_record_then_replay_identically(
    pytester: pytest.Pytester, mode: list[str]
) -> None:
    pytester.makepyfile(LIFECYCLE)

    first = pytester.runpytest_subprocess("--prisyn-backend=simulate", *mode)
    first.assert_outcomes(passed=4)
    recorded = hashes(pytester)
    second = pytester.runpytest_subprocess("--prisyn-backend=simulate", *mode)

    second.assert_outcomes(passed=4)
    assert counts(first) == (0, 3)
    assert counts(second) == (3, 0)
    assert hashes(pytester) == recorded
    assert len(re.findall(r"^=+ prisyn =+$", second.stdout.str(), re.MULTILINE)) == 1
    assert len(re.findall(r"^prisyn: backend", second.stdout.str(), re.MULTILINE)) == 1


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_regen_regenerates_each_dataset_once(
    pytester: pytest.Pytester, mode: list[str]
) -> None:
    pytester.makepyfile(LIFECYCLE)
    pytester.runpytest_subprocess("--prisyn-backend=simulate", *mode)

    result = pytester.runpytest_subprocess(
        "--prisyn-backend=simulate", "--prisyn-regen=tech", *mode
    )

    result.assert_outcomes(passed=4)
    assert counts(result) == (2, 1)
