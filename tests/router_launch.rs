//! The launch the operator generates, run for real: the container command,
//! arguments and environment of the StatefulSet the operator created on the
//! control plane, with the downward-API values of one pod substituted and the
//! pod's volumes mounted in a temporary folder (as a kubelet would), run with
//! `conveyor-router-sim` standing in for `conveyor-etl-router` on the `PATH`.
//! The simulator takes exactly the public router's command line and refuses
//! an incomplete configuration, so this is the public router's launch.
//!
//! And a router without RouterAdmin, as the public router is: one member is
//! Ready from its pod and ServiceRegistry, services register, pipelines say
//! the router cannot take them, and the operator asks the router at most once
//! per health interval.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use kube::api::Api;

use conveyor_etl_operator::crd::{ClusterPhase, EtlPipelineStatus, EtlRouterCluster, Phase, ServiceStatus};
use conveyor_etl_operator::router::{Router, RouterClient, ServiceType};
use conveyor_etl_operator::router_cluster::build::router_config;
use support::objects::{self, SERVICE_KINDS, create, name_of};
use support::operator::{router_options, timing};
use support::scenario::{Scenario, condition, seed_cluster};

/// A port free on every address now (the launch listens on 0.0.0.0).
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// Kubernetes' `$(NAME)` expansion of a command or argument: a defined
/// variable is replaced, `$$` becomes `$`, anything else is left as written.
fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(close) = reference.find(')')
        {
            let name = &reference[..close];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &reference[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A router pod played by a local process, killed when dropped.
struct LaunchedPod {
    child: Child,
    stderr: std::path::PathBuf,
    _root: tempfile::TempDir,
    data_dir: std::path::PathBuf,
}

impl Drop for LaunchedPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LaunchedPod {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Runs `container` as pod `pod` with IP `ip` would run it: downward-API
/// values substituted, each volume mounted under a temporary folder (the
/// ConfigMap's keys as files), `$(NAME)` expanded, the simulator on the
/// `PATH` as `conveyor-etl-router`.
fn launch(
    container: &Container,
    config_map: &ConfigMap,
    pod: &str,
    namespace: &str,
    ip: IpAddr,
) -> LaunchedPod {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(conveyor_testbed::binaries::router_sim(), bin.join("conveyor-etl-router"))
        .unwrap();
    let mut mounts: Vec<(String, String)> = Vec::new();
    let mut data_dir = None;
    for mount in container.volume_mounts.as_ref().unwrap() {
        let local = root.path().join("volumes").join(&mount.name);
        std::fs::create_dir_all(&local).unwrap();
        if mount.name == "config" {
            for (key, value) in config_map.data.as_ref().unwrap() {
                std::fs::write(local.join(key), value).unwrap();
            }
        }
        if mount.name == "data" {
            data_dir = Some(local.clone());
        }
        mounts.push((mount.mount_path.clone(), local.display().to_string()));
    }
    // Longest mount path first, so /var/lib/conveyor is not taken for /var.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let remap = |text: &str| remap_paths(text, &mounts);
    let mut env = BTreeMap::new();
    for var in container.env.as_ref().unwrap() {
        let value = match (&var.value, var.value_from.as_ref().and_then(|from| from.field_ref.as_ref())) {
            (Some(value), _) => remap(value),
            (None, Some(field)) => match field.field_path.as_str() {
                "metadata.name" => pod.to_owned(),
                "metadata.namespace" => namespace.to_owned(),
                "status.podIP" => ip.to_string(),
                other => panic!("the launch reads a downward-API field the test does not know: {other}"),
            },
            _ => panic!("env {} has no value", var.name),
        };
        env.insert(var.name.clone(), value);
    }
    let argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|part| remap(&expand(part, &env)))
        .collect();
    let stderr = root.path().join("stderr");
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(&env)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    LaunchedPod { child, stderr, data_dir: data_dir.expect("a data volume"), _root: root }
}

/// `text` with every path under a mount path moved to its local folder, in
/// one pass (a local folder may itself lie under a mount path such as /tmp).
fn remap_paths(text: &str, mounts: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while at < text.len() {
        let starts_path = at == 0 || text[..at].ends_with([' ', '=', ':', '"', '\'']);
        let mount = mounts.iter().find(|(path, _)| {
            text[at..].starts_with(path.as_str())
                && text[at + path.len()..]
                    .chars()
                    .next()
                    .is_none_or(|next| next == '/' || next == ' ' || next == '"')
        });
        match mount {
            Some((path, local)) if starts_path => {
                out.push_str(local);
                at += path.len();
            }
            _ => {
                let next = text[at..].chars().next().unwrap();
                out.push(next);
                at += next.len_utf8();
            }
        }
    }
    out
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// `name=value` of every `conveyor_router_sim_setting` line.
fn settings_served(metrics: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("conveyor_router_sim_setting{name=\""))
        .filter_map(|line| line.split_once("\"} "))
        .map(|(name, value)| (name.to_owned(), value.parse().unwrap()))
        .collect()
}

/// Every numeric or boolean field of `router.yaml`, flattened as `section.field`.
fn settings_written(yaml: &str) -> BTreeMap<String, f64> {
    let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
    let mut out = BTreeMap::new();
    for (section, fields) in value.as_object().unwrap() {
        for (field, value) in fields.as_object().unwrap() {
            let number = value.as_f64().or_else(|| value.as_bool().map(|on| f64::from(u8::from(on))));
            if let Some(number) = number {
                out.insert(format!("{section}.{field}"), number);
            }
        }
    }
    out
}

async fn created<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("{name} created by the operator");
    support::eventually(Duration::from_secs(60), &what, || async { api.get_opt(name).await.ok().flatten() })
        .await
}

fn cluster_on_free_ports(name: &str, replicas: i32) -> EtlRouterCluster {
    let mut cluster = seed_cluster(name);
    cluster.spec.replicas = replicas;
    cluster.spec.storage = None;
    cluster.spec.ports.grpc = i32::from(free_port());
    cluster.spec.ports.raft = i32::from(free_port());
    cluster.spec.ports.metrics = i32::from(free_port());
    cluster
}

#[tokio::test]
async fn the_generated_launch_starts_the_router_which_reads_every_setting_and_serves() {
    let s = Scenario::new("launch").await;
    // The seed's three members, and a one-member cluster; ports free on this machine.
    let clusters = [cluster_on_free_ports("my-cluster", 3), cluster_on_free_ports("solo", 1)];
    for cluster in &clusters {
        s.create(cluster).await;
    }
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.namespace);
    let client = RouterClient::new(router_options());
    for (index, (cluster, pod, node_id)) in
        [(&clusters[0], "my-cluster-2", 3u64), (&clusters[1], "solo-0", 1)].into_iter().enumerate()
    {
        let name = cluster.metadata.name.clone().unwrap();
        let set = created(&sets, &name).await;
        let config_map = created(&maps, &format!("{name}-config")).await;
        let template = set.spec.unwrap().template.spec.unwrap();
        // Addresses in the scenario kubelet's claimed subnet, far above its pods' ordinals.
        let ip = IpAddr::V4(s.kubelet.ip(200 + index as u32));
        let launched = launch(&template.containers[0], &config_map, pod, &s.namespace, ip);
        let ports = &cluster.spec.ports;
        let grpc = SocketAddr::new(ip, ports.grpc as u16).to_string();

        // It starts and serves: RouterAdmin and ServiceRegistry on the gRPC port.
        let started = Instant::now();
        let status = loop {
            if let Ok(status) = client.member_status(&grpc).await {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{pod} did not serve:\n{}", launched.log());
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        };
        assert_eq!(status.node_id, node_id, "--node-id is the ordinal + 1");
        // It logs what it read once it serves, so the line may trail the first answer.
        let log = support::eventually(Duration::from_secs(30), "the line saying it serves", || {
            let log = launched.log();
            std::future::ready(log.contains("router simulator node serving").then_some(log))
        })
        .await;
        if cluster.spec.replicas == 1 {
            assert_eq!(status.leader_id, 1, "a node without other peers bootstraps and leads");
            client
                .list_services(std::slice::from_ref(&grpc), ServiceType::Unspecified)
                .await
                .expect("ServiceRegistry");
        } else {
            assert_eq!(status.leader_id, 0, "a node given other peers waits to be added");
            for peer in 1..=3 {
                let expected = format!(
                    "({peer}, \\\"{name}-{}.{name}-raft.{}.svc:{}\\\")",
                    peer - 1,
                    s.namespace,
                    ports.raft
                );
                assert!(peer == node_id || log.contains(&expected), "peer {expected} not in\n{log}");
            }
        }
        // The Raft port is the pod IP's, and listened on.
        TcpStream::connect_timeout(&SocketAddr::new(ip, ports.raft as u16), Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("--raft-addr {ip}:{}: {e}\n{}", ports.raft, launched.log()));
        // Every setting of router.yaml read as written, spec.raft applied.
        let metrics = SocketAddr::new(ip, ports.metrics as u16);
        let body = http_get(metrics, "/metrics").unwrap_or_else(|| panic!("no /metrics on {metrics}"));
        let written = settings_written(&config_map.data.as_ref().unwrap()["router.yaml"]);
        // Every field but metrics.listen_addr, which is read by being where the metrics are served.
        assert_eq!(written.len(), 14, "{written:?}");
        assert_eq!(settings_served(&body), written);
        assert_eq!(written["cluster.election_timeout_min_ms"], 300.0);
        assert_eq!(written["cluster.election_timeout_max_ms"], 600.0);
        assert_eq!(written["cluster.heartbeat_interval_ms"], 100.0);
        assert!(body.contains(&format!("conveyor_router_sim_node_id {node_id}")), "{body}");
        // The Raft log lives on the data volume.
        assert!(launched.data_dir.join(format!("raft-log-{node_id}")).exists(), "{log}");
    }
}

#[tokio::test]
async fn the_simulator_refuses_what_the_router_would_silently_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &str, extra: &[&str]| {
        let path = dir.path().join("router.yaml");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(conveyor_testbed::binaries::router_sim());
        command.arg("--config").arg(&path).args(extra).arg("--data-dir").arg(dir.path().join("data"));
        command.env("RUST_BACKTRACE", "0").output().unwrap()
    };
    // Yesterday's raft.yaml: wrong names throughout.
    let old = "electionTimeoutMs: 300\nheartbeatIntervalMs: 100\ngrpcPort: 50051\nraftPort: 50052\n";
    let out = run(old, &["--node-id", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown field `electionTimeoutMs`"), "{stderr}");
    // No --node-id: refused as the router refuses it.
    let out = run(old, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-id"));
    // A file missing one field: the operator's own file, less one line.
    let complete = router_config(&seed_cluster("x")).to_yaml();
    let incomplete = complete.replace("  keepalive_timeout_secs: 10\n", "");
    assert_ne!(incomplete, complete);
    let out = run(&incomplete, &["--node-id", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("missing field `keepalive_timeout_secs`"), "{stderr}");
    // A DNS name as --raft-addr.
    let out = run(&complete, &["--node-id", "1", "--raft-addr", "my-cluster-0.my-cluster-raft.ns.svc:50052"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--raft-addr") && stderr.contains("no DNS names"), "{stderr}");
}

#[tokio::test]
async fn without_router_admin_one_member_is_ready_services_register_and_pipelines_are_refused() {
    let s = Scenario::new("no-admin").await;
    s.kubelet.sim.set_router_admin_unimplemented(true);
    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.replicas = 1;
    s.create(&cluster).await;
    let ready = s.wait_phase(ClusterPhase::Ready).await;
    let (status, reason, message) = condition(&ready, "RouterAdmin");
    assert_eq!((status, reason), ("False", "RouterAdminUnimplemented"));
    assert!(message.contains("health comes from pod readiness and a ServiceRegistry check"), "{message}");
    assert_eq!(condition(&ready, "Ready").0, "True");
    let health = ready.status.as_ref().unwrap();
    assert_eq!((health.leader.as_deref(), health.term), (None, None), "nothing the router did not say");

    for service in objects::examples(&SERVICE_KINDS) {
        create(&s, &service).await;
    }
    let source = objects::examples(&["EtlSource"]).remove(0);
    objects::wait_status::<ServiceStatus>(&s, "EtlSource", &name_of(&source), "Ready", |st| {
        st.phase == Some(Phase::Ready) && st.registration_id.is_some()
    })
    .await;
    assert!(
        s.kubelet.sim.services().iter().any(|service| {
            service.identity.as_ref().is_some_and(|identity| identity.name.contains(&name_of(&source)))
        }),
        "registered through ServiceRegistry: {:?}",
        s.kubelet.sim.services()
    );

    let pipeline = objects::examples(&["EtlPipeline"]).remove(0);
    create(&s, &pipeline).await;
    let refused =
        objects::wait_status::<EtlPipelineStatus>(&s, "EtlPipeline", &name_of(&pipeline), "refused", |st| {
            st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "RouterAdminUnimplemented")
        })
        .await;
    let message = &refused.conditions.iter().find(|c| c.type_ == "Ready").unwrap().message;
    assert!(message.contains("cannot run pipelines"), "{message}");

    // Settled: over five health intervals, at most one router call per interval
    // for the cluster, its four services and its pipeline together, and
    // GetClusterStatus never again.
    for service in objects::examples(&SERVICE_KINDS) {
        let (kind, name) = (objects::kind_of(&service), name_of(&service));
        objects::wait_status::<ServiceStatus>(&s, &kind, &name, "Ready", |st| st.phase == Some(Phase::Ready))
            .await;
    }
    let interval = timing().health_interval;
    let (calls, status_calls) = (s.kubelet.sim.total_calls(), s.kubelet.sim.call_count("GetClusterStatus"));
    tokio::time::sleep(interval * 5).await; // the window the call rate is measured over
    let made = s.kubelet.sim.total_calls() - calls;
    assert!(made <= 6, "{made} router calls in 5 health intervals");
    assert_eq!(s.kubelet.sim.call_count("GetClusterStatus"), status_calls);
    assert_eq!(s.get().await.status.unwrap().phase, Some(ClusterPhase::Ready));
}

#[tokio::test]
async fn without_router_admin_several_members_say_they_cannot_join() {
    let s = Scenario::new("no-admin-3").await;
    s.kubelet.sim.set_router_admin_unimplemented(true);
    s.create(&seed_cluster("my-cluster")).await;
    let stuck = s
        .wait_for("MembersCannotJoin", |c| {
            c.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.reason == "MembersCannotJoin"))
        })
        .await;
    assert_eq!(stuck.status.as_ref().unwrap().phase, Some(ClusterPhase::RaftForming));
    let (ready, _, message) = condition(&stuck, "Ready");
    assert_eq!(ready, "False");
    assert!(
        message.contains("3 members cannot form one cluster") && message.contains("spec.replicas to 1"),
        "{message}"
    );
    assert_eq!(condition(&stuck, "Progressing").0, "False", "nothing will change by itself");
    assert_eq!(condition(&stuck, "RouterAdmin").1, "RouterAdminUnimplemented");
    s.wait_event("a MembersCannotJoin Warning", |type_, reason, _| {
        type_ == "Warning" && reason == "MembersCannotJoin"
    })
    .await;
}
