//! What a node leaves on the machine: [`RealNode::leftovers`] lists it, and
//! [`sweep_abandoned`] cleans up after nodes whose process was killed.

use std::fs;
use std::path::PathBuf;

use super::cgroups::cgroup_roots;
use super::mounts::mounts_under;
use super::network::{forward_rule_present, link_exists};
use super::record::{Before, SHARED_DIRS, read_sysctl};
use super::{BEFORE_FILE, BRIDGE, DIR_PREFIX, PLANE_FILE, RealNode};

/// Stops what is left of every node whose process died without stopping it
/// (a SIGKILL, an abort): its directory (`conveyor-node-<pid>` in the temp
/// dir) outlives its pid. Its own processes died with it
/// (`PR_SET_PDEATHSIG`); the sweep kills the containers and shims left,
/// unmounts, removes the bridge, cgroups and new shared entries and restores
/// the sysctls from the record the node kept, as [`RealNode::stop`] does.
/// Returns a line per node swept. [`RealNode::start`] sweeps first, so a
/// killed run never blocks the next; `cargo demo
/// --clean-node` runs it alone.
pub fn sweep_abandoned() -> Vec<String> {
    let mut swept = Vec::new();
    for entry in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(DIR_PREFIX).and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        let dir = entry.path();
        let record = fs::read_to_string(dir.join(BEFORE_FILE)).ok();
        let Some(before) = record.and_then(|text| serde_json::from_str::<Before>(&text).ok()) else {
            // Without the record, what is new in the shared folders is unknown: touch nothing there.
            swept.push(format!("{} has no readable {BEFORE_FILE}; left as it is", dir.display()));
            continue;
        };
        if let Ok(plane_dir) = fs::read_to_string(dir.join(PLANE_FILE)) {
            let plane_dir = PathBuf::from(plane_dir.trim());
            if plane_dir.file_name().is_some_and(|name| name.to_string_lossy().starts_with("conveyor-cp-")) {
                let _ = fs::remove_dir_all(plane_dir);
            }
        }
        // What outlived it: dnsmasq (its credential change clears the death
        // signal), and anything else whose command line names the node's folder.
        for pid in pids_whose_cmdline_contains(&dir.display().to_string()) {
            // SAFETY: plain kill of a process found just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut node = RealNode::unstarted(dir, before);
        node.stop();
        let left = node.leftovers(&[]);
        swept.push(format!(
            "swept the node of dead process {pid}: sysctls restored {:?}; left {:?}",
            node.restored, left
        ));
    }
    swept
}

impl RealNode {
    /// What the node left on the machine (empty when nothing): processes it
    /// started still alive, the bridge, its FORWARD rule, mounts, cgroups, changed sysctls,
    /// new entries in shared folders, its directory.
    pub fn leftovers(&self, pids: &[u32]) -> Vec<String> {
        let mut found = Vec::new();
        for pid in pids {
            if alive(*pid) {
                found.push(format!("process {pid} alive"));
            }
        }
        for pid in pids_whose_cmdline_contains(&self.dir.display().to_string()) {
            found.push(format!("process {pid} names the node's folder"));
        }
        if link_exists(BRIDGE) {
            found.push(format!("bridge {BRIDGE}"));
        }
        if forward_rule_present() {
            found.push(format!("the iptables FORWARD rule for {BRIDGE}"));
        }
        for point in mounts_under(&self.dir) {
            found.push(format!("mount {}", point.display()));
        }
        for root in cgroup_roots() {
            if root.join("kubepods").exists() {
                found.push(format!("cgroup {}", root.join("kubepods").display()));
            }
        }
        for (name, value) in &self.before.sysctls {
            let now = read_sysctl(name).unwrap_or_default();
            if &now != value {
                found.push(format!("sysctl {name} = {now}, was {value}"));
            }
        }
        for dir in SHARED_DIRS {
            for path in self.new_entries(dir) {
                found.push(format!("new {}", path.display()));
            }
        }
        if self.dir.exists() {
            found.push(format!("directory {}", self.dir.display()));
        }
        found
    }
}

/// Whether process `pid` runs (a zombie, dead but not yet reaped, does not).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

pub(super) fn pids_whose_cmdline_contains(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let own = std::process::id() as i32;
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == own {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && !text.starts_with("ctr ") {
            found.push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that exited but is not yet reaped keeps its pid as a zombie: not alive.
    #[test]
    fn a_zombie_is_not_alive() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stat = format!("/proc/{}/stat", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !fs::read_to_string(&stat).unwrap().contains(") Z ") {
            assert!(std::time::Instant::now() < deadline, "the child never exited");
            std::thread::sleep(std::time::Duration::from_millis(10)); // until it exits
        }
        assert!(!alive(child.id()));
        child.wait().unwrap();
    }
}
