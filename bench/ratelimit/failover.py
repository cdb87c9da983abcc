"""bench/ratelimit/failover.py: what a Sentinel failover costs in exactness.

    .venv/bin/python bench/ratelimit/failover.py     # about 40 seconds

For each scenario it starts a master, a replica and three Sentinels
(``tests.redis_topology``), a gunicorn through the Sentinels (leases off), and
six clients in a closed loop on one fresh key limited to 100 per hour; then it
SIGKILLs the master and counts, once the new master refuses the key, how many
requests were admitted beyond the 100:

- ``kill``: the master dies under steady traffic (replication lags by
  microseconds on loopback);
- ``lag``: the replication link is cut 1.5 s before the master dies (the
  master drops its replica, which cannot authenticate again), so the
  master's last 1.5 s of writes never reach the replica that is promoted (a
  SIGSTOPped replica would not do: its kernel keeps receiving the stream);
- ``lag+min-replicas``: the same, with ``min-replicas-to-write 1`` and
  ``min-replicas-max-lag 1`` on the master, which refuses writes while no
  replica has acknowledged within a second.

It also measures, on a master and replica, what ``WAIT 1`` after each script
call costs: the latency of one call with and without it, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.ratelimit.stack import base_env, seed_database  # noqa: E402
from tests.processes import gunicorn_command, manage, stop, wait_for_http  # noqa: E402
from tests.redis_server import free_port  # noqa: E402
from tests.redis_topology import SentinelTopology  # noqa: E402

LIMIT = 400  # per hour, per key (the plan bench-failover)
THREADS = 6
PACE = 1 / 25  # seconds between one client's requests: about 150 a second in all
LAG = 1.5  # seconds between the cut of the replication link and the kill


@dataclass(frozen=True, slots=True)
class Sample:
    started: float
    ended: float
    status: int


@dataclass
class Outcome:
    scenario: str
    admitted: int
    over: int
    admitted_in_pause: int
    refused: int
    window: float
    recovered_after_promotion: float
    longest: float


def drive(base: str, key: str, stop_event: threading.Event, samples: list[Sample]) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        while not stop_event.is_set():
            started = time.monotonic()
            status = client.get("/api/v1/ping").status_code
            samples.append(Sample(started, time.monotonic(), status))
            time.sleep(max(0.0, started + PACE - time.monotonic()))


def until(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def scenario(name: str, env: dict[str, str], directory: Path) -> Outcome:
    topology = SentinelTopology(password="bench-failover-pw").start()
    log = (directory / f"gunicorn-{name}.log").open("w+")
    process = None
    try:
        if name == "lag+min-replicas":
            topology.master.client().config_set("min-replicas-to-write", 1)
            topology.master.client().config_set("min-replicas-max-lag", 1)
        manage("create_account", f"bench-failover-{name}", "--plan", "bench-failover", env=env)
        created = manage("create_api_key", f"bench-failover-{name}", "--json", env=env)
        key = json.loads(created.stdout.splitlines()[-1])["key"]
        server_env = {
            **env,
            "REDIS_PASSWORD": topology.password or "",
            "REDIS_SENTINELS": topology.nodes,
            "REDIS_SENTINEL_MASTER": topology.master_name,
            "RATELIMIT_LEASES": "false",
        }
        port = free_port()
        process = subprocess.Popen(
            gunicorn_command(port, 2), cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health/live", process)
        samples: list[Sample] = []
        stop_event = threading.Event()
        threads = [threading.Thread(target=drive, args=(base, key, stop_event, samples)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        admitted = lambda: sum(s.status == 200 for s in samples)  # noqa: E731
        paused_at = None
        try:
            until(lambda: admitted() >= LIMIT // 4, 30)
            if name.startswith("lag"):
                # The replica can no longer authenticate, and the master drops it.
                topology.replica.client().config_set("masterauth", "not-the-password")
                topology.master.client().client_kill_filter(_type="replica")
                paused_at = time.monotonic()
                before_pause = admitted()
                time.sleep(LAG)
            killed = time.monotonic()
            old = topology.master.port
            topology.master.kill()
            in_pause = admitted() - before_pause if paused_at is not None else 0
            promoted = topology.wait_for_promotion(old, timeout=30)
            until(lambda: sum(s.status == 429 and s.started > promoted for s in samples) >= 20, 30)
        finally:
            stop_event.set()
            for thread in threads:
                thread.join()
        refused = [s for s in samples if s.status == 503]
        window = (refused[-1].ended - min(s.started for s in refused)) if refused else 0.0
        first = min((s.ended for s in samples if s.status == 200 and s.started > promoted), default=float("nan"))
        total = admitted()
        del killed
        return Outcome(
            name,
            total,
            total - LIMIT,
            in_pause,
            len(refused),
            window,
            first - promoted,
            max(s.ended - s.started for s in samples),
        )
    finally:
        if process is not None:
            stop(process)
        log.close()
        topology.stop()


def wait_cost(calls: int) -> tuple[float, float]:
    """Median latency (ms) of one script call, without and with ``WAIT 1``
    in the same round trip, on a loopback master and replica."""
    topology = SentinelTopology().start()
    try:
        client = topology.master.client()
        sha = client.script_load("return redis.call('HINCRBY', KEYS[1], 'n', 1)")
        results = []
        for with_wait in (False, True, False, True):
            latencies = []
            for _ in range(calls):
                pipe = client.pipeline(transaction=False)
                pipe.evalsha(sha, 1, "tg:{a1}")
                if with_wait:
                    pipe.execute_command("WAIT", 1, 1000)
                started = time.perf_counter()
                pipe.execute()
                latencies.append(time.perf_counter() - started)
            results.append(statistics.median(latencies) * 1000)
        return min(results[0], results[2]), min(results[1], results[3])
    finally:
        topology.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="script calls per WAIT measurement (2000)")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-failover-"))
    try:
        env = base_env(directory)
        seed_database(env, many=1, accounts=1)
        manage("set_plan", "bench-failover", "--rate", f"{LIMIT}/h", "--no-quota", env=env)
        outcomes = []
        for name in ("kill", "lag", "lag+min-replicas"):
            outcomes.append(scenario(name, env, directory))
            print(f"{name}: {outcomes[-1]}", file=sys.stderr, flush=True)
        without, with_wait = wait_cost(args.calls)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"\n## A Sentinel failover under traffic: admitted beyond a limit of {LIMIT}\n")
    print(
        f"{'scenario':18} {'admitted':>8} {'over':>5} {'in lag':>7} {'503s':>6} "
        f"{'503 window':>10} {'back after promotion':>20} {'longest':>8}"
    )
    for o in outcomes:
        print(
            f"{o.scenario:18} {o.admitted:8d} {o.over:5d} {o.admitted_in_pause:7d} {o.refused:6d} "
            f"{o.window:9.2f}s {o.recovered_after_promotion:19.2f}s {o.longest:7.2f}s"
        )
    print(
        f"\nWAIT 1 after each call (loopback master + replica): {without:.3f} ms -> {with_wait:.3f} ms "
        f"per call ({with_wait / without:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
