//! A real three-member etcd 3.4 cluster (`etcd` from Debian's etcd-server,
//! driven with `etcdctl` from etcd-client) on loopback, for the etcd
//! backend's tests: each member on free ephemeral ports in its own temp dir,
//! started together and waited for until a client request goes through.
//! Members can be killed one by one, or all paused and resumed; every
//! member still running is killed (and reaped) when the cluster is dropped.
//!
//! The machine is small and shared, so the cluster gets a long election
//! timeout, and the tests that start one take [`exclusive`] to run one at a
//! time.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Members of every cluster this fixture starts.
pub const MEMBERS: usize = 3;
/// How long a cluster may take to answer its first request.
const START_WITHIN: Duration = Duration::from_secs(30);
/// How long the members may take to agree on a leader (after a kill too).
const ELECTION_WITHIN: Duration = Duration::from_secs(20);
/// Clusters started in this process, for unique cluster tokens.
static STARTED: AtomicUsize = AtomicUsize::new(0);

static EXCLUSIVE: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

/// Held by each test that starts a cluster (or Airlock nodes on one), so
/// that they run one at a time in this process.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

struct Member {
    name: String,
    client_url: String,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl Member {
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last `lines` lines of its stderr.
    fn tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    fn running(&self) -> bool {
        self.child.lock().unwrap().is_some()
    }

    /// Why it stopped by itself, if it did.
    fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(error)) => Some(error.to_string()),
            _ => None,
        }
    }

    /// SIGKILL, then reap it.
    fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One member's view from `etcdctl endpoint status`.
#[derive(Debug, Clone, Copy)]
struct Status {
    member: usize,
    id: u64,
    leader: u64,
}

/// A running cluster of [`MEMBERS`] etcd processes.
pub struct EtcdCluster {
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts a cluster and waits until it has a leader and takes a write.
    /// A start that fails (a port taken meanwhile, a member that exits) is
    /// retried on new ports; the third failure panics with the members' logs.
    pub async fn start() -> EtcdCluster {
        blocking(|| {
            let mut failures = Vec::new();
            for _ in 0..3 {
                match Self::try_start() {
                    Ok(cluster) => return cluster,
                    Err((why, cluster)) => {
                        let tails = cluster.tails(15);
                        drop(cluster);
                        eprintln!("etcd cluster did not start ({why}), retrying\n{tails}");
                        failures.push(format!("{why}\n{tails}"));
                    }
                }
            }
            panic!(
                "no etcd cluster started in three attempts:\n{}",
                failures.join("\n----\n")
            );
        })
        .await
    }

    fn try_start() -> Result<EtcdCluster, (String, EtcdCluster)> {
        let ports = free_ports(2 * MEMBERS);
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let token = format!(
            "airlock-test-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        );
        let initial_cluster: Vec<String> = (0..MEMBERS)
            .map(|i| format!("m{i}={}", url(ports[2 * i + 1])))
            .collect();
        let initial_cluster = initial_cluster.join(",");
        let mut cluster = EtcdCluster {
            members: Vec::new(),
        };
        for i in 0..MEMBERS {
            let (client_url, peer_url) = (url(ports[2 * i]), url(ports[2 * i + 1]));
            let member = Member {
                name: format!("m{i}"),
                client_url: client_url.clone(),
                dir: tempfile::Builder::new()
                    .prefix("airlock-etcd-")
                    .tempdir()
                    .unwrap(),
                child: Mutex::new(None),
            };
            let log = std::fs::File::create(member.log_path()).unwrap();
            let spawned = Command::new("etcd")
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    member.dir.path().join("data").display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg(format!("--initial-cluster-token={token}"))
                .args([
                    "--initial-cluster-state=new",
                    "--heartbeat-interval=100",
                    "--election-timeout=1000",
                    "--logger=zap",
                    "--log-outputs=stderr",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn();
            match spawned {
                Ok(child) => *member.child.lock().unwrap() = Some(child),
                Err(error) => panic!(
                    "cannot run etcd ({error}): the etcd tests need etcd 3.4 and etcdctl \
                     (Debian: apt-get install etcd-server etcd-client, see tests/run)"
                ),
            }
            cluster.members.push(member);
        }
        match cluster.wait_ready() {
            Ok(()) => Ok(cluster),
            Err(why) => Err((why, cluster)),
        }
    }

    /// Until every member agrees on a leader and a write goes through.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            for member in &self.members {
                if let Some(status) = member.exited() {
                    return Err(format!("member {} exited: {status}", member.name));
                }
            }
            let last = match self.agreed_leader(&self.statuses()) {
                Ok(_) => match self.put_now("/airlock-fixture/ready", "yes") {
                    Ok(()) => return Ok(()),
                    Err(error) => error,
                },
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(format!("not ready within {START_WITHIN:?}; last: {last}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every member's client URL (`http://127.0.0.1:PORT`), killed ones too,
    /// in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The members still running.
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].running())
            .collect()
    }

    fn live_endpoints(&self) -> Vec<String> {
        self.live()
            .into_iter()
            .map(|i| self.members[i].client_url.clone())
            .collect()
    }

    /// Process ids of the members still running.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Member::pid).collect()
    }

    /// The member that leads, once every running member names the same
    /// running member as leader (waits up to [`ELECTION_WITHIN`], e.g. for
    /// an election after a kill).
    pub async fn leader(&self) -> usize {
        blocking(|| {
            let deadline = Instant::now() + ELECTION_WITHIN;
            loop {
                let why = match self.agreed_leader(&self.statuses()) {
                    Ok(leader) => return leader,
                    Err(why) => why,
                };
                if Instant::now() >= deadline {
                    panic!(
                        "etcd members agreed on no leader within {ELECTION_WITHIN:?} ({why})\n{}",
                        self.tails(20)
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&self, i: usize) {
        self.members[i].kill();
    }

    /// SIGSTOPs every running member at once: etcd answers nothing (no
    /// error, no election), as when the nodes are cut off from it. A
    /// stopped member is still killed when the cluster is dropped.
    pub fn pause_all(&self) {
        self.signal_all("-STOP");
    }

    /// SIGCONTs every running member, after [`EtcdCluster::pause_all`].
    pub fn resume_all(&self) {
        self.signal_all("-CONT");
    }

    fn signal_all(&self, signal: &str) {
        let pids: Vec<String> = self.pids().iter().map(u32::to_string).collect();
        let status = Command::new("kill")
            .arg(signal)
            .args(&pids)
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pids:?}: {status}");
    }

    /// Writes `key` through the running members (retrying for up to 15 s,
    /// e.g. across an election).
    pub async fn put(&self, key: &str, value: &str) -> Result<(), String> {
        blocking(|| retrying(|| self.put_now(key, value))).await
    }

    /// Reads `key` (linearizable) through the running members, retrying as
    /// [`EtcdCluster::put`].
    pub async fn get(&self, key: &str) -> Result<Option<String>, String> {
        blocking(|| {
            retrying(|| {
                let out = self.ctl(&self.live_endpoints(), &["get", key, "--print-value-only"])?;
                let text = String::from_utf8_lossy(&out.stdout);
                let text = text.strip_suffix('\n').unwrap_or(&text);
                Ok((!out.stdout.is_empty()).then(|| text.to_owned()))
            })
        })
        .await
    }

    /// Keys under `prefix`, in key order.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        blocking(|| {
            retrying(|| {
                let out = self.ctl(
                    &self.live_endpoints(),
                    &["get", prefix, "--prefix", "--keys-only"],
                )?;
                Ok(String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect())
            })
        })
        .await
    }

    /// The last `lines` lines of each member's stderr, labelled.
    pub fn tails(&self, lines: usize) -> String {
        self.members
            .iter()
            .map(|m| {
                let state = if m.running() { "running" } else { "stopped" };
                format!(
                    "---- etcd {} ({}, {state}) ----\n{}",
                    m.name,
                    m.client_url,
                    m.tail(lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn put_now(&self, key: &str, value: &str) -> Result<(), String> {
        self.ctl(&self.live_endpoints(), &["put", key, value])
            .map(drop)
    }

    /// `etcdctl` against `endpoints`; Err with its stderr unless it succeeded.
    fn ctl(&self, endpoints: &[String], args: &[&str]) -> Result<Output, String> {
        let out = run_etcdctl(endpoints, args)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(format!(
                "etcdctl {} ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// What each running member that answers says about itself.
    fn statuses(&self) -> Vec<Status> {
        let Ok(out) = run_etcdctl(
            &self.live_endpoints(),
            &["endpoint", "status", "-w", "json"],
        ) else {
            return Vec::new();
        };
        // Members that did not answer are left out (and the exit code is 1).
        let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(&out.stdout) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|entry| {
                let endpoint = entry["Endpoint"].as_str()?;
                let member = self.members.iter().position(|m| m.client_url == endpoint)?;
                Some(Status {
                    member,
                    id: entry["Status"]["header"]["member_id"].as_u64()?,
                    leader: entry["Status"]["leader"].as_u64()?,
                })
            })
            .collect()
    }

    /// The leader every running member names, if they all answer and agree
    /// on a running one.
    fn agreed_leader(&self, statuses: &[Status]) -> Result<usize, String> {
        let live = self.live();
        if statuses.len() != live.len() {
            return Err(format!(
                "{} of {} running members answered: {statuses:?}",
                statuses.len(),
                live.len()
            ));
        }
        let leader = statuses[0].leader;
        if leader == 0 || statuses.iter().any(|s| s.leader != leader) {
            return Err(format!("no agreed leader: {statuses:?}"));
        }
        statuses
            .iter()
            .find(|s| s.id == leader)
            .map(|s| s.member)
            .ok_or_else(|| format!("the named leader is not running: {statuses:?}"))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tails(30));
        }
        for member in &self.members {
            member.kill();
        }
    }
}

fn run_etcdctl(endpoints: &[String], args: &[&str]) -> Result<Output, String> {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run etcdctl ({error}): install etcd-client"))
}

/// `attempt` until it succeeds, for up to 15 s; the last error otherwise.
fn retrying<T>(mut attempt: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Runs blocking `f` (processes, sleeps) without stalling the runtime's
/// other tasks: in place on a multi-thread runtime, else directly.
async fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `n` distinct ports free on loopback just now.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_elects_a_new_leader_when_its_leader_is_killed_and_keeps_serving() {
    let _one_at_a_time = exclusive().await;
    let cluster = EtcdCluster::start().await;
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.len(), MEMBERS);
    for endpoint in &endpoints {
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    }
    cluster.put("/fixture/key", "one").await.unwrap();
    assert_eq!(
        cluster.get("/fixture/key").await.unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(cluster.get("/fixture/none").await.unwrap(), None);
    // Each member serves it alone too.
    for endpoint in &endpoints {
        let out = run_etcdctl(
            std::slice::from_ref(endpoint),
            &["get", "/fixture/key", "--print-value-only"],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "one",
            "{endpoint}"
        );
    }

    let leader = cluster.leader().await;
    let killed = Instant::now();
    cluster.kill(leader);
    assert_eq!(cluster.live().len(), MEMBERS - 1);
    let next = cluster.leader().await;
    let election = killed.elapsed();
    assert_ne!(next, leader);
    assert!(election < ELECTION_WITHIN, "a new leader took {election:?}");
    eprintln!("etcd: member {next} leads {election:?} after member {leader} was killed");
    cluster.put("/fixture/key", "two").await.unwrap();
    assert_eq!(
        cluster.get("/fixture/key").await.unwrap().as_deref(),
        Some("two")
    );
    assert_eq!(cluster.keys("/fixture/").await.unwrap(), ["/fixture/key"]);

    // Dropping it kills and reaps every member still running.
    let pids = cluster.pids();
    assert_eq!(pids.len(), MEMBERS - 1);
    drop(cluster);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "etcd {pid} still exists after the drop"
        );
    }
}
