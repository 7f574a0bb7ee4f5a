//! The `policy` API group in whichever version the server serves, for
//! PodDisruptionBudgets and pod Evictions. Kubernetes 1.20 serves only
//! `policy/v1beta1` (and refuses a `policy/v1` Eviction body with "no kind
//! Eviction is registered for version policy/v1"), while the k8s-openapi
//! `v1_32` types know only `policy/v1` (served from 1.21). The fields the
//! operator sets are the same in both, so it sends dynamic objects.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PdbApi {
    /// `policy/v1`, Kubernetes 1.21 and later.
    V1,
    /// `policy/v1beta1`, Kubernetes 1.20 (removed in 1.25).
    V1Beta1,
}

impl PdbApi {
    /// The group version: `policy/v1` or `policy/v1beta1`.
    pub fn api_version(self) -> &'static str {
        match self {
            PdbApi::V1 => "policy/v1",
            PdbApi::V1Beta1 => "policy/v1beta1",
        }
    }

    /// Which version the server serves, asked once at start-up.
    pub async fn discover(client: &Client) -> Result<PdbApi, kube::Error> {
        match client.list_api_group_resources("policy/v1").await {
            Ok(list) if list.resources.iter().any(|r| r.name == "poddisruptionbudgets") => Ok(PdbApi::V1),
            Ok(_) => Ok(PdbApi::V1Beta1),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(PdbApi::V1Beta1),
            Err(error) => Err(error),
        }
    }

    /// The body of an Eviction of `pod`, valid only for that incarnation of it
    /// (a uid precondition), so a pod recreated under the same name is never hit.
    pub fn eviction(self, pod: &Pod) -> serde_json::Value {
        json!({
            "apiVersion": self.api_version(),
            "kind": "Eviction",
            "metadata": { "name": pod.name_any(), "namespace": pod.namespace() },
            "deleteOptions": { "preconditions": { "uid": pod.uid() } },
        })
    }
}

/// The `ApiResource` of PodDisruptionBudgets in the given version, for `Api::<DynamicObject>`.
pub fn pdb_api_resource(api: PdbApi) -> ApiResource {
    let version = match api {
        PdbApi::V1 => "v1",
        PdbApi::V1Beta1 => "v1beta1",
    };
    ApiResource {
        group: "policy".to_owned(),
        version: version.to_owned(),
        api_version: api.api_version().to_owned(),
        kind: "PodDisruptionBudget".to_owned(),
        plural: "poddisruptionbudgets".to_owned(),
    }
}

/// What became of an eviction request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evicted {
    /// The pod is being deleted.
    Yes,
    /// A PodDisruptionBudget refused it for now (HTTP 429); try again later.
    Refused(String),
    /// The pod was already gone or replaced (404, or the uid precondition failed).
    Gone,
}

/// Evicts `pod` through the Eviction subresource, honouring its disruption budgets.
pub async fn evict(client: &Client, api: PdbApi, pod: &Pod) -> Result<Evicted, Error> {
    let namespace = pod.namespace().ok_or_else(|| Error::InvalidObject("pod without a namespace".into()))?;
    let url = format!("/api/v1/namespaces/{namespace}/pods/{}/eviction", pod.name_any());
    let body = serde_json::to_vec(&api.eviction(pod)).map_err(|e| Error::InvalidObject(e.to_string()))?;
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| Error::InvalidObject(e.to_string()))?;
    match client.request_text(request).await {
        Ok(_) => Ok(Evicted::Yes),
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(Evicted::Refused(status.message.clone())),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(Evicted::Gone),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_body_names_the_version_and_the_pods_uid() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("c-2".into());
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.uid = Some("uid-7".into());
        let body = PdbApi::V1Beta1.eviction(&pod);
        assert_eq!(body["apiVersion"], "policy/v1beta1");
        assert_eq!(body["kind"], "Eviction");
        assert_eq!(body["metadata"]["name"], "c-2");
        assert_eq!(body["deleteOptions"]["preconditions"]["uid"], "uid-7");
        assert_eq!(PdbApi::V1.eviction(&pod)["apiVersion"], "policy/v1");
    }

    #[test]
    fn resources_per_version() {
        assert_eq!(pdb_api_resource(PdbApi::V1).api_version, "policy/v1");
        assert_eq!(pdb_api_resource(PdbApi::V1Beta1).version, "v1beta1");
        assert_eq!(pdb_api_resource(PdbApi::V1Beta1).plural, "poddisruptionbudgets");
    }
}
