//! `cargo demo --real-node` on a real node (see `src/node/`), and
//! `--clean-node` sweeping what a killed run left. Needs root,
//! `tests/harness/build-node.sh` and `tests/harness/build-images.sh` (as
//! `tests/run.sh` runs them); fails, naming what is missing, without them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use conveyor_testbed::images::packed as packed_image;
use conveyor_testbed::node;

/// Long enough for a cold start on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// A demo process, killed if the test fails before it does (it would keep
/// its node running and block every later one).
struct DemoProcess(std::process::Child);

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a running demo's stdout, until one satisfies `wanted`.
fn read_until(lines: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>, wanted: &str) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(line.clone());
        if line.starts_with(wanted) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_on_the_real_node_and_clean_node_sweeps_what_a_killed_run_left() {
    if let Some(why) = node::unavailable() {
        panic!("no real node on this machine: {why}");
    }
    packed_image("router");
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut demo = DemoProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_conveyor-demo"))
            .arg("--real-node")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut seen = Vec::new();
    let ready = tokio::task::block_in_place(|| read_until(&lines, &mut seen, "all 6 objects are Ready"));
    let output = seen.join("\n");
    let errors = std::fs::read_to_string(stderr.path()).unwrap_or_default();
    assert!(ready, "the demo's example set never went Ready on the node:\n{output}\n{errors}");
    assert!(output.contains("mode: real node"), "{output}");
    assert!(output.contains("(router container)"), "the pods are real containers:\n{output}");
    let cluster_phases: Vec<&str> =
        output.lines().filter(|l| l.contains("] EtlRouterCluster/my-cluster ")).collect();
    // RaftForming is skipped when the routers elect before the reconciler
    // sees their pods ready (states.md: Provisioning → Ready on Healthy).
    for phase in ["Provisioning", "Ready"] {
        assert!(
            cluster_phases.iter().any(|l| l.contains(phase)),
            "the cluster never showed {phase}:\n{output}"
        );
    }

    // Killed with no chance to stop anything: the node's bridge, containers and folder stay.
    demo.0.kill().unwrap();
    demo.0.wait().unwrap();
    let pid = demo.0.id();
    let dir = std::env::temp_dir().join(format!("conveyor-node-{pid}"));
    let bridge = PathBuf::from("/sys/class/net").join(node::BRIDGE);
    assert!(bridge.exists() && dir.exists(), "a killed demo leaves its node behind");

    let clean =
        std::process::Command::new(env!("CARGO_BIN_EXE_conveyor-demo")).arg("--clean-node").output().unwrap();
    let said = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{said}{}", String::from_utf8_lossy(&clean.stderr));
    assert!(said.contains(&format!("swept the node of dead process {pid}")), "{said}");
    assert!(said.contains("left []"), "{said}");
    assert!(!bridge.exists() && !dir.exists(), "{said}");
    let kubepods = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|line| line.contains(" cgroup"))
        .filter_map(|line| line.split(' ').nth(1).map(|root| PathBuf::from(root).join("kubepods")))
        .filter(|cgroup| cgroup.exists())
        .collect::<Vec<_>>();
    assert!(kubepods.is_empty(), "{kubepods:?}");
    let again =
        std::process::Command::new(env!("CARGO_BIN_EXE_conveyor-demo")).arg("--clean-node").output().unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("no node left behind"),
        "a second sweep finds nothing"
    );
}
