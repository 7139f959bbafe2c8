"""Rows mode at concurrency 1 and 8, side by side in one run, on a loopback server.

Run: python benchmarks/gemini_concurrency.py

The tests' GeminiServer (tests/gemini_server.py) listens on 127.0.0.1 and
answers every call after 300 ms with valid rows (tests/fake_gemini.py); the
real google-genai client talks to it. One rows-mode request of 20 chunks is
written sequentially, then with 8 chunks in flight. Nothing leaves the machine.
Target: concurrency 8 at least 5x faster than concurrency 1; exits 1 below it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_gemini import perfect_model
from gemini_server import GeminiServer

from pytest_prisyn import gemini
from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.simulate import Simulator

LATENCY_S = 0.3
CHUNKS = 20
# 60 users (at most 16 rows each) and 400 rows in chunks of at most 24 rows make
# exactly 20 chunks of one call each.
CHUNK_ROWS = 24
TARGET = 5.0
# socketserver listens with a backlog of 5: when 8 connections open at once the
# kernel drops a SYN and the client sends it again a second later, a stall of
# the test server, not of the client. A real endpoint accepts far more.


def write(server: GeminiServer, simulator: Simulator, concurrency: int) -> float:
    """Write the request once at a concurrency; return the seconds it took."""
    client = gemini.make_client("test-key-benchmark", timeout_s=30, base_url=server.url)
    before = server.request_count
    started = time.perf_counter()
    gemini.write_rows(
        client,
        "gemini-2.5-flash",
        simulator,
        descriptions={"tech": "People who buy gadgets."},
        usage=gemini.Usage(),
        chunk_rows=CHUNK_ROWS,
        concurrency=concurrency,
    )
    took = time.perf_counter() - started
    calls = server.request_count - before
    if calls != CHUNKS:
        raise SystemExit(f"expected {CHUNKS} calls, the server received {calls}")
    return took


def main() -> int:
    # Loopback only: no proxy, no endpoint or Vertex AI override from outside.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    for name in ("GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        os.environ.pop(name, None)
    spec = BUILTIN["tech"].spec
    assert spec is not None
    simulator = Simulator(
        population=[("tech", 1.0)],
        specs={"tech": spec},
        n_users=60,
        n_items=60,
        n_interactions=400,
        seed=5,
    )
    with GeminiServer(latency=LATENCY_S) as server:
        server.set_handler(perfect_model)
        sequential = write(server, simulator, concurrency=1)
        parallel = write(server, simulator, concurrency=8)
    ratio = sequential / parallel
    print(f"rows mode, {CHUNKS} chunks, {LATENCY_S * 1000:.0f} ms per call")
    print(f"  concurrency 1: {sequential:6.2f} s")
    print(f"  concurrency 8: {parallel:6.2f} s")
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(f"  ratio {ratio:.1f}x (target >= {TARGET:g}x): {verdict}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
