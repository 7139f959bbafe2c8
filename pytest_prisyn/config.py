"""Resolving settings: command line, then environment, then ini, then defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_prisyn.errors import ConfigError

BACKENDS = ("auto", "gemini", "simulate")
GENERATIONS = ("spec", "rows")
DEFAULT_MODEL = "gemini-2.5-flash"
DEFAULT_CACHE_DIR = ".prisyn"
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # the SDK's order: first wins
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm]?)\s*$")
UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "": 86_400.0}


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know to find or make datasets."""

    backend: str = "auto"
    model: str = DEFAULT_MODEL
    generation: str = "spec"
    cache_dir: Path = Path(DEFAULT_CACHE_DIR)
    data_dir: Path | None = None
    offline: bool = False
    offline_reason: str | None = None
    regen: frozenset[str] | None = None  # None: no regeneration; empty: all
    prune: bool = False
    max_age: float | None = None  # seconds
    refuse_stale: bool = False
    rootdir: Path = Path()
    # Kept out of comparisons so pytest's dataclass diffs never print the key.
    api_key: str | None = field(default=None, compare=False, repr=False)
    key_source: str | None = field(default=None, compare=False)
    gemini_timeout: float = 120.0
    gemini_attempts: int = 3
    gemini_max_total: float = 600.0
    concurrency: int = 4
    budget_tokens: int | None = None
    budget_dollars: float | None = None
    prices: tuple[tuple[str, float, float], ...] = ()  # model, $/M in, $/M out

    def regenerates(self, profiles: list[str]) -> bool:
        """Whether `--prisyn-regen` asks to regenerate a dataset of these profiles."""
        if self.regen is None:
            return False
        return not self.regen or bool(self.regen.intersection(profiles))


def resolve(
    *,
    options: Mapping[str, Any],
    ini: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    rootdir: Path,
) -> Settings:
    """Merge the four sources into `Settings`, validating every value."""
    env = os.environ if env is None else env
    backend = _first(
        options.get("backend"), env.get("PRISYN_BACKEND"), ini.get("backend")
    )
    backend = _choice("backend", backend or "auto", BACKENDS)
    model = _first(
        *(
            _text(value)
            for value in (
                options.get("model"),
                env.get("PRISYN_MODEL"),
                ini.get("model"),
            )
        )
    )
    generation = _first(options.get("generation"), ini.get("generation")) or "spec"
    cache = _first(
        options.get("cache_dir"), env.get("PRISYN_CACHE_DIR"), ini.get("cache_dir")
    )
    data = _first(
        options.get("data_dir"), env.get("PRISYN_DATA_DIR"), ini.get("data_dir")
    )
    key, source = find_api_key(env, rootdir)
    offline, offline_reason = resolve_offline(options.get("offline"), env, ini)
    return Settings(
        backend=backend,
        model=model or DEFAULT_MODEL,
        generation=_choice("generation", generation, GENERATIONS),
        cache_dir=_path(cache or DEFAULT_CACHE_DIR, rootdir),
        data_dir=None if data is None else _path(data, rootdir),
        offline=offline,
        offline_reason=offline_reason,
        regen=parse_regen(options.get("regen")),
        prune=bool(options.get("prune")),
        max_age=parse_duration(_first(options.get("max_age"), ini.get("max_age"))),
        refuse_stale=bool(options.get("refuse_stale"))
        or _boolean("prisyn_refuse_stale", ini.get("refuse_stale") or "false"),
        rootdir=rootdir,
        api_key=key,
        key_source=source,
        gemini_timeout=_number(
            "prisyn_gemini_timeout", ini.get("gemini_timeout"), 120.0, 0.0, 3600.0
        ),
        gemini_attempts=int(
            _number("prisyn_gemini_attempts", ini.get("gemini_attempts"), 3, 1, 20)
        ),
        gemini_max_total=_number(
            "prisyn_gemini_max_total", ini.get("gemini_max_total"), 600.0, 0.0, 86400.0
        ),
        concurrency=int(
            _number(
                "prisyn_concurrency",
                _first(options.get("concurrency"), ini.get("concurrency")),
                4,
                1,
                64,
            )
        ),
        **parse_budget(
            _first(options.get("budget"), env.get("PRISYN_BUDGET"), ini.get("budget"))
        ),
        prices=parse_prices(ini.get("prices")),
    )


def resolve_offline(
    option: bool | None, env: Mapping[str, str], ini: Mapping[str, Any]
) -> tuple[bool, str | None]:
    """Whether the run may call the network, and why not.

    ``--prisyn-offline`` / ``--prisyn-online``, then ``PRISYN_OFFLINE``, then the
    ``prisyn_offline`` ini key, then CI auto-detection: a set ``CI`` variable
    (as GitHub Actions, GitLab and most CI services set it) means offline.
    """
    if option is not None:
        return option, "--prisyn-offline" if option else None
    for value, origin in (
        (env.get("PRISYN_OFFLINE"), "PRISYN_OFFLINE"),
        (ini.get("offline"), "prisyn_offline in the ini file"),
    ):
        if value not in (None, ""):
            flag = _boolean(origin, value)
            return flag, origin if flag else None
    ci = env.get("CI", "").strip().lower()
    if ci and ci not in {"0", "false", "no", "off"}:
        return True, "CI detected; --prisyn-online allows Gemini"
    return False, None


def parse_duration(value: object) -> float | None:
    """``30d``, ``12h``, ``90m`` or a number of days, in seconds; None if unset."""
    if value in (None, ""):
        return None
    match = DURATION.match(str(value))
    if match is None:
        raise ConfigError(
            f"prisyn max age {value!r} is not a duration; accepted: a number of "
            "days, or a number followed by d, h or m (e.g. 30d, 12h)"
        )
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def find_api_key(
    env: Mapping[str, str], rootdir: Path
) -> tuple[str | None, str | None]:
    """The Gemini key and where it came from; the environment beats ``.env``."""
    for name in KEY_VARIABLES:
        if env.get(name, "").strip():
            return env[name].strip(), name
    dotenv_path = rootdir / ".env"
    if dotenv_path.is_file():
        from dotenv import dotenv_values

        values = dotenv_values(dotenv_path)
        for name in KEY_VARIABLES:
            value = values.get(name)
            if value and value.strip():
                return value.strip(), f"{name} in .env"
    return None, None


def parse_regen(value: object) -> frozenset[str] | None:
    """``--prisyn-regen`` alone means all profiles; ``=a,b`` means those."""
    if value is None or value is False:
        return None
    if value is True or value == "*":
        return frozenset()
    names = frozenset(part.strip() for part in str(value).split(",") if part.strip())
    if not names:
        raise ConfigError(
            f"--prisyn-regen={value!r} names no profile; give profile names "
            "(--prisyn-regen=tech,fitness), or a bare --prisyn-regen for all"
        )
    return names


def _path(value: str, rootdir: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else rootdir / path


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _first(*values: Any) -> Any:
    for value in values:
        if value not in (None, ""):
            return value
    return None


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(
            f"prisyn {name} {value!r} is not known; accepted: {', '.join(choices)}"
        )
    return text


def _boolean(name: str, value: object) -> bool:
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(
        f"{name} {value!r} is not a boolean; accepted: 1/0, true/false, yes/no, on/off"
    )


def _number(name: str, value: object, default: float, low: float, high: float) -> float:
    """A number in (low, high], or a whole one from low to high if the default is."""
    if value in (None, ""):
        return default
    try:
        number = float(str(value))
    except ValueError:
        number = float("nan")
    if isinstance(default, int):
        if not (number.is_integer() and low <= number <= high):
            raise ConfigError(
                f"{name} {value!r} must be a whole number from {low:g} to {high:g}"
            )
    elif not low < number <= high:
        raise ConfigError(f"{name} {value!r} must be a number in ({low:g}, {high:g}]")
    return number


def parse_budget(value: object) -> dict[str, Any]:
    """``2000000`` (tokens), ``$5`` (dollars), or both: ``2000000,$5``."""
    limits: dict[str, Any] = {"budget_tokens": None, "budget_dollars": None}
    if value in (None, ""):
        return limits
    for part in str(value).replace(" ", "").split(","):
        try:
            if part.startswith("$"):
                limits["budget_dollars"] = float(part[1:])
                ok = limits["budget_dollars"] > 0
            else:
                limits["budget_tokens"] = int(part.replace("_", ""))
                ok = limits["budget_tokens"] > 0
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(
                f"prisyn budget {value!r} is not understood; accepted: tokens, e.g. "
                "2000000, or dollars, e.g. $5, or both: 2000000,$5"
            )
    return limits


def parse_prices(value: object) -> tuple[tuple[str, float, float], ...]:
    """``prisyn_prices`` lines ``model = input output`` (dollars per million tokens)."""
    lines = value if isinstance(value, list) else str(value or "").splitlines()
    prices = []
    for line in lines:
        if not str(line).strip():
            continue
        model, _, numbers = str(line).partition("=")
        try:
            price_in, price_out = (float(n) for n in numbers.split())
        except ValueError:
            raise ConfigError(
                f"prisyn_prices line {line!r} is not 'model = input output' in "
                "dollars per million tokens, e.g. 'gemini-2.5-flash = 0.30 2.50'"
            ) from None
        prices.append((model.strip(), price_in, price_out))
    return tuple(prices)
