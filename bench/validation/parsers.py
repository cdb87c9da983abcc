"""bench/validation/parsers.py: the exact-number parser against main's and plain orjson.

    .venv/bin/python bench/validation/parsers.py            # 100k order records, ~40 MB

One run, one generated NDJSON file of order records, split into the batches
a job reads (``validation.readers``), parsed these ways in this process:

1. ``orjson``: ``parse_batch`` with plain orjson, as jobs parsed before
   integers were kept exact (it turns 2**64 + 1 into a float);
2. ``msgspec, decimals as doubles``: as jobs parsed before decimals were
   kept exact (integers exact, ``1.0000000000000000001`` read as ``1.0``);
3. ``exact``: ``validation.parsing.parse_batch`` as jobs run it now
   (integers and decimals exact, ``project.exactjson``);
4. ``exact, big integers`` / ``long decimals``: the same file with one
   record in 1000 holding an integer beyond 64 bits / a decimal of 20 digits.

Each is timed in CPU seconds, interleaved, best of ``--rounds``; the ratios are to the second (the parser
before exact decimals), in the same run. The job benchmark (``run.py --before main``) measures the whole job.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from collections.abc import Callable
from itertools import repeat
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import orjson  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(VALIDATION_MAX_RECORD_BYTES=16 * 1024 * 1024)  # the splitter reads its limit; nothing else

from bench.validation.dataset import generate  # noqa: E402
from project import exactjson  # noqa: E402
from validation import parsing  # noqa: E402
from validation.formats import LineSplitter  # noqa: E402
from validation.parsing import RawBatch, parse_batch  # noqa: E402

CHUNK = 1 << 20


def batches(data: bytes) -> list[RawBatch]:
    splitter = LineSplitter()
    out = []
    number = 1
    for start in range(0, len(data), CHUNK):
        lines = splitter.feed(data[start : start + CHUNK])
        out.append(RawBatch(list(range(number, number + len(lines))), lines))
        number += len(lines)
    last = splitter.finish()
    if last:
        out.append(RawBatch(list(range(number, number + len(last))), last))
    return out


def best(work: Callable[[], int], rounds: int) -> tuple[float, int]:
    seconds, records = float("inf"), 0
    for _ in range(rounds):
        started = time.process_time()  # CPU seconds: a neighbour's load slows them less than the clock
        records = work()
        seconds = min(seconds, time.process_time() - started)
    return seconds, records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-parsers-") as directory:
        path = Path(directory) / "orders.ndjson"
        generate(path, records=args.records, min_bytes=0, invalid_rate=0.03)
        clean = path.read_bytes()
    lines = clean.splitlines()
    for index in range(0, len(lines), 1000):
        lines[index] = lines[index][:-1] + b', "serial": 18446744073709551617}'
    big = b"\n".join(lines) + b"\n"
    lines = clean.splitlines()
    for index in range(0, len(lines), 1000):
        lines[index] = lines[index][:-1] + b', "rate": 0.10000000000000000001}'
    decimals = b"\n".join(lines) + b"\n"
    clean_batches, big_batches, decimal_batches = batches(clean), batches(big), batches(decimals)

    def before(decode: Callable[[bytes], object], errors: tuple[type[Exception], ...]) -> Callable[[], int]:
        def work() -> int:
            exact_module = parsing.exactjson

            def decode_many(items: list[bytes], surveyed: object = None) -> tuple[list[object], int]:
                # As main parsed a batch: every item, then "{" and "[" counted per item.
                values = list(map(decode, items))
                opens = max(map(bytes.count, items, repeat(b"{")), default=0)
                return values, opens + max(map(bytes.count, items, repeat(b"[")), default=0)

            namespace = types.SimpleNamespace(decode_many=decode_many, DECODE_ERRORS=errors, loads=decode)
            parsing.exactjson = namespace  # type: ignore[assignment]
            try:
                return sum(len(parse_batch("ndjson", raw, limit=64)) for raw in clean_batches)
            finally:
                parsing.exactjson = exact_module

        return work

    def exact(raws: list[RawBatch]) -> Callable[[], int]:
        return lambda: sum(len(parse_batch("ndjson", raw, limit=64)) for raw in raws)

    # Interleaved, best of each: a neighbour's load then slows all three alike.
    works = {
        "orjson": before(orjson.loads, (orjson.JSONDecodeError,)),
        "msgspec, decimals as doubles": before(msgspec.json.Decoder().decode, exactjson.DECODE_ERRORS),
        "exact": exact(clean_batches),
        "exact, 1 in 1000 big integers": exact(big_batches),
        "exact, 1 in 1000 long decimals": exact(decimal_batches),
    }
    times = dict.fromkeys(works, float("inf"))
    records = 0
    for _ in range(args.rounds):
        for label, work in works.items():
            seconds, records = best(work, 1)
            times[label] = min(times[label], seconds)
    base = times["msgspec, decimals as doubles"]
    runs = list(times.items())
    print(f"bench/validation/parsers: {records} records, {len(clean) / 1e6:.1f} MB, best of {args.rounds}")
    for label, seconds in runs:
        print(f"  {label:<32} {records / seconds:>12,.0f} records/s   ratio to doubles {base / seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
