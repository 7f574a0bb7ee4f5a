//! What the kubelet, containerd and the CNI plugins mount: under the node's
//! folder, in new network namespaces and in containerd's new run folders.

use std::fs;
use std::path::{Path, PathBuf};

use super::RealNode;

impl RealNode {
    pub(super) fn unmount_all(&self) {
        let new_netns: Vec<PathBuf> = self.new_entries("/run/netns").into_iter().collect();
        let mut points = mounts_under(&self.dir);
        for netns in &new_netns {
            points.extend(mounts_under(netns));
        }
        points.extend(
            mounts_under(Path::new("/run/containerd"))
                .into_iter()
                .filter(|point| self.new_entries("/run/containerd").iter().any(|new| point.starts_with(new))),
        );
        for _ in 0..3 {
            for point in &points {
                if let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) {
                    // SAFETY: a valid C string; unmounting is what is asked.
                    unsafe {
                        if libc::umount2(c_path.as_ptr(), 0) != 0 {
                            libc::umount2(c_path.as_ptr(), libc::MNT_DETACH);
                        }
                    }
                }
            }
            points = mounts_under(&self.dir);
            if points.is_empty() {
                break;
            }
        }
    }
}

/// Mount points at or under `dir`, deepest first.
pub(super) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    found.dedup();
    found
}
