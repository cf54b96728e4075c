//! Workload: connects to the address in argv[1], prints "ready", then echoes every byte it
//! receives until the peer closes. Its TCP connection is what the network lock protects.

use std::io::{Read, Write};
use std::net::TcpStream;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: wl_tcp_echo ADDR:PORT");
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    println!("ready");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
