//! The API server's own write floor: one server-side-applied status write per
//! object, pushed by one client one after another as fast as it goes.

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use conveyor_testbed::workload::{self, api};

pub const NAMESPACE: &str = "bench-floor";

/// Seconds for `n` sequential status applies (creating the objects first is not timed).
pub async fn measure(client: &Client, n: usize, per_kind: usize) -> anyhow::Result<Duration> {
    workload::apply_all(client, NAMESPACE, workload::pipelines(0..n, per_kind)).await?;
    let pipelines = api(client, NAMESPACE, "EtlPipeline");
    let params = PatchParams::apply("conveyor-bench-floor").force();
    let started = Instant::now();
    for i in 0..n {
        let name = workload::pipeline_name(i);
        let status = json!({
            "apiVersion": "conveyor.etl/v1",
            "kind": "EtlPipeline",
            "status": {
                "phase": "Ready",
                "observedGeneration": 1,
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Running",
                    "message": "the router runs the pipeline", "observedGeneration": 1,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }],
            },
        });
        pipelines.patch_status(&name, &params, &Patch::Apply(&status)).await?;
    }
    Ok(started.elapsed())
}
