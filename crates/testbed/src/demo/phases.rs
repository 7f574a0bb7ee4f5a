//! `kubectl get conveyor -w`, in the demo: watches the five kinds and the
//! router pods of one namespace and turns every change of phase into a line.

use std::collections::HashMap;
use std::time::Instant;

use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use conveyor_etl_operator::router_cluster::build::CLUSTER_LABEL;

const KINDS: [&str; 5] = ["EtlRouterCluster", "EtlPipeline", "EtlSource", "EtlTransform", "EtlSink"];

/// One watch event of one kind.
pub(super) struct Change {
    kind: &'static str,
    event: watcher::Event<DynamicObject>,
}

/// Every change of the five kinds and of the router pods in `namespace`;
/// watch errors are retried with backoff and not shown.
pub(super) fn watch(client: Client, namespace: &str) -> BoxStream<'static, Change> {
    let mut streams: Vec<BoxStream<'static, Change>> = KINDS
        .iter()
        .map(|kind| {
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", kind));
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
            events(kind, api, watcher::Config::default())
        })
        .collect();
    let pods: Api<DynamicObject> = Api::namespaced_with(client, namespace, &ApiResource::erase::<Pod>(&()));
    streams.push(events("Pod", pods, watcher::Config::default().labels(CLUSTER_LABEL)));
    futures::stream::select_all(streams).boxed()
}

fn events(
    kind: &'static str,
    api: Api<DynamicObject>,
    config: watcher::Config,
) -> BoxStream<'static, Change> {
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| async move { event.ok().map(|event| Change { kind, event }) })
        .boxed()
}

/// What was last shown of each object, and whether the example set is all Ready.
pub(super) struct Board {
    started: Instant,
    grpc_port: u16,
    /// What plays a router pod: a simulated router node or a real container.
    router: &'static str,
    expected: Vec<(String, String)>,
    shown: HashMap<(String, String), String>,
    phases: HashMap<(String, String), String>,
    all_ready: bool,
    became_all_ready: bool,
}

impl Board {
    pub(super) fn new(examples: &[DynamicObject], grpc_port: u16, simulated: bool) -> Board {
        let expected = examples
            .iter()
            .map(|o| (o.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default(), o.name_any()))
            .collect();
        Board {
            started: Instant::now(),
            grpc_port,
            router: if simulated { "simulated router node" } else { "router container" },
            expected,
            shown: HashMap::new(),
            phases: HashMap::new(),
            all_ready: false,
            became_all_ready: false,
        }
    }

    /// Seconds since the board was made.
    pub(super) fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The lines `change` makes (none when nothing shown moved).
    pub(super) fn apply(&mut self, change: Change) -> Vec<String> {
        let mut lines = Vec::new();
        match change.event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let key = (change.kind.to_string(), object.name_any());
                let (phase, text) = self.describe(change.kind, &object);
                self.phases.insert(key.clone(), phase);
                if self.shown.get(&key) != Some(&text) {
                    lines.push(self.line(&key, &text));
                    self.shown.insert(key, text);
                }
            }
            watcher::Event::Delete(object) => {
                let key = (change.kind.to_string(), object.name_any());
                self.phases.remove(&key);
                if self.shown.remove(&key).is_some() {
                    let text = if change.kind == "Pod" {
                        format!("deleted (its {} is stopped)", self.router)
                    } else {
                        "deleted".to_owned()
                    };
                    lines.push(self.line(&key, &text));
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
        let all_ready = self.not_ready().is_empty();
        self.became_all_ready = all_ready && !self.all_ready;
        self.all_ready = all_ready;
        lines
    }

    /// Whether the last change made the whole example set Ready.
    pub(super) fn became_all_ready(&self) -> bool {
        self.became_all_ready
    }

    /// `kind/name (phase)` of every example object not Ready.
    pub(super) fn not_ready(&self) -> Vec<String> {
        self.expected
            .iter()
            .filter_map(|key| match self.phases.get(key).map(String::as_str) {
                Some("Ready") => None,
                phase => Some(format!("{}/{} ({})", key.0, key.1, phase.unwrap_or("not seen"))),
            })
            .collect()
    }

    fn line(&self, (kind, name): &(String, String), text: &str) -> String {
        format!("[{:>6.1}s] {:<30} {text}", self.elapsed(), format!("{kind}/{name}"))
    }

    /// (phase, the text shown) of an object.
    fn describe(&self, kind: &str, object: &DynamicObject) -> (String, String) {
        let status = object.data.get("status");
        let phase = status.and_then(|s| s.get("phase")).and_then(|p| p.as_str());
        if kind == "Pod" {
            let phase = phase.unwrap_or("Pending").to_string();
            let ip = status.and_then(|s| s.get("podIP")).and_then(|ip| ip.as_str());
            let text = match ip {
                Some(ip) => format!("{phase} at {ip}:{} ({})", self.grpc_port, self.router),
                None => phase.clone(),
            };
            return (phase, text);
        }
        let Some(phase) = phase else { return (String::new(), "(no status yet)".to_string()) };
        let ready =
            status.and_then(|s| s.get("conditions")).and_then(|c| c.as_array()).and_then(|conditions| {
                conditions.iter().find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))
            });
        let reason = ready
            .filter(|c| c.get("status").and_then(|s| s.as_str()) != Some("True"))
            .and_then(|c| c.get("reason"))
            .and_then(|r| r.as_str());
        let text = match reason {
            Some(reason) if phase != "Ready" => format!("{phase} ({reason})"),
            _ => phase.to_string(),
        };
        (phase.to_string(), text)
    }
}
