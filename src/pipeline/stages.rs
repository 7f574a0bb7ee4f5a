//! The status's per-stage view, in pipeline order: the service each stage
//! runs on, where it is registered and its partitions (from the services'
//! own status, so the view is exact once they are Ready), and the router's
//! figures (from the pipeline's last read; a failed read keeps the previous
//! figures, so an outage does not churn the status). Pure.

use super::observation::Reference;
use crate::crd::PipelineStage;
use crate::router::{GetPipelineResponse, PipelineConfig};

pub fn stages(
    desired: &PipelineConfig,
    references: &[Reference],
    read: Option<&GetPipelineResponse>,
    previous: &[PipelineStage],
) -> Vec<PipelineStage> {
    let figures = read.and_then(|r| r.status.as_ref()).map(|status| &status.stage_statuses);
    desired
        .stages
        .iter()
        .zip(references)
        .map(|(stage, reference)| {
            let before = previous.iter().find(|p| p.id == stage.id && p.service == stage.name);
            let assignment = reference.assignment.clone().unwrap_or_default();
            let mut next = PipelineStage {
                id: stage.id.clone(),
                service: stage.name.clone(),
                endpoint: reference.assignment.as_ref().map(|_| assignment.endpoint),
                assigned_partitions: assignment.partitions,
                ..Default::default()
            };
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
    use crate::pipeline::observation::{Assignment, ServiceState};
    use crate::router::mapping::pipeline_config;
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

    fn reference(name: &str, assignment: Option<Assignment>) -> Reference {
        Reference {
            role: "r".into(),
            kind: "EtlSource",
            name: name.into(),
            state: ServiceState::Ready,
            assignment,
        }
    }

    #[test]
    fn each_stage_gets_its_service_endpoint_partitions_and_figures_and_keeps_figures_when_unread() {
        let references = [
            reference("in", Some(Assignment { endpoint: "in-svc:1".into(), partitions: vec![0, 1] })),
            reference("t", None),
            reference("out", Some(Assignment { endpoint: "out-svc:2".into(), partitions: vec![] })),
        ];
        let figures = HashMap::from([(
            "step-0".to_owned(),
            StageStatus { records_processed: 10, records_buffered: 2, errors: 1, avg_latency_ms: 0.5 },
        )]);
        let read = GetPipelineResponse {
            found: true,
            config: None,
            status: Some(PipelineStatus { stage_statuses: figures, ..Default::default() }),
        };
        let first = stages(&desired(), &references, Some(&read), &[]);
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
        assert_eq!(
            stages(&desired(), &references, None, &first),
            first,
            "an unread router keeps the figures"
        );
    }
}
