//! The one-command demo (`cargo demo`, the `conveyor-demo` binary), run as a newcomer
//! would: the real binary, its own control plane, its output read line by
//! line. It must show the example set moving to Ready, and leave no process
//! or port behind when it ends, whether by `--until-ready` or by Ctrl-C.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const EXAMPLES: [(&str, &str); 6] = [
    ("EtlRouterCluster", "my-cluster"),
    ("EtlPipeline", "user-analytics"),
    ("EtlSource", "kafka-users"),
    ("EtlTransform", "filter-active"),
    ("EtlTransform", "enrich-geo"),
    ("EtlSink", "clickhouse-analytics"),
];
const ALL_READY: &str = "all 6 objects are Ready";
/// Control plane start, the example set going Ready and the stop, on a loaded machine.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

/// The demo binary running, its stdout lines arriving on a channel.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        Self::start_with(args, |_| {})
    }

    /// The demo with `args`, its command adjusted by `configure` (environment).
    fn start_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let mut command = Command::new(env!("CARGO_BIN_EXE_conveyor-demo"));
        configure(&mut command);
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the demo starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Demo { child, lines, seen: Vec::new(), stderr, _dir: dir }
    }

    /// Reads lines until one satisfies `wanted` (returned) or the output ends.
    fn until(&mut self, what: &str, deadline: Instant, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("no {what} before the deadline")),
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!("the output ended without {what}")),
            }
        }
    }

    /// Reads the rest of the output and waits for the exit, within `deadline`.
    fn finish(&mut self, deadline: Instant) -> std::process::ExitStatus {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.fail("the demo did not finish before the deadline"),
            }
        }
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                self.fail("the demo closed its output but did not exit");
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "{why}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.seen.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed assertion must not leave the demo running (its control
        // plane dies with it through PR_SET_PDEATHSIG).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after each `marker` in `text`.
fn numbers_after(text: &str, marker: &str) -> Vec<u32> {
    text.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// `IP:port` of every simulated router node the demo reported.
fn node_addresses(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.split(" at ").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    // A reaped child's /proc entry is gone; a zombie would show state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

/// The objects' lines: each example's `kind/name` went through a phase
/// before Ready and reached Ready, every one before the all-Ready line.
fn assert_phases(output: &str) {
    let all_ready = output.find(ALL_READY).unwrap_or_else(|| panic!("no all-Ready line in\n{output}"));
    let before = &output[..all_ready];
    for (kind, name) in EXAMPLES {
        let object = format!("] {kind}/{name} ");
        let phases: Vec<&str> = before
            .lines()
            .filter(|line| line.contains(&object))
            .map(|line| line.split_once(&object).unwrap().1.trim())
            .collect();
        assert_eq!(
            phases.last(),
            Some(&"Ready"),
            "{kind}/{name} not Ready before the all-Ready line:\n{output}"
        );
        assert!(phases.len() >= 2, "{kind}/{name} showed no phase before Ready:\n{output}");
    }
    let cluster: Vec<&str> =
        before.lines().filter(|l| l.contains("] EtlRouterCluster/my-cluster ")).collect();
    // RaftForming shows only when the simulated nodes have not elected a
    // leader by the time their pods are ready; states.md lets Provisioning
    // go straight to Ready when they have, so it is not asserted here.
    for phase in ["Provisioning", "Ready"] {
        assert!(cluster.iter().any(|l| l.contains(phase)), "the cluster never showed {phase}:\n{output}");
    }
}

/// Nothing the demo reported starting is left: its processes, the API
/// server's port, the operator's metrics port, the simulated router nodes
/// and the control plane's folder.
fn assert_cleaned_up(output: &str) {
    assert!(output.contains("stopped etcd (pid "), "no line naming the stopped processes:\n{output}");
    let mut pids = numbers_after(output, "(pid ");
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "etcd, kube-apiserver and kube-controller-manager expected:\n{output}");
    for pid in &pids {
        assert!(!alive(*pid), "process {pid} outlived the demo:\n{output}");
    }
    let server = numbers_after(output, "API server https://127.0.0.1:");
    let metrics = numbers_after(output, "http://127.0.0.1:");
    assert_eq!(server.len(), 1, "{output}");
    assert!(!metrics.is_empty(), "{output}");
    let mut closed: Vec<SocketAddr> =
        server.iter().chain(&metrics).map(|port| SocketAddr::from(([127, 0, 0, 1], *port as u16))).collect();
    let nodes = node_addresses(output);
    assert!(nodes.len() >= 3, "three simulated router nodes expected:\n{output}");
    closed.extend(nodes);
    for address in closed {
        assert!(
            TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err(),
            "{address} still accepts connections after the demo:\n{output}"
        );
    }
    let kubeconfig = output
        .lines()
        .find_map(|line| line.strip_prefix("kubeconfig (admin): "))
        .unwrap_or_else(|| panic!("no kubeconfig line:\n{output}"));
    assert!(!std::path::Path::new(kubeconfig).exists(), "{kubeconfig} left behind");
}

#[test]
fn until_ready_shows_the_example_set_going_ready_then_stops_everything() {
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut demo = Demo::start(&["--until-ready", "--timeout", "150s"]);
    demo.until("the all-Ready line", deadline, |line| line.starts_with(ALL_READY));
    let status = demo.finish(deadline);
    let output = demo.output();
    assert!(status.success(), "the demo exited with {status}:\n{output}");
    assert!(output.contains("The data plane is simulated"), "{output}");
    assert!(!output.contains("Press Ctrl-C"), "--until-ready is not interactive:\n{output}");
    assert_phases(&output);
    assert_cleaned_up(&output);
}

#[test]
fn the_printed_kill_command_degrades_the_cluster_and_ctrl_c_stops_everything() {
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut demo = Demo::start(&["--timeout", "150s"]);
    demo.until("the all-Ready line", deadline, |line| line.starts_with(ALL_READY));
    let kubeconfig =
        demo.until("the KUBECONFIG to use", deadline, |line| line.contains("export KUBECONFIG="));
    let kubeconfig = kubeconfig.split_once("export KUBECONFIG=").unwrap().1.trim().to_string();
    let kill = demo.until("the kill command", deadline, |line| line.trim().starts_with("kubectl delete pod"));
    demo.until("the Ctrl-C hint", deadline, |line| line.contains("Press Ctrl-C"));
    assert_phases(&demo.output());

    // The command exactly as printed, with the printed KUBECONFIG.
    let ran = Command::new("sh").arg("-c").arg(kill.trim()).env("KUBECONFIG", &kubeconfig).output().unwrap();
    assert!(ran.status.success(), "{}: {}", kill.trim(), String::from_utf8_lossy(&ran.stderr));
    demo.until("the cluster Degraded", deadline, |line| {
        line.contains("] EtlRouterCluster/my-cluster ") && line.contains("Degraded")
    });
    demo.until("the set Ready again", deadline, |line| line.starts_with("all 6 objects are Ready again"));

    // SAFETY: kill(2) on the demo's own pid, which it has not reaped yet.
    assert_eq!(unsafe { libc::kill(demo.child.id() as i32, libc::SIGINT) }, 0);
    let status = demo.finish(Instant::now() + Duration::from_secs(60));
    let output = demo.output();
    assert!(status.success(), "the demo exited with {status} on SIGINT:\n{output}");
    assert!(output.contains("SIGINT: stopping everything the demo started"), "{output}");
    assert_cleaned_up(&output);
}

/// A Kubernetes cache folder without releases, and a stand-in for
/// `build-kubernetes.sh` that runs `body` with that folder in
/// `CONVEYOR_KUBERNETES_DIR`, as the real script would get it.
fn empty_cache_and_build_script(body: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("kubernetes");
    let script = dir.path().join("build.sh");
    std::fs::write(&script, format!("set -euo pipefail\n{body}\n")).unwrap();
    (dir, cache, script)
}

fn without_binaries(command: &mut Command, cache: &std::path::Path, script: &std::path::Path) {
    command
        .env_remove("KUBEBUILDER_ASSETS")
        .env_remove("CONVEYOR_KUBERNETES_VERSION")
        .env("CONVEYOR_KUBERNETES_DIR", cache)
        .env("CONVEYOR_KUBERNETES_BUILD_SCRIPT", script);
}

#[test]
fn missing_binaries_are_built_first_by_the_harness_script() {
    // The stand-in "builds" by linking the binaries the harness already cached.
    let built = conveyor_testbed::control_plane::binaries_dir().expect("the cached control plane");
    let newest = conveyor_testbed::kubernetes::NEWEST;
    // It is asked for the newest tested release, and refuses the variables
    // cargo sets for a build: Kubernetes' Makefile once built into an
    // inherited OUT_DIR.
    let (_dir, cache, script) = empty_cache_and_build_script(&format!(
        "[ \"$1\" = {newest} ] || {{ echo \"asked for $1\"; exit 5; }}\n\
         for name in OUT_DIR CARGO_MANIFEST_DIR TARGET; do\n  \
         [ -z \"${{!name:-}}\" ] || {{ echo \"inherited $name=${{!name}}\"; exit 4; }}\ndone\n\
         echo '[kubernetes] building (stand-in)'\nrelease=\"$CONVEYOR_KUBERNETES_DIR/$1.0\"\nmkdir -p \"$release/bin\"\n\
         for name in etcd kube-apiserver kube-controller-manager; do\n  \
         ln -s {built}/$name \"$release/bin/$name\"\ndone\ntouch \"$release/VERSION\"",
        built = built.display()
    ));
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut demo = Demo::start_with(&["--until-ready", "--timeout", "150s"], |c| {
        without_binaries(c, &cache, &script);
        // As `cargo run` sets them for a package with a build script.
        c.env("OUT_DIR", "/nonexistent/out")
            .env("CARGO_MANIFEST_DIR", "/nonexistent")
            .env("TARGET", "x86_64");
    });
    demo.until("the build announced", deadline, |line| line.starts_with("building it once with"));
    demo.until("the build finished", deadline, |line| line.starts_with("control plane built in"));
    demo.until("the all-Ready line", deadline, |line| line.starts_with(ALL_READY));
    let status = demo.finish(deadline);
    let output = demo.output();
    assert!(status.success(), "the demo exited with {status}:\n{output}");
    assert!(
        output.contains(&format!("Kubernetes {newest} is not built in {}", cache.display())),
        "the missing release named:\n{output}"
    );
    assert!(
        cache.join(format!("{newest}.0/bin/kube-apiserver")).is_file(),
        "the script ran without the cache folder"
    );
    assert_cleaned_up(&output);
}

#[test]
fn a_failing_build_stops_the_demo_naming_its_log() {
    let (_dir, cache, script) = empty_cache_and_build_script("echo 'no package mirror reachable'\nexit 3");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut demo = Demo::start_with(&["--until-ready"], |c| without_binaries(c, &cache, &script));
    let status = demo.finish(deadline);
    let stderr = std::fs::read_to_string(&demo.stderr).unwrap();
    let output = demo.output();
    assert_eq!(status.code(), Some(1), "{output}\n{stderr}");
    let log = stderr
        .split("its log: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the error names no log: {stderr}"));
    let text = std::fs::read_to_string(log).unwrap();
    std::fs::remove_file(log).unwrap();
    assert!(text.contains("no package mirror reachable"), "{text}");
    assert!(!output.contains("control plane up"), "{output}");
}
