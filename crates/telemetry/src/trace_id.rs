//! The trace id a person can look up: only that of a sampled trace, which an
//! exporter sends; none when no exporter is configured.

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The id of the trace `span` belongs to, when that trace is sampled.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let otel_span = context.span();
    let ids = otel_span.span_context();
    (ids.is_valid() && ids.is_sampled()).then(|| ids.trace_id().to_string())
}

/// The id of the current span's trace, when that trace is sampled.
pub fn current_trace_id() -> Option<String> {
    trace_id(&tracing::Span::current())
}
