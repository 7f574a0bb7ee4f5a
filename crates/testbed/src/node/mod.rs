//! A real node beside the test control plane: containerd (with runc and the
//! CNI bridge plugin from Debian), kubelet and kube-scheduler (of the same
//! release as the control plane, see [`crate::kubernetes`]) and cluster DNS (dnsmasq answering `cluster.local` from a
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
//!
//! Here: its lifecycle (start, stop) and public API; each concern has its own file.

mod cgroups;
mod dns;
mod mounts;
mod network;
mod record;
mod runtime;
mod sweep;
mod volumes;

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

use crate::control_plane::{self, ControlPlane, NODE_USER, SCHEDULER_USER};
use crate::process::{self, Waited};
use record::Before;

pub use dns::render_hosts;
pub use sweep::sweep_abandoned;

/// The node's name (the kubelet's user is `system:node:<name>`).
pub const NODE_NAME: &str = "conveyor-node";
/// The bridge the pods hang on.
pub const BRIDGE: &str = "conveyor0";
/// The bridge's address: the host as the pods see it (API server, DNS, kubelet).
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 42, 1);
/// The pods' range (inside 198.18.0.0/15, reserved for benchmarking).
pub const POD_CIDR: &str = "198.18.42.0/24";
/// The sandbox image, imported from the tarball build-node.sh packs.
pub const PAUSE_IMAGE: &str = "conveyor.local/pause:node";
/// The node's directory in the temp dir is this and its process's pid.
const DIR_PREFIX: &str = "conveyor-node-";
/// The [`Before`] record in the node's directory.
const BEFORE_FILE: &str = "before.json";
/// The control plane's folder, named in the node's directory.
const PLANE_FILE: &str = "control-plane-dir";
const START_DEADLINE: Duration = Duration::from_secs(120);
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// Where the node's images are: `CONVEYOR_NODE_DIR` or
/// `~/.cache/conveyor-etl-operator/node`, as build-node.sh fills it.
pub fn cache_dir() -> PathBuf {
    crate::cache_folder("CONVEYOR_NODE_DIR", "node")
}

/// Why a real node cannot run here, or `None` when it can: the release's
/// kubelet and kube-scheduler, the packages and image build-node.sh
/// provides, and root.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("a real node needs root".into());
    }
    let bin = match crate::kubernetes::bin_dir() {
        Ok(bin) => bin,
        Err(why) => return Some(why),
    };
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
        PathBuf::from("/usr/sbin/iptables"),
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
        network::add_bridge()?;
        network::allow_pod_to_pod()?;

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
        block_on(async { runtime::bind_node_role(&client_from(&admin)?).await })?;

        self.start_containerd()?;
        self.start_dns(admin.clone())?;
        self.start_scheduler()?;
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
        let child = process::spawn_from_keeper(command)
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
        match process::poll_while_running(&mut self.processes, &runtime, START_DEADLINE, interval, check) {
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
        network::remove_pod_to_pod();
        network::remove_bridge();
        self.remove_cgroups();
        self.restore_sysctls();
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

    /// The sysctls [`RealNode::stop`] found changed and set back, as `name: found -> restored`.
    pub fn restored_sysctls(&self) -> &[String] {
        &self.restored
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Refuses to start where another node (or anything else) holds what this one takes.
fn check_machine() -> Result<(), String> {
    network::check_bridge_free()?;
    cgroups::check_kubepods_free()?;
    network::check_range_free()
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

fn client_from(config: &kube::Config) -> Result<Client, String> {
    control_plane::install_crypto_provider();
    Client::try_from(config.clone()).map_err(|e| e.to_string())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}
