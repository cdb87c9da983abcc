"""bench/validation: a batch job end to end against the leanest loop.

    .venv/bin/python bench/validation/run.py               # 250k records (~100 MB), ~1 minute
    .venv/bin/python bench/validation/run.py --mb 200      # a >= 200 MB file, for the memory target
    .venv/bin/python bench/validation/run.py --before main # and the job as another git ref runs it

One run, on one generated NDJSON file of order records (a few % invalid):

1. the job, as users run it: a private redis-server (free port), a throwaway
   SQLite database, a real gunicorn and a real ``manage.py rqworker
   validation``; the file is uploaded over HTTP and the clock stops at the
   job's ``finished_at``. The work horse's peak RSS (VmHWM) is sampled from
   /proc while it runs;
2. the leanest loop on the same file, in this process: read line by line,
   ``orjson.loads``, jsonschema-rs ``is_valid``, the errors of the invalid
   ones. Run before and after the job; the faster run counts.

Targets (issue 4): job records/s >= 0.7 x the lean loop's; the horse under
150 MB on a 200 MB file. Results go to stdout and bench/out/validation-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import jsonschema_rs  # noqa: E402  (the baseline is the bare engine)
import orjson  # noqa: E402

from bench.validation.dataset import ORDER_SCHEMA, generate  # noqa: E402
from bench.validation.processes import Stack  # noqa: E402

RATIO_TARGET = 0.7
MEMORY_TARGET_MB = 150


def lean_loop(path: Path) -> dict[str, Any]:
    validator = jsonschema_rs.validator_for(ORDER_SCHEMA, validate_formats=True)
    is_valid, iter_errors, loads = validator.is_valid, validator.iter_errors, orjson.loads
    started, cpu = time.perf_counter(), time.process_time()
    records = invalid = errors = 0
    with path.open("rb") as file:
        for line in file:
            records += 1
            value = loads(line)
            if not is_valid(value):
                invalid += 1
                errors += len(list(iter_errors(value)))
    seconds = time.perf_counter() - started
    return {
        "records": records,
        "invalid": invalid,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "records_per_s": records / seconds,
    }


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_job(stack: Stack, path: Path) -> dict[str, Any]:
    client = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {stack.key}"}, timeout=600)
    if client.get("/api/v1/schemas/order/1").status_code == 404:
        registered = client.post("/api/v1/schemas", json={"name": "order", "version": "1", "schema": ORDER_SCHEMA})
        registered.raise_for_status()
    started = time.time()
    with path.open("rb") as file:
        response = client.post(
            "/api/v1/jobs?schema=order/1",
            content=file,
            headers={"Content-Type": "application/x-ndjson", "Content-Length": str(path.stat().st_size)},
        )
    uploaded = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text}")
    job_id = response.json()["id"]
    # Polling competes with the work horse for the CPUs: /proc is read ten
    # times a second (VmHWM only grows, so the last read before the horse
    # exits is its peak), the API four times. The clock stops at the job's
    # own finished_at, so polling less often does not stretch the result.
    peak_kb = 0
    cpu = (0.0, 0.0)
    horse: int | None = None
    next_poll = 0.0
    while True:
        horse = horse or stack.horse_pid()
        if horse:
            peak_kb = max(peak_kb, stack.peak_kb(horse))
            cpu = max(cpu, stack.tree_cpu_seconds(horse), key=sum)
        if time.monotonic() >= next_poll:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] not in ("queued", "running"):
                break
            next_poll = time.monotonic() + 0.25
        time.sleep(0.1)
    if job["status"] != "succeeded":
        raise RuntimeError(f"the job did not succeed: {job}")
    finished = parse_time(job["finished_at"])
    records = job["progress"]["total"]
    return {
        "records": records,
        "invalid": job["summary"]["invalid"],
        "seconds": finished - started,
        "records_per_s": records / (finished - started),
        "upload_seconds": uploaded - started,
        "queue_seconds": parse_time(job["started_at"]) - uploaded,
        "validate_seconds": finished - parse_time(job["started_at"]),
        "horse_peak_rss_mb": peak_kb / 1024,
        "horse_cpu_seconds": sum(cpu),
        "horse_cpu_user_system": cpu,
        "attempts": job["attempts"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=250_000, help="at least this many records (default 250k)")
    parser.add_argument("--mb", type=float, default=0, help="and at least this many MB (e.g. 200)")
    parser.add_argument("--invalid-rate", type=float, default=0.03, help="share of invalid records (default 0.03)")
    parser.add_argument("--rounds", type=int, default=2, help="lean loop + job rounds; the best of each counts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--before", default="", help="a git ref whose job runs too, alternating (e.g. main)")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-validation-"))
    path = directory / "orders.ndjson"
    print(f"generating {path} ...", file=sys.stderr)
    records, invalid = generate(
        path, records=args.records, min_bytes=int(args.mb * 1024 * 1024), invalid_rate=args.invalid_rate
    )
    size_mb = path.stat().st_size / 1024 / 1024
    print(f"{records} records, {invalid} invalid, {size_mb:.1f} MB", file=sys.stderr)

    # Alternate the two, and keep the best of each: on a shared machine a
    # single run of either can be slowed by a neighbour.
    leans, jobs, befores = [lean_loop(path)], [], []
    with contextlib.ExitStack() as stacks:
        stack = stacks.enter_context(Stack(directory))
        before = (
            stacks.enter_context(Stack(_checkout(args.before, directory), root=_checkout(args.before, directory)))
            if args.before
            else None
        )
        for round_number in range(args.rounds):
            # Which checkout goes first alternates: the first after the lean
            # loop was measured slower, whichever it was.
            if before is not None and round_number % 2:
                befores.append(run_job(before, path))
            jobs.append(run_job(stack, path))
            if before is not None and not round_number % 2:
                befores.append(run_job(before, path))
            leans.append(lean_loop(path))
        worker_log = stack.worker_log()
    lean = max(leans, key=lambda run: run["records_per_s"])
    job = max(jobs, key=lambda run: run["records_per_s"])
    if (job["records"], job["invalid"]) != (lean["records"], lean["invalid"]):
        raise RuntimeError(f"the job and the lean loop disagree: {job} vs {lean}")

    ratio = job["records_per_s"] / lean["records_per_s"]
    before_best = max(befores, key=lambda run: run["records_per_s"]) if befores else None
    # A cross-check that neighbours on a shared machine cannot skew as much:
    # CPU seconds of the lean loop over those of the work horse (which also
    # claims the row, compiles the schema and writes the report).
    lean_cpu = min(run["cpu_seconds"] for run in leans)
    cpu_ratio = lean_cpu / job["horse_cpu_seconds"] if job["horse_cpu_seconds"] else 0.0
    result = {
        "file": {"records": records, "invalid": invalid, "mb": round(size_mb, 1)},
        "lean_loop": lean,
        "job": job,
        "rounds": {
            "lean_loop": [r["records_per_s"] for r in leans],
            "lean_cpu": [r["cpu_seconds"] for r in leans],
            "job": [r["records_per_s"] for r in jobs],
        },
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "before": (
            {
                "ref": args.before,
                "job": before_best,
                "rounds": [r["records_per_s"] for r in befores],
                "ratio": job["records_per_s"] / before_best["records_per_s"],
            }
            if before_best
            else None
        ),
        "targets": {
            "ratio": {"target": RATIO_TARGET, "met": ratio >= RATIO_TARGET},
            "horse_peak_rss_mb": {
                "target": MEMORY_TARGET_MB,
                "met": job["horse_peak_rss_mb"] < MEMORY_TARGET_MB,
                "applies": size_mb >= 200,
            },
        },
        "engine": jsonschema_rs.__name__ + " " + _version("jsonschema-rs"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "out" / f"validation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"raw figures: {out.relative_to(ROOT)}")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(directory)], check=False)
    else:
        print(f"kept {directory}; the worker logged:\n{worker_log[-4000:]}", file=sys.stderr)
    return 0


def _checkout(ref: str, directory: Path) -> Path:
    """``ref`` of this repository, exported once into ``directory`` (read only)."""
    target = directory / f"checkout-{ref.replace('/', '_')}"
    if not target.exists():
        target.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def report(result: dict[str, Any]) -> str:
    lean, job, file = result["lean_loop"], result["job"], result["file"]
    memory = result["targets"]["horse_peak_rss_mb"]
    memory_note = "met" if memory["met"] else "NOT met"
    if not memory["applies"]:
        memory_note += " (the target is for a >= 200 MB file: run with --mb 200)"
    rounds = ", ".join(f"{rate:,.0f}" for rate in result["rounds"]["job"])
    return "\n".join(
        [
            f"bench/validation: {file['records']} records ({file['invalid']} invalid), {file['mb']} MB NDJSON, "
            f"{result['engine']}, Python {result['python']}, {result['cpus']} CPUs",
            f"  lean loop (orjson + is_valid + errors) {lean['records_per_s']:>10,.0f} records/s  ({lean['seconds']:.2f} s; "
            f"best of {len(result['rounds']['lean_loop'])})",
            f"  job end to end (upload -> done)        {job['records_per_s']:>10,.0f} records/s  ({job['seconds']:.2f} s: "
            f"upload {job['upload_seconds']:.2f} s, queue {job['queue_seconds']:.2f} s, "
            f"validate {job['validate_seconds']:.2f} s; horse + guard child CPU >= {job['horse_cpu_user_system'][0]:.2f} s user "
            f"+ {job['horse_cpu_user_system'][1]:.2f} s system)",
            f"  job rounds (records/s)                 {rounds}",
            f"  ratio job / lean                       {result['ratio']:>10.2f}       (target >= {RATIO_TARGET}: "
            f"{'met' if result['targets']['ratio']['met'] else 'NOT met'})",
            f"  CPU: lean {min(result['rounds']['lean_cpu']):.2f} s, horse + child >= {job['horse_cpu_seconds']:.2f} s, "
            f"ratio {result['cpu_ratio']:.2f} (information: insensitive to neighbours' load)",
            *(
                [
                    f"  job as {result['before']['ref']} runs it            {result['before']['job']['records_per_s']:>10,.0f} records/s  "
                    f"(rounds {', '.join(f'{r:,.0f}' for r in result['before']['rounds'])}); "
                    f"this checkout / {result['before']['ref']}: {result['before']['ratio']:.2f}"
                ]
                if result["before"]
                else []
            ),
            f"  work horse peak RSS                    {job['horse_peak_rss_mb']:>10.1f} MB    "
            f"(target < {MEMORY_TARGET_MB} MB: {memory_note})",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
