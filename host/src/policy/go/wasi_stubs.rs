//! Go's `wasip1` runtime imports a few `wasi_snapshot_preview1` functions.
//! A policy component may import only `airlock:policy/host`, and the stock
//! preview1 adapter cannot run under Go (it allocates through the module's
//! `cabi_realloc` while Go's runtime is still starting, and Go's allocator
//! calls WASI clocks inside `cabi_realloc`, which the component model
//! forbids). So [`stub_wasi`] rewrites the core module instead: each WASI
//! import becomes a small function inside the module.
//!
//! - Wall clock: the host's `now-unix-ms` (a case table's fixed time works);
//!   inside `cabi_realloc` or a post-return, where no import may be called,
//!   the last reading. Monotonic clock: a counter, advanced by sleeps.
//! - `fd_write`: each write becomes one host `log` line (stdout info,
//!   stderr error). `random_get`: a fixed-seed xorshift (not for secrets).
//! - No arguments, environment or file descriptors (`EBADF`), `ENOSYS` for
//!   the rest; `proc_exit` traps.
//!
//! It also wraps `cabi_realloc` (a bump allocator in a 64 KiB chunk Go hands
//! out once through `cabi_arena_chunk`, reset after each call's post-return,
//! so lowering an action rarely enters Go's allocator) and each
//! `cabi_post_*` export, flagging that no import may be called meanwhile.

use anyhow::{Context as _, Result};
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{BlockType, Function, Instruction as I, MemArg, ValType};

const WASI: &str = "wasi_snapshot_preview1";
const HOST: &str = "airlock:policy/host@0.2.0";

/// What the rewriter knows about the input module.
struct Stubber {
    /// Old function index -> new function index.
    func_map: Vec<u32>,
    /// The wasi imports being replaced: (name, type index), in stub order.
    stubs: Vec<(String, u32)>,
    /// Type signatures, to know each stub's results.
    types: Vec<wasmparser::FuncType>,
    /// New host imports appended after the kept ones: (name, new type index).
    new_imports: Vec<(&'static str, u32)>,
    /// Indices of the host functions and the two new globals.
    now_fn: u32,
    log_fn: u32,
    rng_global: u32,
    mono_global: u32,
    /// 1 while the host is inside cabi_realloc or a post-return function,
    /// where the component model forbids calling imports.
    no_leave_global: u32,
    /// Last realtime reading, answered while no_leave is set.
    wall_global: u32,
    /// The bump arena of the fast cabi_realloc: current and end address.
    cur_global: u32,
    end_global: u32,
    /// The permanent chunk, obtained once from Go's cabi_arena_chunk.
    base_global: u32,
    limit_global: u32,
    arena_chunk_fn: Option<u32>,
    /// Exports wrapped so that they set no_leave: (name, old func, type).
    wrapped: Vec<(String, u32, u32)>,
    /// Index of the first wrapper function.
    first_wrapper: u32,
}

impl Reencode for Stubber {
    type Error = anyhow::Error;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<Self::Error>> {
        Ok(self.func_map[func as usize])
    }

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_type_section(self, types, section)?;
        // now-unix-ms: () -> i64, log: (i32, i32, i32) -> ()
        types.ty().function([], [ValType::I64]);
        types.ty().function([ValType::I32; 3], []);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for import in section.into_imports() {
            let import = import?;
            if import.module == WASI {
                continue;
            }
            let ty = self.entity_type(import.ty)?;
            imports.import(import.module, import.name, ty);
        }
        for (name, ty) in &self.new_imports {
            imports.import(HOST, name, wasm_encoder::EntityType::Function(*ty));
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        for (_, ty) in &self.stubs {
            functions.function(*ty);
        }
        for (_, _, ty) in &self.wrapped {
            functions.function(*ty);
        }
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_global_section(self, globals, section)?;
        let ty = wasm_encoder::GlobalType {
            val_type: ValType::I64,
            mutable: true,
            shared: false,
        };
        globals.global(
            ty,
            &wasm_encoder::ConstExpr::i64_const(0x2545_f491_4f6c_dd1d),
        );
        globals.global(ty, &wasm_encoder::ConstExpr::i64_const(1_000_000));
        let flag = wasm_encoder::GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        };
        globals.global(flag, &wasm_encoder::ConstExpr::i32_const(0));
        globals.global(ty, &wasm_encoder::ConstExpr::i64_const(0));
        for _ in 0..4 {
            globals.global(flag, &wasm_encoder::ConstExpr::i32_const(0));
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_code_section(self, code, section)?;
        for (name, ty) in self.stubs.clone() {
            let f = self.stub_body(&name, ty);
            code.function(&f);
        }
        for (name, old, ty) in self.wrapped.clone() {
            if name == "cabi_realloc" {
                code.function(&self.fast_realloc(self.func_map[old as usize]));
                continue;
            }
            let params = self.types[ty as usize].params().len() as u32;
            let results = self.types[ty as usize].results().len();
            let mut f = Function::new(if results == 1 {
                vec![(1, ValType::I32)]
            } else {
                vec![]
            });
            f.instruction(&I::I32Const(1));
            f.instruction(&I::GlobalSet(self.no_leave_global));
            for p in 0..params {
                f.instruction(&I::LocalGet(p));
            }
            f.instruction(&I::Call(self.func_map[old as usize]));
            if results == 1 {
                f.instruction(&I::LocalSet(params));
            }
            f.instruction(&I::I32Const(0));
            f.instruction(&I::GlobalSet(self.no_leave_global));
            // After post-return Go has released the temporary chunks:
            // start over in the permanent one.
            f.instruction(&I::GlobalGet(self.base_global));
            f.instruction(&I::GlobalSet(self.cur_global));
            f.instruction(&I::GlobalGet(self.limit_global));
            f.instruction(&I::GlobalSet(self.end_global));
            if results == 1 {
                f.instruction(&I::LocalGet(params));
            }
            f.instruction(&I::End);
            code.function(&f);
        }
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for export in section {
            let export = export?;
            let wrapper = self
                .wrapped
                .iter()
                .position(|(name, _, _)| name == export.name);
            let index = match (export.kind, wrapper) {
                (wasmparser::ExternalKind::Func, Some(k)) => self.first_wrapper + k as u32,
                _ => self.external_index(export.kind, export.index)?,
            };
            exports.export(export.name, self.export_kind(export.kind)?, index);
        }
        Ok(())
    }
}

fn m32(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 2,
        memory_index: 0,
    }
}
fn m64(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 3,
        memory_index: 0,
    }
}

impl Stubber {
    /// cabi_realloc(old, old_size, align, size): bump-allocate inside a
    /// chunk obtained from Go's own cabi_realloc (64 KiB or more), so most
    /// allocations of a call never enter Go. Reallocation of an existing
    /// block goes to Go. Calls into Go run with no_leave set.
    fn fast_realloc(&self, go_realloc: u32) -> Function {
        // params 0 old, 1 old_size, 2 align, 3 size; locals 4 p, 5 chunk size, 6 chunk
        let mut f = Function::new([(3, ValType::I32)]);
        let (cur, end) = (self.cur_global, self.end_global);
        let align_up = |f: &mut Function, base: I<'static>| {
            f.instruction(&base);
            f.instruction(&I::LocalGet(2));
            f.instruction(&I::I32Add);
            f.instruction(&I::I32Const(1));
            f.instruction(&I::I32Sub);
            f.instruction(&I::I32Const(0));
            f.instruction(&I::LocalGet(2));
            f.instruction(&I::I32Sub);
            f.instruction(&I::I32And);
        };
        let go_call = |f: &mut Function, no_leave: u32| {
            f.instruction(&I::I32Const(1));
            f.instruction(&I::GlobalSet(no_leave));
            f.instruction(&I::Call(go_realloc));
            f.instruction(&I::I32Const(0));
            f.instruction(&I::GlobalSet(no_leave));
        };
        // if old != 0: Go's realloc
        f.instruction(&I::LocalGet(0));
        f.instruction(&I::If(BlockType::Empty));
        for p in 0..4 {
            f.instruction(&I::LocalGet(p));
        }
        go_call(&mut f, self.no_leave_global);
        f.instruction(&I::Return);
        f.instruction(&I::End);
        // p = align_up(cur); if cur != 0 && p + size <= end: cur = p + size; return p
        align_up(&mut f, I::GlobalGet(cur));
        f.instruction(&I::LocalSet(4));
        f.instruction(&I::GlobalGet(cur));
        f.instruction(&I::I32Const(0));
        f.instruction(&I::I32Ne);
        f.instruction(&I::LocalGet(4));
        f.instruction(&I::LocalGet(3));
        f.instruction(&I::I32Add);
        f.instruction(&I::GlobalGet(end));
        f.instruction(&I::I32LeU);
        f.instruction(&I::I32And);
        f.instruction(&I::If(BlockType::Empty));
        f.instruction(&I::LocalGet(4));
        f.instruction(&I::LocalGet(3));
        f.instruction(&I::I32Add);
        f.instruction(&I::GlobalSet(cur));
        f.instruction(&I::LocalGet(4));
        f.instruction(&I::Return);
        f.instruction(&I::End);
        // First allocation ever: get the permanent chunk and retry.
        if let Some(arena_chunk) = self.arena_chunk_fn {
            f.instruction(&I::GlobalGet(self.base_global));
            f.instruction(&I::I32Eqz);
            f.instruction(&I::If(BlockType::Empty));
            f.instruction(&I::I32Const(65536));
            f.instruction(&I::I32Const(1));
            f.instruction(&I::GlobalSet(self.no_leave_global));
            f.instruction(&I::Call(arena_chunk));
            f.instruction(&I::I32Const(0));
            f.instruction(&I::GlobalSet(self.no_leave_global));
            f.instruction(&I::LocalTee(6));
            f.instruction(&I::GlobalSet(self.base_global));
            f.instruction(&I::LocalGet(6));
            f.instruction(&I::I32Const(65536));
            f.instruction(&I::I32Add);
            f.instruction(&I::GlobalSet(self.limit_global));
            f.instruction(&I::GlobalGet(self.base_global));
            f.instruction(&I::GlobalSet(cur));
            f.instruction(&I::GlobalGet(self.limit_global));
            f.instruction(&I::GlobalSet(end));
            align_up(&mut f, I::GlobalGet(cur));
            f.instruction(&I::LocalTee(4));
            f.instruction(&I::LocalGet(3));
            f.instruction(&I::I32Add);
            f.instruction(&I::GlobalGet(end));
            f.instruction(&I::I32LeU);
            f.instruction(&I::If(BlockType::Empty));
            f.instruction(&I::LocalGet(4));
            f.instruction(&I::LocalGet(3));
            f.instruction(&I::I32Add);
            f.instruction(&I::GlobalSet(cur));
            f.instruction(&I::LocalGet(4));
            f.instruction(&I::Return);
            f.instruction(&I::End);
            f.instruction(&I::End);
        }
        // A temporary chunk, released by Go at post-return:
        // chunk size = max(size + align, 65536)
        f.instruction(&I::LocalGet(3));
        f.instruction(&I::LocalGet(2));
        f.instruction(&I::I32Add);
        f.instruction(&I::LocalTee(5));
        f.instruction(&I::I32Const(65536));
        f.instruction(&I::LocalGet(5));
        f.instruction(&I::I32Const(65536));
        f.instruction(&I::I32GtU);
        f.instruction(&I::Select);
        f.instruction(&I::LocalSet(5));
        f.instruction(&I::I32Const(0));
        f.instruction(&I::I32Const(0));
        f.instruction(&I::I32Const(8));
        f.instruction(&I::LocalGet(5));
        go_call(&mut f, self.no_leave_global);
        f.instruction(&I::LocalTee(6));
        f.instruction(&I::LocalGet(5));
        f.instruction(&I::I32Add);
        f.instruction(&I::GlobalSet(end));
        align_up(&mut f, I::LocalGet(6));
        f.instruction(&I::LocalTee(4));
        f.instruction(&I::LocalGet(3));
        f.instruction(&I::I32Add);
        f.instruction(&I::GlobalSet(cur));
        f.instruction(&I::LocalGet(4));
        f.instruction(&I::End);
        f
    }

    fn stub_body(&self, name: &str, ty: u32) -> Function {
        let ok = I::I32Const(0);
        match name {
            // (argc*, bufsize*) -> errno: no arguments, no environment.
            "args_sizes_get" | "environ_sizes_get" => {
                let mut f = Function::new([]);
                for out in [0, 1] {
                    f.instruction(&I::LocalGet(out));
                    f.instruction(&I::I32Const(0));
                    f.instruction(&I::I32Store(m32(0)));
                }
                f.instruction(&ok);
                f.instruction(&I::End);
                f
            }
            // (id, precision: i64, out*) -> errno. Realtime from the host;
            // monotonic is a counter that moves 1 us per reading (and by
            // every poll_oneoff timeout), so time never stands still.
            "clock_time_get" => {
                let mut f = Function::new([]);
                f.instruction(&I::LocalGet(2));
                f.instruction(&I::LocalGet(0));
                f.instruction(&I::I32Eqz);
                f.instruction(&I::If(BlockType::Result(ValType::I64)));
                // Inside realloc/post-return the host may not be called:
                // answer the last reading (Go's GC reads the wall clock).
                f.instruction(&I::GlobalGet(self.no_leave_global));
                f.instruction(&I::I32Eqz);
                f.instruction(&I::If(BlockType::Empty));
                f.instruction(&I::Call(self.now_fn));
                f.instruction(&I::I64Const(1_000_000));
                f.instruction(&I::I64Mul);
                f.instruction(&I::GlobalSet(self.wall_global));
                f.instruction(&I::End);
                f.instruction(&I::GlobalGet(self.wall_global));
                f.instruction(&I::Else);
                f.instruction(&I::GlobalGet(self.mono_global));
                f.instruction(&I::I64Const(1_000));
                f.instruction(&I::I64Add);
                f.instruction(&I::GlobalSet(self.mono_global));
                f.instruction(&I::GlobalGet(self.mono_global));
                f.instruction(&I::End);
                f.instruction(&I::I64Store(m64(0)));
                f.instruction(&ok);
                f.instruction(&I::End);
                f
            }
            // (buf*, len) -> errno: xorshift64, seeded by a constant.
            // Deterministic: fine for map seeds in a short-lived sandbox,
            // not for secrets.
            "random_get" => {
                let mut f = Function::new([(1, ValType::I32)]); // local 2: i
                f.instruction(&I::Block(BlockType::Empty));
                f.instruction(&I::Loop(BlockType::Empty));
                f.instruction(&I::LocalGet(2));
                f.instruction(&I::LocalGet(1));
                f.instruction(&I::I32GeU);
                f.instruction(&I::BrIf(1));
                for (shift, left) in [(13, true), (7, false), (17, true)] {
                    f.instruction(&I::GlobalGet(self.rng_global));
                    f.instruction(&I::GlobalGet(self.rng_global));
                    f.instruction(&I::I64Const(shift));
                    f.instruction(&if left { I::I64Shl } else { I::I64ShrU });
                    f.instruction(&I::I64Xor);
                    f.instruction(&I::GlobalSet(self.rng_global));
                }
                f.instruction(&I::LocalGet(0));
                f.instruction(&I::LocalGet(2));
                f.instruction(&I::I32Add);
                f.instruction(&I::GlobalGet(self.rng_global));
                f.instruction(&I::I64Const(32));
                f.instruction(&I::I64ShrU);
                f.instruction(&I::I32WrapI64);
                f.instruction(&I::I32Store8(MemArg {
                    offset: 0,
                    align: 0,
                    memory_index: 0,
                }));
                f.instruction(&I::LocalGet(2));
                f.instruction(&I::I32Const(1));
                f.instruction(&I::I32Add);
                f.instruction(&I::LocalSet(2));
                f.instruction(&I::Br(0));
                f.instruction(&I::End);
                f.instruction(&I::End);
                f.instruction(&ok);
                f.instruction(&I::End);
                f
            }
            // (fd, iovs*, iovs_len, nwritten*) -> errno: each non-empty iovec
            // becomes one host log line (fd 1 info, others error).
            "fd_write" => {
                // locals: 4 k, 5 total, 6 len
                let mut f = Function::new([(3, ValType::I32)]);
                f.instruction(&I::Block(BlockType::Empty));
                f.instruction(&I::Loop(BlockType::Empty));
                f.instruction(&I::LocalGet(4));
                f.instruction(&I::LocalGet(2));
                f.instruction(&I::I32GeU);
                f.instruction(&I::BrIf(1));
                // len = iovs[k].len
                f.instruction(&I::LocalGet(1));
                f.instruction(&I::LocalGet(4));
                f.instruction(&I::I32Const(8));
                f.instruction(&I::I32Mul);
                f.instruction(&I::I32Add);
                f.instruction(&I::I32Load(m32(4)));
                f.instruction(&I::LocalTee(6));
                f.instruction(&I::I32Const(0));
                f.instruction(&I::I32Ne);
                f.instruction(&I::GlobalGet(self.no_leave_global));
                f.instruction(&I::I32Eqz);
                f.instruction(&I::I32And);
                f.instruction(&I::If(BlockType::Empty));
                // level
                f.instruction(&I::I32Const(2));
                f.instruction(&I::I32Const(4));
                f.instruction(&I::LocalGet(0));
                f.instruction(&I::I32Const(1));
                f.instruction(&I::I32Eq);
                f.instruction(&I::Select);
                // ptr
                f.instruction(&I::LocalGet(1));
                f.instruction(&I::LocalGet(4));
                f.instruction(&I::I32Const(8));
                f.instruction(&I::I32Mul);
                f.instruction(&I::I32Add);
                f.instruction(&I::I32Load(m32(0)));
                f.instruction(&I::LocalGet(6));
                f.instruction(&I::Call(self.log_fn));
                f.instruction(&I::End);
                f.instruction(&I::LocalGet(5));
                f.instruction(&I::LocalGet(6));
                f.instruction(&I::I32Add);
                f.instruction(&I::LocalSet(5));
                f.instruction(&I::LocalGet(4));
                f.instruction(&I::I32Const(1));
                f.instruction(&I::I32Add);
                f.instruction(&I::LocalSet(4));
                f.instruction(&I::Br(0));
                f.instruction(&I::End);
                f.instruction(&I::End);
                f.instruction(&I::LocalGet(3));
                f.instruction(&I::LocalGet(5));
                f.instruction(&I::I32Store(m32(0)));
                f.instruction(&ok);
                f.instruction(&I::End);
                f
            }
            // (in*, out*, nsubs, nevents*) -> errno. Go only sleeps through
            // it (one relative clock subscription): advance the monotonic
            // counter by the timeout and report that event as fired.
            "poll_oneoff" => {
                let mut f = Function::new([]);
                f.instruction(&I::GlobalGet(self.mono_global));
                f.instruction(&I::LocalGet(0));
                f.instruction(&I::I64Load(m64(24)));
                f.instruction(&I::I64Add);
                f.instruction(&I::GlobalSet(self.mono_global));
                f.instruction(&I::LocalGet(1));
                f.instruction(&I::LocalGet(0));
                f.instruction(&I::I64Load(m64(0)));
                f.instruction(&I::I64Store(m64(0))); // userdata
                f.instruction(&I::LocalGet(1));
                f.instruction(&I::I64Const(0));
                f.instruction(&I::I64Store(m64(8))); // error 0, type clock
                f.instruction(&I::LocalGet(3));
                f.instruction(&I::I32Const(1));
                f.instruction(&I::I32Store(m32(0)));
                f.instruction(&ok);
                f.instruction(&I::End);
                f
            }
            "proc_exit" => {
                let mut f = Function::new([]);
                f.instruction(&I::Unreachable);
                f.instruction(&I::End);
                f
            }
            // sched_yield, args_get, environ_get: nothing to do.
            // Anything else (os, syscall): EBADF for fd_*/path_*, else ENOSYS.
            other => {
                let mut f = Function::new([]);
                let results = self.types[ty as usize].results();
                if results == [wasmparser::ValType::I32] {
                    let errno = match other {
                        "sched_yield" | "args_get" | "environ_get" => 0,
                        // No file descriptors exist (and Go's syscall init
                        // walks preopens until EBADF).
                        n if n.starts_with("fd_") || n.starts_with("path_") => 8,
                        _ => 52, // ENOSYS
                    };
                    f.instruction(&I::I32Const(errno));
                } else {
                    f.instruction(&I::Unreachable);
                }
                f.instruction(&I::End);
                f
            }
        }
    }
}

/// Rewrite `core` so that it imports nothing from wasi_snapshot_preview1.
pub(super) fn stub_wasi(core: &[u8]) -> Result<Vec<u8>> {
    let is_stubbed = |m: &str| m == WASI;
    let mut types = Vec::new();
    let mut func_imports = Vec::new(); // (module, name, type)
    let mut defined = 0u32;
    let mut defined_types = Vec::new();
    let mut func_exports = Vec::new();
    let mut globals = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        match payload? {
            wasmparser::Payload::TypeSection(s) => {
                for group in s {
                    for sub in group?.into_types() {
                        types.push(sub.unwrap_func().clone());
                    }
                }
            }
            wasmparser::Payload::ImportSection(s) => {
                for i in s.into_imports() {
                    let i = i?;
                    match i.ty {
                        wasmparser::TypeRef::Func(t) => {
                            func_imports.push((i.module.to_string(), i.name.to_string(), t))
                        }
                        wasmparser::TypeRef::Global(_) => globals += 1,
                        _ => {}
                    }
                }
            }
            wasmparser::Payload::FunctionSection(s) => {
                defined = s.count();
                for ty in s {
                    defined_types.push(ty?);
                }
            }
            wasmparser::Payload::ExportSection(s) => {
                for e in s {
                    let e = e?;
                    if e.kind == wasmparser::ExternalKind::Func {
                        func_exports.push((e.name.to_string(), e.index));
                    }
                }
            }
            wasmparser::Payload::GlobalSection(s) => globals += s.count(),
            _ => {}
        }
    }
    let old_type_count = types.len() as u32;
    let kept: Vec<_> = func_imports
        .iter()
        .filter(|(m, _, _)| !is_stubbed(m))
        .collect();
    let already = |name: &str| kept.iter().position(|(m, n, _)| m == HOST && n == name);
    let mut new_imports = Vec::new();
    let mut next = kept.len() as u32;
    let mut host_fn = |name: &'static str, ty: u32, new_imports: &mut Vec<_>| match already(name) {
        Some(i) => i as u32,
        None => {
            new_imports.push((name, ty));
            next += 1;
            next - 1
        }
    };
    let now_fn = host_fn("now-unix-ms", old_type_count, &mut new_imports);
    let log_fn = host_fn("log", old_type_count + 1, &mut new_imports);
    let imports_total = kept.len() as u32 + new_imports.len() as u32;

    let mut func_map = Vec::new();
    let mut stubs = Vec::new();
    let mut kept_index = 0u32;
    for (module, name, ty) in &func_imports {
        if is_stubbed(module) {
            func_map.push(imports_total + defined + stubs.len() as u32);
            stubs.push((name.clone(), *ty));
        } else {
            func_map.push(kept_index);
            kept_index += 1;
        }
    }
    for j in 0..defined {
        func_map.push(imports_total + j);
    }
    let n_func_imports = func_imports.len() as u32;
    let wrapped: Vec<(String, u32, u32)> = func_exports
        .iter()
        .filter(|(name, _)| name == "cabi_realloc" || name.starts_with("cabi_post_"))
        .map(|(name, index)| {
            (
                name.clone(),
                *index,
                defined_types[(*index - n_func_imports) as usize],
            )
        })
        .collect();
    let first_wrapper = imports_total + defined + stubs.len() as u32;
    let arena_chunk_fn = func_exports
        .iter()
        .find(|(name, _)| name == "cabi_arena_chunk")
        .map(|(_, index)| func_map[*index as usize]);
    let mut stubber = Stubber {
        func_map,
        stubs,
        types,
        new_imports,
        now_fn,
        log_fn,
        rng_global: globals,
        mono_global: globals + 1,
        no_leave_global: globals + 2,
        wall_global: globals + 3,
        cur_global: globals + 4,
        end_global: globals + 5,
        base_global: globals + 6,
        limit_global: globals + 7,
        arena_chunk_fn,
        wrapped,
        first_wrapper,
    };
    let mut module = wasm_encoder::Module::new();
    stubber
        .parse_core_module(&mut module, wasmparser::Parser::new(0), core)
        .map_err(|e| anyhow::anyhow!("rewriting the core module: {e}"))?;
    let bytes = module.finish();
    wasmparser::Validator::new()
        .validate_all(&bytes)
        .context("the rewritten module does not validate")?;
    Ok(bytes)
}
