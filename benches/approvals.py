#!/usr/bin/env python3
"""The approvals bench (stdlib only): release latency and memory per held request.

Runs target/release/airlock with the bundled approval-rules policy (DELETE
needs one approver from `oncall`) in front of an upstream in this process,
and measures, over real sockets:

  release latency  for each of --approvals held DELETEs, one at a time: from
                   just before the approve call is sent to the moment the
                   upstream reads the released request (one clock: the
                   upstream runs in this process). The approve call's own
                   round trip is reported beside it.
  memory           the proxy's resident set (VmRSS) before and with --held
                   requests held at once (each with a --body-bytes body),
                   divided by --held.

Approval ids come from the event stream (GET /v1/approvals/stream), as an
approver's tool would learn them. Writes one JSON file (--out) for report.py.
"""

import argparse
import hashlib
import http.client
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import ARRIVALS, ArrivalRecorder, free_port, percentile, write_result, rss_kib, start_airlock, start_upstream, stop



class Events:
    """The approval event stream, read in a thread: created approval ids in order."""

    def __init__(self, admin_port, token):
        self.created = []
        self.cond = threading.Condition()
        self.sock = socket.create_connection(("127.0.0.1", admin_port))
        self.sock.sendall(
            f"GET /v1/approvals/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        buffer = b""
        event = None
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                line = line.strip(b"\r")
                # chunked framing lines (sizes) are skipped: they parse as neither field
                if line.startswith(b"event: "):
                    event = line[7:].decode()
                elif line.startswith(b"data: ") and event == "created":
                    approval = json.loads(line[6:])
                    with self.cond:
                        self.created.append(approval["id"])
                        self.cond.notify_all()

    def wait_for(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.created) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"only {len(self.created)} of {count} approvals were created")
                self.cond.wait(left)
            return list(self.created)


def held_request(port, path, token, body=b""):
    """Send a DELETE and return the socket (the reply comes when it is decided)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"DELETE {path} HTTP/1.1\r\nHost: bench\r\nProxy-Authorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return s


def read_status(s):
    s.settimeout(30)
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    s.close()
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--airlock", required=True, type=Path)
    ap.add_argument("--policy", required=True, type=Path, help="approval-rules.wasm")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--approvals", type=int, default=500)
    ap.add_argument("--held", type=int, default=500)
    ap.add_argument("--body-bytes", type=int, default=1024)
    args = ap.parse_args()

    upstream = start_upstream(ArrivalRecorder)

    work = Path(tempfile.mkdtemp(prefix="airlock-approvals-bench-"))
    (work / "policies").mkdir()
    (work / "policies" / "approval-rules.wasm").write_bytes(args.policy.read_bytes())
    (work / "policies" / "approval-rules.toml").write_text(
        '[[rules]]\nmethods = ["DELETE"]\napprovers = { groups = ["oncall"], quorum = 1, timeout_seconds = 600 }\n'
    )
    tokens = {name: secrets.token_hex(16) for name in ("bob", "client")}
    proxy_port, admin_port = free_port(), free_port()
    principals = "".join(
        f'[[principal]]\nsubject = "{name}"\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        + ('groups = ["oncall"]\nroles = ["approver"]\n' if name == "bob" else "")
        + "\n"
        for name, token in tokens.items()
    )
    limit = args.held + args.approvals + 10
    config = (
        f'[server]\ndata_dir = "{work / "data"}"\nworker_threads = 1\n\n'
        f'[admin]\naddress = "127.0.0.1:{admin_port}"\n\n'
        f'[approvals]\nmax_pending_per_principal = {limit}\nmax_created_per_minute = {limit}\n\n'
        f'[policies]\ndirectory = "{work / "policies"}"\n\n'
        f'[[listener]]\nname = "public"\naddress = "127.0.0.1:{proxy_port}"\n\n'
        f'[[pool]]\nname = "web"\nbackends = [{{ address = "127.0.0.1:{upstream.server_port}" }}]\n\n'
        f'[[route]]\npool = "web"\npolicies = ["approval-rules"]\n\n{principals}'
    )
    proxy = start_airlock(args.airlock, work, config, admin_port)
    try:
        events = Events(admin_port, tokens["bob"])
        api = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
        auth = {"Authorization": f"Bearer {tokens['bob']}", "Content-Type": "application/json"}

        # Release latency, one held request at a time.
        release_us, call_us = [], []
        for i in range(args.approvals):
            path = f"/release/{i}"
            client = held_request(proxy_port, path, tokens["client"])
            approval = events.wait_for(i + 1)[i]
            start = time.perf_counter_ns()
            api.request("POST", f"/v1/approvals/{approval}/approve", body=b"{}", headers=auth)
            answer = api.getresponse()
            answer.read()
            answered = time.perf_counter_ns()
            if answer.status != 200 or read_status(client) != 200:
                raise RuntimeError(f"approval {approval}: {answer.status}")
            release_us.append((ARRIVALS[path] - start) / 1000)
            call_us.append((answered - start) / 1000)

        # Memory per held request.
        time.sleep(0.5)
        before = rss_kib(proxy.pid)
        body = os.urandom(args.body_bytes // 2).hex().encode()[: args.body_bytes]
        waiting = [
            held_request(proxy_port, f"/memory/{i}", tokens["client"], body) for i in range(args.held)
        ]
        events.wait_for(args.approvals + args.held, timeout=120)
        time.sleep(0.5)
        during = rss_kib(proxy.pid)
        for s in waiting:
            s.close()

        result = {
            "approvals": args.approvals,
            "release_us": {
                "p50": percentile(release_us, 50),
                "p90": percentile(release_us, 90),
                "p99": percentile(release_us, 99),
                "max": max(release_us),
                "mean": statistics.mean(release_us),
            },
            "approve_call_us": {
                "p50": percentile(call_us, 50),
                "p99": percentile(call_us, 99),
            },
            "held": args.held,
            "body_bytes": args.body_bytes,
            "rss_before_kib": before,
            "rss_held_kib": during,
            "per_held_bytes": (during - before) * 1024 / args.held,
        }
        write_result(args.out, result)
    finally:
        stop(proxy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
