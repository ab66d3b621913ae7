#!/usr/bin/env python3
"""Turns the raw outputs of benches/run into BENCHMARKS.md (stdlib only).

Input, in --results DIR (written by benches/run):
  meta.tsv     key<TAB>value: machine, versions, settings, the invocation
  targets.tsv  name<TAB>description, one line per row, in table order
  runs.tsv     one line per wrk run (header line first): target, round,
               position in the round, wrk output file, wrk exit code, CPU use
  *.txt        wrk --latency outputs

Every target becomes one row with the same columns, so adding a row to the
bench needs no change here. The goal check compares the rows named `airlock`
and `nginx` when both ran.
"""

import argparse
import csv
import re
import statistics
import sys
from pathlib import Path

GOAL_RPS_RATIO = 1.1  # the goal: airlock >= 1.1x nginx req/s, p99 no worse

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    res = args.results

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

    # Measured changes, kept by hand beside this script: what changed, and the
    # figures and command that showed it. Appended verbatim.
    history = Path(__file__).with_name("history.md")
    if history.exists():
        w(history.read_text().rstrip())
        w("")

    args.out.write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
