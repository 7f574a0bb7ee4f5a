//! The public router's configuration file, as `conveyor-etl-router --config`
//! reads it: YAML with the sections `cluster`, `buffer`, `grpc` and `metrics`,
//! every field required (a file that misses one or uses another name fails to
//! deserialize, and the router then logs a warning and runs on its built-in
//! defaults, so `spec.raft` would be silently ignored).
//!
//! Read from the router's source (repository alexchoi0/conveyor; the field
//! names are those of its `ClusterSettings`, `BufferSettings`, `GrpcSettings`
//! and `MetricsSettings`): `crates/etl-raft/src/node.rs` reads
//! `election_timeout_min_ms`, `election_timeout_max_ms`,
//! `heartbeat_interval_ms` and `max_entries_per_append` from the `cluster`
//! section; `crates/etl-buffer/src/manager.rs` reads `max_total_records`,
//! `max_per_stage`, `max_per_source` and `backpressure_threshold`, with the
//! defaults 100000, 10000, 5000 and 0.8 (`BufferManager::default`);
//! `crates/conveyor-config/README.md` gives `snapshot_interval` 10000, a
//! 16 MiB `max_message_size`, keepalive 30 s / 10 s and metrics on port 9090.
//! The remaining defaults, which the stored source does not show, are the
//! operator's: `max_entries_per_append` 300 (openraft's `max_payload_entries`
//! default) and `backpressure_resume_threshold` 0.5.
//!
//! The operator writes this file (`conveyor_etl_operator::router_cluster::build`); the
//! simulator (`conveyor-router-sim`) reads it with [`parse_strict`], which
//! refuses a missing or unknown field by name.

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    pub cluster: ClusterSection,
    pub buffer: BufferSection,
    pub grpc: GrpcSection,
    pub metrics: MetricsSection,
}

/// `cluster`: Raft timing and log shipping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Each election timeout is drawn between the min and the max.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Log entries between snapshots.
    pub snapshot_interval: u64,
    pub max_entries_per_append: u64,
}

/// `buffer`: how many records the router holds, and when it pushes back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSection {
    pub max_total_records: u64,
    pub max_per_source: u64,
    pub max_per_stage: u64,
    /// Fraction of a buffer above which sources are asked to slow down.
    pub backpressure_threshold: f64,
    /// Fraction below which they may resume.
    pub backpressure_resume_threshold: f64,
}

/// `grpc`: limits of the router's gRPC server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcSection {
    pub max_message_size: u64,
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
}

/// `metrics`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub enabled: bool,
    /// `ip:port` the metrics server listens on.
    pub listen_addr: String,
}

pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10_000;
pub const DEFAULT_MAX_ENTRIES_PER_APPEND: u64 = 300;
pub const DEFAULT_MAX_TOTAL_RECORDS: u64 = 100_000;
pub const DEFAULT_MAX_PER_SOURCE: u64 = 5_000;
pub const DEFAULT_MAX_PER_STAGE: u64 = 10_000;
pub const DEFAULT_BACKPRESSURE_THRESHOLD: f64 = 0.8;
pub const DEFAULT_BACKPRESSURE_RESUME_THRESHOLD: f64 = 0.5;
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 16 * 1024 * 1024;
pub const DEFAULT_KEEPALIVE_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_KEEPALIVE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_METRICS_PORT: u16 = 9090;

/// The file's sections and their fields, exactly as the router spells them.
pub const SCHEMA: [(&str, &[&str]); 4] = [
    (
        "cluster",
        &[
            "election_timeout_min_ms",
            "election_timeout_max_ms",
            "heartbeat_interval_ms",
            "snapshot_interval",
            "max_entries_per_append",
        ],
    ),
    (
        "buffer",
        &[
            "max_total_records",
            "max_per_source",
            "max_per_stage",
            "backpressure_threshold",
            "backpressure_resume_threshold",
        ],
    ),
    ("grpc", &["max_message_size", "keepalive_interval_secs", "keepalive_timeout_secs"]),
    ("metrics", &["enabled", "listen_addr"]),
];

/// Parses a configuration file, refusing anything the router would not read
/// as written: a missing section or field, an unknown one, a wrong type. The
/// error names the field (`cluster: missing field `snapshot_interval``).
pub fn parse_strict(yaml: &str) -> Result<RouterConfig, String> {
    serde_norway::from_str(yaml).map_err(|error| error.to_string())
}

impl RouterConfig {
    /// The file as YAML.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("RouterConfig serialises to YAML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> RouterConfig {
        RouterConfig {
            cluster: ClusterSection {
                election_timeout_min_ms: 300,
                election_timeout_max_ms: 600,
                heartbeat_interval_ms: 100,
                snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
                max_entries_per_append: DEFAULT_MAX_ENTRIES_PER_APPEND,
            },
            buffer: BufferSection {
                max_total_records: DEFAULT_MAX_TOTAL_RECORDS,
                max_per_source: DEFAULT_MAX_PER_SOURCE,
                max_per_stage: DEFAULT_MAX_PER_STAGE,
                backpressure_threshold: DEFAULT_BACKPRESSURE_THRESHOLD,
                backpressure_resume_threshold: DEFAULT_BACKPRESSURE_RESUME_THRESHOLD,
            },
            grpc: GrpcSection {
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                keepalive_interval_secs: DEFAULT_KEEPALIVE_INTERVAL_SECS,
                keepalive_timeout_secs: DEFAULT_KEEPALIVE_TIMEOUT_SECS,
            },
            metrics: MetricsSection { enabled: true, listen_addr: "0.0.0.0:9090".into() },
        }
    }

    #[test]
    fn a_written_file_reads_back_and_has_exactly_the_schema_keys() {
        let yaml = example().to_yaml();
        assert_eq!(parse_strict(&yaml), Ok(example()));
        let value: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        let sections: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = SCHEMA.iter().map(|(section, _)| *section).collect();
        expected.sort_unstable();
        let mut sections = sections;
        sections.sort_unstable();
        assert_eq!(sections, expected);
        for (section, fields) in SCHEMA {
            let mut keys: Vec<&str> =
                value[section].as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut fields = fields.to_vec();
            fields.sort_unstable();
            assert_eq!(keys, fields, "{section}");
        }
    }

    #[test]
    fn a_missing_or_unknown_field_is_refused_by_name() {
        let yaml = example().to_yaml();
        let missing = yaml.replace("  snapshot_interval: 10000\n", "");
        let error = parse_strict(&missing).unwrap_err();
        assert!(error.contains("snapshot_interval"), "{error}");
        let unknown = yaml.replace("heartbeat_interval_ms:", "heartbeatIntervalMs:");
        let error = parse_strict(&unknown).unwrap_err();
        assert!(error.contains("heartbeatIntervalMs"), "{error}");
        let old =
            "electionTimeoutMs: 300\nheartbeatIntervalMs: 100\ngrpcPort: 50051\nraftPort: 50052\npeers: []\n";
        assert!(parse_strict(old).is_err());
        let no_metrics: String = yaml.split("metrics:").next().unwrap().to_owned();
        let error = parse_strict(&no_metrics).unwrap_err();
        assert!(error.contains("metrics"), "{error}");
    }
}
