"""What each variant is limited to, in one place (plain data, no Django).

Tollgate's limits are plans created with ``set_plan`` (``seed.py``); the
peers' are read from the bench settings (``BENCH_PEER_LIMITS``).
"""

# The throughput plan has the shape of the demo plan (two rate limits, two
# quotas: four limits checked and reported in the headers) with counts no
# benchmark reaches, so every request of the throughput phase is admitted.
THROUGHPUT_PLAN = [
    "--rate",
    "100000/s",
    "--rate",
    "10000000/m",
    "--quota",
    "1000000000/day",
    "--quota",
    "1000000000/month",
]
# The exactness phase's limit: 100 requests per hour per key, nothing else.
BURST_PLAN = ["--rate", "100/h", "--no-quota"]
# The many-keys load: this many keys in rotation, spread over this many
# accounts (on the throughput plan), so that no key is hot: each is seen a
# few times per second across all workers, and leases rarely help.
MANY_KEYS, MANY_ACCOUNTS = 1000, 20

# The peers' two limits, as (count, period in seconds), per API key:
# - "ping": high enough that the throughput phase admits everything. Per
#   second because DRF keeps one timestamp per admitted request for the whole
#   period: a per-hour limit would grow its history to every request of the
#   run and measure that instead of the throttle.
# - "burst": the exactness phase's limit, the same as Tollgate's.
PEER_LIMITS = {"ping": (1_000_000, 1), "burst": (100, 3600)}


def describe(limit: tuple[int, int]) -> str:
    count, period = limit
    return f"{count}/{ {1: 's', 60: 'm', 3600: 'h', 86400: 'd'}.get(period, f'{period}s') }"
