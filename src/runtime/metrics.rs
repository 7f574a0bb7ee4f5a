//! Prometheus metrics of every controller, in the text format at `/metrics`.
//! Names and units follow Prometheus conventions (`_total`, `_seconds`).
//! Objects per phase are counted from the watch caches at scrape time, so
//! the gauge is right however objects change or go.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Cache;
use crate::crd::{ClusterPhase, Phase};
use crate::router::Router;

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
    events_unpublished: Family<KindLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("conveyor");
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register("reconciles", "Reconciles finished (ok or failed), by kind", reconciles.clone());
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
        let events_unpublished = Family::<KindLabels, Counter>::default();
        registry.register(
            "events_unpublished",
            "Events the API server refused (logged; they never fail a reconcile), by kind",
            events_unpublished.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        registry.register("build_info", "The operator's version", build);
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the controllers (holds the Lease, or leader election is off)",
            leader.clone(),
        );
        Metrics { registry, reconciles, errors, durations, transitions, events_unpublished, leader }
    }
}

impl Metrics {
    /// The operator's metrics, the router client's, the watch caches' restarts,
    /// the objects the caches hold by kind and phase, and each object's own
    /// gauges (`object_metrics`).
    pub fn new(router: &dyn Router, cache: &Cache) -> Metrics {
        let mut metrics = Metrics::default();
        router.register_metrics(&mut metrics.registry);
        cache.register_metrics(&mut metrics.registry);
        metrics.registry.register_collector(Box::new(ObjectsByPhase { cache: cache.clone() }));
        metrics
            .registry
            .register_collector(Box::new(super::object_metrics::PerObject { cache: cache.clone() }));
        metrics
    }

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

    pub fn event_unpublished(&self, kind: &str) {
        self.events_unpublished.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
    }

    /// Sets `conveyor_leader`.
    pub fn set_leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    kind: &'static str,
    phase: String,
}

/// `conveyor_objects{kind, phase}`: every phase of every kind, zero included,
/// counted from the watch caches at each scrape. An object without a status
/// yet counts as Pending, as its reconcile sees it.
struct ObjectsByPhase {
    cache: Cache,
}

impl std::fmt::Debug for ObjectsByPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectsByPhase")
    }
}

pub(super) const CLUSTER_PHASES: [ClusterPhase; 6] = [
    ClusterPhase::Pending,
    ClusterPhase::Provisioning,
    ClusterPhase::RaftForming,
    ClusterPhase::Ready,
    ClusterPhase::Degraded,
    ClusterPhase::Unavailable,
];
pub(super) const PHASES: [Phase; 4] = [Phase::Pending, Phase::Provisioning, Phase::Ready, Phase::Degraded];
pub(super) const PIPELINE_PHASES: [Phase; 5] =
    [Phase::Pending, Phase::Provisioning, Phase::Ready, Phase::Degraded, Phase::Disabled];

/// Sets the gauge of each of `known` phases of `kind` to how many objects in `store` are in it.
fn count<K, P>(
    family: &Family<PhaseLabels, Gauge>,
    kind: &'static str,
    known: &[P],
    store: &kube::runtime::reflector::Store<K>,
    phase_of: impl Fn(&K) -> Option<P>,
) where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
    P: PartialEq + Default + std::fmt::Debug,
{
    let phases: Vec<P> = store.state().iter().map(|object| phase_of(object).unwrap_or_default()).collect();
    for phase in known {
        let n = phases.iter().filter(|p| *p == phase).count();
        family.get_or_create(&PhaseLabels { kind, phase: format!("{phase:?}") }).set(n as i64);
    }
}

impl prometheus_client::collector::Collector for ObjectsByPhase {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        let family = Family::<PhaseLabels, Gauge>::default();
        let cache = &self.cache;
        count(&family, "EtlRouterCluster", &CLUSTER_PHASES, &cache.router_clusters, |o| {
            o.status.as_ref()?.phase
        });
        count(&family, "EtlSource", &PHASES, &cache.sources, |o| o.status.as_ref()?.phase);
        count(&family, "EtlTransform", &PHASES, &cache.transforms, |o| o.status.as_ref()?.phase);
        count(&family, "EtlSink", &PHASES, &cache.sinks, |o| o.status.as_ref()?.phase);
        count(&family, "EtlPipeline", &PIPELINE_PHASES, &cache.pipelines, |o| o.status.as_ref()?.phase);
        let metric = encoder.encode_descriptor(
            "objects",
            "Objects the operator manages, by kind and phase",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
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

    /// Every sample name the operator exports, read from the text format:
    /// a `# TYPE` line names the family; counters add `_total`, histograms
    /// `_bucket`, `_sum` and `_count`.
    fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for line in text.lines() {
            let Some(declaration) = line.strip_prefix("# TYPE ") else { continue };
            let (name, kind) = declaration.split_once(' ').expect("# TYPE <name> <type>");
            match kind {
                "counter" => names.extend([format!("{name}_total")]),
                "histogram" => names.extend(["bucket", "sum", "count"].map(|part| format!("{name}_{part}"))),
                _ => names.extend([name.to_owned()]),
            }
        }
        names
    }

    /// Every `expr` string anywhere in a Grafana dashboard.
    fn expressions(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                        _ => expressions(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| expressions(item, found)),
            _ => {}
        }
    }

    /// The operator's metric names a PromQL expression refers to.
    fn metric_names(expr: &str) -> Vec<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("conveyor_"))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn every_metric_the_dashboard_queries_is_exported() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let selectors = crate::runtime::cache::Selectors { owned: "a=b".into(), pods: "c".into() };
        let (_watches, cache) = crate::runtime::cache::Watches::new(
            &client,
            &crate::runtime::namespaces::Namespaces::All,
            &selectors,
        );
        let router = crate::router::RouterClient::new(Default::default());
        // Families appear in the output once they have a sample: make one of each.
        let _ = router.member_status("not a host:1").await;
        let metrics = Metrics::new(&router, &cache);
        metrics.reconciled("EtlRouterCluster", Duration::from_millis(1), Some("kube"));
        metrics.transition("EtlRouterCluster", "Pending", "Provisioning");
        let exported = exported_names(&metrics.encode());
        for wanted in [
            "conveyor_objects",
            "conveyor_router_call_duration_seconds_bucket",
            "conveyor_watch_restarts_total",
        ] {
            assert!(exported.contains(wanted), "{wanted} not among {exported:?}");
        }

        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/observability/grafana-dashboard.json");
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut exprs = Vec::new();
        expressions(&dashboard, &mut exprs);
        assert!(exprs.len() >= 8, "the dashboard has queries: {exprs:?}");
        let queried: std::collections::BTreeSet<String> =
            exprs.iter().flat_map(|e| metric_names(e)).collect();
        let unknown: Vec<&String> = queried.iter().filter(|name| !exported.contains(*name)).collect();
        assert!(
            unknown.is_empty(),
            "the dashboard queries metrics the operator does not export: {unknown:?}"
        );
        assert!(queried.len() >= 8, "{queried:?}");
    }

    #[test]
    fn metric_names_are_read_from_promql() {
        assert_eq!(
            metric_names(
                r#"histogram_quantile(0.95, sum by (le) (rate(conveyor_x_bucket{job=~"$job"}[5m])))"#
            ),
            ["conveyor_x_bucket"]
        );
        let names = exported_names(
            "# TYPE conveyor_a counter\n# TYPE conveyor_b histogram\n# TYPE conveyor_c gauge\n",
        );
        assert!(
            names.contains("conveyor_a_total")
                && names.contains("conveyor_b_bucket")
                && names.contains("conveyor_c")
        );
        assert!(!names.contains("conveyor_a"));
    }
}
