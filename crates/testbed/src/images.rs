//! The images `tests/harness/build-images.sh` packs for the real node: the
//! router image (the static simulator as `conveyor-etl-router`) and the
//! operator image (the Dockerfile's final stage).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The checkout's top folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where cargo builds: `CARGO_TARGET_DIR`, else the checkout's `target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// What each image's binary is built from, relative to the checkout.
fn sources(kind: &str) -> [&'static str; 6] {
    let binary = if kind == "router" { "crates/router-sim" } else { "src" };
    ["proto", "Cargo.toml", "Cargo.lock", "crates/router-contract", "crates/telemetry", binary]
}

/// The image build-images.sh packed as `kind` (`router` or `operator`): its
/// name and tarball. `tests/run.sh` packs them before `cargo test`; a test cannot
/// (`cargo test` holds the target directory's lock while tests run). Refused
/// when any source of its binary is newer than the tarball, so a stale image
/// never passes for the current code.
pub fn packed(kind: &str) -> (String, PathBuf) {
    let target = target_dir();
    let tarball = target.join(format!("node-images/{kind}.tar"));
    let rebuild =
        format!("run `bash tests/harness/build-images.sh` (with CARGO_TARGET_DIR={})", target.display());
    let packed = std::fs::metadata(&tarball)
        .and_then(|meta| meta.modified())
        .unwrap_or_else(|_| panic!("no {kind} image at {}: {rebuild}", tarball.display()));
    let mut newer = Vec::new();
    for source in sources(kind) {
        newest_after(&workspace_root().join(source), packed, &mut newer);
    }
    assert!(newer.is_empty(), "the {kind} image is older than {newer:?}: {rebuild}");
    let name = std::fs::read_to_string(tarball.with_extension("name"))
        .unwrap_or_else(|_| panic!("no image name beside {}: {rebuild}", tarball.display()));
    (name.trim().to_owned(), tarball)
}

/// Files under `path` modified after `packed`.
fn newest_after(path: &Path, packed: SystemTime, newer: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_after(&entry.path(), packed, newer);
        }
    } else if meta.modified().is_ok_and(|modified| modified > packed) {
        newer.push(path.to_owned());
    }
}
