//! A plugin's stdout and stderr: lines go to the log under the plugin's name,
//! within the same per-batch budget as the host `log` call; the rest is
//! dropped (and counted), never buffered without bound, never an error the
//! guest could trap on.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::util::lock;

/// Per-batch bounds on what a plugin may log (host `log` and stdout/stderr).
#[derive(Debug, Default)]
pub struct LogBudget {
    /// Lines the plugin may still log in this batch.
    pub lines_left: u32,
    /// Bytes the plugin may still log in this batch.
    pub bytes_left: u32,
    /// Lines dropped for being over budget, over the store's life.
    pub dropped: u64,
}

impl LogBudget {
    /// Takes room for one line of `len` bytes; false if over budget.
    pub fn take_line(&mut self, len: usize) -> bool {
        if self.lines_left == 0 || (self.bytes_left as usize) < len {
            self.dropped += 1;
            return false;
        }
        self.lines_left -= 1;
        self.bytes_left -= len as u32;
        true
    }
}

const MAX_LINE: usize = 1024;

#[derive(Clone)]
pub(crate) struct PluginOutput {
    plugin: Arc<str>,
    stream: &'static str,
    budget: Arc<Mutex<LogBudget>>,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl PluginOutput {
    pub fn new(plugin: Arc<str>, stream: &'static str, budget: Arc<Mutex<LogBudget>>) -> Self {
        Self { plugin, stream, budget, partial: Arc::default() }
    }

    fn accept(&self, bytes: &[u8]) {
        let mut partial = lock(&self.partial);
        for &b in bytes {
            if b == b'\n' {
                self.emit(&partial);
                partial.clear();
            } else if partial.len() < MAX_LINE {
                partial.push(b);
            }
        }
    }

    fn emit(&self, line: &[u8]) {
        let ok = lock(&self.budget).take_line(line.len());
        if ok {
            let plugin = &*self.plugin;
            let stream = self.stream;
            tracing::info!(plugin, stream, "{}", String::from_utf8_lossy(line));
        }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for PluginOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
