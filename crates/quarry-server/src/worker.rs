//! A bounded queue drained by one thread of its own: what ingest jobs and evaluation runs share. A full
//! queue refuses work (503) rather than growing without end; shutdown stops taking work, raises the stop
//! flag the worker checks, and waits for it to drain what was queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

pub struct Worker<T> {
    sender: Mutex<Option<SyncSender<T>>>,
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts thread `name`, which calls `handle` on each item in turn with the stop flag (raised by
    /// [`Worker::shutdown`]; items still queued then are handed over all the same, to be cancelled).
    /// At most `queue` items wait behind the one being handled.
    pub fn start(name: &str, queue: usize, mut handle: impl FnMut(T, &AtomicBool) + Send + 'static) -> Result<Self> {
        let (tx, rx) = sync_channel::<T>(queue.max(1));
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for item in rx {
                    handle(item, &stop);
                }
            })
            .map_err(|e| Error::Internal(format!("starting the {name} thread: {e}")))?;
        Ok(Worker {
            sender: Mutex::new(Some(tx)),
            stopping,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues an item; when the queue is full (503, `full` says which) or shut, gives it back with why.
    pub fn submit(&self, item: T, full: &'static str) -> std::result::Result<(), (Error, T)> {
        let sender = match self.sender.lock() {
            Ok(s) => s,
            Err(_) => return Err((Error::Poisoned, item)),
        };
        match sender.as_ref() {
            None => Err((Error::ShuttingDown, item)),
            Some(tx) => tx.try_send(item).map_err(|e| match e {
                TrySendError::Full(item) => (Error::Busy(full), item),
                TrySendError::Disconnected(item) => (Error::ShuttingDown, item),
            }),
        }
    }

    /// Stops taking work, raises the stop flag, and waits until the thread has handled what was queued.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}
