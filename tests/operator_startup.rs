//! The real operator binary against a real control plane: it refuses to start
//! without its CRDs (with a hint), and starts and stops cleanly with them,
//! serving /healthz, /readyz and /metrics meanwhile.
//! This also guards the rustls crypto-provider choice, which fails only at run time.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{ControlPlane, install_crds, kubectl_ok, repo_path};

/// `(status code, body)` of a plain HTTP/1.1 GET on loopback.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    support::operator_process::http_get(("127.0.0.1", port), path)
}

/// Polls `check` every 50 ms for up to 30 s.
fn within_30s<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

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
    let port = free_port();
    let mut command = operator(&plane);
    command.env("CONVEYOR_HTTP_ADDRESS", format!("127.0.0.1:{port}"));
    let mut guard = KillOnDrop(command.stderr(Stdio::piped()).spawn().unwrap());
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

    within_30s("/healthz to answer 200", || (http_get(port, "/healthz")?.0 == 200).then_some(()));
    within_30s("/readyz to answer 200", || (http_get(port, "/readyz")?.0 == 200).then_some(()));
    let seed = repo_path("deploy/examples/seed.yaml");
    kubectl_ok(&plane, &["apply", "-n", "default", "-f", seed.to_str().unwrap()]);
    let metrics = within_30s("a counted reconcile", || {
        let (code, body) = http_get(port, "/metrics")?;
        (code == 200 && body.contains(r#"conveyor_reconciles_total{kind="EtlRouterCluster"}"#))
            .then_some(body)
    });
    assert!(metrics.contains("conveyor_build_info{version="), "{metrics}");
    assert!(
        metrics.contains(
            r#"conveyor_transitions_total{kind="EtlRouterCluster",from="Pending",to="Provisioning"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("conveyor_reconcile_duration_seconds_bucket"), "{metrics}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "operator exited with {status} on SIGTERM");
}
