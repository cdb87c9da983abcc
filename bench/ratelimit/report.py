"""The printed report: one table per load, the targets, what each request
sends to Redis, and the conditions of the run."""

from __future__ import annotations

import math
from collections.abc import Mapping

from bench.ratelimit.results import BASELINE, HOT, MANY, LoadRun, Run, VariantRun, median

TOLLGATE, NO_LEASE, BEFORE, METRICS = "tollgate", "tollgate-no-lease", "tollgate-before", "tollgate-metrics"
# What /metrics may add per request (app + Redis CPU), as a share of what one
# metering round trip adds (leases off: the metering cost proper).
TARGET_METRICS_SHARE = 0.10
PEERS = ("django-ratelimit", "limits", "drf")
TARGET_HOT_RATIO = 0.90
TARGET_HOT_ROUND_TRIPS = 0.1
# Tollgate's added CPU per request (gunicorn workers + Redis, us) before the
# lean round trip and leases, by this bench on this machine (2026-12-01 08:40
# UTC, the commit before them; bench/README.md has that run): the leases-off
# target is at most 60 % of it.
BEFORE_ADDED_CPU_US = 316.0
TARGET_ADDED_CPU_SHARE = 0.60
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
    ("throughput, {c} connections", ["req/s", "ratio", "p50", "p99"]),
    ("1 connection", ["p50", "+p50"]),
    ("CPU us/request", ["app", "redis", "+app", "+all", "ratio"]),
    ("Redis per request", ["RT", "EVAL", "cmd"]),
    ("burst", ["admitted"]),
]


def _row(load: LoadRun, name: str, hot: LoadRun) -> list[str]:
    variant = load.variants[name]
    adm = variant.admitted
    base = name == BASELINE
    single = load.load == HOT
    return [
        name,
        _num(load.rps(name), 0),
        _num(median(load.ratios(name)), 3),
        _num(load.percentile(name, "loaded", "p50_ms")),
        _num(load.percentile(name, "loaded", "p99_ms")),
        _num(load.percentile(name, "single", "p50_ms")) if single else "-",
        "-" if base or not single else _num(load.added_p50(name, "single"), 2, sign=True),
        _num(load.cpu_us(name, "app"), 0),
        _num(load.cpu_us(name, "redis"), 0),
        "-" if base else _num(load.added_cpu_us(name, ("app",)), 0, sign=True),
        "-" if base else _num(load.added_cpu_us(name), 0, sign=True),
        _num(median(load.cpu_ratios(name)), 3),
        _num(adm.round_trips if adm else None, 3),
        _num(adm.evalsha if adm else None, 3),
        _num(adm.commands if adm else None, 3),
        _exactness_cell(hot.variants[name]),
    ]


def table(run: Run, load: LoadRun) -> list[str]:
    headers = [h for _, columns in _GROUPS for h in columns]
    rows = [_row(load, name, run.loads[HOT]) for name in load.variants]
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
    label = "one hot key" if load.load == HOT else str(run.settings["many"])
    return [f"Load: {label}", " | ".join(titles).rstrip(), names, "-" * len(names), *(render(r) for r in rows)]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _sent_only_evalsha(variant: VariantRun, label: str) -> tuple[bool, str]:
    sample = variant.samples.get(label)
    accounting = variant.admitted if label == "admitted" else variant.rejected
    if accounting is None or sample is None:
        return False, "-"
    ok = (
        accounting.counts.reads == accounting.requests
        and accounting.counts.calls.get("EVALSHA", 0) == accounting.requests
        and set(sample[0].sent) == {"EVALSHA"}
        and sample[0].sent["EVALSHA"] == sample[1]
    )
    text = (
        f"{accounting.counts.reads} reads, {accounting.counts.calls.get('EVALSHA', 0)} EVALSHA for "
        f"{accounting.requests} requests, sent per MONITOR: {_mix(sample[0].sent, sample[1])}"
    )
    return ok, text


def targets(run: Run) -> list[str]:
    hot, many = run.loads.get(HOT), run.loads.get(MANY)
    if hot is None or many is None or TOLLGATE not in hot.variants or NO_LEASE not in hot.variants:
        return []
    lines = ["Targets:"]
    ratios = hot.ratios(TOLLGATE)
    ratio, cpu_ratio = median(ratios), median(hot.cpu_ratios(TOLLGATE))
    lines.append(
        f"  hot key, leases on: throughput >= {TARGET_HOT_RATIO:.2f} of unmetered   {ratio:.3f} "
        f"(per round: {' '.join(f'{r:.3f}' for r in ratios)})   {_verdict(ratio >= TARGET_HOT_RATIO)}"
    )
    lines.append(
        f"    the same from CPU per request (app + Redis)  {cpu_ratio:.3f}   {_verdict(cpu_ratio >= TARGET_HOT_RATIO)}"
    )
    if abs(ratio - cpu_ratio) > DISAGREEMENT:
        lines.append(
            f"    (the two differ by more than {DISAGREEMENT}: other load on the machine disturbed the timed "
            "runs; rerun, with more --rounds, or trust the CPU ratio)"
        )
    admitted = hot.variants[TOLLGATE].admitted
    if admitted is not None:
        lines.append(
            f"  hot key, leases on: Redis round trips per request <= {TARGET_HOT_ROUND_TRIPS}   "
            f"{admitted.round_trips:.3f}   {_verdict(admitted.round_trips <= TARGET_HOT_ROUND_TRIPS)}"
        )
    limits_cpu = many.added_cpu_us("limits", ("app",)) if "limits" in many.variants else float("nan")
    for name in (TOLLGATE, NO_LEASE):
        mine = many.added_cpu_us(name, ("app",))
        lines.append(
            f"  many keys, {name}: added worker CPU per request below limits' ({limits_cpu:+.0f} us)   "
            f"{mine:+.0f} us   {_verdict(mine < limits_cpu)}"
        )
    peers = {peer: median(many.ratios(peer)) for peer in PEERS if peer in many.variants}
    best = max(peers.values(), default=float("nan"))
    for name in (TOLLGATE, NO_LEASE):
        mine = median(many.ratios(name))
        listed = ", ".join(f"{peer} {value:.3f}" for peer, value in peers.items())
        lines.append(
            f"  many keys, {name}: throughput ratio ahead of every peer ({listed})   {mine:.3f}   "
            f"{_verdict(mine > best)}"
        )
    no_lease = hot.variants[NO_LEASE]
    for label in ("admitted", "rejected"):
        ok, text = _sent_only_evalsha(no_lease, label)
        lines.append(f"  leases off: one round trip, one EVALSHA, nothing else sent ({label}): {text}   {_verdict(ok)}")
    for load in (hot, many):
        added = load.added_cpu_us(NO_LEASE)
        if BEFORE in load.variants:  # measured in this run
            reference, source = load.added_cpu_us(BEFORE), "tollgate-before in this run"
        else:
            reference, source = BEFORE_ADDED_CPU_US, "before, recorded"
        share = added / reference
        lines.append(
            f"  leases off, {load.load} load: added CPU per request (app + Redis) at most "
            f"{TARGET_ADDED_CPU_SHARE:.0%} of {source} ({reference:+.0f} us)   {added:+.0f} us = {share:.0%}   "
            f"{_verdict(share <= TARGET_ADDED_CPU_SHARE)}"
        )
    for name in (TOLLGATE, NO_LEASE):
        burst = hot.variants[name].exactness
        if burst is not None:
            ok = burst.admitted == burst.gcra_allowance
            lines.append(
                f"  exactness, {name}: {burst.admitted} of {burst.requests} concurrent admitted in "
                f"{burst.seconds:.2f} s (GCRA allows {burst.gcra_allowance})   {_verdict(ok)}"
            )
    if str(run.settings["generator"]).startswith("Python"):
        lines.append(
            "  (the Python load generator cannot saturate the server: its throughput ratios flatter every "
            "variant; trust the CPU ratios)"
        )
    return lines


def metrics_cost(run: Run) -> list[str]:
    """Metrics on (tollgate-metrics) against off (tollgate), both with leases,
    in the same run: what recording every request adds, against what
    metering adds."""
    lines = []
    for load in run.loads.values():
        if not {TOLLGATE, METRICS} <= load.variants.keys():
            continue
        if not lines:
            lines.append("Metrics (METRICS_TOKEN set, prometheus_client multiprocess files) against off, same run:")
        on, off = load.added_cpu_us(METRICS), load.added_cpu_us(TOLLGATE)
        added = on - off
        ratio = median(load.ratios(METRICS)) / median(load.ratios(TOLLGATE))
        line = (
            f"  {load.load} load: metrics add {added:+.1f} us CPU per request (app + Redis; metering with leases adds "
            f"{off:+.1f} us); throughput with metrics / without {ratio:.3f}"
        )
        if NO_LEASE in load.variants:
            metering = load.added_cpu_us(NO_LEASE)
            share = added / metering if metering > 0 else float("nan")
            line += (
                f"; {share:.0%} of one metering round trip ({metering:+.0f} us, leases off), target <= "
                f"{TARGET_METRICS_SHARE:.0%}   {_verdict(share <= TARGET_METRICS_SHARE)}"
            )
        lines.append(line)
    return lines


def ledger(run: Run) -> list[str]:
    """The usage ledger's cost on the request path: Tollgate (leases on)
    against ``--before`` (a checkout without the ledger), same run, per load."""
    lines = []
    for load in run.loads.values():
        if TOLLGATE not in load.variants or BEFORE not in load.variants:
            continue
        now, then = load.variants[TOLLGATE].admitted, load.variants[BEFORE].admitted
        if now is None or then is None:
            continue
        lines.append(
            f"  {load.load}: throughput ratio {median(load.ratios(TOLLGATE)):.3f} vs "
            f"{median(load.ratios(BEFORE)):.3f}; Redis round trips per request {now.round_trips:.3f} vs "
            f"{then.round_trips:.3f}, commands {now.commands:.3f} vs {then.commands:.3f}; added CPU per request "
            f"(app + Redis) {load.added_cpu_us(TOLLGATE):+.0f} vs {load.added_cpu_us(BEFORE):+.0f} us, "
            f"of it Redis {load.cpu_us(TOLLGATE, 'redis'):.0f} vs {load.cpu_us(BEFORE, 'redis'):.0f} us"
        )
    if not lines:
        return []
    return ["Usage ledger on (tollgate) against tollgate-before (--before), in this run:", *lines]


def _mix(counter: Mapping[str, int], requests: int) -> str:
    if not counter:
        return "nothing"
    parts = []
    for name, n in sorted(counter.items(), key=lambda item: (-item[1], item[0])):
        per = n / requests
        parts.append(f"{name} x{per:.0f}" if per == int(per) else f"{name} x{per:.2f}")
    return " ".join(parts)


def command_mix(run: Run) -> list[str]:
    hot = run.loads[HOT]
    lines = ["What one request asks of Redis, one hot key (MONITOR sample; [commands run inside scripts]):"]
    width = max(len(name) for name in hot.variants)
    for name, variant in hot.variants.items():
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
    for load in run.loads.values():
        for name in load.variants:
            problems = load.rejected_under_load(name)
            if problems:
                lines.append(
                    f"  ! {name}, {load.load}: {problems} responses >= 400 or socket errors during the throughput runs"
                )
        parts = [f"{name} {load.loaded_round_trips(name):.3f}" for name in load.variants if name != BASELINE]
        lines.append(
            f"  Cross-check, {load.load} load, Redis reads per wrk-counted request under load (up to connections/N "
            "high, since wrk does not count requests in flight at its stop): " + ", ".join(parts)
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
        f"Load: {s['generator']}; {rounds}, each visiting both loads and every variant: {s['seconds']} s at "
        f"{s['connections']} connections, and for the hot key {s['single_seconds']} s at 1 connection, each after "
        f"{s['warm_requests']} untimed requests; figures are medians over rounds. Many keys: {s['many']} (every "
        "worker had loaded their records before).",
        f"Redis counts: {s['requests']} requests per variant and load (exact count, {s['concurrency']} at a time, "
        f"after {s['warm_requests']} warm-up requests), between CONFIG RESETSTAT and INFO; RT = "
        "total_reads_processed / requests, EVAL = EVALSHA / requests, cmd = all commandstats calls (in-script "
        "ones too) / requests.",
        f"Exactness: {s['burst']} requests on {s['burst']} connections opened first, then written at once, on one "
        "fresh key limited to 100/hour (Tollgate: plan bench-burst; peers: their burst endpoint).",
        f"Plans: Tollgate's keys on {s['tollgate_plan']}; peers' throughput limit {s['peer_limit']} per key.",
    ]


def render(run: Run) -> str:
    blocks = [
        *(table(run, load) for load in run.loads.values()),
        [
            "ratio (throughput): req/s over the unmetered req/s of the same load and round. CPU: microseconds per",
            "request of the gunicorn processes (app) and of redis-server, under load; +app and +all: what the",
            "variant adds to the unmetered endpoint's app and app+redis CPU (median of per-round differences);",
            "ratio: unmetered (app+redis) over this variant's, the throughput ratio a CPU-bound machine with",
            "nothing else running would show. Redis per request (every request admitted): RT round trips (server",
            "socket reads), EVAL EVALSHA calls, cmd commands executed, those inside scripts included. burst: 200s",
            "out of the concurrent burst on a fresh key limited to 100/hour.",
        ],
        targets(run),
        metrics_cost(run),
        ledger(run),
        command_mix(run),
        cross_check(run),
        conditions(run),
    ]
    return "\n\n".join("\n".join(block) for block in blocks if block)
