use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

use crate::crd;

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot connect to the Kubernetes API (check KUBECONFIG or the in-cluster service account): {0}")]
    Connect(#[source] kube::Error),
    #[error("cannot serve the HTTP endpoint (metrics, health): {0}")]
    Http(#[source] std::io::Error),
    #[error("cannot read CustomResourceDefinitions: {0}")]
    ReadCrds(#[source] kube::Error),
    #[error(
        "the CustomResourceDefinitions {missing:?} are not installed or not established; install them with \
         `kubectl apply -f deploy/crds/crds.yaml` (or `conveyor-etl-operator crds | kubectl apply -f -`)"
    )]
    CrdsMissing { missing: Vec<String> },
    #[error("invalid leader election settings: {0}")]
    LeaderElection(String),
    #[error("{0}; exiting so that this replica restarts as a standby")]
    LeaseLost(#[source] super::leader::LeaseLost),
}

/// Fails with a hint naming every CRD of this operator that is missing or not yet Established.
pub async fn ensure_crds_installed(client: &Client) -> Result<(), StartupError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    for wanted in crd::all() {
        let name = wanted.metadata.name.clone().unwrap_or_default();
        let installed = api.get_opt(&name).await.map_err(StartupError::ReadCrds)?;
        if !installed.as_ref().is_some_and(is_established) {
            missing.push(name);
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(StartupError::CrdsMissing { missing }) }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}
