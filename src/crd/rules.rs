//! CEL rules (`x-kubernetes-validations`) that make the API server refuse, at
//! apply time, what `router_cluster::validate` reports as an error condition,
//! in the same words. CEL came with Kubernetes 1.25, `messageExpression` with
//! 1.27 and `fieldPath` with 1.28. The operator's own check stays, for objects
//! stored before these rules.
//!
//! No rule sits under a list, so each is estimated once. Messages show
//! integers as `string(dyn(x))`: the API server's cost estimator gives
//! `string(int)` no size bound, and a message concatenating it is refused as
//! too costly; through `dyn` it is estimated bounded (CEL's `format` would
//! need Kubernetes ≥1.30).
//!
//! A status write is validated against the whole object. From Kubernetes 1.30
//! validation ratcheting only warns about a rule broken by a field that did
//! not change, so a cluster stored with a broken rule still shows its
//! condition; before 1.30 its status writes are refused until it is fixed.

use kube::core::{Message, Rule};

use super::MAX_CLUSTER_NAME_LENGTH as MAX_NAME_LENGTH;

/// Root of `EtlRouterCluster`: the name fits what is derived from it. Checked
/// while the object has no status, i.e. at create (the API server drops a
/// created object's status) and until the operator first reports; the name
/// cannot change afterwards, and a cluster stored before this rule takes the
/// operator's status writes, then spec updates.
pub fn cluster_name() -> Rule {
    Rule::new(format!("has(self.status) || size(self.metadata.name) <= {MAX_NAME_LENGTH}")).message(
        Message::Expression(format!(
            "'metadata.name is ' + string(dyn(size(self.metadata.name))) + \" characters; a router cluster's name \
             may have at most {MAX_NAME_LENGTH} so the names derived from it fit Kubernetes' limits\""
        )),
    )
}

/// `spec.raft`: the leader's heartbeat comes before a follower's election timeout.
pub fn raft() -> Vec<Rule> {
    vec![
        Rule::new("self.heartbeatIntervalMs < self.electionTimeoutMs")
            .message(Message::Expression(
                "'spec.raft.heartbeatIntervalMs (' + string(dyn(self.heartbeatIntervalMs)) + \
                 ') must be below spec.raft.electionTimeoutMs (' + string(dyn(self.electionTimeoutMs)) + ')'"
                    .into(),
            ))
            .field_path(".heartbeatIntervalMs"),
    ]
}

/// `spec.ports`: the three ports differ pairwise.
pub fn ports() -> Vec<Rule> {
    [("grpc", "raft"), ("grpc", "metrics"), ("raft", "metrics")]
        .into_iter()
        .map(|(a, b)| {
            Rule::new(format!("self.{a} != self.{b}"))
                .message(Message::Expression(format!(
                    "'spec.ports.{a} and spec.ports.{b} must differ (both are ' + string(dyn(self.{a})) + ')'"
                )))
                .field_path(format!(".{b}"))
        })
        .collect()
}

/// The sizes `router_cluster::validate` accepts: digits and one of its
/// suffixes. A quantity is an int-or-string, hence `string(...)`.
const SIZE_PATTERN: &str = "^[0-9]+(k|M|G|T|Ki|Mi|Gi|Ti)?$";

/// `spec.storage`: the size is a positive quantity.
pub fn storage() -> Vec<Rule> {
    vec![
        Rule::new(format!(
            "string(self.size).matches('{SIZE_PATTERN}') && !string(self.size).matches('^0+[^0-9]*$')"
        ))
        .message(Message::Expression(
            "'spec.storage.size (\"' + string(self.size) + '\") must be a positive quantity such as 10Gi'"
                .into(),
        ))
        .field_path(".size"),
    ]
}
