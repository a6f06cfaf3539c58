//! What the bench drivers that run the edge binary share (`#[path]`-included by each): the edge as a child
//! process stopped politely, free loopback ports, the API over plain HTTP/1.0, and the process's RSS and CPU
//! time from /proc. Each driver uses some of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The edge started by a bench; SIGTERM when dropped, then SIGKILL if it lingers past 5 s.
pub struct EdgeProcess {
    pub child: Child,
    pub config: PathBuf,
}

impl EdgeProcess {
    /// `bin serve --config <config>`, its output to `log`.
    pub fn spawn(bin: &Path, config: PathBuf, log: &Path) -> std::io::Result<EdgeProcess> {
        let log = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(EdgeProcess { child, config })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to 30 s) for `/healthz` on `api` to say ok; false if the edge exited or never did.
    pub fn wait_up(&mut self, api: SocketAddr) -> bool {
        for _ in 0..300 {
            if http(api, "GET", "/healthz", None, None).is_some_and(|(_, b)| b.contains("\"ok\"")) {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// A new API key from the binary's `keys create` on this edge's config.
    pub fn create_key(&self, bin: &Path) -> Result<String, String> {
        let out = Command::new(bin)
            .args(["keys", "create", "--name", "bench", "--config"])
            .arg(&self.config)
            .output()
            .map_err(|e| format!("keys create: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let key = stdout.lines().last().unwrap_or("").trim().to_owned();
        if !out.status.success() || key.is_empty() {
            return Err(format!("keys create: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(key)
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        // The first SIGTERM drains (calls up may finish); the second ends what is left at once.
        for wait_tenths in [20, 50] {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            for _ in 0..wait_tenths {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port nobody holds on 127.0.0.1 now (0 if none could be found).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// A port free for both UDP and TCP on 127.0.0.1 (a SIP listener takes both), else `fallback`.
pub fn free_udp_port(fallback: u16) -> u16 {
    (0..20)
        .map(|_| free_port())
        .find(|p| *p != 0 && UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or(fallback)
}

/// One HTTP/1.0 request on the edge's API listener; the response's status and body.
pub fn http(api: SocketAddr, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: edge\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used, in clock ticks (100 a second on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces): utime is the 12th.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split(' ').map(|v| v.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// Raises this process's open-files limit to its hard limit; the limit now.
pub fn raise_open_files() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
    getrlimit(Resource::Nofile).current
}
