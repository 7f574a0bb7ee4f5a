//! A real Kubernetes control plane on loopback for the integration tests
//! and the demo.
//!
//! Binaries come from `KUBEBUILDER_ASSETS` (a folder with `etcd`,
//! `kube-apiserver`, `kube-controller-manager`) or from the release that
//! `tests/harness/build-kubernetes.sh` built (see [`crate::kubernetes`]). Every instance picks free
//! ports, lives in its own temporary directory, authenticates with bearer
//! tokens and kills what it started when dropped. Children also get
//! `PR_SET_PDEATHSIG`, so a test binary that dies never leaks them.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::certs;
use crate::process::{Waited, poll_while_running, spawn_from_keeper};

/// Token users the apiserver knows. `admin` is in `system:masters`; `operator`
/// has no groups, so tests can grant it exactly the RBAC the operator needs.
pub const ADMIN_USER: &str = "admin";
pub const OPERATOR_USER: &str = "operator";
/// No groups either; tests bind it to less than the operator needs.
pub const RESTRICTED_USER: &str = "restricted";
const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The kubelet of a real node ([`Options::real_node`]), in `system:nodes`.
pub const NODE_USER: &str = "system:node:conveyor-node";
/// kube-scheduler of a real node; the bootstrap RBAC binds this user.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// The controllers every control plane runs (`clusterrole-aggregation`: the
/// chart's roles aggregated into the built-in view, edit and admin).
const CONTROLLERS: &str = "garbage-collector-controller,statefulset-controller,serviceaccount-controller,\
serviceaccount-token-controller,namespace-controller,persistentvolumeclaim-protection-controller,disruption-controller,\
clusterrole-aggregation-controller";
/// What a real node needs on top: `node-lifecycle` (else the node keeps its
/// not-ready taint and nothing schedules), `endpoints` (cluster DNS is
/// rendered from Endpoints), `deployment` and `replicaset` (the operator's
/// own Deployment, installed by Helm), `persistentvolume-binder` (router
/// volumes bound to statically created PersistentVolumes) and
/// `root-ca-certificate-publisher` (the `kube-root-ca.crt` ConfigMap every
/// pod's service account volume mounts).
const REAL_NODE_CONTROLLERS: &str = "node-lifecycle-controller,endpoints-controller,deployment-controller,\
replicaset-controller,persistentvolume-binder-controller,root-ca-certificate-publisher-controller";

/// How to start a control plane. The default is the loopback-only one every
/// test but the real-node ones uses.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Set for a real node (crates/testbed/src/node/): the API server binds (and
    /// advertises) this address, where pods reach it, instead of 127.0.0.1;
    /// it reaches kubelets at their InternalIP; the controller manager also
    /// runs `nodelifecycle` and `endpoint`; and token users for the kubelet
    /// ([`NODE_USER`]) and the scheduler ([`SCHEDULER_USER`]) exist.
    pub real_node: Option<std::net::Ipv4Addr>,
}

const START_DEADLINE: Duration = Duration::from_secs(90);

/// Logs every request but watches with who made it, so tests can count
/// the API writes of one identity and the benchmark its reads too.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["watch"]
- level: Metadata
"#;

/// The verbs that only read.
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

/// One write the API server handled, from its audit log.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct AuditedWrite {
    pub verb: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub user: AuditUser,
    #[serde(rename = "responseStatus", default)]
    pub response_status: Option<serde_json::Value>,
    /// Where the request came from (a pod's IP, for a client in a pod).
    #[serde(rename = "sourceIPs", default)]
    pub source_ips: Vec<String>,
}

#[derive(Clone, Debug, serde::Deserialize)]
pub struct AuditUser {
    pub username: String,
}

pub struct ControlPlane {
    dir: tempfile::TempDir,
    processes: Vec<(&'static str, Child)>,
    pub server: String,
    pub ports: Vec<u16>,
    /// Kubeconfig of the admin user.
    pub kubeconfig: PathBuf,
    ca_cert_pem: String,
    tokens: Vec<(String, String)>,
    /// kube-apiserver's flags, to start it again ([`ControlPlane::restart_apiserver`]).
    apiserver_args: Vec<String>,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until
    /// the apiserver is ready and the controller manager has created the
    /// `default` service account. Retries with fresh ports if one was taken
    /// between choosing and binding it.
    pub fn start() -> ControlPlane {
        Self::try_start().unwrap_or_else(|error| panic!("cannot start the test control plane: {error}"))
    }

    /// [`ControlPlane::start`], returning why it failed instead of panicking.
    pub fn try_start() -> Result<ControlPlane, String> {
        Self::try_start_with(Options::default())
    }

    /// [`ControlPlane::try_start`] with `options`.
    pub fn try_start_with(options: Options) -> Result<ControlPlane, String> {
        let mut last_error = String::new();
        for _ in 0..3 {
            // On its own thread: callers may be inside an async runtime, and
            // waiting for readiness blocks on a runtime of its own.
            let options = options.clone();
            let attempt = std::thread::spawn(move || Self::start_once(&options))
                .join()
                .expect("control-plane start thread");
            match attempt {
                Ok(plane) => return Ok(plane),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// One control plane per test binary, started on first use and torn down
    /// when the test process exits (its children die with it).
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(ControlPlane::start)
    }

    fn start_once(options: &Options) -> Result<ControlPlane, String> {
        let bin = binaries_dir()?;
        let dir = temp_dir();
        let root = dir.path().to_path_buf();
        let path = |name: &str| root.join(name);
        let bind = options.real_node.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let pki = match options.real_node {
            Some(ip) => certs::generate_for(&[std::net::IpAddr::V4(ip)]),
            None => certs::generate(),
        };
        write(&path("ca.crt"), &pki.ca_cert_pem)?;
        write(&path("apiserver.crt"), &pki.serving_cert_pem)?;
        write(&path("apiserver.key"), &pki.serving_key_pem)?;
        write(&path("sa.key"), &pki.service_account_key_pem)?;
        write(&path("sa.pub"), &pki.service_account_public_pem)?;

        let mut users = vec![ADMIN_USER, OPERATOR_USER, RESTRICTED_USER, CONTROLLER_MANAGER_USER];
        if options.real_node.is_some() {
            users.extend([NODE_USER, SCHEDULER_USER]);
        }
        let tokens: Vec<(String, String)> =
            users.iter().map(|user| (user.to_string(), random_token())).collect();
        let token_file: String = tokens
            .iter()
            .map(|(user, token)| {
                let groups = match user.as_str() {
                    ADMIN_USER => "system:masters",
                    NODE_USER => "system:nodes",
                    _ => "",
                };
                format!("{token},{user},{user},\"{groups}\"\n")
            })
            .collect();
        write(&path("tokens.csv"), &token_file)?;
        write(&path("audit-policy.yaml"), AUDIT_POLICY)?;

        let [etcd_client, etcd_peer, apiserver] = free_ports::<3>();
        let server = format!("https://{bind}:{apiserver}");
        let mut plane = ControlPlane {
            kubeconfig: path("admin.kubeconfig"),
            dir,
            processes: Vec::new(),
            server: server.clone(),
            ports: vec![etcd_client, etcd_peer, apiserver],
            ca_cert_pem: pki.ca_cert_pem.clone(),
            tokens,
            apiserver_args: Vec::new(),
        };
        write(&plane.kubeconfig, &plane.kubeconfig_yaml(ADMIN_USER))?;
        write(&path("kcm.kubeconfig"), &plane.kubeconfig_yaml(CONTROLLER_MANAGER_USER))?;

        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        plane.spawn(
            "etcd",
            &bin,
            &[
                "--data-dir".into(),
                path("etcd").display().to_string(),
                "--listen-client-urls".into(),
                etcd_url.clone(),
                "--advertise-client-urls".into(),
                etcd_url.clone(),
                "--listen-peer-urls".into(),
                format!("http://127.0.0.1:{etcd_peer}"),
                "--initial-advertise-peer-urls".into(),
                format!("http://127.0.0.1:{etcd_peer}"),
                "--initial-cluster".into(),
                format!("default=http://127.0.0.1:{etcd_peer}"),
                "--log-level".into(),
                "error".into(),
            ],
        )?;
        let file = |name: &str| path(name).display().to_string();
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={apiserver}"),
            format!("--bind-address={bind}"),
            format!("--advertise-address={bind}"),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--client-ca-file={}", file("ca.crt")),
            format!("--token-auth-file={}", file("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            format!("--cert-dir={}", file("apiserver-certs")),
            format!("--audit-policy-file={}", file("audit-policy.yaml")),
            format!("--audit-log-path={}", file("audit.log")),
            "--audit-log-format=json".into(),
            "--audit-log-mode=blocking".into(),
            "--v=0".into(),
        ];
        let minor = minor_version(&bin)?;
        if options.real_node.is_some() {
            // Else logs and exec fail on the node's name, which nothing resolves.
            apiserver_args.push("--kubelet-preferred-address-types=InternalIP".into());
        } else if minor >= 35 {
            // Newer servers refuse to maintain the `kubernetes` Service's
            // endpoints on a loopback address; nothing here needs them.
            apiserver_args.push("--endpoint-reconciler-type=none".into());
        }
        plane.spawn("kube-apiserver", &bin, &apiserver_args)?;
        plane.apiserver_args = apiserver_args;
        plane.wait_until(apiserver_ready)?;
        let controller_manager_args = vec![
            format!("--kubeconfig={}", file("kcm.kubeconfig")),
            match options.real_node {
                Some(_) => format!("--controllers={CONTROLLERS},{REAL_NODE_CONTROLLERS}"),
                None => format!("--controllers={CONTROLLERS}"),
            },
            format!("--service-account-private-key-file={}", file("sa.key")),
            format!("--root-ca-file={}", file("ca.crt")),
            "--leader-elect=false".into(),
            // Each controller acts as its own service account with the bootstrap RBAC roles.
            "--use-service-account-credentials=true".into(),
            "--secure-port=0".into(),
            "--concurrent-gc-syncs=5".into(),
            "--v=0".into(),
        ];
        plane.spawn("kube-controller-manager", &bin, &controller_manager_args)?;
        plane.wait_until(|client| async move {
            let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
            match accounts.get_opt("default").await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("no default service account yet".to_string()),
                Err(error) => Err(error.to_string()),
            }
        })?;
        Ok(plane)
    }

    /// Kills kube-apiserver (SIGKILL) and starts it again on the same port
    /// with the same flags, returning once it is ready. etcd keeps the data;
    /// clients see their connections cut and their watches end, and the new
    /// server's watch cache starts at etcd's current revision.
    pub fn restart_apiserver(&mut self) -> Result<(), String> {
        // On a thread of its own, as at start: waiting blocks on a runtime of its own.
        std::thread::scope(|scope| scope.spawn(|| self.restart_apiserver_now()).join())
            .map_err(|_| "the apiserver restart thread panicked".to_string())?
    }

    fn restart_apiserver_now(&mut self) -> Result<(), String> {
        let index = self
            .processes
            .iter()
            .position(|(name, _)| *name == "kube-apiserver")
            .ok_or("no kube-apiserver to restart")?;
        let (_, mut old) = self.processes.remove(index);
        let _ = old.kill();
        let _ = old.wait();
        let args = self.apiserver_args.clone();
        self.spawn("kube-apiserver", &binaries_dir()?, &args)?;
        // Back in its place in the start order, which stop() reverses.
        let restarted = self.processes.pop().expect("just spawned");
        self.processes.insert(index, restarted);
        self.wait_until(apiserver_ready)
    }

    /// Compacts etcd's history up to its current revision (through etcd's
    /// JSON gateway), as the API server does every five minutes: a watch
    /// that resumes from an older resource version is then answered with
    /// `410 Gone` and must list again. Returns the revision compacted to.
    pub fn compact_etcd(&self) -> Result<u64, String> {
        let port = self.ports[0];
        let range = etcd_post(port, "/v3/kv/range", r#"{"key":"AA=="}"#)?;
        let revision: u64 = range["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| format!("no revision in etcd's answer: {range}"))?;
        etcd_post(port, "/v3/kv/compaction", &format!(r#"{{"revision":"{revision}","physical":true}}"#))?;
        Ok(revision)
    }

    fn spawn(&mut self, name: &'static str, bin: &Path, args: &[String]) -> Result<(), String> {
        // Appended to: a restarted process keeps its earlier log.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(bin.join(name));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .current_dir(self.dir.path())
            // Its own process group: Ctrl-C in a terminal reaches only the
            // process that started it, which then stops it in order.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it only sets a flag of the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = spawn_from_keeper(command)
            .map_err(|e| format!("cannot start {}: {e}", bin.join(name).display()))?;
        self.processes.push((name, child));
        Ok(())
    }

    /// Polls `check` with a fresh admin client until it succeeds, a child
    /// exits, or the start deadline passes.
    fn wait_until<F, Fut>(&mut self, check: F) -> Result<(), String>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let admin = runtime.block_on(self.config(ADMIN_USER));
        let attempt = || async {
            install_crypto_provider();
            check(Client::try_from(admin.clone()).map_err(|e| e.to_string())?).await
        };
        let interval = Duration::from_millis(100);
        match poll_while_running(&mut self.processes, &runtime, START_DEADLINE, interval, attempt) {
            Ok(()) => Ok(()),
            Err(Waited::Exited(name, status)) => {
                Err(format!("{name} exited with {status}; log:\n{}", self.log_tail(name)))
            }
            Err(Waited::TimedOut(last)) => {
                Err(format!("control plane not ready after {START_DEADLINE:?}: {last}"))
            }
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Every write `user` made so far, in order.
    pub fn writes_by(&self, user: &str) -> Vec<AuditedWrite> {
        let log = fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<AuditedWrite>(line).ok())
            .filter(|entry| entry.user.username == user && !READ_VERBS.contains(&entry.verb.as_str()))
            .collect()
    }

    pub fn token(&self, user: &str) -> &str {
        &self.tokens.iter().find(|(name, _)| name == user).expect("known user").1
    }

    pub fn kubeconfig_yaml(&self, user: &str) -> String {
        self.kubeconfig_yaml_with_token(user, self.token(user))
    }

    /// A kubeconfig that authenticates with `token` (e.g. a service account's
    /// from the TokenRequest API); `user` only names the entry.
    pub fn kubeconfig_yaml_with_token(&self, user: &str, token: &str) -> String {
        use base64::Engine;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\n    namespace: default\ncurrent-context: test\n",
            server = self.server,
            ca = encode(self.ca_cert_pem.as_bytes()),
        )
    }

    /// A kube client config that authenticates with a bearer `token`.
    pub async fn config_with_token(&self, token: &str) -> Config {
        let yaml = self.kubeconfig_yaml_with_token("token-user", token);
        let kubeconfig = Kubeconfig::from_yaml(&yaml).expect("valid kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config")
    }

    /// A kube client config for one of the token users.
    pub async fn config(&self, user: &str) -> Config {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_yaml(user)).expect("valid kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config")
    }

    /// An admin client, bound to the calling test's runtime.
    pub async fn client(&self) -> Client {
        install_crypto_provider();
        Client::try_from(self.config(ADMIN_USER).await).expect("client")
    }

    /// `kubectl` bound to this control plane as admin.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// Process ids of etcd, kube-apiserver and kube-controller-manager.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|(_, child)| child.id()).collect()
    }

    /// (name, process id) of every process it started, in start order.
    pub fn processes(&self) -> Vec<(&'static str, u32)> {
        self.processes.iter().map(|(name, child)| (*name, child.id())).collect()
    }

    /// The API server's audit log: every request but watches, as JSON lines.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stop(&mut self) {
        // The controller manager and apiserver first, etcd last.
        while let Some((_, mut child)) = self.processes.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn apiserver_ready(client: Client) -> Result<(), String> {
    let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
    client.request_text(request).await.map(|_| ()).map_err(|e| e.to_string())
}

/// A POST of `body` to etcd's JSON gateway on loopback, its answer parsed.
fn etcd_post(port: u16, path: &str, body: &str) -> Result<serde_json::Value, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, payload) = response.split_once("\r\n\r\n").ok_or("no HTTP body from etcd")?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!("etcd answered {path} with {}", head.lines().next().unwrap_or_default()));
    }
    serde_json::from_str(payload).map_err(|e| format!("etcd's answer to {path}: {e}: {payload}"))
}

/// The minor version of the kube-apiserver in `bin` (`Kubernetes v1.37.2` → 37):
/// the flags differ between the releases the test bed runs.
fn minor_version(bin: &Path) -> Result<u32, String> {
    let output = Command::new(bin.join("kube-apiserver"))
        .arg("--version")
        .output()
        .map_err(|error| format!("cannot run {}/kube-apiserver: {error}", bin.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|word| word.strip_prefix("v1."))
        .and_then(|rest| rest.split('.').next())
        .and_then(|minor| minor.parse().ok())
        .ok_or_else(|| format!("kube-apiserver --version printed no version: {text}"))
}

/// Where the control plane's binaries are (see [`crate::kubernetes`]); an
/// error naming the first one missing and how to build it.
pub fn binaries_dir() -> Result<PathBuf, String> {
    let dir = crate::kubernetes::bin_dir()?;
    for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        if !dir.join(name).is_file() {
            return Err(format!(
                "{} is missing: run tests/harness/build-kubernetes.sh {} or set KUBEBUILDER_ASSETS",
                dir.join(name).display(),
                crate::kubernetes::requested()
            ));
        }
    }
    Ok(dir)
}

fn temp_dir() -> tempfile::TempDir {
    // etcd fsyncs on every write; tmpfs keeps that cheap.
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("conveyor-cp-").tempdir_in(if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    });
    builder.expect("create temporary directory")
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}

fn random_token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 40)
}

/// The operator installs ring as rustls' provider at start-up; tests that
/// build clients in-process do the same.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
