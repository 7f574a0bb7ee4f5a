use crate::router::RouterError;
use crate::router_cluster::build::BuildError;

/// Everything a reconcile can fail with. `label` names the variant for
/// metrics, `reason` for conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("router request failed: {0}")]
    Router(#[from] RouterError),
    #[error("cannot build the desired objects: {0}")]
    Build(#[from] BuildError),
    #[error("the object has no {0}")]
    MissingField(&'static str),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Router(error) => error.label(),
            Error::Build(_) => "build",
            Error::MissingField(_) => "missing_field",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// PascalCase reason for the `Synced` condition and the Warning Event.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "Forbidden",
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(_) => "KubernetesApiError",
            Error::Router(error) => error.reason(),
            Error::Build(_) => "BuildFailed",
            Error::MissingField(_) => "InvalidObject",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }
}
