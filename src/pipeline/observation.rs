//! What one reconcile saw of a pipeline: plain data read by the pure `assess`.

/// The router cluster the pipeline runs on, as resolved from its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterView {
    /// Several to choose from and no `clusterRef`; the sentence names them.
    Unresolved(String),
    /// None in the namespace, or the named one not there; the sentence says which.
    Absent(String),
    NotReady {
        name: String,
    },
    Ready {
        name: String,
    },
}

/// How a referenced service stands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    Missing,
    /// Exists but not registered with the router (not Ready).
    NotReady,
    /// Registered, but the router reports it unhealthy; the router's words.
    Unhealthy(String),
    Ready,
}

/// One source, step or sink the pipeline names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `source`, `step 1`, ..., `sink`.
    pub role: String,
    /// `EtlSource`, `EtlTransform` or `EtlSink`.
    pub kind: &'static str,
    pub name: String,
    pub state: ServiceState,
    /// Where the service is registered, once it is.
    pub assignment: Option<Assignment>,
}

/// Where a registered service listens and which partitions the router gave it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    pub endpoint: String,
    pub partitions: Vec<u32>,
}

/// The router's copy of the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterCopy {
    /// No member answered; the client's words.
    Unreachable(String),
    /// The router build lacks RouterAdmin.
    Unimplemented(String),
    Absent,
    /// A pipeline with this id that this operator did not submit (no
    /// generation marker): left alone.
    Foreign,
    Present {
        /// The EtlPipeline generation the router's copy was made from.
        generation: Option<i64>,
        enabled: bool,
        /// Whether its config is exactly what this generation builds.
        matches: bool,
    },
}

/// The cluster the status records the pipeline on, when the spec now
/// resolves to another: the pipeline leaves it before it is submitted there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaving {
    pub from: String,
    /// The recorded cluster no longer exists (or is being deleted): nothing
    /// is left on it to remove.
    pub gone: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub generation: i64,
    /// `spec.enabled`.
    pub enabled: bool,
    pub cluster: ClusterView,
    /// In pipeline order: source, steps, sink.
    pub references: Vec<Reference>,
    /// `None` when the router was not asked (no Ready cluster).
    pub router: Option<RouterCopy>,
    /// Set while the pipeline moves away from the cluster its status records.
    pub leaving: Option<Leaving>,
    /// The pipeline is younger than the reference grace: a cluster or
    /// service absent from the caches may be on its way, not missing.
    pub arriving: bool,
}
