//! The sandbox: one wasmtime `Engine` with a pooling allocator, an epoch
//! ticker, and a compile cache; a [`LoadedPolicy`] per component, checked
//! against the contract at load; and [`LoadedPolicy::evaluate`], which runs
//! one evaluation in a fresh instance (or a reused one, if the operator opted
//! in) under a deadline and a memory cap.
//!
//! Containment: a policy that loops is interrupted by the epoch deadline, one
//! that allocates without end hits the memory cap and traps, one that panics
//! or overflows its stack traps; each becomes a [`PolicyFailure`] and the
//! instance is dropped, never reused. The engine itself keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap,
};

use super::bindings::{
    Action, HostImports, Level, LocalTime, Metadata, PolicyBindings, PolicyPre, PoolFigures,
    TypesHost, CONTRACT_PACKAGE, CONTRACT_VERSION,
};
use super::decision::{self, Verdict};

/// How the sandbox is sized; from `[policies]` in the config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Wall-clock budget of one evaluation.
    pub deadline: Duration,
    /// Linear memory cap per instance.
    pub memory_limit: usize,
    /// Instances alive at once (fresh and reused), across all policies.
    pub max_instances: u32,
    /// Where wasmtime caches compiled code; `None` compiles every time.
    pub cache_directory: Option<PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            deadline: Duration::from_millis(10),
            memory_limit: 16 << 20,
            max_instances: 64,
            cache_directory: None,
        }
    }
}

/// Why a component was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error(
        "built against {found}, but this Airlock speaks {CONTRACT_PACKAGE}@{CONTRACT_VERSION}; rebuild it with a matching SDK"
    )]
    ContractVersion { found: String },
    #[error("does not implement the {CONTRACT_PACKAGE} world: {0}")]
    WrongWorld(String),
    #[error("describe() failed: {0}")]
    Describe(PolicyFailure),
    #[error("describe() returned an unusable answer: {0}")]
    BadMetadata(String),
    #[error("cannot set up the policy engine: {0}")]
    Engine(String),
}

/// Why one evaluation produced no usable decision. The client sees only
/// [`PolicyFailure::code`]; the log and the audit trail get the whole message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyFailure {
    #[error("ran past its deadline of {0:?} and was interrupted")]
    Timeout(Duration),
    #[error("exceeded its memory limit of {limit} bytes{}", last_words(.last_log))]
    Memory {
        limit: usize,
        last_log: Option<String>,
    },
    #[error("trapped: {message}{}", last_words(.last_log))]
    Trap {
        message: String,
        last_log: Option<String>,
    },
    #[error("returned an invalid decision: {0}")]
    InvalidDecision(String),
    #[error("no sandbox available: {0}")]
    Unavailable(String),
}

fn last_words(log: &Option<String>) -> String {
    log.as_ref()
        .map(|line| format!(" (its last error log: {line})"))
        .unwrap_or_default()
}

impl PolicyFailure {
    /// True for the failures a fail-open route may skip: the policy crashed
    /// or ran out of time or memory. An unreadable or invalid answer might
    /// have been a deny, and a full pool is load an attacker can make: those
    /// always fail closed.
    pub fn may_fail_open(&self) -> bool {
        matches!(
            self,
            PolicyFailure::Timeout(_) | PolicyFailure::Memory { .. } | PolicyFailure::Trap { .. }
        )
    }

    /// The short code a client may see, e.g. `policy_timeout`.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyFailure::Timeout(_) => "policy_timeout",
            PolicyFailure::Memory { .. } => "policy_memory",
            PolicyFailure::Trap { .. } => "policy_trap",
            PolicyFailure::InvalidDecision(_) => "policy_invalid_decision",
            PolicyFailure::Unavailable(_) => "policy_unavailable",
        }
    }
}

/// The shared sandbox machinery. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Engine,
    linker: Arc<Linker<Sandbox>>,
    settings: Arc<EngineSettings>,
    cache: Option<Cache>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Epoch ticks per second: the deadline's resolution is one tick.
const TICK: Duration = Duration::from_millis(1);
/// Core instances per policy component: the main module plus the shim and
/// fixup modules wit-component adds for imports that return strings.
const CORE_INSTANCES_PER_COMPONENT: u32 = 4;
/// Bytes a policy's answer (or a log line) may carry out of the sandbox:
/// wasmtime stops copying past it, so an answer whose lists all point at the
/// same large string cannot make the host allocate without bound. A valid
/// decision is far smaller (32 headers of 4 KiB and a 1 KiB reason).
const MAX_ANSWER_BYTES: usize = 256 << 10;
/// Deadline of `describe()` at load: generous, since loading is not on the
/// request path and a busy machine must not refuse a good policy.
const LOAD_DEADLINE: Duration = Duration::from_secs(1);
/// Lines a policy may log per evaluation; a chatty or looping policy must not
/// flood the log.
const MAX_LOG_LINES: u32 = 16;
const MAX_LOG_LINE_BYTES: usize = 2048;

impl PolicyEngine {
    /// Build the engine and start its epoch ticker.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration or the cache directory.
    pub fn new(settings: EngineSettings) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = settings.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances)
            .total_tables(instances * CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(settings.memory_limit)
            .max_memories_per_component(1)
            .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .table_elements(10_000)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            // Reset small memories by memset rather than madvise: faster for
            // the few hundred KiB a policy touches.
            .linear_memory_keep_resident(192 << 10)
            .table_keep_resident(64 << 10);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10);
        let cache = match &settings.cache_directory {
            Some(directory) => {
                let mut cache_config = CacheConfig::new();
                cache_config.with_directory(directory);
                let cache = Cache::new(cache_config).map_err(|error| {
                    LoadError::Engine(format!("compile cache {}: {error:#}", directory.display()))
                })?;
                config.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };
        let engine =
            Engine::new(&config).map_err(|error| LoadError::Engine(format!("{error:#}")))?;
        let mut linker = Linker::new(&engine);
        PolicyBindings::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |sandbox| sandbox)
            .map_err(|error| LoadError::Engine(format!("{error:#}")))?;
        start_epoch_ticker(&engine)?;
        Ok(PolicyEngine {
            engine,
            linker: Arc::new(linker),
            settings: Arc::new(settings),
            cache,
        })
    }

    /// Compile-cache hits and misses since start, if the cache is on.
    pub fn cache_counts(&self) -> Option<(usize, usize)> {
        self.cache
            .as_ref()
            .map(|cache| (cache.cache_hits(), cache.cache_misses()))
    }

    /// Compile and check a component: it must be a component, speak this
    /// contract version, implement the world, and describe itself.
    ///
    /// # Errors
    /// A [`LoadError`] saying what is wrong; nothing is kept.
    pub fn load(&self, wasm: &[u8], reuse_instances: bool) -> Result<LoadedPolicy, LoadError> {
        let component = Component::from_binary(&self.engine, wasm)
            .map_err(|error| LoadError::NotAComponent(root_cause(&error)))?;
        check_contract(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| LoadError::WrongWorld(root_cause(&error)))?;
        let pre = PolicyPre::new(instance_pre)
            .map_err(|error| LoadError::WrongWorld(root_cause(&error)))?;
        let mut policy = LoadedPolicy {
            pre,
            engine: self.clone(),
            hash: hex_sha256(wasm),
            metadata: Metadata {
                name: String::new(),
                version: String::new(),
                judges: super::bindings::ActionKinds::empty(),
            },
            reuse: reuse_instances.then(|| Mutex::new(Vec::new())),
        };
        let metadata = policy.describe().map_err(LoadError::Describe)?;
        decision::check_metadata(&metadata).map_err(LoadError::BadMetadata)?;
        policy.metadata = metadata;
        Ok(policy)
    }
}

/// A compiled, checked policy, ready to evaluate from any thread.
pub struct LoadedPolicy {
    pre: PolicyPre<Sandbox>,
    engine: PolicyEngine,
    /// SHA-256 of the component bytes, hex: what the audit trail records.
    hash: String,
    metadata: Metadata,
    /// Idle instances kept for reuse; `None` in the default fresh-instance mode.
    reuse: Option<Mutex<Vec<ReusableInstance>>>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.metadata.name)
            .field("version", &self.metadata.version)
            .field("hash", &self.hash)
            .field("reuse", &self.reuse.is_some())
            .finish_non_exhaustive()
    }
}

struct ReusableInstance {
    store: Store<Sandbox>,
    bindings: PolicyBindings,
}

/// What the host imports answer during one evaluation.
#[derive(Clone)]
pub struct CallContext {
    /// The policy's name, as the log shows it.
    pub policy: Arc<str>,
    /// Parameters as a JSON object.
    pub parameters: Arc<str>,
    /// A fixed time for `now-unix-ms`, or `None` for the wall clock.
    pub fixed_now_unix_ms: Option<i64>,
    /// Live pool figures.
    pub figures: Arc<dyn FiguresSource>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Where `pool-figures` gets its answers: the balancer, or a test's table.
pub trait FiguresSource: Send + Sync {
    /// Figures of `pool` right now, if it exists.
    fn pool_figures(&self, pool: &str) -> Option<PoolFigures>;
}

impl FiguresSource for Vec<PoolFigures> {
    fn pool_figures(&self, pool: &str) -> Option<PoolFigures> {
        self.iter().find(|figures| figures.pool == pool).cloned()
    }
}

impl LoadedPolicy {
    /// Name, version and judged kinds, as the policy described itself.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// SHA-256 of the component, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Judge `action`. Any misbehaviour of the policy comes back as a
    /// [`PolicyFailure`]; the instance it happened in is dropped.
    pub fn evaluate(
        &self,
        action: &Action,
        context: CallContext,
    ) -> Result<Verdict, PolicyFailure> {
        let mut instance = match self.take_idle_instance() {
            Some(mut idle) => {
                idle.store.data_mut().begin(context);
                idle
            }
            None => self.instantiate(context)?,
        };
        instance
            .store
            .set_epoch_deadline(self.deadline_ticks(self.engine.settings.deadline));
        let result = instance
            .bindings
            .airlock_policy_judge()
            .call_evaluate(&mut instance.store, action);
        let decision = match result {
            Ok(decision) => decision,
            // Not a trap: the answer could not be read (over MAX_ANSWER_BYTES,
            // invalid UTF-8, out of bounds).
            Err(error) if error.downcast_ref::<Trap>().is_none() => {
                return Err(PolicyFailure::InvalidDecision(format!(
                    "its answer could not be read: {}",
                    root_cause(&error)
                )))
            }
            Err(error) => return Err(self.classify(&error, instance.store.data())),
        };
        let verdict = decision::check(decision).map_err(PolicyFailure::InvalidDecision);
        if verdict.is_ok() {
            self.keep_for_reuse(instance);
        }
        verdict
    }

    fn describe(&self) -> Result<Metadata, PolicyFailure> {
        let context = CallContext {
            policy: Arc::from("(loading)"),
            parameters: Arc::from("{}"),
            fixed_now_unix_ms: None,
            figures: Arc::new(Vec::new()),
        };
        let mut instance = self.instantiate(context)?;
        instance
            .store
            .set_epoch_deadline(self.deadline_ticks(LOAD_DEADLINE));
        let result = instance
            .bindings
            .airlock_policy_judge()
            .call_describe(&mut instance.store);
        result.map_err(|error| self.classify(&error, instance.store.data()))
    }

    fn instantiate(&self, context: CallContext) -> Result<ReusableInstance, PolicyFailure> {
        let settings = &self.engine.settings;
        let mut store = Store::new(
            &self.engine.engine,
            Sandbox::new(settings.memory_limit, context),
        );
        store.limiter(|sandbox| &mut sandbox.limits);
        store.set_hostcall_fuel(MAX_ANSWER_BYTES);
        // Instantiation runs no policy code (no start function), but arm the
        // deadline anyway: a store must never run without one.
        store.set_epoch_deadline(self.deadline_ticks(LOAD_DEADLINE));
        match self.pre.instantiate(&mut store) {
            Ok(bindings) => Ok(ReusableInstance { store, bindings }),
            Err(error)
                if error
                    .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                Err(PolicyFailure::Unavailable(format!(
                    "all {} sandbox slots are busy; raise [policies] max_instances",
                    settings.max_instances
                )))
            }
            Err(error) => Err(self.classify(&error, store.data())),
        }
    }

    fn take_idle_instance(&self) -> Option<ReusableInstance> {
        self.reuse.as_ref()?.lock().ok()?.pop()
    }

    /// Keep a healthy instance for the next evaluation (reuse mode only).
    /// At most a few per policy stay idle, so reuse cannot starve the pool.
    fn keep_for_reuse(&self, instance: ReusableInstance) {
        const MAX_IDLE: usize = 4;
        if let Some(idle) = &self.reuse {
            if let Ok(mut idle) = idle.lock() {
                if idle.len() < MAX_IDLE {
                    idle.push(instance);
                }
            }
        }
    }

    fn deadline_ticks(&self, deadline: Duration) -> u64 {
        let ticks = deadline.as_micros().div_ceil(TICK.as_micros());
        // One tick more: the next tick may land right after arming.
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn classify(&self, error: &wasmtime::Error, sandbox: &Sandbox) -> PolicyFailure {
        let last_log = sandbox.last_error_log.clone();
        if sandbox.limits.memory_exceeded {
            return PolicyFailure::Memory {
                limit: self.engine.settings.memory_limit,
                last_log,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PolicyFailure::Timeout(self.engine.settings.deadline),
            _ => PolicyFailure::Trap {
                message: root_cause(error),
                last_log,
            },
        }
    }
}

/// The store's data: the limits and what the host imports answer.
pub(crate) struct Sandbox {
    limits: SandboxLimits,
    context: CallContext,
    log_lines: u32,
    last_error_log: Option<String>,
}

impl Sandbox {
    fn new(memory_limit: usize, context: CallContext) -> Self {
        Sandbox {
            limits: SandboxLimits {
                memory_limit,
                memory_exceeded: false,
            },
            context,
            log_lines: 0,
            last_error_log: None,
        }
    }

    /// Prepare a reused instance for its next evaluation.
    fn begin(&mut self, context: CallContext) {
        self.context = context;
        self.limits.memory_exceeded = false;
        self.log_lines = 0;
        self.last_error_log = None;
    }
}

/// Refuses memory growth past the cap and remembers that it did, so the
/// trap that follows (Rust aborts on allocation failure) is reported as a
/// memory failure rather than a bare `unreachable`.
struct SandboxLimits {
    memory_limit: usize,
    memory_exceeded: bool,
}

impl ResourceLimiter for SandboxLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }

    fn instances(&self) -> usize {
        CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        1
    }
}

impl TypesHost for Sandbox {}

impl HostImports for Sandbox {
    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            return;
        }
        // Untrusted text: one line, bounded, so it cannot forge log lines.
        let message = decision::printable(&message, MAX_LOG_LINE_BYTES);
        let policy = &*self.context.policy;
        match level {
            Level::Trace => tracing::trace!(target: "airlock::policy", policy, "{message}"),
            Level::Debug => tracing::debug!(target: "airlock::policy", policy, "{message}"),
            Level::Info => tracing::info!(target: "airlock::policy", policy, "{message}"),
            Level::Warn => tracing::warn!(target: "airlock::policy", policy, "{message}"),
            Level::Error => {
                tracing::error!(target: "airlock::policy", policy, "{message}");
                self.last_error_log = Some(message);
            }
        }
    }

    fn now_unix_ms(&mut self) -> i64 {
        self.context
            .fixed_now_unix_ms
            .unwrap_or_else(wall_clock_unix_ms)
    }

    fn to_local_time(&mut self, zone: String, unix_ms: i64) -> Option<LocalTime> {
        local_time(&zone, unix_ms)
    }

    fn parameters(&mut self) -> String {
        self.context.parameters.to_string()
    }

    fn live_figures(&mut self, pool: String) -> Option<PoolFigures> {
        self.context.figures.pool_figures(&pool)
    }
}

/// `unix_ms` in the IANA zone `zone`, from jiff's bundled tz database (the
/// same data the Rust SDK uses natively, so tests and production agree).
pub fn local_time(zone: &str, unix_ms: i64) -> Option<LocalTime> {
    let zone = jiff::tz::db().get(zone).ok()?;
    let timestamp = jiff::Timestamp::from_millisecond(unix_ms).ok()?;
    let info = zone.to_offset_info(timestamp);
    let zoned = timestamp.to_zoned(zone.clone());
    Some(LocalTime {
        year: i32::from(zoned.year()),
        month: zoned.month().unsigned_abs(),
        day: zoned.day().unsigned_abs(),
        hour: zoned.hour().unsigned_abs(),
        minute: zoned.minute().unsigned_abs(),
        second: zoned.second().unsigned_abs(),
        weekday: zoned.weekday().to_monday_one_offset().unsigned_abs(),
        utc_offset_seconds: info.offset().seconds(),
        abbreviation: info.abbreviation().to_owned(),
    })
}

fn wall_clock_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Refuse a component built against another version of the contract (or not
/// against it at all) with a message naming what it was built against.
fn check_contract(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let component_type = component.component_type();
    let judge = format!("{CONTRACT_PACKAGE}/judge@{CONTRACT_VERSION}");
    let ours = format!("{CONTRACT_PACKAGE}/");
    let names = component_type
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .chain(
            component_type
                .imports(engine)
                .map(|(name, _)| name.to_owned()),
        );
    let mut exports_judge = false;
    for name in names {
        if name == judge {
            exports_judge = true;
        } else if let Some(interface) = name.strip_prefix(&ours) {
            if let Some((_, version)) = interface.split_once('@') {
                if version != CONTRACT_VERSION {
                    return Err(LoadError::ContractVersion {
                        found: format!("{CONTRACT_PACKAGE}@{version}"),
                    });
                }
            }
        }
    }
    if exports_judge {
        return Ok(());
    }
    let exports: Vec<_> = component_type
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    Err(LoadError::WrongWorld(format!(
        "it exports {} instead of `{judge}`",
        if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        }
    )))
}

fn start_epoch_ticker(engine: &Engine) -> Result<(), LoadError> {
    // An OS thread, not a task: a looping guest occupies its worker thread,
    // and a ticker scheduled on the same runtime could never interrupt it.
    // The ticker holds a weak reference so it ends with the last engine.
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("airlock-policy-epoch".to_owned())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
    // Without the ticker no policy could be interrupted: refuse to run.
    spawned.map(drop).map_err(|error| {
        LoadError::Engine(format!("cannot start the policy deadline thread: {error}"))
    })
}

fn root_cause(error: &wasmtime::Error) -> String {
    error.root_cause().to_string()
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::super::action;
    use super::super::bindings::{Request, Subject};
    use super::*;

    /// A component built by `build.rs` from `tests/policies` or `policies/`.
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("AIRLOCK_TEST_POLICIES")).join(format!("{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    pub(crate) fn get(path: &str) -> Action {
        Action {
            subject: Subject::Request(Request {
                method: "GET".into(),
                scheme: "http".into(),
                host: "example.com".into(),
                path: path.into(),
                query: None,
                headers: Vec::new(),
                client_address: "127.0.0.1".into(),
                route: "default".into(),
                pool: "app".into(),
                body_size: None,
                content_type: None,
            }),
            principal: action::anonymous(),
            figures: Vec::new(),
        }
    }

    pub(crate) fn context(parameters: &str) -> CallContext {
        CallContext {
            policy: Arc::from("test"),
            parameters: Arc::from(parameters),
            fixed_now_unix_ms: None,
            figures: Arc::new(Vec::new()),
        }
    }

    pub(crate) fn engine() -> PolicyEngine {
        PolicyEngine::new(EngineSettings {
            // Generous: tests run in parallel on a shared machine; the loop
            // case still proves the deadline interrupts.
            deadline: Duration::from_millis(100),
            memory_limit: 4 << 20,
            max_instances: 16,
            cache_directory: None,
        })
        .unwrap()
    }

    fn mode(mode: &str) -> CallContext {
        context(&format!(r#"{{"mode": "{mode}"}}"#))
    }

    #[test]
    fn hostile_policies_are_contained_and_the_policy_keeps_serving() {
        let engine = engine();
        for reuse in [false, true] {
            let hostile = engine.load(&fixture("hostile"), reuse).unwrap();
            let expectations = [
                ("loop", "policy_timeout", "interrupted"),
                ("allocate", "policy_memory", "memory limit of 4194304"),
                ("recurse", "policy_trap", "out of bounds"),
                ("panic", "policy_trap", "panics on purpose"),
                (
                    "huge-reason",
                    "policy_invalid_decision",
                    "could not be read",
                ),
                (
                    "huge-answer",
                    "policy_invalid_decision",
                    "could not be read",
                ),
                ("bad-status", "policy_invalid_decision", "not a 4xx or 5xx"),
                (
                    "bad-header",
                    "policy_invalid_decision",
                    "not a valid header name",
                ),
                ("zero-quorum", "policy_invalid_decision", "quorum 0"),
            ];
            for (misbehaviour, code, message) in expectations {
                let failure = hostile.evaluate(&get("/"), mode(misbehaviour)).unwrap_err();
                assert_eq!(
                    failure.code(),
                    code,
                    "{misbehaviour} (reuse {reuse}): {failure}"
                );
                assert!(
                    failure.to_string().contains(message),
                    "{misbehaviour}: {failure}"
                );
                // The same policy, right after, in peace.
                let verdict = hostile.evaluate(&get("/"), mode("none")).unwrap();
                assert_eq!(
                    verdict.kind(),
                    "allow",
                    "after {misbehaviour} (reuse {reuse})"
                );
            }
        }
    }

    #[test]
    fn reuse_keeps_an_instance_and_fresh_mode_does_not() {
        let engine = engine();
        let reused = engine.load(&fixture("allow-all"), true).unwrap();
        let fresh = engine.load(&fixture("allow-all"), false).unwrap();
        for _ in 0..3 {
            reused.evaluate(&get("/"), context("{}")).unwrap();
            fresh.evaluate(&get("/"), context("{}")).unwrap();
        }
        assert_eq!(reused.reuse.as_ref().unwrap().lock().unwrap().len(), 1);
        assert!(fresh.reuse.is_none());
    }

    #[test]
    fn components_that_do_not_fit_the_contract_are_refused_with_a_reason() {
        let engine = engine();
        let refuse = |bytes: &[u8]| engine.load(bytes, false).unwrap_err().to_string();
        assert!(
            refuse(b"not wasm at all").contains("magic header"),
            "{}",
            refuse(b"garbage")
        );
        let core_module = wat::parse_str("(module)").unwrap();
        assert!(
            refuse(&core_module).contains("not a WebAssembly component"),
            "{}",
            refuse(&core_module)
        );
        let empty_component = wat::parse_str("(component)").unwrap();
        assert!(refuse(&empty_component)
            .contains("exports nothing instead of `airlock:policy/judge@0.1.0`"));
        let future = refuse(&fixture("other-version"));
        assert!(
            future.contains("airlock:policy@9.0.0")
                && future.contains("speaks airlock:policy@0.1.0"),
            "{future}"
        );
        let real = fixture("allow-all");
        assert!(refuse(&real[..real.len() / 2]).contains("not a WebAssembly component"));
    }

    #[test]
    fn describe_is_read_at_load() {
        let policy = engine().load(&fixture("approval-rules"), false).unwrap();
        assert_eq!(policy.metadata().name, "approval-rules");
        assert!(policy
            .metadata()
            .judges
            .contains(super::super::bindings::ActionKinds::REQUEST));
        assert_eq!(policy.hash().len(), 64);
    }

    #[test]
    fn a_restart_finds_compiled_policies_in_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let settings = EngineSettings {
            cache_directory: Some(cache.path().to_owned()),
            ..EngineSettings::default()
        };
        let first = PolicyEngine::new(settings.clone()).unwrap();
        first.load(&fixture("deny-list"), false).unwrap();
        assert_eq!(first.cache_counts(), Some((0, 1)));
        let second = PolicyEngine::new(settings).unwrap();
        second.load(&fixture("deny-list"), false).unwrap();
        assert_eq!(second.cache_counts(), Some((1, 0)));
    }

    #[test]
    fn local_time_follows_the_zone_rules() {
        // 2026-03-29 01:30 UTC: Berlin has just sprung forward to CEST.
        let spring = local_time("Europe/Berlin", 1_774_747_800_000).unwrap();
        assert_eq!(
            (spring.hour, spring.minute, spring.abbreviation.as_str()),
            (3, 30, "CEST")
        );
        assert_eq!(spring.utc_offset_seconds, 7200);
        assert_eq!(spring.weekday, 7);
        assert!(local_time("Mars/Olympus_Mons", 0).is_none());
    }
}
