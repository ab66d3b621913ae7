#!/usr/bin/env python3
"""The reload bench (stdlib only): from a policy file's last write to the
first request judged by the new version.

Runs target/release/airlock with the bundled deny-list policy in its watched
folder in front of an upstream in this process. Each round replaces a file
in the folder the way a deployment tool would (write a temporary file, then
rename it into place; the clock starts right after the rename) so that the
decision on `GET /a` flips, then sends `GET /a` over a keep-alive connection
until the answer shows the new decision. Two kinds of round, alternating:

  parameters  deny-list.toml replaced (`/a` denied, then `/b`): a reload of
              the same component with new parameters
  component   deny-list.wasm replaced by the allow-all component and back:
              a new component compiled (after the first two rounds, from
              wasmtime's cache of compiled code)

Writes one JSON file (--out) for report.py.
"""

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from benchlib import free_port, percentile, write_result, start_airlock, start_upstream, stop


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def replace(path: Path, data: bytes) -> float:
    """Write `data` to `path` through a rename; the time right after it."""
    staging = path.with_name(path.name + ".staging")
    staging.write_bytes(data)
    os.rename(staging, path)
    return time.perf_counter()


def until_status(conn: http.client.HTTPConnection, expected: int, timeout: float = 10.0) -> float:
    """Send GET /a until it answers `expected`; the time it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        conn.request("GET", "/a")
        response = conn.getresponse()
        response.read()
        if response.status == expected:
            return time.perf_counter()
    raise RuntimeError(f"GET /a never answered {expected}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--airlock", required=True, type=Path)
    ap.add_argument("--policies", required=True, type=Path, help="folder with deny-list.wasm and allow-all.wasm")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=100, help="of each kind")
    args = ap.parse_args()

    deny_list = (args.policies / "deny-list.wasm").read_bytes()
    allow_all = (args.policies / "allow-all.wasm").read_bytes()
    upstream = start_upstream(Upstream)
    work = Path(tempfile.mkdtemp(prefix="airlock-reload-bench-"))
    folder = work / "policies"
    folder.mkdir()
    (folder / "deny-list.wasm").write_bytes(deny_list)
    deny = lambda path: f'[[rules]]\npaths = ["{path}"]\n'.encode()
    (folder / "deny-list.toml").write_bytes(deny("/a"))
    proxy_port, admin_port = free_port(), free_port()
    config = (
        f'[server]\ndata_dir = "{work / "data"}"\nworker_threads = 1\n\n'
        f'[admin]\naddress = "127.0.0.1:{admin_port}"\n\n'
        f'[policies]\ndirectory = "{folder}"\n\n'
        f'[[listener]]\nname = "public"\naddress = "127.0.0.1:{proxy_port}"\n\n'
        f'[[pool]]\nname = "web"\nbackends = [{{ address = "127.0.0.1:{upstream.server_port}" }}]\n\n'
        f'[[route]]\npool = "web"\npolicies = ["deny-list"]\n'
    )
    proxy = start_airlock(args.airlock, work, config, admin_port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        until_status(conn, 403)
        results = {"parameters": [], "component": []}
        for i in range(args.rounds):
            # parameters: /a allowed (deny /b), then denied again
            for path, expected in (("/b", 200), ("/a", 403)):
                written = replace(folder / "deny-list.toml", deny(path))
                results["parameters"].append((until_status(conn, expected) - written) * 1000)
            # component: allow-all (everything passes), then deny-list again
            for component, expected in ((allow_all, 200), (deny_list, 403)):
                written = replace(folder / "deny-list.wasm", component)
                results["component"].append((until_status(conn, expected) - written) * 1000)
        summary = {
            kind: {
                "swaps": len(ms),
                "p50": percentile(ms, 50),
                "p90": percentile(ms, 90),
                "p99": percentile(ms, 99),
                "max": max(ms),
                "mean": statistics.mean(ms),
            }
            for kind, ms in results.items()
        }
        result = {
            "latency_ms": summary,
        }
        write_result(args.out, result)
    finally:
        stop(proxy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
