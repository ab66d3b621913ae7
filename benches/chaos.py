#!/usr/bin/env python3
"""The chaos soak (stdlib only): a cluster under load while a driver breaks it.

Starts, all on loopback and in a temp dir: a three-member etcd cluster, an
upstream in this process that counts every request it reads, and three
Airlock nodes (a, b, c) sharing approvals through etcd, each with its own
data dir and audit trail (c's on a small tmpfs when this process may mount
one). Every node runs the bundled approval-rules policy: a DELETE needs two
approvers from `oncall` (timeout 60 s); GETs pass.

For --minutes, under steady load:
  getters    GETs through random nodes;
  holders    DELETEs through random nodes, each on its own path: most wait
             for their answer, some ask `Prefer: respond-async` and get a
             ticket;
  voters     four approvers, each through random nodes, list what is pending
             and approve (or, one time in ten, deny) what they have not
             voted on;
  redeemer   once an async request is approved, sends it with its ticket
             through two different nodes at once;
while a driver, every --fault-every seconds, picks one fault: kill -9 a node
or an etcd member and restart it a few seconds later, SIGSTOP one and
SIGCONT it, or fill c's disk and free it. At most one node and one etcd
member are down at a time: the cluster is meant to survive the loss of one.

Afterwards, with everything up again, it checks over every node's API and
audit trail and the upstream's counts: all nodes agree on every approval's
state; no approval is both approved and denied, and none approved without
two approving votes; every vote acknowledged is counted, exactly once; no
request reached the upstream unless approved, and none twice; a ticket is
redeemed at most once; every DELETE a client got an answer for is in the
answering node's trail; every trail verifies. It writes the figures and
the result to RELIABILITY.md (repository root, or --report) and exits 1
if any check failed.

Run: `benches/chaos.py --minutes 20` (the issue's soak; --minutes 2 for a
look). Needs etcd (Debian: etcd-server) and a built airlock (default
target/debug/airlock: `cargo build -p airlock`).
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import free_port, start_upstream  # noqa: E402
from cluster import Admin, Etcd, node_config, remove_work, wait_members  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUORUM = 2
APPROVAL_TIMEOUT_S = 60
VOTERS = [f"voter-{i}" for i in range(1, 5)]
DISK_MIB = 48


# ---------------------------------------------------------------- upstream


ARRIVED = Counter()  # path -> requests the upstream read
ARRIVED_LOCK = threading.Lock()


class Counting(BaseHTTPRequestHandler):
    """Answers every request 200 and counts it by path."""

    def answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        with ARRIVED_LOCK:
            ARRIVED[self.path] += 1
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = answer
    do_DELETE = answer


# ---------------------------------------------------------------- nodes


class Node:
    """One Airlock node: its config, process and what the driver did to it."""

    def __init__(self, binary, work, name):
        self.binary, self.work, self.name = binary, work, name
        self.proxy_port, self.admin_port = free_port(), free_port()
        self.proc = None
        self.up = threading.Event()  # answering: not killed, not paused
        self.tmpfs = False

    def spawn(self):
        log = open(self.work / "airlock.log", "a")
        self.proc = subprocess.Popen(
            [str(self.binary), "run", "--config", str(self.work / "airlock.toml")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited ({self.proc.returncode}); see {self.work}/airlock.log")
            try:
                status, _ = call(self.admin_port, "GET", "/readyz", timeout=1)
                if status == 200:
                    self.up.set()
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} not ready within {timeout} s; see {self.work}/airlock.log")


def call(port, method, path, body=None, headers=None, timeout=10):
    """(status, body bytes) of one request on a new connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def call_json(port, method, path, token, body=None, timeout=10):
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    status, data = call(port, method, path, body, headers, timeout)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, None


# ---------------------------------------------------------------- the run


class Soak:
    def __init__(self, args, nodes, etcd, tokens):
        self.args, self.nodes, self.etcd, self.tokens = args, nodes, etcd, tokens
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.gets = Counter()  # "ok" / "failed"
        self.held = []  # (path, node, mode, status, body)
        self.votes = []  # (approval, voter, verdict, node, status)
        self.redeemed = []  # (path, ticket, node, status)
        self.tickets = []  # (path, approval, ticket)
        self.faults = []  # (seconds since start, kind, target, seconds)
        self.exits = []  # (node, code) a node that exited on its own
        self.started = time.monotonic()
        self.seq = 0

    def live_node(self):
        up = [n for n in self.nodes if n.up.is_set()]
        return random.choice(up or self.nodes)

    def next_path(self, prefix):
        with self.lock:
            self.seq += 1
            return f"/{prefix}/{self.seq}-{secrets.token_hex(3)}"

    # ---- load

    def getter(self):
        while not self.stop.is_set():
            node = self.live_node()
            try:
                status, _ = call(node.proxy_port, "GET", self.next_path("get"), timeout=5)
                ok = status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            with self.lock:
                self.gets["ok" if ok else "failed"] += 1
            time.sleep(0.01)

    def holder(self):
        token = self.tokens["client"]
        while not self.stop.is_set():
            node = self.live_node()
            path = self.next_path("held")
            asynchronous = random.random() < 0.3
            headers = {"Proxy-Authorization": f"Bearer {token}"}
            if asynchronous:
                headers["Prefer"] = "respond-async"
            try:
                status, body = call(node.proxy_port, "DELETE", path, headers=headers,
                                    timeout=APPROVAL_TIMEOUT_S + 30)
            except (OSError, http.client.HTTPException):
                status, body = 0, b""
            with self.lock:
                self.held.append((path, node.name, "async" if asynchronous else "sync", status, body[:300]))
            if asynchronous and status == 202:
                answer = json.loads(body)
                with self.lock:
                    self.tickets.append((path, answer["approval"], answer["ticket"]))
            time.sleep(random.uniform(0.05, 0.3))

    def voter(self, name):
        token = self.tokens[name]
        voted = set()
        while not self.stop.is_set():
            node = self.live_node()
            try:
                status, body = call_json(node.admin_port, "GET", "/v1/approvals?state=pending", token, timeout=5)
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
                continue
            if status != 200:
                time.sleep(0.2)
                continue
            pending = [a["id"] for a in body.get("approvals", []) if a["id"] not in voted]
            for approval in random.sample(pending, min(3, len(pending))):
                verdict = "deny" if random.random() < 0.1 else "approve"
                node = self.live_node()
                try:
                    status, _ = call_json(node.admin_port, "POST", f"/v1/approvals/{approval}/{verdict}",
                                          token, b"{}", timeout=10)
                except (OSError, http.client.HTTPException):
                    status = 0
                with self.lock:
                    self.votes.append((approval, name, verdict, node.name, status))
                if 200 <= status < 300 or status == 409:
                    voted.add(approval)
            time.sleep(random.uniform(0.05, 0.2))

    def redeemer(self):
        token = self.tokens["client"]
        done = set()
        while not self.stop.is_set():
            with self.lock:
                waiting = [t for t in self.tickets if t[2] not in done]
            for path, approval, ticket in waiting:
                node = self.live_node()
                try:
                    status, body = call_json(node.admin_port, "GET", f"/v1/approvals/{approval}",
                                             self.tokens["voter-1"], timeout=5)
                except (OSError, http.client.HTTPException):
                    continue
                if status != 200 or body["state"] == "pending":
                    continue
                done.add(ticket)
                if body["state"] != "approved":
                    continue
                pair = random.sample(self.nodes, 2)
                threads = [threading.Thread(target=self.redeem, args=(n, path, ticket, token)) for n in pair]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            time.sleep(0.2)

    def redeem(self, node, path, ticket, token):
        headers = {"Proxy-Authorization": f"Bearer {token}", "Airlock-Ticket": ticket}
        try:
            status, _ = call(node.proxy_port, "DELETE", path, headers=headers, timeout=30)
        except (OSError, http.client.HTTPException):
            status = 0
        with self.lock:
            self.redeemed.append((path, ticket, node.name, status))

    # ---- faults

    def driver(self):
        kinds = ["kill-node", "pause-node", "kill-etcd", "pause-etcd"]
        if any(n.tmpfs for n in self.nodes):
            kinds.append("fill-disk")
        while not self.stop.wait(self.args.fault_every):
            kind = random.choice(kinds)
            lasting = random.uniform(2, 6)
            at = time.monotonic() - self.started
            if kind == "kill-node":
                node = random.choice(self.nodes)
                node.up.clear()
                node.proc.kill()
                node.proc.wait()
                time.sleep(lasting)
                node.spawn()
                node.wait_ready()
                target = node.name
            elif kind == "pause-node":
                node = random.choice(self.nodes)
                node.up.clear()
                node.proc.send_signal(signal.SIGSTOP)
                time.sleep(lasting)
                node.proc.send_signal(signal.SIGCONT)
                node.up.set()
                target = node.name
            elif kind == "kill-etcd":
                index = random.randrange(len(self.etcd.procs))
                self.etcd.procs[index].kill()
                self.etcd.procs[index].wait()
                time.sleep(lasting)
                self.etcd.procs[index] = self.etcd.start_member(index, die_with_parent=False)
                target = self.etcd.names[index]
            elif kind == "pause-etcd":
                index = random.randrange(len(self.etcd.procs))
                self.etcd.procs[index].send_signal(signal.SIGSTOP)
                time.sleep(lasting)
                self.etcd.procs[index].send_signal(signal.SIGCONT)
                target = self.etcd.names[index]
            else:
                node = next(n for n in self.nodes if n.tmpfs)
                filler = node.work / "data" / "filler"
                with open(filler, "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * (1 << 20))
                            f.flush()
                    except OSError:
                        pass
                time.sleep(lasting)
                filler.unlink()
                target = node.name
            with self.lock:
                self.faults.append((round(at, 1), kind, target, round(lasting, 1)))
            print(f"chaos: {at:6.1f} s {kind} {target} for {lasting:.1f} s", file=sys.stderr)
            self.etcd.wait_healthy(timeout=60)
            for node in self.nodes:
                if node.proc.poll() is not None and node.up.is_set():
                    node.up.clear()
                    self.exits.append((node.name, node.proc.returncode))
                    print(f"chaos: node {node.name} exited on its own ({node.proc.returncode})", file=sys.stderr)
                    node.spawn()
                    node.wait_ready()

    def run(self):
        workers = [threading.Thread(target=self.getter) for _ in range(2)]
        workers += [threading.Thread(target=self.holder) for _ in range(self.args.holders)]
        workers += [threading.Thread(target=self.voter, args=(v,)) for v in VOTERS]
        workers += [threading.Thread(target=self.redeemer), threading.Thread(target=self.driver)]
        for w in workers:
            w.daemon = True
            w.start()
        self.stop.wait(self.args.minutes * 60)
        self.stop.set()
        print("chaos: load stopped; waiting for held requests to end", file=sys.stderr)
        for w in workers:
            w.join(APPROVAL_TIMEOUT_S + 60)


# ---------------------------------------------------------------- checks


def check(soak, nodes, tokens):
    """The invariants; a list of (name, checked, violations)."""
    results = []
    viewer, auditor = tokens["voter-1"], tokens["auditor"]

    # every node's view of every approval
    views = {}
    for node in nodes:
        status, body = call_json(node.admin_port, "GET", "/v1/approvals", viewer, timeout=30)
        if status != 200:
            raise RuntimeError(f"GET /v1/approvals on {node.name}: {status} {body}")
        views[node.name] = {a["id"]: a for a in body["approvals"]}
    ids = set().union(*(v.keys() for v in views.values()))
    disagree = [i for i in ids if len({views[n].get(i, {}).get("state") for n in views}) != 1]
    results.append(("every node shows every approval in the same state", len(ids), disagree))
    approvals = views[nodes[0].name]
    by_path = {a["action"].get("path"): a for a in approvals.values()}

    both, short, repeated = [], [], []
    for a in approvals.values():
        verdicts = [v["verdict"] for v in a["votes"]]
        subjects = [v["subject"] for v in a["votes"]]
        if len(subjects) != len(set(subjects)):
            repeated.append(a["id"])
        if a["state"] == "approved" and ("deny" in verdicts or verdicts.count("approve") < QUORUM):
            short.append(a["id"])
        if a["state"] == "denied" and "deny" not in verdicts:
            both.append(a["id"])
    results.append(("no approval approved with a deny or fewer than 2 approvals, none denied without a deny",
                    len(approvals), both + short))
    results.append(("a voter counts once per approval", len(approvals), repeated))

    acked = [(a, voter, verdict) for a, voter, verdict, _, status in soak.votes if 200 <= status < 300]
    lost = [(a, voter, verdict, approvals.get(a, {}).get("state"),
             [(v["subject"], v["verdict"]) for v in approvals.get(a, {}).get("votes", [])])
            for a, voter, verdict in acked
            if not any(v["subject"] == voter and v["verdict"] == verdict
                       for v in approvals.get(a, {}).get("votes", []))]
    results.append(("every acknowledged vote is counted", len(acked), lost))

    deletes = {path for path, *_ in soak.held}
    twice = [p for p in deletes if ARRIVED[p] > 1]
    results.append(("no DELETE reached the upstream twice", len(deletes), twice))
    unapproved = [p for p in deletes if ARRIVED[p] and by_path.get(p, {}).get("state") != "approved"]
    results.append(("no DELETE reached the upstream unless approved", sum(1 for p in deletes if ARRIVED[p]), unapproved))

    answered = [(p, n, s) for p, n, mode, s, _ in soak.held if mode == "sync" and s in (200, 403)]
    wrong = [(p, s) for p, _, s in answered
             if (s == 200) != (ARRIVED[p] == 1 and by_path.get(p, {}).get("state") == "approved")]
    results.append(("a client's 200 means forwarded once and approved, its 403 neither", len(answered), wrong))

    redeemed = Counter(t for _, t, _, status in soak.redeemed if status == 200)
    results.append(("a ticket is redeemed at most once", len(soak.tickets),
                    [t for t, count in redeemed.items() if count > 1]))

    decided = {}  # node -> DELETE paths in its trail's request_decision entries
    for node in nodes:
        paths, cursor = set(), None
        while True:
            query = "/v1/audit?kind=request_decision&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            status, body = call_json(node.admin_port, "GET", query, auditor, timeout=60)
            if status != 200:
                raise RuntimeError(f"GET {query} on {node.name}: {status} {body}")
            paths |= {e["request"]["path"] for e in body["entries"] if e.get("request")}
            cursor = body.get("next_cursor")
            if cursor is None:
                break
        decided[node.name] = paths
    trail = [(p, n) for p, n, mode, s, _ in soak.held if s in (200, 202, 403)]
    missing = [(p, n) for p, n in trail if p not in decided[n]]
    results.append(("every DELETE a client got an answer for is in its node's trail", len(trail), missing))

    broken = []
    for node in nodes:
        status, body = call_json(node.admin_port, "GET", "/v1/audit/verify?full=true", auditor, timeout=300)
        if status != 200 or not body.get("ok"):
            broken.append((node.name, status, body))
    results.append(("every node's trail verifies", len(nodes), broken))
    return results, approvals


def report(path, args, soak, results, approvals, binary, etcd_version):
    faults = Counter(kind for _, kind, _, _ in soak.faults)
    held = Counter((mode, status) for _, _, mode, status, _ in soak.held)
    states = Counter(a["state"] for a in approvals.values())
    failed = sum(1 for _, _, v in results if v)
    lines = [
        "# Reliability",
        "",
        "The chaos soak's last run, written by `benches/chaos.py` (see its docstring for what it does).",
        "Do not edit by hand: rerun it.",
        "",
        f"- Produced by: `benches/chaos.py --minutes {args.minutes:g} --fault-every {args.fault_every:g}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {os.cpu_count()} CPUs; load average {' '.join(open('/proc/loadavg').read().split()[:3])} at the end",
        f"- Airlock: `{binary}` ({'debug' if '/debug/' in str((binary.parent / 'build').resolve()) else 'release'} build); etcd {etcd_version}, 3 members",
        f"- Result: **{'passed' if not failed else f'FAILED ({failed} checks)'}**",
        "",
        "## Faults injected",
        "",
        "| fault | times |",
        "|---|--:|",
        *[f"| {kind} | {count} |" for kind, count in sorted(faults.items())],
        f"| nodes that exited on their own (restarted) | {len(soak.exits)} |",
        "",
        "## Load",
        "",
        "| what | count |",
        "|---|--:|",
        f"| GETs answered 200 | {soak.gets['ok']} |",
        f"| GETs failed (a node down or paused when asked) | {soak.gets['failed']} |",
        *[f"| held DELETE, {mode}, answered {status or 'nothing (connection lost)'} | {count} |"
          for (mode, status), count in sorted(held.items())],
        f"| votes sent | {len(soak.votes)} |",
        f"| votes acknowledged (2xx) | {sum(1 for *_, s in soak.votes if 200 <= s < 300)} |",
        f"| tickets redeemed (each sent through two nodes at once) | {len({t for _, t, _, _ in soak.redeemed})} |",
        *[f"| approvals {state} | {count} |" for state, count in sorted(states.items())],
        "",
        "## Checks",
        "",
        "| check | checked | violations |",
        "|---|--:|--:|",
        *[f"| {name} | {checked} | {len(v)} |" for name, checked, v in results],
        "",
    ]
    for name, _, violations in results:
        if violations:
            lines += [f"**{name}**: {violations[:10]!r}", ""]
    lines += ["<details><summary>Every fault</summary>", "", "| at (s) | fault | target | lasting (s) |",
              "|--:|---|---|--:|", *[f"| {a} | {k} | {t} | {d} |" for a, k, t, d in soak.faults], "", "</details>", ""]
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--airlock", type=Path, default=ROOT / "target/debug/airlock",
                    help="the binary (its directory's build/ holds approval-rules.wasm); a copy keeps a rebuild "
                         "during the soak from changing what restarted nodes run")
    ap.add_argument("--etcd", type=Path, default=Path("/usr/bin/etcd"))
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--fault-every", type=float, default=8, help="seconds between faults")
    ap.add_argument("--holders", type=int, default=6, help="threads sending held DELETEs")
    ap.add_argument("--report", type=Path, default=ROOT / "RELIABILITY.md")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: sys.exit(128 + number))

    binary = args.airlock.resolve()
    if not binary.is_file():
        sys.exit(f"chaos: {binary} missing; cargo build -p airlock, or pass --airlock")
    found = sorted(binary.parent.glob("build/airlock-*/out/policies/approval-rules.wasm"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"chaos: no approval-rules.wasm under {binary.parent}/build")
    policy = found[-1]

    work = Path(tempfile.mkdtemp(prefix="airlock-chaos-"))
    etcd, nodes, mounted, ok = None, [], [], False
    try:
        etcd = Etcd(args.etcd, work)
        etcd.start()
        etcd.wait_healthy()
        upstream = start_upstream(Counting)
        tokens = {name: secrets.token_hex(16) for name in ["client", "auditor", *VOTERS]}
        roles = {"client": "", "auditor": 'roles = ["auditor"]\n'}
        principals = "".join(
            f'[[principal]]\nsubject = "{name}"\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            + roles.get(name, 'groups = ["oncall"]\nroles = ["approver"]\n') + "\n"
            for name, token in tokens.items()
        )
        for name in ("a", "b", "c"):
            node = Node(binary, work / name, name)
            (node.work / "policies").mkdir(parents=True)
            (node.work / "data").mkdir()
            if name == "c":
                mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs",
                                        str(node.work / "data")], capture_output=True)
                node.tmpfs = mount.returncode == 0
                if node.tmpfs:
                    mounted.append(node.work / "data")
            (node.work / "policies" / "approval-rules.wasm").write_bytes(policy.read_bytes())
            (node.work / "policies" / "approval-rules.toml").write_text(
                '[[rules]]\nmethods = ["DELETE"]\n'
                f'approvers = {{ groups = ["oncall"], quorum = {QUORUM}, timeout_seconds = {APPROVAL_TIMEOUT_S} }}\n'
            )
            config = node_config(node.work, name, node.proxy_port, node.admin_port, upstream.server_port,
                                 etcd.endpoints, principals, 1_000_000)
            (node.work / "airlock.toml").write_text(config)
            node.spawn()
            nodes.append(node)
        for node in nodes:
            node.wait_ready()
        for node in nodes:
            wait_members(Admin(node.admin_port, tokens["voter-1"]), ["a", "b", "c"], timeout=60)
        print(f"chaos: etcd {etcd.version()} and nodes a, b, c up; {args.minutes:g} minutes"
              f"{'' if nodes[2].tmpfs else ' (no tmpfs: no disk-full faults)'}", file=sys.stderr)

        soak = Soak(args, nodes, etcd, tokens)
        soak.run()
        etcd.wait_healthy(timeout=60)
        for node in nodes:
            if node.proc.poll() is not None:
                soak.exits.append((node.name, node.proc.returncode))
                node.spawn()
            node.wait_ready()
        for node in nodes:
            wait_members(Admin(node.admin_port, tokens["voter-1"]), ["a", "b", "c"], timeout=60)
        time.sleep(2)  # the last resolutions reach every node's cache
        results, approvals = check(soak, nodes, tokens)
        failed = report(args.report, args, soak, results, approvals, binary, etcd.version())
        ok = failed == 0
    finally:
        for node in nodes:
            if node.proc and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
                node.proc.terminate()
                try:
                    node.proc.wait(20)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
        if etcd is not None:
            etcd.stop()
        for path in mounted:
            subprocess.run(["umount", str(path)], capture_output=True)
        remove_work(work, etcd, keep=args.keep or not ok, bench="chaos")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
