"""bench/ratelimit/cluster.py: Tollgate's counters on a Redis Cluster of three
masters against the same counters on one Redis, in one run.

    .venv/bin/python bench/ratelimit/cluster.py            # about 1 minute
    .venv/bin/python bench/ratelimit/cluster.py --quick    # about 30 seconds

Starts a single redis-server, a 3-master Cluster (``tests.redis_topology``)
and, for the Cluster's queue role, one more redis-server; seeds a throwaway
SQLite database with many accounts (their hashes spread over the slots, so
over the three masters); serves each Redis from its own gunicorn, with leases
off (every request is one EVALSHA: what a Cluster changes) and on; then sends
the many keys in rotation to each variant in interleaved rounds. It reports
each variant's throughput as a ratio to the single Redis without leases, and
how the EVALSHAs and the Redis CPU spread over the masters. Everything it
started is stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.ratelimit import load  # noqa: E402
from bench.ratelimit.stack import TOLLGATE_SETTINGS, Server, Variant, base_env, seed_database  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.redis_topology import ClusterTopology  # noqa: E402

PING = "/api/v1/ping"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (default 4 rounds of 3 s)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--accounts", type=int, help="accounts of the many keys (200, quick 100)")
    parser.add_argument("--keys", type=int, help="keys in rotation (600, quick 300)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers per variant (4)")
    parser.add_argument("--connections", type=int, default=8, help="load connections (8)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.seconds = args.seconds or (2 if args.quick else 3)
    args.accounts = args.accounts or (100 if args.quick else 200)
    args.keys = args.keys or (300 if args.quick else 600)
    return args


def say(message: str, started: float = time.monotonic()) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {message}", file=sys.stderr, flush=True)


def redis_stats(client: redis.Redis) -> tuple[int, float]:
    """EVALSHA calls and CPU seconds (user + system) of one server so far."""
    calls = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    cpu = client.info("cpu")
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _warnings(log: Path) -> dict[str, int]:
    """What the variant's gunicorn warned about (why a request got a 503)."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line:
            message = line.split(": ", 1)[-1][:80]
            counts[message] = counts.get(message, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = load.find_wrk(install=not args.no_install)
    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-cluster-"))
    env = base_env(directory)
    single, queue = RedisServer(), RedisServer()
    cluster = ClusterTopology()
    servers: list[Server] = []
    try:
        single.start()
        queue.start()
        cluster.start()
        on_cluster = (("REDIS_URL", ""), ("REDIS_CLUSTER_NODES", cluster.nodes), ("QUEUE_REDIS_URL", queue.url))
        no_lease = (("RATELIMIT_LEASES", "false"),)
        variants = [
            (Variant("single", TOLLGATE_SETTINGS, PING, PING, no_lease), single),
            (Variant("cluster", TOLLGATE_SETTINGS, PING, PING, no_lease + on_cluster), queue),
            (Variant("single+leases", TOLLGATE_SETTINGS, PING, PING), single),
            (Variant("cluster+leases", TOLLGATE_SETTINGS, PING, PING, on_cluster), queue),
        ]
        say(f"seeding {args.keys} keys of {args.accounts} accounts; starting {len(variants)} gunicorns")
        for variant, server_redis in variants:
            server = Server(variant, server_redis, free_port(), directory / f"gunicorn-{variant.name}.log")
            server.start(env, args.workers)
            servers.append(server)
        keys = [str(key) for key in seed_database(env, args.keys, args.accounts)["many_keys"]]  # type: ignore[attr-defined]
        keys_file = directory / "keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        for server in servers:
            server.wait_ready()
            # Every worker loads each key's record first, as a running service has.
            load.exact(server.port, PING, keys, total=4 * len(keys), concurrency=8)
        say(f"ready; {args.rounds} interleaved rounds of {args.seconds} s, {'wrk' if wrk else 'Python load'}")

        nodes = {f"node {n + 1}": s.client() for n, s in enumerate(cluster.servers)}
        before = {name: redis_stats(client) for name, client in {"single": single.client(), **nodes}.items()}
        rps: dict[str, list[float]] = {variant.name: [] for variant, _ in variants}
        requests: dict[str, int] = dict.fromkeys(rps, 0)
        failed: dict[str, int] = dict.fromkeys(rps, 0)
        for round_index in range(args.rounds):
            order = servers[round_index % len(servers) :] + servers[: round_index % len(servers)]
            for server in order:
                if wrk:
                    result = load.run_wrk(
                        wrk,
                        server.port,
                        PING,
                        keys,
                        connections=args.connections,
                        seconds=args.seconds,
                        keys_file=keys_file,
                    )
                else:
                    result = load.closed_loop(
                        server.port, PING, keys, connections=args.connections, seconds=args.seconds
                    )
                # A failure is a 503 (Redis slower than the 0.25 s timeouts on a
                # loaded machine): counted and reported, never hidden.
                failed[server.variant.name] += result.failed + result.socket_errors
                rps[server.variant.name].append(result.rps)
                requests[server.variant.name] += result.requests
                say(f"round {round_index + 1} {server.variant.name}: {result.rps:.0f} req/s")
        after = {name: redis_stats(client) for name, client in {"single": single.client(), **nodes}.items()}
        # The statuses of one more pass over the keys, counted one by one.
        statuses = {
            s.variant.name: dict(load.exact(s.port, PING, keys, total=len(keys), concurrency=8)) for s in servers
        }
        warnings = {server.variant.name: _warnings(server.log_path) for server in servers}
    except Exception:
        for server in servers:
            print(f"--- gunicorn log of {server.variant.name} ---\n{server.log_tail(15)}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.process and server.process.poll() is None and server.process.terminate()
            if server.process is not None:
                server.process.wait(15)
        for process in (single, queue):
            process.stop()
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)

    base = statistics.median(rps["single"])
    print(f"\n## Counters on a 3-master Redis Cluster vs one Redis ({args.keys} keys of {args.accounts} accounts)\n")
    print(f"{'variant':16} {'median req/s':>12} {'ratio to single':>16} {'failed':>8} {'of':>8}")
    for name, values in rps.items():
        median = statistics.median(values)
        print(f"{name:16} {median:12.0f} {median / base:16.2f} {failed[name]:8d} {requests[name]:8d}")
    calls = {name: after[name][0] - before[name][0] for name in after}
    cpu = {name: after[name][1] - before[name][1] for name in after}
    cluster_calls = sum(calls[name] for name in nodes)
    print("\nEVALSHA per master (both cluster variants) and Redis CPU per EVALSHA:")
    for name in ("single", *nodes):
        share = f"{calls[name] / cluster_calls:6.1%} of the cluster's" if name in nodes else " " * 21
        per_call = cpu[name] / calls[name] * 1e6 if calls[name] else 0.0
        print(f"  {name:8} {calls[name]:8d} calls {share}  {per_call:6.1f} us CPU per call")
    for name, counted in statuses.items():
        print(f"  {name}: statuses of {len(keys)} more requests {counted}")
    for name, counts in warnings.items():
        for message, count in sorted(counts.items(), key=lambda item: -item[1])[:3]:
            print(f"  {name} warned {count}x: {message}")
    print(f"\n(load: {'wrk' if wrk else 'Python closed loop on the same cores'}, {args.connections} connections)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
