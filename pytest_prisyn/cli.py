"""The ``prisyn`` command line: datasets to files, profiles, reports and the cache.

Every command resolves its settings the way the plugin does and goes through
the same engine and cache, so ``prisyn generate`` writes exactly the data a
test's ``prisyn_dataset`` fixture gets for the same request.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from pytest_prisyn import __version__
from pytest_prisyn.config import BACKENDS, GENERATIONS
from pytest_prisyn.errors import (
    ConfigError,
    OfflineMissError,
    PrisynError,
    RequestError,
)

if TYPE_CHECKING:
    import pandas as pd

    from pytest_prisyn.config import Settings
    from pytest_prisyn.engine import Engine
    from pytest_prisyn.profiles import ProfileRegistry
    from pytest_prisyn.store import Entry, Store

PROG = "prisyn"

EXIT_OK = 0
EXIT_FAILURE = 1  # generation failed; a cache or file could not be read or written
EXIT_USAGE = 2  # argparse's own code: bad option, value, profile or input path
EXIT_MISSING_DEPENDENCY = 3  # an optional extra is not installed
EXIT_OFFLINE_MISS = 4  # not recorded, and --offline forbids generating it
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_FAILURE}    generation failed, or a cache or file could not be read or written
  {EXIT_USAGE}    usage error: bad option, value, profile, file name or fingerprint
  {EXIT_MISSING_DEPENDENCY}    optional dependency missing (matplotlib, for pictures)
  {EXIT_OFFLINE_MISS}    the dataset is not recorded and --offline forbids generating it
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""

CSV_EXTENSIONS = (".csv",)
PARQUET_EXTENSIONS = (".parquet", ".pq")
DATA_EXTENSIONS = CSV_EXTENSIONS + PARQUET_EXTENSIONS
# Reference name on the command line -> attribute of pytest_prisyn.quality.
REFERENCES = {"movielens-100k": "MOVIELENS_100K"}
SHORT_FINGERPRINT = 12
PROGRESS_DELAY_S = 0.3  # a cache hit finishes before any progress line shows
PROGRESS_EVERY_S = 0.2


class CommandError(Exception):
    """An expected failure of a command: a one-line message and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the ``prisyn`` command line and return its exit code."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as stop:  # --help, --version, or a usage error
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    args.argv = arguments
    try:
        return int(args.run(args))
    except CommandError as error:
        return _fail(str(error), error.exit_code)
    except PrisynError as error:
        return _fail(str(error), _exit_code(error))
    except BrokenPipeError:
        # The reader went away (e.g. `prisyn cache list | head -1`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        return _fail(_os_message(error), EXIT_FAILURE)
    except KeyboardInterrupt:
        _note(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command registered in `COMMANDS`."""
    parser = _Parser(
        prog=PROG,
        description="Synthetic user-interaction data for recommender tests:\n"
        "generate datasets, list profiles, measure realism, manage the cache.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    _add_commands(parser, COMMANDS, "command")
    return parser


# Commands -------------------------------------------------------------------


def generate(args: argparse.Namespace) -> int:
    """Write one dataset to CSV or Parquet, through the engine and its cache."""
    from pytest_prisyn.stats import FROM_CACHE, FROM_DATA

    output = Path(args.output)
    if args.format and output.exists() and not output.is_dir():
        raise CommandError(
            f"with --format, -o names a directory to write into; {str(output)!r} "
            "is a file"
        )
    write = None if args.format else _writer_for(output)
    if not output.parent.is_dir():
        raise CommandError(
            f"output directory {str(output.parent)!r} does not exist; create it "
            "first or choose another -o path"
        )
    profile = parse_profiles(args.profiles)
    sizes = {
        name: getattr(args, name)
        for name in ("n_users", "n_items", "n_interactions", "seed")
        if getattr(args, name) is not None
    }
    if args.dry_run:
        return _dry_run(args, profile, sizes)
    with _engine(args) as engine:
        label = _request_label(profile, sizes)
        started = time.perf_counter()
        try:
            with _progress(f"generating {label}", sys.stderr):
                entry = engine.entry(profile, **sizes)
        except OfflineMissError as error:
            raise CommandError(
                f"{error}\n  from the command line: GEMINI_API_KEY=... "
                f"{_record_command(args, engine.settings)}",
                EXIT_OFFLINE_MISS,
            ) from None
        fingerprint = str(entry.metadata.get("fingerprint", ""))
        source = engine.stats.served.get(fingerprint, FROM_CACHE)
    try:
        if write is None:
            _write_format(entry, args.format, output)
        else:
            write_atomically(output, lambda path: write(entry.frame, path))
    except OSError as error:
        raise CommandError(
            f"cannot write {output}: {error.strerror or error}", EXIT_FAILURE
        ) from None
    how = {FROM_CACHE: "from the cache", FROM_DATA: "from committed data"}.get(
        source, f"generated by {source}"
    )
    _note(
        f"{PROG}: wrote {output}: {len(entry.frame)} interactions of {label} "
        f"({how} in {time.perf_counter() - started:.1f}s, fingerprint "
        f"{fingerprint[:SHORT_FINGERPRINT]})"
    )
    return EXIT_OK


def _dry_run(args: argparse.Namespace, profile: object, sizes: dict[str, Any]) -> int:
    """Print what generating with Gemini would cost; call nothing."""
    with _engine(args) as engine:
        estimate = engine.estimate(profile, **sizes)
    cost = "unknown" if estimate.cost is None else f"${estimate.cost:.4f}"
    _say(
        f"{_request_label(profile, sizes)} with {engine.settings.model} "
        f"({engine.settings.generation} mode): {estimate.calls} "
        f"{_plural(estimate.calls, 'call')}, about {estimate.prompt_tokens:,} prompt "
        f"and {estimate.output_tokens:,} output tokens, estimated cost {cost}"
    )
    return EXIT_OK


def profiles(args: argparse.Namespace) -> int:
    """List the built-in profiles and the user's own from ./pyproject.toml."""
    registry = _registry()
    listed = []
    for name in registry.names():
        profile = registry.get(name)
        listed.append(
            {
                "name": name,
                "source": profile.source,
                "has_spec": profile.spec is not None,
                "description": profile.description,
                "categories": None if profile.spec is None else profile.spec.mix(),
            }
        )
    if args.json:
        _say(json.dumps(listed, indent=2))
        return EXIT_OK
    rows = [
        [
            str(entry["name"]),
            _short_path(str(entry["source"])),
            "yes" if entry["has_spec"] else "no (Gemini writes one)",
            str(entry["description"]).strip().splitlines()[0],
        ]
        for entry in listed
    ]
    _say(_table(["PROFILE", "SOURCE", "SPEC", "DESCRIPTION"], rows))
    return EXIT_OK


def report(args: argparse.Namespace) -> int:
    """Print the quality report of an interactions file; draw it on request."""
    from pytest_prisyn import quality

    path = Path(args.file)
    frame = read_interactions(path)
    reference = getattr(quality, REFERENCES[args.reference]) if args.reference else None
    try:
        measured = quality.report(
            frame,
            declared=_declared_mixes(frame),
            reference=reference,
            rating_scale=args.rating_scale,
        )
    except ValueError as error:
        raise CommandError(f"cannot measure {path}: {error}", EXIT_FAILURE) from None
    if args.json:
        _say(json.dumps(measured.to_dict(), indent=2))
    else:
        _say(measured.format_table())
    if measured.ratings.off_scale_share > 0:
        _note(_off_scale_warning(frame, measured.ratings.scale_values))
    try:
        if args.html:
            page = quality.render_html(measured, frame, args.html)
            _note(f"{PROG}: wrote {page}")
        if args.png:
            pictures = quality.render_pngs(measured, frame, args.png)
            _note(f"{PROG}: wrote {', '.join(str(p) for p in pictures)}")
    except quality.ReportDependencyError as error:
        raise CommandError(str(error), EXIT_MISSING_DEPENDENCY) from None
    return EXIT_OK


def cache_list(args: argparse.Namespace) -> int:
    """List cached datasets from their metadata, without loading their data."""
    with _open_store(args) as (store, directory):
        summaries = [
            _summary(fingerprint, store.metadata(fingerprint))
            for fingerprint in _fingerprints(store)
            if store is not None
        ]
    summaries.sort(key=lambda entry: (str(entry["created"]), entry["fingerprint"]))
    if args.json:
        _say(json.dumps(summaries, indent=2))
        return EXIT_OK
    if not summaries:
        _say(f"no cached datasets in {directory}")
        return EXIT_OK
    header = ["FINGERPRINT", "PROFILES", "USERS", "ITEMS", "ROWS", "SEED"]
    header += ["BACKEND", "MODEL", "CREATED"]
    rows = [
        [
            str(entry["fingerprint"])[:SHORT_FINGERPRINT],
            *(
                _cell(entry[name])
                for name in ("profiles", "n_users", "n_items", "rows", "seed")
            ),
            *(_cell(entry[name]) for name in ("backend", "model", "created")),
        ]
        for entry in summaries
    ]
    _say(_table(header, rows))
    _say(
        f"\n{len(summaries)} {_plural(len(summaries), 'dataset')} in {directory}, "
        f"{_size(_disk_usage(directory))} on disk"
    )
    return EXIT_OK


def cache_show(args: argparse.Namespace) -> int:
    """Print the full metadata of one cached dataset, found by fingerprint prefix."""
    prefix = args.fingerprint.strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise CommandError(
            f"fingerprint prefix {args.fingerprint!r} is not hexadecimal; copy one "
            f"from '{PROG} cache list'"
        )
    with _open_store(args) as (store, directory):
        matches = [fp for fp in _fingerprints(store) if fp.startswith(prefix)]
        if not matches:
            raise CommandError(
                f"no cached dataset in {directory} has a fingerprint starting with "
                f"{prefix!r}; '{PROG} cache list' shows the recorded ones"
            )
        if len(matches) > 1:
            shown = ", ".join(fp[: len(prefix) + 4] for fp in sorted(matches))
            raise CommandError(
                f"fingerprint prefix {prefix!r} is ambiguous: it matches {shown}; "
                "give more characters"
            )
        metadata = store.metadata(matches[0]) if store is not None else None
    shown_metadata = {"fingerprint": matches[0], **(metadata or {})}
    _say(json.dumps(shown_metadata, indent=2, sort_keys=True))
    return EXIT_OK


def cache_clear(args: argparse.Namespace) -> int:
    """Remove every cached dataset, after confirmation."""
    with _open_store(args) as (store, directory):
        fingerprints = _fingerprints(store)
        if store is None or not fingerprints:
            _say(f"no cached datasets in {directory}; nothing removed")
            return EXIT_OK
        count = f"{len(fingerprints)} cached {_plural(len(fingerprints), 'dataset')}"
        if not args.yes and not _confirm(f"remove {count} from {directory}?"):
            _note(f"{PROG}: nothing removed")
            return EXIT_FAILURE
        kept = []
        for fingerprint in fingerprints:
            label = _entry_label(_summary(fingerprint, store.metadata(fingerprint)))
            store.delete(fingerprint)
            if store.contains(fingerprint):
                kept.append(fingerprint[:SHORT_FINGERPRINT])
            else:
                _say(f"removed {fingerprint[:SHORT_FINGERPRINT]}  {label}")
    if kept:
        raise CommandError(
            f"could not remove {len(kept)} of {count} from {directory} "
            f"({', '.join(kept)}); is the directory writable?",
            EXIT_FAILURE,
        )
    _say(f"removed {count} from {directory}")
    return EXIT_OK


def cache_export(args: argparse.Namespace) -> int:
    """Write cached datasets as Parquet + manifest folders for committing."""
    from pytest_prisyn.datadir import export

    with _open_store(args) as (store, directory):
        if store is None:
            raise CommandError(f"no cache at {directory}; nothing to export")
        chosen = _matching(store, args.fingerprints) if args.fingerprints else None
        folders = export(store, Path(args.directory), chosen)
    for folder in folders:
        _say(f"exported {folder}")
    _say(
        f"exported {len(folders)} {_plural(len(folders), 'dataset')} to "
        f"{args.directory}; commit it and run pytest --prisyn-offline "
        f"--prisyn-data-dir={args.directory}"
    )
    return EXIT_OK


def cache_import(args: argparse.Namespace) -> int:
    """Copy the datasets of a data directory into the cache."""
    from pytest_prisyn.datadir import import_into
    from pytest_prisyn.store import Store

    source = Path(args.directory)
    if not source.is_dir():
        raise CommandError(f"{source} is not a directory")
    store = Store(_settings(args).cache_dir)
    try:
        imported = import_into(store, source)
    finally:
        store.close()
    _say(f"imported {len(imported)} {_plural(len(imported), 'dataset')} from {source}")
    return EXIT_OK


def cache_prune(args: argparse.Namespace) -> int:
    """Remove entries older than a limit or made by an older data format."""
    from pytest_prisyn.config import parse_duration
    from pytest_prisyn.errors import ConfigError
    from pytest_prisyn.inventory import age_seconds
    from pytest_prisyn.request import FORMAT_VERSION

    if args.older_than is None and not args.old_formats:
        raise CommandError("say what to prune: --older-than AGE and/or --old-formats")
    try:
        limit = parse_duration(args.older_than)
    except ConfigError as error:
        raise CommandError(
            str(error).replace("prisyn max age", "--older-than")
        ) from None
    with _open_store(args) as (store, directory):
        doomed = []
        for fingerprint in _fingerprints(store):
            assert store is not None
            metadata = store.metadata(fingerprint) or {}
            old_format = metadata.get("format_version") != FORMAT_VERSION
            age = age_seconds(metadata)
            too_old = limit is not None and age is not None and age > limit
            if (args.old_formats and old_format) or too_old:
                doomed.append((fingerprint, metadata))
        if not doomed:
            _say(f"nothing to prune in {directory}")
            return EXIT_OK
        count = f"{len(doomed)} cached {_plural(len(doomed), 'dataset')}"
        if not args.yes and not _confirm(f"remove {count} from {directory}?"):
            _note(f"{PROG}: nothing removed")
            return EXIT_FAILURE
        assert store is not None
        for fingerprint, metadata in doomed:
            store.delete(fingerprint)
            label = _entry_label(_summary(fingerprint, metadata))
            _say(f"removed {fingerprint[:SHORT_FINGERPRINT]}  {label}")
    return EXIT_OK


def _matching(store: Store, prefixes: Sequence[str]) -> list[str]:
    known = _fingerprints(store)
    chosen = []
    for prefix in prefixes:
        found = [fp for fp in known if fp.startswith(prefix.lower())]
        if len(found) != 1:
            raise CommandError(
                f"fingerprint prefix {prefix!r} matches {len(found)} cached datasets; "
                "'prisyn cache list' shows them"
            )
        chosen.extend(found)
    return chosen


# Generating -----------------------------------------------------------------


def parse_profiles(values: Sequence[str]) -> str | list[str] | dict[str, float]:
    """Profile arguments as the engine takes them: a name, names, or shares.

    ``tech gamer`` and ``tech,gamer`` split the users evenly; ``tech=0.7,gamer=0.3``
    (or ``tech=7 gamer=3``: shares are normalised) gives each profile a share.
    """
    parts = [part.strip() for value in values for part in value.split(",")]
    parts = [part for part in parts if part]
    if not parts:
        raise CommandError("no profile given; name one, e.g. 'prisyn generate tech'")
    with_share = [part for part in parts if "=" in part]
    if not with_share:
        return parts[0] if len(parts) == 1 else parts
    if len(with_share) != len(parts):
        raise CommandError(
            f"profiles {','.join(parts)!r} give a share to some profiles but not "
            "all; write e.g. tech=0.7,gamer=0.3 or tech,gamer"
        )
    shares: dict[str, float] = {}
    for part in parts:
        name, _, text = (piece.strip() for piece in part.partition("="))
        if name in shares:
            raise CommandError(f"profile {name!r} is given twice in {','.join(parts)}")
        try:
            shares[name] = float(text)
        except ValueError:
            raise CommandError(
                f"share {text!r} of profile {name!r} is not a number; write e.g. "
                "tech=0.7,gamer=0.3"
            ) from None
    return shares


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write` fill a temporary file next to `path`, then rename it into place.

    A failure (or Ctrl-C) leaves `path` as it was and no temporary file behind.
    """
    temporary = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# Output layouts by file extension. A future ``--format`` option (movielens,
# recommenders, udata, ...) would choose a layout by name instead: one function
# that reshapes the frame and writes it, registered next to these.
def _write_format(entry: Entry, file_format: str, directory: Path) -> None:
    """Write a library's format into `directory`, all files or none."""
    import shutil
    import tempfile

    from pytest_prisyn.formats import export

    directory.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prisyn-", dir=directory.parent))
    try:
        written = export(entry.frame, entry.catalog, file_format, staging)
        for path in written:
            target = directory / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _writer_for(path: Path) -> Callable[[pd.DataFrame, Path], None]:
    suffix = path.suffix.lower()
    if suffix in CSV_EXTENSIONS:
        return _write_csv
    if suffix in PARQUET_EXTENSIONS:
        return _write_parquet
    raise CommandError(_extension_message(path))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, engine="pyarrow", index=False)


def _extension_message(path: Path) -> str:
    return (
        f"cannot tell the file type of {str(path)!r} from its extension "
        f"{path.suffix or '(none)'!r}; accepted: {', '.join(DATA_EXTENSIONS)}"
    )


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[Engine]:
    from pytest_prisyn.engine import Engine

    engine = Engine(_settings(args), _registry())
    try:
        yield engine
    finally:
        engine.close()


def find_rootdir(start: Path | None = None) -> Path:
    """The project root as pytest finds it: the nearest folder upwards with
    pytest.ini, a pyproject.toml with [tool.pytest.ini_options], tox.ini or
    setup.cfg with a pytest section; else the current directory.

    So ``prisyn`` run from a subfolder uses the same cache and profiles as the
    test suite does.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pytest.ini").is_file():
            return folder
        for name, marker in (
            ("pyproject.toml", "[tool.pytest.ini_options]"),
            ("tox.ini", "[pytest]"),
            ("setup.cfg", "[tool:pytest]"),
        ):
            path = folder / name
            try:
                if path.is_file() and marker in path.read_text(encoding="utf-8"):
                    return folder
            except (OSError, UnicodeDecodeError):
                continue
    return here


def _settings(args: argparse.Namespace) -> Settings:
    """Settings as the plugin resolves them: options, env, pyproject ini, defaults."""
    from pytest_prisyn.config import resolve

    rootdir = find_rootdir()
    options = {
        name: getattr(args, name, None)
        for name in ("backend", "model", "generation", "cache_dir")
    }
    # No --offline given means "not said": CI detection and PRISYN_OFFLINE apply.
    options["offline"] = True if getattr(args, "offline", False) else None
    return resolve(
        options=options, ini=_pytest_ini(rootdir / "pyproject.toml"), rootdir=rootdir
    )


def _pytest_ini(pyproject: Path) -> dict[str, Any]:
    """The ``prisyn_*`` keys of ``[tool.pytest.ini_options]``, without the prefix."""
    import tomllib

    if not pyproject.is_file():
        return {}
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read settings from {pyproject}: {error}") from None
    options = document.get("tool", {}).get("pytest", {}).get("ini_options", {})
    return {
        key.removeprefix("prisyn_"): value
        for key, value in options.items()
        if key.startswith("prisyn_")
    }


def _registry() -> ProfileRegistry:
    from pytest_prisyn.profiles import ProfileRegistry, load_user_profiles

    return ProfileRegistry(load_user_profiles(find_rootdir() / "pyproject.toml"))


def _request_label(profile: object, sizes: dict[str, int]) -> str:
    from pytest_prisyn.request import DEFAULTS

    if isinstance(profile, dict):
        names = "+".join(f"{name}={share:g}" for name, share in profile.items())
    elif isinstance(profile, list):
        names = "+".join(profile)
    else:
        names = str(profile)
    size = {**DEFAULTS, **sizes}
    return (
        f"{names} {size['n_users']}u/{size['n_items']}it/{size['n_interactions']}r "
        f"seed={size['seed']}"
    )


def _record_command(args: argparse.Namespace, settings: Settings) -> str:
    """This very command, minus --offline, with the backend that records it."""
    words = [word for word in args.argv if word != "--offline"]
    if settings.backend != "gemini":
        words += ["--backend", "gemini"]
    return shlex.join([PROG, *words])


@contextmanager
def _progress(label: str, stream: TextIO) -> Iterator[None]:
    """A one-line elapsed-time status on a terminal; nothing otherwise."""
    if not stream.isatty():
        yield
        return
    started = time.perf_counter()
    done = threading.Event()
    shown = threading.Event()

    def tick() -> None:
        if done.wait(PROGRESS_DELAY_S):
            return
        while True:
            shown.set()
            elapsed = time.perf_counter() - started
            stream.write(f"\r{PROG}: {label} ... {elapsed:.1f}s")
            stream.flush()
            if done.wait(PROGRESS_EVERY_S):
                return

    thread = threading.Thread(target=tick, name="prisyn-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        if shown.is_set():
            stream.write("\r\x1b[K")  # erase the status line
            stream.flush()


# Reporting ------------------------------------------------------------------


def read_interactions(path: Path) -> pd.DataFrame:
    """An interactions file as a frame; CSV timestamps become UTC datetimes."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in DATA_EXTENSIONS:
        raise CommandError(_extension_message(path))
    if not path.is_file():
        raise CommandError(f"interactions file {str(path)!r} does not exist")
    try:
        if suffix in PARQUET_EXTENSIONS:
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_csv(path)
    except (ValueError, OSError) as error:
        raise CommandError(
            f"cannot read {path} as {suffix[1:]}: {_first_line(error)}", EXIT_FAILURE
        ) from None
    if "timestamp" in frame:
        frame["timestamp"] = _utc_timestamps(frame["timestamp"], path)
    return frame


def _utc_timestamps(column: pd.Series[Any], path: Path) -> pd.Series[Any]:
    """Unix seconds or ISO 8601 text as UTC datetimes."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(column):
        return pd.to_datetime(column, utc=True)
    try:
        if pd.api.types.is_numeric_dtype(column):
            return pd.to_datetime(column, unit="s", utc=True)
        return pd.to_datetime(column, utc=True, format="ISO8601")
    except (ValueError, OverflowError) as error:
        raise CommandError(
            f"column 'timestamp' of {path} holds neither unix seconds nor ISO 8601 "
            f"dates: {_first_line(error)}",
            EXIT_FAILURE,
        ) from None


def _rating_scale(text: str) -> list[float]:
    """Parse --rating-scale: two or more comma-separated finite numbers."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if len(set(values)) < 2 or not all(math.isfinite(value) for value in values):
        raise argparse.ArgumentTypeError(
            "--rating-scale takes two or more comma-separated numbers such as "
            f"1,2,3,4,5; got {text!r}"
        )
    return values


def _off_scale_warning(frame: pd.DataFrame, scale: Sequence[float]) -> str:
    """Name how many ratings lie off the scale, and the first of them."""
    import numpy as np

    ratings = frame["rating"].to_numpy(dtype=float)
    off = ~np.isclose(ratings[:, None], np.asarray(scale)[None, :]).any(axis=1)
    first = int(np.flatnonzero(off)[0])
    values = ",".join(f"{value:g}" for value in scale)
    return (
        f"{PROG}: warning: {int(off.sum())} of {len(ratings)} ratings are not on "
        f"the scale {values} (first: data row {first + 1}, value "
        f"{ratings[first]:g}); give every allowed value with --rating-scale, or "
        "fix those rows"
    )


def _declared_mixes(frame: pd.DataFrame) -> dict[str, dict[str, float]] | None:
    """Category mixes the known profiles in the frame declare, for fidelity."""
    if "profile" not in frame:
        return None
    registry = _registry()
    known = set(registry.names())
    declared = {}
    for name in frame["profile"].dropna().unique():
        if str(name) in known:
            spec = registry.get(str(name)).spec
            if spec is not None:
                declared[str(name)] = spec.mix()
    return declared or None


# The cache ------------------------------------------------------------------


@contextmanager
def _open_store(args: argparse.Namespace) -> Iterator[tuple[Store | None, Path]]:
    """The configured cache and its directory; None (not created) if it is absent."""
    from diskcache.core import DBNAME

    from pytest_prisyn.store import Store

    directory = _settings(args).cache_dir
    if not (directory / DBNAME).is_file():
        yield None, directory
        return
    store = Store(directory)
    try:
        yield store, directory
    finally:
        store.close()


def _fingerprints(store: Store | None) -> list[str]:
    return [] if store is None else sorted(store.fingerprints())


def _summary(fingerprint: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """One cache entry's listing fields, from its metadata only."""
    metadata = metadata or {}
    request = metadata.get("request") or {}
    population = request.get("population") or []
    if metadata.get("damaged"):
        profiles = "(damaged)"
    elif len(population) == 1:
        profiles = str(population[0][0])
    else:
        profiles = ",".join(f"{name}={share:.2g}" for name, share in population)
    return {
        "fingerprint": fingerprint,
        "profiles": profiles,
        "n_users": request.get("n_users"),
        "n_items": request.get("n_items"),
        "rows": metadata.get("rows"),
        "seed": request.get("seed"),
        "backend": metadata.get("backend"),
        "model": metadata.get("model"),
        "generation": request.get("generation"),
        "created": metadata.get("created"),
        "format_version": metadata.get("format_version"),
        "damaged": bool(metadata.get("damaged")),
    }


def _entry_label(summary: dict[str, Any]) -> str:
    return (
        f"{summary['profiles']} {_cell(summary['n_users'])}u/"
        f"{_cell(summary['n_items'])}it/{_cell(summary['rows'])}r "
        f"seed={_cell(summary['seed'])} ({_cell(summary['backend'])})"
    )


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise CommandError(
            f"refusing to {question.rstrip('?')} without --yes: standard input is "
            "not a terminal to confirm on"
        )
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


def _disk_usage(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# Output and errors ----------------------------------------------------------


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _fail(message: str, exit_code: int) -> int:
    _note(f"{PROG}: error: {_one_line(message)}")
    return exit_code


def _one_line(message: str) -> str:
    """A possibly multi-line message joined into one line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    joined = lines[0] if lines else ""
    for line in lines[1:]:
        joined += (" " if joined.endswith((".", ":", ";")) else "; ") + line
    return joined


def _exit_code(error: PrisynError) -> int:
    if isinstance(error, OfflineMissError):
        return EXIT_OFFLINE_MISS
    if isinstance(error, RequestError | ConfigError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _os_message(error: OSError) -> str:
    if error.filename is not None:
        return f"{error.strerror or error}: {error.filename}"
    return str(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _short_path(source: str) -> str:
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


# Registration ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``prisyn: error:`` line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


class Arg:
    """One argparse argument, declared in a command's registration."""

    def __init__(self, *flags: str, **settings: Any) -> None:
        self.flags = flags
        self.settings = settings

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this argument to a (sub)command's parser."""
        parser.add_argument(*self.flags, **self.settings)


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, what it runs and its arguments."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: tuple[Arg, ...] = ()


@dataclass(frozen=True)
class Group:
    """A command with subcommands of its own, such as ``prisyn cache``."""

    name: str
    help: str
    commands: tuple[Command | Group, ...]


def _add_commands(
    parser: argparse.ArgumentParser, commands: Sequence[Command | Group], dest: str
) -> None:
    subparsers = parser.add_subparsers(
        dest=dest, metavar="COMMAND", required=True, title="commands"
    )
    for command in commands:
        child = subparsers.add_parser(
            command.name, help=command.help, description=command.help
        )
        if isinstance(command, Group):
            _add_commands(child, command.commands, f"{dest}_{command.name}")
        else:
            for argument in command.arguments:
                argument.add_to(child)
            child.set_defaults(run=command.run)


JSON = Arg("--json", action="store_true", help="print JSON instead of a table")
CACHE_DIR = Arg(
    "--cache-dir",
    metavar="DIR",
    help="dataset cache directory (default ./.prisyn; env PRISYN_CACHE_DIR, "
    "ini prisyn_cache_dir in pyproject.toml)",
)

GENERATE = Command(
    "generate",
    "write a synthetic interactions dataset to a CSV or Parquet file",
    generate,
    (
        Arg(
            "profiles",
            nargs="+",
            metavar="PROFILE",
            help="profile name; several names split the users evenly, shares "
            "weight them: tech=0.7,gamer=0.3 ('prisyn profiles' lists the names)",
        ),
        Arg(
            "-o",
            "--output",
            required=True,
            metavar="FILE",
            help=f"file to write; its extension picks the format: "
            f"{', '.join(DATA_EXTENSIONS)}",
        ),
        Arg(
            "--dry-run",
            action="store_true",
            help="print what generating with Gemini would cost, and stop",
        ),
        Arg(
            "--format",
            choices=("movielens", "udata", "recommenders", "recbole"),
            help="write a library's format instead, into the directory -o names",
        ),
        Arg("--n-users", type=int, metavar="N", help="number of users (default 100)"),
        Arg("--n-items", type=int, metavar="N", help="catalog size (default 300)"),
        Arg(
            "--n-interactions",
            type=int,
            metavar="N",
            help="number of interactions, i.e. rows (default 3000)",
        ),
        Arg("--seed", type=int, metavar="N", help="random seed (default 0)"),
        Arg(
            "--backend",
            choices=BACKENDS,
            help="where a new dataset comes from: auto (Gemini with a key, else "
            "the simulator), gemini or simulate (env PRISYN_BACKEND)",
        ),
        Arg("--model", metavar="ID", help="Gemini model id (env PRISYN_MODEL)"),
        Arg(
            "--generation",
            choices=GENERATIONS,
            help="Gemini mode: spec (Gemini writes the behaviour spec) or rows "
            "(Gemini writes the rows)",
        ),
        CACHE_DIR,
        Arg(
            "--offline",
            action="store_true",
            help="never call the network; fail (exit 4) if the dataset would need "
            "Gemini and is not recorded",
        ),
    ),
)
PROFILES = Command(
    "profiles",
    "list the built-in profiles and those in ./pyproject.toml",
    profiles,
    (JSON,),
)
REPORT = Command(
    "report",
    "measure how realistic an interactions file (CSV or Parquet) is",
    report,
    (
        Arg(
            "file",
            metavar="FILE",
            help=f"interactions file ({', '.join(DATA_EXTENSIONS)}) with user_id, "
            "item_id, rating and optionally timestamp, profile, category",
        ),
        Arg(
            "--reference",
            choices=tuple(REFERENCES),
            help="compare with the statistics of a real interaction log",
        ),
        Arg("--html", metavar="OUT.html", help="write a self-contained HTML page"),
        Arg("--png", metavar="DIR", help="write the pictures as PNG files into DIR"),
        Arg(
            "--rating-scale",
            metavar="VALUES",
            type=_rating_scale,
            help="the allowed ratings, comma-separated (e.g. 1,2,3,4,5); "
            "default: inferred from the file (1-5, half stars, up to 1-10)",
        ),
        Arg("--json", action="store_true", help="print the measures as JSON"),
    ),
)
CACHE_LIST = Command(
    "list", "list cached datasets (metadata only)", cache_list, (CACHE_DIR, JSON)
)
CACHE_SHOW = Command(
    "show",
    "print the full metadata of one cached dataset",
    cache_show,
    (
        Arg(
            "fingerprint",
            metavar="FINGERPRINT_PREFIX",
            help="the start of a fingerprint, as 'prisyn cache list' shows it",
        ),
        CACHE_DIR,
    ),
)
CACHE_CLEAR = Command(
    "clear",
    "remove every cached dataset",
    cache_clear,
    (
        Arg(
            "--yes",
            action="store_true",
            help="do not ask for confirmation (required when stdin is not a terminal)",
        ),
        CACHE_DIR,
    ),
)

CACHE_EXPORT = Command(
    "export",
    "write cached datasets as Parquet files plus JSON manifests, to commit",
    cache_export,
    (
        Arg("directory", metavar="DIR", help="data directory to write into"),
        Arg(
            "fingerprints",
            nargs="*",
            metavar="FINGERPRINT_PREFIX",
            help="only these datasets (default: all)",
        ),
        CACHE_DIR,
    ),
)
CACHE_IMPORT = Command(
    "import",
    "copy the datasets of a data directory into the cache",
    cache_import,
    (Arg("directory", metavar="DIR", help="data directory to read"), CACHE_DIR),
)
CACHE_PRUNE = Command(
    "prune",
    "remove cached datasets older than a limit or of an older data format",
    cache_prune,
    (
        Arg(
            "--older-than",
            metavar="AGE",
            help="age limit: 90d, 12h, 30m (minutes), or a number of days",
        ),
        Arg(
            "--old-formats",
            action="store_true",
            help="entries written by an older data format of pytest-prisyn",
        ),
        Arg("--yes", action="store_true", help="do not ask for confirmation"),
        CACHE_DIR,
    ),
)

# Adding a command: write its run function, declare it as a Command, add it here.
CACHE_COMMANDS: tuple[Command | Group, ...] = (
    CACHE_LIST,
    CACHE_SHOW,
    CACHE_CLEAR,
    CACHE_EXPORT,
    CACHE_IMPORT,
    CACHE_PRUNE,
)
COMMANDS: tuple[Command | Group, ...] = (
    GENERATE,
    PROFILES,
    REPORT,
    Group(
        "cache",
        "list, show, clear, export, import or prune cached datasets",
        CACHE_COMMANDS,
    ),
)
