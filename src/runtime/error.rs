use crate::router::RouterError;

/// What every error a reconcile can end in tells: a PascalCase reason for the
/// `Synced` condition and the Warning Event, and a short label for metrics.
pub trait Reason {
    fn reason(&self) -> &'static str;
    fn label(&self) -> &'static str;
}

/// Everything a reconcile of any kind can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {}", api_message(.0))]
    Kube(#[from] kube::Error),
    #[error("router request failed: {0}")]
    Router(#[from] RouterError),
    #[error("the object is invalid: {0}")]
    InvalidObject(String),
    #[error(
        "{kind} {name} already exists and is not owned by this resource (it belongs to {owner}); \
         the operator leaves it alone: rename this resource or delete that object"
    )]
    NotOwned { kind: &'static str, name: String, owner: String },
    #[error("the API server rejected {kind} {name}: {message}")]
    Rejected { kind: String, name: String, message: String },
    #[error(
        "{kind} {name} is still referenced by {holders}; it is deregistered and deleted once no pipeline \
         references it"
    )]
    InUse { kind: String, name: String, holders: String },
    #[error(
        "EtlRouterCluster {name} is deleted once {dependants} have left its router (their own deletion takes them off it)"
    )]
    StillOnRouter { name: String, dependants: String },
    #[error(
        "the operator's watch caches have not finished their first lists within {0:?}: check that the API \
         server answers and that the operator may list and watch what it manages; retrying"
    )]
    CachesNotSynced(std::time::Duration),
    #[error("{}", finalizer_message(.0))]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// An error the kind already wrote to status (with its health) and
    /// reported with an Event; the runtime only retries it.
    #[error(transparent)]
    Reported(Box<Error>),
}

/// The API server's own sentence for a refused request (it names the verb,
/// the resource and the user), without the client's debug dump around it.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({} {})", status.message, status.code, status.reason),
        other => other.to_string(),
    }
}

/// A failed finalizer patch in the API server's words, naming the finalizer.
fn finalizer_message(error: &kube::runtime::finalizer::Error<Error>) -> String {
    use crate::runtime::reconciler::FINALIZER;
    use kube::runtime::finalizer::Error as Finalizer;
    match error {
        Finalizer::AddFinalizer(error) => {
            format!("could not add the finalizer {FINALIZER}: {}", api_message(error))
        }
        Finalizer::RemoveFinalizer(error) => {
            format!("could not remove the finalizer {FINALIZER}: {}", api_message(error))
        }
        other => format!("finalizer: {other}"),
    }
}

impl Reason for Error {
    fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Router(error) => error.label(),
            Error::InvalidObject(_) => "invalid_object",
            Error::NotOwned { .. } => "not_owned",
            Error::Rejected { .. } => "rejected",
            Error::InUse { .. } => "in_use",
            Error::StillOnRouter { .. } => "still_on_router",
            Error::CachesNotSynced(_) => "caches_not_synced",
            Error::Finalizer(_) => "finalizer",
            Error::Reported(error) => error.label(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "Forbidden",
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(_) => "KubernetesApiError",
            Error::Router(error) => error.reason(),
            Error::InvalidObject(_) => "InvalidObject",
            Error::NotOwned { .. } => "ObjectOwnedElsewhere",
            Error::Rejected { .. } => "SpecRejected",
            Error::InUse { .. } => "InUseByPipelines",
            Error::StillOnRouter { .. } => "DependantsOnRouter",
            Error::CachesNotSynced(_) => "CachesNotSynced",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::Reported(error) => error.reason(),
        }
    }
}

impl Error {
    pub fn label(&self) -> &'static str {
        Reason::label(self)
    }

    pub fn reason(&self) -> &'static str {
        Reason::reason(self)
    }

    /// A 422 from the API server becomes [`Error::Rejected`], naming the object,
    /// so the condition says what was refused instead of a retried status code.
    pub fn from_apply(error: kube::Error, kind: &str, name: &str) -> Error {
        match error {
            kube::Error::Api(status) if status.code == 422 => Error::Rejected {
                kind: kind.to_owned(),
                name: name.to_owned(),
                message: status.message.clone(),
            },
            other => Error::Kube(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("refused", "Invalid").with_code(code)))
    }

    #[test]
    fn reasons_are_pascal_case_and_name_the_cause() {
        assert_eq!(Error::Kube(api_error(403)).reason(), "Forbidden");
        assert_eq!(
            Error::Kube(api_error(403)).to_string(),
            "Kubernetes API request failed: refused (403 Invalid)"
        );
        assert_eq!(Error::Kube(api_error(500)).reason(), "KubernetesApiError");
        let rejected = Error::from_apply(api_error(422), "StatefulSet", "c");
        assert_eq!((rejected.reason(), rejected.label()), ("SpecRejected", "rejected"));
        assert!(rejected.to_string().contains("StatefulSet c"), "{rejected}");
        let refused =
            Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(api_error(422))));
        assert_eq!(refused.reason(), "FinalizerFailed");
        assert_eq!(
            refused.to_string(),
            "could not add the finalizer conveyor.etl/cleanup: refused (422 Invalid)",
            "the server's sentence, without the client's dump"
        );
        let owned =
            Error::NotOwned { kind: "Service", name: "a-raft".into(), owner: "EtlRouterCluster a".into() };
        assert_eq!(owned.reason(), "ObjectOwnedElsewhere");
        assert!(
            owned.to_string().contains("Service a-raft") && owned.to_string().contains("EtlRouterCluster a")
        );
    }
}
