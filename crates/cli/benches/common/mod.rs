//! Shared by the CLI benchmarks: the release artifacts, a keep-alive HTTP/1.1 client with no
//! client library, percentiles from integer microseconds.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The folder of this build's artifacts (`target/release` for `cargo bench`).
pub fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<bench>").to_path_buf()
}

/// A built artifact, with how to build it when missing.
pub fn artifact(name: &str) -> PathBuf {
    let p = artifacts().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release -p capture-cli -p capture-plugin-optty` first",
        p.display()
    );
    p
}

/// A scratch folder.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capture-bench-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clear scratch");
    }
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    pub async fn open(addr: std::net::SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn { reader: BufReader::new(s), host: addr.to_string() }
    }

    /// Sends a request and reads the answer: (status, body).
    pub async fn request(&mut self, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes()).await.expect("send");
        s.write_all(body).await.expect("send");
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).await.expect("status line");
        let status = status_line.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.expect("body");
        (status, String::from_utf8(body).expect("UTF-8"))
    }
}

/// The p-th percentile (0..=100) of sorted microseconds.
pub fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Microseconds as milliseconds with two decimals, from integers.
pub fn ms(us: u64) -> String {
    format!("{}.{:02}", us / 1000, (us % 1000) / 10)
}

/// Per second with one decimal, from integers.
pub fn per_second(n: u64, d: Duration) -> String {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    let tenths = n * 10_000_000 / us;
    format!("{}.{}", tenths / 10, tenths % 10)
}
