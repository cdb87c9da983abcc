"""bench/guard: what the time-budget guard (validation.guard) costs, against no guard.

    .venv/bin/python bench/guard/run.py              # ~2 minutes
    .venv/bin/python bench/guard/run.py --quick      # ~40 seconds

One run, three measurements, each guarded and unguarded (``*_TIME_LIMIT=0``)
in alternating rounds on the same machine, the best round of each counting:

1. in process: ``Guard.check`` (the kept child, one round trip per call)
   against ``InlineGuard.check`` (the same evaluator in this process), for one
   order and for 50;
2. synchronous validation end to end: ``POST /api/v1/validate`` (one order,
   a registered schema) through a real gunicorn with the guard and another
   without, one keep-alive connection, after a warm-up;
3. a job end to end: the same NDJSON upload run by a real ``rqworker --burst``
   with the guard and without; the clock is the job's own started_at ->
   finished_at (the guard's child starts inside it).

Results go to stdout and bench/out/guard-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 50)

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench.validation.dataset import ORDER_SCHEMA, generate, order  # noqa: E402
from bench.validation.processes import Stack  # noqa: E402
from validation.engine import compile_schema  # noqa: E402
from validation.guard import Guard, InlineGuard  # noqa: E402


def records(count: int) -> list[Any]:
    rng = random.Random(1)
    return [order(rng, n) for n in range(count)]


def in_process(calls: int, rounds: int) -> dict[str, Any]:
    compiled = compile_schema(ORDER_SCHEMA, resolve=lambda uri: None)
    guard, inline = Guard(), InlineGuard()
    one, fifty = records(1), records(50)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for label, batch in (("1 order", one), ("50 orders", fifty)):
            for checker in (guard, inline):
                checker.check(compiled, batch, seconds=2, response_bytes=1 << 20)  # warm: child started, schema loaded
            timings: dict[str, list[float]] = {"guard": [], "none": []}
            for _ in range(rounds):
                for name, checker in (("guard", guard), ("none", inline)):
                    started = time.perf_counter()
                    for _ in range(calls):
                        checker.check(compiled, batch, seconds=2, response_bytes=1 << 20)
                    timings[name].append((time.perf_counter() - started) / calls * 1e6)
            results[label] = timings
    finally:
        guard.close()
    return {
        label: {
            "guard_us": min(t["guard"]),
            "none_us": min(t["none"]),
            "added_us": min(t["guard"]) - min(t["none"]),
            "ratio": min(t["none"]) / min(t["guard"]),
        }
        for label, t in results.items()
    }


def sync_http(stack: Stack, requests: int, rounds: int) -> dict[str, Any]:
    unguarded = stack.web(VALIDATION_SYNC_TIME_LIMIT="0")
    body = orjson.dumps({"schema": "order/1", "instance": records(1)[0]})
    headers = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    clients = {
        "guard": httpx.Client(base_url=stack.base, headers=headers, timeout=30),
        "none": httpx.Client(base_url=unguarded, headers=headers, timeout=30),
    }
    for client in clients.values():
        for _ in range(100):  # warm: both gunicorn workers, their children, the caches
            assert client.post("/api/v1/validate", content=body).status_code == 200
    runs: dict[str, list[dict[str, float]]] = {"guard": [], "none": []}
    for _ in range(rounds):
        for name, client in clients.items():
            latencies = []
            started = time.perf_counter()
            for _ in range(requests):
                sent = time.perf_counter()
                response = client.post("/api/v1/validate", content=body)
                latencies.append(time.perf_counter() - sent)
                if response.status_code != 200 or not response.json()["valid"]:
                    raise RuntimeError(f"unexpected answer: {response.status_code} {response.text[:300]}")
            seconds = time.perf_counter() - started
            runs[name].append({"rps": requests / seconds, "p50_ms": statistics.median(latencies) * 1e3})
    best = {name: max(r, key=lambda run: run["rps"]) for name, r in runs.items()}
    return {
        "guard": best["guard"],
        "none": best["none"],
        "ratio": best["guard"]["rps"] / best["none"]["rps"],
        "added_p50_ms": best["guard"]["p50_ms"] - best["none"]["p50_ms"],
        "rounds": runs,
    }


def stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def job(stack: Stack, path: Path, rounds: int) -> dict[str, Any]:
    client = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {stack.key}"}, timeout=600)
    runs: dict[str, list[dict[str, float]]] = {"guard": [], "none": []}
    for _ in range(rounds):
        for name, limit in (("guard", "2"), ("none", "0")):
            with path.open("rb") as file:
                response = client.post(
                    "/api/v1/jobs?schema=order/1",
                    content=file,
                    headers={"Content-Type": "application/x-ndjson", "Content-Length": str(path.stat().st_size)},
                )
            if response.status_code != 202:
                raise RuntimeError(f"upload refused: {response.status_code} {response.text}")
            burst = stack.spawn(
                [sys.executable, "manage.py", "rqworker", "validation", "--burst"], VALIDATION_RECORD_TIME_LIMIT=limit
            )
            burst.wait(600)
            done = client.get(f"/api/v1/jobs/{response.json()['id']}").json()
            if done["status"] != "succeeded":
                raise RuntimeError(f"the job did not succeed: {done}\n{stack.read_log(len(stack.logs) - 1)[-3000:]}")
            seconds = stamp(done["finished_at"]) - stamp(done["started_at"])
            runs[name].append({"records_per_s": done["progress"]["total"] / seconds, "seconds": seconds})
    best = {name: max(r, key=lambda run: run["records_per_s"]) for name, r in runs.items()}
    return {
        "guard": best["guard"],
        "none": best["none"],
        "ratio": best["guard"]["records_per_s"] / best["none"]["records_per_s"],
        "rounds": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls, requests and records")
    parser.add_argument("--records", type=int, default=0, help="records of the job's file (default 200k, quick 50k)")
    args = parser.parse_args()
    calls, requests, rounds = (300, 300, 2) if args.quick else (2000, 1000, 3)
    count = args.records or (50_000 if args.quick else 200_000)

    load_start = os.getloadavg()
    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-guard-"))
    path = directory / "orders.ndjson"
    generate(path, records=count, min_bytes=0, invalid_rate=0.03)
    print(f"in process: {calls} calls x {rounds} rounds ...", file=sys.stderr)
    local = in_process(calls, rounds)
    with Stack(directory, worker=False) as stack:
        registered = httpx.post(
            f"{stack.base}/api/v1/schemas",
            json={"name": "order", "version": "1", "schema": ORDER_SCHEMA},
            headers={"Authorization": f"Bearer {stack.key}"},
        )
        registered.raise_for_status()
        print(f"sync over HTTP: {requests} requests x {rounds} rounds ...", file=sys.stderr)
        sync = sync_http(stack, requests, rounds)
        print(f"job: {count} records x {rounds} rounds ...", file=sys.stderr)
        batch = job(stack, path, rounds)
    subprocess.run(["rm", "-rf", str(directory)], check=False)
    result = {
        "in_process": local,
        "sync_http": sync,
        "job": batch,
        "records": count,
        "cpus": os.cpu_count(),
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }
    out = ROOT / "bench" / "out" / f"guard-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"raw figures: {out.relative_to(ROOT)}")
    return 0


def report(result: dict[str, Any]) -> str:
    start, end = result["load_average"]["start"][0], result["load_average"]["end"][0]
    lines = [
        f"bench/guard: the time-budget guard against none, best rounds, {result['cpus']} CPUs, "
        f"load average {start:.1f} -> {end:.1f} (other processes compete for the CPUs above ~0)"
    ]
    for label, figures in result["in_process"].items():
        lines.append(
            f"  in process, check of {label:<9}  guard {figures['guard_us']:8.1f} us  none {figures['none_us']:8.1f} us"
            f"  (+{figures['added_us']:.1f} us, ratio none/guard {figures['ratio']:.2f})"
        )
    sync = result["sync_http"]
    lines.append(
        f"  POST /api/v1/validate (1 order)   guard {sync['guard']['rps']:8.0f} req/s  none {sync['none']['rps']:8.0f} req/s"
        f"  ratio {sync['ratio']:.2f}; median +{sync['added_p50_ms']:.3f} ms"
        f" ({sync['guard']['p50_ms']:.2f} vs {sync['none']['p50_ms']:.2f} ms)"
    )
    batch = result["job"]
    lines.append(
        f"  job of {result['records']} records        guard {batch['guard']['records_per_s']:8.0f} rec/s  "
        f"none {batch['none']['records_per_s']:8.0f} rec/s  ratio {batch['ratio']:.2f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
