//! Cluster DNS: dnsmasq on [`HOST_IP`] answering `cluster.local` from a
//! hosts file rendered from the Services and Endpoints.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::ListParams;
use kube::{Api, Client};

use super::{HOST_IP, RealNode, client_from};

pub(super) const CLUSTER_DOMAIN: &str = "cluster.local";

impl RealNode {
    pub(super) fn start_dns(&mut self, admin: kube::Config) -> Result<(), String> {
        let hosts_dir = self.dir.join("dns");
        fs::create_dir_all(&hosts_dir).map_err(|e| e.to_string())?;
        fs::write(self.dir.join("resolv.conf"), "").map_err(|e| e.to_string())?;
        let hosts = hosts_dir.join("cluster.hosts");
        fs::write(&hosts, "").map_err(|e| e.to_string())?;
        self.spawn(
            "dnsmasq",
            Path::new("/usr/sbin/dnsmasq"),
            &[
                "--keep-in-foreground".into(),
                "--conf-file=/dev/null".into(),
                "--pid-file=".into(),
                "--user=root".into(),
                "--no-resolv".into(),
                "--no-hosts".into(),
                format!("--hostsdir={}", hosts_dir.display()),
                format!("--listen-address={HOST_IP}"),
                "--bind-interfaces".into(),
                format!("--local=/{CLUSTER_DOMAIN}/"),
                "--domain-needed".into(),
                "--log-facility=-".into(),
            ],
        )?;
        let stop = self.dns_stop.clone();
        self.dns_thread = Some(std::thread::spawn(move || render_hosts_until(admin, &hosts, &stop)));
        Ok(())
    }
}

/// Renders the DNS hosts file every second until `stop`: for every Service,
/// `<svc>.<ns>.svc.<domain>` to its ready endpoint addresses, and
/// `<hostname>.<svc>.<ns>.svc.<domain>` for addresses with a hostname (the
/// StatefulSet members). ClusterIPs are left out: there is no kube-proxy.
fn render_hosts_until(admin: kube::Config, hosts: &Path, stop: &AtomicBool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Ok(admin) = runtime.block_on(async { client_from(&admin) }) else { return };
    let mut last = String::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(text) = runtime.block_on(render_hosts(&admin))
            && text != last
        {
            let temporary = hosts.with_extension("tmp");
            if fs::write(&temporary, &text).is_ok() && fs::rename(&temporary, hosts).is_ok() {
                last = text;
            }
        }
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100)); // render interval
        }
    }
}

/// The hosts file for the current Services and Endpoints.
pub async fn render_hosts(admin: &Client) -> Result<String, kube::Error> {
    let services: Api<Service> = Api::all(admin.clone());
    let endpoints: Api<Endpoints> = Api::all(admin.clone());
    let services = services.list(&ListParams::default()).await?;
    let endpoints = endpoints.list(&ListParams::default()).await?;
    let known: BTreeSet<(String, String)> = services
        .items
        .iter()
        .filter_map(|service| Some((service.metadata.namespace.clone()?, service.metadata.name.clone()?)))
        .collect();
    let mut lines = BTreeSet::new();
    for endpoint in &endpoints.items {
        let (Some(namespace), Some(name)) = (&endpoint.metadata.namespace, &endpoint.metadata.name) else {
            continue;
        };
        if !known.contains(&(namespace.clone(), name.clone())) {
            continue;
        }
        let service = format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}");
        for subset in endpoint.subsets.iter().flatten() {
            // Ready addresses only, as CoreDNS answers (a Service that
            // publishes not-ready addresses has them listed as ready).
            for address in subset.addresses.iter().flatten() {
                lines.insert(format!("{} {service}", address.ip));
                if let Some(hostname) = &address.hostname {
                    lines.insert(format!("{} {hostname}.{service}", address.ip));
                }
            }
        }
    }
    Ok(lines.into_iter().map(|line| line + "\n").collect())
}
