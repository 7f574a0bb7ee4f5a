//! How the operator's resources map onto the router's messages (pure functions).
//!
//! - An EtlPipeline `<namespace>/<name>` becomes one [`PipelineConfig`] with id
//!   `<namespace>/<name>` and name `<name>`. Stages, in order: `source`
//!   (STAGE_TYPE_SOURCE, `spec.source`), `step-0`, `step-1`, ... (STAGE_TYPE_TRANSFORM,
//!   one per `spec.steps` entry, numbered by position), `sink` (STAGE_TYPE_SINK,
//!   `spec.sink`). Each stage is named after the resource it references, and its
//!   `service_selector` selects the service registered under that name, narrowed by
//!   the label [`LABEL_NAMESPACE`] to the pipeline's namespace. Edges chain the
//!   stages in that order; `enabled` is `spec.enabled`.
//! - `PipelineConfig` has no dead-letter field: `spec.dlq` travels in `metadata`
//!   under [`METADATA_DLQ_ENABLED`] (`"true"`/`"false"`) and
//!   [`METADATA_DLQ_MAX_RETRIES`] (decimal); [`METADATA_GENERATION`] carries the
//!   EtlPipeline's `metadata.generation` so the router's stored copy says which
//!   generation it applied.
//! - An EtlSource/EtlTransform/EtlSink becomes one [`RegisterRequest`]: service id
//!   `<namespace>/<name>`, name `<name>`, type from the kind, endpoint parsed from
//!   `spec.grpc.endpoint`, labels [`LABEL_NAMESPACE`] and [`LABEL_KIND`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::crd::{EtlPipelineSpec, GrpcSpec};
use crate::intern;

use super::proto::common::{Endpoint, ServiceIdentity, ServiceType};
use super::proto::registry::{RegisterRequest, ServiceMetadata};
use super::proto::router::{
    Edge, GetPipelineResponse, LoadBalanceStrategy, PipelineConfig, ServiceSelector, Stage, StageType,
};

/// Metadata key carrying `spec.dlq.enabled` (`"true"` or `"false"`).
pub const METADATA_DLQ_ENABLED: &str = "conveyor.etl/dlq-enabled";
/// Metadata key carrying `spec.dlq.maxRetries` (decimal).
pub const METADATA_DLQ_MAX_RETRIES: &str = "conveyor.etl/dlq-max-retries";
/// Metadata key carrying the EtlPipeline's `metadata.generation` (decimal).
pub const METADATA_GENERATION: &str = "conveyor.etl/generation";
/// Label on registered services and stage selectors: the resource's namespace.
pub const LABEL_NAMESPACE: &str = "conveyor.etl/namespace";
/// Label on registered services: `source`, `transform` or `sink`.
pub const LABEL_KIND: &str = "conveyor.etl/kind";

/// Stage id of the pipeline's source stage.
pub const SOURCE_STAGE_ID: &str = "source";
/// Stage id of the pipeline's sink stage.
pub const SINK_STAGE_ID: &str = "sink";

/// Stage id of the `index`-th (0-based) transform step: `step-<index>`.
pub fn step_stage_id(index: usize) -> String {
    format!("step-{index}")
}

/// The router's id of an EtlPipeline: `<namespace>/<name>`.
pub fn pipeline_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The router's id of an EtlSource/EtlTransform/EtlSink: `<namespace>/<name>`.
pub fn service_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The full [`PipelineConfig`] for an EtlPipeline at `generation` (see the module docs).
pub fn pipeline_config(
    namespace: &str,
    name: &str,
    generation: i64,
    spec: &EtlPipelineSpec,
) -> PipelineConfig {
    let mut stages = Vec::with_capacity(spec.steps.len() + 2);
    stages.push(stage(SOURCE_STAGE_ID.to_string(), &spec.source, StageType::Source, namespace));
    for (index, step) in spec.steps.iter().enumerate() {
        stages.push(stage(step_stage_id(index), step, StageType::Transform, namespace));
    }
    stages.push(stage(SINK_STAGE_ID.to_string(), &spec.sink, StageType::Sink, namespace));

    let edges = stages
        .windows(2)
        .map(|pair| Edge { from_stage: pair[0].id.clone(), to_stage: pair[1].id.clone(), condition: None })
        .collect();

    let metadata = HashMap::from([
        (METADATA_DLQ_ENABLED.to_string(), spec.dlq.enabled.to_string()),
        (METADATA_DLQ_MAX_RETRIES.to_string(), spec.dlq.max_retries.to_string()),
        (METADATA_GENERATION.to_string(), generation.to_string()),
    ]);

    PipelineConfig {
        id: pipeline_id(namespace, name),
        name: name.to_string(),
        description: format!("EtlPipeline {namespace}/{name}, managed by conveyor-etl-operator"),
        stages,
        edges,
        enabled: spec.enabled,
        metadata,
    }
}

fn stage(id: String, service: &str, stage_type: StageType, namespace: &str) -> Stage {
    Stage {
        id,
        name: service.to_string(),
        stage_type: stage_type.into(),
        service_selector: Some(ServiceSelector {
            service_name: service.to_string(),
            group_id: String::new(),
            labels: HashMap::from([(LABEL_NAMESPACE.to_string(), namespace.to_string())]),
            load_balance: LoadBalanceStrategy::LoadBalanceUnspecified.into(),
        }),
        routing_rules: Vec::new(),
        parallelism: 1,
    }
}

/// The generation a stored config was submitted for ([`METADATA_GENERATION`]), if it says.
pub fn config_generation(config: &PipelineConfig) -> Option<i64> {
    config.metadata.get(METADATA_GENERATION)?.parse().ok()
}

/// Whether this operator submitted `config`: it writes [`METADATA_GENERATION`]
/// into every submission. A pipeline without it was made by someone else and
/// is never updated or deleted, whatever its id.
pub fn submitted_by_operator(config: &PipelineConfig) -> bool {
    config_generation(config).is_some()
}

/// Whether `stored` (what the router holds) is the submission `sent`: equal, or
/// both carry the same id and [`METADATA_GENERATION`] (a router may fill in
/// defaults, but one generation of one EtlPipeline always maps to one config).
pub fn same_submission(stored: &PipelineConfig, sent: &PipelineConfig) -> bool {
    stored == sent
        || (stored.id == sent.id
            && config_generation(sent).is_some()
            && config_generation(stored) == config_generation(sent))
}

/// Whether the router's `stored` copy runs as `desired` does: the same
/// stages (id, name, type, the service they select and its labels), edges,
/// enabled flag and metadata (DLQ settings, generation). Fields a router may
/// fill in with defaults (description, parallelism, load balancing, routing
/// rules it adds) are not compared, so only a real change is drift.
pub fn same_pipeline(stored: &PipelineConfig, desired: &PipelineConfig) -> bool {
    stored.enabled == desired.enabled && Shape::of(stored) == Shape::of(desired)
}

/// What [`same_pipeline`] compares, but `enabled`.
#[derive(PartialEq, Eq, Hash)]
struct Shape<'a> {
    id: &'a str,
    metadata: Vec<(&'a String, &'a String)>,
    stages: Vec<StageShape<'a>>,
    edges: Vec<(&'a str, &'a str)>,
}

/// A stage's id, name, type and the service it selects with its labels.
type StageShape<'a> = (&'a str, &'a str, i32, Option<(&'a str, Vec<(&'a String, &'a String)>)>);

impl<'a> Shape<'a> {
    fn of(config: &'a PipelineConfig) -> Shape<'a> {
        let sorted = |map: &'a HashMap<String, String>| {
            let mut pairs: Vec<_> = map.iter().collect();
            pairs.sort();
            pairs
        };
        let stage = |stage: &'a Stage| -> StageShape<'a> {
            let selector =
                stage.service_selector.as_ref().map(|s| (s.service_name.as_str(), sorted(&s.labels)));
            (&stage.id, &stage.name, stage.stage_type, selector)
        };
        Shape {
            id: &config.id,
            metadata: sorted(&config.metadata),
            stages: config.stages.iter().map(stage).collect(),
            edges: config.edges.iter().map(|e| (e.from_stage.as_str(), e.to_stage.as_str())).collect(),
        }
    }

    fn hash(&self) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        Hash::hash(self, &mut hasher);
        hasher.finish()
    }
}

/// What decisions read of a router's copy of a pipeline, kept instead of the
/// whole config for each of the thousands a `ListPipelines` answer holds:
/// the generation this operator's marker carries (`None`: not its
/// submission), the enabled flag, and a hash of what [`same_pipeline`]
/// compares besides it. The hash is only compared within one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineSummary {
    pub generation: Option<i64>,
    pub enabled: bool,
    pub shape: u64,
}

impl PipelineSummary {
    pub fn of(config: &PipelineConfig) -> PipelineSummary {
        PipelineSummary {
            generation: config_generation(config),
            enabled: config.enabled,
            shape: Shape::of(config).hash(),
        }
    }

    /// Whether the copy summarised runs as `desired` does, `enabled` aside.
    pub fn same_shape_as(&self, desired: &PipelineConfig) -> bool {
        self.shape == Shape::of(desired).hash()
    }
}

/// What is kept of a `GetPipeline` answer, for the stats interval: the
/// copy's summary (`None`: the answer held no config), the router's version
/// of it, and each stage's error count (status shows only whether they rise).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineRead {
    pub copy: Option<PipelineSummary>,
    pub version: Option<u64>,
    /// The router's error count of each stage that has any.
    pub stage_errors: Vec<(Arc<str>, u64)>,
}

impl PipelineRead {
    pub fn of(response: &GetPipelineResponse) -> PipelineRead {
        let status = response.status.as_ref();
        PipelineRead {
            copy: response.config.as_ref().map(PipelineSummary::of),
            version: response.config.as_ref().and(status).map(|status| status.version),
            // Stages without errors are left out: the usual read then holds none.
            stage_errors: status
                .map(|status| {
                    let erring = status.stage_statuses.iter().filter(|(_, figures)| figures.errors > 0);
                    erring.map(|(id, figures)| (intern::text(id), figures.errors)).collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The router's error count for `stage` (none reported: 0).
    pub fn errors(&self, stage: &str) -> u64 {
        self.stage_errors.iter().find(|(id, _)| **id == *stage).map_or(0, |(_, errors)| *errors)
    }
}

/// The three kinds of registered service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// EtlSource
    Source,
    /// EtlTransform
    Transform,
    /// EtlSink
    Sink,
}

impl ServiceKind {
    /// The contract's service type for this kind.
    pub fn service_type(self) -> ServiceType {
        match self {
            ServiceKind::Source => ServiceType::Source,
            ServiceKind::Transform => ServiceType::Transform,
            ServiceKind::Sink => ServiceType::Sink,
        }
    }

    /// Lower-case name, as in the [`LABEL_KIND`] label.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Source => "source",
            ServiceKind::Transform => "transform",
            ServiceKind::Sink => "sink",
        }
    }

    /// The Kubernetes kind: `EtlSource`, `EtlTransform` or `EtlSink`.
    pub fn kind_name(self) -> &'static str {
        match self {
            ServiceKind::Source => "EtlSource",
            ServiceKind::Transform => "EtlTransform",
            ServiceKind::Sink => "EtlSink",
        }
    }
}

impl From<ServiceKind> for ServiceType {
    fn from(kind: ServiceKind) -> Self {
        kind.service_type()
    }
}

/// Why a `spec.grpc.endpoint` is not a usable `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint is empty; expected host:port, e.g. my-source:50051")]
    Empty,
    #[error("endpoint {0:?} has a scheme; expected host:port without one, e.g. my-source:50051")]
    HasScheme(String),
    #[error("endpoint {0:?} has no port; expected host:port, e.g. my-source:50051")]
    MissingPort(String),
    #[error("endpoint {0:?} has no host; expected host:port, e.g. my-source:50051")]
    MissingHost(String),
    #[error("endpoint {endpoint:?} has port {port:?}, which is not a number")]
    InvalidPort { endpoint: String, port: String },
    #[error("endpoint {endpoint:?} has port {port}, outside 1..=65535")]
    PortOutOfRange { endpoint: String, port: u64 },
    #[error(
        "endpoint {0:?} looks like an IPv6 address without brackets; write [address]:port, e.g. [fd00::1]:50051"
    )]
    UnbracketedIpv6(String),
    #[error("endpoint {0:?} has an unclosed '[' or a malformed IPv6 address; write [address]:port")]
    MalformedIpv6(String),
    #[error("endpoint {0:?} has characters not allowed in a host name")]
    InvalidHost(String),
}

/// Parses `host:port` (IPv6 hosts in brackets: `[::1]:50051`, host `::1`).
pub fn parse_endpoint(text: &str) -> Result<Endpoint, EndpointError> {
    if text.is_empty() {
        return Err(EndpointError::Empty);
    }
    if text.contains("://") {
        return Err(EndpointError::HasScheme(text.to_string()));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or_else(|| EndpointError::MalformedIpv6(text.to_string()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(EndpointError::MalformedIpv6(text.to_string()));
        }
        let port = after.strip_prefix(':').ok_or_else(|| EndpointError::MissingPort(text.to_string()))?;
        (host, port)
    } else {
        match text.matches(':').count() {
            0 => return Err(EndpointError::MissingPort(text.to_string())),
            1 => {}
            _ => return Err(EndpointError::UnbracketedIpv6(text.to_string())),
        }
        let (host, port) =
            text.rsplit_once(':').ok_or_else(|| EndpointError::MissingPort(text.to_string()))?;
        if host.is_empty() {
            return Err(EndpointError::MissingHost(text.to_string()));
        }
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
            return Err(EndpointError::InvalidHost(text.to_string()));
        }
        (host, port)
    };
    if port.is_empty() {
        return Err(EndpointError::MissingPort(text.to_string()));
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(EndpointError::InvalidPort { endpoint: text.to_string(), port: port.to_string() });
    }
    let number: u64 = port.parse().unwrap_or(u64::MAX);
    let port = u32::try_from(number)
        .ok()
        .filter(|port| (1..=65535).contains(port))
        .ok_or_else(|| EndpointError::PortOutOfRange { endpoint: text.to_string(), port: number })?;
    Ok(Endpoint { host: host.to_string(), port, use_tls: false })
}

/// The `Register` request for an EtlSource/EtlTransform/EtlSink (see the module docs).
pub fn register_request(
    kind: ServiceKind,
    namespace: &str,
    name: &str,
    grpc: &GrpcSpec,
) -> Result<RegisterRequest, EndpointError> {
    let endpoint = parse_endpoint(&grpc.endpoint)?;
    Ok(RegisterRequest {
        identity: Some(ServiceIdentity {
            service_id: service_id(namespace, name),
            service_type: kind.service_type().into(),
            name: name.to_string(),
            version: String::new(),
            capabilities: Vec::new(),
            group_id: String::new(),
        }),
        endpoint: Some(endpoint),
        metadata: Some(ServiceMetadata {
            labels: HashMap::from([
                (LABEL_NAMESPACE.to_string(), namespace.to_string()),
                (LABEL_KIND.to_string(), kind.as_str().to_string()),
            ]),
            record_types_handled: Vec::new(),
            max_concurrent_requests: 0,
            weight: 0,
        }),
        heartbeat_interval: None,
        sidecar_id: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DlqSpec;

    fn spec(steps: &[&str]) -> EtlPipelineSpec {
        EtlPipelineSpec {
            source: "kafka-users".into(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            sink: "clickhouse".into(),
            dlq: DlqSpec { enabled: true, max_retries: 7 },
            cluster_ref: None,
            enabled: true,
        }
    }

    #[test]
    fn router_defaults_are_not_drift_and_a_real_change_is() {
        let desired = pipeline_config("ns", "p", 2, &spec(&["a", "b"]));
        let mut defaulted = desired.clone();
        defaulted.description = "filled in by the router".into();
        defaulted.stages.iter_mut().for_each(|stage| stage.parallelism = 4);
        assert!(same_pipeline(&defaulted, &desired));
        let mut reordered = desired.clone();
        reordered.stages.swap(1, 2);
        assert!(!same_pipeline(&reordered, &desired));
        let mut retargeted = desired.clone();
        retargeted.stages[3].service_selector.as_mut().unwrap().service_name = "elsewhere".into();
        assert!(!same_pipeline(&retargeted, &desired));
        let mut dlq_changed = desired.clone();
        dlq_changed.metadata.insert(METADATA_DLQ_MAX_RETRIES.into(), "1".into());
        assert!(!same_pipeline(&dlq_changed, &desired));
        let mut disabled = desired.clone();
        disabled.enabled = false;
        assert!(!same_pipeline(&disabled, &desired));

        // The summary a router's list keeps agrees with the whole comparison.
        let summary = |config: &PipelineConfig| PipelineSummary::of(config);
        assert!(summary(&defaulted).same_shape_as(&desired));
        assert!(summary(&disabled).same_shape_as(&desired), "enabled is compared apart");
        assert!(!summary(&disabled).enabled);
        for drifted in [&reordered, &retargeted, &dlq_changed] {
            assert!(!summary(drifted).same_shape_as(&desired));
        }
        assert_eq!(summary(&desired).generation, Some(2));
        let mut relabelled = desired.clone();
        let labels = &mut relabelled.stages[0].service_selector.as_mut().unwrap().labels;
        labels.insert("another".into(), "label".into());
        assert!(!same_pipeline(&relabelled, &desired));
        assert!(!summary(&relabelled).same_shape_as(&desired));
    }

    #[test]
    fn ids_are_namespace_slash_name() {
        assert_eq!(pipeline_id("team-a", "users"), "team-a/users");
        assert_eq!(service_id("team-a", "kafka"), "team-a/kafka");
    }

    #[test]
    fn stages_run_source_steps_in_order_then_sink() {
        let config = pipeline_config("ns", "p", 4, &spec(&["filter", "enrich"]));
        let ids: Vec<_> = config.stages.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["source", "step-0", "step-1", "sink"]);
        let names: Vec<_> = config.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kafka-users", "filter", "enrich", "clickhouse"]);
        let types: Vec<_> = config.stages.iter().map(|s| s.stage_type()).collect();
        assert_eq!(types, [StageType::Source, StageType::Transform, StageType::Transform, StageType::Sink]);
        let selected: Vec<_> = config
            .stages
            .iter()
            .map(|s| s.service_selector.as_ref().unwrap().service_name.as_str())
            .collect();
        assert_eq!(selected, names);
        let selector = config.stages[0].service_selector.as_ref().unwrap();
        assert_eq!(selector.labels.get(LABEL_NAMESPACE).map(String::as_str), Some("ns"));
    }

    #[test]
    fn edges_chain_the_stages_in_order() {
        let config = pipeline_config("ns", "p", 1, &spec(&["filter", "enrich"]));
        let edges: Vec<_> =
            config.edges.iter().map(|e| (e.from_stage.as_str(), e.to_stage.as_str())).collect();
        assert_eq!(edges, [("source", "step-0"), ("step-0", "step-1"), ("step-1", "sink")]);
        let direct = pipeline_config("ns", "p", 1, &spec(&[]));
        let edges: Vec<_> =
            direct.edges.iter().map(|e| (e.from_stage.as_str(), e.to_stage.as_str())).collect();
        assert_eq!(edges, [("source", "sink")]);
    }

    #[test]
    fn dlq_and_generation_travel_in_metadata() {
        let mut pipeline = spec(&[]);
        let config = pipeline_config("ns", "p", 12, &pipeline);
        assert_eq!(config.metadata[METADATA_DLQ_ENABLED], "true");
        assert_eq!(config.metadata[METADATA_DLQ_MAX_RETRIES], "7");
        assert_eq!(config.metadata[METADATA_GENERATION], "12");
        assert_eq!(config_generation(&config), Some(12));
        pipeline.dlq = DlqSpec { enabled: false, max_retries: 0 };
        pipeline.enabled = false;
        let config = pipeline_config("ns", "p", 13, &pipeline);
        assert_eq!(config.metadata[METADATA_DLQ_ENABLED], "false");
        assert_eq!(config.metadata[METADATA_DLQ_MAX_RETRIES], "0");
        assert!(!config.enabled);
        assert_eq!(config.id, "ns/p");
        assert_eq!(config.name, "p");
    }

    #[test]
    fn same_submission_means_equal_or_same_generation() {
        let sent = pipeline_config("ns", "p", 3, &spec(&["a"]));
        let mut stored = sent.clone();
        assert!(same_submission(&stored, &sent));
        stored.description = "normalised by the router".into();
        assert!(same_submission(&stored, &sent));
        let newer = pipeline_config("ns", "p", 4, &spec(&["a"]));
        assert!(!same_submission(&newer, &sent));
        let mut no_generation = sent.clone();
        no_generation.metadata.remove(METADATA_GENERATION);
        let mut other = no_generation.clone();
        other.enabled = false;
        assert!(!same_submission(&other, &no_generation));
    }

    #[test]
    fn endpoints_parse_host_and_port() {
        let endpoint = parse_endpoint("kafka-source-svc:50051").unwrap();
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port, endpoint.use_tls),
            ("kafka-source-svc", 50051, false)
        );
        let endpoint = parse_endpoint("10.0.0.7:1").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("10.0.0.7", 1));
        let endpoint = parse_endpoint("[::1]:50051").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("::1", 50051));
        let endpoint = parse_endpoint("[fd00::1]:65535").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("fd00::1", 65535));
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        let cases = [
            ("", EndpointError::Empty),
            ("host", EndpointError::MissingPort("host".into())),
            ("host:", EndpointError::MissingPort("host:".into())),
            (":50051", EndpointError::MissingHost(":50051".into())),
            (
                "host:notaport",
                EndpointError::InvalidPort { endpoint: "host:notaport".into(), port: "notaport".into() },
            ),
            ("host:0", EndpointError::PortOutOfRange { endpoint: "host:0".into(), port: 0 }),
            ("host:65536", EndpointError::PortOutOfRange { endpoint: "host:65536".into(), port: 65536 }),
            ("::1:50051", EndpointError::UnbracketedIpv6("::1:50051".into())),
            ("[::1]", EndpointError::MissingPort("[::1]".into())),
            ("[::1:50051", EndpointError::MalformedIpv6("[::1:50051".into())),
            ("[not-ip]:1", EndpointError::MalformedIpv6("[not-ip]:1".into())),
            ("http://host:1", EndpointError::HasScheme("http://host:1".into())),
            ("my host:1", EndpointError::InvalidHost("my host:1".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_endpoint(text), Err(expected), "{text:?}");
        }
        let message = parse_endpoint("host:notaport").unwrap_err().to_string();
        assert!(message.contains("not a number"), "{message}");
        let message = parse_endpoint("host").unwrap_err().to_string();
        assert!(message.contains("no port"), "{message}");
        let huge = parse_endpoint("host:99999999999999999999999").unwrap_err();
        assert!(matches!(huge, EndpointError::PortOutOfRange { .. }), "{huge:?}");
    }

    #[test]
    fn register_request_carries_identity_endpoint_and_labels() {
        let grpc = GrpcSpec { endpoint: "kafka-source-svc:50051".into() };
        let request = register_request(ServiceKind::Source, "team-a", "kafka-users", &grpc).unwrap();
        let identity = request.identity.unwrap();
        assert_eq!(identity.service_id, "team-a/kafka-users");
        assert_eq!(identity.name, "kafka-users");
        assert_eq!(identity.service_type(), ServiceType::Source);
        let endpoint = request.endpoint.unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("kafka-source-svc", 50051));
        let labels = request.metadata.unwrap().labels;
        assert_eq!(labels[LABEL_NAMESPACE], "team-a");
        assert_eq!(labels[LABEL_KIND], "source");

        for (kind, expected) in
            [(ServiceKind::Transform, ServiceType::Transform), (ServiceKind::Sink, ServiceType::Sink)]
        {
            let request = register_request(kind, "ns", "x", &grpc).unwrap();
            assert_eq!(request.identity.unwrap().service_type(), expected);
        }
        let bad = GrpcSpec { endpoint: "kafka-source-svc".into() };
        assert_eq!(
            register_request(ServiceKind::Sink, "ns", "x", &bad),
            Err(EndpointError::MissingPort("kafka-source-svc".into()))
        );
    }
}
