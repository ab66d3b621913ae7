//! The sandbox: one wasmtime `Engine` with a pooling allocator, an epoch
//! ticker, and a compile cache; a [`PolicyComponent`] per component, checked
//! against the contract at load; a [`LoadedPolicy`] per component and set of
//! parameters, pre-initialized ([`super::snapshot`]): its `setup` ran once
//! and every instance starts from the memory it left; and
//! [`LoadedPolicy::evaluate`], which runs one evaluation in a fresh instance
//! (or a reused one, if the operator opted in) under a deadline and a memory
//! cap.
//!
//! Containment: a policy that loops is interrupted by the epoch deadline, one
//! that allocates without end hits the memory cap and traps, one that panics
//! or overflows its stack traps; each becomes a [`PolicyFailure`] and the
//! instance is dropped, never reused. The engine itself keeps serving.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap,
};

use super::bindings::{
    Action, Header, HostImports, Level, LocalTime, Metadata, PolicyBindings, PolicyPre,
    PoolFigures, TypesHost, CONTRACT_PACKAGE, CONTRACT_VERSION,
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
    /// The policy's `setup` refused its parameters.
    #[error("{}{message}", key_prefix(.key))]
    Parameters { key: String, message: String },
    #[error("setup() failed: {0}")]
    Setup(PolicyFailure),
    #[error("cannot pre-initialize the policy: {0}")]
    Snapshot(String),
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

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
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

/// Functions Cranelift compiled, by what they were compiled from, kept
/// for the next compile (its incremental cache). A policy is compiled once
/// instrumented and once more per set of parameters it is set up with, and
/// these differ from each other only in their data: every compile after
/// the first reuses the code (an interpreter's, 7-9 MB of it, takes about
/// 10 s of CPU to compile). In memory, up to [`COMPILED_FUNCTIONS_BYTES`];
/// past that it starts over.
#[derive(Debug, Default)]
struct CompiledFunctions {
    kept: Mutex<Kept>,
}

/// What [`CompiledFunctions`] holds: code by key, and their bytes in all.
#[derive(Debug, Default)]
struct Kept {
    code: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

/// What [`CompiledFunctions`] keeps at most, keys and code.
const COMPILED_FUNCTIONS_BYTES: usize = 256 << 20;

impl wasmtime::CacheStore for CompiledFunctions {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.code.get(key).cloned().map(std::borrow::Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        // Two compile threads may both miss a key and both insert it.
        if kept.code.contains_key(key) {
            return true;
        }
        let size = key.len() + value.len();
        if kept.bytes + size > COMPILED_FUNCTIONS_BYTES {
            *kept = Kept::default();
        }
        kept.bytes += size;
        kept.code.insert(key.to_vec(), value);
        true
    }
}

/// Epoch ticks per second: the deadline's resolution is one tick.
const TICK: Duration = Duration::from_millis(1);
/// Core instances one policy component may hold. A Rust or Go policy has
/// up to 4 (the main module plus the shim and fixup modules wit-component
/// adds for imports that return strings); a Python one (componentize-py
/// links CPython from 38 modules, 39 once pre-initialized) many more.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
/// Core-instance slots in the pool per sandbox slot: enough for every slot
/// to hold a compiled policy, or for one in four to hold an interpreter.
const CORE_INSTANCE_SLOTS_PER_SANDBOX: u32 = 16;
/// Tables per policy component (Python's has 2).
const TABLES_PER_COMPONENT: u32 = 4;
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
            // At least room for two instances of the largest component:
            // setting a policy up while an older version still serves.
            .total_core_instances(
                (instances * CORE_INSTANCE_SLOTS_PER_SANDBOX)
                    .max(2 * MAX_CORE_INSTANCES_PER_COMPONENT),
            )
            .total_memories(instances)
            .total_tables(instances * TABLES_PER_COMPONENT)
            .max_memory_size(settings.memory_limit)
            .max_memories_per_component(1)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .table_elements(10_000)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            // Reset memories by copying the image back rather than by
            // madvise, after which every page an evaluation touches faults
            // in again (measured: 2-3x a fresh decision's time); with
            // PAGEMAP_SCAN (Linux 6.7+) only the pages the instance dirtied
            // are copied, not all 192 KiB (measured: a Go policy's fresh
            // decision 173 -> 32 us, a Rust one's about 1 us less).
            .linear_memory_keep_resident(192 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(64 << 10);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10)
            .enable_incremental_compilation(Arc::new(CompiledFunctions::default()))
            .map_err(|error| LoadError::Engine(format!("{error:#}")))?;
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

    /// Compile, check and set up a component with `parameters` (a JSON
    /// object): [`compile`](Self::compile), then
    /// [`PolicyComponent::prepare`].
    ///
    /// # Errors
    /// A [`LoadError`] saying what is wrong; nothing is kept.
    pub fn load(
        &self,
        wasm: &[u8],
        parameters: &str,
        reuse_instances: bool,
    ) -> Result<LoadedPolicy, LoadError> {
        self.compile(wasm)?.prepare(parameters, reuse_instances)
    }

    /// Compile and check a component: it must be a component, speak this
    /// contract version, implement the world, and describe itself. It is
    /// compiled as [`super::snapshot`] instruments it, ready to be set up.
    ///
    /// # Errors
    /// A [`LoadError`] saying what is wrong; nothing is kept.
    pub fn compile(&self, wasm: &[u8]) -> Result<Arc<PolicyComponent>, LoadError> {
        let compile = |bytes: &[u8]| {
            Component::from_binary(&self.engine, bytes)
                .map_err(|error| LoadError::NotAComponent(root_cause(&error)))
        };
        let component = match super::snapshot::instrument(wasm) {
            Ok(instrumented) => compile(&instrumented)?,
            // Not a component, or not one of this contract: the plain bytes
            // say which. Otherwise Wizer's own reason.
            Err(error) => {
                check_contract(&self.engine, &compile(wasm)?)?;
                return Err(error);
            }
        };
        check_contract(&self.engine, &component)?;
        let mut policy = PolicyComponent {
            engine: self.clone(),
            wasm: Arc::from(wasm),
            instrumented: self.instance_pre(&component)?,
            hash: hex_sha256(wasm),
            metadata: Metadata {
                name: String::new(),
                version: String::new(),
                judges: super::bindings::ActionKinds::empty(),
            },
        };
        let metadata = policy.describe().map_err(LoadError::Describe)?;
        decision::check_metadata(&metadata).map_err(LoadError::BadMetadata)?;
        policy.metadata = metadata;
        Ok(Arc::new(policy))
    }

    fn instance_pre(&self, component: &Component) -> Result<PolicyPre<Sandbox>, LoadError> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|error| LoadError::WrongWorld(root_cause(&error)))?;
        PolicyPre::new(instance_pre).map_err(|error| LoadError::WrongWorld(root_cause(&error)))
    }

    /// A store for one instance, with its limits and a deadline armed.
    fn store(&self, context: CallContext, deadline: Duration) -> Store<Sandbox> {
        let mut store = Store::new(
            &self.engine,
            Sandbox::new(self.settings.memory_limit, context),
        );
        store.limiter(|sandbox| &mut sandbox.limits);
        store.set_hostcall_fuel(MAX_ANSWER_BYTES);
        store.set_epoch_deadline(deadline_ticks(deadline));
        store
    }

    fn instantiate(
        &self,
        pre: &InstancePre<Sandbox>,
        store: &mut Store<Sandbox>,
    ) -> Result<wasmtime::component::Instance, PolicyFailure> {
        pre.instantiate(&mut *store)
            .map_err(|error| self.instantiation_failure(&error, store.data()))
    }

    /// Why an instance could not be made: a full pool, or the component's.
    fn instantiation_failure(&self, error: &wasmtime::Error, sandbox: &Sandbox) -> PolicyFailure {
        if error
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return PolicyFailure::Unavailable(format!(
                "all {} sandbox slots are busy; raise [policies] max_instances",
                self.settings.max_instances
            ));
        }
        self.classify(error, sandbox)
    }

    fn classify(&self, error: &wasmtime::Error, sandbox: &Sandbox) -> PolicyFailure {
        let last_log = sandbox.last_error_log.clone();
        if sandbox.limits.memory_exceeded {
            return PolicyFailure::Memory {
                limit: self.settings.memory_limit,
                last_log,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PolicyFailure::Timeout(self.settings.deadline),
            _ => PolicyFailure::Trap {
                message: root_cause(error),
                last_log,
            },
        }
    }
}

/// A compiled component that fits the contract, not yet given parameters.
pub struct PolicyComponent {
    engine: PolicyEngine,
    wasm: Arc<[u8]>,
    /// The component as instrumented for the snapshot after `setup`.
    instrumented: PolicyPre<Sandbox>,
    /// SHA-256 of the component bytes, hex: what the audit trail records.
    hash: String,
    metadata: Metadata,
}

impl std::fmt::Debug for PolicyComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyComponent")
            .field("name", &self.metadata.name)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl PolicyComponent {
    /// Name, version and judged kinds, as the policy described itself.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// SHA-256 of the component, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    fn describe(&self) -> Result<Metadata, PolicyFailure> {
        let engine = &self.engine;
        let mut store = engine.store(CallContext::loading(), LOAD_DEADLINE);
        let instance = engine.instantiate(self.instrumented.instance_pre(), &mut store)?;
        PolicyBindings::new(&mut store, &instance)
            .and_then(|bindings| bindings.airlock_policy_judge().call_describe(&mut store))
            .map_err(|error| engine.classify(&error, store.data()))
    }

    /// Give the policy its `parameters` (a JSON object): run its `setup`
    /// once, under the load deadline, and keep the memory it leaves as the
    /// image every instance of the returned policy starts from.
    ///
    /// # Errors
    /// [`LoadError::Parameters`] when the policy refuses them,
    /// [`LoadError::Setup`] when setup traps, loops or runs out of memory.
    pub fn prepare(
        self: &Arc<Self>,
        parameters: &str,
        reuse_instances: bool,
    ) -> Result<LoadedPolicy, LoadError> {
        let engine = &self.engine;
        let plan = super::snapshot::Plan::new(&self.wasm)?;
        let mut store = engine.store(CallContext::loading(), LOAD_DEADLINE);
        let instance = engine
            .instantiate(self.instrumented.instance_pre(), &mut store)
            .map_err(LoadError::Setup)?;
        let answer = PolicyBindings::new(&mut store, &instance).and_then(|bindings| {
            bindings
                .airlock_policy_judge()
                .call_setup(&mut store, parameters)
        });
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => {
                return Err(LoadError::Parameters {
                    key: decision::printable(refusal.key, 256),
                    message: decision::printable(refusal.message, MAX_LOG_LINE_BYTES),
                })
            }
            Err(error) => return Err(LoadError::Setup(engine.classify(&error, store.data()))),
        }
        // Reading the state out is the host's work, bounded by the memory's
        // size: it gets its own deadline, not what `setup` left of one.
        store.set_epoch_deadline(deadline_ticks(LOAD_DEADLINE));
        let image = super::snapshot::snapshot(&plan, &mut store, instance)?;
        let component = Component::from_binary(&engine.engine, &image)
            .map_err(|error| LoadError::Snapshot(root_cause(&error)))?;
        Ok(LoadedPolicy {
            pre: engine.instance_pre(&component)?,
            component: self.clone(),
            parameters_sha256: hex_sha256(parameters.as_bytes()),
            reuse: reuse_instances.then(|| Mutex::new(Vec::new())),
        })
    }
}

/// A component set up with its parameters, ready to evaluate from any
/// thread.
pub struct LoadedPolicy {
    /// The pre-initialized component.
    pre: PolicyPre<Sandbox>,
    component: Arc<PolicyComponent>,
    /// SHA-256 of the parameters it was set up with (JSON), hex.
    parameters_sha256: String,
    /// Idle instances kept for reuse; `None` in the default fresh-instance mode.
    reuse: Option<Mutex<Vec<ReusableInstance>>>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.component.metadata.name)
            .field("version", &self.component.metadata.version)
            .field("hash", &self.component.hash)
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
    /// A fixed time for `now-unix-ms`, or `None` for the wall clock.
    pub fixed_now_unix_ms: Option<i64>,
    /// Live pool figures.
    pub figures: Arc<dyn FiguresSource>,
    /// The judged request's headers, credentials redacted.
    pub headers: Arc<dyn HeaderSource>,
}

impl CallContext {
    /// The context of `setup` and `describe` at load: no action, no figures.
    fn loading() -> Self {
        CallContext {
            policy: Arc::from("(loading)"),
            fixed_now_unix_ms: None,
            figures: Arc::new(Vec::new()),
            headers: Arc::new(Vec::new()),
        }
    }
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

/// Where `header` and `headers` get their answers: the judged request, or
/// a test's list. Read only when a policy asks.
pub trait HeaderSource: Send + Sync {
    /// The first value of header `name` (any case), if present.
    fn header(&self, name: &str) -> Option<String>;
    /// Every header, in order, names in lower case.
    fn headers(&self) -> Vec<Header>;
}

impl HeaderSource for Vec<Header> {
    fn header(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value.clone())
    }

    fn headers(&self) -> Vec<Header> {
        self.clone()
    }
}

impl LoadedPolicy {
    /// Name, version and judged kinds, as the policy described itself.
    pub fn metadata(&self) -> &Metadata {
        &self.component.metadata
    }

    /// SHA-256 of the component, hex.
    pub fn hash(&self) -> &str {
        self.component.hash()
    }

    /// SHA-256 of the parameters it was set up with (JSON), hex.
    pub fn parameters_sha256(&self) -> &str {
        &self.parameters_sha256
    }

    /// The same component set up with other `parameters`, e.g. a route's
    /// overrides, in the same instance mode.
    ///
    /// # Errors
    /// As [`PolicyComponent::prepare`].
    pub fn with_parameters(&self, parameters: &str) -> Result<LoadedPolicy, LoadError> {
        self.component.prepare(parameters, self.reuse.is_some())
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
        let engine = &self.component.engine;
        instance
            .store
            .set_epoch_deadline(deadline_ticks(engine.settings.deadline));
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
            Err(error) => return Err(engine.classify(&error, instance.store.data())),
        };
        let verdict = decision::check(decision).map_err(PolicyFailure::InvalidDecision);
        if verdict.is_ok() {
            self.keep_for_reuse(instance);
        }
        verdict
    }

    fn instantiate(&self, context: CallContext) -> Result<ReusableInstance, PolicyFailure> {
        let engine = &self.component.engine;
        // Instantiation runs no policy code (no start function), but arm the
        // deadline anyway: a store must never run without one.
        let mut store = engine.store(context, LOAD_DEADLINE);
        // The export indices were looked up once, when the component loaded.
        match self.pre.instantiate(&mut store) {
            Ok(bindings) => Ok(ReusableInstance { store, bindings }),
            Err(error) => Err(engine.instantiation_failure(&error, store.data())),
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
}

fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_micros().div_ceil(TICK.as_micros());
    // One tick more: the next tick may land right after arming.
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
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
        MAX_CORE_INSTANCES_PER_COMPONENT as usize
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
        let message = decision::printable(message, MAX_LOG_LINE_BYTES);
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

    fn live_figures(&mut self, pool: String) -> Option<PoolFigures> {
        self.context.figures.pool_figures(&pool)
    }

    fn request_header(&mut self, name: String) -> Option<String> {
        self.context.headers.header(&name)
    }

    fn request_headers(&mut self) -> Vec<Header> {
        self.context.headers.headers()
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
    // What the component itself exports, not what instrumenting it added.
    let exports: Vec<_> = component_type
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| !name.starts_with("wasmtime:wizer/"))
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
                client_address: "127.0.0.1".into(),
                route: "default".into(),
                pool: "app".into(),
                body_size: None,
                content_type: None,
            }),
            principal: action::anonymous(),
        }
    }

    pub(crate) fn context() -> CallContext {
        CallContext {
            policy: Arc::from("test"),
            fixed_now_unix_ms: None,
            figures: Arc::new(Vec::new()),
            headers: Arc::new(Vec::new()),
        }
    }

    fn with_header(name: &str, value: &str) -> CallContext {
        CallContext {
            headers: Arc::new(vec![Header {
                name: name.to_owned(),
                value: value.to_owned(),
            }]),
            ..context()
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

    fn mode(mode: &str) -> String {
        format!(r#"{{"mode": "{mode}"}}"#)
    }

    #[test]
    fn hostile_policies_are_contained_and_the_policy_keeps_serving() {
        let engine = engine();
        let hostile = engine.compile(&fixture("hostile")).unwrap();
        for reuse in [false, true] {
            let peaceful = hostile.prepare(&mode("none"), reuse).unwrap();
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
                let policy = hostile.prepare(&mode(misbehaviour), reuse).unwrap();
                let failure = policy.evaluate(&get("/"), context()).unwrap_err();
                assert_eq!(
                    failure.code(),
                    code,
                    "{misbehaviour} (reuse {reuse}): {failure}"
                );
                assert!(
                    failure.to_string().contains(message),
                    "{misbehaviour}: {failure}"
                );
                // The same component, right after, in peace.
                let verdict = peaceful.evaluate(&get("/"), context()).unwrap();
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
        let reused = engine.load(&fixture("allow-all"), "{}", true).unwrap();
        let fresh = engine.load(&fixture("allow-all"), "{}", false).unwrap();
        for _ in 0..3 {
            reused.evaluate(&get("/"), context()).unwrap();
            fresh.evaluate(&get("/"), context()).unwrap();
        }
        assert_eq!(reused.reuse.as_ref().unwrap().lock().unwrap().len(), 1);
        assert!(fresh.reuse.is_none());
    }

    #[test]
    fn components_that_do_not_fit_the_contract_are_refused_with_a_reason() {
        let engine = engine();
        let refuse = |bytes: &[u8]| engine.load(bytes, "{}", false).unwrap_err().to_string();
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
            .contains("exports nothing instead of `airlock:policy/judge@0.2.0`"));
        let future = refuse(&fixture("other-version"));
        assert!(
            future.contains("airlock:policy@9.0.0")
                && future.contains("speaks airlock:policy@0.2.0"),
            "{future}"
        );
        let real = fixture("allow-all");
        assert!(refuse(&real[..real.len() / 2]).contains("not a WebAssembly component"));
    }

    #[test]
    fn describe_is_read_at_load() {
        let policy = engine()
            .load(&fixture("approval-rules"), r#"{"rules": []}"#, false)
            .unwrap();
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
        let rules = r#"{"rules": []}"#;
        first.load(&fixture("deny-list"), rules, false).unwrap();
        // The instrumented component and its pre-initialized image.
        assert_eq!(first.cache_counts(), Some((0, 2)));
        let second = PolicyEngine::new(settings).unwrap();
        second.load(&fixture("deny-list"), rules, false).unwrap();
        assert_eq!(second.cache_counts(), Some((2, 0)));
    }

    /// Setup runs once, at load: a refusal names the key, a setup that
    /// traps or loops is refused under the load deadline, and what setup
    /// left is what every fresh instance starts from.
    #[test]
    fn parameters_are_checked_once_at_load() {
        let engine = engine();
        let rules = engine.compile(&fixture("approval-rules")).unwrap();
        let misspelt =
            r#"{"rules": [{"method": ["DELETE"], "approvers": {"groups": ["oncall"]}}]}"#;
        match rules.prepare(misspelt, false).unwrap_err() {
            LoadError::Parameters { key, message } => {
                assert_eq!(key, "rules[0].method");
                assert!(message.starts_with("unknown field `method`"), "{message}");
            }
            other => panic!("expected a refusal, got {other}"),
        }
        let hostile = engine.compile(&fixture("hostile")).unwrap();
        for (mode_name, code) in [
            ("setup-loop", "policy_timeout"),
            ("setup-panic", "policy_trap"),
        ] {
            match hostile.prepare(&mode(mode_name), false).unwrap_err() {
                LoadError::Setup(failure) => assert_eq!(failure.code(), code, "{failure}"),
                other => panic!("{mode_name}: expected a setup failure, got {other}"),
            }
        }
        let refused = hostile.prepare(&mode("setup-refuse"), false).unwrap_err();
        assert_eq!(refused.to_string(), "mode: refused on purpose");
    }

    /// A fresh instance per evaluation sees nothing an earlier evaluation
    /// left in memory; a reused one does (that is what reuse trades).
    #[test]
    fn a_fresh_instance_sees_no_other_evaluations_memory() {
        let engine = engine();
        let hostile = engine.compile(&fixture("hostile")).unwrap();
        let fresh = hostile.prepare(&mode("remember"), false).unwrap();
        for secret in ["alice-secret", "bob-secret"] {
            let verdict = fresh
                .evaluate(&get("/"), with_header("x-secret", secret))
                .unwrap();
            assert_eq!(verdict.kind(), "allow", "{secret}: {verdict:?}");
        }
        let reused = hostile.prepare(&mode("remember"), true).unwrap();
        reused
            .evaluate(&get("/"), with_header("x-secret", "alice-secret"))
            .unwrap();
        let Verdict::Deny(refusal) = reused
            .evaluate(&get("/"), with_header("x-secret", "bob-secret"))
            .unwrap()
        else {
            panic!("a reused instance forgot");
        };
        assert!(
            refusal.reason.contains("alice-secret"),
            "{}",
            refusal.reason
        );
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
