//! Server-side apply of owned objects, after checking they are ours.
//!
//! An object the operator would apply may already exist and belong to
//! someone else: another resource whose derived name collides, or something a
//! person created. Forcing an apply over it would silently take it over, and
//! two owners would rewrite it back and forth. So the reconciler first checks
//! every object it is about to apply with [`check_owned`]; only objects that
//! are absent or controlled by this resource are applied, and only those are
//! applied with `force` (to take back fields a person edited by hand). A
//! name the owned caches do not hold is checked on the server first
//! ([`check_owned_on_server`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, FIELD_MANAGER};

/// The controller owner reference of an object, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_deref().unwrap_or_default().iter().find(|r| r.controller == Some(true))
}

/// Ok when `live` is absent or controlled by the owner with uid `owner_uid`;
/// otherwise an error naming the object and whoever controls it.
pub fn check_owned(
    kind: &'static str,
    name: &str,
    live: Option<&ObjectMeta>,
    owner_uid: &str,
) -> Result<(), Error> {
    let Some(meta) = live else { return Ok(()) };
    match controller_of(meta) {
        Some(owner) if owner.uid == owner_uid => Ok(()),
        Some(owner) => Err(Error::NotOwned {
            kind,
            name: name.to_owned(),
            owner: format!("{} {}", owner.kind, owner.name),
        }),
        None => Err(Error::NotOwned {
            kind,
            name: name.to_owned(),
            owner: "no controller: it was created outside the operator".to_owned(),
        }),
    }
}

/// [`check_owned`] against the server, for a name the owned caches do not
/// hold: they see only objects labelled as the operator's, so an object a
/// person created under that name is there but invisible to them. One
/// metadata read, made only while the caches lack the name.
pub async fn check_owned_on_server<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    owner_uid: &str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let live = api.get_metadata_opt(name).await?;
    check_owned(kind, name, live.as_ref().map(|object| &object.metadata), owner_uid)
}

/// Server-side applies `object` as the operator's field manager. Call it only
/// for objects [`check_owned`] accepted.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = object.meta().name.clone().ok_or_else(|| Error::InvalidObject("no metadata.name".into()))?;
    let kind = serde_json::to_value(object)
        .ok()
        .and_then(|value| value.get("kind")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "object".to_owned());
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|error| Error::from_apply(error, &kind, &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_by(uid: &str, kind: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "conveyor.etl/v1".into(),
                kind: kind.into(),
                name: name.into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn absent_or_own_objects_pass_and_others_are_named() {
        assert!(check_owned("Service", "a-raft", None, "uid-b").is_ok());
        assert!(
            check_owned("Service", "a-raft", Some(&owned_by("uid-b", "EtlRouterCluster", "a-raft")), "uid-b")
                .is_ok()
        );
        let error =
            check_owned("Service", "a-raft", Some(&owned_by("uid-a", "EtlRouterCluster", "a")), "uid-b")
                .unwrap_err();
        assert_eq!(error.reason(), "ObjectOwnedElsewhere");
        let message = error.to_string();
        assert!(message.contains("Service a-raft") && message.contains("EtlRouterCluster a"), "{message}");
        let orphan = check_owned("ConfigMap", "x", Some(&ObjectMeta::default()), "uid-b").unwrap_err();
        assert!(orphan.to_string().contains("created outside the operator"), "{orphan}");
    }
}
