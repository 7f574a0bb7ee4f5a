//! A pipeline's stages as a graph: source → steps → sink, and its
//! dead-letter queue. Pure: read from a [`Snapshot`].

use kube::ResourceExt;
use serde::Serialize;

use conveyor_etl_operator::crd::EtlPipeline;

use crate::kinds::Kind;
use crate::snapshot::{self, Snapshot, condition};

/// One stage of the pipeline and the service it runs on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// The router's stage id: `source`, `step-0`, ..., `sink`.
    pub id: String,
    pub kind: String,
    pub service: String,
    /// The service's phase; `None` when the service does not exist.
    pub phase: Option<String>,
    /// The service's health as the router reports it (`status.health`).
    pub health: Option<String>,
    /// Where the router sends the stage's records.
    pub endpoint: Option<String>,
    pub partitions: Vec<u32>,
    /// The router's error count for the stage rose at the last stats read.
    pub errors_rising: bool,
    /// The service does not exist.
    pub missing: bool,
}

/// A pipeline's graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    pub namespace: String,
    pub pipeline: String,
    pub phase: Option<String>,
    pub reason: Option<String>,
    pub ready: bool,
    pub enabled: bool,
    pub cluster: Option<String>,
    pub router_version: Option<u64>,
    pub stages: Vec<Stage>,
    /// The dead-letter queue, when enabled: how often a record is retried before it goes there.
    pub dlq_max_retries: Option<u32>,
}

pub fn graph(snapshot: &Snapshot, pipeline: &EtlPipeline) -> Graph {
    let namespace = pipeline.namespace().unwrap_or_default();
    let status = pipeline.status.as_ref();
    let mut wanted = vec![("source".to_owned(), Kind::Source, pipeline.spec.source.clone())];
    for (i, step) in pipeline.spec.steps.iter().enumerate() {
        wanted.push((format!("step-{i}"), Kind::Transform, step.clone()));
    }
    wanted.push(("sink".to_owned(), Kind::Sink, pipeline.spec.sink.clone()));
    let stages = wanted
        .into_iter()
        .map(|(id, kind, name)| {
            let service = snapshot.service(&namespace, kind, &name);
            let service_status = service.and_then(|s| s.status);
            // The pipeline's status describes the stage as the router runs it, once it does.
            let reported = status
                .into_iter()
                .flat_map(|s| s.stages.iter())
                .find(|s| *s.id == *id && *s.service == *name);
            Stage {
                id,
                kind: kind.name().to_owned(),
                phase: service_status.and_then(|s| s.phase).map(|p| format!("{p:?}")),
                health: service_status.and_then(|s| s.health.clone()),
                endpoint: reported
                    .and_then(|r| r.endpoint.as_deref().map(str::to_owned))
                    .or_else(|| service.map(|s| s.endpoint.to_owned())),
                partitions: reported
                    .map(|r| r.assigned_partitions.to_vec())
                    .filter(|p| !p.is_empty())
                    .or_else(|| service_status.map(|s| s.assigned_partitions.clone()))
                    .unwrap_or_default(),
                errors_rising: reported.is_some_and(|r| r.errors_rising),
                missing: service.is_none(),
                service: name,
            }
        })
        .collect();
    let ready = condition(snapshot::pipeline_conditions(pipeline), "Ready");
    Graph {
        pipeline: pipeline.name_any(),
        phase: status.and_then(|s| s.phase).map(|p| format!("{p:?}")),
        reason: ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
        ready: ready.is_some_and(|c| c.status == "True"),
        enabled: pipeline.spec.enabled,
        cluster: snapshot.cluster_of_pipeline(pipeline),
        router_version: status.and_then(|s| s.router_version),
        stages,
        dlq_max_retries: pipeline.spec.dlq.enabled.then_some(pipeline.spec.dlq.max_retries),
        namespace,
    }
}
