"""pytest hooks and fixtures of pytest-prisyn; everything heavy is imported lazily."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_prisyn import config as prisyn_config
from pytest_prisyn.errors import ConfigError, OfflineMissError, PrisynError
from pytest_prisyn.federated_fixtures import (  # noqa: F401 (fixtures)
    prisyn_clients,
    prisyn_fedprox_synthetic,
)
from pytest_prisyn.stats import Stats

if TYPE_CHECKING:
    import pandas as pd

    from pytest_prisyn.engine import Engine
    from pytest_prisyn.inventory import Inventory

MARKER = (
    "prisyn(profile, *, n_users=100, n_items=300, n_interactions=3000, seed=0, "
    "generation=None): synthetic interaction data for the prisyn_dataset fixture; "
    "profile is a name, a list of names or a mapping name -> share of users. "
    "prisyn_clients also reads clients, partition, alpha, classes_per_client, "
    "min_client_interactions, test_per_user; prisyn_fedprox_synthetic reads alpha, "
    "beta, devices, seed, max_samples."
)
T = TypeVar("T")
REGEN_ALL = "--prisyn-regen=*"
PARAMETRIZED_FIXTURES = ("prisyn_dataset", "prisyn_catalog", "prisyn_clients")
settings_key = pytest.StashKey["prisyn_config.Settings"]()
engine_key = pytest.StashKey["Engine | None"]()
stats_key = pytest.StashKey[Stats]()
deselected_key = pytest.StashKey[bool]()
current_test_key = pytest.StashKey["str | None"]()
inventory_key = pytest.StashKey["Inventory"]()
inventory_error_key = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("prisyn", "synthetic interaction data (pytest-prisyn)")
    group.addoption(
        "--prisyn-backend",
        dest="prisyn_backend",
        choices=prisyn_config.BACKENDS,
        help="where new datasets come from: auto (Gemini with a key, else the "
        "simulator), gemini or simulate. Env PRISYN_BACKEND, ini prisyn_backend.",
    )
    group.addoption(
        "--prisyn-model",
        dest="prisyn_model",
        help="Gemini model id (default gemini-2.5-flash). Env PRISYN_MODEL, ini "
        "prisyn_model.",
    )
    group.addoption(
        "--prisyn-generation",
        dest="prisyn_generation",
        choices=prisyn_config.GENERATIONS,
        help="Gemini generation mode: spec (Gemini writes the behaviour spec, the "
        "simulator expands it) or rows (Gemini writes the rows). Ini "
        "prisyn_generation.",
    )
    group.addoption(
        "--prisyn-cache-dir",
        dest="prisyn_cache_dir",
        help="dataset cache directory (default <rootdir>/.prisyn). Env "
        "PRISYN_CACHE_DIR, ini prisyn_cache_dir.",
    )
    group.addoption(
        "--prisyn-data-dir",
        dest="prisyn_data_dir",
        help="a committed data directory (from 'prisyn cache export'), read before "
        "the cache, never written. Env PRISYN_DATA_DIR, ini prisyn_data_dir.",
    )
    group.addoption(
        "--prisyn-offline",
        dest="prisyn_offline",
        action="store_const",
        const=True,
        default=None,
        help="never call the network: a dataset that would need Gemini and is not "
        "recorded fails its test. Default when the CI variable is set. Env "
        "PRISYN_OFFLINE, ini prisyn_offline.",
    )
    group.addoption(
        "--prisyn-online",
        dest="prisyn_offline",
        action="store_const",
        const=False,
        help="allow Gemini calls even where CI is set.",
    )
    group.addoption(
        "--prisyn-regen",
        dest="prisyn_regen",
        nargs="?",
        const="*",
        metavar="PROFILES",
        help="regenerate the datasets this run asks for; --prisyn-regen=a,b only "
        "those of profiles a and b.",
    )
    group.addoption(
        "--prisyn-budget",
        dest="prisyn_budget",
        metavar="LIMIT",
        help="stop asking Gemini past this spend: tokens (2000000), dollars ($5) or "
        "both (2000000,$5); split between xdist workers. Env PRISYN_BUDGET, ini "
        "prisyn_budget.",
    )
    group.addoption(
        "--prisyn-concurrency",
        dest="prisyn_concurrency",
        metavar="N",
        help="Gemini calls in flight at once for rows mode (default 4). Ini "
        "prisyn_concurrency.",
    )
    group.addoption(
        "--prisyn-prune",
        dest="prisyn_prune",
        action="store_true",
        help="after a run of the whole suite, delete recorded datasets no test "
        "asked for.",
    )
    group.addoption(
        "--prisyn-max-age",
        dest="prisyn_max_age",
        metavar="AGE",
        help="flag recorded datasets older than AGE (30d, 12h, 90m; a number is "
        "days). Ini prisyn_max_age.",
    )
    group.addoption(
        "--prisyn-refuse-stale",
        dest="prisyn_refuse_stale",
        action="store_true",
        help="treat datasets older than --prisyn-max-age as not recorded.",
    )
    parser.addini("prisyn_backend", "default for --prisyn-backend")
    parser.addini("prisyn_model", "default for --prisyn-model")
    parser.addini("prisyn_generation", "default for --prisyn-generation")
    parser.addini("prisyn_cache_dir", "default for --prisyn-cache-dir")
    parser.addini("prisyn_data_dir", "default for --prisyn-data-dir")
    parser.addini("prisyn_offline", "default for --prisyn-offline (true/false)")
    parser.addini("prisyn_gemini_timeout", "seconds to wait for one Gemini call")
    parser.addini("prisyn_gemini_attempts", "attempts per Gemini request (3)")
    parser.addini(
        "prisyn_gemini_max_total",
        "seconds one Gemini request may take, retries and all",
    )
    parser.addini("prisyn_concurrency", "default for --prisyn-concurrency")
    parser.addini("prisyn_budget", "default for --prisyn-budget")
    parser.addini(
        "prisyn_prices",
        "Gemini prices, lines of 'model = input output' in $ per million tokens",
        type="linelist",
    )
    parser.addini("prisyn_max_age", "default for --prisyn-max-age")
    parser.addini("prisyn_refuse_stale", "default for --prisyn-refuse-stale (bool)")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    # A bare --prisyn-regen must not swallow the path after it as its value:
    # spell it out as "all" before argparse sees it.
    args[:] = [REGEN_ALL if arg == "--prisyn-regen" else arg for arg in args]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    try:
        settings = prisyn_config.resolve(
            options={
                "backend": config.getoption("prisyn_backend"),
                "model": config.getoption("prisyn_model"),
                "generation": config.getoption("prisyn_generation"),
                "cache_dir": config.getoption("prisyn_cache_dir"),
                "data_dir": config.getoption("prisyn_data_dir"),
                "offline": config.getoption("prisyn_offline"),
                "regen": config.getoption("prisyn_regen"),
                "prune": config.getoption("prisyn_prune"),
                "max_age": config.getoption("prisyn_max_age"),
                "refuse_stale": config.getoption("prisyn_refuse_stale"),
                "concurrency": config.getoption("prisyn_concurrency"),
                "budget": config.getoption("prisyn_budget"),
            },
            ini={
                name: config.getini(f"prisyn_{name}")
                for name in (
                    "backend",
                    "model",
                    "generation",
                    "cache_dir",
                    "data_dir",
                    "offline",
                    "gemini_timeout",
                    "gemini_attempts",
                    "gemini_max_total",
                    "concurrency",
                    "budget",
                    "prices",
                    "max_age",
                    "refuse_stale",
                )
            },
            rootdir=config.rootpath,
        )
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    _check_user_profiles(config)
    if settings.regen:
        _check_regen_names(config, settings.regen)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if hasattr(config, "workerinput") and workers > 1:
        settings = _share_budget(settings, workers)
    config.stash[settings_key] = settings
    config.stash[engine_key] = None
    config.stash[stats_key] = Stats()


def _share_budget(
    settings: prisyn_config.Settings, workers: int
) -> prisyn_config.Settings:
    """Each xdist worker may spend its share of the run's budget, no more."""
    return dataclasses.replace(
        settings,
        budget_tokens=None
        if settings.budget_tokens is None
        else settings.budget_tokens // workers,
        budget_dollars=None
        if settings.budget_dollars is None
        else settings.budget_dollars / workers,
    )


def _check_user_profiles(config: pytest.Config) -> None:
    """Fail once at start-up, not in every test, on a bad [tool.prisyn] table."""
    pyproject = _pyproject(config)
    try:
        declared = "[tool.prisyn" in pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    if declared:
        from pytest_prisyn.profiles import load_user_profiles

        try:
            load_user_profiles(pyproject)
        except PrisynError as error:
            raise pytest.UsageError(f"prisyn: {error}") from None


def _check_regen_names(config: pytest.Config, names: frozenset[str]) -> None:
    from pytest_prisyn.profiles import ProfileRegistry, load_user_profiles

    try:
        known = ProfileRegistry(load_user_profiles(_pyproject(config))).names()
    except PrisynError as error:
        raise pytest.UsageError(f"prisyn: {error}") from None
    unknown = sorted(names - set(known))
    if unknown:
        raise pytest.UsageError(
            f"--prisyn-regen names unknown profile(s) {', '.join(unknown)}; known "
            f"profiles: {', '.join(known)} (a path after a bare --prisyn-regen is "
            "fine; a profile list needs '=': --prisyn-regen=tech,fitness)"
        )


def _pyproject(config: pytest.Config) -> Path:
    return config.rootpath / "pyproject.toml"


def pytest_report_header(config: pytest.Config) -> str:
    return "prisyn: " + describe(config.stash[settings_key])


def describe(settings: prisyn_config.Settings) -> str:
    """The header line: backend (and why, for auto), model, cache path."""
    backend = settings.backend
    if backend == "auto":
        if settings.offline:
            why = "simulate; offline, recorded Gemini data replayed"
        elif settings.api_key:
            why = f"gemini on a miss; key from {settings.key_source}"
        else:
            why = "simulate on a miss; no Gemini key, recorded Gemini data replayed"
        backend = f"auto ({why})"
    parts = [f"backend {backend}", f"model {settings.model}"]
    if settings.backend != "simulate":
        parts.append(f"generation {settings.generation}")
    if settings.offline:
        parts.append(f"offline ({settings.offline_reason})")
    if settings.regen is not None:
        parts.append("regen " + (",".join(sorted(settings.regen)) or "all"))
    if settings.data_dir is not None:
        parts.append(f"data {settings.data_dir}")
    parts.append(f"cache {settings.cache_dir}")
    return ", ".join(parts)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if hasattr(config, "workerinput"):
        return
    stats = config.stash.get(stats_key, None)
    inventory = config.stash.get(inventory_key, None)
    note = config.stash.get(inventory_error_key, None)
    if stats is None or not (stats.used or (inventory and inventory.unused) or note):
        return
    terminalreporter.write_sep("=", "prisyn")
    generated = sum(stats.generated.values())
    by_backend = ", ".join(
        f"{name}: {n}" for name, n in sorted(stats.generated.items())
    )
    committed = ""
    if stats.from_data or config.stash[settings_key].data_dir is not None:
        committed = f" {stats.from_data} from committed data,"
    line = f"datasets: {stats.from_cache} from cache,{committed} {generated} generated"
    if generated:
        line += f" ({by_backend}) in {stats.seconds_generating:.1f}s"
    if stats.failed:
        line += f", {len(stats.failed)} failed"
    terminalreporter.write_line(line)
    if (
        stats.gemini_calls
        or stats.saved_tokens
        or config.stash[settings_key].backend == "gemini"
    ):
        line = (
            f"gemini: {stats.gemini_calls} {_plural(stats.gemini_calls, 'call')}"
            f" ({stats.gemini_retries} retried), {stats.gemini_tokens:,} "
            f"{_plural(stats.gemini_tokens, 'token')}, estimated cost "
            f"{_dollars(stats.gemini_cost)}"
        )
        if stats.saved_tokens:
            line += (
                f"; the cache saved {stats.saved_tokens:,} tokens "
                f"({_dollars(stats.saved_cost)})"
            )
        if stats.gemini_rows_reused:
            line += (
                f"; {stats.gemini_rows_reused:,} rows written by Gemini in earlier "
                "runs were reused"
            )
        terminalreporter.write_line(line)
    if stats.damaged:
        terminalreporter.write_line(
            f"damaged cache entries discarded and regenerated: {stats.damaged}"
        )
    if stats.quarantined:
        terminalreporter.write_line(
            f"the cache index was damaged: moved aside to {stats.quarantined} and "
            "started afresh (delete it once you no longer need it)",
            yellow=True,
        )
    for problem in stats.ignored_data:
        terminalreporter.write_line(f"committed data ignored: {problem}", yellow=True)
    if stats.stale:
        labels = sorted(stats.stale.values())
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        terminalreporter.write_line(
            f"datasets older than {_age(config.stash[settings_key].max_age or 0)}: "
            f"{len(labels)} ({shown}); regenerate them with --prisyn-regen, or use "
            "--prisyn-refuse-stale to treat them as missing",
            yellow=True,
        )
    if inventory is not None:
        _report_inventory(terminalreporter, inventory)
    if config.stash.get(inventory_error_key, None):
        terminalreporter.write_line(config.stash[inventory_error_key], yellow=True)
    if stats.unsaved:
        terminalreporter.write_line(
            f"datasets generated but not cached: {stats.unsaved} "
            f"({stats.unsaved_reason})",
            yellow=True,
        )


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        items[0].config.stash[deselected_key] = True


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    stats = config.stash.get(stats_key, None)
    workeroutput = getattr(config, "workeroutput", None)
    if stats is None:
        return
    if workeroutput is not None:
        workeroutput["prisyn_stats"] = stats.to_dict()
        return
    settings = config.stash[settings_key]
    if config.option.collectonly or not (stats.used or settings.prune):
        return  # nothing to say, and nothing heavy imported for it
    if not (settings.cache_dir / "cache.db").is_file():
        return
    why_not = _incomplete_run(session, exitstatus)
    if why_not is not None:
        if settings.prune:
            config.stash[inventory_error_key] = f"--prisyn-prune did nothing: {why_not}"
        return
    from pytest_prisyn.inventory import take_inventory

    backend = settings.backend
    try:
        config.stash[inventory_key] = take_inventory(
            settings.cache_dir,
            set(stats.served),
            suite={_suite_of(item.nodeid) for item in session.items},
            # A run that could not have served an entry says nothing about it.
            backends={"simulate", "gemini"} if backend == "auto" else {backend},
            prune=settings.prune,
        )
    except PrisynError as error:
        config.stash[inventory_error_key] = f"could not list unused datasets: {error}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    # Datasets made during a test's setup are recorded as that test's suite's.
    item.config.stash[current_test_key] = item.nodeid
    try:
        return (yield)
    finally:
        item.config.stash[current_test_key] = None


class _ProgressLine:
    """Live Gemini progress: one rewritten line on a terminal, else a line per
    dataset when it is done."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def __call__(self, label: str, progress: Any) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        reused = ""
        if progress.from_cache:
            reused = f" ({progress.from_cache:,} from earlier runs)"
        text = (
            f"prisyn: gemini {label}: chunk {progress.chunks_done}/"
            f"{progress.chunks_total}, {progress.rows_kept:,} rows kept{reused}, "
            f"{progress.rows_rejected:,} rejected, {progress.tokens:,} tokens"
        )
        finished = progress.chunks_done == progress.chunks_total
        if reporter.isatty:
            reporter.write("\r" + text + ("\n" if finished else ""), flush=True)
        elif finished:
            reporter.write_line(text)


def _suite_of(nodeid: str) -> str:
    """The top-level directory (or file) of a test: which suite it belongs to."""
    return nodeid.split("::")[0].split("/")[0]


def _incomplete_run(session: pytest.Session, exitstatus: int) -> str | None:
    """Why this run cannot tell which datasets are unused; None if it can.

    Only a run that selected the whole suite and in which every test ran to
    the end without error or skip has asked for every dataset it needs.
    """
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    outcomes = getattr(reporter, "stats", {})
    if (
        config.stash.get(deselected_key, False)
        or config.option.keyword
        or config.option.markexpr
        or config.args_source == pytest.Config.ArgsSource.ARGS
    ):
        return "it did not select the whole suite (paths, -k, -m or deselection)"
    if exitstatus != pytest.ExitCode.OK or session.shouldstop or session.shouldfail:
        return "not every test passed"
    if outcomes.get("skipped") or outcomes.get("error"):
        return "some tests were skipped or errored before asking for their data"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: merge a finished worker's dataset counts."""
    worker_stats = getattr(node, "workeroutput", {}).get("prisyn_stats")
    if worker_stats:
        node.config.stash[stats_key].merge(worker_stats)


def _report_inventory(
    terminalreporter: pytest.TerminalReporter, inventory: Inventory
) -> None:
    if inventory.pruned:
        terminalreporter.write_line(
            f"pruned {inventory.pruned} recorded "
            f"{_plural(inventory.pruned, 'dataset')} no test asked for"
        )
    elif inventory.unused:
        count = len(inventory.unused)
        terminalreporter.write_line(
            f"recorded datasets no test asked for: {count} (--prisyn-prune deletes "
            "them; 'prisyn cache list' shows them)"
        )
        for fingerprint, label in inventory.unused[:10]:
            terminalreporter.write_line(f"  {fingerprint[:12]}  {label}")
    if inventory.old_formats and not inventory.pruned:
        terminalreporter.write_line(
            f"{len(inventory.old_formats)} of them were written by an older data "
            "format of pytest-prisyn and are never served: regenerate what you "
            "need (it happens on use), then --prisyn-prune or 'prisyn cache prune "
            "--old-formats'; export Gemini data you want to keep first",
            yellow=True,
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    engine = config.stash.get(engine_key, None)
    if engine is not None:
        engine.close()


def _age(seconds: float) -> str:
    """A duration in the unit it was most likely given in: 30d, 12h, 90m."""
    for unit, size in (("d", 86_400), ("h", 3_600)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds / 60:g}m"


def _dollars(amount: float | None) -> str:
    return (
        "unknown (no price for the model; see prisyn_prices)"
        if amount is None
        else (f"${amount:.4f}")
    )


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def _engine(config: pytest.Config) -> Engine:
    engine = config.stash.get(engine_key, None)
    if engine is None:
        from pytest_prisyn.engine import Engine
        from pytest_prisyn.profiles import ProfileRegistry, load_user_profiles

        registry = ProfileRegistry(load_user_profiles(_pyproject(config)))
        engine = Engine(config.stash[settings_key], registry, config.stash[stats_key])
        engine.requested_by = lambda: _suite_of(
            config.stash.get(current_test_key, None) or ""
        )
        engine.on_progress = _ProgressLine(config)
        config.stash[engine_key] = engine
    return engine


@pytest.fixture(scope="session")
def prisyn(pytestconfig: pytest.Config) -> Engine:
    """The prisyn engine: ``.dataset(...)``, ``.catalog(...)``, ``.profiles()``."""
    return _guarded(_engine, pytestconfig)


@pytest.fixture
def prisyn_dataset(request: pytest.FixtureRequest, prisyn: Engine) -> pd.DataFrame:
    """Interactions DataFrame for the closest ``prisyn`` mark (a copy per test)."""
    return _guarded(prisyn.dataset, **_dataset_arguments(request), _test=request)


@pytest.fixture
def prisyn_catalog(request: pytest.FixtureRequest, prisyn: Engine) -> pd.DataFrame:
    """Item catalog (item_id, name, category) of the closest ``prisyn`` mark's data."""
    return _guarded(prisyn.catalog, **_dataset_arguments(request), _test=request)


def _dataset_arguments(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The marks' arguments that describe the dataset.

    One mark may serve prisyn_clients and prisyn_dataset alike (on a class, say);
    the dataset fixtures leave its federated arguments to prisyn_clients.
    """
    from pytest_prisyn.request import FEDERATED_ARGUMENTS

    return {
        name: value
        for name, value in marker_arguments(request).items()
        if name not in FEDERATED_ARGUMENTS
    }


def marker_arguments(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Merge ``prisyn`` marks, closest first, argument by argument.

    An indirect parameter overrides the marks: a profile (name, list or
    mapping of shares), or a dict whose keys are all marker argument names.
    """
    return _guarded(_merge_marks, request)


def _merge_marks(request: pytest.FixtureRequest) -> dict[str, Any]:
    from pytest_prisyn.request import ARGUMENTS, check_arguments

    merged: dict[str, Any] = {}
    for mark in request.node.iter_markers("prisyn"):
        for name, value in check_arguments(mark.args, mark.kwargs).items():
            merged.setdefault(name, value)
    param = getattr(request, "param", None)
    if param is None:
        # Another prisyn fixture of the same test may carry the parameter:
        # prisyn_catalog follows an indirectly parametrized prisyn_dataset.
        params = getattr(getattr(request.node, "callspec", None), "params", {})
        param = next(
            (params[name] for name in PARAMETRIZED_FIXTURES if name in params), None
        )
    if isinstance(param, dict) and param and set(param) <= set(ARGUMENTS):
        merged.update(check_arguments((), param))
    elif param is not None:
        merged["profile"] = param
    return merged


def _guarded(
    function: Callable[..., T],
    *args: Any,
    _test: pytest.FixtureRequest | None = None,
    **kwargs: Any,
) -> T:
    """Call `function`; turn a prisyn error into a clean test failure, no traceback."""
    try:
        return function(*args, **kwargs)
    except OfflineMissError as error:
        test = "<the test>" if _test is None else repr(_test.node.nodeid)
        message = f"prisyn: {error.for_test(test)}"
    except PrisynError as error:
        message = f"prisyn: {error}"
    pytest.fail(message, pytrace=False)
