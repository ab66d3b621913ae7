#!/usr/bin/env python3
"""benches/side_by_side.py: two Airlock binaries under the same load, in
alternating rounds, for a change whose effect is smaller than this host's
swings between runs (compare within a round, never across runs).

    benches/side_by_side.py [--audit off|batched|durable] [--rounds 3]
                            [--seconds 8] [--prefill 0] [--verify-load 0]
                            BEFORE AFTER

Each run starts one binary the way `benches/run` starts its airlock rows
(one worker, one route to a single-worker nginx upstream answering a fixed
200, pinned: Airlock on CPU 0, wrk and the upstream on CPU 1), warms it for
2 s, runs `wrk -t1 -c50 --latency`, then reads the audit commit and
checkpoint histograms from the admin /metrics (counts include the warm-up). Prints one line per run and
the per-round ratio AFTER / BEFORE. With --prefill S, S seconds of unrecorded
load first grow the audit trail; with --verify-load N, N clients loop on
GET /v1/audit/verify (as an admin) while wrk measures, so the figures show
what auditors cost the proxy (the line adds the verifications answered 200
and refused); --backoff makes them wait as a 429's Retry-After says. Needs nginx, wrk and taskset. A tool for developers:
BENCHMARKS.md comes from benches/run alone.
"""

import argparse
import hashlib
import http.client
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchlib import free_port, start_airlock, stop

UPSTREAM = """worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000;
location / {{ return 200 "ok\\n"; }} }} }}
"""

AIRLOCK = """{audit_off}
[server]
worker_threads = 1
data_dir = "{dir}/data"

[admin]
address = "127.0.0.1:{admin}"

[[listener]]
name = "public"
address = "127.0.0.1:{port}"

[[pool]]
name = "bench"
backends = [{{ address = "127.0.0.1:{upstream}" }}]

[[route]]
pool = "bench"
{route}

# Reads /metrics and verifies the trail (admin: every role).
[[principal]]
subject = "bench"
token_sha256 = "{token_sha256}"
roles = ["admin"]
"""

# The bench principal's token; only its SHA-256 is in the config.
TOKEN = "side-by-side-bench-token"


def histogram_mean(metrics: str, name: str) -> str:
    total = re.search(rf"^{name}_sum (\S+)", metrics, re.M)
    count = re.search(rf"^{name}_count (\S+)", metrics, re.M)
    if not total or not count or float(count.group(1)) == 0:
        return "-"
    return f"{int(float(count.group(1)))} x {float(total.group(1)) / float(count.group(1)) * 1000:.2f} ms"


def verify_loop(admin: int, stop: threading.Event, statuses: list, backoff: bool) -> None:
    """GET /v1/audit/verify again and again until `stop`, noting each status
    (0: the connection failed); with `backoff`, waiting as a 429's
    Retry-After says (as a well-behaved client would), else at once."""
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
            c.request("GET", "/v1/audit/verify", headers={"Authorization": f"Bearer {TOKEN}"})
            response = c.getresponse()
            response.read()
            statuses.append(response.status)
            c.close()
            if backoff and response.status == 429:
                stop.wait(float(response.getheader("retry-after") or 1))
        except OSError:
            statuses.append(0)
            time.sleep(0.05)


def run(
    binary: Path,
    audit: str,
    seconds: int,
    upstream: int,
    work: Path,
    prefill: int = 0,
    verifiers: int = 0,
    backoff: bool = False,
) -> tuple[float, str]:
    port, admin = free_port(), free_port()
    work.mkdir(parents=True)
    config = AIRLOCK.format(
        audit_off="[audit]\nenabled = false" if audit == "off" else "",
        dir=work,
        admin=admin,
        port=port,
        upstream=upstream,
        route='audit = "durable"' if audit == "durable" else "",
        token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(),
    )
    pinned = work / "airlock"
    pinned.write_text(f'#!/bin/sh\nexec taskset -c 0 "{binary.resolve()}" "$@"\n')
    pinned.chmod(0o755)
    proxy = start_airlock(pinned, work, config, admin)
    try:
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c50", "--latency"]
        url = f"http://127.0.0.1:{port}/"
        subprocess.run(wrk + [f"-d{2 + prefill}s", url], check=True, capture_output=True)
        stop_verifying, statuses = threading.Event(), []
        threads = [
            threading.Thread(target=verify_loop, args=(admin, stop_verifying, statuses, backoff), daemon=True)
            for _ in range(verifiers)
        ]
        for thread in threads:
            thread.start()
        out = subprocess.run(wrk + [f"-d{seconds}s", url], check=True, capture_output=True, text=True).stdout
        stop_verifying.set()
        for thread in threads:
            thread.join(timeout=60)
        scrape = urllib.request.Request(
            f"http://127.0.0.1:{admin}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        metrics = urllib.request.urlopen(scrape).read().decode()
    finally:
        stop(proxy)
    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    line = (
        f"{rps:9.0f} req/s  p99 {p99:>8}  commits {histogram_mean(metrics, 'airlock_audit_commit_seconds')}"
        f"  checkpoints {histogram_mean(metrics, 'airlock_audit_checkpoint_seconds')}"
    )
    if verifiers:
        line += f"  verify: {statuses.count(200)} ok, {len(statuses) - statuses.count(200)} refused or failed"
    return rps, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit", choices=["off", "batched", "durable"], default="batched")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--prefill", type=int, default=0, help="seconds of load to grow the trail first")
    parser.add_argument("--verify-load", type=int, default=0, help="clients looping on /v1/audit/verify")
    parser.add_argument("--backoff", action="store_true", help="verify clients wait as a 429's Retry-After says")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(
                f"side_by_side: {tool} not found (install with: apt-get install nginx wrk util-linux;"
                " benches/run installs them too)"
            )
    with tempfile.TemporaryDirectory(prefix="airlock-sbs-") as tmp:
        tmp = Path(tmp)
        upstream_port = free_port()
        (tmp / "nginx.conf").write_text(UPSTREAM.format(dir=tmp, port=upstream_port))
        upstream = subprocess.Popen(
            ["taskset", "-c", "1", "nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
            stderr=subprocess.DEVNULL,
        )
        try:
            for round_ in range(1, args.rounds + 1):
                figures = []
                for label, binary in (("before", args.before), ("after", args.after)):
                    rps, line = run(
                        binary,
                        args.audit,
                        args.seconds,
                        upstream_port,
                        tmp / f"{round_}-{label}",
                        args.prefill,
                        args.verify_load,
                        args.backoff,
                    )
                    figures.append(rps)
                    print(f"round {round_} {label:6} {line}", flush=True)
                print(f"round {round_} after/before {figures[1] / figures[0]:.2f}x", flush=True)
        finally:
            upstream.terminate()
            upstream.wait()


if __name__ == "__main__":
    main()
