//! Accepted connections a simulated node can cut: stopping a node must drop the
//! HTTP/2 connections clients already hold (tonic serves each connection on its
//! own task, so closing the listener alone would leave them working).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The kill switch of one connection.
#[derive(Debug, Default)]
struct Switch {
    killed: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Switch {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.reader.wake();
        self.writer.wake();
    }
}

/// The connections a node accepted, so they can all be cut at once.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    switches: Mutex<Vec<Weak<Switch>>>,
}

impl Connections {
    /// Wraps an accepted stream so [`Connections::kill_all`] can cut it.
    pub fn track(&self, stream: TcpStream) -> KillableStream {
        let switch = Arc::new(Switch::default());
        let mut switches = self.switches.lock().unwrap_or_else(PoisonError::into_inner);
        switches.retain(|switch| switch.strong_count() > 0);
        switches.push(Arc::downgrade(&switch));
        KillableStream { stream, switch }
    }

    /// Cuts every live connection: reads and writes fail with `ConnectionReset`,
    /// so the server drops the connection and its clients see it close.
    pub fn kill_all(&self) {
        let switches = std::mem::take(&mut *self.switches.lock().unwrap_or_else(PoisonError::into_inner));
        for switch in switches.iter().filter_map(Weak::upgrade) {
            switch.kill();
        }
    }
}

/// A TCP stream that fails once its connection is killed.
#[derive(Debug)]
pub(crate) struct KillableStream {
    stream: TcpStream,
    switch: Arc<Switch>,
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "simulated node stopped")
}

impl AsyncRead for KillableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.switch.reader.register(cx.waker());
        if this.switch.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.switch.writer.register(cx.waker());
        if this.switch.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.switch.writer.register(cx.waker());
        if this.switch.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Connected for KillableStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
