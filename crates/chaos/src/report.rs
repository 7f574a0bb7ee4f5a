//! Each scenario's outcome and the Markdown summary of a run.

use std::time::Duration;

#[derive(Debug, Default)]
pub struct Outcome {
    pub scenario: &'static str,
    /// Faults injected, by kind.
    pub faults: Vec<(String, u64)>,
    /// Other figures worth reading, by name.
    pub figures: Vec<(String, String)>,
    /// Convergence times after the faults, in order.
    pub convergences: Vec<Duration>,
    /// `None` when it passed, else why not.
    pub failure: Option<String>,
    pub took: Duration,
}

impl Outcome {
    pub fn new(scenario: &'static str) -> Outcome {
        Outcome { scenario, ..Outcome::default() }
    }

    pub fn fault(&mut self, kind: &str, n: u64) {
        match self.faults.iter_mut().find(|(k, _)| k == kind) {
            Some((_, count)) => *count += n,
            None => self.faults.push((kind.to_owned(), n)),
        }
    }

    pub fn figure(&mut self, name: &str, value: String) {
        self.figures.push((name.to_owned(), value));
    }

    pub fn converged(&mut self, took: Duration) {
        self.convergences.push(took);
    }

    fn faults_text(&self) -> String {
        let all: Vec<String> = self.faults.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        if all.is_empty() { "none".into() } else { all.join(", ") }
    }

    fn convergence_text(&self) -> String {
        if self.convergences.is_empty() {
            return "-".into();
        }
        let max = self.convergences.iter().max().copied().unwrap_or_default();
        format!("{} checks, slowest {:.1} s", self.convergences.len(), max.as_secs_f64())
    }
}

/// The run's summary as Markdown: one row per scenario, then their figures.
pub fn markdown(outcomes: &[Outcome], seed: u64, command: &str, machine: &str) -> String {
    let mut text = String::from("# Chaos suite: last long run\n\n");
    text.push_str(&format!("Command: `{command}`  \nSeed: `{seed}`  \nMachine: {machine}\n\n"));
    text.push_str("| scenario | result | faults injected | convergence | took |\n|---|---|---|---|---|\n");
    for outcome in outcomes {
        let result = match &outcome.failure {
            None => "passed".to_owned(),
            Some(why) => format!("**FAILED**: {}", why.lines().next().unwrap_or_default()),
        };
        text.push_str(&format!(
            "| {} | {result} | {} | {} | {:.0} s |\n",
            outcome.scenario,
            outcome.faults_text(),
            outcome.convergence_text(),
            outcome.took.as_secs_f64()
        ));
    }
    for outcome in outcomes {
        text.push_str(&format!("\n## {}\n\n", outcome.scenario));
        for (name, value) in &outcome.figures {
            text.push_str(&format!("- {name}: {value}\n"));
        }
        if let Some(why) = &outcome.failure {
            text.push_str(&format!("\nFailure:\n\n```\n{why}\n```\n"));
        }
    }
    text
}
