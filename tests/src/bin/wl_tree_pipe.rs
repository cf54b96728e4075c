//! Restore workload: the stages of a shell pipeline
//! `sh -c 'wl_tree_pipe producer | wl_tree_pipe filter | wl_tree_pipe consumer REPORT'`.
//! The producer writes `1`, `2`, ... one line every 2 ms; the filter passes each line on as
//! `<n>:<n*3>`; the consumer checks that every line is the previous number + 1 with the right
//! product and appends `n=<lines> last=<number> bad=<gaps or malformed lines>` to the report
//! every 20 lines.
//!
//! Usage: wl_tree_pipe producer | filter | consumer REPORT_FILE

use std::io::{BufRead, Write};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let stdout = std::io::stdout();
    match args.get(1).map(String::as_str) {
        Some("producer") => {
            let mut out = stdout.lock();
            for n in 1u64.. {
                if writeln!(out, "{n}").and_then(|()| out.flush()).is_err() {
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Some("filter") => {
            let mut out = stdout.lock();
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let n: u64 = line.trim().parse().unwrap_or(0);
                if writeln!(out, "{n}:{}", n * 3)
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
        Some("consumer") => {
            let report = args.get(2).expect("report file");
            let mut rep = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(report)
                .expect("open report");
            let (mut count, mut last, mut bad) = (0u64, 0u64, 0u64);
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let ok = line
                    .split_once(':')
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                    .filter(|&(a, b)| a == last + 1 && b == a * 3);
                match ok {
                    Some((a, _)) => last = a,
                    None => {
                        bad += 1;
                        last = line
                            .split_once(':')
                            .and_then(|(a, _)| a.parse().ok())
                            .unwrap_or(last);
                    }
                }
                count += 1;
                if count.is_multiple_of(20) {
                    let _ = writeln!(rep, "n={count} last={last} bad={bad}");
                }
            }
        }
        _ => {
            eprintln!("usage: wl_tree_pipe producer | filter | consumer REPORT_FILE");
            std::process::exit(2);
        }
    }
}
