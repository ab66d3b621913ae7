//! The `airlock` command: run a config, check one, start the demo, and the
//! operators', approvers', auditors' and policy authors' tools ([`cli`]).

use std::process::ExitCode;

mod cli;

/// Audit entries are allocated on the workers and freed on the audit
/// writer's thread; mimalloc frees across threads without the arena
/// contention glibc's malloc has there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
