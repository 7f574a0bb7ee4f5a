//! The StatefulSet `<n>` of router pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::services::{GRPC_PORT_NAME, METRICS_PORT_NAME, RAFT_PORT_NAME};
use super::{CONFIG_DIR, Ctx, launch, pod_template};
use crate::crd::ImagePullPolicy;

/// Name of the router container.
pub const ROUTER_CONTAINER: &str = "router";
/// Name of the data volume: the volume claim template, or the emptyDir without `storage`.
pub const DATA_VOLUME: &str = "data";
/// Where the data volume (the Raft log) is mounted.
pub const DATA_DIR: &str = "/var/lib/conveyor";
const CONFIG_VOLUME: &str = "config";
/// Writable scratch space, since the root filesystem is read-only.
const TMP_VOLUME: &str = "tmp";
/// User and group the router runs as (the conventional non-root 65532).
const RUN_AS: i64 = 65532;

pub(super) fn stateful_set(ctx: &Ctx<'_>, replicas: i32) -> StatefulSet {
    let storage = ctx.cluster.spec.storage.as_ref();
    StatefulSet {
        metadata: ctx.meta(&ctx.names.stateful_set),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(ctx.names.raft_service.clone()),
            // Raft members must start together to form a quorum.
            pod_management_policy: Some("Parallel".to_owned()),
            // The operator deletes outdated pods itself, one at a time, the leader last.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector { match_labels: Some(ctx.selector()), ..LabelSelector::default() },
            template: pod_template(ctx),
            // No persistentVolumeClaimRetentionPolicy (so Retain): with
            // `storage.retentionPolicy: Delete` the cleanup finalizer deletes the
            // claims, going by the spec at deletion and never while paused, which
            // a policy enforced by the StatefulSet controller could not honour.
            volume_claim_templates: storage.map(|storage| {
                vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(DATA_VOLUME.to_owned()),
                        labels: Some(ctx.selector()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([("storage".to_owned(), storage.size.clone())])),
                            ..VolumeResourceRequirements::default()
                        }),
                        storage_class_name: storage.storage_class_name.clone(),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    ..PersistentVolumeClaim::default()
                }]
            }),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn pod_template(ctx: &Ctx<'_>) -> PodTemplateSpec {
    let placement = &ctx.cluster.spec.placement;
    let template = ctx.cluster.spec.pod_template.as_ref();
    let mut volumes = vec![
        Volume {
            name: CONFIG_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: ctx.names.config_map.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir(TMP_VOLUME),
    ];
    if ctx.cluster.spec.storage.is_none() {
        volumes.push(empty_dir(DATA_VOLUME));
    }
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_template::labels(ctx)),
            annotations: Some(pod_template::annotations(ctx)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(ctx)],
            volumes: Some(volumes),
            affinity: Some(placement.affinity.clone().unwrap_or_else(|| default_affinity(ctx))),
            node_selector: non_empty(&placement.node_selector),
            tolerations: non_empty(&placement.tolerations),
            topology_spread_constraints: non_empty(&placement.topology_spread_constraints),
            image_pull_secrets: template.and_then(|t| non_empty(&t.image_pull_secrets)),
            service_account_name: template.and_then(|t| t.service_account_name.clone()),
            priority_class_name: template.and_then(|t| t.priority_class_name.clone()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
    }
}

/// `None` for an empty collection, so an unset field stays absent from the object.
fn non_empty<T: Clone>(items: &T) -> Option<T>
where
    for<'a> &'a T: IntoIterator,
{
    items.into_iter().next().is_some().then(|| items.clone())
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.to_owned(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

/// Soft anti-affinity: prefer one router pod per node.
fn default_affinity(ctx: &Ctx<'_>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(ctx.selector()),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".to_owned(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn container(ctx: &Ctx<'_>) -> Container {
    let spec = &ctx.cluster.spec;
    let container_port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        // A list-map key: explicit for server-side apply on older API servers.
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    Container {
        name: ROUTER_CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|policy| {
            match policy {
                ImagePullPolicy::Always => "Always",
                ImagePullPolicy::IfNotPresent => "IfNotPresent",
                ImagePullPolicy::Never => "Never",
            }
            .to_owned()
        }),
        command: Some(launch::command(ctx.cluster)),
        args: Some(launch::args(ctx.cluster)),
        env: Some(pod_template::env(ctx)),
        ports: Some(vec![
            container_port(GRPC_PORT_NAME, spec.ports.grpc),
            container_port(RAFT_PORT_NAME, spec.ports.raft),
            // The router's Prometheus endpoint (metrics.listen_addr), for scraping.
            container_port(METRICS_PORT_NAME, spec.ports.metrics),
        ]),
        resources: spec.resources.clone(),
        readiness_probe: Some(grpc_port_probe(5, 5)),
        liveness_probe: Some(grpc_port_probe(15, 10)),
        volume_mounts: Some(vec![
            mount(CONFIG_VOLUME, CONFIG_DIR, true),
            mount(DATA_VOLUME, DATA_DIR, false),
            mount(TMP_VOLUME, "/tmp", false),
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// A probe of the gRPC port. Kubernetes 1.20 has no native gRPC probe (beta in
/// 1.24), so it is a TCP connect to the named `grpc` port: the pod is Ready
/// once the router listens. Raft health (leader, membership) is the
/// operator's own poll of `GetClusterStatus`, not the probe's business.
fn grpc_port_probe(initial_delay_seconds: i32, period_seconds: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(GRPC_PORT_NAME.to_owned()),
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(initial_delay_seconds),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}
