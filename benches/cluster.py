#!/usr/bin/env python3
"""The cluster bench (stdlib only): approvals across two Airlock nodes sharing etcd.

Starts, all on loopback and in a temp dir: a three-member etcd cluster
(--etcd, `--heartbeat-interval 100 --election-timeout 1000`), an upstream in
this process, and two Airlock nodes, a and b (--airlock), each with its own
data dir and `[storage] backend = "etcd"` on that cluster. Both run the
bundled approval-rules policy: a DELETE needs one approver from `oncall`.
Requests are held on b. Measures, over real sockets:

  release latency  --releases held DELETEs of each kind, one at a time,
                   the two kinds alternating (the order swapped every round):
                     cross  the vote sent to a's admin API
                     same   the vote sent to b's (where the request waits)
                   from just before the approve call is sent to the moment
                   the upstream reads the released request (one clock: the
                   upstream runs in this process, and it is matched to the
                   request by its unique path). Before each vote the bench
                   waits until a's API shows the approval, so both kinds
                   start from the same state: the approval in etcd and seen
                   by the other node. The approve call's round trip is
                   reported beside it.
  approvals/s      a burst of --burst DELETEs held on b at once, then
                   approved through a by --voters concurrent voters (each its
                   own principal in `oncall` and its own keep-alive
                   connection): --burst / (last release - first vote sent).

Approval ids come from b's event stream (release latency) and from a's
`GET /v1/approvals?state=pending` (the burst), matched by path. Every wait
has a deadline; every process is stopped at the end, also on failure or
SIGTERM. Writes one JSON file (--out) for report.py.
"""

import argparse
import ctypes
import hashlib
import http.client
import json
import queue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no benches/__pycache__ in the work tree
from benchlib import ARRIVALS, ArrivalRecorder, free_port, percentile, start_airlock, start_upstream, stop, write_result

HEARTBEAT_MS = 100
ELECTION_MS = 1000


# ---------------------------------------------------------------- etcd


def _die_with_parent():
    """In the child before exec: SIGKILL when this bench dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def http_json(port, method, path, body=None, headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        c.close()


class Etcd:
    """A three-member etcd cluster on loopback, data and logs under `work`."""

    def __init__(self, binary, work, members=3):
        self.binary = binary
        self.work = work
        self.names = [f"etcd{i}" for i in range(members)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs = []

    def start(self):
        """Start every member (stop() stops those started, also after a failure here)."""
        self.initial = ",".join(
            f"{name}=http://127.0.0.1:{peer}" for name, peer in zip(self.names, self.peer_ports)
        )
        self.token = "airlock-bench-" + secrets.token_hex(4)
        for index in range(len(self.names)):
            self.procs.append(self.start_member(index))

    def start_member(self, index, die_with_parent=True):
        """Start member `index` (again, after a kill: its data dir is kept).
        `die_with_parent` kills it when the thread that started it ends
        (PR_SET_PDEATHSIG follows the thread): off for a restart from a
        thread that ends before the member should."""
        name, client, peer = self.names[index], self.client_ports[index], self.peer_ports[index]
        log = open(self.work / f"{name}.log", "a")
        return subprocess.Popen(
            [
                str(self.binary),
                "--name", name,
                "--data-dir", str(self.work / name),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", self.initial,
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new",
                "--heartbeat-interval", str(HEARTBEAT_MS),
                "--election-timeout", str(ELECTION_MS),
                "--logger", "zap",
                "--log-level", "warn",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )

    @property
    def endpoints(self):
        return [f"http://127.0.0.1:{port}" for port in self.client_ports]

    def wait_healthy(self, timeout=60):
        """Until every member answers /health true (it has a leader)."""
        deadline = time.monotonic() + timeout
        pending = set(self.client_ports)
        while pending:
            for proc, name in zip(self.procs, self.names):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {self.work / (name + '.log')}")
            for port in list(pending):
                try:
                    status, body = http_json(port, "GET", "/health", timeout=1)
                    if status == 200 and body.get("health") == "true":
                        pending.discard(port)
                except (OSError, ValueError):
                    pass
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd not healthy within {timeout} s; logs in {self.work}")
                time.sleep(0.1)

    def version(self):
        try:
            return http_json(self.client_ports[0], "GET", "/version")[1].get("etcdserver", "?")
        except (OSError, ValueError, AttributeError):
            return "?"

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused member cannot stop
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def remove_work(work, etcd, keep, bench):
    """Remove the temp dir `work`, or with `keep` only etcd's data in it
    (preallocated WALs): the logs and configs stay for a look."""
    if keep:
        for name in etcd.names if etcd else []:
            shutil.rmtree(work / name, ignore_errors=True)
        print(f"{bench}: logs and configs kept in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- airlock


class Events:
    """A node's approval event stream, read in a thread: path -> approval id."""

    def __init__(self, admin_port, token):
        self.by_path = {}
        self.lagged = 0
        self.status = None
        self.answered = threading.Event()
        self.cond = threading.Condition()
        self.sock = socket.create_connection(("127.0.0.1", admin_port), timeout=10)
        self.sock.settimeout(None)
        self.sock.sendall(
            f"GET /v1/approvals/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        threading.Thread(target=self.read, daemon=True).start()
        # the node subscribes before it answers: from here on no event is missed
        if not self.answered.wait(10) or self.status != 200:
            raise RuntimeError(f"the event stream on :{admin_port} answered {self.status}")

    def read(self):
        buffer = b""
        event = None
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.answered.set()
                return
            buffer += chunk
            if self.status is None:
                if b"\r\n\r\n" not in buffer:
                    continue
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                self.status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
                self.answered.set()
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                line = line.strip(b"\r")
                # chunked framing lines (sizes) are skipped: they parse as neither field
                if line.startswith(b"event: "):
                    event = line[7:].decode()
                    if event == "lagged":
                        self.lagged += 1
                elif line.startswith(b"data: ") and event == "created":
                    approval = json.loads(line[6:])
                    with self.cond:
                        self.by_path[approval["action"]["path"]] = approval["id"]
                        self.cond.notify_all()

    def wait_for(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        with self.cond:
            while path not in self.by_path:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no approval was created for {path} within {timeout} s")
                self.cond.wait(left)
            return self.by_path[path]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def held_request(port, path, token):
    """Send a DELETE and return the socket (the reply comes when it is decided)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(
        f"DELETE {path} HTTP/1.1\r\nHost: bench\r\nProxy-Authorization: Bearer {token}\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    return s


def read_status(s, timeout=30):
    s.settimeout(timeout)
    head = b""
    try:
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError:
        pass
    s.close()
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0


class Admin:
    """One keep-alive connection to a node's admin API as one principal."""

    def __init__(self, port, token):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=body, headers=self.auth)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data

    def approve(self, approval):
        """(status, ns just before sending, ns when the answer was read)."""
        start = time.perf_counter_ns()
        status, _ = self.call("POST", f"/v1/approvals/{approval}/approve", b"{}")
        return status, start, time.perf_counter_ns()

    def wait_visible(self, approval, timeout=30):
        """Until this node's API shows `approval` pending."""
        deadline = time.monotonic() + timeout
        while True:
            status, data = self.call("GET", f"/v1/approvals/{approval}")
            if status == 200 and json.loads(data)["state"] == "pending":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"approval {approval} not visible on :{self.port} within {timeout} s ({status})")
            time.sleep(0.002)

    def close(self):
        self.conn.close()


def node_config(work, name, proxy_port, admin_port, upstream_port, endpoints, principals, limit):
    return (
        f'[server]\ndata_dir = "{work / "data"}"\nworker_threads = 1\n\n'
        f'[admin]\naddress = "127.0.0.1:{admin_port}"\n\n'
        f'[audit]\nnode = "{name}"\n\n'
        f'[storage]\nbackend = "etcd"\nendpoints = {json.dumps(endpoints)}\nprefix = "/airlock"\n\n'
        f"[approvals]\nmax_pending_per_principal = {limit}\nmax_created_per_minute = {limit}\n\n"
        f'[policies]\ndirectory = "{work / "policies"}"\n\n'
        f'[[listener]]\nname = "public"\naddress = "127.0.0.1:{proxy_port}"\n\n'
        f'[[pool]]\nname = "web"\nbackends = [{{ address = "127.0.0.1:{upstream_port}" }}]\n\n'
        f'[[route]]\npool = "web"\npolicies = ["approval-rules"]\n\n{principals}'
    )


def wait_members(admin, names, timeout=30):
    """Until the node's GET /v1/cluster lists every one of `names`; its answer."""
    deadline = time.monotonic() + timeout
    while True:
        status, data = admin.call("GET", "/v1/cluster")
        if status == 200:
            body = json.loads(data)
            if {m["node"] for m in body.get("members", [])} >= set(names):
                return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"/v1/cluster on :{admin.port} did not list {names} within {timeout} s: {status} {data[:300]!r}")
        time.sleep(0.1)


def summary_ms(values_ns):
    ms = [v / 1e6 for v in values_ns]
    return {
        "count": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "mean": statistics.mean(ms),
    }


# ---------------------------------------------------------------- measuring


def release_latency(args, nodes, events, client_token, warmup):
    """Alternating cross/same releases; {kind: ([release ns], [call ns])}."""
    a, b = nodes["a"], nodes["b"]
    out = {"cross": ([], []), "same": ([], [])}
    rounds = warmup + args.releases
    for r in range(rounds):
        order = ("cross", "same") if r % 2 == 0 else ("same", "cross")
        for kind in order:
            path = f"/{'warm' if r < warmup else kind}/{r}-{kind}"
            client = held_request(b["proxy"], path, client_token)
            try:
                approval = events.wait_for(path)
                a["admin"].wait_visible(approval)
                voter = a["admin"] if kind == "cross" else b["admin"]
                status, start, answered = voter.approve(approval)
                if status != 200:
                    raise RuntimeError(f"{kind} vote on {approval}: {status}")
                got = read_status(client)
                client = None
                if got != 200 or path not in ARRIVALS:
                    raise RuntimeError(f"{kind} release of {path}: the client got {got}")
            finally:
                if client is not None:
                    client.close()
            if r >= warmup:
                out[kind][0].append(ARRIVALS[path] - start)
                out[kind][1].append(answered - start)
        if r >= warmup and (r + 1 - warmup) % 50 == 0:
            print(f"cluster: release latency {r + 1 - warmup}/{args.releases} rounds", file=sys.stderr)
    return out


def burst(args, nodes, client_token, voter_tokens):
    """N held on b, approved through a by concurrent voters; the figures."""
    a, b = nodes["a"], nodes["b"]
    paths = [f"/burst/{i}" for i in range(args.burst)]
    created_start = time.perf_counter_ns()
    clients = [held_request(b["proxy"], path, client_token) for path in paths]
    try:
        # every burst approval as a's API lists it
        lister = Admin(a["admin_port"], voter_tokens[0])
        ids = {}
        deadline = time.monotonic() + max(60, args.burst / 5)
        try:
            while len(ids) < len(paths):
                status, data = lister.call("GET", "/v1/approvals?state=pending")
                if status == 200:
                    for approval in json.loads(data)["approvals"]:
                        if approval["action"]["path"].startswith("/burst/"):
                            ids[approval["action"]["path"]] = approval["id"]
                if len(ids) < len(paths):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {len(ids)} of {len(paths)} burst approvals visible on a")
                    time.sleep(0.05)
        finally:
            lister.close()
        created_ns = time.perf_counter_ns() - created_start

        work = queue.Queue()
        for path in paths:
            work.put(ids[path])
        sent, calls, failures = [], [], []
        lock = threading.Lock()
        gate = threading.Barrier(len(voter_tokens))

        def voter(token):
            admin = Admin(a["admin_port"], token)
            try:
                gate.wait(30)
                while True:
                    try:
                        approval = work.get_nowait()
                    except queue.Empty:
                        return
                    status, start, answered = admin.approve(approval)
                    with lock:
                        sent.append(start)
                        calls.append(answered - start)
                        if status != 200:
                            failures.append(f"{approval}: {status}")
            except Exception as error:  # reported below, the thread ends
                with lock:
                    failures.append(repr(error))
            finally:
                admin.close()

        threads = [threading.Thread(target=voter, args=(t,), daemon=True) for t in voter_tokens]
        for t in threads:
            t.start()
        deadline = time.monotonic() + max(120, args.burst)
        for t in threads:
            t.join(max(0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            raise RuntimeError("a voter did not finish in time")
        if failures:
            raise RuntimeError(f"{len(failures)} burst votes failed, e.g. {failures[:3]}")
        deadline = time.monotonic() + 60
        while any(path not in ARRIVALS for path in paths):
            if time.monotonic() > deadline:
                missing = sum(1 for path in paths if path not in ARRIVALS)
                raise RuntimeError(f"{missing} of {len(paths)} approved burst requests never reached the upstream")
            time.sleep(0.01)
        bad = [s for s in (read_status(c, timeout=10) for c in clients) if s != 200]
        clients = []
        if bad:
            raise RuntimeError(f"{len(bad)} burst clients got no 200: {bad[:5]}")
    finally:
        for c in clients:
            c.close()
    first = min(sent)
    last = max(ARRIVALS[path] for path in paths)
    seconds = (last - first) / 1e9
    return {
        "held": args.burst,
        "voters": len(voter_tokens),
        "seconds": seconds,
        "approvals_per_s": args.burst / seconds,
        "votes_answered_s": (max(s + c for s, c in zip(sent, calls)) - first) / 1e9,
        "vote_call_ms": {"p50": percentile(calls, 50) / 1e6, "p99": percentile(calls, 99) / 1e6},
        "created_visible_s": created_ns / 1e9,
        "created_per_s": args.burst / (created_ns / 1e9),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--airlock", type=Path, default=Path(__file__).resolve().parent.parent / "target/release/airlock")
    ap.add_argument("--policy", type=Path, help="approval-rules.wasm (default: the newest in the binary's build dir)")
    ap.add_argument("--etcd", type=Path, default=Path("/usr/bin/etcd"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results/cluster.json")
    ap.add_argument("--releases", type=int, default=200, help="held requests released, of each kind")
    ap.add_argument("--warmup", type=int, default=5, help="unrecorded rounds first")
    ap.add_argument("--burst", type=int, default=500, help="held at once for approvals/s (0: skip)")
    ap.add_argument("--voters", type=int, default=4, help="concurrent voters in the burst")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    if args.releases < 1 or args.voters < 1 or args.burst < 0 or args.warmup < 0:
        ap.error("--releases and --voters at least 1, --burst and --warmup at least 0")

    # SIGTERM/SIGHUP (benches/run stopped, a closed terminal) unwind through
    # the finally blocks below like Ctrl-C does
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: sys.exit(128 + number))

    binary = args.airlock.resolve()
    if not binary.is_file():
        sys.exit(f"cluster: {binary} missing; build it (cargo build --release) or pass --airlock")
    policy = args.policy
    if policy is None:
        found = sorted(binary.parent.glob("build/airlock-*/out/policies/approval-rules.wasm"),
                       key=lambda p: p.stat().st_mtime)
        if not found:
            sys.exit(f"cluster: no approval-rules.wasm under {binary.parent}/build; pass --policy")
        policy = found[-1]
    if not args.etcd.is_file():
        sys.exit(f"cluster: {args.etcd} missing (Debian: apt-get install etcd-server); pass --etcd")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="airlock-cluster-bench-"))
    etcd, proxies, events, admins = None, [], [], []
    ok = False
    try:
        etcd = Etcd(args.etcd, work)
        etcd.start()
        etcd.wait_healthy()
        print(f"cluster: etcd {etcd.version()} up on {', '.join(etcd.endpoints)}", file=sys.stderr)
        upstream = start_upstream(ArrivalRecorder)

        voters = [f"voter-{i}" for i in range(1, max(1, args.voters) + 1)]
        tokens = {name: secrets.token_hex(16) for name in ["client", *voters]}
        principals = "".join(
            f'[[principal]]\nsubject = "{name}"\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            + ('groups = ["oncall"]\nroles = ["approver"]\n' if name != "client" else "")
            + "\n"
            for name, token in tokens.items()
        )
        limit = 2 * (args.warmup + args.releases) + args.burst + 10
        nodes = {}
        for name in ("a", "b"):
            node_work = work / name
            (node_work / "policies").mkdir(parents=True)
            (node_work / "policies" / "approval-rules.wasm").write_bytes(policy.read_bytes())
            (node_work / "policies" / "approval-rules.toml").write_text(
                '[[rules]]\nmethods = ["DELETE"]\n'
                'approvers = { groups = ["oncall"], quorum = 1, timeout_seconds = 600 }\n'
            )
            proxy_port, admin_port = free_port(), free_port()
            config = node_config(node_work, name, proxy_port, admin_port, upstream.server_port,
                                 etcd.endpoints, principals, limit)
            proxies.append(start_airlock(binary, node_work, config, admin_port))
            admin = Admin(admin_port, tokens["voter-1"])
            admins.append(admin)
            nodes[name] = {"proxy": proxy_port, "admin_port": admin_port, "admin": admin, "pid": proxies[-1].pid}
        cluster = wait_members(nodes["a"]["admin"], ["a", "b"])
        wait_members(nodes["b"]["admin"], ["a", "b"])
        print(f"cluster: nodes a and b up ({binary}), both members", file=sys.stderr)

        stream = Events(nodes["b"]["admin_port"], tokens["voter-1"])
        events.append(stream)
        print(f"cluster: release latency, {args.releases} of each kind, alternating", file=sys.stderr)
        latency = release_latency(args, nodes, stream, tokens["client"], args.warmup)
        result = {
            "binary": str(binary),
            "build": "debug" if "/debug/" in str(binary) else "release",
            "etcd_version": etcd.version(),
            "etcd_members": len(etcd.names),
            "heartbeat_ms": HEARTBEAT_MS,
            "election_ms": ELECTION_MS,
            "members": cluster.get("members"),
            "releases": args.releases,
            "release_ms": {kind: summary_ms(rel) for kind, (rel, _) in latency.items()},
            "vote_call_ms": {kind: summary_ms(call) for kind, (_, call) in latency.items()},
        }
        if args.burst > 0:
            print(f"cluster: burst of {args.burst} held on b, {len(voters)} voters on a", file=sys.stderr)
            result["burst"] = burst(args, nodes, tokens["client"], [tokens[v] for v in voters])
        if stream.lagged:
            result["stream_lagged"] = stream.lagged
        write_result(args.out, result)
        ok = True
    finally:
        for e in events:
            e.close()
        for admin in admins:
            admin.close()
        for proxy in proxies:
            stop(proxy)
        if etcd is not None:
            etcd.stop()
        remove_work(work, etcd, keep=args.keep or not ok, bench="cluster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
