//! Pre-initialization, as Wizer does it (`wasmtime-wizer`): a component is
//! compiled instrumented, so that its memory and globals can be read from
//! outside; once its `setup` has run with the policy's parameters, that
//! state is written into a new component as its initial image. Every
//! instance of the new component starts with the parameters parsed and
//! checked, and wasmtime maps that image copy-on-write instead of running
//! anything, so a fresh instance per evaluation costs no setup.
//!
//! The instrumented component is instantiated by the engine with the same
//! linker and limits as any policy (setup runs in the sandbox, under the
//! load deadline); only reading its state out happens here.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use wasmtime::component::{Instance, Lift, WasmList};
use wasmtime::Store;
use wasmtime_wizer::ComponentInstanceState;
use wasmtime_wizer::Wizer;

use super::engine::LoadError;

/// `wasm`, instrumented so that its state can be snapshotted.
///
/// # Errors
/// When the component holds something Wizer cannot snapshot (e.g. a
/// module instantiated twice, a nested component with modules).
pub(super) fn instrument(wasm: &[u8]) -> Result<Vec<u8>, LoadError> {
    Wizer::new()
        .instrument_component(wasm)
        .map(|(_, instrumented)| instrumented)
        .map_err(|error| LoadError::Snapshot(format!("{error:#}")))
}

/// What Wizer needs to know of `wasm` to snapshot an instance of
/// [`instrument`]`(wasm)`: parsed before `setup` runs, so that parsing a
/// large component (an interpreter's is 10-20 MB) does not use up the
/// time `setup` is given.
pub(super) struct Plan<'wasm> {
    context: wasmtime_wizer::ComponentContext<'wasm>,
}

impl<'wasm> Plan<'wasm> {
    /// # Errors
    /// As [`instrument`].
    pub(super) fn new(wasm: &'wasm [u8]) -> Result<Self, LoadError> {
        let (context, _) = Wizer::new()
            .instrument_component(wasm)
            .map_err(|error| LoadError::Snapshot(format!("{error:#}")))?;
        Ok(Plan { context })
    }
}

/// The component of `plan` rewritten to start in the state `instance` (an
/// instance of [`instrument`]`(wasm)` in `store`) is in now.
///
/// # Errors
/// When the state cannot be read out.
pub(super) fn snapshot<T: Send + 'static>(
    plan: &Plan<'_>,
    store: &mut Store<T>,
    instance: Instance,
) -> Result<Vec<u8>, LoadError> {
    // Reading the memory out copies all of it: not the bounded answer of
    // an evaluation (the instance is dropped after this).
    store.set_hostcall_fuel(usize::MAX);
    let wizer = Wizer::new();
    let context = &plan.context;
    let mut state = InstanceState {
        store,
        instance,
        failure: None,
    };
    // Wizer asserts what it expects of what it reads; a read that failed
    // (kept in `state`) or a component it cannot handle must not take the
    // host down.
    let image = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        now_or_never(wizer.snapshot_component(context, &mut state))
    }));
    match (state.failure, image) {
        (Some(failure), _) => Err(LoadError::Snapshot(failure)),
        (None, Err(_)) => Err(LoadError::Snapshot("wizer panicked".to_owned())),
        (None, Ok(None)) => Err(LoadError::Snapshot(
            "the snapshot did not complete".to_owned(),
        )),
        (None, Ok(Some(image))) => image.map_err(|error| LoadError::Snapshot(format!("{error:#}"))),
    }
}

/// Poll `future` once: the state below answers every call synchronously,
/// so the snapshot completes without ever waiting.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Reads an instrumented instance's memory and globals through the
/// accessor functions Wizer added, with plain synchronous calls (the
/// engine is not async). A failed call is kept and refuses the snapshot.
struct InstanceState<'a, T: 'static> {
    store: &'a mut Store<T>,
    instance: Instance,
    failure: Option<String>,
}

impl<T: Send> InstanceState<'_, T> {
    fn call<R: Lift + 'static, O: Default>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<T>, R) -> O,
    ) -> O {
        let result = (|| {
            let (_, exported) = self
                .instance
                .get_export(&mut *self.store, None, instance)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}"))?;
            let (_, index) = self
                .instance
                .get_export(&mut *self.store, Some(&exported), func)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}#{func}"))?;
            let typed = self
                .instance
                .get_typed_func::<(), (R,)>(&mut *self.store, index)?;
            let (value,) = typed.call(&mut *self.store, ())?;
            Ok::<_, wasmtime::Error>(value)
        })();
        match result {
            Ok(value) => read(self.store, value),
            Err(error) => {
                self.failure
                    .get_or_insert_with(|| format!("reading {instance}#{func}: {error:#}"));
                O::default()
            }
        }
    }
}

impl<T: Send> ComponentInstanceState for InstanceState<'_, T> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        // A failed read leaves the contents unread: the failure refuses
        // the snapshot.
        self.call(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(store));
        });
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, value: i32| value)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, value: i64| value)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, value: f32| value.to_bits())
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, value: f64| value.to_bits())
    }
}
