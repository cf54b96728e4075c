//! Compressing a pages file while it is written: full 1 MiB blocks go to a pool of threads
//! (one per CPU), and the compressed blocks come back to the writing thread, which writes them
//! in order. The dump's gathering thread keeps reading pages meanwhile, so compression adds
//! to the frozen time only what the CPUs cannot overlap.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::compress::{self, Compression};

type Job = (u64, Vec<u8>);
type Done = (u64, std::io::Result<Vec<u8>>);

/// The compressing threads of one pages file.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Option<SyncSender<Job>>,
    /// `None` only while dropping: closing it ends a worker blocked on sending a result.
    results: Option<Receiver<Done>>,
    workers: Vec<JoinHandle<()>>,
    submitted: u64,
    next_out: u64,
    ready: BTreeMap<u64, Vec<u8>>,
    max_in_flight: u64,
}

impl Pool {
    /// Starts the threads (no more than there are CPUs, at least one).
    pub(crate) fn new(c: Compression) -> std::io::Result<Pool> {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 16);
        let (tx, rx) = sync_channel::<Job>(n);
        let (done_tx, results) = sync_channel::<Done>(2 * n + 2);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let rx = rx.clone();
            let done_tx = done_tx.clone();
            let w = std::thread::Builder::new()
                .name(format!("compress-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((seq, raw)) = job else { return };
                        let out = compress::compress_block(c, &raw);
                        if done_tx.send((seq, out)).is_err() {
                            return;
                        }
                    }
                })?;
            workers.push(w);
        }
        Ok(Pool {
            jobs: Some(tx),
            results: Some(results),
            workers,
            submitted: 0,
            next_out: 0,
            ready: BTreeMap::new(),
            max_in_flight: 2 * n as u64,
        })
    }

    /// Hands a block over; blocks already compressed, in order, go to `out`. Waits only
    /// when too many blocks are in flight.
    pub(crate) fn submit(
        &mut self,
        block: Vec<u8>,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let gone = || std::io::Error::other("the compressing threads stopped");
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        jobs.send((self.submitted, block)).map_err(|_| gone())?;
        self.submitted += 1;
        while let Some(Ok(d)) = self.results.as_ref().map(|r| r.try_recv()) {
            self.take(d, out)?;
        }
        while self.submitted - self.next_out > self.max_in_flight {
            let d = self.recv().ok_or_else(gone)?;
            self.take(d, out)?;
        }
        Ok(())
    }

    /// Waits for every block and writes the rest.
    pub(crate) fn drain(
        &mut self,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        while self.next_out < self.submitted {
            let d = self
                .recv()
                .ok_or_else(|| std::io::Error::other("the compressing threads stopped"))?;
            self.take(d, out)?;
        }
        Ok(())
    }

    fn recv(&self) -> Option<Done> {
        self.results.as_ref().and_then(|r| r.recv().ok())
    }

    fn take(
        &mut self,
        (seq, res): Done,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.ready.insert(seq, res?);
        while let Some(b) = self.ready.remove(&self.next_out) {
            out(&b)?;
            self.next_out += 1;
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing both channels ends every worker: waiting for a job, or blocked sending a
        // result nobody will read (after a failed write).
        self.jobs = None;
        self.results = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
