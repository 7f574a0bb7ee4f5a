//! Helpers for tests that drive a simulated router cluster directly.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conveyor_etl_operator::router::{ClientOptions, RouterClient};
use tokio::task::JoinHandle;

/// Polls `condition` every 10 ms until it holds; panics with `what` after `deadline`.
pub async fn until<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return;
        }
        assert!(started.elapsed() < deadline, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
    }
}

/// Node `id`'s address in loopback range 127.<range>.0.<id>, any free port.
pub fn node_addr(range: u8, id: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, range, 0, id)), 0)
}

/// Short deadlines and backoff so failure tests finish quickly.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        call_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        max_attempts: 10,
        max_retry_time: Duration::from_secs(5),
        min_backoff: Duration::from_millis(25),
        max_backoff: Duration::from_millis(200),
    }
}

/// Another client writing to the router all along, so that its log moves
/// while a test watches something stay still: `write` is called again and
/// again, paced by 10 ms so that the router is not starved of time to
/// answer the operator, until [`OtherWriter::stop`].
pub struct OtherWriter {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl OtherWriter {
    /// `write(client, n)` makes the `n`th write.
    pub fn start<F, Fut>(mut write: F) -> OtherWriter
    where
        F: FnMut(Arc<RouterClient>, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let client = Arc::new(RouterClient::new(super::operator::router_options()));
            let mut count = 0;
            while !stopped.load(Ordering::Relaxed) {
                write(client.clone(), count).await;
                count += 1;
                tokio::time::sleep(Duration::from_millis(10)).await; // the pace, not a wait
            }
        });
        OtherWriter { stop, task }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
    }
}
