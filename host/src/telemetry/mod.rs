//! Traces: OpenTelemetry spans for the actions Airlock judges, exported over
//! OTLP (gRPC or HTTP/protobuf) to the collector named in `[tracing]` or by
//! the standard `OTEL_*` variables; Jaeger reads OTLP directly.
//!
//! The request path does not open spans as it goes. It keeps the instants
//! it takes anyway, and once a request's decision is known [`spans`] builds
//! its span and the finished steps' spans with their real times. So the
//! sampler ([`sampler`]) sees the decision and keeps every held and denied
//! action at any ratio, a request that is not sampled costs one sampling
//! call, and with tracing off nothing is built at all. Spans leave in
//! batches from the SDK's own thread ([`export`]); a full queue drops
//! spans and never slows a request. They are flushed at shutdown.

pub mod export;
pub mod sampler;
pub mod spans;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Config as SdkDefaults, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::config::{OtlpProtocol, TracingConfig};

pub use spans::{Clock, PolicyEvaluation, RequestTrace, UpstreamSpan};

/// The tracer, once tracing is on.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// The tracer, or `None` when tracing is off.
pub fn tracing() -> Option<&'static Tracing> {
    TRACING.get()
}

/// Where spans go, resolved from `[tracing]` and the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// From config, as given; `None`: the exporter reads the variables.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub sample_ratio: Option<f64>,
}

impl Destination {
    /// Where `config` and the environment send spans, or `None` when
    /// tracing is off: no endpoint anywhere, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    ///
    /// # Errors
    /// A protocol variable Airlock cannot export with.
    pub fn resolve(
        config: &TracingConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Destination>> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .is_some();
        if config.otlp_endpoint.is_none() && !from_env {
            return Ok(None);
        }
        let protocol = match config.protocol {
            Some(protocol) => protocol,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
                .as_deref()
            {
                None | Some("grpc") => OtlpProtocol::Grpc,
                Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
                Some(other) => anyhow::bail!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL: Airlock exports `grpc` or `http/protobuf`, not `{other}`"
                ),
            },
        };
        Ok(Some(Destination {
            endpoint: config.otlp_endpoint.clone(),
            protocol,
            service_name: config
                .service_name
                .clone()
                .or_else(|| env("OTEL_SERVICE_NAME"))
                .unwrap_or_else(|| "airlock".to_owned()),
            sample_ratio: config.sample_ratio,
        }))
    }
}

/// Turn tracing on for this process if `config` or the environment names a
/// collector. Returns where spans go. A second call keeps the first setup.
///
/// # Errors
/// The exporter cannot be built (a bad endpoint or protocol variable).
pub fn install(config: &TracingConfig) -> anyhow::Result<Option<Destination>> {
    let Some(destination) = Destination::resolve(config, |name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    if TRACING.get().is_some() {
        return Ok(Some(destination));
    }
    let exporter = build_exporter(&destination).context("cannot set up the OTLP exporter")?;
    let ordinary = match destination.sample_ratio {
        Some(ratio) => Box::new(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        )))),
        // The standard variables, parent-based always-on by default.
        None => SdkDefaults::default().sampler,
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(sampler::ActionSampler { ordinary })
        .with_resource(
            Resource::builder()
                .with_service_name(destination.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("airlock");
    let _ = TRACING.set(Tracing {
        provider,
        tracer,
        propagator: TraceContextPropagator::new(),
    });
    Ok(Some(destination))
}

/// How long shutdown waits for the last spans to leave.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Send the spans still queued and stop exporting (at node stop). Blocks
/// up to [`FLUSH_TIMEOUT`]: call it off the async workers.
pub fn flush() {
    if let Some(tracing) = tracing() {
        if let Err(error) = tracing.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!("could not flush the last spans: {error}");
        }
    }
}

fn build_exporter(
    destination: &Destination,
) -> anyhow::Result<export::OnOwnRuntime<opentelemetry_otlp::SpanExporter>> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match destination.protocol {
        OtlpProtocol::Grpc => export::OnOwnRuntime::build(|| {
            let builder = builder.with_tonic();
            match &destination.endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint.clone()).build(),
                None => builder.build(),
            }
        }),
        OtlpProtocol::HttpProtobuf => {
            let client = crate::http_client::HttpClient::new(EXPORT_TIMEOUT)?;
            export::OnOwnRuntime::build(|| {
                let builder = builder
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(client);
                match &destination.endpoint {
                    // A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is.
                    Some(endpoint) => builder
                        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                        .build(),
                    None => builder.build(),
                }
            })
        }
    }
}

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        config: &TracingConfig,
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Option<Destination>> {
        Destination::resolve(config, |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn tracing_is_off_without_an_endpoint_and_config_wins_over_variables() {
        assert_eq!(resolve(&TracingConfig::default(), &[]).unwrap(), None);
        let from_env = resolve(
            &TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "edge"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(from_env.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(from_env.service_name, "edge");
        assert_eq!(
            from_env.endpoint, None,
            "the exporter reads the variable itself"
        );

        let config = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            protocol: Some(OtlpProtocol::Grpc),
            service_name: Some("airlock-a".into()),
            sample_ratio: Some(0.5),
        };
        let both = resolve(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "edge"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(both.protocol, OtlpProtocol::Grpc);
        assert_eq!(both.service_name, "airlock-a");
        assert_eq!(both.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    }

    #[test]
    fn the_standard_off_switches_and_unsupported_protocols_are_honoured() {
        let config = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            ..TracingConfig::default()
        };
        assert_eq!(
            resolve(&config, &[("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
        assert_eq!(
            resolve(&config, &[("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
        let json = resolve(
            &TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
        )
        .unwrap_err();
        assert!(json.to_string().contains("http/json"), "{json}");
    }
}
