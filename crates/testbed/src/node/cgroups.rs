//! The `kubepods` cgroups the kubelet makes: what still runs in them is
//! killed, then they are removed, in every hierarchy mounted here.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RealNode;

impl RealNode {
    /// Whatever still runs in the pods' cgroups.
    pub(super) fn kill_pod_processes(&self) {
        for root in cgroup_roots() {
            let kubepods = root.join("kubepods");
            for _ in 0..50 {
                let pids = cgroup_pids(&kubepods);
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    // SAFETY: plain kill of a process found in the node's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(20)); // until they are gone
            }
        }
    }

    pub(super) fn remove_cgroups(&self) {
        for root in cgroup_roots() {
            remove_cgroup_tree(&root.join("kubepods"));
        }
    }
}

/// No other kubelet's `kubepods` cgroup may be here.
pub(super) fn check_kubepods_free() -> Result<(), String> {
    for root in cgroup_roots() {
        if root.join("kubepods").exists() {
            return Err(format!("{} exists: another kubelet runs here", root.join("kubepods").display()));
        }
    }
    Ok(())
}

/// The cgroup v1 hierarchies (and the v2 one) mounted here.
pub(super) fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.len() > 2 && (fields[2] == "cgroup" || fields[2] == "cgroup2"))
                .then(|| PathBuf::from(fields[1]))
        })
        .collect()
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    if !dir.is_dir() {
        return pids;
    }
    for line in fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
        if let Ok(pid) = line.trim().parse() {
            pids.push(pid);
        }
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            pids.extend(cgroup_pids(&entry.path()));
        }
    }
    pids
}

/// Removes a cgroup and its children, leaves first (cgroups go with rmdir only).
fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20)); // a just-killed process leaves its cgroup
    }
}
