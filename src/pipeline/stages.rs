//! The status's per-stage view, in pipeline order: the service each stage
//! runs on, where it listens and its partitions (from the cluster's
//! registry), and the router's figures (from the pipeline's last read). A
//! source that could not be read keeps the previous values, so an outage
//! does not churn the status. Pure.

use crate::crd::PipelineStage;
use crate::router::mapping::service_id;
use crate::router::{GetPipelineResponse, PipelineConfig, RegisteredService};

pub fn stages(
    desired: &PipelineConfig,
    namespace: &str,
    registry: Option<&[RegisteredService]>,
    read: Option<&GetPipelineResponse>,
    previous: &[PipelineStage],
) -> Vec<PipelineStage> {
    let figures = read.and_then(|r| r.status.as_ref()).map(|status| &status.stage_statuses);
    desired
        .stages
        .iter()
        .map(|stage| {
            let before = previous.iter().find(|p| p.id == stage.id && p.service == stage.name);
            let mut next =
                PipelineStage { id: stage.id.clone(), service: stage.name.clone(), ..Default::default() };
            match registry {
                Some(registry) => {
                    let id = service_id(namespace, &stage.name);
                    let registered =
                        registry.iter().find(|s| s.identity.as_ref().is_some_and(|i| i.service_id == id));
                    if let Some(service) = registered {
                        next.endpoint = service.endpoint.as_ref().map(|e| format!("{}:{}", e.host, e.port));
                        next.assigned_partitions = service.assigned_partitions.clone();
                    }
                }
                None => {
                    next.endpoint = before.and_then(|b| b.endpoint.clone());
                    next.assigned_partitions =
                        before.map(|b| b.assigned_partitions.clone()).unwrap_or_default();
                }
            }
            match figures {
                Some(figures) => {
                    let figure = figures.get(&stage.id);
                    next.records_processed = figure.map(|f| f.records_processed);
                    next.records_buffered = figure.map(|f| f.records_buffered);
                    next.errors = figure.map(|f| f.errors);
                }
                None => {
                    next.records_processed = before.and_then(|b| b.records_processed);
                    next.records_buffered = before.and_then(|b| b.records_buffered);
                    next.errors = before.and_then(|b| b.errors);
                }
            }
            next
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::crd::EtlPipelineSpec;
    use crate::router::mapping::pipeline_config;
    use crate::router::proto::common::{Endpoint, ServiceIdentity};
    use crate::router::{PipelineStatus, StageStatus};

    fn desired() -> PipelineConfig {
        let spec = EtlPipelineSpec {
            source: "in".into(),
            steps: vec!["t".into()],
            sink: "out".into(),
            ..Default::default()
        };
        pipeline_config("ns", "p", 1, &spec)
    }

    fn registered(name: &str, port: u32, partitions: Vec<u32>) -> RegisteredService {
        RegisteredService {
            identity: Some(ServiceIdentity { service_id: format!("ns/{name}"), ..Default::default() }),
            endpoint: Some(Endpoint { host: format!("{name}-svc"), port, ..Default::default() }),
            assigned_partitions: partitions,
            ..Default::default()
        }
    }

    #[test]
    fn each_stage_gets_its_service_endpoint_partitions_and_figures_and_keeps_them_when_unread() {
        let registry = [registered("in", 1, vec![0, 1]), registered("out", 2, vec![])];
        let figures = HashMap::from([(
            "step-0".to_owned(),
            StageStatus { records_processed: 10, records_buffered: 2, errors: 1, avg_latency_ms: 0.5 },
        )]);
        let read = GetPipelineResponse {
            found: true,
            config: None,
            status: Some(PipelineStatus { stage_statuses: figures, ..Default::default() }),
        };
        let first = stages(&desired(), "ns", Some(&registry), Some(&read), &[]);
        let ids: Vec<&str> = first.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["source", "step-0", "sink"]);
        assert_eq!(first[0].endpoint.as_deref(), Some("in-svc:1"));
        assert_eq!(first[0].assigned_partitions, [0, 1]);
        assert_eq!(first[1].endpoint, None, "not registered");
        assert_eq!(
            (first[1].records_processed, first[1].records_buffered, first[1].errors),
            (Some(10), Some(2), Some(1))
        );
        assert_eq!(first[2].records_processed, None, "no figures for the sink");
        assert_eq!(stages(&desired(), "ns", None, None, &first), first, "an unread source keeps its values");
    }
}
