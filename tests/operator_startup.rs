//! The real operator binary against a real control plane: it refuses to start
//! without its CRDs (with a hint), and starts and stops cleanly with them.
//! This also guards the rustls crypto-provider choice, which fails only at run time.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{ControlPlane, install_crds};

fn operator(plane: &ControlPlane) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_conveyor-etl-operator"));
    command
        .env("KUBECONFIG", &plane.kubeconfig)
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    command
}

/// Kills the operator if the test fails before it stopped it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn refuses_to_start_without_crds_then_starts_and_stops_with_them() {
    let plane = ControlPlane::start();

    let output = operator(&plane).arg("run").output().unwrap();
    assert!(!output.status.success(), "started without CRDs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("etlrouterclusters.conveyor.etl"), "{stderr}");
    assert!(stderr.contains("kubectl apply -f deploy/crds/crds.yaml"), "no install hint: {stderr}");

    install_crds(&plane);
    let mut guard = KillOnDrop(operator(&plane).stderr(Stdio::piped()).spawn().unwrap());
    let child = &mut guard.0;
    let (lines, received) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match received.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("operator started") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("operator did not start: {}", seen.join("\n")),
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "operator exited after starting");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "operator exited with {status} on SIGTERM");
}
