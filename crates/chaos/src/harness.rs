//! One scenario's world: its own namespace, a fake kubelet playing the
//! router pods of one cluster on the simulator, and the operator binary as a
//! child process that the scenario may kill and start again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};

use conveyor_testbed::control_plane::{ControlPlane, OPERATOR_USER};
use conveyor_testbed::kubelet::FakeKubelet;
use conveyor_testbed::operator_process::OperatorProcess;
use conveyor_testbed::workload;

pub const CLUSTER: &str = "chaos-cluster";

pub struct World {
    pub admin: Client,
    pub namespace: String,
    pub kubelet: FakeKubelet,
    pub operator: Option<OperatorProcess>,
    kubeconfig: PathBuf,
    pub log: PathBuf,
    env: Vec<(&'static str, String)>,
    /// Operator processes started so far (the first one included).
    pub starts: u32,
}

impl World {
    /// A fresh namespace with the router cluster applied and Ready, and the
    /// operator running with `env` on top of its defaults.
    pub async fn start(
        plane: &ControlPlane,
        namespace: &str,
        mut env: Vec<(&'static str, String)>,
    ) -> anyhow::Result<World> {
        // The operator logs warnings; CONVEYOR_CHAOS_RUST_LOG asks for more.
        if let Ok(filter) = std::env::var("CONVEYOR_CHAOS_RUST_LOG") {
            env.push(("RUST_LOG", filter));
        }
        let admin = plane.client().await;
        let object = serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?;
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating namespace {namespace}"))?;
        let kubelet = FakeKubelet::start(admin.clone(), namespace, CLUSTER, 50051).await;
        let kubeconfig = plane.dir().join("operator.kubeconfig");
        std::fs::write(&kubeconfig, plane.kubeconfig_yaml(OPERATOR_USER))?;
        let log = plane.dir().join(format!("operator-{namespace}.log"));
        let mut world = World {
            admin,
            namespace: namespace.to_owned(),
            kubelet,
            operator: None,
            kubeconfig,
            log,
            env,
            starts: 0,
        };
        world.start_operator().await?;
        let mut cluster = workload::cluster();
        cluster["metadata"]["name"] = CLUSTER.into();
        workload::apply_all(&world.admin, namespace, vec![cluster]).await?;
        world.wait_phase("EtlRouterCluster", CLUSTER, &["Ready"], Duration::from_secs(120)).await?;
        Ok(world)
    }

    pub async fn start_operator(&mut self) -> anyhow::Result<()> {
        let operator =
            OperatorProcess::start_with(&self.kubeconfig, &self.namespace, &self.log, &self.env).await?;
        self.operator = Some(operator);
        self.starts += 1;
        Ok(())
    }

    /// SIGKILL: the operator gets no chance to finish anything.
    pub fn kill_operator(&mut self) {
        // Dropping the process handle kills it with SIGKILL and reaps it.
        self.operator.take();
    }

    pub fn operator(&self) -> anyhow::Result<&OperatorProcess> {
        self.operator.as_ref().context("the operator is not running")
    }

    /// The operator's log (every process of this world, appended).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `kind` `name` shows one of `phases`.
    pub async fn wait_phase(
        &self,
        kind: &str,
        name: &str,
        phases: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let api = workload::api(&self.admin, &self.namespace, kind);
        let deadline = Instant::now() + timeout;
        loop {
            let phase = match api.get_opt(name).await {
                Ok(Some(object)) => object.data["status"]["phase"].as_str().unwrap_or("").to_owned(),
                Ok(None) => "(absent)".to_owned(),
                Err(error) => format!("({error})"),
            };
            if phases.contains(&phase.as_str()) {
                return Ok(phase);
            }
            if Instant::now() > deadline {
                bail!("{kind} {name} shows {phase:?}, not one of {phases:?}, after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
        }
    }

    /// Stops everything, keeping the operator's log in the system's
    /// temporary folder (the control plane's folder goes with it).
    pub async fn stop(mut self) {
        self.kill_operator();
        let kept = std::env::temp_dir().join("conveyor-chaos").join(format!("{}.log", self.namespace));
        if std::fs::create_dir_all(kept.parent().expect("has a parent")).is_ok()
            && std::fs::copy(&self.log, &kept).is_ok()
        {
            crate::say(&format!("the operator's log: {}", kept.display()));
        }
        self.kubelet.stop().await;
    }
}

/// A sample of a Prometheus text `metric` whose labels include `label`, summed.
pub fn metric(text: &str, metric: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with(['{', ' ']))
        .filter(|line| label.is_empty() || line.contains(label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}
