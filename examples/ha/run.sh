#!/usr/bin/env bash
# Airlock high availability on one machine: a three-member etcd cluster, an
# echo backend and two Airlock nodes (a and b) sharing their approvals,
# grants, routing overlay and pushed policies through etcd.
#
#   examples/ha/run.sh start          # start whatever is not running; waits until it is ready
#   examples/ha/run.sh status         # what runs, etcd's members and leader, the Airlock cluster
#   examples/ha/run.sh kill-leader    # SIGKILL the etcd leader (start brings it back)
#   examples/ha/run.sh kill NAME      # SIGKILL one of: a b echo e1 e2 e3
#   examples/ha/run.sh stop [NAME...] # stop everything (or NAME...) and wait until it has exited
#
# Everything it writes (configs, data dirs, logs, pids) is in examples/ha/work/;
# `rm -rf examples/ha/work` after a stop starts from scratch.
# The binary: $AIRLOCK, else target/release/airlock, else target/debug/airlock
# (built with `cargo build` if none exists).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK="$HERE/work"
LOGS="$WORK/logs"
PIDS="$WORK/pids"

# Fixed loopback ports.
ETCD_MEMBERS=(e1 e2 e3)
declare -A ETCD_CLIENT=([e1]=2379 [e2]=2381 [e3]=2383)
declare -A ETCD_PEER=([e1]=2380 [e2]=2382 [e3]=2384)
ECHO_PORT=8070
NODES=(a b)
declare -A PROXY_PORT=([a]=8081 [b]=8082)
declare -A ADMIN_PORT=([a]=9091 [b]=9092)

# The example's people and their tokens (stored in the configs as SHA-256).
# Example tokens for loopback only: in a real deployment make your own.
declare -A TOKEN=(
    [alice]=ha-example-alice-token
    [bob]=ha-example-bob-token
    [ops]=ha-example-ops-token
    [client]=ha-example-client-token
)

ENDPOINTS=""
for m in "${ETCD_MEMBERS[@]}"; do ENDPOINTS+="${ENDPOINTS:+,}http://127.0.0.1:${ETCD_CLIENT[$m]}"; done
INITIAL_CLUSTER=""
for m in "${ETCD_MEMBERS[@]}"; do INITIAL_CLUSTER+="${INITIAL_CLUSTER:+,}$m=http://127.0.0.1:${ETCD_PEER[$m]}"; done
export ETCDCTL_API=3

say() { printf 'run.sh: %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

etcdctl_all() { etcdctl --endpoints="$ENDPOINTS" --dial-timeout=1s --command-timeout=3s "$@"; }

# --- processes -------------------------------------------------------------

# Whether PID runs (a zombie waiting for its parent to reap it does not).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# The pid of NAME if it is alive and still the process we started (its
# command line names the work dir), else nothing.
pid_of() {
    local file="$PIDS/$1.pid" pid
    [[ -f $file ]] || return 0
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WORK"; then
        echo "$pid"
    fi
}

# Start NAME in its own session (so a Ctrl-C or a closed terminal does not
# reach it), its output in logs/NAME.log, its pid in pids/NAME.pid.
launch() {
    local name=$1; shift
    mkdir -p "$LOGS" "$PIDS"
    printf '=== started by run.sh at %s\n' "$(date -u +%FT%TZ)" >>"$LOGS/$name.log"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDS/$name.pid" "$@" \
        </dev/null >>"$LOGS/$name.log" 2>&1 &
    local i
    for i in $(seq 50); do [[ -s $PIDS/$name.pid ]] && return 0; sleep 0.1; done
    die "$name did not start"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_free() {
    local name=$1 port
    shift
    for port in "$@"; do
        if port_in_use "$port"; then
            die "$name: port $port is taken by another program (\`ss -ltnp 'sport = :$port'\` names it); stop it first"
        fi
    done
}

# The end of NAME's log since run.sh last started it.
last_run() {
    awk '/^=== started by run.sh/ { n = 0; next } { line[n++] = $0 } END { for (i = (n > 15 ? n - 15 : 0); i < n; i++) print line[i] }' "$LOGS/$1.log" 2>/dev/null || true
}

# Wait up to SECONDS for `CHECK...` to succeed while NAME stays alive.
wait_for() {
    local name=$1 seconds=$2 i
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if [[ -z $(pid_of "$name") ]]; then
            last_run "$name" >&2
            die "$name exited; its log: $LOGS/$name.log"
        fi
        sleep 0.2
    done
    last_run "$name" >&2
    die "$name was not ready within ${seconds}s; its log: $LOGS/$name.log"
}

# --- the airlock binary ----------------------------------------------------

airlock_binary() {
    if [[ -n ${AIRLOCK:-} ]]; then
        [[ -x $AIRLOCK ]] || die "AIRLOCK=$AIRLOCK is not an executable"
        echo "$AIRLOCK"
    elif [[ -x $ROOT/target/release/airlock ]]; then
        echo "$ROOT/target/release/airlock"
    elif [[ -x $ROOT/target/debug/airlock ]]; then
        echo "$ROOT/target/debug/airlock"
    else
        say "no airlock binary yet: cargo build (the first build takes a while)" >&2
        (cd "$ROOT" && cargo build --locked --bin airlock >&2)
        echo "$ROOT/target/debug/airlock"
    fi
}

# --- generated files -------------------------------------------------------

sha256() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

write_echo() {
    cat >"$WORK/echo.py" <<'EOF'
# The example's backend: answers any method with 200 and what it received.
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = json.dumps({"backend": "echo", "method": self.command, "path": self.path,
                            "body_bytes": len(body)}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = answer

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), format % args))

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
EOF
}

# The approval-rules component: taken from the binary's bundled policies by
# letting `airlock demo` write them into work/bundled (on free ports), once.
bundled_policies() {
    local airlock=$1 dir="$WORK/bundled"
    [[ -f $dir/policies/approval-rules.wasm && -f $dir/airlock.toml ]] && return 0
    rm -rf "$dir"
    mkdir -p "$dir"
    say "copying the bundled policies out of $airlock"
    launch bundled "$airlock" demo --proxy-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$dir"
    wait_for bundled 60 test -f "$dir/airlock.toml"
    stop_all bundled
}

write_policies() {
    local node=$1 dir="$WORK/$1/policies"
    mkdir -p "$dir"
    [[ -f $dir/approval-rules.wasm ]] || cp "$WORK/bundled/policies/approval-rules.wasm" "$dir/"
    [[ -f $dir/approval-rules.toml ]] || cat >"$dir/approval-rules.toml" <<'EOF'
# Parameters of approval-rules for the HA example: every DELETE, and anything
# under /admin, waits for one approver of group oncall (up to 15 minutes).
[[rules]]
methods = ["DELETE"]
approvers = { groups = ["oncall"], quorum = 1, timeout_seconds = 900 }

[[rules]]
paths = ["/admin", "/admin/**"]
approvers = { groups = ["oncall"], quorum = 1, timeout_seconds = 900 }
EOF
}

# Written at the first start only: edits to it stay (rm -rf work to start over).
write_config() {
    local node=$1 dir="$WORK/$1"
    mkdir -p "$dir/data"
    [[ -f $dir/airlock.toml ]] && return 0
    local endpoints="" m
    for m in "${ETCD_MEMBERS[@]}"; do endpoints+="${endpoints:+, }\"http://127.0.0.1:${ETCD_CLIENT[$m]}\""; done
    cat >"$dir/airlock.toml" <<EOF
# Written by examples/ha/run.sh: node $node of the HA example (at its first start; edit freely).
[server]
data_dir = "$dir/data"        # this node's own audit trail, caches
drain_timeout = "5s"

[admin]
address = "127.0.0.1:${ADMIN_PORT[$node]}"

[audit]
node = "$node"                # unique in the cluster; its chain head is anchored in etcd

[storage]
backend = "etcd"
endpoints = [$endpoints]
prefix = "/airlock"
timeout = "10s"
lease_ttl = "10s"

[policies]
directory = "$dir/policies"   # airlock policy push writes here too

[[listener]]
name = "public"
address = "127.0.0.1:${PROXY_PORT[$node]}"

[[pool]]
name = "echo"
backends = [{ address = "127.0.0.1:$ECHO_PORT" }]
health_check = { path = "/healthz", interval = "2s", timeout = "1s" }

[[route]]
name = "everything"
pool = "echo"
policies = ["approval-rules"]

# alice and bob approve for oncall; ops is an admin; client sends requests.
[[principal]]
subject = "alice"    # token: ${TOKEN[alice]}
token_sha256 = "$(sha256 "${TOKEN[alice]}")"
groups = ["oncall"]
roles = ["approver"]

[[principal]]
subject = "bob"      # token: ${TOKEN[bob]}
token_sha256 = "$(sha256 "${TOKEN[bob]}")"
groups = ["oncall"]
roles = ["approver"]

[[principal]]
subject = "ops"      # token: ${TOKEN[ops]}
token_sha256 = "$(sha256 "${TOKEN[ops]}")"
roles = ["admin"]

[[principal]]
subject = "client"   # token: ${TOKEN[client]}
token_sha256 = "$(sha256 "${TOKEN[client]}")"
EOF
}

# --- start -----------------------------------------------------------------

etcd_healthy() { etcdctl --endpoints="http://127.0.0.1:$1" --dial-timeout=1s --command-timeout=2s endpoint health; }

# The client URL of etcd's leader, or nothing.
etcd_leader() {
    etcdctl_all endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
try:
    members = json.load(sys.stdin)
except ValueError:
    members = []
for m in members:
    if m["Status"]["header"]["member_id"] == m["Status"]["leader"]:
        print(m["Endpoint"])
        break
' 2>/dev/null || true
}

start_etcd() {
    local m started=()
    for m in "${ETCD_MEMBERS[@]}"; do
        [[ -n $(pid_of "$m") ]] && continue
        ensure_free "etcd $m" "${ETCD_CLIENT[$m]}" "${ETCD_PEER[$m]}"
        local state=new
        [[ -d $WORK/etcd/$m/member ]] && state=existing
        mkdir -p "$WORK/etcd"
        launch "$m" /usr/bin/etcd --name "$m" --data-dir "$WORK/etcd/$m" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$m]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$m]}" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$m]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$m]}" \
            --initial-cluster "$INITIAL_CLUSTER" --initial-cluster-state "$state" \
            --initial-cluster-token airlock-ha-example \
            --heartbeat-interval 100 --election-timeout 1000
        started+=("$m")
    done
    for m in "${started[@]}"; do
        wait_for "$m" 30 etcd_healthy "${ETCD_CLIENT[$m]}"
        say "etcd $m ready on http://127.0.0.1:${ETCD_CLIENT[$m]} (log: $LOGS/$m.log)"
    done
    local i leader=""
    for i in $(seq 50); do
        leader=$(etcd_leader)
        [[ -n $leader ]] && break
        sleep 0.2
    done
    [[ -n $leader ]] || die "etcd has no leader after 10s; logs: $LOGS/e1.log e2.log e3.log"
    say "etcd leader: $leader"
}

start_echo() {
    [[ -n $(pid_of echo) ]] && return 0
    ensure_free echo "$ECHO_PORT"
    write_echo
    launch echo python3 "$WORK/echo.py" "$ECHO_PORT"
    wait_for echo 15 curl -fsS -o /dev/null "http://127.0.0.1:$ECHO_PORT/healthz"
    say "echo backend ready on http://127.0.0.1:$ECHO_PORT (log: $LOGS/echo.log)"
}

start_node() {
    local node=$1 airlock=$2
    [[ -n $(pid_of "$node") ]] && return 0
    ensure_free "node $node" "${PROXY_PORT[$node]}" "${ADMIN_PORT[$node]}"
    write_policies "$node"
    write_config "$node"
    "$airlock" check -c "$WORK/$node/airlock.toml" >/dev/null ||
        die "node $node: its config is refused (is $airlock older than the etcd backend? cargo build)"
    launch "$node" "$airlock" run -c "$WORK/$node/airlock.toml"
    wait_for "$node" 90 curl -fsS -o /dev/null "http://127.0.0.1:${ADMIN_PORT[$node]}/readyz"
    say "node $node ready: proxy http://127.0.0.1:${PROXY_PORT[$node]}, admin http://127.0.0.1:${ADMIN_PORT[$node]} (log: $LOGS/$node.log)"
}

start() {
    mkdir -p "$WORK" "$LOGS" "$PIDS"
    local airlock
    airlock=$(airlock_binary)
    start_etcd
    start_echo
    bundled_policies "$airlock"
    local node
    for node in "${NODES[@]}"; do start_node "$node" "$airlock"; done
    say "all running; logs in $LOGS, configs in $WORK/a/airlock.toml and $WORK/b/airlock.toml"
    say "tokens: alice ${TOKEN[alice]}, bob ${TOKEN[bob]}, ops ${TOKEN[ops]}, client ${TOKEN[client]}"
}

# --- stop, kill, status ----------------------------------------------------

# SIGTERM each NAME, wait for all of them to exit (SIGKILL after $GRACE
# seconds, default 20).
stop_all() {
    local name pid i left
    declare -A pids=()
    for name in "$@"; do
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then
            pids[$name]=$pid
            kill -TERM "$pid" 2>/dev/null || true
        fi
        rm -f "$PIDS/$name.pid"
    done
    for ((i = 0; i < ${GRACE:-20} * 5; i++)); do
        left=0
        for name in "${!pids[@]}"; do alive "${pids[$name]}" && left=1; done
        ((left)) || break
        sleep 0.2
    done
    for name in "${!pids[@]}"; do
        if alive "${pids[$name]}"; then
            [[ -n ${GRACE:-} ]] || say "$name did not stop within 20s: SIGKILL"
            kill -KILL "${pids[$name]}" 2>/dev/null || true
            for i in $(seq 50); do alive "${pids[$name]}" || break; sleep 0.1; done
        fi
        say "stopped $name (pid ${pids[$name]})"
    done
}

stop() {
    # Airlock first (it drains and leaves the cluster through etcd), etcd last.
    stop_all bundled "${NODES[@]}"
    stop_all echo
    # A stopping etcd member waits up to 7s for peers that are stopping too;
    # its data is safe at any point (etcd syncs its log before it answers).
    GRACE=2 stop_all "${ETCD_MEMBERS[@]}"
    say "everything stopped (logs stay in $LOGS)"
}

kill_one() {
    local name=$1 pid i
    pid=$(pid_of "$name")
    [[ -n $pid ]] || die "$name is not running"
    kill -KILL "$pid"
    for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    rm -f "$PIDS/$name.pid"
    say "killed $name (pid $pid, SIGKILL)"
}

kill_leader() {
    local leader m victim="" down=()
    for m in "${ETCD_MEMBERS[@]}"; do [[ -n $(pid_of "$m") ]] || down+=("$m"); done
    ((${#down[@]} < ${#ETCD_MEMBERS[@]})) || die "etcd is not running (run.sh start)"
    ((${#down[@]} == 0)) ||
        die "etcd ${down[*]} is down already: killing the leader too would leave no quorum (run.sh start first; run.sh kill eN does it on purpose)"
    leader=$(etcd_leader)
    [[ -n $leader ]] || die "no etcd leader found (is etcd running? run.sh status)"
    for m in "${ETCD_MEMBERS[@]}"; do
        [[ $leader == "http://127.0.0.1:${ETCD_CLIENT[$m]}" ]] && victim=$m
    done
    [[ -n $victim ]] || die "the leader $leader is not one of this example's members"
    say "etcd leader is $victim ($leader)"
    kill_one "$victim"
    local i new=""
    for i in $(seq 50); do
        new=$(etcd_leader)
        [[ -n $new && $new != "$leader" ]] && break
        new=""
        sleep 0.2
    done
    if [[ -n $new ]]; then say "new etcd leader: $new"; else say "no new leader yet after 10s (see run.sh status)"; fi
    say "\`run.sh start\` brings $victim back"
}

status() {
    local name pid
    for name in "${ETCD_MEMBERS[@]}" echo "${NODES[@]}"; do
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then
            printf '%-5s running  pid %-7s log %s\n' "$name" "$pid" "$LOGS/$name.log"
        else
            printf '%-5s stopped\n' "$name"
        fi
    done
    local m any=""
    for m in "${ETCD_MEMBERS[@]}"; do [[ -n $(pid_of "$m") ]] && any=1; done
    if [[ -n $any ]]; then
        echo
        etcdctl_all endpoint status -w table 2>&1 | grep -v '"level":"warn"' || true
    fi
    local node
    for node in "${NODES[@]}"; do
        [[ -n $(pid_of "$node") ]] || continue
        printf '\nnode %s: GET http://127.0.0.1:%s/v1/cluster\n' "$node" "${ADMIN_PORT[$node]}"
        curl -sS --max-time 5 -H "Authorization: Bearer ${TOKEN[alice]}" \
            "http://127.0.0.1:${ADMIN_PORT[$node]}/v1/cluster" || true
        echo
    done
}

case ${1:-} in
    start) start ;;
    stop)
        shift
        if (($#)); then stop_all "$@"; else stop; fi
        ;;
    status) status ;;
    kill-leader) kill_leader ;;
    kill)
        [[ -n ${2:-} ]] || die "usage: run.sh kill a|b|echo|e1|e2|e3"
        kill_one "$2"
        ;;
    *) die "usage: run.sh start|stop [NAME...]|status|kill-leader|kill NAME" ;;
esac
