//! The benchmark's figures, printed as one Markdown table with the targets
//! beside them, and written to a file with the machine and the command.

use std::fmt::Write as _;
use std::time::Duration;

use crate::audit::Requests;
use crate::cpu::Usage;

#[derive(Default)]
pub struct Figures {
    pub pipelines: usize,
    pub services: usize,
    pub floor: Duration,
    /// CPU used while the floor was measured.
    pub floor_cpu: Usage,
    pub to_ready: Duration,
    /// From the first apply until the bench's applies of every object returned.
    pub applied: Duration,
    /// From the first apply until the router cluster was first Ready.
    pub cluster_formed: Option<Duration>,
    pub run_requests: Requests,
    pub run_router_calls: u64,
    /// Events created about pipelines during the run.
    pub run_pipeline_events: u64,
    /// CPU used from the first apply until all were Ready.
    pub run_cpu: Usage,
    /// The operator's reconciles from its start until all were Ready.
    pub run_reconciles: f64,
    /// `kind: reconciles (failed)`, each kind.
    pub run_reconciles_by_kind: String,
    pub idle: Duration,
    pub idle_requests: Requests,
    pub idle_router_calls: Vec<(String, u64)>,
    pub health_interval: Duration,
    pub stats_interval: Duration,
    pub busy: Duration,
    pub busy_requests: Requests,
    pub busy_router_calls: Vec<(String, u64)>,
    pub rss_ready_mib: f64,
    /// An operator watching only the example set, idle.
    pub rss_example_idle_mib: Option<f64>,
    /// Where the resident memory is, at each figure above: the figure's
    /// name, anonymous MiB (heap, stacks) and file MiB (the binary).
    pub rss_split: Vec<(String, f64, f64)>,
    pub edit_latencies: Vec<Duration>,
    pub degraded_after: Option<Duration>,
    pub restart_catch_up: Option<Duration>,
    pub restart_requests: Requests,
    /// Each size grown to, in order.
    pub large: Vec<Large>,
}

pub struct Large {
    /// The size it grew from.
    pub from: usize,
    pub pipelines: usize,
    pub to_ready: Duration,
    pub rss_mib: f64,
}

/// API writes per pipeline the target allows (finalizer, status, Event).
const WRITES_ALLOWED: f64 = 3.0;

impl Figures {
    /// The run's writes to pipelines (finalizer and status patches) and the
    /// Events about them; every Event patch (a repeat) is counted as theirs.
    fn pipeline_writes(&self) -> f64 {
        let of = |key: &str| self.run_requests.0.get(key).copied().unwrap_or(0);
        (of("patch etlpipelines")
            + of("patch etlpipelines/status")
            + of("patch events")
            + self.run_pipeline_events) as f64
    }

    /// From the floor's window (N creates, then N status applies, one after
    /// another): the API server's and etcd's CPU seconds per write; and the
    /// least time, as seconds and as a ratio to the floor, in which the
    /// machine's cores could take the run's writes at that cost: the
    /// bench's N applies and `writes` per pipeline, whatever the operator
    /// does. The run's own cost per write is higher (more watchers, larger
    /// objects), so this bound is low.
    pub fn least_for_the_writes(&self, writes: f64) -> (f64, f64, f64) {
        let usage = &self.floor_cpu;
        let n = self.pipelines.max(1) as f64;
        let per_write = (usage.of("kube-apiserver") + usage.of("etcd")) / (2.0 * n);
        let least = (1.0 + writes) * n * per_write / self.run_cpu.cores.max(1) as f64;
        (per_write, least, least / self.floor.as_secs_f64().max(f64::EPSILON))
    }

    /// The time the run's other work (API server, etcd, the bench's routers,
    /// kubelet and applies) kept the cores busy, as seconds and as a ratio
    /// to the floor: with the machine saturated, no operator could bring
    /// every object to Ready faster than this on it.
    pub fn without_operator_cpu(&self) -> (f64, f64) {
        let usage = &self.run_cpu;
        let others = (usage.machine_busy - usage.of("operator")).max(0.0);
        let bound = others / usage.cores.max(1) as f64;
        (bound, bound / self.floor.as_secs_f64().max(f64::EPSILON))
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

impl Figures {
    pub fn markdown(&self, command: &str, machine: &str) -> String {
        let n = self.pipelines as f64;
        let ratio = self.to_ready.as_secs_f64() / self.floor.as_secs_f64().max(f64::EPSILON);
        let writes_per_pipeline = self.pipeline_writes() / n;
        let objects = (self.pipelines + self.services + 1) as f64;
        let others_per_object =
            (self.run_requests.writes() as f64 - self.pipeline_writes()).max(0.0) / (objects - n).max(1.0);
        let minutes = self.idle.as_secs_f64() / 60.0;
        let idle_calls: u64 = self.idle_router_calls.iter().map(|(_, calls)| calls).sum();
        // A cluster's health poll: one GetClusterStatus per member (3), one
        // ListPipelines and one ListServices per health interval; a window
        // catches one more poll than it spans at most.
        let intervals = (self.idle.as_secs_f64() / self.health_interval.as_secs_f64()).floor() + 1.0;
        let health_polls = 5.0 * intervals;
        let mut edits = self.edit_latencies.clone();
        edits.sort();
        let p99 = percentile(&edits, 99.0);
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmark: conveyor-etl-operator on the local control plane\n");
        let _ = writeln!(out, "Command: `{command}`  ");
        let _ = writeln!(out, "Machine: {machine}\n");
        let _ = writeln!(out, "| Figure | Measured | Target | |");
        let _ = writeln!(out, "|---|---|---|---|");
        let mut row = |figure: &str, measured: String, target: &str, met: Option<bool>| {
            let _ =
                writeln!(out, "| {figure} | {measured} | {target} | {} |", met.map(verdict).unwrap_or(""));
        };
        row("Pipelines (N) / services", format!("{} / {}", self.pipelines, self.services), "", None);
        row("Floor: N sequential status applies", secs(self.floor), "", None);
        row("Operator: first apply to all Ready", secs(self.to_ready), "", None);
        row(
            "… of which the applies themselves (16 at a time), until the last returned",
            secs(self.applied),
            "",
            None,
        );
        row("Ratio operator / floor", format!("{ratio:.2}×"), "≤ 1.5×", Some(ratio <= 1.5));
        if let Some(formed) = self.cluster_formed {
            let after = self.to_ready.saturating_sub(formed);
            let ratio_after = after.as_secs_f64() / self.floor.as_secs_f64().max(f64::EPSILON);
            row("… of which the router cluster forming (pods, election)", secs(formed), "", None);
            row(
                "… cluster Ready to all Ready, and its ratio to the floor",
                format!("{} ({ratio_after:.2}×)", secs(after)),
                "",
                None,
            );
        }
        if self.run_cpu.elapsed > 0.0 {
            row("CPU during the floor, by process", self.floor_cpu.describe(), "", None);
            row("CPU from first apply to all Ready, by process", self.run_cpu.describe(), "", None);
            let (bound, bound_ratio) = self.without_operator_cpu();
            row(
                "Time to Ready if the operator's own CPU were free: (machine busy − operator) / cores",
                format!("{bound:.2} s ({bound_ratio:.2}× the floor)"),
                "",
                None,
            );
            let (per_write, least, least_ratio) = self.least_for_the_writes(WRITES_ALLOWED);
            row(
                "API server and etcd CPU per write, in the floor's window (N creates, N status applies)",
                format!("{:.2} ms", per_write * 1000.0),
                "",
                None,
            );
            row(
                "Least time the API server needs for N applies and 3 writes per pipeline, all cores on it",
                format!("{least:.2} s ({least_ratio:.2}× the floor)"),
                "",
                None,
            );
        }
        row(
            "API writes per pipeline, apply to Ready: its finalizer, status and Events (any Event patch counted as one)",
            format!("{writes_per_pipeline:.2}"),
            "≤ 3",
            Some(writes_per_pipeline <= WRITES_ALLOWED),
        );
        row(
            "API writes per object for the cluster and the services (their owned objects and Events included)",
            format!("{others_per_object:.2}"),
            "",
            None,
        );
        row(
            "All operator writes during the run, per pipeline",
            format!("{:.2}", self.run_requests.writes() as f64 / n),
            "",
            None,
        );
        row("Operator writes during the run, by kind", self.run_requests.describe_writes(), "", None);
        row(
            "Operator reads during the run (single-object GETs)",
            format!("{} ({})", self.run_requests.reads(), self.run_requests.gets()),
            "no per-object GETs",
            Some((self.run_requests.gets() as f64) < n / 10.0),
        );
        row("Router calls during the run", self.run_router_calls.to_string(), "", None);
        row(
            "Reconciles during the run (per object)",
            format!("{:.0} ({:.2})", self.run_reconciles, self.run_reconciles / objects),
            "≤ 1.5 per object",
            Some(self.run_reconciles / objects <= 1.5),
        );
        row("Reconciles and failed reconciles, by kind", self.run_reconciles_by_kind.clone(), "", None);
        row(
            &format!("Idle window ({}): API writes per minute", secs(self.idle)),
            format!("{:.1}", self.idle_requests.writes() as f64 / minutes),
            "0",
            Some(self.idle_requests.writes() == 0),
        );
        row(
            "Idle: router calls per minute (by method)",
            format!(
                "{:.1} ({})",
                idle_calls as f64 / minutes,
                self.idle_router_calls.iter().map(|(m, c)| format!("{c} {m}")).collect::<Vec<_>>().join(", ")
            ),
            &format!("health polls only (≤ {health_polls:.0} in the window)"),
            Some(idle_calls as f64 <= health_polls),
        );
        if !self.busy.is_zero() {
            let minutes = self.busy.as_secs_f64() / 60.0;
            let writes = self.busy_requests.writes();
            row(
                &format!("Busy window ({}, records flowing): API writes per minute", secs(self.busy)),
                format!("{:.1} ({})", writes as f64 / minutes, self.busy_requests.describe_writes()),
                "≤ 10 in total",
                Some(writes as f64 / minutes <= 10.0),
            );
            // The design's figure: the health polls, and each pipeline's
            // stats read (one GetPipeline) once per stats interval, so at
            // most once more than the window spans intervals.
            let polls = 5.0 * ((self.busy.as_secs_f64() / self.health_interval.as_secs_f64()).floor() + 1.0);
            let reads = (self.busy.as_secs_f64() / self.stats_interval.as_secs_f64()).floor() + 1.0;
            let allowed = polls + n * reads;
            let calls: u64 = self.busy_router_calls.iter().map(|(_, calls)| calls).sum();
            row(
                "Busy: router calls per minute (by method)",
                format!(
                    "{:.1} ({})",
                    calls as f64 / minutes,
                    self.busy_router_calls
                        .iter()
                        .map(|(m, c)| format!("{c} {m}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &format!(
                    "health polls and N GetPipeline per stats interval ({}; ≤ {allowed:.0} in the window)",
                    secs(self.stats_interval)
                ),
                Some(calls as f64 <= allowed),
            );
        }
        if let Some(rss) = self.rss_example_idle_mib {
            row(
                "RSS idle with the example set (1 cluster, 3 services, 1 pipeline)",
                format!("{rss:.1} MiB"),
                "≤ 20 MiB",
                Some(rss <= 20.0),
            );
        }
        row("RSS with N Ready", format!("{:.1} MiB", self.rss_ready_mib), "", None);
        if !self.rss_split.is_empty() {
            let split = self
                .rss_split
                .iter()
                .map(|(when, anon, file)| format!("{when}: {anon:.1} + {file:.1}"))
                .collect::<Vec<_>>()
                .join("; ");
            row("RSS split: heap and stacks + the binary's pages, MiB", split, "", None);
        }
        for large in &self.large {
            let (target, met) = match large.pipelines {
                10_000 => ("≤ 64 MiB", Some(large.rss_mib <= 64.0)),
                _ => ("", None),
            };
            row(
                &format!("RSS with {} pipelines watched", large.pipelines),
                format!("{:.1} MiB", large.rss_mib),
                target,
                met,
            );
            row(
                &format!("{} → {} pipelines: the added ones to Ready", large.from, large.pipelines),
                format!(
                    "{} ({:.2} ms each)",
                    secs(large.to_ready),
                    1000.0 * large.to_ready.as_secs_f64() / (large.pipelines - large.from) as f64
                ),
                "",
                None,
            );
        }
        if let Some(catch_up) = self.restart_catch_up {
            row(
                "Restart with N Ready: caught up",
                secs(catch_up),
                "≤ 10 s",
                Some(catch_up <= Duration::from_secs(10)),
            );
            row(
                "Restart: API writes",
                format!("{} ({})", self.restart_requests.writes(), self.restart_requests.describe_writes()),
                "0",
                Some(self.restart_requests.writes() == 0),
            );
        }
        if let Some(degraded) = self.degraded_after {
            let target = self.health_interval + Duration::from_secs(1);
            row(
                "Router node killed: Degraded after",
                secs(degraded),
                &format!("≤ {}", secs(target)),
                Some(degraded <= target),
            );
        }
        if !edits.is_empty() {
            row(
                &format!("Spec edit to router, p50 / p99 of {}", edits.len()),
                format!(
                    "{:.0} ms / {:.0} ms",
                    percentile(&edits, 50.0).as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                ),
                "p99 ≤ 200 ms",
                Some(p99 <= Duration::from_millis(200)),
            );
        }
        out.push_str(&self.projection());
        out
    }

    /// Memory and time per pipeline between the sizes measured (N Ready,
    /// then each size grown to), whether each grows linearly, and what
    /// 100,000 pipelines would take at the last rates.
    fn projection(&self) -> String {
        let mut out = String::new();
        if self.large.len() < 2 {
            return out;
        }
        let _ = writeln!(out, "\n## Projection to 100,000 pipelines\n");
        let _ = writeln!(out, "| Step | RSS per added pipeline | Time per added pipeline |");
        let _ = writeln!(out, "|---|---|---|");
        let mut rss_before = self.rss_ready_mib;
        let mut rates = Vec::new();
        for large in &self.large {
            let added = (large.pipelines - large.from) as f64;
            let kib = 1024.0 * (large.rss_mib - rss_before) / added;
            let ms = 1000.0 * large.to_ready.as_secs_f64() / added;
            let _ = writeln!(out, "| {} → {} | {kib:.2} KiB | {ms:.2} ms |", large.from, large.pipelines);
            rates.push((kib, ms));
            rss_before = large.rss_mib;
        }
        let (first, last) = (rates[rates.len() - 2], rates[rates.len() - 1]);
        let growth = |a: f64, b: f64| if a.abs() < f64::EPSILON { f64::INFINITY } else { b / a };
        let (memory, time) = (growth(first.0, last.0), growth(first.1, last.1));
        let linear = |ratio: f64| if (0.67..=1.5).contains(&ratio) { "linear" } else { "not linear" };
        let largest = self.large.last().expect("two sizes or more");
        let remaining = 100_000usize.saturating_sub(largest.pipelines) as f64;
        let rss = largest.rss_mib + last.0 * remaining / 1024.0;
        let grow = Duration::from_secs_f64(last.1 * remaining / 1000.0);
        let _ = writeln!(
            out,
            "\nPer added pipeline, the last step against the one before: memory {memory:.2}× ({}), \
             time {time:.2}× ({}; within 0.67–1.5× counts as linear). At the last step's rates, 100,000 \
             pipelines would hold about {rss:.0} MiB resident, and growing from {} to 100,000 would take \
             about {}.",
            linear(memory),
            linear(time),
            largest.pipelines,
            secs(grow)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn large(from: usize, pipelines: usize, seconds: f64, rss_mib: f64) -> Large {
        Large { from, pipelines, to_ready: Duration::from_secs_f64(seconds), rss_mib }
    }

    #[test]
    fn two_sizes_project_100000_at_the_last_steps_rates_and_say_whether_growth_is_linear() {
        let mut figures = Figures { pipelines: 1000, rss_ready_mib: 30.0, ..Figures::default() };
        assert_eq!(figures.projection(), "", "one size or none projects nothing");
        // 9,000 more at 5 KiB and 6 ms each, then 10,000 more at 5 KiB and 12 ms each.
        figures.large = vec![
            large(1000, 10_000, 54.0, 30.0 + 9000.0 * 5.0 / 1024.0),
            large(10_000, 20_000, 120.0, 30.0 + 19_000.0 * 5.0 / 1024.0),
        ];
        let text = figures.projection();
        assert!(text.contains("| 1000 → 10000 | 5.00 KiB | 6.00 ms |"), "{text}");
        assert!(text.contains("| 10000 → 20000 | 5.00 KiB | 12.00 ms |"), "{text}");
        assert!(text.contains("memory 1.00× (linear), time 2.00× (not linear"), "{text}");
        // 30 MiB + 99,000 × 5 KiB, and 80,000 × 12 ms.
        assert!(text.contains("about 513 MiB resident") && text.contains("about 960.00 s"), "{text}");
    }

    #[test]
    fn writes_per_pipeline_count_its_own_writes_and_events_and_the_rest_go_to_the_other_objects() {
        let requests = [
            ("patch etlpipelines", 100),
            ("patch etlpipelines/status", 100),
            ("patch events", 2),
            ("create events", 115),
            ("patch etlsources/status", 20),
            ("get etlpipelines", 7),
        ];
        let figures = Figures {
            pipelines: 100,
            services: 9,
            run_pipeline_events: 98,
            run_requests: Requests(requests.iter().map(|(k, n)| (k.to_string(), *n)).collect()),
            ..Figures::default()
        };
        // 100 + 100 + 2 + 98 for the pipelines; 17 Events and 20 patches for the 10 others.
        assert_eq!(figures.pipeline_writes(), 300.0);
        let text = figures.markdown("bench", "machine");
        assert!(text.contains("Events (any Event patch counted as one) | 3.00 | ≤ 3 | met |"), "{text}");
        assert!(text.contains("(their owned objects and Events included) | 3.70 |"), "{text}");
        assert!(text.contains("All operator writes during the run, per pipeline | 3.37 |"), "{text}");
    }

    #[test]
    fn the_bound_without_the_operator_leaves_out_only_its_cpu() {
        let figures = Figures {
            floor: Duration::from_secs(2),
            run_cpu: Usage {
                elapsed: 8.0,
                processes: vec![("kube-apiserver".into(), 6.0), ("operator".into(), 4.0)],
                machine_busy: 14.0,
                cores: 2,
            },
            ..Figures::default()
        };
        // 14 s busy less the operator's 4 s, over two cores.
        assert_eq!(figures.without_operator_cpu(), (5.0, 2.5));
        // 2 ms per write in the floor's 2,000 writes; 4,000 writes over two cores.
        let figures = Figures {
            pipelines: 1000,
            floor_cpu: Usage {
                elapsed: 3.0,
                processes: vec![("kube-apiserver".into(), 3.0), ("etcd".into(), 1.0), ("bench".into(), 9.0)],
                machine_busy: 5.0,
                cores: 2,
            },
            ..figures
        };
        let (per_write, least, ratio) = figures.least_for_the_writes(3.0);
        assert!((per_write - 0.002).abs() < 1e-9 && (least - 4.0).abs() < 1e-9 && (ratio - 2.0).abs() < 1e-9);
        let text = figures.markdown("bench", "machine");
        assert!(text.contains("| 5.00 s (2.50× the floor) |"), "{text}");
        assert!(
            text.contains("kube-apiserver 6.0 s, operator 4.0 s; machine busy 88 % of 2 cores"),
            "{text}"
        );
    }
}
