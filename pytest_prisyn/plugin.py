"""pytest hooks and fixtures of pytest-prisyn; everything heavy is imported lazily."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_prisyn import config as prisyn_config
from pytest_prisyn.errors import ConfigError, OfflineMissError, PrisynError
from pytest_prisyn.stats import Stats

if TYPE_CHECKING:
    import pandas as pd

    from pytest_prisyn.engine import Engine

MARKER = (
    "prisyn(profile, *, n_users=100, n_items=300, n_interactions=3000, seed=0, "
    "generation=None): synthetic interaction data for the prisyn_dataset fixture; "
    "profile is a name, a list of names or a mapping name -> share of users."
)
T = TypeVar("T")
REGEN_ALL = "--prisyn-regen=*"
settings_key = pytest.StashKey["prisyn_config.Settings"]()
engine_key = pytest.StashKey["Engine | None"]()
stats_key = pytest.StashKey[Stats]()


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
    parser.addini("prisyn_backend", "default for --prisyn-backend")
    parser.addini("prisyn_model", "default for --prisyn-model")
    parser.addini("prisyn_generation", "default for --prisyn-generation")
    parser.addini("prisyn_cache_dir", "default for --prisyn-cache-dir")
    parser.addini("prisyn_data_dir", "default for --prisyn-data-dir")
    parser.addini("prisyn_offline", "default for --prisyn-offline (true/false)")
    parser.addini("prisyn_gemini_timeout", "seconds to wait for one Gemini call")


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
                )
            },
            rootdir=config.rootpath,
        )
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    if settings.regen:
        _check_regen_names(config, settings.regen)
    config.stash[settings_key] = settings
    config.stash[engine_key] = None
    config.stash[stats_key] = Stats()


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
    if stats is None or not stats.used:
        return
    terminalreporter.write_sep("=", "prisyn")
    generated = sum(stats.generated.values())
    by_backend = ", ".join(
        f"{name}: {n}" for name, n in sorted(stats.generated.items())
    )
    line = f"datasets: {stats.from_cache} from cache, {generated} generated"
    if generated:
        line += f" ({by_backend}) in {stats.seconds_generating:.1f}s"
    terminalreporter.write_line(line)
    if stats.gemini_calls or config.stash[settings_key].backend != "simulate":
        terminalreporter.write_line(
            f"gemini: {stats.gemini_calls} {_plural(stats.gemini_calls, 'call')}, "
            f"{stats.gemini_tokens} {_plural(stats.gemini_tokens, 'token')}"
        )
    if stats.damaged:
        terminalreporter.write_line(
            f"damaged cache entries discarded and regenerated: {stats.damaged}"
        )
    if stats.unsaved:
        cache = config.stash[settings_key].cache_dir
        terminalreporter.write_line(
            f"datasets generated but not cached: {stats.unsaved} (cannot write to "
            f"{cache}; check its permissions or set --prisyn-cache-dir)",
            yellow=True,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    stats = config.stash.get(stats_key, None)
    workeroutput = getattr(config, "workeroutput", None)
    if stats is not None and workeroutput is not None:
        workeroutput["prisyn_stats"] = stats.to_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: merge a finished worker's dataset counts."""
    worker_stats = getattr(node, "workeroutput", {}).get("prisyn_stats")
    if worker_stats:
        node.config.stash[stats_key].merge(worker_stats)


def pytest_unconfigure(config: pytest.Config) -> None:
    engine = config.stash.get(engine_key, None)
    if engine is not None:
        engine.close()


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def _engine(config: pytest.Config) -> Engine:
    engine = config.stash.get(engine_key, None)
    if engine is None:
        from pytest_prisyn.engine import Engine
        from pytest_prisyn.profiles import ProfileRegistry, load_user_profiles

        registry = ProfileRegistry(load_user_profiles(_pyproject(config)))
        engine = Engine(config.stash[settings_key], registry, config.stash[stats_key])
        config.stash[engine_key] = engine
    return engine


@pytest.fixture(scope="session")
def prisyn(pytestconfig: pytest.Config) -> Engine:
    """The prisyn engine: ``.dataset(...)``, ``.catalog(...)``, ``.profiles()``."""
    return _guarded(_engine, pytestconfig)


@pytest.fixture
def prisyn_dataset(request: pytest.FixtureRequest, prisyn: Engine) -> pd.DataFrame:
    """Interactions DataFrame for the closest ``prisyn`` mark (a copy per test)."""
    return _guarded(prisyn.dataset, **marker_arguments(request), _test=request)


@pytest.fixture
def prisyn_catalog(request: pytest.FixtureRequest, prisyn: Engine) -> pd.DataFrame:
    """Item catalog (item_id, name, category) of the closest ``prisyn`` mark's data."""
    return _guarded(prisyn.catalog, **marker_arguments(request), _test=request)


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
