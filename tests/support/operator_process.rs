//! The real operator binary as a child process: its stderr kept line by
//! line, its HTTP port on loopback, killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ControlPlane;

pub struct OperatorProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl OperatorProcess {
    /// The operator watching `namespace`, with no OTEL_* setting but those in `env`.
    pub fn start(
        plane: &ControlPlane,
        namespace: &str,
        env: &[(&str, String)],
        args: &[&str],
    ) -> OperatorProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_conveyor-etl-operator"));
        command
            .args(args)
            .env("KUBECONFIG", &plane.kubeconfig)
            .env("CONVEYOR_WATCH_NAMESPACE", namespace)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())));
        Self::spawn(command)
    }

    /// Runs `command` (the operator binary, or a wrapper that execs it) with
    /// no OTEL_* setting or log format from the test's environment unless
    /// `command` sets them, `RUST_LOG=info` unless it sets that, and its HTTP
    /// port on a free loopback port.
    pub fn spawn(mut command: Command) -> OperatorProcess {
        let port = free_port();
        let set: Vec<String> =
            command.get_envs().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
        for (name, _) in std::env::vars()
            .filter(|(name, _)| name.starts_with("OTEL_") || name == "CONVEYOR_LOG_FORMAT")
            .filter(|(name, _)| !set.contains(name))
        {
            command.env_remove(name);
        }
        if !set.iter().any(|name| name == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        command
            .env("CONVEYOR_HTTP_ADDRESS", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the operator binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let kept = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        OperatorProcess { child, lines, reader: Some(reader), port }
    }

    /// Once the process is gone: waits until its last stderr line is kept.
    fn read_to_end(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// `(status, body)` of a GET on the operator's HTTP port, `None` while it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(("127.0.0.1", self.port), path)
    }

    /// SIGKILL, and waits until it is gone: no chance to release anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("the operator is running");
        self.child.wait().unwrap();
        self.read_to_end();
    }

    /// Sends SIGTERM, as the kubelet does when it stops a pod.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// The exit status, once it exited; polls for at most `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.read_to_end();
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval
        }
    }

    /// The `/metrics` text, `None` while it does not answer 200.
    pub fn metrics(&self) -> Option<String> {
        self.get("/metrics").filter(|(code, _)| *code == 200).map(|(_, body)| body)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(status, body)` of a plain HTTP/1.1 GET, `None` while nothing answers.
pub fn http_get(address: impl std::net::ToSocketAddrs, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head.lines().any(|line| line.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body)? } else { body.to_owned() };
    Some((code, body))
}

/// A chunked HTTP/1.1 body (what Go's servers send for large answers) made whole.
fn dechunk(mut body: &str) -> Option<String> {
    let mut whole = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(whole);
        }
        whole.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}
