#!/usr/bin/env python3
"""Turns the raw outputs of benches/run into BENCHMARKS.md (stdlib only).

Two parts, each rewritten from its own results, each kept from the existing
--out file when its results are missing (so running one bench keeps the other
bench's figures):

Load bench, in --results DIR (written by benches/run):
  meta.tsv     key<TAB>value: machine, versions, settings, the invocation
  targets.tsv  name<TAB>description, one line per row, in table order
  runs.tsv     one line per wrk run (header line first): target, round,
               position in the round, wrk output file, wrk exit code, CPU use
  *.txt        wrk --latency outputs

Every target becomes one row with the same columns, so adding a row to the
bench needs no change here. The goal check compares the rows named `airlock`
and `nginx` when both ran.

The Python benches' JSON, in --results DIR: approvals.json (benches/approvals.py),
reload.json (benches/reload.py), cluster.json (benches/cluster.py); each is one
section of its own between markers, kept from --out when its file is missing.

Policy bench, in --criterion DIR (criterion's output, default target/criterion):
  */new/benchmark.json, */new/estimates.json   one pair per benchmark of
      the groups policy/fresh, policy/reused, cedar and policy/load
  airlock-policy-bench.json   written by the bench: date, machine, actions,
      parameters, Cedar texts and the decisions reached
"""

import argparse
import csv
import datetime
import json
import re
import statistics
import sys
from pathlib import Path

GOAL_RPS_RATIO = 1.1  # the goal: airlock >= 1.1x nginx req/s, p99 no worse
# the contract 0.2 goals (policy bench): a fresh-instance decision at most
# 8 µs and at most half Cedar's; a reused one at most 1.5 µs
GOAL_FRESH_NS = 8000.0
GOAL_FRESH_VS_CEDAR = 0.5
GOAL_REUSE_NS = 1500.0
# Go: fresh within 3x its Rust twin, reused within 2x
GOAL_GO_FRESH_VS_RUST = 3.0
# the load goal: approval-rules on the route (fresh, audit on) serves at least
# this share of the same node's req/s without a policy
GOAL_POLICY_LOAD = 0.7

# The policy section sits between these markers, so it can be kept or replaced
# on its own.
POLICY_BEGIN = "<!-- policy-bench:begin -->"
POLICY_END = "<!-- policy-bench:end -->"
# The audit section likewise.
AUDIT_BEGIN = "<!-- audit-bench:begin -->"
AUDIT_END = "<!-- audit-bench:end -->"
AUDIT_WRITERS = 256
GOAL_AUDIT_APPENDS = 50_000  # the audit goal: durable appends per second
# the audit goal for the proxy: req/s with the trail on, as a share of req/s without
GOAL_AUDIT_BATCHED = 0.95
GOAL_AUDIT_DURABLE = 0.8
# the tracing goal: req/s with spans exported, as a share of req/s without
GOAL_TRACING = 0.95
# the Go SDK goal: a Go port's decision (reused instance) within this of its Rust twin's
GOAL_GO_VS_RUST = 2.0
# the Python and JavaScript goals: fresh within 10x the Rust twin, reused within 5x
GOAL_INTERPRETED_FRESH_VS_RUST = 10.0
GOAL_INTERPRETED_REUSED_VS_RUST = 5.0
# The ports the policy bench measures: (bench prefix, language, ports'
# directories, goal reused, goal fresh; both as multiples of the Rust twin).
PORT_LANGUAGES = [
    ("go", "Go", "*-go", GOAL_GO_VS_RUST, GOAL_GO_FRESH_VS_RUST),
    ("python", "Python", "*-py", GOAL_INTERPRETED_REUSED_VS_RUST, GOAL_INTERPRETED_FRESH_VS_RUST),
    ("js", "JavaScript", "*-js", GOAL_INTERPRETED_REUSED_VS_RUST, GOAL_INTERPRETED_FRESH_VS_RUST),
]
ROOT = Path(__file__).resolve().parent.parent

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unknown latency {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(path):
    """req/s, latency percentiles (ms), request count, non-2xx and socket errors."""
    text = path.read_text(errors="replace")
    out = {"file": path.name, "non2xx": 0, "socket": {}, "requests": None}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["rps"] = float(m.group(1)) if m else None
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}"] = to_ms(m.group(1)) if m else None
    m = re.search(r"^\s+(\d+) requests in", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket"] = {
            k: int(v)
            for k, v in zip(("connect", "read", "write", "timeout"), m.groups())
            if int(v)
        }
    return out


def read_tsv(path):
    with path.open(newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def fmt_rps(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    if v is None:
        return "n/a"
    if v < 1:
        return f"{v * 1000:.0f} µs"
    return f"{v:.2f} ms"


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}×"


def pct(v):
    return "—" if v in (None, "", "-") else f"{float(v):.0f}%"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def errors_text(runs):
    non2xx = sum(r["non2xx"] for r in runs)
    sock = {}
    for r in runs:
        for k, v in r["socket"].items():
            sock[k] = sock.get(k, 0) + v
    bad_rc = sum(1 for r in runs if r["wrk_rc"] != "0")
    parts = []
    if non2xx:
        parts.append(f"non-2xx/3xx {non2xx:,}")
    parts += [f"socket {k} {v:,}" for k, v in sorted(sock.items())]
    if bad_rc:
        parts.append(f"wrk failed {bad_rc}×")
    return ", ".join(parts) if parts else "none"


def render_load(res):
    """The load bench's part: (head, method) as lists of lines."""
    meta = {row[0]: row[1] for row in read_tsv(res / "meta.tsv") if len(row) >= 2}
    targets = [(row[0], row[1]) for row in read_tsv(res / "targets.tsv") if row]
    header, *lines = read_tsv(res / "runs.tsv")
    runs = []
    for line in lines:
        rec = dict(zip(header, line))
        wrk = parse_wrk(res / rec["file"])
        wrk.update(rec)
        runs.append(wrk)

    by_target = {name: [r for r in runs if r["target"] == name] for name, _ in targets}
    summary = {}
    for name, _ in targets:
        rs = by_target[name]
        cpu = [float(r["proxy_cpu_pct"]) for r in rs if r["proxy_cpu_pct"] not in ("", "-")]
        up = [float(r["upstream_cpu_pct"]) for r in rs if r["upstream_cpu_pct"] not in ("", "-")]
        rps = [r["rps"] for r in rs if r["rps"] is not None]
        cost = [
            float(r["proxy_cpu_pct"]) / 100 * 1e6 / r["rps"]
            for r in rs
            if r["proxy_cpu_pct"] not in ("", "-") and r["rps"]
        ]
        summary[name] = {
            "rps": median(rps),
            "rps_min": min(rps) if rps else None,
            "rps_max": max(rps) if rps else None,
            "p50": median(r["p50"] for r in rs),
            "p99": median(r["p99"] for r in rs),
            "cpu": median(cpu),
            "upstream_cpu": median(up),
            "cost": median(cost),
            "errors": errors_text(rs),
        }

    def get(name, key):
        return summary.get(name, {}).get(key)

    md = []
    w = md.append
    w("# Benchmarks")
    w("")
    w(
        "Airlock's performance figures, measured on one machine by `benches/run` "
        "(see [benches/README.md](benches/README.md)). The script rewrites this file "
        "on every run: do not edit it by hand, rerun it."
    )
    w("")
    w(f"- Produced by: `{meta.get('invocation', 'benches/run')}`")
    w(f"- Date: {meta.get('date', '?')}")
    w(
        f"- Machine: {meta.get('nproc', '?')} CPUs ({meta.get('cpu_model', '?')}), "
        f"{meta.get('memory', '?')} RAM, {meta.get('kernel', '?')}; "
        f"load average {meta.get('loadavg_start', '?')} at start, "
        f"{meta.get('loadavg_end', '?')} at end"
    )
    w(
        f"- Software: {meta.get('wrk', 'wrk')}, {meta.get('nginx', 'nginx')}, "
        f"{meta.get('rustc', 'rustc ?')}"
    )
    w("")

    # -- load table
    w(
        f"## Load: HTTP/1.1 keep-alive, {meta.get('connections')} connections, "
        f"{meta.get('workers')} worker"
        f"{'' if meta.get('workers') == '1' else 's'} per proxy"
    )
    w("")
    w(
        f"Medians over {meta.get('rounds')} alternating rounds of "
        f"{meta.get('duration')} s each. Latency is wrk's (closed loop: "
        f"{meta.get('connections')} connections, each sending its next request "
        "when the previous answer arrives)."
    )
    w("")
    w(
        "| Target | req/s | req/s min–max | p50 | p99 | vs direct | vs nginx "
        "| proxy CPU | proxy CPU per request | upstream CPU | errors |"
    )
    w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for name, _ in targets:
        s = summary[name]
        cpu = "—" if s["cpu"] is None else f"{s['cpu']:.0f}%"
        up = "—" if s["upstream_cpu"] is None else f"{s['upstream_cpu']:.0f}%"
        cost = "—" if s["cost"] is None else f"{s['cost']:.1f} µs"
        w(
            f"| {name} | {fmt_rps(s['rps'])} | {fmt_rps(s['rps_min'])}–{fmt_rps(s['rps_max'])} "
            f"| {fmt_ms(s['p50'])} | {fmt_ms(s['p99'])} "
            f"| {fmt_ratio(ratio(s['rps'], get('direct', 'rps')))} "
            f"| {fmt_ratio(ratio(s['rps'], get('nginx', 'rps')))} "
            f"| {cpu} | {cost} | {up} | {s['errors']} |"
        )
    w("")
    w(
        "CPU columns (medians): CPU time of the proxy's processes (nginx master and "
        "workers, or all of Airlock's threads) and of the upstream nginx during the "
        "run, as a share of one CPU (100% = one core busy); per request: the proxy's "
        "CPU time divided by the requests it served. A proxy near 100% is CPU-bound, "
        "and its req/s is then set by its CPU cost per request."
    )
    w("")
    others = [float(r["other_cpu_pct"]) for r in runs if r.get("other_cpu_pct") not in (None, "", "-")]
    if others:
        busy_runs = sum(1 for o in others if o > 25)
        noisy = median(others) > 10 or busy_runs * 5 > len(others)
        w(
            f"Background load: CPU used by processes outside the bench during a run "
            f"(all CPUs' busy time minus proxy, upstream and wrk) was "
            f"{median(others):.0f}% of one CPU in the median run, {max(others):.0f}% at "
            f"most; {busy_runs} of {len(others)} runs saw more than 25%."
            + (
                " **The machine was not quiet: treat these figures as rough, rerun on an "
                "idle machine.**"
                if noisy
                else " Most runs were quiet; the medians damp the others."
                if busy_runs
                else ""
            )
        )
        w("")

    # -- ratios and goal
    if "airlock" in summary and "nginx" in summary:
        rps_ratio = ratio(get("airlock", "rps"), get("nginx", "rps"))
        p99_ratio = ratio(get("airlock", "p99"), get("nginx", "p99"))
        paired = []
        rounds = sorted({r["round"] for r in runs}, key=int)
        for rnd in rounds:
            a = [r["rps"] for r in by_target["airlock"] if r["round"] == rnd]
            n = [r["rps"] for r in by_target["nginx"] if r["round"] == rnd]
            if a and n and a[0] and n[0]:
                paired.append(a[0] / n[0])
        w("### Ratios")
        w("")
        w("| Ratio | value |")
        w("|---|--:|")
        if "direct" in summary:
            w(f"| airlock / direct (req/s) | {fmt_ratio(ratio(get('airlock', 'rps'), get('direct', 'rps')))} |")
            w(f"| nginx / direct (req/s) | {fmt_ratio(ratio(get('nginx', 'rps'), get('direct', 'rps')))} |")
        w(f"| **airlock / nginx (req/s)** | **{fmt_ratio(rps_ratio)}** |")
        w(f"| **airlock p99 / nginx p99** | **{fmt_ratio(p99_ratio)}** |")
        w(f"| airlock p50 / nginx p50 | {fmt_ratio(ratio(get('airlock', 'p50'), get('nginx', 'p50')))} |")
        if paired:
            w(
                "| airlock / nginx (req/s), per round | "
                + ", ".join(f"{p:.2f}" for p in paired)
                + " |"
            )
        w("")
        met_rps = rps_ratio is not None and rps_ratio >= GOAL_RPS_RATIO
        met_p99 = p99_ratio is not None and p99_ratio <= 1.0
        verdict = "met" if met_rps and met_p99 else "not met"
        w(
            f"Goal (from the issue): Airlock serves at least {GOAL_RPS_RATIO}× nginx's "
            f"req/s with a p99 no worse than nginx's. **{verdict.capitalize()}**: "
            f"{fmt_ratio(rps_ratio)} the req/s "
            f"({'≥' if met_rps else '<'} {GOAL_RPS_RATIO}×), "
            f"p99 {fmt_ratio(p99_ratio)} nginx's "
            f"({'no worse' if met_p99 else 'worse'})."
        )
        w("")

    def cost_table(title, intro, baseline, column, rows):
        """Rows against `baseline`: medians, and per round the ratio of the
        runs in the same round."""
        if baseline not in summary or not any(name in summary for name, _, _ in rows):
            return
        w(f"### {title}")
        w("")
        w(intro + " Medians of the rounds above; per round, the ratio of the runs in the same round.")
        w("")
        w(f"| {column} | req/s vs {baseline} | p99 vs {baseline} | per round (req/s) | goal |")
        w("|---|--:|--:|---|---|")
        for name, label, goal in rows:
            if name not in summary:
                continue
            r = ratio(get(name, "rps"), get(baseline, "rps"))
            rounds = sorted({x["round"] for x in runs}, key=int)
            per_round = []
            for rnd in rounds:
                a = [x["rps"] for x in by_target[name] if x["round"] == rnd]
                o = [x["rps"] for x in by_target[baseline] if x["round"] == rnd]
                if a and o and a[0] and o[0]:
                    per_round.append(f"{a[0] / o[0]:.2f}")
            met = r is not None and r >= goal
            w(
                f"| {label} | **{fmt_ratio(r)}** "
                f"| {fmt_ratio(ratio(get(name, 'p99'), get(baseline, 'p99')))} "
                f"| {', '.join(per_round)} "
                f"| ≥ {goal}×: **{'met' if met else 'not met'}** |"
            )
        w("")

    cost_table(
        "The audit trail's cost",
        "Each row against `airlock_off` (the same node with `[audit] enabled = false`).",
        "airlock_off",
        "Audit",
        (
            ("airlock", "batched (these GETs, the default)", GOAL_AUDIT_BATCHED),
            ("airlock_durable", "durable (route `audit = \"durable\"`)", GOAL_AUDIT_DURABLE),
        ),
    )
    cost_table(
        "A policy on the route",
        "Each row against `airlock` (the same node, audit on, no policy): the demo's "
        "`approval-rules` judging every request (both rules checked, the GET allowed).",
        "airlock",
        "Policy",
        (
            ("airlock_policy", "approval-rules, a fresh instance per decision (the default)", GOAL_POLICY_LOAD),
            ("airlock_reused", "approval-rules, instances reused", GOAL_POLICY_LOAD),
        ),
    )
    cost_table(
        "The cost of tracing",
        "Each row against `airlock` (the same node, audit on, with no `[tracing]`): "
        "spans exported over OTLP gRPC to a real receiver.",
        "airlock",
        "Tracing",
        (
            ("airlock_traced", "every request exported (sample_ratio 1.0)", GOAL_TRACING),
            ("airlock_sampled", "1% exported (sample_ratio 0.01)", GOAL_TRACING),
        ),
    )

    # -- per round
    w("<details><summary>Every run</summary>")
    w("")
    w(
        "| round | order | target | req/s | p50 | p99 | requests | errors "
        "| proxy CPU | upstream CPU | wrk CPU | other CPU | CPUs busy |"
    )
    w("|--:|--:|---|--:|--:|--:|--:|---|--:|--:|--:|--:|---|")
    for r in sorted(runs, key=lambda r: (int(r["round"]), int(r["position"]))):
        reqs = "n/a" if r["requests"] is None else f"{r['requests']:,}"
        w(
            f"| {r['round']} | {r['position']} | {r['target']} | {fmt_rps(r['rps'])} "
            f"| {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {reqs} | {errors_text([r])} "
            f"| {pct(r.get('proxy_cpu_pct'))} | {pct(r.get('upstream_cpu_pct'))} "
            f"| {pct(r.get('wrk_cpu_pct'))} | {pct(r.get('other_cpu_pct'))} "
            f"| {r['cpu_busy'].replace(',', ', ')} |"
        )
    w("")
    w("</details>")
    w("")

    head = md
    md = []
    w = md.append
    # -- method
    w("## Method")
    w("")
    w(
        f"- One load generator for every row: `{meta.get('wrk_command')}` "
        f"(wrk {meta.get('wrk_threads')} thread, {meta.get('connections')} connections, "
        "HTTP/1.1 keep-alive, `GET /`)."
    )
    w(
        "- One upstream for every row: a separate nginx with 1 worker that answers "
        '`return 200 "hello from upstream\\n";` (20-byte body) on a loopback port, '
        "access log off, keep-alive without a request limit. It is not part of the "
        "comparison; it only has to be the same, and fast."
    )
    w("- Rows:")
    for name, desc in targets:
        w(f"  - **{name}**: {desc}.")
    w(
        f"- Worker count: nginx `worker_processes` = Airlock `[server] worker_threads` = "
        f"{meta.get('workers')}."
    )
    w(f"- CPU placement: {meta.get('pinning')}.")
    w(
        f"- Alternating rounds: {meta.get('rounds')} rounds; each round runs every row "
        f"once for {meta.get('duration')} s, the order rotated by one each round so no "
        "row always runs first or last. Slow drifts of the machine (other jobs, "
        "thermal, frequency) then hit all rows alike. Before the rounds, every row gets "
        f"an unrecorded {meta.get('warmup')} s warm-up. All servers stay up the whole "
        "time; only the one under load is busy."
    )
    w(
        "- Noise: before the rounds and before each run the script waits (a bounded "
        "time) for the machine to be idle; the CPU other processes used during each run "
        "is recorded (\"other CPU\" under \"Every run\")."
    )
    w(
        "- Figures are medians over the rounds: req/s, p50 and p99 each taken "
        "separately. Ratios divide medians, except the per-round line, which divides "
        "the two rows' req/s within each round."
    )
    w(
        "- Errors: wrk's `Non-2xx or 3xx responses` and `Socket errors` lines, summed "
        "over the rounds; every server is checked to answer `hello from upstream` "
        "before the load starts."
    )
    w(
        "- Raw wrk outputs, the generated configs and runs.tsv are in "
        "`benches/results/` after a run (not committed)."
    )
    w("")
    return head, md


# ---------------------------------------------------------------- policy bench


def fmt_ns(v):
    if v is None:
        return "n/a"
    if v < 1_000:
        return f"{v:.0f} ns"
    if v < 1_000_000:
        us = v / 1_000
        return f"{us:.2f} µs" if us < 10 else f"{us:.1f} µs" if us < 100 else f"{us:.0f} µs"
    ms = v / 1_000_000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def read_criterion(directory):
    """{full id: (median ns, lower ns, upper ns, confidence)} of the policy groups."""
    out = {}
    if not directory.is_dir():
        return out
    for bench in sorted(directory.rglob("new/benchmark.json")):
        try:
            info = json.loads(bench.read_text())
            estimates = json.loads(bench.with_name("estimates.json").read_text())
        except (OSError, ValueError):
            continue
        group = info.get("group_id", "")
        ports = {f"{language}/{kind}" for language, *_ in PORT_LANGUAGES
                 for kind in ("fresh", "reused", "load")}
        if group not in ("policy/fresh", "policy/reused", "cedar", "policy/load") and group not in ports:
            continue
        median = estimates["median"]
        ci = median["confidence_interval"]
        out[f"{group}/{info.get('function_id')}"] = (
            median["point_estimate"],
            ci["lower_bound"],
            ci["upper_bound"],
            ci["confidence_level"],
        )
    return out


def render_policies(directory):
    """The policy bench's section as a list of lines, or None without results."""
    figures = read_criterion(directory)
    meta_file = directory / "airlock-policy-bench.json"
    if not figures or not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    cases = meta.get("cases", [])
    names = [c["name"] for c in cases] or sorted(
        {k.split("/", 2)[2] for k in figures if k.startswith("policy/fresh/")}
    )

    def cell(key):
        f = figures.get(key)
        if f is None:
            return "n/a"
        return f"{fmt_ns(f[0])} ({fmt_ns(f[1])}–{fmt_ns(f[2])})"

    def med(key):
        f = figures.get(key)
        return None if f is None else f[0]

    md = []
    w = md.append
    w(POLICY_BEGIN)
    w("## Policy decisions: Airlock against Cedar")
    w("")
    date = datetime.datetime.fromtimestamp(meta.get("unix_time", 0), datetime.timezone.utc)
    w(
        f"- Produced by: `{meta.get('invocation', 'cargo bench -p airlock-policy-bench')}` "
        "(criterion; benchmark `benches/policies/benches/policies.rs`)"
    )
    w(f"- Date: {date:%Y-%m-%d %H:%M} UTC")
    w(
        f"- Machine: {meta.get('nproc', '?')} CPUs ({meta.get('cpu_model', '?')}); load average "
        f"{meta.get('loadavg_start', '?')} at start, {meta.get('loadavg_end', '?')} at end"
    )
    w(
        f"- Software: wasmtime 48 (Airlock's sandbox, pooling allocator, deadline "
        f"{meta.get('deadline_ms', 5):g} ms), cedar-policy {meta.get('cedar_policy', '?')} "
        f"(Cedar language {meta.get('cedar_lang', '?')}); `[profile.bench]`: opt-level 3, no LTO"
    )
    background = meta.get("background_cpu_pct")
    if background is not None:
        w(
            f"- Background load: other processes used {background:.0f}% of one CPU while "
            "the bench ran"
            + (
                ". **The machine was not quiet: treat these figures as rough, rerun on an "
                "idle machine.**"
                if background > 25
                else "."
            )
        )
    failed = [
        (c["name"], mode, failures)
        for c in cases
        for mode in ("fresh", "reused")
        for failures in [c.get(f"failures_{mode}") or {}]
        if failures
    ]
    if failed:
        w(
            "- Failed evaluations while measuring (counted in the timings; with a wall-clock "
            "deadline, a preempted evaluation can overrun it on a busy machine): "
            + "; ".join(
                f"{name} {mode}: " + ", ".join(f"{n} × {code}" for code, n in sorted(f.items()))
                for name, mode, f in failed
            )
        )
    w("")
    w(
        "Time of one decision, median over criterion's samples, with the 95% confidence "
        "interval of the median in brackets. Same action, same rules, same answer (the "
        "bench checks that both reach the same allow/deny/hold before measuring)."
    )
    w("")
    w("| Policy | action → decision | Airlock fresh | Airlock reused | Cedar | fresh/Cedar | reused/Cedar |")
    w("|---|---|--:|--:|--:|--:|--:|")
    by_name = {c["name"]: c for c in cases}
    fresh_ok, reuse_ok, rows = 0, 0, 0
    worst_fresh, worst_reuse = None, None
    for name in names:
        fresh, reused, cedar = (
            med(f"policy/fresh/{name}"),
            med(f"policy/reused/{name}"),
            med(f"cedar/{name}"),
        )
        case = by_name.get(name, {})
        w(
            f"| {name} | {case.get('action', '?')} | {cell(f'policy/fresh/{name}')} "
            f"| {cell(f'policy/reused/{name}')} | {cell(f'cedar/{name}')} "
            f"| {fmt_ratio(ratio(fresh, cedar))} | {fmt_ratio(ratio(reused, cedar))} |"
        )
        if None in (fresh, reused, cedar):
            continue
        rows += 1
        fresh_ok += fresh <= GOAL_FRESH_NS and fresh <= GOAL_FRESH_VS_CEDAR * cedar
        reuse_ok += reused <= GOAL_REUSE_NS
        r = fresh / cedar
        if worst_fresh is None or r > worst_fresh[1]:
            worst_fresh = (name, r)
        if worst_reuse is None or reused > worst_reuse[1]:
            worst_reuse = (name, reused)
    w("")
    overhead = [
        med(f"policy/fresh/{n}") - med(f"policy/reused/{n}")
        for n in names
        if med(f"policy/fresh/{n}") is not None and med(f"policy/reused/{n}") is not None
    ]
    if overhead:
        w(
            f"A fresh instance costs {fmt_ns(min(overhead))} to {fmt_ns(max(overhead))} per "
            "decision over a reused one (fresh minus reused median): instantiating the "
            "component from the pool and resetting its memory and tables afterwards."
        )
        w("")
    for language, title, ports, goal_reused, goal_fresh in PORT_LANGUAGES:
        twins = sorted(
            {k.split("/", 2)[2] for k in figures if k.startswith(f"{language}/reused/")}
        )
        if not twins:
            continue
        w(f"### {title} policies beside their Rust twins")
        w("")
        w(
            f"The {title} ports (`policies/{ports}`, built by `airlock policy build` from source) "
            "on the same action and parameters as the Rust policy above, after the bench checked "
            "that both give exactly the same verdict. Instantiation: fresh minus reused median. "
            f"Load: compile, `setup`, snapshot and compile the image (the compiled functions of "
            f"earlier loads reused). Goals: {title} within {goal_reused:g}× of Rust reused, "
            f"{goal_fresh:g}× fresh."
        )
        sizes = {
            port["name"]: port["component_bytes"]
            for port in meta.get("ports", [])
            if port["language"] == language
        }
        rust_sizes = meta.get("rust_component_bytes", {})
        if sizes:
            w(
                "Component size: "
                + "; ".join(
                    f"{name} {sizes[name] / 1e6:.1f} MB (Rust {rust_sizes.get(name, 0) / 1e3:.0f} kB)"
                    for name in sorted(sizes)
                )
                + "."
            )
            w("")
        w(
            f"| Policy | Rust reused | {title} reused | ×Rust reused | Rust fresh | {title} fresh "
            f"| ×Rust fresh | instantiation Rust | instantiation {title} | {title} load | goal |"
        )
        w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        for name in twins:
            rust_r, port_r = med(f"policy/reused/{name}"), med(f"{language}/reused/{name}")
            rust_f, port_f = med(f"policy/fresh/{name}"), med(f"{language}/fresh/{name}")
            inst = lambda f, r: None if None in (f, r) else f - r
            per_decision = ratio(port_r, rust_r)
            per_fresh = ratio(port_f, rust_f)
            met = per_decision is not None and per_decision <= goal_reused
            met_fresh = per_fresh is not None and per_fresh <= goal_fresh
            w(
                f"| {name} | {cell(f'policy/reused/{name}')} | {cell(f'{language}/reused/{name}')} "
                f"| {fmt_ratio(per_decision)} | {cell(f'policy/fresh/{name}')} "
                f"| {cell(f'{language}/fresh/{name}')} | {fmt_ratio(per_fresh)} "
                f"| {fmt_ns(inst(rust_f, rust_r))} | {fmt_ns(inst(port_f, port_r))} "
                f"| {cell(f'{language}/load/{name}')} "
                f"| ≤ {goal_reused:g}× reused: **{'met' if met else 'not met'}**; "
                f"≤ {goal_fresh:g}× fresh: **{'met' if met_fresh else 'not met'}** |"
            )
        w("")
    load = figures.get("policy/load/deny-list")
    if load:
        w(
            f"Loading a policy (`PolicyEngine::load` of deny-list: compile the component as "
            f"Wizer instruments it, check the contract, call `describe`, run `setup` with its "
            f"parameters, snapshot the memory it leaves, compile that image; no compile "
            f"cache on disk, but the functions compiled by earlier loads are reused, as they "
            f"are for every load after a policy's first): {cell('policy/load/deny-list')}. "
            "It happens once per policy at start or reload, not per decision."
        )
        w("")
    if rows:
        met = fresh_ok == rows
        w(
            f"- Goal: the default (fresh-instance) median at most {fmt_ns(GOAL_FRESH_NS)} and "
            f"at most {GOAL_FRESH_VS_CEDAR:g}× Cedar's on the same "
            f"rules. **{'Met' if met else 'Not met'}**: {fresh_ok} of {rows} policies"
            + (
                ""
                if met
                else f"; the furthest is {worst_fresh[0]} at {worst_fresh[1]:.1f}× Cedar's time"
            )
            + "."
        )
        met = reuse_ok == rows
        w(
            f"- Goal: reuse mode at most {fmt_ns(GOAL_REUSE_NS)}. **{'Met' if met else 'Not met'}**: "
            f"{reuse_ok} of {rows} policies; the slowest is {worst_reuse[0]} at "
            f"{fmt_ns(worst_reuse[1])}."
        )
        if fresh_ok < rows or reuse_ok < rows:
            w(
                "- Where the remaining time goes (a profile of a fresh and a reused decision, "
                "part by part) and what is left to try: [benches/history.md](benches/history.md#where-a-rust-decisions-microseconds-go-now-2026-12-07-perf-record---call-graph-dwarf-of-the-policy-bench-measurement-phase-only)."
            )
        w("")
    w("How it is measured:")
    w("")
    w(
        "- **Airlock fresh**: `LoadedPolicy::evaluate` as a route runs it by default: a new "
        "instance of the component from the pooling allocator, the action lowered into it, "
        "`evaluate` called under the epoch deadline, the decision lifted and checked, the "
        "instance dropped. The instance starts from the memory image its `setup` left at "
        "load (contract 0.2: parameters parsed and checked once, snapshotted as Wizer does); "
        "per call the policy asks for what it reads (`request-header`, `live-figures`, "
        "and for time rules the local time, `to-local-time`)."
    )
    w(
        "- **Airlock reused**: the same policy loaded with instance reuse on "
        "(`[policies] reuse_instances`): an idle instance is taken, called and put back."
    )
    w(
        "- **Cedar**: the same rules written in Cedar and parsed once; per decision, what a "
        "host does from the same action: build the principal (groups as parents) and the "
        "pools (figures as attributes) as entities, the context (method, host, path, "
        "headers, client address, ...) and the request, call `Authorizer::is_authorized`, "
        "and read status or approvers from the deciding policy's annotations. Cedar has "
        "only permit and forbid: *hold* is a second policy set, `needs-approval`, asked "
        "only when the main set allows (a permit there holds). Cedar has no time zones: "
        "the host puts the local weekday and minute of day (from the same tz database) in "
        "the context. No schema validation per request. No extension values: "
        "`RestrictedExpression::new_decimal`/`new_ip` re-parse the extension's name with "
        "Cedar's full parser on every call (about 40% of a decision in a profile), so "
        "fractions go in as integers (`error_rate_ppm`) and the client address as a string; "
        "likewise `PolicySet::annotation` re-parses its key, so the host reads each "
        "policy's annotations once, at load."
    )
    w(
        "- One action per policy, realistic rather than minimal: requests carry 8 headers "
        "(one redacted credential), a principal with 3 groups and the pool's figures; the "
        "parameters are those of the policy's `cases.toml`. The clock is fixed "
        "(`fixed_now_unix_ms`) so time rules decide the same way every run."
    )
    w(
        "- criterion: 30 samples, 1 s warm-up, 3 s measurement per benchmark; the load "
        "benchmark 10 flat samples. Rerun: `SUITES=policies benches/run` (or "
        "`cargo bench -p airlock-policy-bench -- --noplot`, then `benches/report.py`)."
    )
    w("")
    if cases:
        w("<details><summary>Actions, parameters and the Cedar policies</summary>")
        w("")
        for c in cases:
            w(f"**{c['name']}**: {c['action']}. Airlock: {c.get('airlock_decision', '?')}.")
            w("")
            w(f"Parameters: `{json.dumps(c.get('parameters'), separators=(', ', ': '))}`")
            w("")
            w("```cedar")
            w(dedent(c.get("cedar", "")))
            if c.get("cedar_needs_approval"):
                w("")
                w("// needs-approval (asked when the set above allows)")
                w(dedent(c["cedar_needs_approval"]))
            w("```")
            w("")
        w("</details>")
        w("")
    w(POLICY_END)
    return md


def render_audit(directory):
    """The audit bench's section as a list of lines, or None without results."""
    base = directory / "audit" / "durable-appends-256-writers" / "new"
    try:
        estimates = json.loads((base / "estimates.json").read_text())
    except (OSError, ValueError):
        return None
    median = estimates["median"]
    ci = median["confidence_interval"]
    per_second = lambda ns: AUDIT_WRITERS / (ns / 1e9)
    rate = per_second(median["point_estimate"])
    when = datetime.datetime.fromtimestamp(
        (base / "estimates.json").stat().st_mtime, datetime.timezone.utc
    ).strftime("%Y-%m-%d %H:%M UTC")
    met = rate >= GOAL_AUDIT_APPENDS
    return [
        AUDIT_BEGIN,
        "## Audit trail: durable appends through the group-commit writer",
        "",
        "- Produced by: `SUITES=policies benches/run` (criterion; benchmark `benches/policies/benches/audit.rs`)",
        f"- Date: {when}",
        "",
        f"{AUDIT_WRITERS} writers each record one durable entry at once, as {AUDIT_WRITERS} concurrent risky "
        "requests would, through `AuditLog::record` into a real redb file (`Durability::Immediate`, fsync). "
        "The writer thread commits whatever is queued in one transaction, so concurrent writers share fsyncs. "
        f"One iteration is all {AUDIT_WRITERS} entries on disk.",
        "",
        f"| what | median per {AUDIT_WRITERS} entries (95% CI) | durable entries/s |",
        "|---|--:|--:|",
        f"| {AUDIT_WRITERS} concurrent writers, one durable entry each | {fmt_ns(median['point_estimate'])} "
        f"({fmt_ns(ci['lower_bound'])}–{fmt_ns(ci['upper_bound'])}) | {rate:,.0f} |",
        "",
        f"- Goal (from the issue): at least {GOAL_AUDIT_APPENDS:,} durable appends/s. "
        + (f"**Met**: {rate:,.0f}/s." if met else f"**Not met**: {rate:,.0f}/s."),
        "- Proxy req/s and p99 with the trail off, batched and durable: the load bench's "
        "\"The audit trail's cost\" table above.",
        AUDIT_END,
    ]


APPROVALS_BEGIN = "<!-- approvals-bench:begin -->"
APPROVALS_END = "<!-- approvals-bench:end -->"
GOAL_RELEASE_P99_MS = 5.0  # the approvals issue: p99 release latency under 5 ms on one node


def render_approvals(results):
    """The approvals bench's section as a list of lines, or None without results."""
    try:
        r = json.loads((results / "approvals.json").read_text())
    except (OSError, ValueError):
        return None
    rel, call = r["release_us"], r["approve_call_us"]
    ms = lambda us: f"{us / 1000:.2f} ms"
    met = rel["p99"] / 1000 < GOAL_RELEASE_P99_MS
    return [
        APPROVALS_BEGIN,
        "## Approvals: release latency and memory per held request",
        "",
        "- Produced by: `SUITES=approvals benches/run` (`benches/approvals.py` against target/release/airlock)",
        f"- Date: {r['date']}; {r['nproc']} CPUs, load average at the end {' '.join(r['loadavg'])}",
        "",
        f"{r['approvals']} DELETEs held by approval-rules, one at a time, each released by one approve call "
        "(`POST /v1/approvals/{id}/approve`, a durable redb commit of the vote and the approval's new state). "
        "Release latency runs from just before the approve call is sent to the moment the upstream "
        "(in the bench's process, so one clock) reads the released request.",
        "",
        "| what | p50 | p90 | p99 | max |",
        "|---|--:|--:|--:|--:|",
        f"| release latency (approve sent -> upstream has the request) | {ms(rel['p50'])} | {ms(rel['p90'])} "
        f"| {ms(rel['p99'])} | {ms(rel['max'])} |",
        f"| the approve call's round trip | {ms(call['p50'])} | | {ms(call['p99'])} | |",
        "",
        f"Memory: resident set {r['rss_before_kib'] / 1024:.1f} MiB before and {r['rss_held_kib'] / 1024:.1f} MiB "
        f"with {r['held']} requests held at once (each a {r['body_bytes']}-byte body on its own connection): "
        f"**{r['per_held_bytes'] / 1024:.1f} KiB per held request**, connection, buffered body and approval together.",
        "",
        f"- Goal (from the issue): p99 release latency under {GOAL_RELEASE_P99_MS:g} ms on one node. "
        + (f"**Met**: {ms(rel['p99'])}." if met else f"**Not met**: {ms(rel['p99'])}."),
        APPROVALS_END,
    ]


RELOAD_BEGIN = "<!-- reload-bench:begin -->"
RELOAD_END = "<!-- reload-bench:end -->"
GOAL_RELOAD_P99_MS = 250.0  # the hot-reload issue: a new Rust policy judging within 250 ms


def render_reload(results):
    """The reload bench's section as a list of lines, or None without results."""
    try:
        r = json.loads((results / "reload.json").read_text())
    except (OSError, ValueError):
        return None
    rows = r["latency_ms"]
    worst = max(row["p99"] for row in rows.values())
    met = worst < GOAL_RELOAD_P99_MS
    describe = {
        "parameters": "parameters file replaced (same component, new parameters)",
        "component": "component replaced (another `.wasm`; compiled code from wasmtime's cache after the first two)",
    }
    lines = [
        RELOAD_BEGIN,
        "## Policy hot reload: from the file's last write to the first request judged by it",
        "",
        "- Produced by: `SUITES=reload benches/run` (`benches/reload.py` against target/release/airlock)",
        f"- Date: {r['date']}; {r['nproc']} CPUs, load average at the end {' '.join(r['loadavg'])}",
        "",
        "A file in the watched folder is replaced the way a deployment tool does it (written under a "
        "temporary name, then renamed into place; the clock starts after the rename) so that the decision "
        "on `GET /a` flips; the bench then sends `GET /a` over one keep-alive connection until the answer "
        "shows the new decision. The folder is looked at every 50 ms and a change is taken once it has "
        "stayed put for one more look, so 50-100 ms of each figure is that settling.",
        "",
        "| what | swaps | p50 | p90 | p99 | max |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for kind, row in rows.items():
        lines.append(
            f"| {describe.get(kind, kind)} | {row['swaps']} | {row['p50']:.0f} ms | {row['p90']:.0f} ms "
            f"| {row['p99']:.0f} ms | {row['max']:.0f} ms |"
        )
    lines += [
        "",
        f"- Goal (from the issue): under {GOAL_RELOAD_P99_MS:g} ms for a Rust policy. "
        + (f"**Met**: p99 {worst:.0f} ms at worst." if met else f"**Not met**: p99 {worst:.0f} ms at worst."),
        RELOAD_END,
    ]
    return lines


CLUSTER_BEGIN = "<!-- cluster-bench:begin -->"
CLUSTER_END = "<!-- cluster-bench:end -->"
GOAL_CLUSTER_P99_MS = 50.0  # the HA issue: a vote on one node releases a request held on another within 50 ms


def render_cluster(results):
    """The cluster bench's section as a list of lines, or None without results."""
    try:
        r = json.loads((results / "cluster.json").read_text())
    except (OSError, ValueError):
        return None
    rel, call = r["release_ms"], r["vote_call_ms"]
    binary = r.get("binary", "target/release/airlock")
    try:
        binary = str(Path(binary).resolve().relative_to(ROOT))
    except ValueError:
        pass
    cross_p99 = rel["cross"]["p99"]
    met = cross_p99 < GOAL_CLUSTER_P99_MS
    ms = lambda v: f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"
    lines = [
        CLUSTER_BEGIN,
        "## Cluster: approvals across two nodes sharing etcd",
        "",
        f"- Produced by: `SUITES=cluster benches/run` (`benches/cluster.py` against {binary})",
        f"- Date: {r['date']}; {r['nproc']} CPUs, load average at the end {' '.join(r['loadavg'])}",
    ]
    if r.get("build") == "debug":
        lines.append(
            "- **A debug build: these figures show that the bench works, not how fast Airlock is.** "
            "Rerun with the release binary."
        )
    lines += [
        "",
        f"Two Airlock nodes, a and b (each `[server] worker_threads = 1`, its own data dir, "
        f"`[storage] backend = \"etcd\"`), on a {r.get('etcd_members', 3)}-member etcd "
        f"{r.get('etcd_version', '?')} cluster (`--heartbeat-interval {r.get('heartbeat_ms', 100)} "
        f"--election-timeout {r.get('election_ms', 1000)}`, its WAL fsynced to the machine's disk), all "
        "on loopback on the same machine, nothing pinned. approval-rules holds every DELETE for one "
        "approver from `oncall`; the requests wait on b. Release latency runs from just before the "
        "approve call (`POST /v1/approvals/{id}/approve`) is sent to the moment the upstream (in the "
        "bench's process, so one clock; matched to the request by its unique path) reads the released "
        f"request. {r['releases']} releases of each kind, one at a time, alternating (the order swapped "
        "every round); before each vote the bench waits until a's API shows the approval, so both kinds "
        "start from the same state.",
        "",
        "| vote sent to | releases | p50 | p90 | p99 | max | the approve call's round trip (p50, p99) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    describe = {
        "cross": "node a (the request waits on b): **cross-node**",
        "same": "node b (where the request waits): same node",
    }
    for kind in ("cross", "same"):
        row, c = rel[kind], call[kind]
        lines.append(
            f"| {describe[kind]} | {row['count']} | {ms(row['p50'])} | {ms(row['p90'])} | {ms(row['p99'])} "
            f"| {ms(row['max'])} | {ms(c['p50'])}, {ms(c['p99'])} |"
        )
    lines.append("")
    b = r.get("burst")
    if b:
        lines += [
            f"Throughput: {b['held']} DELETEs held on b at once, then approved through a by {b['voters']} "
            "concurrent voters (each its own principal in `oncall`, its own keep-alive connection, one vote "
            f"at a time): **{b['approvals_per_s']:,.0f} approvals/s** ({b['held']} in {b['seconds']:.2f} s "
            "from the first vote sent to the last request at the upstream; the votes themselves took "
            f"{b['votes_answered_s']:.2f} s, each call {ms(b['vote_call_ms']['p50'])} at p50 and "
            f"{ms(b['vote_call_ms']['p99'])} at p99). Holding them: {b['held']} approvals created on b "
            f"and listed by a within {b['created_visible_s']:.2f} s ({b['created_per_s']:,.0f}/s).",
            "",
        ]
    lines += [
        f"- Goal (from the issue): a request held on one node released through another within "
        f"{GOAL_CLUSTER_P99_MS:g} ms at p99. "
        + (f"**Met**: {ms(cross_p99)}." if met else f"**Not met**: {ms(cross_p99)}."),
        CLUSTER_END,
    ]
    return lines


def cut_section(text, begin, end):
    """(text without the marked section, the section's lines or None)."""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        section, after = rest.split(end, 1)
        return before.rstrip("\n") + "\n\n" + after.lstrip("\n"), (begin + section + end).splitlines()
    return text, None


def dedent(text):
    lines = text.splitlines()
    indents = [len(l) - len(l.lstrip()) for l in lines[1:] if l.strip()]
    cut = min(indents) if indents else 0
    return "\n".join([lines[0].strip()] + [l[cut:] for l in lines[1:]]) if lines else ""


def split_existing(text, history):
    """An existing report as (head, method, policy section) line lists."""
    policy = None
    if POLICY_BEGIN in text and POLICY_END in text:
        before, rest = text.split(POLICY_BEGIN, 1)
        section, after = rest.split(POLICY_END, 1)
        policy = (POLICY_BEGIN + section + POLICY_END).splitlines()
        text = before.rstrip("\n") + "\n\n" + after.lstrip("\n")
    if history:
        first = history.splitlines()[0]
        if f"\n{first}\n" in text:
            text = text.split(f"\n{first}\n", 1)[0]
    if "\n## Method\n" in text:
        head, method = text.split("\n## Method\n", 1)
        method = "## Method\n" + method
    else:
        head, method = text, ""
    return head.rstrip("\n").splitlines() + [""], method.rstrip("\n").splitlines() + [""], policy


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, type=Path, help="the load bench's results")
    ap.add_argument(
        "--criterion",
        type=Path,
        default=ROOT / "target" / "criterion",
        help="criterion's output directory (default: target/criterion)",
    )
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    # Measured changes, kept by hand beside this script: what changed, and the
    # figures and command that showed it. Appended verbatim.
    history_file = Path(__file__).with_name("history.md")
    history = history_file.read_text().rstrip() if history_file.exists() else ""
    existing = args.out.read_text() if args.out.exists() else ""
    existing, old_audit = cut_section(existing, AUDIT_BEGIN, AUDIT_END)
    existing, old_approvals = cut_section(existing, APPROVALS_BEGIN, APPROVALS_END)
    existing, old_reload = cut_section(existing, RELOAD_BEGIN, RELOAD_END)
    existing, old_cluster = cut_section(existing, CLUSTER_BEGIN, CLUSTER_END)
    old_head, old_method, old_policy = split_existing(existing, history)

    if (args.results / "runs.tsv").exists():
        head, method = render_load(args.results)
    elif existing:
        print(f"report: no load results in {args.results}; keeping the load figures of {args.out}",
              file=sys.stderr)
        head, method = old_head, old_method
    else:
        head = [
            "# Benchmarks",
            "",
            "No load figures yet: run `benches/run` (see [benches/README.md](benches/README.md)).",
            "",
        ]
        method = []

    policy = render_policies(args.criterion)
    if policy is None:
        if old_policy:
            print(f"report: no policy results in {args.criterion}; keeping those of {args.out}",
                  file=sys.stderr)
        policy = old_policy

    audit = render_audit(args.criterion)
    if audit is None:
        audit = old_audit

    approvals = render_approvals(args.results)
    if approvals is None:
        approvals = old_approvals
    reload = render_reload(args.results)
    if reload is None:
        reload = old_reload
    cluster = render_cluster(args.results)
    if cluster is None:
        cluster = old_cluster

    md = list(head)
    if policy:
        md += policy + [""]
    if audit:
        md += audit + [""]
    if approvals:
        md += approvals + [""]
    if reload:
        md += reload + [""]
    if cluster:
        md += cluster + [""]
    md += method
    if history:
        md += [history, ""]
    while len(md) > 1 and md[-1] == "" and md[-2] == "":
        md.pop()
    args.out.write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
