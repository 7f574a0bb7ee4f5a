//! What runs the pods: containerd (with runc and the CNI bridge plugin), its
//! `ctr` client, kube-scheduler and the kubelet, and stopping the containers
//! and shims they leave.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::dns::CLUSTER_DOMAIN;
use super::sweep::pids_whose_cmdline_contains;
use super::{BRIDGE, HOST_IP, NODE_NAME, PAUSE_IMAGE, POD_CIDR, RealNode, STOP_DEADLINE, cache_dir, run};
use crate::control_plane::NODE_USER;

const CNI_NETWORK: &str = "conveyor-node";

impl RealNode {
    pub(super) fn start_containerd(&mut self) -> Result<(), String> {
        let dir = self.dir.clone();
        let path = |name: &str| dir.join(name).display().to_string();
        for folder in ["cni/net.d", "cni/ipam", "containerd/root", "containerd/state"] {
            fs::create_dir_all(self.dir.join(folder)).map_err(|e| e.to_string())?;
        }
        let cni = format!(
            r#"{{
  "cniVersion": "0.4.0",
  "name": "{CNI_NETWORK}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{BRIDGE}",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{ipam}",
        "ranges": [[{{ "subnet": "{POD_CIDR}", "rangeStart": "198.18.42.10", "gateway": "{HOST_IP}" }}]]
      }}
    }},
    {{ "type": "loopback" }}
  ]
}}
"#,
            ipam = path("cni/ipam"),
        );
        fs::write(self.dir.join("cni/net.d/10-conveyor.conflist"), cni).map_err(|e| e.to_string())?;
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
# Plugins that write outside root and state, or probe for what is not here.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: without it runc fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
    max_conf_num = 1
"#,
            root = path("containerd/root"),
            state = path("containerd/state"),
            socket = self.socket(),
            cni = path("cni/net.d"),
        );
        fs::write(self.dir.join("containerd.toml"), config).map_err(|e| e.to_string())?;
        self.spawn(
            "containerd",
            Path::new("/usr/bin/containerd"),
            &["--config".into(), path("containerd.toml"), "--log-level".into(), "warn".into()],
        )?;
        let socket = self.socket();
        self.wait_until("containerd to answer", || {
            let socket = socket.clone();
            async move { run("ctr", &["--address", &socket, "version"]).map(|_| ()) }
        })?;
        self.import_image(&cache_dir().join("images/pause.tar"))
    }

    /// containerd's socket, for `ctr --address`.
    pub fn socket(&self) -> String {
        self.dir.join("containerd.sock").display().to_string()
    }

    /// Imports a docker-archive tarball into the namespace the kubelet's pods use.
    pub fn import_image(&self, tarball: &Path) -> Result<(), String> {
        let tarball = tarball.display().to_string();
        self.ctr(&["images", "import", &tarball]).map(|_| ())
    }

    /// `ctr --address <socket> -n k8s.io <args>`; its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let socket = self.socket();
        let mut all = vec!["--address", socket.as_str(), "-n", "k8s.io"];
        all.extend_from_slice(args);
        run("ctr", &all)
    }

    pub(super) fn start_scheduler(&mut self) -> Result<(), String> {
        let kubeconfig = self.dir.join("scheduler.kubeconfig");
        self.spawn(
            "kube-scheduler",
            &crate::kubernetes::bin_dir()?.join("kube-scheduler"),
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=0".into(),
            ],
        )
    }

    pub(super) fn start_kubelet(&mut self) -> Result<(), String> {
        let dir = self.dir.clone();
        let path = |name: &str| dir.join(name).display().to_string();
        fs::write(self.dir.join("kubelet.yaml"), self.kubelet_config()).map_err(|e| e.to_string())?;
        let args = vec![
            format!("--config={}", path("kubelet.yaml")),
            format!("--kubeconfig={}", path("kubelet.kubeconfig")),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={HOST_IP}"),
            format!("--root-dir={}", path("kubelet")),
            format!("--cert-dir={}", path("kubelet/pki")),
            "--v=1".into(),
        ];
        self.spawn("kubelet", &crate::kubernetes::bin_dir()?.join("kubelet"), &args)
    }

    /// The kubelet's configuration file: flags for these settings are
    /// deprecated or gone in current releases.
    fn kubelet_config(&self) -> String {
        let socket = format!("unix://{}", self.socket());
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "{HOST_IP}"
port: {port}
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
readOnlyPort: 0
# As the kubelet's flags defaulted: the API server (logs, exec) is trusted.
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization:
  mode: AlwaysAllow
volumePluginDir: "{plugins}"
containerRuntimeEndpoint: "{socket}"
imageServiceEndpoint: "{socket}"
runtimeRequestTimeout: 2m
cgroupDriver: cgroupfs
# Machines of this kind run cgroup v1, which releases from 1.35 refuse unless told.
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
# No eviction: the test machine's disk and memory are shared with other work.
evictionHard: {{}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
clusterDNS: ["{HOST_IP}"]
clusterDomain: "{CLUSTER_DOMAIN}"
resolvConf: "{resolv}"
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
"#,
            port = free_port(),
            healthz = free_port(),
            plugins = self.dir.join("kubelet/volume-plugins").display(),
            resolv = self.dir.join("resolv.conf").display(),
        )
    }

    /// Kills and deletes every container task through containerd, then the containers.
    pub(super) fn stop_containers(&self) {
        let tasks = self.ctr(&["tasks", "ls", "-q"]).unwrap_or_default();
        for task in tasks.lines().filter(|line| !line.trim().is_empty()) {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", task]);
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        for task in tasks.lines().filter(|line| !line.trim().is_empty()) {
            while self.ctr(&["tasks", "delete", task]).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100)); // poll interval
            }
        }
        let containers = self.ctr(&["containers", "ls", "-q"]).unwrap_or_default();
        for container in containers.lines().filter(|line| !line.trim().is_empty()) {
            let _ = self.ctr(&["containers", "delete", container]);
        }
    }

    /// containerd's shims outlive it on purpose; these are ours (their
    /// command line names our socket).
    pub(super) fn kill_shims(&self) {
        for pid in pids_whose_cmdline_contains(&self.socket()) {
            // SAFETY: plain kill of a process found just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The kubelet's user gets the bootstrap `system:node` role (this API
/// server authorizes with RBAC only, no Node authorizer).
pub(super) async fn bind_node_role(admin: &Client) -> Result<(), String> {
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some("conveyor-node-kubelet".into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "system:node".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: NODE_USER.into(),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot bind system:node to the kubelet: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind((HOST_IP, 0))
        .or_else(|_| TcpListener::bind("127.0.0.1:0"))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
