//! What the router client measures: every gRPC call by method and outcome,
//! and its latency by method.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~8 s: a loopback call up to a call that hit its deadline.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Router call counters and latencies; clones share them.
#[derive(Clone, Debug)]
pub struct CallMetrics {
    calls: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics { calls: Family::default(), latency: Family::new_with_constructor(latency_histogram) }
    }
}

impl CallMetrics {
    /// Adds `router_calls_total` and `router_call_duration_seconds` to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "router_calls",
            "gRPC calls to router members, by method and outcome",
            self.calls.clone(),
        );
        registry.register_with_unit(
            "router_call_duration",
            "How long gRPC calls to router members take, by method",
            Unit::Seconds,
            self.latency.clone(),
        );
    }

    /// One call of `method` that ended in `outcome` (`ok` or an error label) after `took`.
    pub(super) fn observe(&self, method: &'static str, outcome: &'static str, took: Duration) {
        self.calls.get_or_create(&CallLabels { method, outcome }).inc();
        self.latency.get_or_create(&MethodLabels { method }).observe(took.as_secs_f64());
    }
}
