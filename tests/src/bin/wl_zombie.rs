//! Workload with a zombie child: starts `/bin/true` and never reaps it, prints "ready",
//! then sleeps.

use std::io::Write;
use std::time::Duration;

#[allow(clippy::zombie_processes)] // The point: a child nobody waits for.
fn main() {
    let _child = std::process::Command::new("/bin/true")
        .spawn()
        .expect("spawn /bin/true");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
