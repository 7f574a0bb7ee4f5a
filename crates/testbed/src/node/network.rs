//! The pods' network on the host: the bridge that holds [`HOST_IP`], and the
//! checks that nothing else holds it or the benchmarking range.

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
