//! `cargo demo --real-node`: the same demo on a real node
//! ([`crate::node`]): containerd, the kubelet and kube-scheduler beside the
//! control plane, and router pods that are real Raft members (the
//! simulator's router mode, from the router image `build-images.sh` packs).
//! `--clean-node` sweeps what a killed run left behind.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};

use super::{Options, Pods, Stop, say, with_control_plane};
use crate::node::{self, RealNode};

/// The router image's tarball: `CONVEYOR_ROUTER_IMAGE`, else where
/// `build-images.sh` packs it (`$CARGO_TARGET_DIR/node-images`, by default
/// the checkout's `target`), and its name beside it.
fn router_image() -> anyhow::Result<(String, PathBuf)> {
    let tarball = std::env::var_os("CONVEYOR_ROUTER_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::images::target_dir().join("node-images/router.tar"));
    let name = std::fs::read_to_string(tarball.with_extension("name")).with_context(|| {
        format!("no router image at {} (run tests/harness/build-images.sh)", tarball.display())
    })?;
    Ok((name.trim().to_owned(), tarball))
}

/// Starts the node, runs the demo on it and stops the node.
pub(super) async fn run(options: &Options, stop: &mut Stop) -> anyhow::Result<()> {
    say("mode: real node. containerd, runc, the kubelet and kube-scheduler run beside the control plane;");
    say("each router pod is a real container and a real Raft member (the simulator's router mode).");
    if let Some(why) = node::unavailable() {
        bail!("no real node here: {why}");
    }
    let (image, tarball) = router_image()?;
    say(
        "starting the control plane on 198.18.42.1, containerd, cluster DNS, kube-scheduler and the kubelet ...",
    );
    let mut start = tokio::task::spawn_blocking(RealNode::start);
    let started = tokio::select! {
        started = &mut start => started,
        signal = stop.wait() => {
            say(&format!("{signal}: stopping the node as soon as its start returns"));
            drop(start.await);
            return Ok(());
        }
    };
    let mut node = started.context("the node's start thread failed")?.map_err(|error| anyhow!(error))?;
    let plane = node.plane.as_ref().context("the node's control plane")?;
    let processes: Vec<String> = node
        .processes()
        .iter()
        .chain(plane.processes().iter())
        .map(|(name, pid)| format!("{name} (pid {pid})"))
        .collect();
    say(&format!("node up: {}; API server {}", processes.join(", "), plane.server));
    say(&format!("kubeconfig (admin): {}", plane.kubeconfig.display()));
    super::init_log(&plane.dir().join("operator.log"));

    let outcome = async {
        node.import_image(&tarball).map_err(|error| anyhow!(error))?;
        say(&format!("imported the router image {image} from {}", tarball.display()));
        let admin = plane.client().await;
        // The seed's three members claim 10Gi of class `standard`; no provisioner runs here.
        node.create_volumes(&admin, "router-volume", 3, "10Gi", "standard")
            .await
            .map_err(|error| anyhow!(error))?;
        say("made three 10Gi hostPath PersistentVolumes of class `standard` for the router pods' claims");
        with_control_plane(plane, options, stop, Pods::Real { image }).await
    }
    .await;

    let pids: Vec<u32> = node.processes().iter().map(|(_, pid)| *pid).chain(plane.pids()).collect();
    let node = tokio::task::spawn_blocking(move || {
        node.stop();
        node
    })
    .await
    .context("the node's stop thread failed")?;
    let left = node.leftovers(&pids);
    if left.is_empty() {
        say(&format!("stopped {}; the node left nothing behind", processes.join(", ")));
    } else {
        say(&format!("stopped {}; left behind: {}", processes.join(", "), left.join(", ")));
    }
    outcome
}

/// `--clean-node`.
pub(super) fn clean() -> anyhow::Result<()> {
    let swept = node::sweep_abandoned();
    if swept.is_empty() {
        say("no node left behind by a killed run");
    }
    for line in swept {
        say(&line);
    }
    Ok(())
}
