//! Pod evictions through the `policy/v1` Eviction subresource, which honours
//! the pods' PodDisruptionBudgets.
//!
//! The body is k8s-openapi's typed `Eviction`, posted with
//! `Api::create_subresource`, rather than kube's `Api::evict`: kube 4.2
//! sends the delete options as `delete_options`, a field the API server does
//! not know and drops, so its uid precondition would never be checked.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta, Preconditions};
use kube::api::PostParams;
use kube::core::Status;
use kube::{Api, Client, ResourceExt};

use super::Error;

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

/// The Eviction of `pod`, valid only for that incarnation of it (a uid
/// precondition), so a pod recreated under the same name is never hit.
pub fn eviction(pod: &Pod) -> Eviction {
    Eviction {
        metadata: ObjectMeta {
            name: Some(pod.name_any()),
            namespace: pod.namespace(),
            ..ObjectMeta::default()
        },
        delete_options: Some(DeleteOptions {
            preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
            ..DeleteOptions::default()
        }),
    }
}

/// Evicts `pod` through the Eviction subresource, honouring its disruption budgets.
pub async fn evict(client: &Client, pod: &Pod) -> Result<Evicted, Error> {
    let namespace = pod.namespace().ok_or_else(|| Error::InvalidObject("pod without a namespace".into()))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let posted = pods
        .create_subresource::<_, Status>("eviction", &pod.name_any(), &PostParams::default(), &eviction(pod))
        .await;
    match posted {
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
    fn the_eviction_body_is_policy_v1_with_the_pods_uid_as_precondition() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("c-2".into());
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.uid = Some("uid-7".into());
        let body = serde_json::to_value(eviction(&pod)).unwrap();
        assert_eq!(body["apiVersion"], "policy/v1");
        assert_eq!(body["kind"], "Eviction");
        assert_eq!(body["metadata"]["name"], "c-2");
        assert_eq!(body["metadata"]["namespace"], "ns");
        // The API server's field name: another spelling would be dropped unread.
        assert_eq!(body["deleteOptions"]["preconditions"]["uid"], "uid-7");
    }
}
