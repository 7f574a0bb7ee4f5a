//! PersistentVolumes for the pods' claims: there is no provisioner here.

use std::fs;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::PostParams;
use kube::{Api, Client};

use super::RealNode;

impl RealNode {
    /// `count` PersistentVolumes `<prefix>-<i>` of `size` and class `class`,
    /// each a folder in the node's directory (removed with it): there is no
    /// provisioner here, so claims bind to these. The folders are writable
    /// by anyone (a hostPath volume takes no fsGroup; router pods run as a
    /// non-root user).
    pub async fn create_volumes(
        &self,
        client: &Client,
        prefix: &str,
        count: usize,
        size: &str,
        class: &str,
    ) -> Result<(), String> {
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        for index in 0..count {
            let name = format!("{prefix}-{index}");
            let path = self.dir.join("volumes").join(&name);
            fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .map_err(|e| e.to_string())?;
            let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
                "metadata": { "name": name },
                "spec": {
                    "capacity": { "storage": size },
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": class,
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": { "path": path.display().to_string(), "type": "Directory" }
                }
            }))
            .map_err(|e| e.to_string())?;
            volumes
                .create(&PostParams::default(), &volume)
                .await
                .map_err(|e| format!("cannot create {name}: {e}"))?;
        }
        Ok(())
    }
}
