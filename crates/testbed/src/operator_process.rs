//! The operator binary as a child process at its default settings, watching
//! the benchmark's namespace under its own ClusterRole.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct OperatorProcess {
    child: Child,
    http: std::net::SocketAddr,
    /// Started under CONVEYOR_OPERATOR_WRAPPER: `child` is the wrapper.
    wrapped: bool,
}

impl OperatorProcess {
    /// Starts the binary next to this one and waits for `/readyz`.
    pub async fn start(kubeconfig: &Path, namespace: &str, log: &Path) -> anyhow::Result<OperatorProcess> {
        Self::start_with(kubeconfig, namespace, log, &[]).await
    }

    /// [`OperatorProcess::start`] with more environment (settings such as
    /// `CONVEYOR_HEALTH_INTERVAL`).
    pub async fn start_with(
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<OperatorProcess> {
        let binary = std::env::current_exe()?.with_file_name("conveyor-etl-operator");
        let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        // CONVEYOR_OPERATOR_WRAPPER runs the binary under another program,
        // e.g. `heaptrack -o /tmp/heap/operator` for a heap profile (the
        // resident memory reported is then the wrapper's).
        let wrapper = std::env::var("CONVEYOR_OPERATOR_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let child = command
            .env("KUBECONFIG", kubeconfig)
            .env("CONVEYOR_WATCH_NAMESPACE", namespace)
            .env("CONVEYOR_HTTP_ADDRESS", http.to_string())
            // CONVEYOR_OPERATOR_RUST_LOG: the operator's log filter, to look into a run.
            .env("RUST_LOG", std::env::var("CONVEYOR_OPERATOR_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("cannot start {} (build it with `cargo build --release`)", binary.display())
            })?;
        let mut operator = OperatorProcess { child, http, wrapped: !wrapper.trim().is_empty() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while operator.get("/readyz").map(|(code, _)| code) != Some(200) {
            if let Some(status) = operator.child.try_wait()? {
                bail!("the operator exited before it was ready: {status}");
            }
            if Instant::now() > deadline {
                bail!("the operator was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
        Ok(operator)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `(status code, body)` of a GET on the operator's HTTP port.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&self.http, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
        Some((code, body))
    }

    /// The sum of a metric's samples across its label sets.
    pub fn metric_sum(&self, name: &str) -> f64 {
        let Some((200, text)) = self.get("/metrics") else { return 0.0 };
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// The sums of metric `name` by the value of its label `label`, sorted by that value.
    pub fn metric_by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let Some((200, text)) = self.get("/metrics") else { return Vec::new() };
        let mut sums = std::collections::BTreeMap::<String, f64>::new();
        let prefix = format!("{label}=\"");
        for line in text.lines().filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        {
            let Some((labels, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let Some(start) = labels.find(&prefix).map(|at| at + prefix.len()) else { continue };
            let Some(len) = labels[start..].find('"') else { continue };
            *sums.entry(labels[start..start + len].to_owned()).or_default() += value;
        }
        sums.into_iter().collect()
    }

    /// Resident memory from `/proc/<pid>/status`, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// Resident memory split into anonymous pages (heap, stacks) and pages
    /// of files (the binary and its libraries), in MiB.
    pub fn rss_split_mib(&self) -> (f64, f64) {
        (self.status_mib("RssAnon:"), self.status_mib("RssFile:"))
    }

    fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    /// SIGTERM, then waits for the exit (the operator drains its reconciles).
    pub fn stop(mut self) -> anyhow::Result<()> {
        if self.wrapped {
            // A wrapper (heaptrack's script) need not pass the signal on: the
            // operator, its child, gets it directly, and the wrapper ends after it.
            let parent = self.pid().to_string();
            Command::new("pkill").args(["-TERM", "-P", &parent, "-f", "conveyor-etl-operator"]).status()?;
            self.child.wait()?;
            return Ok(());
        }
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.wrapped {
            let parent = self.pid().to_string();
            let _ =
                Command::new("pkill").args(["-KILL", "-P", &parent, "-f", "conveyor-etl-operator"]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
