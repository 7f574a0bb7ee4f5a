//! Installing the operator's CRDs and ClusterRole on a test control plane, as
//! the demo, the benchmark and the chaos suite do before starting it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{Client, ResourceExt};

use conveyor_etl_operator::controller::ensure_crds_installed;
use conveyor_etl_operator::crd;

use crate::control_plane::OPERATOR_USER;

const FIELD_MANAGER: &str = "conveyor-demo";
const CLUSTER_ROLE: &str = include_str!("../../../deploy/rbac/cluster-role.yaml");

/// Applies every CRD and waits until the API server serves them all.
pub async fn install_crds(admin: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for definition in crd::all() {
        api.patch(
            &definition.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&definition),
        )
        .await
        .with_context(|| format!("cannot apply CRD {}", definition.name_any()))?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ensure_crds_installed(admin).await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => return Err(error.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // poll interval
        }
    }
}

/// Applies the operator's ClusterRole and binds it to [`OPERATOR_USER`].
pub async fn install_rbac(admin: &Client) -> anyhow::Result<()> {
    let role: ClusterRole = serde_norway::from_str(CLUSTER_ROLE).context("deploy/rbac/cluster-role.yaml")?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<ClusterRole>::all(admin.clone())
        .patch(&role.name_any(), &params, &Patch::Apply(&role))
        .await
        .context("cannot apply the operator's ClusterRole")?;
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some("conveyor-etl-operator-demo".into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.name_any(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: OPERATOR_USER.into(),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(&binding.name_any(), &params, &Patch::Apply(&binding))
        .await
        .context("cannot bind the operator's ClusterRole")?;
    Ok(())
}
