"""The gemini backend end to end: marker -> real google-genai client -> loopback server.

The inner test runs see GEMINI_API_KEY and GOOGLE_GEMINI_BASE_URL pointing at a
GeminiServer in this process; nothing is patched inside the SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fake_gemini import fake_model, serving_fake_model, task
from gemini_server import GeminiServer, RecordedRequest, Reply

from pytest_prisyn import cli
from pytest_prisyn import engine as engine_module
from pytest_prisyn.request import FORMAT_VERSION

KEY = "sk-planted-gemini-key-42"

SUITE = """
import pytest

@pytest.mark.prisyn(profile="tech", n_users=8, n_items=40, n_interactions=80, seed=2,
                    generation="{generation}")
def test_data(prisyn_dataset, prisyn_catalog):
    assert len(prisyn_dataset) == 80
    assert prisyn_dataset["user_id"].nunique() == 8
    assert not prisyn_dataset.duplicated(["user_id", "item_id"]).any()
    assert set(prisyn_dataset["item_id"]) <= set(prisyn_catalog["item_id"])
    assert prisyn_dataset["rating"].between(1, 5).all()
    (prisyn_dataset.to_csv("{out}", index=False))
"""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiServer]:
    with serving_fake_model(monkeypatch, KEY) as running:
        yield running


def suite(pytester: pytest.Pytester, generation: str) -> Path:
    out = pytester.path / "frame.csv"
    pytester.makepyfile(SUITE.format(generation=generation, out=out))
    return out


@pytest.mark.parametrize("generation", ["spec", "rows"])
def test_first_run_asks_gemini_second_run_replays(
    pytester: pytest.Pytester, server: GeminiServer, generation: str
) -> None:
    out = suite(pytester, generation)

    first = pytester.runpytest("--prisyn-backend=gemini")
    first.assert_outcomes(passed=1)
    calls = server.request_count
    recorded = out.read_text()

    assert calls >= 1
    assert all(r.api_key == KEY for r in server.requests)
    first.stdout.fnmatch_lines(["*generated (gemini: 1)*", f"gemini: {calls} call*"])

    second = pytester.runpytest("--prisyn-backend=gemini")
    second.assert_outcomes(passed=1)
    assert server.request_count == calls
    assert out.read_text() == recorded
    second.stdout.fnmatch_lines(["*1 from cache, 0 generated*"])


def test_rows_mode_rows_really_come_from_gemini(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    out = suite(pytester, "rows")

    pytester.runpytest("--prisyn-backend=gemini").assert_outcomes(passed=1)

    rows_prompts = [
        r for r in server.requests if r.prompt_text.lstrip().startswith("{")
    ]
    assert rows_prompts
    # fake_model writes every timestamp at second 7; simulated data would not.
    frame = pd.read_csv(out, parse_dates=["timestamp"])
    assert frame["timestamp"].dt.second.eq(7).all()


def test_auto_replays_gemini_data_on_a_machine_without_a_key(
    pytester: pytest.Pytester, server: GeminiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = suite(pytester, "spec")
    pytester.runpytest().assert_outcomes(passed=1)
    recorded = out.read_text()
    calls = server.request_count
    monkeypatch.delenv("GEMINI_API_KEY")

    result = pytester.runpytest("--prisyn-offline")

    result.assert_outcomes(passed=1)
    assert out.read_text() == recorded
    assert server.request_count == calls


def test_spec_is_asked_once_for_every_size_of_a_profile(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("users", [5, 6, 7])
        def test_sizes(prisyn, users):
            frame = prisyn.dataset("tech", n_users=users, n_items=30,
                                   n_interactions=users * 4)
            assert frame["user_id"].nunique() == users
        """
    )

    pytester.runpytest("--prisyn-backend=gemini").assert_outcomes(passed=3)

    assert server.request_count == 1


def test_offline_gemini_miss_fails_with_the_recording_command(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    suite(pytester, "spec")

    result = pytester.runpytest("--prisyn-backend=gemini", "--prisyn-offline")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*prisyn: dataset for profile tech is not recorded*", "*fingerprint: *"]
    )
    assert server.request_count == 0


def test_api_failure_fails_the_test_and_caches_nothing(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    suite(pytester, "spec")
    server.set_handler(None)
    server.reply(Reply.case("error-400-schema-too-complex"))

    failed = pytester.runpytest("--prisyn-backend=gemini")
    failed.assert_outcomes(errors=1)
    failed.stdout.fnmatch_lines(["*prisyn:*400*"])
    assert KEY not in failed.stdout.str()

    server.set_handler(fake_model)
    pytester.runpytest("--prisyn-backend=gemini").assert_outcomes(passed=1)


def test_key_never_reaches_output_logs_cache_or_exports(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    suite(pytester, "rows")
    pytester.makepyfile(
        test_refused="""
        import pytest

        @pytest.mark.prisyn("music", n_users=8, n_items=40, n_interactions=80)
        def test_api_error(prisyn_dataset):
            pass
        """
    )
    server.set_handler(refusing_music)

    result = pytester.runpytest(
        "--prisyn-backend=gemini", "-v", "-o", "log_cli=true", "--log-level=DEBUG"
    )
    exported = pytester.path / "exported"
    assert cli.main(["cache", "export", str(exported), "--cache-dir", ".prisyn"]) == 0

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*prisyn:*403*"])
    assert KEY not in result.stdout.str() + result.stderr.str()
    written = [
        path
        for folder in (pytester.path / ".prisyn", exported)
        for path in folder.rglob("*")
        if path.is_file()
    ]
    assert any(path.name == "manifest.json" for path in written)
    assert not [path for path in written if KEY.encode() in path.read_bytes()]


def refusing_music(request: RecordedRequest) -> Reply:
    """The fake model, except that prompts about the music profile are refused."""
    if "Listeners who rate albums" in request.prompt_text:
        return Reply.error(403, "PERMISSION_DENIED", "API key not valid. " + KEY)
    return fake_model(request)


def test_budget_stops_before_the_call_that_would_exceed_it(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    suite(pytester, "spec")

    result = pytester.runpytest("--prisyn-backend=gemini", "--prisyn-budget=100")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*prisyn:*budget*--prisyn-budget*"])
    assert server.request_count == 0


def test_summary_counts_cost_and_what_the_cache_saved(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    suite(pytester, "rows")

    first = pytester.runpytest("--prisyn-backend=gemini")
    second = pytester.runpytest("--prisyn-backend=gemini")

    first.stdout.re_match_lines(
        [
            r"gemini: \d+ calls \(0 retried\), [\d,]+ tokens, "
            r"estimated cost \$0\.\d{4}$"
        ]
    )
    first.stdout.fnmatch_lines(["prisyn: gemini tech *: chunk 1/1, 80 rows kept*"])
    second.stdout.re_match_lines(
        [
            r"gemini: 0 calls .*; the cache saved [\d,]+ tokens "
            r"\(\$0\.\d{4}\)$"
        ]
    )


def test_rows_chunks_already_paid_for_survive_a_failed_run(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.prisyn("tech", n_users=30, n_items=60, n_interactions=900,
                            generation="rows")
        def test_rows(prisyn_dataset):
            assert len(prisyn_dataset) == 900
        """
    )

    def fail_one_chunk(request: RecordedRequest) -> Reply:
        """Every rows chunk that includes user 21 fails; the others succeed."""
        text = request.prompt_text.replace('"user_id":21', '"user_id": 21')
        if text.lstrip().startswith("{") and '"user_id": 21' in text:
            return Reply.error(500, "INTERNAL", "boom")
        return fake_model(request)

    server.set_handler(fail_one_chunk)
    failed = pytester.runpytest(
        "--prisyn-backend=gemini", "-o", "prisyn_gemini_attempts=1"
    )
    failed.assert_outcomes(errors=1)
    paid = server.request_count

    server.set_handler(fake_model)
    healed = pytester.runpytest("--prisyn-backend=gemini")

    healed.assert_outcomes(passed=1)
    asked_again = server.request_count - paid
    assert 1 <= asked_again < paid


def test_summary_reports_calls_paid_for_even_when_every_dataset_failed(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    suite(pytester, "spec")
    server.set_handler(lambda request: Reply.error(503, "UNAVAILABLE", "overloaded"))

    result = pytester.runpytest(
        "--prisyn-backend=gemini", "-o", "prisyn_gemini_attempts=2"
    )

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "datasets: 0 from cache, 0 generated, 1 failed",
            "gemini: 2 calls (1 retried)*",
        ]
    )


GROWING = """
import pytest

@pytest.mark.prisyn("tech", n_users=8, n_items=40, n_interactions={n}, seed=2,
                    generation="rows")
def test_rows(prisyn_dataset):
    assert len(prisyn_dataset) == {n}
    prisyn_dataset.to_csv("{out}", index=False)
"""


def rows_asked(server: GeminiServer) -> int:
    """Return how many interaction rows the server was asked to write in all."""
    return sum(
        user["interactions"]
        for request in server.requests
        if request.prompt_text.lstrip().startswith("{")
        for user in task(request)["users"]
    )


def test_growing_a_rows_dataset_pays_only_for_the_extra_rows(
    pytester: pytest.Pytester, server: GeminiServer
) -> None:
    small_csv, big_csv = pytester.path / "small.csv", pytester.path / "big.csv"
    pytester.makepyfile(test_rows=GROWING.format(n=80, out=small_csv))
    pytester.runpytest("--prisyn-backend=gemini").assert_outcomes(passed=1)
    assert rows_asked(server) == 80
    pytester.makepyfile(test_rows=GROWING.format(n=200, out=big_csv))

    grown = pytester.runpytest("--prisyn-backend=gemini")

    grown.assert_outcomes(passed=1)
    grown.stdout.fnmatch_lines(
        [
            "prisyn: gemini tech *: chunk 1/1, 200 rows kept (80 from earlier runs), *",
            "gemini: 1 call *; 80 rows written by Gemini in earlier runs were reused",
        ]
    )
    small, big = pd.read_csv(small_csv), pd.read_csv(big_csv)
    per_user = pd.concat(
        [small.groupby("user_id").size(), big.groupby("user_id").size()],
        axis=1,
        keys=["small", "big"],
    )
    assert (per_user["big"] >= per_user["small"]).all()
    assert rows_asked(server) == 200
    # The 80 rows paid for first are all in the bigger dataset.
    columns = ["user_id", "item_id", "rating", "timestamp"]
    both = small[columns].merge(big[columns], how="inner")
    assert len(both) == 80

    pytester.runpytest("--prisyn-backend=gemini", "--prisyn-regen").assert_outcomes(
        passed=1
    )

    assert rows_asked(server) == 400


@pytest.mark.parametrize("generation", ["spec", "rows"])
def test_a_new_data_format_regenerates_without_paying_gemini_again(
    pytester: pytest.Pytester,
    server: GeminiServer,
    monkeypatch: pytest.MonkeyPatch,
    generation: str,
) -> None:
    suite(pytester, generation)
    pytester.runpytest("--prisyn-backend=gemini").assert_outcomes(passed=1)
    calls = server.request_count
    # What a release that changes the generator does (the inner run shares
    # this process, so it sees the patched version).
    monkeypatch.setattr(engine_module, "FORMAT_VERSION", FORMAT_VERSION + 1)

    again = pytester.runpytest("--prisyn-backend=gemini")

    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["datasets: 0 from cache, 1 generated (gemini: 1)*"])
    assert server.request_count == calls
