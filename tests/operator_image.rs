//! The operator image the real-node and Helm tests run is the one `docker
//! build` makes of the repository's Dockerfile (tests/harness/build-images.sh
//! builds and saves it; docker-engine.sh runs the engine, base-images.sh
//! makes the base image): the saved tarball holds the engine's image, a
//! build of the current Dockerfile and sources gives that same image, it
//! holds the operator alone (no shell) as user 65532 and its binary reports
//! the crate's version. And the engine leaves the node's pod network alone.

use std::path::Path;
use std::process::{Command, Output};

use conveyor_testbed::images::{packed, workspace_root};
use serde_json::Value;

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The docker CLI that builds with BuildKit, as build-images.sh picks it: one
/// with the buildx plugin, or one older than 23 (Debian's docker.io, 20.10),
/// which has it built in.
fn docker() -> &'static str {
    for candidate in ["docker", "/usr/bin/docker"] {
        let Ok(version) =
            Command::new(candidate).args(["version", "--format", "{{.Client.Version}}"]).output()
        else {
            continue;
        };
        let major: Option<u32> = String::from_utf8_lossy(&version.stdout)
            .split('.')
            .next()
            .and_then(|major| major.trim().parse().ok());
        let buildx =
            Command::new(candidate).args(["buildx", "version"]).output().is_ok_and(|o| o.status.success());
        if buildx || major.is_some_and(|major| major < 23) {
            return candidate;
        }
    }
    panic!("no docker CLI builds with BuildKit here: run tests/harness/docker-engine.sh");
}

fn inspect(image: &str) -> Value {
    let text = run_ok(docker(), &["image", "inspect", image]);
    let mut all: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(all.len(), 1, "{text}");
    all.remove(0)
}

/// A member of a tar archive, read whole.
fn tar_member(archive: &Path, member: &str) -> Vec<u8> {
    let output = Command::new("tar").arg("-xOf").arg(archive).arg(member).output().unwrap();
    assert!(output.status.success(), "tar {member}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// The saved tarball's manifest.json entry.
fn saved_manifest(tarball: &Path) -> Value {
    let manifest: Vec<Value> = serde_json::from_slice(&tar_member(tarball, "manifest.json")).unwrap();
    assert_eq!(manifest.len(), 1, "one image per tarball: {manifest:?}");
    manifest.into_iter().next().unwrap()
}

#[test]
fn the_node_runs_the_image_docker_built_from_the_current_dockerfile() {
    let (name, tarball) = packed("operator");
    let recorded = std::fs::read_to_string(tarball.with_extension("id"))
        .unwrap_or_else(|e| panic!("no image id beside {}: {e}", tarball.display()));
    let recorded = recorded.trim();

    // The engine's image under that name is the recorded one.
    let image = inspect(&name);
    assert_eq!(image["Id"].as_str(), Some(recorded), "the engine's {name} is not the one saved");

    // The tarball the node imports holds it: its config is that image's.
    let manifest = saved_manifest(&tarball);
    let config = manifest["Config"].as_str().expect("a Config");
    let digest = config.trim_start_matches("blobs/sha256/").trim_end_matches(".json");
    assert_eq!(format!("sha256:{digest}"), recorded, "{} holds another image", tarball.display());
    assert_eq!(manifest["RepoTags"], serde_json::json!([name]));

    // Building the Dockerfile now (every step cached when nothing changed)
    // gives that image: the node does not run an older build, nor one of
    // another file.
    let built = run_ok(docker(), &["build", "--network", "host", "--quiet", "."]);
    if built.trim() != recorded {
        // Not left behind as an untagged image.
        run(docker(), &["rmi", built.trim()]);
    }
    assert_eq!(
        built.trim(),
        recorded,
        "`docker build` of the current Dockerfile gives another image than the node runs: run tests/harness/build-images.sh"
    );
}

#[test]
fn the_operator_image_holds_the_operator_alone_as_user_65532() {
    let (name, tarball) = packed("operator");
    let image = inspect(&name);
    let config = &image["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/conveyor-etl-operator"]));
    assert_eq!(config["Cmd"], serde_json::json!(["run"]));

    // What the node unpacks: every layer's files.
    let manifest = saved_manifest(&tarball);
    let mut files = Vec::new();
    for layer in manifest["Layers"].as_array().expect("Layers") {
        let layer = layer.as_str().unwrap();
        let content = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(content.path(), tar_member(&tarball, layer)).unwrap();
        let listed = Command::new("tar").arg("-tvf").arg(content.path()).output().unwrap();
        assert!(listed.status.success());
        for line in String::from_utf8_lossy(&listed.stdout).lines() {
            // Directories are `d...`; anything else (a file, a link) is listed.
            if !line.starts_with('d') {
                files.push(line.split_whitespace().last().unwrap().trim_start_matches("./").to_owned());
            }
        }
    }
    files.sort();
    assert_eq!(
        files,
        ["etc/ssl/certs/ca-certificates.crt", "usr/local/bin/conveyor-etl-operator"],
        "the image holds the operator and the CA roots only (no shell)"
    );

    // It runs, with nothing but itself, and is this crate's build.
    let version = run_ok(docker(), &["run", "--rm", "--network", "none", &name, "--version"]);
    assert_eq!(version.trim(), format!("conveyor-etl-operator {}", env!("CARGO_PKG_VERSION")));
}

/// Docker's engine runs without its network setup (docker-engine.sh's
/// flags) and with its own containerd: with br_netfilter loaded, its FORWARD
/// policy (DROP) would drop the test node's pod-to-pod traffic on its bridge.
#[test]
fn the_docker_engine_leaves_the_pod_network_alone() {
    let dockerd: Vec<(u32, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let program = cmdline.split_whitespace().next()?.rsplit('/').next()?.to_owned();
            (program == "dockerd").then_some((pid, cmdline))
        })
        .collect();
    assert_eq!(dockerd.len(), 1, "one dockerd runs (tests/harness/docker-engine.sh): {dockerd:?}");
    let (pid, cmdline) = &dockerd[0];
    for flag in ["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--bridge=none"] {
        assert!(cmdline.split_whitespace().any(|arg| arg == flag), "dockerd runs without {flag}: {cmdline}");
    }
    // Its own containerd: a child of dockerd, on the socket under its exec root.
    // Found by each process's parent, not by `/proc/<pid>/task/<tid>/children`:
    // that lists only the children one thread forked, and any of dockerd's
    // threads may have started containerd.
    let own_containerd = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let parent = status.lines().find_map(|line| line.strip_prefix("PPid:")).map(str::trim);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        parent == Some(&pid.to_string())
            && cmdline.starts_with("containerd ")
            && cmdline.contains("/var/run/docker/containerd/")
    });
    assert!(own_containerd, "dockerd ({pid}) runs no containerd of its own");

    for table in ["filter", "nat"] {
        let rules = run_ok("iptables", &["-t", table, "-S"]);
        assert!(!rules.contains("DOCKER"), "Docker's rules in iptables' {table} table:\n{rules}");
    }
    let forward = run_ok("iptables", &["-S", "FORWARD"]);
    assert!(
        forward.lines().next() == Some("-P FORWARD ACCEPT"),
        "the FORWARD policy is not ACCEPT:\n{forward}"
    );
    assert!(!Path::new("/sys/class/net/docker0").exists(), "Docker made its docker0 bridge");
}
