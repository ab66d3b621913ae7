//! The audit writer's group commit: 256 writers each record one durable
//! entry at once (as 256 concurrent risky requests would), into a real redb
//! file with `Durability::Immediate`. One iteration is those 256 entries on
//! disk; entries per second = 256 / the time of one iteration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::audit::{AuditEntry, AuditLog, Durability, EntryKind, RequestSummary, Sealing};
use airlock::store::{RedbStore, Store};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Concurrent writers, as in the issue: many requests waiting on one fsync.
const WRITERS: usize = 256;

fn entry(writer: usize) -> AuditEntry {
    let mut entry = AuditEntry::new(EntryKind::RequestDecision, "alice");
    entry.request = Some(RequestSummary {
        method: "POST".into(),
        host: "api.example.com".into(),
        path: format!("/orders/{writer}"),
        route: "api".into(),
        pool: "orders".into(),
        body_size: Some(512),
    });
    entry.decision = Some("allow".into());
    entry
}

fn durable_appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).expect("a store"));
    let log = AuditLog::start(store, "bench", Sealing::default()).expect("the audit writer");
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(WRITERS as u64));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("durable-appends-256-writers", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let writers: Vec<_> = (0..WRITERS)
                        .map(|writer| {
                            let log = log.clone();
                            tokio::spawn(async move {
                                log.record(entry(writer), Durability::Durable).await
                            })
                        })
                        .collect();
                    for writer in writers {
                        writer
                            .await
                            .expect("a writer task")
                            .expect("a durable append");
                    }
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, durable_appends);
criterion_main!(benches);
