//! Who holds a lease or an intent: `pid:random:start`, where `start` is the process's start time
//! (Linux: field 22 of `/proc/<pid>/stat`, clock ticks since boot). A pid alone is not an
//! identity — pids are reused — but a pid plus its start time is: a holder whose pid now names
//! a process started at another time is gone. Liveness is read from the kernel, never from a
//! heartbeat the holder writes (idle is free; a stalled disk must not make a live holder "dead").

use rand::Rng;
use std::sync::OnceLock;

/// This process's holder id (one per process: managers in one process share leases safely
/// through the in-process single-flight).
pub fn holder_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let pid = std::process::id();
        let nonce = rand::thread_rng().gen::<u32>();
        match start_time(pid) {
            Some(start) => format!("{pid}:{nonce:08x}:{start}"),
            None => format!("{pid}:{nonce:08x}"),
        }
    })
}

/// The start time of process `pid` (Linux), or `None` when it is gone or unreadable.
fn start_time(pid: u32) -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it are counted
    // from the last ')'. Field 3 is the state, field 22 the start time.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True only when we can tell the holder's process no longer exists (Linux: no `/proc/<pid>`,
/// a zombie, or a pid now used by a process started at another time). Elsewhere, or when
/// unsure, false: the lease then expires by its TTL.
pub fn holder_is_dead(holder: &str) -> bool {
    if holder == holder_id() {
        return false;
    }
    let mut parts = holder.split(':');
    let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    let recorded_start = parts.nth(1).and_then(|s| s.parse::<u64>().ok());
    if !cfg!(target_os = "linux") {
        return false;
    }
    if pid == std::process::id() {
        // Our pid, another holder id: a process that had our pid before us, or an id we wrote
        // ourselves with another nonce (never done). Its start time tells.
        return recorded_start.is_some_and(|s| Some(s) != start_time(pid));
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            // Field 3 is the state; 'Z' (zombie) and 'X' (dead) mean the process is gone.
            if fields.next().is_some_and(|s| s == "Z" || s == "X") {
                return true;
            }
            let now_start = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
            matches!((recorded_start, now_start), (Some(a), Some(b)) if a != b)
        }
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_missing_pid_is_dead() {
        assert!(!holder_is_dead(holder_id()));
        assert!(!holder_is_dead("garbage"));
        if cfg!(target_os = "linux") {
            // PIDs are capped well below this on Linux (pid_max ≤ 2^22).
            assert!(holder_is_dead("99999999:0"));
        }
    }

    #[test]
    fn a_reused_pid_with_another_start_time_is_dead() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let pid = std::process::id();
        let start = start_time(pid).expect("our own start time is readable");
        assert!(holder_id().ends_with(&format!(":{start}")));
        assert!(
            !holder_is_dead(&format!("{pid}:00000000:{start}")),
            "same pid, same start: the same process"
        );
        assert!(
            holder_is_dead(&format!("{pid}:00000000:{}", start + 1)),
            "same pid, other start: a process that is gone"
        );
        // pid 1 lives as long as the machine; a holder naming it with another start time is gone.
        if let Some(init_start) = start_time(1) {
            assert!(!holder_is_dead(&format!("1:0:{init_start}")));
            assert!(holder_is_dead(&format!("1:0:{}", init_start + 7)));
            assert!(!holder_is_dead("1:0"), "an old-format id: pid only");
        }
    }
}
