//! Workload: a multi-threaded tokio runtime (3 workers) doing several kinds of work at once,
//! each verifying itself:
//! - an interval ticker counting ticks;
//! - a ping-pong over two mpsc channels: `i` goes out, `2i+1` must come back with the pong
//!   side's running checksum of what it saw, equal to the ping side's own;
//! - `spawn_blocking` jobs summing `1..=k`, checked against `k(k+1)/2`;
//! - a counter stream through a pipe registered in tokio's epoll
//!   (`tokio::net::unix::pipe`): 8-byte little-endian numbers that must arrive without gaps.
//!
//! Every 50 ms it appends `pid=P ticks=T pings=N blocking=B piped=C sum=S ok` to REPORT (or a
//! line with `FAIL <why>` and exits 1 when a check fails). Under checkpoint/restore the
//! counters must keep growing and the checks keep holding.
//!
//! Usage: wl_tokio REPORT

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Default)]
struct Counters {
    ticks: AtomicU64,
    pings: AtomicU64,
    blocking: AtomicU64,
    piped: AtomicU64,
    /// The ping side's checksum of the values exchanged.
    sum: AtomicU64,
}

fn mix(sum: u64, v: u64) -> u64 {
    sum.wrapping_mul(0x100_0000_01b3).wrapping_add(v)
}

fn fail(report: &str, why: String) -> ! {
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(report) {
        let _ = writeln!(f, "pid={} FAIL {why}", std::process::id());
    }
    std::process::exit(1);
}

async fn ticker(c: Arc<Counters>) {
    let mut iv = tokio::time::interval(Duration::from_millis(20));
    loop {
        iv.tick().await;
        c.ticks.fetch_add(1, Ordering::Relaxed);
    }
}

async fn ping(
    c: Arc<Counters>,
    tx: mpsc::Sender<u64>,
    mut rx: mpsc::Receiver<(u64, u64)>,
    report: String,
) {
    let mut sum = 0u64;
    for i in 1u64.. {
        if tx.send(i).await.is_err() {
            fail(&report, "pong side gone".into());
        }
        sum = mix(sum, i);
        match rx.recv().await {
            Some((v, s)) if v == 2 * i + 1 && s == sum => {}
            other => fail(
                &report,
                format!("ping {i}: got {other:?}, want ({}, {sum:x})", 2 * i + 1),
            ),
        }
        c.sum.store(sum, Ordering::Relaxed);
        c.pings.store(i, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn pong(mut rx: mpsc::Receiver<u64>, tx: mpsc::Sender<(u64, u64)>, report: String) {
    let mut sum = 0u64;
    let mut want = 1u64;
    while let Some(i) = rx.recv().await {
        if i != want {
            fail(&report, format!("pong: got {i}, want {want}"));
        }
        want += 1;
        sum = mix(sum, i);
        if tx.send((2 * i + 1, sum)).await.is_err() {
            fail(&report, "ping side gone".into());
        }
    }
}

async fn blocking(c: Arc<Counters>, report: String) {
    for k in 1u64.. {
        let n = 1000 + k % 5000;
        let got = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(3));
            (1..=n).sum::<u64>()
        })
        .await
        .unwrap_or_else(|e| fail(&report, format!("blocking job {k}: {e}")));
        if got != n * (n + 1) / 2 {
            fail(&report, format!("blocking job {k}: sum {got}"));
        }
        c.blocking.store(k, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn pipe_writer(mut w: tokio::net::unix::pipe::Sender, report: String) {
    for i in 1u64.. {
        if let Err(e) = w.write_all(&i.to_le_bytes()).await {
            fail(&report, format!("pipe write {i}: {e}"));
        }
        if i % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
}

async fn pipe_reader(c: Arc<Counters>, mut r: tokio::net::unix::pipe::Receiver, report: String) {
    let mut buf = [0u8; 8];
    for want in 1u64.. {
        if let Err(e) = r.read_exact(&mut buf).await {
            fail(&report, format!("pipe read {want}: {e}"));
        }
        let got = u64::from_le_bytes(buf);
        if got != want {
            fail(&report, format!("pipe: got {got}, want {want}"));
        }
        c.piped.store(want, Ordering::Relaxed);
    }
}

async fn reporter(c: Arc<Counters>, report: String) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&report)
        .unwrap_or_else(|e| fail(&report, format!("open report: {e}")));
    let mut last = (0, 0, 0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = (
            c.ticks.load(Ordering::Relaxed),
            c.pings.load(Ordering::Relaxed),
            c.blocking.load(Ordering::Relaxed),
            c.piped.load(Ordering::Relaxed),
        );
        if now.0 < last.0 || now.1 < last.1 || now.2 < last.2 || now.3 < last.3 {
            fail(&report, format!("counters went back: {last:?} -> {now:?}"));
        }
        last = now;
        let line = format!(
            "pid={} ticks={} pings={} blocking={} piped={} sum={:x} ok\n",
            std::process::id(),
            now.0,
            now.1,
            now.2,
            now.3,
            c.sum.load(Ordering::Relaxed)
        );
        if f.write_all(line.as_bytes()).is_err() {
            std::process::exit(1);
        }
    }
}

fn main() {
    let report = std::env::args().nth(1).expect("usage: wl_tokio REPORT");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let c = Arc::new(Counters::default());
        let (tx1, rx1) = mpsc::channel(4);
        let (tx2, rx2) = mpsc::channel(4);
        let (w, r) = tokio::net::unix::pipe::pipe().expect("pipe");
        tokio::spawn(ticker(c.clone()));
        tokio::spawn(ping(c.clone(), tx1, rx2, report.clone()));
        tokio::spawn(pong(rx1, tx2, report.clone()));
        tokio::spawn(blocking(c.clone(), report.clone()));
        tokio::spawn(pipe_writer(w, report.clone()));
        tokio::spawn(pipe_reader(c.clone(), r, report.clone()));
        reporter(c, report).await;
    });
}
