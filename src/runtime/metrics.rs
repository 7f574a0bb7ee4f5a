//! Prometheus metrics of every controller, in the text format at `/metrics`.
//! Names and units follow Prometheus conventions (`_total`, `_seconds`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    kind: String,
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The operator's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    transitions: Family<TransitionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("conveyor");
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started, by kind", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("reconcile_errors", "Reconciles that failed, by kind and error", errors.clone());
        let durations =
            Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "How long reconciles take, by kind",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register("transitions", "Phase transitions, by kind", transitions.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        registry.register("build_info", "The operator's version", build);
        Metrics { registry, reconciles, errors, durations, transitions }
    }
}

impl Metrics {
    pub fn reconciled(&self, kind: &str, took: Duration, error: Option<&str>) {
        let labels = KindLabels { kind: kind.to_owned() };
        self.reconciles.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(took.as_secs_f64());
        if let Some(error) = error {
            self.errors.get_or_create(&ErrorLabels { kind: kind.to_owned(), error: error.to_owned() }).inc();
        }
    }

    pub fn transition(&self, kind: &str, from: &str, to: &str) {
        let labels = TransitionLabels { kind: kind.to_owned(), from: from.to_owned(), to: to.to_owned() };
        self.transitions.get_or_create(&labels).inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_transitions_are_counted_by_kind() {
        let metrics = Metrics::default();
        metrics.reconciled("EtlRouterCluster", Duration::from_millis(3), None);
        metrics.reconciled("EtlRouterCluster", Duration::from_millis(5), Some("kube"));
        metrics.transition("EtlRouterCluster", "Pending", "Provisioning");
        let text = metrics.encode();
        assert!(text.contains(r#"conveyor_reconciles_total{kind="EtlRouterCluster"} 2"#), "{text}");
        assert!(
            text.contains(r#"conveyor_reconcile_errors_total{kind="EtlRouterCluster",error="kube"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"conveyor_reconcile_duration_seconds_count{kind="EtlRouterCluster"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"conveyor_transitions_total{kind="EtlRouterCluster",from="Pending",to="Provisioning"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("conveyor_build_info{version="), "{text}");
    }
}
