//! Logs to stderr (JSON or text) and, when the standard OpenTelemetry
//! environment names an endpoint, traces over OTLP (gRPC or HTTP/protobuf).

mod logs;
mod otlp;
mod propagation;
mod trace_id;

pub use logs::LogFormat;
pub use propagation::{extract_context, inject_context};
pub use trace_id::{current_trace_id, trace_id};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Keeps the OTLP pipeline alive; flushes pending spans when dropped.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber: log lines in `format`, filtered by
/// `RUST_LOG` (default `info`), and an OTLP exporter when the standard
/// OpenTelemetry environment asks for one. Must run inside the Tokio runtime
/// (the exporters' connections live on it).
pub fn init(format: LogFormat) -> anyhow::Result<Guard> {
    let provider = otlp::provider_from_env()?;
    // Spans go to the exporter whatever `RUST_LOG` keeps of the log lines;
    // the exporter's own spans and logs never feed back into it.
    let spans = Targets::new().with_default(LevelFilter::INFO).with_target("opentelemetry", LevelFilter::OFF);
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("conveyor-etl-operator"))
            .with_filter(spans)
    });
    tracing_subscriber::registry().with(logs::layer(format)).with(otel).try_init()?;
    Ok(Guard { provider })
}
