//! The control-plane harness itself: it starts, runs side by side with
//! another instance, and stops without leaving processes or ports behind.

mod support;

use std::net::TcpListener;
use std::path::Path;

use support::{ControlPlane, kubectl_ok};

fn alive(pid: u32) -> bool {
    // A reaped child's /proc entry is gone; a zombie would show state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

fn start_two_and_stop() {
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(ControlPlane::start);
        let second = scope.spawn(ControlPlane::start);
        (first.join().expect("first starts"), second.join().expect("second starts"))
    });
    for port in &first.ports {
        assert!(!second.ports.contains(port), "instances share port {port}");
    }
    for plane in [&first, &second] {
        let version = kubectl_ok(plane, &["version", "-o", "json"]);
        let release = format!("\"gitVersion\": \"v{}.", conveyor_testbed::kubernetes::requested());
        assert!(version.contains(&release), "not the release asked for ({release}): {version}");
        let accounts = kubectl_ok(plane, &["get", "serviceaccount", "default", "-o", "name"]);
        assert_eq!(accounts.trim(), "serviceaccount/default");
    }
    let pids: Vec<u32> = first.pids().into_iter().chain(second.pids()).collect();
    let ports: Vec<u16> = first.ports.iter().chain(&second.ports).copied().collect();
    let dirs = [first.dir().to_path_buf(), second.dir().to_path_buf()];
    assert_eq!(pids.len(), 6);
    assert!(pids.iter().all(|pid| alive(*pid)));

    drop(first);
    drop(second);

    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived its control plane");
    }
    for port in ports {
        TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("port {port} still taken: {e}"));
    }
    for dir in dirs {
        assert!(!Path::new(&dir).exists(), "{} not removed", dir.display());
    }
}

#[test]
fn starts_and_stops_cleanly_twice() {
    start_two_and_stop();
    start_two_and_stop();
}

#[test]
fn restricted_user_is_refused_without_rbac() {
    let plane = ControlPlane::shared();
    let operator = plane.dir().join("operator.kubeconfig");
    std::fs::write(&operator, plane.kubeconfig_yaml(support::control_plane::OPERATOR_USER)).unwrap();
    let output = std::process::Command::new("kubectl")
        .args(["--kubeconfig", operator.to_str().unwrap(), "get", "pods", "-n", "default"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("forbidden") && stderr.contains("\"operator\""), "{stderr}");
}
