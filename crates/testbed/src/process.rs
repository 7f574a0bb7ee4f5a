//! Starting a child process from a thread that outlives the caller, and
//! waiting on a check while the children started so far keep running;
//! shared by the control plane and the real node.

use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Spawns `command` from one thread that lives as long as the test process.
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, and
/// tests run on short-lived threads.
pub(crate) fn spawn_from_keeper(command: Command) -> std::io::Result<Child> {
    type Request = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Request>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<Request>();
        std::thread::spawn(move || {
            for (mut command, reply) in receiver {
                let _ = reply.send(command.spawn());
            }
        });
        std::sync::Mutex::new(sender)
    });
    let (reply, result) = std::sync::mpsc::channel();
    keeper.lock().expect("keeper lock").send((command, reply)).expect("keeper thread alive");
    result.recv().expect("keeper thread replies")
}

/// Why [`poll_while_running`] gave up.
pub(crate) enum Waited {
    /// This process exited, with this status.
    Exited(&'static str, std::process::ExitStatus),
    /// The deadline passed; the last check's error.
    TimedOut(String),
}

/// Runs `check` on `runtime` every `interval` until it succeeds, one of
/// `processes` exits (a start that cannot succeed fails at once) or
/// `timeout` passes. Shared by the control plane's and the node's starts.
pub(crate) fn poll_while_running<F, Fut>(
    processes: &mut [(&'static str, Child)],
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    interval: Duration,
    check: F,
) -> Result<(), Waited>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let exited = processes
            .iter_mut()
            .find_map(|(name, child)| child.try_wait().ok().flatten().map(|status| (*name, status)));
        if let Some((name, status)) = exited {
            return Err(Waited::Exited(name, status));
        }
        match runtime.block_on(check()) {
            Ok(()) => return Ok(()),
            Err(error) => last = error,
        }
        std::thread::sleep(interval); // poll interval, not synchronisation
    }
    Err(Waited::TimedOut(last))
}
