//! Client calls per second against an in-process 3-node simulator on loopback.
//! Not a timed test: it prints figures, it asserts nothing about speed.
//!
//! `cargo bench --bench router_client` (optionally `-- <iterations>`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_etl_operator::crd::{DlqSpec, EtlPipelineSpec};
use conveyor_etl_operator::router::{ClientOptions, Router, RouterClient, mapping};
use conveyor_router_sim::{SimCluster, SimOptions};

fn main() {
    let iterations: u32 = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run(iterations));
}

fn report(what: &str, calls: u32, elapsed: Duration) {
    let per_second = f64::from(calls) / elapsed.as_secs_f64();
    let micros = elapsed.as_secs_f64() * 1e6 / f64::from(calls);
    println!(
        "{what:<48} {calls:>6} calls in {elapsed:>10.3?}  {per_second:>9.0} calls/s  {micros:>7.1} µs/call"
    );
}

async fn run(iterations: u32) {
    let nodes =
        (1..=3u8).map(|id| (u64::from(id), SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 98, 0, id)), 0)));
    let sim = SimCluster::start(nodes.collect(), SimOptions::default()).await.expect("simulator");
    let members = sim.endpoints();
    let client = Arc::new(RouterClient::new(ClientOptions::default()));
    let spec = EtlPipelineSpec {
        source: "kafka-users".into(),
        steps: vec!["filter".into(), "enrich".into()],
        sink: "clickhouse".into(),
        dlq: DlqSpec { enabled: true, max_retries: 3 },
        cluster_ref: None,
        enabled: true,
    };

    // Warm-up: connect every channel, find the leader.
    for member in &members {
        client.member_status(member).await.expect("status");
    }
    let warm = mapping::pipeline_config("bench", "warm-up", 1, &spec);
    client.create_pipeline(&members, warm).await.expect("create");

    let started = Instant::now();
    for index in 0..iterations {
        let member = &members[index as usize % members.len()];
        client.member_status(member).await.expect("status");
    }
    report("member_status (sequential, round robin)", iterations, started.elapsed());

    let tasks = 16u32;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let client = client.clone();
            let member = members[task as usize % members.len()].clone();
            tokio::spawn(async move {
                for _ in 0..iterations / tasks {
                    client.member_status(&member).await.expect("status");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    report("member_status (16 concurrent callers)", iterations / tasks * tasks, started.elapsed());

    let started = Instant::now();
    for index in 0..iterations {
        let config = mapping::pipeline_config("bench", &format!("p{index}"), 1, &spec);
        client.create_pipeline(&members, config).await.expect("create");
    }
    report("create_pipeline (distinct pipelines, via leader)", iterations, started.elapsed());

    let started = Instant::now();
    for generation in 0..iterations {
        let config = mapping::pipeline_config("bench", "p0", i64::from(generation) + 2, &spec);
        client.update_pipeline(&members, config).await.expect("update");
    }
    report("update_pipeline (one pipeline, via leader)", iterations, started.elapsed());

    let accepted = sim.mutation_log().len();
    println!("simulator accepted {accepted} writes; commit index {}", sim.commit_index());
    sim.shutdown().await;
}
