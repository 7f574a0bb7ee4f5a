//! The leased registry of one node, as the public router keeps it
//! (alexchoi0/conveyor `crates/etl-registry/src/service_registry.rs`): in
//! memory, outside Raft, lost when the node stops. Each registration holds a
//! lease of `ttl`, renewed by a `Heartbeat` naming its service id; lookups
//! skip registrations whose lease ran out, and [`LeasedRegistry::cleanup`]
//! removes them. Pure: the time is passed in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use conveyor_router_contract::proto::common::ServiceType;
use conveyor_router_contract::proto::registry::{RegisterRequest, RegisterResponse, RegisteredService};

use super::catalog::Catalog;

#[derive(Clone, Debug)]
struct Leased {
    service: RegisteredService,
    registration_id: String,
    renewed: Instant,
}

/// One node's registrations and their leases.
#[derive(Clone, Debug)]
pub(crate) struct LeasedRegistry {
    ttl: Duration,
    services: BTreeMap<String, Leased>,
    leases_granted: u64,
}

impl LeasedRegistry {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, services: BTreeMap::new(), leases_granted: 0 }
    }

    fn live(&self, now: Instant) -> impl Iterator<Item = (&String, &Leased)> {
        self.services
            .iter()
            .filter(move |(_, leased)| now.saturating_duration_since(leased.renewed) <= self.ttl)
    }

    /// Registers (upserts) a service with a fresh lease; the answer carries the lease's ttl.
    pub fn register(&mut self, request: RegisterRequest, now: Instant) -> Result<RegisterResponse, String> {
        let mut catalog = Catalog::default();
        let response = catalog.register(request, SystemTime::now())?;
        let (service_id, (service, _)) = catalog.services.pop_first().expect("registered");
        // The public router answers the service id as the registration id, and a new lease id.
        let registration_id = service_id.clone();
        self.leases_granted += 1;
        let lease_id = format!("lease-{}", self.leases_granted);
        self.services
            .insert(service_id, Leased { service, registration_id: registration_id.clone(), renewed: now });
        Ok(RegisterResponse {
            lease_id,
            registration_id,
            lease_ttl: Some(prost_types::Duration::try_from(self.ttl).unwrap_or_default()),
            ..response
        })
    }

    /// Renews the lease of a live registration; `None` when this node holds none (never
    /// registered here, expired, or lost with a restart).
    pub fn heartbeat(&mut self, service_id: &str, now: Instant) -> Option<Duration> {
        let ttl = self.ttl;
        let leased = self.services.get_mut(service_id)?;
        if now.saturating_duration_since(leased.renewed) > ttl {
            return None;
        }
        leased.renewed = now;
        leased.service.last_heartbeat = Some(SystemTime::now().into());
        Some(ttl)
    }

    /// Deregisters a service; false when this node held no live registration of it.
    pub fn deregister(&mut self, service_id: &str, now: Instant) -> bool {
        let live = self.live(now).any(|(id, _)| id == service_id);
        self.services.remove(service_id);
        live
    }

    /// The live registrations of `type_filter` (Unspecified: all) carrying every label of `selector`.
    pub fn list(
        &self,
        now: Instant,
        type_filter: ServiceType,
        selector: &HashMap<String, String>,
    ) -> Vec<RegisteredService> {
        let mut catalog = Catalog::default();
        for (id, leased) in self.live(now) {
            catalog.services.insert(id.clone(), (leased.service.clone(), leased.registration_id.clone()));
        }
        catalog.list_services(type_filter, selector)
    }

    /// Removes the registrations whose lease ran out; returns their service ids.
    pub fn cleanup(&mut self, now: Instant) -> Vec<String> {
        let live: Vec<String> = self.live(now).map(|(id, _)| id.clone()).collect();
        let expired: Vec<String> = self.services.keys().filter(|id| !live.contains(id)).cloned().collect();
        self.services.retain(|id, _| live.contains(id));
        expired
    }
}

#[cfg(test)]
mod tests {
    use conveyor_router_contract::proto::common::ServiceIdentity;

    use super::*;

    fn request(id: &str) -> RegisterRequest {
        RegisterRequest {
            identity: Some(ServiceIdentity {
                service_id: id.into(),
                service_type: ServiceType::Source.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ids(registry: &LeasedRegistry, now: Instant) -> Vec<String> {
        let services = registry.list(now, ServiceType::Unspecified, &HashMap::new());
        services.into_iter().map(|s| s.identity.unwrap().service_id).collect()
    }

    #[test]
    fn a_lease_lapses_without_heartbeats_and_lives_on_with_them() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut registry = LeasedRegistry::new(ttl);
        let answer = registry.register(request("ns/a"), t0).unwrap();
        assert_eq!(answer.lease_ttl, Some(prost_types::Duration { seconds: 30, nanos: 0 }));
        registry.register(request("ns/b"), t0).unwrap();
        for step in 1..=10 {
            assert_eq!(registry.heartbeat("ns/a", t0 + step * ttl / 2), Some(ttl), "step {step}");
        }
        let later = t0 + 5 * ttl;
        assert_eq!(ids(&registry, later), ["ns/a"], "b lapsed; a was renewed");
        assert_eq!(registry.heartbeat("ns/b", later), None, "an expired lease is not renewed");
        assert_eq!(registry.cleanup(later), ["ns/b"]);
        assert!(!registry.deregister("ns/b", later));
        assert!(registry.deregister("ns/a", later));
        assert!(ids(&registry, later).is_empty());
        assert_eq!(registry.heartbeat("ns/a", later), None);
    }

    #[test]
    fn a_re_registration_keeps_its_id_and_renews_the_lease() {
        let ttl = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut registry = LeasedRegistry::new(ttl);
        let first = registry.register(request("ns/a"), t0).unwrap();
        let again = registry.register(request("ns/a"), t0 + ttl).unwrap();
        assert_eq!((first.registration_id.as_str(), again.registration_id.as_str()), ("ns/a", "ns/a"));
        assert_ne!(first.lease_id, again.lease_id);
        assert_eq!(ids(&registry, t0 + ttl * 3 / 2), ["ns/a"]);
    }
}
