//! The status's per-stage view, in pipeline order: the service each stage
//! runs on, where it is registered and its partitions (from the services'
//! own status, so the view is exact once they are Ready), and whether the
//! router's errors for it are rising. Counts stay out of status (they would
//! rewrite it at every stats read while records flow): the flag compares a
//! new stats read with the one before it, and without both (an unread or
//! unchanged read, the first read after a restart) it keeps its value. Pure.

use super::observation::Reference;
use crate::crd::PipelineStage;
use crate::intern;
use crate::router::PipelineConfig;
use crate::router::mapping::PipelineRead;

/// Two successive stats reads of the pipeline: the one before (`None` when
/// there is none to compare with) and the new one.
pub struct Reads<'a> {
    pub before: Option<&'a PipelineRead>,
    pub now: &'a PipelineRead,
}

pub fn stages(
    desired: &PipelineConfig,
    references: &[Reference],
    reads: Option<Reads<'_>>,
    previous: &[PipelineStage],
) -> Vec<PipelineStage> {
    desired
        .stages
        .iter()
        .zip(references)
        .map(|(stage, reference)| {
            let before = previous.iter().find(|p| *p.id == *stage.id && *p.service == *stage.name);
            let assignment = reference.assignment.as_ref();
            let errors_rising = match &reads {
                Some(Reads { before: Some(earlier), now }) => {
                    now.errors(&stage.id) > earlier.errors(&stage.id)
                }
                _ => before.is_some_and(|b| b.errors_rising),
            };
            PipelineStage {
                id: intern::text(&stage.id),
                service: intern::text(&stage.name),
                endpoint: assignment.map(|assignment| intern::text(&assignment.endpoint)),
                assigned_partitions: intern::partitions(assignment.map_or(&[], |a| &a.partitions)),
                errors_rising,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::crd::EtlPipelineSpec;
    use crate::pipeline::observation::{Assignment, ServiceState};
    use crate::router::GetPipelineResponse;
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

    fn read(errors: &[(&str, u64)]) -> PipelineRead {
        read_buffered(errors, 0)
    }

    /// A read of the router's figures, with `buffered` records in every stage.
    fn read_buffered(errors: &[(&str, u64)], buffered: u64) -> PipelineRead {
        let figures = errors
            .iter()
            .map(|(stage, errors)| {
                let figure = StageStatus {
                    records_processed: 100 * errors + 7,
                    records_buffered: buffered,
                    errors: *errors,
                    ..Default::default()
                };
                (stage.to_string(), figure)
            })
            .collect::<HashMap<_, _>>();
        PipelineRead::of(&GetPipelineResponse {
            found: true,
            config: None,
            status: Some(PipelineStatus { stage_statuses: figures, ..Default::default() }),
        })
    }

    #[test]
    fn each_stage_gets_its_service_endpoint_and_partitions() {
        let references = [
            reference("in", Some(Assignment { endpoint: "in-svc:1".into(), partitions: vec![0, 1] })),
            reference("t", None),
            reference("out", Some(Assignment { endpoint: "out-svc:2".into(), partitions: vec![] })),
        ];
        let first = stages(&desired(), &references, None, &[]);
        let ids: Vec<&str> = first.iter().map(|s| &*s.id).collect();
        assert_eq!(ids, ["source", "step-0", "sink"]);
        assert_eq!(first[0].endpoint.as_deref(), Some("in-svc:1"));
        assert_eq!(*first[0].assigned_partitions, [0, 1]);
        assert_eq!(first[1].endpoint, None, "not registered");
        assert!(first.iter().all(|s| !s.errors_rising));
    }

    #[test]
    fn errors_rising_flips_on_a_rising_count_and_back_on_a_still_one_and_moving_records_change_nothing() {
        let references = [reference("in", None), reference("t", None), reference("out", None)];
        let at = |before: &PipelineRead, now: &PipelineRead, previous: &[PipelineStage]| {
            let reads = Reads { before: Some(before), now };
            stages(&desired(), &references, Some(reads), previous)
        };
        let calm = stages(&desired(), &references, None, &[]);
        let (one, two) = (read(&[("step-0", 1)]), read(&[("step-0", 2)]));
        let rising = at(&one, &two, &calm);
        let flags: Vec<bool> = rising.iter().map(|s| s.errors_rising).collect();
        assert_eq!(flags, [false, true, false]);
        // Without a read before it to compare with, the flag keeps its value.
        let first_after_restart = Reads { before: None, now: &two };
        assert_eq!(stages(&desired(), &references, Some(first_after_restart), &rising), rising);
        assert_eq!(stages(&desired(), &references, None, &rising), rising, "unread keeps it");
        assert_eq!(at(&two, &read(&[("step-0", 2)]), &rising), calm, "a still count clears it");
        // Records moving with no new errors leave the stages as they were.
        let busier = read_buffered(&[("step-0", 2)], 50);
        assert_eq!(at(&two, &busier, &calm), calm);
        // A read keeps only the stages with errors; one without counts as none.
        let none = read(&[("source", 0), ("step-0", 0)]);
        assert!(none.stage_errors.is_empty());
        assert_eq!(at(&none, &one, &calm), rising, "from no errors to one");
    }
}
