//! Where the machine's CPU went during a window: each process's user and
//! system time (`/proc/PID/stat`) and the whole machine's busy time
//! (`/proc/stat`). On two shared cores, time to Ready is bounded by the CPU
//! the API server and etcd need for the writes, which these figures show.

use std::time::Instant;

/// CPU seconds used so far by each named process, and by the machine.
#[derive(Clone)]
pub struct Sample {
    at: Instant,
    processes: Vec<(String, f64)>,
    machine_busy: f64,
}

/// What a window between two samples used.
#[derive(Clone, Default)]
pub struct Usage {
    pub elapsed: f64,
    /// CPU seconds per process, in the order sampled.
    pub processes: Vec<(String, f64)>,
    /// Busy CPU seconds of the whole machine (all cores).
    pub machine_busy: f64,
    pub cores: usize,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User plus system CPU seconds of `pid`, 0 once it is gone.
fn process_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / ticks_per_second()
}

/// Busy CPU seconds of the machine (every core; idle and iowait left out).
fn machine_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle) / ticks_per_second()
}

impl Sample {
    pub fn take(processes: &[(String, u32)]) -> Sample {
        Sample {
            at: Instant::now(),
            processes: processes.iter().map(|(name, pid)| (name.clone(), process_seconds(*pid))).collect(),
            machine_busy: machine_seconds(),
        }
    }

    /// The usage from `self` until now, for the same processes.
    pub fn until_now(&self, processes: &[(String, u32)]) -> Usage {
        let now = Sample::take(processes);
        Usage {
            elapsed: now.at.duration_since(self.at).as_secs_f64(),
            processes: now
                .processes
                .iter()
                .zip(&self.processes)
                .map(|((name, after), (_, before))| (name.clone(), (after - before).max(0.0)))
                .collect(),
            machine_busy: (now.machine_busy - self.machine_busy).max(0.0),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }
}

impl Usage {
    pub fn of(&self, name: &str) -> f64 {
        self.processes.iter().filter(|(n, _)| n == name).map(|(_, s)| s).sum()
    }

    /// The share of the machine's cores that were busy, 0 to 1.
    pub fn machine_share(&self) -> f64 {
        self.machine_busy / (self.elapsed * self.cores as f64).max(f64::EPSILON)
    }

    /// `kube-apiserver 5.1 s, etcd 1.2 s, …; machine busy 93 % of 2 cores`.
    pub fn describe(&self) -> String {
        let each: Vec<String> = self.processes.iter().map(|(name, s)| format!("{name} {s:.1} s")).collect();
        format!(
            "{}; machine busy {:.0} % of {} cores over {:.1} s",
            each.join(", "),
            100.0 * self.machine_share(),
            self.cores,
            self.elapsed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_in_this_process_is_counted() {
        let me = [("bench".to_owned(), std::process::id())];
        let before = Sample::take(&me);
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let usage = before.until_now(&me);
        assert!(usage.of("bench") >= 0.1, "{}", usage.describe());
        assert!(usage.machine_busy >= usage.of("bench") * 0.5, "{}", usage.describe());
        assert!(usage.machine_share() > 0.0 && usage.machine_share() <= 1.05, "{}", usage.describe());
    }
}
