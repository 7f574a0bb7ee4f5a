//! Log lines on stderr: JSON for machines (in a pod), text for people (on a
//! terminal). Inside a reconcile every line carries the reconcile's span
//! fields: the object and its trace id.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    #[default]
    Auto,
    /// One JSON object per line, with the fields of every enclosing span.
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// `Json` or `Text`: what `Auto` means for a stream that is or is not a terminal.
    pub fn resolve(self, terminal: bool) -> LogFormat {
        match self {
            LogFormat::Auto if terminal => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            chosen => chosen,
        }
    }
}

/// `RUST_LOG` (default `info`). The OpenTelemetry SDK's own logs are off
/// unless `RUST_LOG` names them: an unreachable collector is reported by the
/// exporter wrapper, sparingly, instead of once per failed batch.
fn filter() -> EnvFilter {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| "info".to_owned());
    let quiet_sdk = if directives.contains("opentelemetry") { "" } else { ",opentelemetry=off" };
    EnvFilter::try_new(format!("{directives}{quiet_sdk}")).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The formatting layer for `format`, with its filter.
pub(super) fn layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let terminal = std::io::stderr().is_terminal();
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format.resolve(terminal) {
        LogFormat::Json => {
            base.json().with_current_span(false).with_span_list(true).with_filter(filter()).boxed()
        }
        _ => base.with_ansi(terminal).with_filter(filter()).boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::LogFormat::*;

    #[test]
    fn auto_is_text_on_a_terminal_and_json_elsewhere() {
        assert_eq!(Auto.resolve(true), Text);
        assert_eq!(Auto.resolve(false), Json);
        assert_eq!(Json.resolve(true), Json);
        assert_eq!(Text.resolve(false), Text);
    }
}
