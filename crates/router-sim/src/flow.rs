//! Records flowing through the simulated router's pipelines: `GetPipeline`
//! reports each stage's figures as they stood when stored, advanced by the
//! flow's rates for the time since (the pipeline's creation or the last
//! change of rates, whichever is later), so a busy router's figures move at
//! every read. Records buffered wave with what flows; errors advance only
//! while the error rate is above zero. Without a flow (the default) the
//! stored figures are reported as they are. Pure (the time is passed in).

use std::time::SystemTime;

use conveyor_router_contract::proto::router::{PipelineStatus, StageStatus};

/// Records and errors per second, per stage of every pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub records_per_second: f64,
    pub errors_per_second: f64,
}

/// The rates in force, and since when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Flow {
    pub rates: Rates,
    pub since: SystemTime,
}

impl Flow {
    /// `status` as the router reports it at `now`.
    pub fn advance(&self, status: &mut PipelineStatus, now: SystemTime) {
        let created = status.created_at.and_then(|at| SystemTime::try_from(at).ok());
        let from = created.map_or(self.since, |created| created.max(self.since));
        let seconds = now.duration_since(from).unwrap_or_default().as_secs_f64();
        let records = (self.rates.records_per_second * seconds) as u64;
        let errors = (self.rates.errors_per_second * seconds) as u64;
        for figure in status.stage_statuses.values_mut() {
            *figure = StageStatus {
                records_processed: figure.records_processed + records,
                records_buffered: figure.records_buffered + records % 97,
                errors: figure.errors + errors,
                avg_latency_ms: figure.avg_latency_ms,
            };
        }
    }

    /// `status` to store when the rates change at `now`: what flowed so far,
    /// kept (records buffered stay as stored: they wave, not accumulate).
    pub fn settle(&self, status: &mut PipelineStatus, now: SystemTime) {
        let buffered: Vec<(String, u64)> =
            status.stage_statuses.iter().map(|(id, f)| (id.clone(), f.records_buffered)).collect();
        self.advance(status, now);
        for (id, kept) in buffered {
            if let Some(figure) = status.stage_statuses.get_mut(&id) {
                figure.records_buffered = kept;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn status(created: SystemTime) -> PipelineStatus {
        PipelineStatus {
            created_at: Some(created.into()),
            stage_statuses: HashMap::from([(
                "sink".to_owned(),
                StageStatus { errors: 3, ..Default::default() },
            )]),
            ..Default::default()
        }
    }

    #[test]
    fn figures_advance_with_time_from_the_later_of_creation_and_the_rates_change() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let rates = Rates { records_per_second: 10.0, errors_per_second: 0.0 };
        let flow = Flow { rates, since: start };
        let created_later = start + Duration::from_secs(5);
        let mut read = status(created_later);
        flow.advance(&mut read, created_later + Duration::from_secs(2));
        let sink = read.stage_statuses["sink"];
        assert_eq!((sink.records_processed, sink.records_buffered, sink.errors), (20, 20, 3));
        let mut older = status(start - Duration::from_secs(60));
        flow.advance(&mut older, start + Duration::from_secs(20));
        assert_eq!(older.stage_statuses["sink"].records_processed, 200);
        assert_eq!(older.stage_statuses["sink"].records_buffered, 200 % 97);
    }

    #[test]
    fn settling_keeps_what_flowed_and_the_error_rate_moves_errors_only_while_set() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let failing = Flow { rates: Rates { records_per_second: 1.0, errors_per_second: 2.0 }, since: start };
        let mut stored = status(start);
        let later = start + Duration::from_secs(10);
        failing.settle(&mut stored, later);
        let sink = stored.stage_statuses["sink"];
        assert_eq!((sink.records_processed, sink.records_buffered, sink.errors), (10, 0, 23));
        let calm = Flow { rates: Rates { records_per_second: 1.0, errors_per_second: 0.0 }, since: later };
        let mut read = stored.clone();
        calm.advance(&mut read, later + Duration::from_secs(30));
        assert_eq!(
            (read.stage_statuses["sink"].records_processed, read.stage_statuses["sink"].errors),
            (40, 23)
        );
    }
}
