"""bench/ratelimit: Tollgate's enforcement against no enforcement and three peers.

    .venv/bin/python bench/ratelimit/run.py            # under 3 minutes
    .venv/bin/python bench/ratelimit/run.py --quick    # about 40 seconds

Starts everything it measures (private redis-servers, a throwaway SQLite
database, one gunicorn per variant) and stops it all at the end. The report
goes to stdout, progress to stderr, the raw figures to bench/out/ as JSON.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(ROOT))

from bench.ratelimit import load, plans, report  # noqa: E402
from bench.ratelimit.phases import WARM_REQUESTS, Load, Phases  # noqa: E402
from bench.ratelimit.redis_stats import Probe, counting_check  # noqa: E402
from bench.ratelimit.results import BASELINE, HOT, MANY, LoadRun, Run, VariantRun  # noqa: E402
from bench.ratelimit.stack import VARIANTS, Stack, before  # noqa: E402

# (default, --quick): chosen so that a default run takes under 3 minutes and a
# quick one about 40 seconds on the 2-core machine, setup included. Many short
# rounds beat a few long ones on a shared machine: a neighbour's burst spoils
# one round, and the median over rounds drops it.
PROFILES = {
    "rounds": (5, 1),
    "seconds": (3, 2),  # wrk takes whole seconds
    "single_seconds": (1, 1),
    "requests": (1000, 300),
    "burst": (1000, 500),
    "sample": (50, 20),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, shorter runs (about 40 s)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of timed runs (default 5, quick 1)")
    parser.add_argument("--seconds", type=int, help="length of each loaded timed run (default 3, quick 2)")
    parser.add_argument("--single-seconds", type=int, help="length of each 1-connection run (default 1)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections in the loaded runs (8)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers per variant (4)")
    parser.add_argument("--requests", type=int, help="requests per Redis-counting phase (default 1000, quick 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrency of the counting phases (8)")
    parser.add_argument("--burst", type=int, help="concurrent requests of the exactness burst (default 1000)")
    parser.add_argument(
        "--sample", type=int, help="requests recorded with MONITOR per variant and phase (50, quick 20)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(v.name for v in VARIANTS),
        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS),
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk; fall back to Python")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even with wrk")
    parser.add_argument("--json", type=Path, help="where to write the raw figures (default bench/out/...)")
    parser.add_argument(
        "--before",
        type=Path,
        help="also serve Tollgate from this checkout (e.g. a worktree of an older commit), as tollgate-before",
    )
    args = parser.parse_args(argv)
    for name, (default, quick) in PROFILES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = set(names) - {v.name for v in VARIANTS}
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if BASELINE not in names:
        names.insert(0, BASELINE)  # every ratio is to it
    args.variants = tuple(v for v in VARIANTS if v.name in names)
    if args.before is not None:
        if not (args.before / "manage.py").is_file():
            parser.error(f"--before {args.before}: not a checkout of the project")
        args.variants += (before(args.before),)
    if args.burst < 500 and not args.quick:
        print("note: the exactness target is stated for bursts of at least 500", file=sys.stderr)
    return args


class Progress:
    """Prints progress lines to stderr, with the seconds since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {message}", file=sys.stderr, flush=True)


def measure(args: argparse.Namespace, stack: Stack, phases: Phases, say: Progress) -> dict[str, LoadRun]:
    servers = {server.variant.name: server for server in stack.servers}
    probes = {name: Probe(server.redis.client()) for name, server in servers.items()}
    loads = {
        HOT: Load(HOT, [str(stack.keys["throughput_key"])]),
        MANY: Load(MANY, stack.many_keys, stack.keys_file),
    }
    runs = {name: LoadRun(name, {variant: VariantRun(variant) for variant in servers}) for name in loads}
    burst_key = Load("burst", [str(stack.keys["burst_key"])])

    # The counters must be quiet when nobody sends anything, and must count
    # round trips as claimed; both are checked before any measurement.
    for probe in probes.values():
        probe.calibrate()
        probe.reset()
    time.sleep(0.5)
    for name, probe in probes.items():
        idle = probe.read()
        if idle.reads or idle.commands:
            raise RuntimeError(f"{name}'s Redis is not idle without traffic: {idle}")
    first = next(iter(servers.values()))
    for line in counting_check(first.redis.client(), probes[first.variant.name]):
        say(f"counting check: {line}")

    # Every worker loads each key's record on first sight: do that for the
    # many keys before anything is measured, as a running service has.
    for name, server in servers.items():
        if server.variant.burst_path == server.variant.ping_path:  # Tollgate
            many = loads[MANY]
            load.exact(server.port, server.variant.ping_path, many.keys, total=12 * len(many.keys), concurrency=8)
            say(f"{name}: key records of the {len(many.keys)} keys loaded in every worker")

    for load_name, keys in loads.items():
        for name, server in servers.items():
            admitted = phases.account(server, probes[name], server.variant.ping_path, keys, args.requests)
            runs[load_name].variants[name].admitted = admitted
            say(
                f"{name}, {load_name}: {args.requests} admitted requests -> {admitted.counts.reads} Redis reads, "
                f"{admitted.counts.commands} commands"
            )

    # Interleaved: every round visits every load and variant, in an order
    # rotated from round to round, so that none is always first or last.
    order = [(load_name, name) for load_name in loads for name in servers]
    for round_index in range(args.rounds):
        shift = (round_index * len(order)) // max(args.rounds, 1)
        for load_name, name in order[shift:] + order[:shift]:
            server, keys, run = servers[name], loads[load_name], runs[load_name].variants[name]
            path = server.variant.ping_path
            loaded = phases.timed(server, probes[name], path, keys, connections=args.connections, seconds=args.seconds)
            run.loaded.append(loaded)
            line = f"round {round_index + 1}/{args.rounds} {name}, {load_name}: {loaded.load.rps:.0f} req/s"
            if load_name == HOT:
                single = phases.timed(server, probes[name], path, keys, connections=1, seconds=args.single_seconds)
                run.single.append(single)
                line += f"; 1 connection p50 {single.load.p50_ms:.2f} ms"
            say(line)

    hot = runs[HOT].variants
    for name, server in servers.items():
        if server.variant.burst_path is None:
            continue
        burst = phases.exactness(server, server.variant.burst_path, burst_key.keys[0], args.burst)
        hot[name].exactness = burst
        say(f"{name}: burst of {args.burst} -> {burst.statuses}")
        rejected = phases.account(server, probes[name], server.variant.burst_path, burst_key, args.requests)
        hot[name].rejected = rejected
        say(f"{name}: {args.requests} rejected requests -> {rejected.statuses}")

    for name, server in servers.items():
        hot[name].samples["admitted"] = phases.sample(server, server.variant.ping_path, loads[HOT], args.sample)
        if server.variant.burst_path is not None:
            hot[name].samples["rejected"] = phases.sample(server, server.variant.burst_path, burst_key, args.sample)
    return runs


def run_settings(args: argparse.Namespace, wrk: str | None) -> dict[str, object]:
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    generator = "Python asyncio closed loop (fallback: shares the 2 cores, absolute numbers low)"
    if wrk:
        version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]
        generator = f"{version}, 1 thread"
    return {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "variants": ", ".join(v.name for v in args.variants),
        "redis": next((w for w in redis_version if w.startswith("v=")), "?").removeprefix("v="),
        "generator": generator,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "single_seconds": args.single_seconds,
        "connections": args.connections,
        "workers": args.workers,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "warm_requests": WARM_REQUESTS,
        "burst": args.burst,
        "sample": args.sample,
        "tollgate_plan": "bench-throughput (" + " ".join(plans.THROUGHPUT_PLAN).replace("--", "") + ")",
        "many": f"{plans.MANY_KEYS} keys of {plans.MANY_ACCOUNTS} accounts in rotation",
        "peer_limit": plans.describe(plans.PEER_LIMITS["ping"]),
    }


def write_json(path: Path, run: Run) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "settings": run.settings,
        "loads": {
            load: {name: dataclasses.asdict(variant) for name, variant in load_run.variants.items()}
            for load, load_run in run.loads.items()
        },
    }
    path.write_text(json.dumps(data, indent=1, default=str))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through Stack.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    say = Progress()
    wrk = None if args.python_load else load.find_wrk(install=not args.no_install)
    if wrk is None:
        say("wrk unavailable: using the Python load generator (see bench/README.md for its caveats)")
    settings = run_settings(args, wrk)
    stack = Stack(args.variants, args.workers)
    try:
        say(f"starting {len(args.variants)} private redis-servers and gunicorns ({args.workers} workers each)")
        stack.open()
        say("ready; counting checks")
        runs = measure(args, stack, Phases(wrk, args.concurrency), say)
    except Exception:
        for server in stack.servers:
            tail = server.log_tail(10)
            if tail:
                print(f"--- gunicorn log of {server.variant.name} (last lines) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        stack.close()
    run = Run(runs, settings)
    out = args.json or ROOT / "bench" / "out" / f"ratelimit-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    write_json(out, run)
    print(report.render(run))
    say(f"done; raw figures in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
