"""Shared by the Python benches (stdlib only): ports, an upstream in this
process, starting target/release/airlock on a config, and its memory."""

import http.client
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # airlock closing its pooled connections at exit is not news


def start_upstream(handler: type[BaseHTTPRequestHandler]) -> QuietServer:
    """An HTTP/1.1 upstream in a thread of this process."""
    handler.protocol_version = "HTTP/1.1"
    handler.log_message = lambda *args: None
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


ARRIVALS: dict[str, int] = {}  # path -> perf_counter_ns when the upstream read the request


class ArrivalRecorder(BaseHTTPRequestHandler):
    """An upstream that answers DELETEs with 200 and notes when each path
    arrived in ARRIVALS (one clock with the bench: it runs in its process)."""

    def do_DELETE(self):
        ARRIVALS[self.path] = time.perf_counter_ns()
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_airlock(binary: Path, work: Path, config: str, admin_port: int) -> subprocess.Popen:
    """`airlock run` on `config` (written to work/airlock.toml), once /readyz answers."""
    (work / "airlock.toml").write_text(config)
    log = open(work / "airlock.log", "w")
    proxy = subprocess.Popen(
        [str(binary), "run", "--config", str(work / "airlock.toml")], stdout=log, stderr=log
    )
    for _ in range(400):
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proxy
        except OSError:
            pass
        time.sleep(0.05)
    proxy.kill()
    raise RuntimeError(f"airlock did not start; see {work / 'airlock.log'}")


def stop(proxy: subprocess.Popen) -> None:
    proxy.terminate()
    try:
        proxy.wait(20)
    except subprocess.TimeoutExpired:
        proxy.kill()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def write_result(out: Path, result: dict) -> None:
    """Stamp `result` with the date and the machine's load, write it to
    `out` as JSON for report.py, and show it."""
    import json
    import os

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **result,
        "nproc": os.cpu_count(),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
