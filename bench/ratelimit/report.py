"""The printed report: one table, the targets of issue 3, what each request
sends to Redis, and the conditions of the run."""

from __future__ import annotations

import math
from collections.abc import Mapping

from bench.ratelimit.results import BASELINE, Run, VariantRun, median

TOLLGATE = "tollgate"
TARGET_RATIO = 0.90
TARGET_ADDED_P50_MS = 0.5
# Throughput ratio and CPU ratio further apart than this mean the run was
# disturbed (they agree within about 0.1 on a quiet machine).
DISAGREEMENT = 0.15


def _num(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _exactness_cell(run: VariantRun) -> str:
    burst = run.exactness
    if burst is None:
        return "-"
    others = {status: n for status, n in burst.statuses.items() if status not in (200, 429)}
    cell = f"{burst.admitted}/{burst.requests}"
    if others:
        cell += " (" + ", ".join(f"{n}x{status or 'no answer'}" for status, n in sorted(others.items())) + ")"
    return cell


# Columns: (header, right-aligned?), in groups printed with a title above.
_GROUPS: list[tuple[str, list[str]]] = [
    ("", ["variant"]),
    ("throughput, {c} connections", ["req/s", "ratio", "p50", "p99", "+p50"]),
    ("1 connection", ["p50", "p99", "+p50"]),
    ("CPU us/request", ["app", "redis", "ratio"]),
    ("Redis round trips / commands / EVALSHA per request", ["RT adm", "rej", "cmd adm", "rej", "EVAL adm", "rej"]),
    ("burst", ["admitted"]),
]


def _row(run: Run, name: str) -> list[str]:
    variant = run.variants[name]
    adm, rej = variant.admitted, variant.rejected
    base = name == BASELINE
    return [
        name,
        _num(run.rps(name), 0),
        _num(median(run.ratios(name)), 3),
        _num(run.percentile(name, "loaded", "p50_ms")),
        _num(run.percentile(name, "loaded", "p99_ms")),
        "-" if base else _num(run.added_p50(name, "loaded"), 2, sign=True),
        _num(run.percentile(name, "single", "p50_ms")),
        _num(run.percentile(name, "single", "p99_ms")),
        "-" if base else _num(run.added_p50(name, "single"), 2, sign=True),
        _num(run.cpu_us(name, "app"), 0),
        _num(run.cpu_us(name, "redis"), 0),
        _num(median(run.cpu_ratios(name)), 3),
        _num(adm.round_trips if adm else None, 3),
        _num(rej.round_trips if rej else None, 3),
        _num(adm.commands if adm else None, 3),
        _num(rej.commands if rej else None, 3),
        _num(adm.evalsha if adm else None, 3),
        _num(rej.evalsha if rej else None, 3),
        _exactness_cell(variant),
    ]


def table(run: Run) -> list[str]:
    headers = [h for _, columns in _GROUPS for h in columns]
    rows = [_row(run, name) for name in run.variants]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def render(cells: list[str]) -> str:
        parts, index = [], 0
        for _, columns in _GROUPS:
            group = []
            for cell in cells[index : index + len(columns)]:
                group.append(cell.ljust(widths[index]) if index == 0 else cell.rjust(widths[index]))
                index += 1
            parts.append("  ".join(group))
        return " | ".join(parts)

    titles, index = [], 0
    for title, columns in _GROUPS:
        span = sum(widths[index : index + len(columns)]) + 2 * (len(columns) - 1)
        titles.append(title.format(c=run.settings["connections"])[:span].center(span))
        index += len(columns)
    names = render(headers)
    return [" | ".join(titles).rstrip(), names, "-" * len(names), *(render(r) for r in rows)]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(run: Run) -> list[str]:
    if TOLLGATE not in run.variants or BASELINE not in run.variants:
        return []
    tg = run.variants[TOLLGATE]
    ratios = run.ratios(TOLLGATE)
    ratio = median(ratios)
    added_single = run.added_p50(TOLLGATE, "single")
    added_loaded = run.added_p50(TOLLGATE, "loaded")
    lines = ["Tollgate against the targets of issue 3:"]
    lines.append(
        f"  throughput >= {TARGET_RATIO:.2f} of unmetered   {ratio:.3f} "
        f"(per round: {' '.join(f'{r:.3f}' for r in ratios)})   {_verdict(ratio >= TARGET_RATIO)}"
    )
    cpu_ratio = median(run.cpu_ratios(TOLLGATE))
    lines.append(
        f"    the same from CPU per request (app + Redis)  {cpu_ratio:.3f}   "
        f"{_verdict(cpu_ratio >= TARGET_RATIO)} (less sensitive to other load on the machine)"
    )
    if abs(ratio - cpu_ratio) > DISAGREEMENT:
        lines.append(
            f"    (the two differ by more than {DISAGREEMENT}: other load on the machine disturbed the timed "
            "runs; rerun, with more --rounds, or trust the CPU ratio)"
        )
    if str(run.settings["generator"]).startswith("Python"):
        lines.append(
            "    (the Python load generator cannot saturate the server: its throughput ratio flatters every "
            "variant; trust the CPU ratio)"
        )
    lines.append(
        f"  added p50 < {TARGET_ADDED_P50_MS} ms, 1 connection  {added_single:+.3f} ms   "
        f"{_verdict(added_single < TARGET_ADDED_P50_MS)}"
    )
    lines.append(
        f"  added p50 < {TARGET_ADDED_P50_MS} ms, {run.settings['connections']} connections {added_loaded:+.3f} ms   "
        f"{_verdict(added_loaded < TARGET_ADDED_P50_MS)} (includes queueing: ~connections x the per-request cost)"
    )
    for label, accounting in (("admitted", tg.admitted), ("rejected", tg.rejected)):
        if accounting is None:
            continue
        sample = tg.samples.get(label)
        sent_only_evalsha = (
            sample is not None and set(sample[0].sent) == {"EVALSHA"} and (sample[0].sent["EVALSHA"] == sample[1])
        )
        ok = (
            accounting.counts.reads == accounting.requests
            and accounting.counts.calls.get("EVALSHA", 0) == accounting.requests
            and sent_only_evalsha
        )
        lines.append(
            f"  one round trip, one EVALSHA, nothing else sent ({label}): {accounting.counts.reads} reads and "
            f"{accounting.counts.calls.get('EVALSHA', 0)} EVALSHA for {accounting.requests} requests; "
            f"sent per MONITOR: {_mix(sample[0].sent, sample[1]) if sample else '-'}   {_verdict(ok)}"
        )
    if tg.exactness is not None:
        burst = tg.exactness
        ok = burst.admitted == burst.gcra_allowance
        lines.append(
            f"  exactness: {burst.admitted} of {burst.requests} concurrent admitted in {burst.seconds:.2f} s "
            f"(GCRA allows {burst.gcra_allowance})   {_verdict(ok)}"
        )
    return lines


def _mix(counter: Mapping[str, int], requests: int) -> str:
    if not counter:
        return "nothing"
    parts = []
    for name, n in sorted(counter.items(), key=lambda item: (-item[1], item[0])):
        per = n / requests
        parts.append(f"{name} x{per:.0f}" if per == int(per) else f"{name} x{per:.2f}")
    return " ".join(parts)


def command_mix(run: Run) -> list[str]:
    lines = ["What one request asks of Redis (MONITOR sample; [commands run inside scripts]):"]
    width = max(len(name) for name in run.variants)
    for name, variant in run.variants.items():
        cells = []
        for label in ("admitted", "rejected"):
            if label not in variant.samples:
                continue
            sample, total = variant.samples[label]
            scripted = f" [{_mix(sample.scripted, total)}]" if sample.scripted else ""
            cells.append(f"{label}: {_mix(sample.sent, total)}{scripted}")
        if cells:
            lines.append(f"  {name.ljust(width)}  " + "   ".join(cells))
    return lines


def cross_check(run: Run) -> list[str]:
    lines = []
    for name in run.variants:
        problems = run.rejected_under_load(name)
        if problems:
            lines.append(f"  ! {name}: {problems} responses >= 400 or socket errors during the throughput runs")
    parts = [f"{name} {run.loaded_round_trips(name):.3f}" for name in run.variants if name != BASELINE]
    lines.append(
        "  Cross-check, Redis reads per wrk-counted request under load (up to connections/N high,"
        " since wrk does not count requests in flight at its stop): " + ", ".join(parts)
    )
    return lines


def _busy(settings: dict[str, object]) -> bool:
    one_minute = float(str(settings["loadavg"]).split()[0])
    return one_minute > float(str(settings["cpus"])) * 0.5


def conditions(run: Run) -> list[str]:
    s = run.settings
    rounds = "one round" if s["rounds"] == 1 else f"{s['rounds']} interleaved rounds (order rotated each round)"
    return [
        f"Run: {s['started']}, {s['cpus']} CPUs, load {s['loadavg']} at start"
        + (" (busy: other processes were using the CPUs)" if _busy(s) else "")
        + f"; {s['variants']} each on its own gunicorn ({s['workers']} sync workers, gunicorn.conf.py) and its own "
        f"private redis-server {s['redis']}.",
        f"Load: {s['generator']}; {rounds} of {s['seconds']} s at {s['connections']} connections and "
        f"{s['single_seconds']} s at 1 connection per variant, each after {s['warm_requests']} untimed requests; "
        "figures are medians over rounds.",
        f"Redis counts: {s['requests']} requests per variant and phase (exact count, {s['concurrency']} at a time, "
        f"after {s['warm_requests']} warm-up requests), between CONFIG RESETSTAT and INFO; RT = "
        "total_reads_processed / requests, cmds = all commandstats calls (in-script ones too) / requests.",
        f"Exactness: {s['burst']} requests on {s['burst']} connections opened first, then written at once, on one "
        "fresh key limited to 100/hour (Tollgate: plan bench-burst; peers: their burst endpoint).",
        f"Plans: Tollgate throughput key on {s['tollgate_plan']}; peers' throughput limit {s['peer_limit']} per key.",
    ]


def render(run: Run) -> str:
    blocks = [
        table(run),
        [
            "ratio (throughput): req/s over the unmetered req/s of the same round; +p50: p50 minus the unmetered",
            "p50 of the same round (ms). CPU: microseconds per request of the gunicorn processes (app) and of",
            "redis-server, under load; its ratio is unmetered (app+redis) over this variant's, the throughput",
            "ratio a CPU-bound machine with nothing else running would show. RT: Redis round trips (server",
            "socket reads); cmd: commands executed, those inside scripts included; EVAL: EVALSHA; adm / rej:",
            "every request admitted / every request rejected (limit exhausted). burst: 200s out of the",
            "concurrent burst on a fresh key limited to 100/hour.",
        ],
        targets(run),
        command_mix(run),
        cross_check(run),
        conditions(run),
    ]
    return "\n\n".join("\n".join(block) for block in blocks if block)
