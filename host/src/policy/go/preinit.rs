//! Pre-initialization (what Wizer does): run the module's `_initialize`
//! once here, then write a module whose memory and globals start in the
//! state it left, without `_initialize`. A fresh instance then starts with
//! Go's runtime already up instead of booting it on every instantiation
//! (about 20 us instead of 400 us on the machine this was written on).

use anyhow::{Context as _, Result};
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::ConstExpr;

const HOST: &str = "airlock:policy/host@0.2.0";

struct Snapshot {
    globals: Vec<ConstExpr>,
    pages: u64,
    segments: Vec<(u32, Vec<u8>)>,
}

impl Reencode for Snapshot {
    type Error = anyhow::Error;
    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for (i, global) in section.into_iter().enumerate() {
            let global = global?;
            let ty = self.global_type(global.ty)?;
            globals.global(ty, &self.globals[i]);
        }
        Ok(())
    }
    fn parse_memory_section(
        &mut self,
        memories: &mut wasm_encoder::MemorySection,
        section: wasmparser::MemorySectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for memory in section {
            let mut ty = self.memory_type(memory?)?;
            ty.minimum = self.pages;
            memories.memory(ty);
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
            if export.name == "_initialize" {
                continue;
            }
            let kind = self.export_kind(export.kind)?;
            let index = self.external_index(export.kind, export.index)?;
            exports.export(export.name, kind, index);
        }
        Ok(())
    }
    fn parse_data_section(
        &mut self,
        data: &mut wasm_encoder::DataSection,
        _section: wasmparser::DataSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for (offset, bytes) in &self.segments {
            data.active(
                0,
                &ConstExpr::i32_const(*offset as i32),
                bytes.iter().copied(),
            );
        }
        Ok(())
    }
    fn data_count(&mut self, _count: u32) -> Result<u32, reencode::Error<Self::Error>> {
        Ok(self.segments.len() as u32)
    }
}

/// The module after its `_initialize` ran, as a module.
///
/// # Errors
/// `_initialize` traps, or the snapshot does not validate.
pub(super) fn preinit(module: &[u8]) -> Result<Vec<u8>> {
    // 1. A copy that exports every global, so they can be read.
    let mut n_globals = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::GlobalSection(s) = payload? {
            n_globals = s.count();
        }
    }
    let mut instrumented = wasm_encoder::Module::new();
    {
        struct AddExports(u32);
        impl Reencode for AddExports {
            type Error = anyhow::Error;
            fn parse_export_section(
                &mut self,
                exports: &mut wasm_encoder::ExportSection,
                section: wasmparser::ExportSectionReader<'_>,
            ) -> Result<(), reencode::Error<Self::Error>> {
                reencode::utils::parse_export_section(self, exports, section)?;
                for i in 0..self.0 {
                    exports.export(
                        &format!("__preinit_global_{i}"),
                        wasm_encoder::ExportKind::Global,
                        i,
                    );
                }
                Ok(())
            }
        }
        AddExports(n_globals)
            .parse_core_module(&mut instrumented, wasmparser::Parser::new(0), module)
            .map_err(|e| anyhow::anyhow!("instrumenting: {e}"))?;
    }
    let instrumented = instrumented.finish();

    // 2. Run _initialize.
    let engine = wasmtime::Engine::default();
    let m = wasmtime::Module::new(&engine, &instrumented).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut store = wasmtime::Store::new(&engine, ());
    let mut linker = wasmtime::Linker::new(&engine);
    linker
        .func_wrap(HOST, "now-unix-ms", || -> i64 { 0 })
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    linker
        .func_wrap(HOST, "log", |_: i32, _: i32, _: i32| {})
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    linker
        .define_unknown_imports_as_traps(&m)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let instance = linker
        .instantiate(&mut store, &m)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    instance
        .get_typed_func::<(), ()>(&mut store, "_initialize")
        .and_then(|f| f.call(&mut store, ()))
        .map_err(|e| anyhow::anyhow!("running _initialize: {e:?}"))?;

    // 3. Snapshot memory and globals.
    let memory = instance
        .get_memory(&mut store, "memory")
        .context("no memory export")?;
    let bytes = memory.data(&store).to_vec();
    let pages = bytes.len() as u64 / 65536;
    let mut globals = Vec::new();
    for i in 0..n_globals {
        let g = instance
            .get_global(&mut store, &format!("__preinit_global_{i}"))
            .context("global")?;
        globals.push(match g.get(&mut store) {
            wasmtime::Val::I32(v) => ConstExpr::i32_const(v),
            wasmtime::Val::I64(v) => ConstExpr::i64_const(v),
            wasmtime::Val::F32(v) => ConstExpr::f32_const(f32::from_bits(v).into()),
            wasmtime::Val::F64(v) => ConstExpr::f64_const(f64::from_bits(v).into()),
            other => anyhow::bail!("global {i}: cannot snapshot {other:?}"),
        });
    }
    // Non-zero runs, joined across gaps shorter than 64 bytes.
    let mut segments: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0 {
            i += 1;
            continue;
        }
        let begin = i;
        let mut end = i;
        let mut zeros = 0;
        while i < bytes.len() && zeros < 64 {
            if bytes[i] == 0 {
                zeros += 1;
            } else {
                zeros = 0;
                end = i + 1;
            }
            i += 1;
        }
        segments.push((begin as u32, bytes[begin..end].to_vec()));
    }

    // 4. Rewrite.
    let mut out = wasm_encoder::Module::new();
    let mut snapshot = Snapshot {
        globals,
        pages,
        segments,
    };
    snapshot
        .parse_core_module(&mut out, wasmparser::Parser::new(0), module)
        .map_err(|e| anyhow::anyhow!("rewriting: {e}"))?;
    let out = out.finish();
    wasmparser::Validator::new()
        .validate_all(&out)
        .context("the snapshot does not validate")?;
    Ok(out)
}
