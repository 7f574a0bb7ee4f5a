//! What one reconcile saw of a cluster: plain data gathered by `observe`,
//! read by the pure `assess`.

/// The StatefulSet as the API server has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatefulSetState {
    pub replicas: i32,
    /// Revision of the current pod template (`status.updateRevision`).
    pub update_revision: Option<String>,
    /// False while the StatefulSet controller has not seen the latest spec.
    pub up_to_date: bool,
    /// Whether every owned object is exactly what this generation's spec
    /// builds at the current size: until then, pods cannot be on its template.
    pub spec_applied: bool,
}

/// One router pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// Tells this incarnation of the pod from one recreated under its name.
    pub uid: String,
    pub ordinal: u32,
    pub ready: bool,
    pub ip: Option<String>,
    /// The pod's `controller-revision-hash` label.
    pub revision: Option<String>,
    pub terminating: bool,
}

/// A router's answer to `GetClusterStatus`, reduced to what the operator uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterView {
    pub node_id: u64,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub members: Vec<MemberView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub node_id: u64,
    pub role: Role,
    pub healthy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "Leader",
            Role::Follower => "Follower",
            Role::Candidate => "Candidate",
            Role::Learner => "Learner",
            Role::Unknown => "Unknown",
        }
    }
}

/// The health poll of one ready pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub pod: String,
    pub outcome: Result<RouterView, String>,
}

/// Everything `assess` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub cluster_name: String,
    /// `metadata.generation` of the cluster.
    pub generation: i64,
    /// The pause annotation is set: nothing is applied, rolled or scaled.
    pub paused: bool,
    /// `spec.replicas`: where stepwise scaling is heading.
    pub target_replicas: i32,
    pub spec_errors: Vec<String>,
    pub stateful_set: Option<StatefulSetState>,
    /// Sorted by ordinal.
    pub pods: Vec<PodState>,
    /// One per ready pod with an IP whose router may serve `RouterAdmin`.
    pub probes: Vec<Probe>,
    /// Ready pods whose router serves no `RouterAdmin` (`GetClusterStatus`
    /// answered UNIMPLEMENTED, in this reconcile or an earlier one).
    pub without_admin: Vec<String>,
    /// When no member's health could be read and some serve no `RouterAdmin`:
    /// whether `ServiceRegistry` answers, standing in for the health poll.
    pub registry_check: Option<Result<(), String>>,
}
