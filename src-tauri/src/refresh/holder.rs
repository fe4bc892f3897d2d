//! Who holds a lease: `pid:random`. A lease whose holder process is gone can be taken at once
//! (a `kill -9` mid-refresh must not block the account for the whole lease TTL).

use rand::Rng;
use std::sync::OnceLock;

/// This process's holder id (one per process: managers in one process share leases safely
/// through the in-process single-flight).
pub fn holder_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        format!(
            "{}:{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        )
    })
}

/// True only when we can tell the holder's process no longer exists (Linux: no `/proc/<pid>`, or a
/// zombie). Elsewhere, or when unsure, false: the lease then expires by its TTL.
pub fn holder_is_dead(holder: &str) -> bool {
    let Some(pid) = holder.split(':').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    if !cfg!(target_os = "linux") {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; 'Z' (zombie) and 'X' (dead) mean the process is gone.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
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
}
