"""The engine: turns a dataset request into a frame, from the cache when it can.

Data flows one way: the engine builds a `DatasetRequest`, asks the `Store`, and
only on a miss asks a backend (the simulator, or Gemini). Backends never touch
the store or pytest; the store never knows about Gemini.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from pytest_prisyn import __version__
from pytest_prisyn.config import Settings
from pytest_prisyn.datadir import DataDir
from pytest_prisyn.errors import (
    GenerationError,
    OfflineMissError,
    PrisynError,
    ProfileError,
    RequestError,
    StoreError,
)
from pytest_prisyn.profiles import Profile, ProfileRegistry
from pytest_prisyn.request import (
    DATASET_ARGUMENTS,
    DEFAULTS,
    FEDERATED_ARGUMENTS,
    FORMAT_VERSION,
    DatasetRequest,
    Generation,
    check_arguments,
    check_generation,
    check_sizes,
    parse_population,
)
from pytest_prisyn.spec import BehaviorSpec, build_spec
from pytest_prisyn.stats import FROM_CACHE, FROM_DATA, Stats
from pytest_prisyn.store import Entry, Store

if TYPE_CHECKING:
    import pandas as pd

    from pytest_prisyn.simulate import Simulator

log = logging.getLogger("pytest_prisyn")

COLUMNS = ("user_id", "item_id", "rating", "timestamp", "profile", "category")
# Part of a Gemini spec's cache key; bump it when what a spec answer means changes.
SPEC_KEY_VERSION = 1


P = ParamSpec("P")
R = TypeVar("R")


def _user_facing(method: Callable[P, R]) -> Callable[P, R]:
    """Let a prisyn error reach the user's code without our internals' traceback."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except PrisynError as error:
            raise error.with_traceback(None) from None

    return call


class Engine:
    """Finds or makes datasets for one test run (or one command-line call)."""

    def __init__(
        self,
        settings: Settings,
        registry: ProfileRegistry,
        stats: Stats | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = Store(settings.cache_dir)
        self.data = None if settings.data_dir is None else DataDir(settings.data_dir)
        self.stats = Stats() if stats is None else stats
        self._memory: dict[str, Entry] = {}
        self._regenerated: set[str] = set()
        self._started = time.time()
        # Which suite (top-level test folder) is asking now, told by the plugin
        # and recorded with new entries: housekeeping only ever calls a
        # dataset unused in a run of the suite that recorded it.
        self.requested_by: Callable[[], str | None] = lambda: None
        self._gemini: Any = None
        self._spending: Any = None
        # Told how a long Gemini generation is going (label, gemini.Progress).
        self.on_progress: Callable[[str, Any], None] = lambda label, progress: None

    def profiles(self) -> list[str]:
        """Every known profile name."""
        return self.registry.names()

    @_user_facing
    def dataset(self, profile: object = None, **arguments: Any) -> pd.DataFrame:
        """The interactions frame for a request (a fresh copy each call)."""
        return _isolated(self.entry(profile, **arguments).frame)

    @_user_facing
    def catalog(self, profile: object = None, **arguments: Any) -> pd.DataFrame:
        """The item catalog (item_id, name, category) of a request's dataset."""
        return _isolated(self.entry(profile, **arguments).catalog)

    @_user_facing
    def clients(self, profile: object = None, **arguments: Any) -> list[Any]:
        """The dataset split into federated clients (see `federated.partition`)."""
        from pytest_prisyn import federated

        return federated.clients(self, profile, **arguments)

    @_user_facing
    def entry(self, profile: object = None, **arguments: Any) -> Entry:
        """The recorded entry for a request: found, or generated and stored."""
        plan = self._plan(profile, arguments)
        make, profiles = plan.make, plan.profiles
        as_gemini = make(
            backend="gemini", model=self.settings.model, generation=plan.generation
        )
        as_simulated = make(backend="simulate")
        chosen = self._choose(as_gemini, as_simulated, profiles)

        fingerprint = chosen.fingerprint()
        regen = self.settings.regenerates(plan.names)
        regen = regen and fingerprint not in self._regenerated
        if not regen:
            for candidate in self._lookup_order(as_gemini, as_simulated, chosen):
                found = self._recorded(candidate.fingerprint())
                if found is not None:
                    return found
        # Single flight: one process generates, others wait here, then read.
        with self.store.lock(fingerprint):
            if regen:
                self._regenerated.add(fingerprint)
                if self._made_this_run(fingerprint):
                    return self._recorded(fingerprint) or self._generate(
                        chosen, profiles
                    )
            else:
                found = self._recorded(fingerprint)
                if found is not None:
                    return found
            return self._generate(chosen, profiles)

    def _refused_as_stale(self, fingerprint: str, entry: Entry) -> bool:
        """Flag an entry older than the max age; refuse it if so configured."""
        from pytest_prisyn.inventory import age_seconds, label

        limit = self.settings.max_age
        age = age_seconds(entry.metadata)
        if limit is None or age is None or age <= limit:
            return False
        if self.settings.refuse_stale:
            return True
        self.stats.stale[fingerprint] = label(entry.metadata)
        return False

    def _made_this_run(self, fingerprint: str) -> bool:
        """Whether another worker of this run already regenerated the entry."""
        metadata = self.store.metadata(fingerprint) or {}
        return float(metadata.get("created_unix", 0.0)) >= self._started

    def _plan(self, profile: object, arguments: dict[str, Any]) -> _RequestMaker:
        """Validate a request's arguments; the maker of its per-backend requests."""
        if profile is not None:
            arguments["profile"] = profile
        arguments = check_arguments(
            (), arguments, accepted=DATASET_ARGUMENTS, what="dataset argument"
        )
        federated = [name for name in arguments if name in FEDERATED_ARGUMENTS]
        if federated:
            from pytest_prisyn.federated import CLIENT_DEFAULTS

            names = ", ".join(map(repr, federated))
            raise RequestError(
                f"{names} {'is' if len(federated) == 1 else 'are'} for the "
                f"federated fixtures, not a dataset: prisyn.clients(...) and "
                f"prisyn_clients take {', '.join(CLIENT_DEFAULTS)}; "
                "prisyn_fedprox_synthetic takes alpha, beta, devices, seed and "
                f"max_samples. A dataset takes: {', '.join(DATASET_ARGUMENTS)}"
            )
        population = parse_population(arguments.get("profile"))
        profiles = [self.registry.get(name) for name, _ in population]
        sizes = check_sizes(*(arguments.get(name, DEFAULTS[name]) for name in DEFAULTS))
        generation = check_generation(
            arguments.get("generation") or self.settings.generation
        )
        return _RequestMaker(population, profiles, sizes, generation)

    def _lookup_order(
        self,
        as_gemini: DatasetRequest,
        as_simulated: DatasetRequest,
        chosen: DatasetRequest,
    ) -> list[DatasetRequest]:
        if self.settings.backend == "auto":
            return [as_gemini, as_simulated]
        return [chosen]

    def _choose(
        self,
        as_gemini: DatasetRequest,
        as_simulated: DatasetRequest,
        profiles: list[Profile],
    ) -> DatasetRequest:
        """The backend a miss would use, given settings, key and profiles."""
        backend = self.settings.backend
        if backend == "gemini":
            return as_gemini
        without_spec = [p.name for p in profiles if p.spec is None]
        if backend == "simulate":
            if without_spec:
                raise ProfileError(
                    f"profile(s) {', '.join(without_spec)} have only a description; "
                    "the simulate backend needs a behaviour spec. Set GEMINI_API_KEY "
                    "so Gemini writes one (it is cached), or add spec fields such as "
                    "'categories' to [tool.prisyn.profiles.<name>] in pyproject.toml"
                )
            return as_simulated
        if without_spec or (self.settings.api_key and not self.settings.offline):
            return as_gemini
        return as_simulated

    def _recorded(self, fingerprint: str) -> Entry | None:
        if fingerprint in self._memory:
            return self._memory[fingerprint]
        entry = None
        source = FROM_DATA
        if self.data is not None:
            entry = self.data.get(fingerprint)
            self.stats.ignored_data = [problem for _, problem in self.data.problems]
        if entry is None:
            entry = self.store.get(fingerprint)
            source = FROM_CACHE
        self.stats.damaged = len(self.store.damaged)
        if self.store.quarantined is not None:
            self.stats.quarantined = str(self.store.quarantined)
        if entry is None or self._refused_as_stale(fingerprint, entry):
            return None
        self.stats.served[fingerprint] = source
        usage = entry.metadata.get("usage")
        if isinstance(usage, dict):
            self.stats.add_saved(usage)
        self._memory[fingerprint] = entry
        return entry

    def _generate(self, request: DatasetRequest, profiles: list[Profile]) -> Entry:
        if request.backend == "gemini":
            self._check_may_call_gemini(request, profiles)
        started = time.perf_counter()
        try:
            if request.backend == "simulate":
                specs = {p.name: _spec_of(p) for p in profiles}
                entry = self._simulate(request, specs)
            else:
                entry = self._ask_gemini(request, profiles)
            check_frame(entry.frame, request)
        except MemoryError:
            self.stats.failed.add(request.fingerprint())
            raise GenerationError(
                f"not enough memory to generate {request.label()}: about "
                f"{request.n_interactions * 60 / 2**30:.1f} GiB are needed; ask for "
                "fewer interactions"
            ) from None
        except PrisynError:
            self.stats.failed.add(request.fingerprint())
            raise
        entry.metadata.update(
            request=json.loads(request.canonical_json()),
            fingerprint=request.fingerprint(),
            backend=request.backend,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            created_unix=time.time(),
            package_version=__version__,
            recorded_by=self.requested_by(),
            format_version=FORMAT_VERSION,
            rows=len(entry.frame),
        )
        self._record(request, entry)
        self._memory[request.fingerprint()] = entry
        self.stats.served[request.fingerprint()] = request.backend
        self.stats.seconds_generating += time.perf_counter() - started
        return entry

    def _record(self, request: DatasetRequest, entry: Entry) -> None:
        """Store a new entry; if the cache cannot take it, say why, once, and go on.

        After the first failure the run stops trying (a locked database would
        otherwise cost its full timeout for every dataset).
        """
        if self.stats.unsaved_reason is None:
            try:
                self.store.put(request.fingerprint(), entry)
                return
            except StoreError as error:
                log.warning("dataset %s was not cached: %s", request.label(), error)
                self.stats.unsaved_reason = str(error)
        self.stats.unsaved += 1

    def _check_may_call_gemini(
        self, request: DatasetRequest, profiles: list[Profile]
    ) -> None:
        names = ", ".join(request.profile_names())
        if self.settings.offline:
            looked = [str(self.settings.cache_dir)]
            if self.settings.data_dir is not None:
                looked.insert(0, f"{self.settings.data_dir} (committed data)")
            data_dir = self.settings.data_dir
            raise OfflineMissError(
                f"dataset for profile {names} is not recorded and offline mode "
                f"({self.settings.offline_reason}) forbids calling Gemini.\n"
                f"  fingerprint: {request.fingerprint()}\n"
                f"  looked in: {', '.join(looked)}",
                data_dir=None if data_dir is None else str(data_dir),
            )
        if not self.settings.api_key:
            raise GenerationError(
                f"dataset for profile {names} needs Gemini (backend "
                f"{self.settings.backend!r}) but no API key is set: put GEMINI_API_KEY "
                "in the environment or a .env file, or use --prisyn-backend=simulate"
                + (
                    ""
                    if all(p.spec for p in profiles)
                    else " after adding a behaviour spec to the profile"
                )
            )

    def _simulate(
        self,
        request: DatasetRequest,
        specs: Mapping[str, BehaviorSpec],
        item_names: Mapping[str, list[str]] | None = None,
    ) -> Entry:
        simulator = _simulator(request, specs, item_names)
        return Entry(simulator.frame(), simulator.catalog(), {"model": None})

    def _ask_gemini(self, request: DatasetRequest, profiles: list[Profile]) -> Entry:
        key = self.settings.api_key or ""
        with _redacting(key):
            try:
                return self._ask_gemini_unguarded(request, profiles)
            except PrisynError as error:
                # Whatever the API echoed back, the key itself never leaves here.
                if key and key in str(error):
                    raise type(error)(redact(str(error), key)) from None
                raise

    def _ask_gemini_unguarded(
        self, request: DatasetRequest, profiles: list[Profile]
    ) -> Entry:
        from pytest_prisyn import gemini

        client = self._client()
        usage = gemini.Usage()
        assert request.model is not None
        fresh = request.fingerprint() in self._regenerated
        try:
            specs: dict[str, BehaviorSpec] = {}
            names: dict[str, list[str]] = {}
            for profile in profiles:
                spec, item_names = self._gemini_spec(
                    client, request.model, profile, usage, fresh=fresh
                )
                specs[profile.name] = spec
                for category, listed in item_names.items():
                    names.setdefault(category, []).extend(listed)
            if request.generation == "spec":
                entry = self._simulate(request, specs, names)
            else:
                entry = self._gemini_rows(request, profiles, specs, names, usage, fresh)
        finally:
            # Paid for, even when the dataset failed: the summary must say so.
            self.stats.gemini_calls += usage.calls + usage.unanswered
            self.stats.gemini_retries += usage.retries
            self.stats.gemini_rows_reused += usage.rows_from_cache
            self.stats.gemini_tokens += usage.tokens
            self.stats.add_cost(usage.cost(self._prices()))
        entry.metadata.update(model=request.model, usage=usage.as_dict(self._prices()))
        entry.metadata["model_version"] = ", ".join(usage.model_versions) or None
        return entry

    def _gemini_rows(
        self,
        request: DatasetRequest,
        profiles: list[Profile],
        specs: dict[str, BehaviorSpec],
        names: dict[str, list[str]],
        usage: Any,
        fresh: bool,
    ) -> Entry:
        """Gemini writes the rows, in chunks planned by the simulator."""
        from pytest_prisyn import gemini

        assert request.model is not None
        simulator = _simulator(request, specs, names)
        label = request.label()
        rows = gemini.write_rows(
            self._client(),
            request.model,
            simulator,
            usage=usage,
            descriptions={p.name: p.description for p in profiles},
            attempts=self.settings.gemini_attempts,
            max_total_s=self.settings.gemini_max_total,
            concurrency=self.settings.concurrency,
            # Regenerating must not replay the rows it means to replace, but
            # keeps the new ones as it goes.
            rows_cache=_RowsStore(self.store),
            reuse=not fresh,
            budget=self._budget(),
            progress=lambda done: self.on_progress(label, done),
        )
        entry = Entry(_rows_frame(simulator, rows), simulator.catalog(), {})
        entry.metadata.update(
            rejected_rows=rows.rejected,
            reasks=rows.reasks,
            rows_from_cache=rows.from_cache,
        )
        return entry

    def _gemini_spec(
        self,
        client: Any,
        model: str,
        profile: Profile,
        usage: Any,
        *,
        fresh: bool = False,
    ) -> tuple[BehaviorSpec, dict[str, list[str]]]:
        """Gemini's spec and item names for a profile: asked once, then cached.

        The key is the profile's definition and the model, not the dataset's
        size or seed, so every dataset of the profile reuses one paid answer
        (`fresh`, for --prisyn-regen, asks again).
        """
        key = _spec_key(profile, model)
        cached = None if fresh else self.store.get_json(key)
        if cached is not None:
            spec = build_spec(cached["spec"], owner=profile.name)
            return spec, {k: list(v) for k, v in cached["item_names"].items()}
        from pytest_prisyn import gemini

        scale = profile.spec.rating_scale if profile.spec is not None else None
        answer = gemini.write_spec(
            client,
            model,
            profile,
            usage=usage,
            rating_scale=scale,
            attempts=self.settings.gemini_attempts,
            max_total_s=self.settings.gemini_max_total,
            budget=self._budget(),
        )
        self._put_quietly(
            key,
            {
                "spec": answer.spec.model_dump(mode="json"),
                "item_names": answer.item_names,
                "model": model,
                "model_versions": usage.model_versions,
            },
        )
        return answer.spec, answer.item_names

    @_user_facing
    def estimate(self, profile: object = None, **arguments: Any) -> Any:
        """What generating a request with Gemini would cost, without calling it.

        Returns a `gemini.Estimate` (calls, tokens, dollars); specs and rows
        already in the cache cost nothing.
        """
        from pytest_prisyn import gemini

        plan = self._plan(profile, arguments)
        as_gemini = plan.make(
            backend="gemini", model=self.settings.model, generation=plan.generation
        )
        if self._recorded(as_gemini.fingerprint()) is not None:
            return gemini.Estimate(0, 0, 0, 0.0)
        total = gemini.Estimate(0, 0, 0, 0.0)
        specs = {}
        names: dict[str, list[str]] = {}
        for profile_ in plan.profiles:
            cached = self.store.get_json(_spec_key(profile_, self.settings.model))
            if cached is None:
                total = _plus(
                    total,
                    gemini.estimate_spec(
                        profile_, self.settings.model, prices=self._prices()
                    ),
                )
                specs[profile_.name] = profile_.spec or _placeholder_spec(profile_)
                continue
            # The catalog the rows will use, so the rows cache is looked up
            # under the keys the run would use.
            specs[profile_.name] = build_spec(cached["spec"], owner=profile_.name)
            for category, listed in cached["item_names"].items():
                names.setdefault(category, []).extend(listed)
        if plan.generation == "rows":
            simulator = _simulator(as_gemini, specs, names or None)
            total = _plus(
                total,
                gemini.estimate_rows(
                    simulator,
                    self.settings.model,
                    prices=self._prices(),
                    descriptions={p.name: p.description for p in plan.profiles},
                    rows_cache=_RowsStore(self.store),
                ),
            )
        return total

    def _budget(self) -> Any:
        if self._spending is None:
            from pytest_prisyn import gemini

            self._spending = gemini.Budget(
                limit_tokens=self.settings.budget_tokens,
                limit_dollars=self.settings.budget_dollars,
                prices=self._prices(),
            )
        return self._spending

    def _prices(self) -> dict[str, Any]:
        from pytest_prisyn import gemini

        return {
            model: gemini.Price(price_in, price_out)
            for model, price_in, price_out in self.settings.prices
        }

    def _put_quietly(self, key: str, document: dict[str, Any]) -> None:
        try:
            self.store.put_json(key, document)
        except StoreError as error:
            log.warning("could not cache %s: %s", key, error)

    def _client(self) -> Any:
        if self._gemini is None:
            from pytest_prisyn import gemini

            assert self.settings.api_key is not None
            self._gemini = gemini.make_client(
                self.settings.api_key, timeout_s=self.settings.gemini_timeout
            )
        return self._gemini

    def close(self) -> None:
        """Release the cache database."""
        self.store.close()


class _RequestMaker:
    """Builds the request for each backend from one set of validated arguments."""

    def __init__(
        self,
        population: tuple[tuple[str, float], ...],
        profiles: list[Profile],
        sizes: tuple[int, int, int, int],
        generation: Generation,
    ) -> None:
        self.population = population
        self.profiles = profiles
        self.names = [name for name, _ in population]
        self.identities = tuple(p.identity() for p in profiles)
        self.sizes = sizes
        self.generation = generation

    def make(self, **fields: Any) -> DatasetRequest:
        """The request for one backend (`fields`: backend, model, generation)."""
        n_users, n_items, n_interactions, seed = self.sizes
        return DatasetRequest(
            population=self.population,
            profiles=self.identities,
            n_users=n_users,
            n_items=n_items,
            n_interactions=n_interactions,
            seed=seed,
            format_version=FORMAT_VERSION,
            **fields,
        )


def redact(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` replaced by a marker."""
    return text.replace(secret, "<redacted>") if secret else text


class _RedactFilter(logging.Filter):
    """Rewrites log records that would carry the API key."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = redact(message, self.secret), None
        return True


@contextlib.contextmanager
def _redacting(secret: str) -> Iterator[None]:
    """Redact the key from our and the SDK's log records while Gemini is called."""
    if not secret:
        yield
        return
    redactor = _RedactFilter(secret)
    loggers = [logging.getLogger(name) for name in ("pytest_prisyn", "google_genai")]
    for logger in loggers:
        logger.addFilter(redactor)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redactor)


class _RowsStore:
    """Each user's rows Gemini wrote, kept in the store so no row is paid twice."""

    prefix = "rows-"

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str) -> list[dict[str, Any]] | None:
        document = self.store.get_json(self.prefix + key)
        rows = None if document is None else document.get("rows")
        return rows if isinstance(rows, list) else None

    def put(self, rows: Mapping[str, list[dict[str, Any]]]) -> None:
        self.store.put_json_many(
            {self.prefix + key: {"rows": user_rows} for key, user_rows in rows.items()}
        )


def _plus(a: Any, b: Any) -> Any:
    """The sum of two `gemini.Estimate`s (cost None if either is unknown)."""
    cost = None if a.cost is None or b.cost is None else a.cost + b.cost
    return type(a)(
        a.calls + b.calls,
        a.prompt_tokens + b.prompt_tokens,
        a.output_tokens + b.output_tokens,
        cost,
    )


def _placeholder_spec(profile: Profile) -> BehaviorSpec:
    """A neutral spec to plan a dataset whose real spec Gemini has not written yet."""
    return build_spec(
        {"categories": {"general": 1, "other": 1}, "star_shares": [1, 1, 2, 3, 3]},
        owner=profile.name,
    )


def _isolated(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy the caller may mutate freely without touching the cached frame.

    Under pandas' copy-on-write (always on from pandas 3) a shallow copy is
    enough and costs nothing until someone writes; otherwise copy the data.
    """
    import pandas as pd

    copy_on_write = int(pd.__version__.split(".")[0]) >= 3 or bool(
        pd.get_option("mode.copy_on_write")
    )
    return frame.copy(deep=not copy_on_write)


def _spec_of(profile: Profile) -> BehaviorSpec:
    if profile.spec is None:
        raise ProfileError(f"profile {profile.name!r} has no behaviour spec")
    return profile.spec


def _spec_key(profile: Profile, model: str) -> str:
    # A Gemini-written spec means the same whatever the simulator does with it,
    # so a new FORMAT_VERSION does not pay for it again.
    identity = json.dumps(
        {"profile": profile.identity(), "model": model, "format": SPEC_KEY_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(identity.encode()).hexdigest()


def _simulator(
    request: DatasetRequest,
    specs: Mapping[str, BehaviorSpec],
    item_names: Mapping[str, list[str]] | None,
) -> Simulator:
    from pytest_prisyn.simulate import Simulator

    return Simulator(
        population=request.population,
        specs=specs,
        n_users=request.n_users,
        n_items=request.n_items,
        n_interactions=request.n_interactions,
        seed=request.seed,
        item_names=item_names,
    )


def _rows_frame(simulator: Simulator, rows: Any) -> pd.DataFrame:
    """Gemini's rows as the documented frame, with profiles and categories joined."""
    import numpy as np

    from pytest_prisyn.simulate import Interactions, to_frame

    order = np.lexsort((rows.item_id, rows.timestamp_s, rows.user_id))
    user_id = np.asarray(rows.user_id, dtype=np.int64)[order]
    item_id = np.asarray(rows.item_id, dtype=np.int64)[order]
    arrays = Interactions(
        user_id=user_id,
        item_id=item_id,
        rating=np.asarray(rows.rating, dtype=np.float64)[order],
        timestamp_s=np.asarray(rows.timestamp_s, dtype=np.int64)[order],
        profile_code=simulator.user_profile[user_id - 1],
        category_code=simulator.item_category[item_id - 1],
    )
    return to_frame(arrays, simulator.profiles, simulator.categories)


def check_frame(frame: pd.DataFrame, request: DatasetRequest) -> None:
    """Refuse to store a frame that breaks the documented contract."""
    problems = []
    if tuple(frame.columns[: len(COLUMNS)]) != COLUMNS:
        problems.append(f"columns are {list(frame.columns)}, expected {list(COLUMNS)}")
    elif len(frame) != request.n_interactions:
        problems.append(f"{len(frame)} rows, expected {request.n_interactions}")
    elif frame["user_id"].nunique() != request.n_users:
        problems.append(
            f"{frame['user_id'].nunique()} distinct users, expected {request.n_users}"
        )
    elif frame.duplicated(["user_id", "item_id"]).any():
        problems.append("duplicate (user_id, item_id) pairs")
    elif not frame["item_id"].between(1, request.n_items).all():
        problems.append("item ids outside the catalog")
    if problems:
        raise GenerationError(
            f"generated dataset for {request.label()} is invalid and was not "
            f"cached: {'; '.join(problems)}"
        )
