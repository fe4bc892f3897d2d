//! Child processes and what `/proc` says about them.

use super::*;

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) name: &'static str,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` and waits for the first stdout line containing `marker`; returns it and the time
/// from spawn to that line.
pub(crate) fn spawn_until_line(
    mut cmd: Command,
    name: &'static str,
    marker: &str,
    stderr_to: &Path,
) -> (Proc, String, Duration) {
    let log = std::fs::File::create(stderr_to).expect("log file");
    cmd.stdout(Stdio::piped()).stderr(log).stdin(Stdio::null());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send((line, t0.elapsed()));
            }
        }
    });
    let proc = Proc { child, name };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((line, took)) => (proc, line, took),
        Err(_) => panic!(
            "{name} did not become ready in 30 s; see {}",
            stderr_to.display()
        ),
    }
}

pub(crate) fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn rss_mb(pid: u32) -> f64 {
    proc_status_kb(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// CPU time (utime + stime, every thread) of a set of processes between two moments, per
/// request: the bench's `cpu_us_per_req`. Reusable by any cell (e.g. a setting on vs off):
/// `CpuMeter::start(pids)` at the window's start, `us_per(requests)` at its end.
#[derive(Clone)]
pub(crate) struct CpuMeter {
    pids: Vec<u32>,
    ticks0: u64,
}

impl CpuMeter {
    pub(crate) fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            ticks0: cpu_ticks(pids),
        }
    }

    /// CPU µs since `start` divided by `requests` (`None` without processes or requests).
    /// Resolution: one clock tick (10 ms) over the window, so ≥ 1 s windows.
    pub(crate) fn us_per(&self, requests: u64) -> Option<f64> {
        if self.pids.is_empty() || requests == 0 {
            return None;
        }
        let ticks = cpu_ticks(&self.pids).saturating_sub(self.ticks0);
        Some(ticks as f64 / clk_tck() * 1e6 / requests as f64)
    }
}

/// utime + stime in clock ticks of `pid` and, for nginx, its workers (children).
pub(crate) fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state(0) … utime is field 14 of stat, i.e. index 11 here.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                let ppid = s
                    .rfind(')')
                    .and_then(|i| s[i + 2..].split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Context switches (voluntary + not) of every thread of `pid`: how often it woke up.
pub(crate) fn ctx_switches(pid: u32) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                for l in s.lines() {
                    if l.starts_with("voluntary_ctxt_switches:")
                        || l.starts_with("nonvoluntary_ctxt_switches:")
                    {
                        n += l
                            .split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
            }
        }
    }
    n
}

pub(crate) fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
