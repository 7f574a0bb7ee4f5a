//! A real node beside the test control plane: containerd (with runc and the
//! CNI bridge plugin from Debian), kubelet and kube-scheduler (built by
//! `tests/harness/build-node.sh` from the same Debian source tree as the
//! control plane) and cluster DNS (dnsmasq answering `cluster.local` from a
//! hosts file rendered from Services and Endpoints).
//!
//! It needs root and takes machine-wide resources (a bridge, the `kubepods`
//! cgroups, a few sysctls the kubelet sets), so one runs per machine at a
//! time: [`RealNode::start`] refuses to start when any of them is taken.
//! [`RealNode::stop`] (also on drop) stops every process it started by pid,
//! kills what runs in its containers, unmounts what was mounted, removes the
//! bridge, the cgroups and its directories and restores the sysctls;
//! [`RealNode::leftovers`] says what, if anything, is still there.
//!
//! Network rule: no packet from a pod may leave the machine. Pods get an
//! address in 198.18.42.0/24 (the benchmarking range, never routed) on a
//! bridge that holds `.1`, and no default route (the bridge plugin runs
//! with `isGateway: false` and no masquerade, so it turns nothing on):
//! they reach the host's `.1` (API server, DNS) and each other, nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Node, PersistentVolume, Service};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::control_plane::{self, ControlPlane, NODE_USER, SCHEDULER_USER, Waited};

/// The node's name (the kubelet's user is `system:node:<name>`).
pub const NODE_NAME: &str = "conveyor-node";
/// The bridge the pods hang on.
pub const BRIDGE: &str = "conveyor0";
/// The bridge's address: the host as the pods see it (API server, DNS, kubelet).
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 42, 1);
/// The pods' range (inside 198.18.0.0/15, reserved for benchmarking).
pub const POD_CIDR: &str = "198.18.42.0/24";
/// The sandbox image, imported from the tarball build-node.sh packs.
pub const PAUSE_IMAGE: &str = "conveyor.local/pause:3.2";
const CLUSTER_DOMAIN: &str = "cluster.local";
const CNI_NETWORK: &str = "conveyor-node";
/// Settings the kubelet or the CNI bridge plugin may change; recorded before
/// anything starts and restored at the end.
const SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv6/conf/all/forwarding",
];
/// Machine-wide folders the kubelet, containerd and the CNI plugins write
/// into whatever their flags say (pod logs, network namespaces, shim
/// sockets, CNI results), or that they would create with other flags; their
/// new entries (or they themselves, when they did not exist) are removed at
/// the end.
const SHARED_DIRS: [&str; 13] = [
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/etc/kubernetes",
    "/var/run/kubernetes",
    "/usr/libexec/kubernetes",
];
/// The node's directory in the temp dir is this and its process's pid.
const DIR_PREFIX: &str = "conveyor-node-";
/// The [`Before`] record in the node's directory.
const BEFORE_FILE: &str = "before.json";
/// The control plane's folder, named in the node's directory.
const PLANE_FILE: &str = "control-plane-dir";
const START_DEADLINE: Duration = Duration::from_secs(120);
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// Where the node's binaries and images are: `CONVEYOR_NODE_DIR` or
/// `~/.cache/conveyor-etl-operator/node`, as build-node.sh fills it.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CONVEYOR_NODE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("conveyor-etl-operator/node")
    })
}

/// Why a real node cannot run here, or `None` when it can: the binaries and
/// packages build-node.sh provides, and root.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("a real node needs root".into());
    }
    let bin = cache_dir().join("bin");
    let needed = [
        bin.join("kubelet"),
        bin.join("kube-scheduler"),
        cache_dir().join("images/pause.tar"),
        PathBuf::from("/usr/bin/containerd"),
        PathBuf::from("/usr/bin/containerd-shim-runc-v2"),
        PathBuf::from("/usr/bin/ctr"),
        PathBuf::from("/usr/sbin/runc"),
        PathBuf::from("/usr/lib/cni/bridge"),
        PathBuf::from("/usr/lib/cni/host-local"),
        PathBuf::from("/usr/lib/cni/loopback"),
        PathBuf::from("/usr/sbin/dnsmasq"),
        PathBuf::from("/bin/busybox"),
    ];
    let missing: Vec<String> =
        needed.iter().filter(|path| !path.exists()).map(|path| path.display().to_string()).collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!("missing {} (run tests/harness/build-node.sh)", missing.join(", ")))
    }
}

/// The state of the machine before the node started, to restore and compare.
/// Kept in the node's directory too, for [`sweep_abandoned`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Before {
    sysctls: BTreeMap<String, String>,
    /// Entries of [`SHARED_DIRS`] (None: the folder did not exist).
    shared: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl Before {
    fn record() -> Before {
        let sysctls = SYSCTLS
            .iter()
            .filter_map(|name| read_sysctl(name).map(|value| (name.to_string(), value)))
            .collect();
        let shared = SHARED_DIRS.iter().map(|dir| (dir.to_string(), entries(Path::new(dir)))).collect();
        Before { sysctls, shared }
    }
}

fn read_sysctl(name: &str) -> Option<String> {
    fs::read_to_string(Path::new("/proc/sys").join(name)).ok().map(|value| value.trim().to_string())
}

fn entries(dir: &Path) -> Option<BTreeSet<String>> {
    let read = fs::read_dir(dir).ok()?;
    Some(
        read.filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect(),
    )
}

/// The cgroup v1 hierarchies (and the v2 one) mounted here.
fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.len() > 2 && (fields[2] == "cgroup" || fields[2] == "cgroup2"))
                .then(|| PathBuf::from(fields[1]))
        })
        .collect()
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    found.dedup();
    found
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn free_port() -> u16 {
    TcpListener::bind((HOST_IP, 0))
        .or_else(|_| TcpListener::bind("127.0.0.1:0"))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Stops what is left of every node whose process died without stopping it
/// (a SIGKILL, an abort): its directory (`conveyor-node-<pid>` in the temp
/// dir) outlives its pid. Its own processes died with it
/// (`PR_SET_PDEATHSIG`); the sweep kills the containers and shims left,
/// unmounts, removes the bridge, cgroups and new shared entries and restores
/// the sysctls from the record the node kept, as [`RealNode::stop`] does.
/// Returns a line per node swept. [`RealNode::start`] sweeps first, so a
/// killed run never blocks the next; `cargo demo
/// --clean-node` runs it alone.
pub fn sweep_abandoned() -> Vec<String> {
    let mut swept = Vec::new();
    for entry in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(DIR_PREFIX).and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        let dir = entry.path();
        let record = fs::read_to_string(dir.join(BEFORE_FILE)).ok();
        let Some(before) = record.and_then(|text| serde_json::from_str::<Before>(&text).ok()) else {
            // Without the record, what is new in the shared folders is unknown: touch nothing there.
            swept.push(format!("{} has no readable {BEFORE_FILE}; left as it is", dir.display()));
            continue;
        };
        if let Ok(plane_dir) = fs::read_to_string(dir.join(PLANE_FILE)) {
            let plane_dir = PathBuf::from(plane_dir.trim());
            if plane_dir.file_name().is_some_and(|name| name.to_string_lossy().starts_with("conveyor-cp-")) {
                let _ = fs::remove_dir_all(plane_dir);
            }
        }
        // What outlived it: dnsmasq (its credential change clears the death
        // signal), and anything else whose command line names the node's folder.
        for pid in pids_whose_cmdline_contains(&dir.display().to_string()) {
            // SAFETY: plain kill of a process found just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut node = RealNode::unstarted(dir, before);
        node.stop();
        let left = node.leftovers(&[]);
        swept.push(format!(
            "swept the node of dead process {pid}: sysctls restored {:?}; left {:?}",
            node.restored, left
        ));
    }
    swept
}

/// A real node and the control plane it belongs to.
pub struct RealNode {
    /// The control plane, started for the node (API server on [`HOST_IP`]).
    pub plane: Option<ControlPlane>,
    dir: PathBuf,
    before: Before,
    processes: Vec<(&'static str, Child)>,
    dns_stop: Arc<AtomicBool>,
    dns_thread: Option<std::thread::JoinHandle<()>>,
    stopped: bool,
    restored: Vec<String>,
}

impl RealNode {
    /// A node that has started nothing yet, in `dir`, on a machine as `before` records it.
    fn unstarted(dir: PathBuf, before: Before) -> RealNode {
        RealNode {
            plane: None,
            dir,
            before,
            processes: Vec::new(),
            dns_stop: Arc::new(AtomicBool::new(false)),
            dns_thread: None,
            stopped: false,
            restored: Vec::new(),
        }
    }

    /// Starts the control plane for a node, then containerd, cluster DNS,
    /// kube-scheduler and the kubelet, and waits until the node is Ready and
    /// schedulable. On failure everything started is stopped again.
    pub fn start() -> Result<RealNode, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        for swept in sweep_abandoned() {
            eprintln!("{swept}");
        }
        check_machine()?;
        let before = Before::record();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let record = serde_json::to_string(&before).map_err(|e| e.to_string())?;
        fs::write(dir.join(BEFORE_FILE), record).map_err(|e| format!("cannot write {BEFORE_FILE}: {e}"))?;
        let mut node = RealNode::unstarted(dir, before);
        match node.start_all() {
            Ok(()) => Ok(node),
            Err(error) => {
                let logs = node.log_tails();
                node.stop();
                Err(format!("{error}\n{logs}"))
            }
        }
    }

    fn start_all(&mut self) -> Result<(), String> {
        // The bridge first: the API server binds its address.
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;

        let options = control_plane::Options { real_node: Some(HOST_IP) };
        let plane = ControlPlane::try_start_with(options)?;
        let dir = self.dir.clone();
        let path = |name: &str| dir.join(name);
        fs::write(path("kubelet.kubeconfig"), plane.kubeconfig_yaml(NODE_USER)).map_err(|e| e.to_string())?;
        fs::write(path("scheduler.kubeconfig"), plane.kubeconfig_yaml(SCHEDULER_USER))
            .map_err(|e| e.to_string())?;
        // A client lives on the runtime it was made on: each user makes its own.
        let admin = block_on(plane.config(control_plane::ADMIN_USER));
        // For [`sweep_abandoned`]: a killed process leaves the control plane's folder too.
        fs::write(path(PLANE_FILE), plane.dir().display().to_string()).map_err(|e| e.to_string())?;
        self.plane = Some(plane);
        block_on(async { bind_node_role(&client_from(&admin)?).await })?;

        self.start_containerd()?;
        self.start_dns(admin.clone())?;
        self.spawn(
            "kube-scheduler",
            &cache_dir().join("bin/kube-scheduler"),
            &[
                format!("--kubeconfig={}", path("scheduler.kubeconfig").display()),
                "--leader-elect=false".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
                "--v=0".into(),
            ],
        )?;
        self.start_kubelet()?;
        self.wait_until("the node to be Ready and schedulable", || {
            let admin = admin.clone();
            async move {
                let nodes: Api<Node> = Api::all(client_from(&admin)?);
                let node =
                    nodes.get_opt(NODE_NAME).await.map_err(|e| e.to_string())?.ok_or("not registered")?;
                let ready = node.status.as_ref().and_then(|status| status.conditions.as_ref()).is_some_and(
                    |conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"),
                );
                let taints = node.spec.as_ref().and_then(|spec| spec.taints.clone()).unwrap_or_default();
                if ready && taints.is_empty() {
                    Ok(())
                } else {
                    Err(format!("ready: {ready}, taints: {taints:?}"))
                }
            }
        })
    }

    fn start_containerd(&mut self) -> Result<(), String> {
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

    /// `count` PersistentVolumes `<prefix>-<i>` of `size` and class `class`,
    /// each a folder in the node's directory (removed with it): there is no
    /// provisioner here, so claims bind to these. The folders are writable
    /// by anyone (a hostPath volume takes no fsGroup; router pods run as a
    /// non-root user).
    pub async fn create_volumes(
        &self,
        client: &Client,
        prefix: &str,
        count: usize,
        size: &str,
        class: &str,
    ) -> Result<(), String> {
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        for index in 0..count {
            let name = format!("{prefix}-{index}");
            let path = self.dir.join("volumes").join(&name);
            fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .map_err(|e| e.to_string())?;
            let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
                "metadata": { "name": name },
                "spec": {
                    "capacity": { "storage": size },
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": class,
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": { "path": path.display().to_string(), "type": "Directory" }
                }
            }))
            .map_err(|e| e.to_string())?;
            volumes
                .create(&PostParams::default(), &volume)
                .await
                .map_err(|e| format!("cannot create {name}: {e}"))?;
        }
        Ok(())
    }

    /// `ctr --address <socket> -n k8s.io <args>`; its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let socket = self.socket();
        let mut all = vec!["--address", socket.as_str(), "-n", "k8s.io"];
        all.extend_from_slice(args);
        run("ctr", &all)
    }

    fn start_dns(&mut self, admin: kube::Config) -> Result<(), String> {
        let hosts_dir = self.dir.join("dns");
        fs::create_dir_all(&hosts_dir).map_err(|e| e.to_string())?;
        fs::write(self.dir.join("resolv.conf"), "").map_err(|e| e.to_string())?;
        let hosts = hosts_dir.join("cluster.hosts");
        fs::write(&hosts, "").map_err(|e| e.to_string())?;
        self.spawn(
            "dnsmasq",
            Path::new("/usr/sbin/dnsmasq"),
            &[
                "--keep-in-foreground".into(),
                "--conf-file=/dev/null".into(),
                "--pid-file=".into(),
                "--user=root".into(),
                "--no-resolv".into(),
                "--no-hosts".into(),
                format!("--hostsdir={}", hosts_dir.display()),
                format!("--listen-address={HOST_IP}"),
                "--bind-interfaces".into(),
                format!("--local=/{CLUSTER_DOMAIN}/"),
                "--domain-needed".into(),
                "--log-facility=-".into(),
            ],
        )?;
        let stop = self.dns_stop.clone();
        self.dns_thread = Some(std::thread::spawn(move || render_hosts_until(admin, &hosts, &stop)));
        Ok(())
    }

    fn start_kubelet(&mut self) -> Result<(), String> {
        let dir = self.dir.clone();
        let path = |name: &str| dir.join(name).display().to_string();
        let socket = format!("unix://{}", self.socket());
        let args = vec![
            format!("--kubeconfig={}", path("kubelet.kubeconfig")),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={HOST_IP}"),
            format!("--address={HOST_IP}"),
            format!("--port={}", free_port()),
            "--healthz-bind-address=127.0.0.1".into(),
            format!("--healthz-port={}", free_port()),
            "--read-only-port=0".into(),
            format!("--root-dir={}", path("kubelet")),
            format!("--cert-dir={}", path("kubelet/pki")),
            format!("--volume-plugin-dir={}", path("kubelet/volume-plugins")),
            "--container-runtime=remote".into(),
            format!("--container-runtime-endpoint={socket}"),
            format!("--image-service-endpoint={socket}"),
            format!("--containerd={}", self.socket()),
            "--runtime-request-timeout=2m".into(),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--cgroup-driver=cgroupfs".into(),
            "--fail-swap-on=false".into(),
            "--make-iptables-util-chains=false".into(),
            "--eviction-hard=".into(),
            "--image-gc-high-threshold=100".into(),
            "--image-gc-low-threshold=99".into(),
            format!("--cluster-dns={HOST_IP}"),
            format!("--cluster-domain={CLUSTER_DOMAIN}"),
            format!("--resolv-conf={}", path("resolv.conf")),
            "--serialize-image-pulls=false".into(),
            "--node-status-update-frequency=2s".into(),
            "--sync-frequency=5s".into(),
            "--v=1".into(),
        ];
        self.spawn("kubelet", &cache_dir().join("bin/kubelet"), &args)
    }

    fn spawn(&mut self, name: &'static str, program: &Path, args: &[String]) -> Result<(), String> {
        let log = fs::File::create(self.dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .current_dir(&self.dir)
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it only sets a flag of the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = control_plane::spawn_from_keeper(command)
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        self.processes.push((name, child));
        Ok(())
    }

    fn wait_until<F, Fut>(&mut self, what: &str, check: F) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let interval = Duration::from_millis(200);
        match control_plane::poll_while_running(
            &mut self.processes,
            &runtime,
            START_DEADLINE,
            interval,
            check,
        ) {
            Ok(()) => Ok(()),
            Err(Waited::Exited(name, status)) => {
                Err(format!("{name} exited with {status} while waiting for {what}"))
            }
            Err(Waited::TimedOut(last)) => {
                Err(format!("timed out after {START_DEADLINE:?} waiting for {what}: {last}"))
            }
        }
    }

    /// The last lines of every log of the node.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.processes {
            let text = fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "--- {name}.log\n{}\n",
                lines[lines.len().saturating_sub(25)..].join("\n")
            ));
        }
        out
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// (name, pid) of every process the node started, in start order.
    pub fn processes(&self) -> Vec<(&'static str, u32)> {
        self.processes.iter().map(|(name, child)| (*name, child.id())).collect()
    }

    /// Stops everything, in order, and restores the machine. Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.dns_stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.dns_thread.take() {
            let _ = thread.join();
        }
        // The kubelet and the scheduler first, so nothing restarts containers.
        for name in ["kubelet", "kube-scheduler"] {
            self.stop_process(name);
        }
        if self.processes.iter().any(|(name, _)| *name == "containerd") {
            self.stop_containers();
        }
        self.stop_process("containerd");
        self.kill_shims();
        self.kill_pod_processes();
        while let Some((name, _)) = self.processes.last().map(|(name, child)| (*name, child.id())) {
            self.stop_process(name);
        }
        if let Some(mut plane) = self.plane.take() {
            plane.stop();
        }
        self.unmount_all();
        let _ = run("ip", &["link", "del", BRIDGE]);
        self.remove_cgroups();
        for (name, value) in &self.before.sysctls {
            let now = read_sysctl(name).unwrap_or_default();
            if &now != value {
                let _ = fs::write(Path::new("/proc/sys").join(name), value);
                self.restored.push(format!("{name}: {now} -> {value}"));
            }
        }
        self.remove_shared_entries();
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// SIGTERM, then SIGKILL after [`STOP_DEADLINE`]; by pid.
    fn stop_process(&mut self, name: &str) {
        let Some(index) = self.processes.iter().position(|(n, _)| *n == name) else { return };
        let (_, mut child) = self.processes.remove(index);
        // SAFETY: kill on the pid of a child not yet reaped, so not reused.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills and deletes every container task through containerd, then the containers.
    fn stop_containers(&self) {
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
    fn kill_shims(&self) {
        for pid in pids_whose_cmdline_contains(&self.socket()) {
            // SAFETY: plain kill of a process found just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Whatever still runs in the pods' cgroups.
    fn kill_pod_processes(&self) {
        for root in cgroup_roots() {
            let kubepods = root.join("kubepods");
            for _ in 0..50 {
                let pids = cgroup_pids(&kubepods);
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    // SAFETY: plain kill of a process found in the node's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(20)); // until they are gone
            }
        }
    }

    fn unmount_all(&self) {
        let new_netns: Vec<PathBuf> = self.new_entries("/run/netns").into_iter().collect();
        let mut points = mounts_under(&self.dir);
        for netns in &new_netns {
            points.extend(mounts_under(netns));
        }
        points.extend(
            mounts_under(Path::new("/run/containerd"))
                .into_iter()
                .filter(|point| self.new_entries("/run/containerd").iter().any(|new| point.starts_with(new))),
        );
        for _ in 0..3 {
            for point in &points {
                if let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) {
                    // SAFETY: a valid C string; unmounting is what is asked.
                    unsafe {
                        if libc::umount2(c_path.as_ptr(), 0) != 0 {
                            libc::umount2(c_path.as_ptr(), libc::MNT_DETACH);
                        }
                    }
                }
            }
            points = mounts_under(&self.dir);
            if points.is_empty() {
                break;
            }
        }
    }

    fn remove_cgroups(&self) {
        for root in cgroup_roots() {
            remove_cgroup_tree(&root.join("kubepods"));
        }
    }

    /// Entries of a shared folder that were not there before (the folder
    /// itself when it did not exist).
    fn new_entries(&self, dir: &str) -> Vec<PathBuf> {
        match self.before.shared.get(dir) {
            Some(Some(old)) => entries(Path::new(dir))
                .unwrap_or_default()
                .difference(old)
                .map(|name| Path::new(dir).join(name))
                .collect(),
            _ if Path::new(dir).exists() => vec![PathBuf::from(dir)],
            _ => Vec::new(),
        }
    }

    fn remove_shared_entries(&self) {
        for dir in SHARED_DIRS {
            for path in self.new_entries(dir) {
                if path.is_dir() && !path.is_symlink() {
                    let _ = fs::remove_dir_all(&path);
                } else {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// The sysctls [`RealNode::stop`] found changed and set back, as `name: found -> restored`.
    pub fn restored_sysctls(&self) -> &[String] {
        &self.restored
    }

    /// What the node left on the machine (empty when nothing): processes it
    /// started still alive, the bridge, mounts, cgroups, changed sysctls,
    /// new entries in shared folders, its directory.
    pub fn leftovers(&self, pids: &[u32]) -> Vec<String> {
        let mut found = Vec::new();
        for pid in pids {
            if alive(*pid) {
                found.push(format!("process {pid} alive"));
            }
        }
        for pid in pids_whose_cmdline_contains(&self.dir.display().to_string()) {
            found.push(format!("process {pid} names the node's folder"));
        }
        if link_exists(BRIDGE) {
            found.push(format!("bridge {BRIDGE}"));
        }
        for point in mounts_under(&self.dir) {
            found.push(format!("mount {}", point.display()));
        }
        for root in cgroup_roots() {
            if root.join("kubepods").exists() {
                found.push(format!("cgroup {}", root.join("kubepods").display()));
            }
        }
        for (name, value) in &self.before.sysctls {
            let now = read_sysctl(name).unwrap_or_default();
            if &now != value {
                found.push(format!("sysctl {name} = {now}, was {value}"));
            }
        }
        for dir in SHARED_DIRS {
            for path in self.new_entries(dir) {
                found.push(format!("new {}", path.display()));
            }
        }
        if self.dir.exists() {
            found.push(format!("directory {}", self.dir.display()));
        }
        found
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether process `pid` runs (a zombie, dead but not yet reaped, does not).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Refuses to start where another node (or anything else) holds what this one takes.
fn check_machine() -> Result<(), String> {
    if link_exists(BRIDGE) {
        return Err(format!(
            "a link named {BRIDGE} exists: another real node runs, or one was not cleaned up"
        ));
    }
    for root in cgroup_roots() {
        if root.join("kubepods").exists() {
            return Err(format!("{} exists: another kubelet runs here", root.join("kubepods").display()));
        }
    }
    // No address or route of the machine may overlap the pods' benchmarking range.
    let addresses = run("ip", &["-4", "-o", "addr", "show"])?;
    let routes = run("ip", &["-4", "route", "show", "table", "all"])?;
    for line in addresses.lines().chain(routes.lines()) {
        if line.contains(" 198.18.")
            || line.contains(" 198.19.")
            || line.starts_with("198.18.")
            || line.starts_with("198.19.")
        {
            return Err(format!("the machine already uses 198.18.0.0/15: {line}"));
        }
    }
    Ok(())
}

fn pids_whose_cmdline_contains(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let own = std::process::id() as i32;
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == own {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && !text.starts_with("ctr ") {
            found.push(pid);
        }
    }
    found
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    if !dir.is_dir() {
        return pids;
    }
    for line in fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
        if let Ok(pid) = line.trim().parse() {
            pids.push(pid);
        }
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            pids.extend(cgroup_pids(&entry.path()));
        }
    }
    pids
}

/// Removes a cgroup and its children, leaves first (cgroups go with rmdir only).
fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20)); // a just-killed process leaves its cgroup
    }
}

fn client_from(config: &kube::Config) -> Result<Client, String> {
    control_plane::install_crypto_provider();
    Client::try_from(config.clone()).map_err(|e| e.to_string())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// The kubelet's user gets the bootstrap `system:node` role (this API
/// server authorizes with RBAC only, no Node authorizer).
async fn bind_node_role(admin: &Client) -> Result<(), String> {
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

/// Renders the DNS hosts file every second until `stop`: for every Service,
/// `<svc>.<ns>.svc.<domain>` to its ready endpoint addresses, and
/// `<hostname>.<svc>.<ns>.svc.<domain>` for addresses with a hostname (the
/// StatefulSet members). ClusterIPs are left out: there is no kube-proxy.
fn render_hosts_until(admin: kube::Config, hosts: &Path, stop: &AtomicBool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Ok(admin) = runtime.block_on(async { client_from(&admin) }) else { return };
    let mut last = String::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(text) = runtime.block_on(render_hosts(&admin))
            && text != last
        {
            let temporary = hosts.with_extension("tmp");
            if fs::write(&temporary, &text).is_ok() && fs::rename(&temporary, hosts).is_ok() {
                last = text;
            }
        }
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100)); // render interval
        }
    }
}

/// The hosts file for the current Services and Endpoints.
pub async fn render_hosts(admin: &Client) -> Result<String, kube::Error> {
    let services: Api<Service> = Api::all(admin.clone());
    let endpoints: Api<Endpoints> = Api::all(admin.clone());
    let services = services.list(&ListParams::default()).await?;
    let endpoints = endpoints.list(&ListParams::default()).await?;
    let known: BTreeSet<(String, String)> = services
        .items
        .iter()
        .filter_map(|service| Some((service.metadata.namespace.clone()?, service.metadata.name.clone()?)))
        .collect();
    let mut lines = BTreeSet::new();
    for endpoint in &endpoints.items {
        let (Some(namespace), Some(name)) = (&endpoint.metadata.namespace, &endpoint.metadata.name) else {
            continue;
        };
        if !known.contains(&(namespace.clone(), name.clone())) {
            continue;
        }
        let service = format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}");
        for subset in endpoint.subsets.iter().flatten() {
            // Ready addresses only, as CoreDNS answers (a Service that
            // publishes not-ready addresses has them listed as ready).
            for address in subset.addresses.iter().flatten() {
                lines.insert(format!("{} {service}", address.ip));
                if let Some(hostname) = &address.hostname {
                    lines.insert(format!("{} {hostname}.{service}", address.ip));
                }
            }
        }
    }
    Ok(lines.into_iter().map(|line| line + "\n").collect())
}
