"""Output tokens per dataset in spec and rows mode, side by side in one run.

Run: python benchmarks/gemini_tokens.py [--sizes 1000 10000 100000]

Each dataset is generated end to end by the plugin's engine (backend gemini,
a fresh cache each time) through the real google-genai client, against the
tests' GeminiServer on 127.0.0.1 (tests/gemini_server.py), which answers as a
well-behaved model (tests/fake_gemini.py) and counts about four characters of
each answer a token, as the API's usageMetadata would. Nothing leaves the
machine. In spec mode Gemini writes one behaviour spec per profile and the
simulator writes the rows, so its output stays flat; in rows mode Gemini writes
every row, so its output grows with the dataset. Exits 1 if spec mode is not
flat (within 10%) or rows mode does not grow at least 8x for each 10x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_gemini import fake_model
from gemini_server import GeminiServer

from pytest_prisyn.config import Settings
from pytest_prisyn.engine import Engine
from pytest_prisyn.profiles import ProfileRegistry

MODEL = "gemini-2.5-flash"


def output_tokens(generation: str, n_interactions: int) -> tuple[int, int, float]:
    """Generate one tech dataset in a fresh cache; return (tokens, calls, seconds)."""
    with tempfile.TemporaryDirectory(prefix="prisyn-tokens-") as folder:
        settings = Settings(
            backend="gemini",
            model=MODEL,
            generation=generation,
            cache_dir=Path(folder),
            api_key="test-key-benchmark",
            concurrency=8,
            gemini_timeout=60.0,
        )
        engine = Engine(settings, ProfileRegistry())
        started = time.perf_counter()
        try:
            entry = engine.entry(
                "tech",
                n_users=max(20, n_interactions // 50),
                n_items=max(100, n_interactions // 100),
                n_interactions=n_interactions,
                seed=1,
            )
        finally:
            engine.close()
        usage = entry.metadata["usage"]
        took = time.perf_counter() - started
        return int(usage["output_tokens"]), int(usage["calls"]), took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000]
    )
    args = parser.parse_args()
    # Loopback only: no proxy, and the client aimed at the server below.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    os.environ.pop("GOOGLE_GENAI_USE_VERTEXAI", None)
    results: dict[str, list[int]] = {"spec": [], "rows": []}
    with GeminiServer() as server:
        server.set_handler(fake_model)
        os.environ["GOOGLE_GEMINI_BASE_URL"] = server.url
        print(f"output tokens per dataset, profile tech, model {MODEL}")
        print(f"  {'interactions':>12}  {'spec mode':>18}  {'rows mode':>24}  ratio")
        for n in args.sizes:
            spec, spec_calls, _ = output_tokens("spec", n)
            rows, rows_calls, took = output_tokens("rows", n)
            results["spec"].append(spec)
            results["rows"].append(rows)
            print(
                f"  {n:>12,}  {spec:>8,} ({spec_calls} call)  "
                f"{rows:>10,} ({rows_calls:>3} calls)  {rows / spec:6.1f}x"
                f"   [rows mode took {took:.1f} s]"
            )
    spec_spread = max(results["spec"]) / min(results["spec"])
    growth = [
        (after / before) / (n_after / n_before)
        for before, after, n_before, n_after in zip(
            results["rows"],
            results["rows"][1:],
            args.sizes,
            args.sizes[1:],
            strict=False,
        )
    ]
    flat = spec_spread <= 1.1
    linear = all(0.8 <= g <= 1.25 for g in growth)
    print(f"  spec mode largest / smallest: {spec_spread:.2f} (flat: <= 1.10)")
    shown = ", ".join(f"{g:.2f}" for g in growth)
    print(
        f"  rows mode growth / size growth: {shown} (linear: 0.80-1.25): "
        f"{'ok' if flat and linear else 'OFF TARGET'}"
    )
    return 0 if flat and linear else 1


if __name__ == "__main__":
    sys.exit(main())
