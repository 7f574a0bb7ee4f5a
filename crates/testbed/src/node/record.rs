//! The machine as it was before the node started: the sysctls the kubelet or
//! the CNI plugins may change and the shared folders they write into, kept
//! so [`RealNode::stop`] and the sweep put them back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::RealNode;

/// Settings the kubelet or the CNI bridge plugin may change; recorded before
/// anything starts and restored at the end.
const SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv6/conf/all/forwarding",
];
/// Machine-wide folders the kubelet, containerd and the CNI plugins write
/// into whatever their flags say (pod logs, network namespaces, shim
/// sockets, CNI results), or that they would create with other flags; their
/// new entries (or they themselves, when they did not exist) are removed at
/// the end.
pub(super) const SHARED_DIRS: [&str; 13] = [
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/etc/kubernetes",
    "/var/run/kubernetes",
    "/usr/libexec/kubernetes",
];

/// The state of the machine before the node started, to restore and compare.
/// Kept in the node's directory too, for [`super::sweep_abandoned`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Before {
    pub(super) sysctls: BTreeMap<String, String>,
    /// Entries of [`SHARED_DIRS`] (None: the folder did not exist).
    shared: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl Before {
    pub(super) fn record() -> Before {
        let sysctls = SYSCTLS
            .iter()
            .filter_map(|name| read_sysctl(name).map(|value| (name.to_string(), value)))
            .collect();
        let shared = SHARED_DIRS.iter().map(|dir| (dir.to_string(), entries(Path::new(dir)))).collect();
        Before { sysctls, shared }
    }
}

pub(super) fn read_sysctl(name: &str) -> Option<String> {
    fs::read_to_string(Path::new("/proc/sys").join(name)).ok().map(|value| value.trim().to_string())
}

fn entries(dir: &Path) -> Option<BTreeSet<String>> {
    let read = fs::read_dir(dir).ok()?;
    Some(
        read.filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect(),
    )
}

impl RealNode {
    /// Sets back every recorded sysctl found changed, noting it in `restored`.
    pub(super) fn restore_sysctls(&mut self) {
        for (name, value) in &self.before.sysctls {
            let now = read_sysctl(name).unwrap_or_default();
            if &now != value {
                let _ = fs::write(Path::new("/proc/sys").join(name), value);
                self.restored.push(format!("{name}: {now} -> {value}"));
            }
        }
    }

    /// Entries of a shared folder that were not there before (the folder
    /// itself when it did not exist).
    pub(super) fn new_entries(&self, dir: &str) -> Vec<PathBuf> {
        match self.before.shared.get(dir) {
            Some(Some(old)) => entries(Path::new(dir))
                .unwrap_or_default()
                .difference(old)
                .map(|name| Path::new(dir).join(name))
                .collect(),
            _ if Path::new(dir).exists() => vec![PathBuf::from(dir)],
            _ => Vec::new(),
        }
    }

    pub(super) fn remove_shared_entries(&self) {
        for dir in SHARED_DIRS {
            for path in self.new_entries(dir) {
                if path.is_dir() && !path.is_symlink() {
                    let _ = fs::remove_dir_all(&path);
                } else {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep reads the record a killed run wrote: it must come back whole.
    #[test]
    fn the_record_survives_its_file() {
        let before = Before::record();
        assert_eq!(before.shared.len(), SHARED_DIRS.len());
        let text = serde_json::to_string(&before).unwrap();
        assert_eq!(serde_json::from_str::<Before>(&text).unwrap(), before);
    }
}
