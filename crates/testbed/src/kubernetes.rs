//! Which Kubernetes release the test bed runs, and where its binaries are.
//!
//! `tests/harness/build-kubernetes.sh <major.minor>` builds a release from Go
//! modules into `<cache>/<version>/bin` (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kubelet, pause) beside a
//! `VERSION` file. The test bed runs the newest built patch of
//! `CONVEYOR_KUBERNETES_VERSION` (`1.34`, or exactly `1.34.4`), by default
//! [`NEWEST`]; `KUBEBUILDER_ASSETS` names a folder of binaries instead.

use std::path::{Path, PathBuf};

/// The releases the suite is tested on: all of it on the newest, the
/// end-to-end subset also on the oldest (tests/run.sh).
pub const NEWEST: &str = "1.37";
pub const OLDEST: &str = "1.34";

/// The script that builds a release into [`cache_root`].
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/harness/build-kubernetes.sh")
}

/// `CONVEYOR_KUBERNETES_DIR`, or `~/.cache/conveyor-etl-operator/kubernetes`.
pub fn cache_root() -> PathBuf {
    crate::cache_folder("CONVEYOR_KUBERNETES_DIR", "kubernetes")
}

/// The release asked for: `CONVEYOR_KUBERNETES_VERSION`, else [`NEWEST`].
pub fn requested() -> String {
    std::env::var("CONVEYOR_KUBERNETES_VERSION")
        .ok()
        .map(|version| version.trim_start_matches('v').to_string())
        .filter(|version| !version.is_empty())
        .unwrap_or_else(|| NEWEST.to_string())
}

/// The folder of the binaries to run: `KUBEBUILDER_ASSETS`, or the newest
/// built release matching [`requested`]; an error saying how to build it.
pub fn bin_dir() -> Result<PathBuf, String> {
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
        return Ok(PathBuf::from(assets));
    }
    let requested = requested();
    newest_built(&cache_root(), &requested).map(|dir| dir.join("bin")).ok_or_else(|| {
        format!(
            "Kubernetes {requested} is not built in {}: run tests/harness/build-kubernetes.sh {requested}",
            cache_root().display()
        )
    })
}

/// The newest folder `<root>/<version>` whose version is `requested` or a
/// patch of it, with a `VERSION` file (written last by the build).
fn newest_built(root: &Path, requested: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let matches = name == requested || name.strip_prefix(requested)?.starts_with('.');
            let version = parse(&name)?;
            (matches && entry.path().join("VERSION").is_file()).then_some((version, entry.path()))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path)
}

fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(root: &Path, version: &str) {
        std::fs::create_dir_all(root.join(version).join("bin")).unwrap();
        std::fs::write(root.join(version).join("VERSION"), "").unwrap();
    }

    #[test]
    fn the_newest_complete_patch_of_the_requested_minor_is_chosen() {
        let root = tempfile::tempdir().unwrap();
        built(root.path(), "1.34.4");
        built(root.path(), "1.34.10");
        built(root.path(), "1.37.2");
        // A build that stopped before writing VERSION is not a release.
        std::fs::create_dir_all(root.path().join("1.34.12/bin")).unwrap();
        let chosen =
            |requested| newest_built(root.path(), requested).map(|dir| dir.file_name().unwrap().to_owned());
        assert_eq!(chosen("1.34"), Some("1.34.10".into()));
        assert_eq!(chosen("1.34.4"), Some("1.34.4".into()));
        assert_eq!(chosen("1.37"), Some("1.37.2".into()));
        assert_eq!(chosen("1.3"), None);
        assert_eq!(chosen("1.35"), None);
    }

    #[test]
    fn the_test_command_builds_and_runs_the_same_two_releases() {
        let script = include_str!("../../../tests/run.sh");
        assert!(script.contains(&format!("newest={NEWEST}\n")), "tests/run.sh's newest is not {NEWEST}");
        assert!(script.contains(&format!("oldest={OLDEST}\n")), "tests/run.sh's oldest is not {OLDEST}");
    }
}
