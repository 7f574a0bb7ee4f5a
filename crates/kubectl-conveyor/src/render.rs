//! Text for people: kubectl-style tables, the why chain, the graph and its
//! Graphviz form. Pure: every function takes `now` for ages.

use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use conveyor_etl_operator::crd::EtlRouterCluster;

use crate::graph::Graph;
use crate::snapshot::{self, Snapshot, condition, is_ready, pod_ready};
use crate::time::{age, age_of};
use crate::why::{Chain, State, Step};

/// Columns separated by three spaces, each as wide as its widest cell, as `kubectl get` prints them.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

// ---------------------------------------------------------------- why

fn step_title(step: &Step) -> String {
    let object = format!("{}/{}", step.kind, step.name);
    match step.state {
        State::Missing => format!("{object}: does not exist"),
        State::Ready => format!("{object}: Ready"),
        State::NotReady => {
            let mut facts = Vec::new();
            if let Some(phase) = &step.phase {
                facts.push(format!("phase {phase}"));
            }
            if let Some(reason) = &step.reason {
                facts.push(format!("reason {reason}"));
            }
            if facts.is_empty() {
                format!("{object}: not Ready")
            } else {
                format!("{object}: not Ready ({})", facts.join(", "))
            }
        }
    }
}

fn event_text(step: &Step, now: Timestamp) -> Option<String> {
    let event = step.event.as_ref()?;
    let times = if event.count > 1 { format!(" x{}", event.count) } else { String::new() };
    Some(format!("{} {}{times}, {} ago: {}", event.type_, event.reason, age_of(event.at, now), event.note))
}

/// The chain, one block per object, then the first cause.
pub fn why(chain: &Chain, now: Timestamp) -> String {
    let mut out = String::new();
    if chain.ready() {
        let step = &chain.steps[0];
        let since = step.since.map(|t| format!(" since {t} ({} ago)", age(t, now))).unwrap_or_default();
        let _ = writeln!(out, "{}/{} is Ready{since}", step.kind, step.name);
        if let Some(reason) = &step.reason {
            let message = step.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            let _ = writeln!(out, "    reason:  {reason}{message}");
        }
        for detail in &step.details {
            let _ = writeln!(out, "    {detail}");
        }
        return out;
    }
    for (depth, step) in chain.steps.iter().enumerate() {
        let indent = "  ".repeat(depth);
        let arrow = if step.via.is_empty() { String::new() } else { format!("-> {}: ", step.via) };
        let _ = writeln!(out, "{indent}{arrow}{}", step_title(step));
        let body = format!("{indent}    ");
        if let Some(message) = &step.message {
            let _ = writeln!(out, "{body}message: {message}");
        }
        if step.state == State::Ready
            && let Some(since) = step.since
        {
            let _ = writeln!(out, "{body}ready since {since} ({} ago)", age(since, now));
        }
        for detail in &step.details {
            let _ = writeln!(out, "{body}{detail}");
        }
        if let Some(event) = event_text(step, now) {
            let _ = writeln!(out, "{body}event:   {event}");
        }
        if let Some(trace) = step.trace_id() {
            let _ = writeln!(out, "{body}trace:   {trace}");
        }
    }
    if let Some(cause) = chain.first_cause() {
        let _ = writeln!(out, "\nFirst cause: {}", first_cause(chain, cause));
    }
    out
}

fn first_cause(chain: &Chain, cause: &Step) -> String {
    let object = format!("{}/{}", cause.kind, cause.name);
    let referrer = chain.steps.len().checked_sub(2).map(|i| &chain.steps[i]);
    match (cause.state, referrer) {
        (State::Missing, Some(by)) => {
            format!("{object} does not exist ({} of {}/{})", cause.via, by.kind, by.name)
        }
        (State::Missing, None) => format!("{object} does not exist"),
        _ => {
            let reason = cause.reason.as_deref().unwrap_or("not Ready");
            match &cause.message {
                Some(message) => format!("{object}: {reason}: {message}"),
                None => format!("{object}: {reason}"),
            }
        }
    }
}

// ---------------------------------------------------------------- status

/// Ready/total of the services and pipelines of each cluster.
fn counts(snapshot: &Snapshot, cluster: &EtlRouterCluster) -> ((usize, usize), (usize, usize)) {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let services = snapshot.services_of(&namespace, &name);
    let pipelines = snapshot.pipelines_of(&namespace, &name);
    (
        (services.iter().filter(|s| is_ready(s.conditions())).count(), services.len()),
        (pipelines.iter().filter(|p| is_ready(snapshot::pipeline_conditions(p))).count(), pipelines.len()),
    )
}

/// One line per cluster; with `namespaces`, a NAMESPACE column first.
pub fn status_summary(snapshot: &Snapshot, namespaces: bool, now: Timestamp) -> String {
    let mut clusters: Vec<&EtlRouterCluster> = snapshot.clusters.iter().collect();
    clusters.sort_by_key(|c| (c.namespace(), c.name_any()));
    let rows: Vec<Vec<String>> = clusters
        .iter()
        .map(|c| {
            let status = c.status.as_ref();
            let ((services_ready, services), (pipelines_ready, pipelines)) = counts(snapshot, c);
            let mut row = Vec::new();
            if namespaces {
                row.push(c.namespace().unwrap_or_default());
            }
            row.extend([
                c.name_any(),
                or_dash(status.and_then(|s| s.phase).map(|p| format!("{p:?}"))),
                format!("{}/{}", status.and_then(|s| s.ready_replicas).unwrap_or(0), c.spec.replicas),
                or_dash(status.and_then(|s| s.leader.clone())),
                or_dash(status.and_then(|s| s.term)),
                or_dash(condition(snapshot::cluster_conditions(c), "Ready").map(|c| c.reason.clone())),
                format!("{services_ready}/{services}"),
                format!("{pipelines_ready}/{pipelines}"),
                age_of(created(&c.metadata), now),
            ]);
            row
        })
        .collect();
    let mut headers = Vec::new();
    if namespaces {
        headers.push("NAMESPACE");
    }
    headers.extend(["NAME", "PHASE", "READY", "LEADER", "TERM", "REASON", "SERVICES", "PIPELINES", "AGE"]);
    table(&headers, &rows)
}

/// The cluster's phase, leader and term, its members, then its services and pipelines.
pub fn status_cluster(snapshot: &Snapshot, cluster: &EtlRouterCluster, now: Timestamp) -> String {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let status = cluster.status.clone().unwrap_or_default();
    let conditions = snapshot::cluster_conditions(cluster);
    let mut out = String::new();
    let _ = writeln!(out, "Cluster:   {name} (namespace {namespace}, image {})", cluster.spec.image);
    let phase = or_dash(status.phase.map(|p| format!("{p:?}")));
    match condition(conditions, "Ready") {
        Some(ready) => {
            let _ = writeln!(
                out,
                "Phase:     {phase} (Ready={} {}: {})",
                ready.status, ready.reason, ready.message
            );
        }
        None => {
            let _ = writeln!(out, "Phase:     {phase}");
        }
    }
    let leader = match (&status.leader, status.leader_id) {
        (Some(pod), Some(id)) => format!("{pod} (Raft id {id})"),
        (Some(pod), None) => pod.clone(),
        _ => "none known".to_owned(),
    };
    let _ = writeln!(out, "Leader:    {leader}");
    let _ = writeln!(out, "Term:      {}", or_dash(status.term));
    let _ = writeln!(
        out,
        "Replicas:  {} ready of {} (spec {})",
        status.ready_replicas.unwrap_or(0),
        status.replicas.unwrap_or(0),
        cluster.spec.replicas
    );
    if let Some(paused) = condition(conditions, "ReconciliationPaused").filter(|c| c.status == "True") {
        let _ = writeln!(out, "Paused:    {}", paused.message);
    }
    for (type_, shown) in [("Synced", "False"), ("SpecWarning", "True"), ("RouterAdmin", "False")] {
        if let Some(c) = condition(conditions, type_).filter(|c| c.status == shown) {
            let _ = writeln!(out, "{type_}={shown}: {} {}", c.reason, c.message);
        }
    }

    let pods = snapshot.pods_of(&namespace, &name);
    let mut rows = Vec::new();
    for pod in &pods {
        let pod_name = pod.name_any();
        let member = status.members.iter().find(|m| m.pod == pod_name);
        rows.push(vec![
            pod_name,
            or_dash(member.map(|m| m.node_id)),
            or_dash(member.map(|m| m.role.clone())),
            or_dash(member.map(|m| m.healthy)),
            pod_ready(pod).to_string(),
            or_dash(pod.spec.as_ref().and_then(|s| s.node_name.clone())),
            snapshot::restarts(pod).to_string(),
            age_of(created(&pod.metadata), now),
        ]);
    }
    for member in status.members.iter().filter(|m| !pods.iter().any(|p| p.name_any() == m.pod)) {
        rows.push(vec![
            format!("{} (no pod)", member.pod),
            member.node_id.to_string(),
            member.role.clone(),
            member.healthy.to_string(),
            "false".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    let _ = writeln!(out, "\nMembers:");
    out.push_str(&table(&["POD", "RAFT ID", "ROLE", "HEALTHY", "READY", "NODE", "RESTARTS", "AGE"], &rows));

    let services = snapshot.services_of(&namespace, &name);
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let ready = condition(s.conditions(), "Ready");
            vec![
                s.kind.name().to_owned(),
                s.name().to_owned(),
                or_dash(s.status.and_then(|st| st.phase).map(|p| format!("{p:?}"))),
                or_dash(ready.map(|c| c.status.clone())),
                or_dash(ready.map(|c| c.reason.clone())),
                or_dash(s.status.and_then(|st| st.health.clone())),
                age_of(created(s.meta), now),
            ]
        })
        .collect();
    let _ = writeln!(out, "\nServices:");
    out.push_str(&table(&["KIND", "NAME", "PHASE", "READY", "REASON", "HEALTH", "AGE"], &rows));

    let pipelines = snapshot.pipelines_of(&namespace, &name);
    let rows: Vec<Vec<String>> = pipelines
        .iter()
        .map(|p| {
            let ready = condition(snapshot::pipeline_conditions(p), "Ready");
            vec![
                p.name_any(),
                or_dash(p.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}"))),
                or_dash(ready.map(|c| c.status.clone())),
                or_dash(ready.map(|c| c.reason.clone())),
                age_of(created(&p.metadata), now),
            ]
        })
        .collect();
    let _ = writeln!(out, "\nPipelines:");
    out.push_str(&table(&["NAME", "PHASE", "READY", "REASON", "AGE"], &rows));
    out
}

// ---------------------------------------------------------------- graph

fn stage_state(stage: &crate::graph::Stage) -> String {
    if stage.missing {
        return "MISSING".to_owned();
    }
    let phase = stage.phase.clone().unwrap_or_else(|| "no status".into());
    let health = stage.health.clone().unwrap_or_else(|| "health unknown".into());
    let rising = if stage.errors_rising { ", errors rising" } else { "" };
    format!("{phase}, {health}{rising}")
}

/// The flow on one line, then one row per stage in record order.
pub fn graph_text(graph: &Graph) -> String {
    let mut out = String::new();
    let state = match (&graph.phase, &graph.reason) {
        (Some(phase), Some(reason)) => format!("{phase} ({reason})"),
        (Some(phase), None) => phase.clone(),
        _ => "no status".to_owned(),
    };
    let _ = writeln!(
        out,
        "EtlPipeline {} (namespace {}): {state}{}, cluster {}{}",
        graph.pipeline,
        graph.namespace,
        if graph.enabled { "" } else { ", disabled" },
        graph.cluster.as_deref().unwrap_or("<none>"),
        graph.router_version.map(|v| format!(", router version {v}")).unwrap_or_default(),
    );
    let flow: Vec<&str> = graph.stages.iter().map(|s| s.id.as_str()).collect();
    let dlq = match graph.dlq_max_retries {
        Some(retries) => format!("records failing {retries} retries -> dead-letter queue"),
        None => "dead-letter queue disabled: records failing every retry are dropped".to_owned(),
    };
    let _ = writeln!(out, "Flow: {}; {dlq}\n", flow.join(" -> "));
    let rows: Vec<Vec<String>> = graph
        .stages
        .iter()
        .map(|stage| {
            vec![
                stage.id.clone(),
                format!("{}/{}", stage.kind, stage.service),
                if stage.missing { "MISSING".to_owned() } else { or_dash(stage.phase.clone()) },
                or_dash(stage.health.clone()),
                or_dash(stage.endpoint.clone()),
                if stage.partitions.is_empty() {
                    "-".to_owned()
                } else {
                    stage.partitions.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                },
                if stage.errors_rising { "rising".to_owned() } else { "-".to_owned() },
            ]
        })
        .collect();
    out.push_str(&table(&["STAGE", "SERVICE", "PHASE", "HEALTH", "ENDPOINT", "PARTITIONS", "ERRORS"], &rows));
    out
}

fn dot_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz: one box per stage, solid edges in record order, dashed edges
/// to the dead-letter queue; stages not Ready and healthy are red.
pub fn graph_dot(graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_quote(&format!("{}/{}", graph.namespace, graph.pipeline)));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(
        out,
        "  label={};",
        dot_quote(&format!(
            "EtlPipeline {} ({})",
            graph.pipeline,
            graph.phase.as_deref().unwrap_or("no status")
        ))
    );
    let _ = writeln!(out, "  node [shape=box, style=rounded];");
    for stage in &graph.stages {
        let healthy = !stage.missing
            && stage.phase.as_deref() == Some("Ready")
            && stage.health.as_deref().is_none_or(|h| h == "Healthy")
            && !stage.errors_rising;
        let label = format!(
            "{}\\n{}/{}\\n{}{}",
            stage.id,
            stage.kind,
            stage.service,
            stage_state(stage),
            stage.endpoint.as_deref().map(|e| format!("\\n{e}")).unwrap_or_default()
        );
        let color = if healthy { "darkgreen" } else { "red" };
        let _ = writeln!(
            out,
            "  {} [label=\"{}\", color={color}];",
            dot_quote(&stage.id),
            label.replace('"', "\\\"")
        );
    }
    for pair in graph.stages.windows(2) {
        let _ = writeln!(out, "  {} -> {};", dot_quote(&pair[0].id), dot_quote(&pair[1].id));
    }
    if let Some(retries) = graph.dlq_max_retries {
        let _ = writeln!(
            out,
            "  \"dlq\" [label=\"dead-letter queue\\nafter {retries} retries\", shape=cylinder, style=solid];"
        );
        for stage in graph.stages.iter().skip(1) {
            let _ = writeln!(out, "  {} -> \"dlq\" [style=dashed];", dot_quote(&stage.id));
        }
    }
    out.push_str("}\n");
    out
}
