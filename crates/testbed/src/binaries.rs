//! Binaries of the workspace's other crates, for tests that run them as
//! processes (cargo sets `CARGO_BIN_EXE_*` only for a package's own binaries).

use std::path::{Path, PathBuf};

/// `name` in the target directory the running test was built into
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
/// `cargo test --workspace` builds it (the README's test command).
pub fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    let profile_dir = test.parent().and_then(Path::parent).expect("a test under target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} is not built: run the tests with `cargo test --workspace`, or `cargo build -p {package}` first",
        binary.display()
    );
    binary
}

/// The router simulator (`crates/router-sim`).
pub fn router_sim() -> PathBuf {
    workspace_binary("conveyor-router-sim", "conveyor-router-sim")
}
