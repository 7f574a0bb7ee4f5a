//! The pods' network on the host: the bridge that holds [`HOST_IP`], the
//! firewall rule that lets pods on it reach each other, and the checks that
//! nothing else holds it or the benchmarking range.

use std::path::Path;

use super::{BRIDGE, HOST_IP, run};

/// The bridge, with [`HOST_IP`], up.
pub(super) fn add_bridge() -> Result<(), String> {
    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run("ip", &["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE])?;
    run("ip", &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

pub(super) fn remove_bridge() {
    let _ = run("ip", &["link", "del", BRIDGE]);
}

pub(super) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

pub(super) fn check_bridge_free() -> Result<(), String> {
    if link_exists(BRIDGE) {
        return Err(format!(
            "a link named {BRIDGE} exists: another real node runs, or one was not cleaned up"
        ));
    }
    Ok(())
}

/// No address or route of the machine may overlap the pods' benchmarking range.
pub(super) fn check_range_free() -> Result<(), String> {
    let addresses = run("ip", &["-4", "-o", "addr", "show"])?;
    let routes = run("ip", &["-4", "route", "show", "table", "all"])?;
    for line in addresses.lines().chain(routes.lines()) {
        if line.contains(" 198.18.")
            || line.contains(" 198.19.")
            || line.starts_with("198.18.")
            || line.starts_with("198.19.")
        {
            return Err(format!("the machine already uses 198.18.0.0/15: {line}"));
        }
    }
    Ok(())
}

/// The comment that marks the node's own FORWARD rule, so stop and the sweep
/// find exactly it.
const FORWARD_COMMENT: &str = "conveyor-node: pods on the bridge reach each other";

fn forward_rule() -> [&'static str; 10] {
    ["-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", FORWARD_COMMENT, "-j", "ACCEPT"]
}

/// Lets traffic between pods on the bridge through the FORWARD chain, first.
/// With `br_netfilter` loaded, bridged packets pass through iptables, and a
/// Docker engine sets that chain's policy to DROP; without this rule the
/// router pods could reach the host but not each other (no Raft).
pub(super) fn allow_pod_to_pod() -> Result<(), String> {
    let mut args = vec!["-w", "-I", "FORWARD", "1"];
    args.extend(forward_rule());
    run("iptables", &args).map(|_| ())
}

/// Removes every copy of the rule [`allow_pod_to_pod`] inserted.
pub(super) fn remove_pod_to_pod() {
    let mut args = vec!["-w", "-D", "FORWARD"];
    args.extend(forward_rule());
    while forward_rule_present() && run("iptables", &args).is_ok() {}
}

pub(super) fn forward_rule_present() -> bool {
    run("iptables", &["-w", "-S", "FORWARD"]).is_ok_and(|rules| rules.contains(FORWARD_COMMENT))
}
