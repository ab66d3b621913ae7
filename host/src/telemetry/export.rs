//! The exporter's runtime. The SDK's batch processor exports from its own
//! thread with a plain executor, but the OTLP transports (tonic's channel,
//! hyper's connections) need a Tokio reactor. [`OnOwnRuntime`] gives the
//! exporter a current-thread runtime of its own, driven only while a batch
//! is sent: export never runs on, or waits for, the proxy's workers.

use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// A span exporter that runs on a Tokio runtime it owns.
#[derive(Debug)]
pub struct OnOwnRuntime<E> {
    inner: E,
    runtime: tokio::runtime::Runtime,
}

impl<E> OnOwnRuntime<E> {
    /// Build the exporter inside a new runtime (a tonic channel spawns its
    /// worker where it is built).
    ///
    /// # Errors
    /// The runtime cannot start, or `build` fails.
    pub fn build<Error>(build: impl FnOnce() -> Result<E, Error>) -> anyhow::Result<Self>
    where
        Error: std::error::Error + Send + Sync + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let inner = {
            let _entered = runtime.enter();
            build()?
        };
        Ok(Self { inner, runtime })
    }
}

impl<E: SpanExporter> SpanExporter for OnOwnRuntime<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Called on the batch thread, which then waits for the result anyway.
        std::future::ready(self.runtime.block_on(self.inner.export(batch)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
