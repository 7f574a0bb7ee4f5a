//! What the scenarios asked for: the desired pipelines and services, what
//! was deleted, and how many times each pipeline was created, kept as the
//! random edits are sent so the end state can be checked against it.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

pub const SERVICE_KINDS: [(&str, &str); 3] =
    [("EtlSource", "source"), ("EtlTransform", "transform"), ("EtlSink", "sink")];
/// Services of each kind the pipelines use (never deleted).
const SHARED_PER_KIND: usize = 4;

/// One change sent to the API server.
#[derive(Clone, Debug)]
pub enum Op {
    /// Server-side apply of a whole object (create or edit).
    Apply(Value),
    Delete {
        kind: &'static str,
        name: String,
    },
}

#[derive(Default)]
pub struct Model {
    /// Desired spec of every pipeline that should exist.
    pub pipelines: BTreeMap<String, Value>,
    /// Kind of every service that should exist.
    pub services: BTreeMap<String, &'static str>,
    pub deleted_pipelines: BTreeSet<String>,
    pub deleted_services: BTreeMap<String, &'static str>,
    /// How many times each pipeline was created (applied while absent).
    pub created: BTreeMap<String, u32>,
    next: usize,
}

pub fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "conveyor.etl/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

fn service_spec(name: &str) -> Value {
    json!({"grpc": {"endpoint": format!("{name}-svc:50051")}})
}

impl Model {
    /// The shared services, then `pipelines` pipelines over them.
    pub fn initial(&mut self, rng: &mut StdRng, pipelines: usize) -> Vec<Op> {
        let mut ops = Vec::new();
        for (kind, prefix) in SERVICE_KINDS {
            for i in 0..SHARED_PER_KIND {
                let name = format!("{prefix}-{i}");
                self.services.insert(name.clone(), kind);
                ops.push(Op::Apply(object(kind, &name, service_spec(&name))));
            }
        }
        for _ in 0..pipelines {
            ops.push(self.create_pipeline(rng));
        }
        ops
    }

    fn random_spec(rng: &mut StdRng) -> Value {
        let steps: Vec<String> = (0..rng.random_range(0..=3))
            .map(|_| format!("transform-{}", rng.random_range(0..SHARED_PER_KIND)))
            .collect();
        json!({
            "source": format!("source-{}", rng.random_range(0..SHARED_PER_KIND)),
            "steps": steps,
            "sink": format!("sink-{}", rng.random_range(0..SHARED_PER_KIND)),
            "dlq": {"enabled": rng.random_bool(0.5), "maxRetries": rng.random_range(0..=100)},
            "enabled": rng.random_bool(0.8),
        })
    }

    fn create_pipeline(&mut self, rng: &mut StdRng) -> Op {
        let name = format!("pipeline-{:04}", self.next);
        self.next += 1;
        let spec = Self::random_spec(rng);
        self.pipelines.insert(name.clone(), spec.clone());
        *self.created.entry(name.clone()).or_default() += 1;
        Op::Apply(object("EtlPipeline", &name, spec))
    }

    /// `n` random changes: pipelines created, edited and deleted, and extra
    /// services (no pipeline uses them) created and deleted.
    pub fn random_ops(&mut self, rng: &mut StdRng, n: usize) -> Vec<Op> {
        let mut ops = Vec::new();
        // One change per object per batch: the batch is sent concurrently.
        let mut touched = BTreeSet::new();
        for _ in 0..n {
            let roll = rng.random_range(0..100);
            let pick = |rng: &mut StdRng, names: Vec<&String>| -> Option<String> {
                (!names.is_empty()).then(|| names[rng.random_range(0..names.len())].clone())
            };
            let untouched: Vec<&String> = self.pipelines.keys().filter(|n| !touched.contains(*n)).collect();
            if roll < 25 {
                let op = self.create_pipeline(rng);
                touched.insert(format!("pipeline-{:04}", self.next - 1));
                ops.push(op);
            } else if roll < 70 {
                let Some(name) = pick(rng, untouched) else { continue };
                let spec = Self::random_spec(rng);
                self.pipelines.insert(name.clone(), spec.clone());
                ops.push(Op::Apply(object("EtlPipeline", &name, spec)));
                touched.insert(name);
            } else if roll < 85 {
                let Some(name) = pick(rng, untouched) else { continue };
                self.pipelines.remove(&name);
                self.deleted_pipelines.insert(name.clone());
                ops.push(Op::Delete { kind: "EtlPipeline", name: name.clone() });
                touched.insert(name);
            } else if roll < 93 {
                let (kind, prefix) = SERVICE_KINDS[rng.random_range(0..3)];
                let name = format!("extra-{prefix}-{}", self.next);
                self.next += 1;
                self.services.insert(name.clone(), kind);
                ops.push(Op::Apply(object(kind, &name, service_spec(&name))));
                touched.insert(name);
            } else {
                let extras: Vec<&String> = self
                    .services
                    .keys()
                    .filter(|n| n.starts_with("extra-") && !touched.contains(*n))
                    .collect();
                let Some(name) = pick(rng, extras) else { continue };
                let kind = self.services.remove(&name).expect("picked from the map");
                self.deleted_services.insert(name.clone(), kind);
                ops.push(Op::Delete { kind, name: name.clone() });
                touched.insert(name);
            }
        }
        ops
    }
}
