//! Which running Codex processes read a given `CODEX_HOME` (they read `config.toml` at start, so
//! they need a restart to see a change). Linux: `/proc/<pid>/{comm,environ}` of our own user's
//! processes; elsewhere we cannot tell, and say so.

use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestartHint {
    /// No Codex process reads this directory now.
    None,
    /// These Codex processes read it: restart them to pick the change up.
    Restart { pids: Vec<u32> },
    /// This platform does not let us look: restart any running Codex.
    Unknown,
}

impl RestartHint {
    pub fn sentence(&self) -> String {
        match self {
            RestartHint::None => "No running Codex uses it: the next start picks it up.".into(),
            RestartHint::Restart { pids } => format!(
                "Restart the running Codex (pid {}) to pick it up.",
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            RestartHint::Unknown => "Restart any running Codex to pick it up.".into(),
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

/// The Codex processes whose `CODEX_HOME` (else `$HOME/.codex`) is `codex_home`.
pub fn restart_hint(codex_home: &Path) -> RestartHint {
    if cfg!(target_os = "linux") {
        match linux_pids(codex_home) {
            Some(pids) if pids.is_empty() => RestartHint::None,
            Some(pids) => RestartHint::Restart { pids },
            None => RestartHint::Unknown,
        }
    } else {
        RestartHint::Unknown
    }
}

fn env_var(environ: &[u8], name: &str) -> Option<PathBuf> {
    environ.split(|b| *b == 0).find_map(|kv| {
        let s = std::str::from_utf8(kv).ok()?;
        let (k, v) = s.split_once('=')?;
        (k == name && !v.is_empty()).then(|| PathBuf::from(v))
    })
}

/// `None` when `/proc` cannot be read at all.
fn linux_pids(codex_home: &Path) -> Option<Vec<u32>> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        // The native binary is `codex`; the npm launcher (node) starts it as a child.
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "codex" {
            continue;
        }
        // Another user's process: unreadable, and not one our file change concerns.
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        let home = env_var(&environ, "CODEX_HOME")
            .or_else(|| env_var(&environ, "HOME").map(|h| h.join(".codex")));
        if home.is_some_and(|h| same_dir(&h, codex_home)) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Some(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_is_read_by_name() {
        let env = b"HOME=/h\0CODEX_HOME=/c\0EMPTY=\0";
        assert_eq!(env_var(env, "CODEX_HOME"), Some(PathBuf::from("/c")));
        assert_eq!(env_var(env, "HOME"), Some(PathBuf::from("/h")));
        assert_eq!(env_var(env, "EMPTY"), None);
        assert_eq!(env_var(env, "NOPE"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_running_codex_on_that_home_is_found_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        assert_eq!(restart_hint(dir.path()), RestartHint::None);
        // A process named `codex` (a copy of `sleep`) reading `dir` as its CODEX_HOME. `spawn`
        // returns after the exec, so its name and environment are in /proc already.
        let bin = dir.path().join("codex");
        std::fs::copy("/bin/sleep", &bin).unwrap();
        let mut child = std::process::Command::new(&bin)
            .arg("600")
            .env("CODEX_HOME", dir.path())
            .spawn()
            .unwrap();
        // /proc has no event to await: look again until the child shows there (bounded), as a
        // loaded machine can lag between the exec and /proc showing its new name.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = restart_hint(dir.path());
        while found == RestartHint::None && std::time::Instant::now() < deadline {
            std::thread::yield_now();
            found = restart_hint(dir.path());
        }
        let elsewhere = restart_hint(other.path());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            found,
            RestartHint::Restart {
                pids: vec![child.id()]
            }
        );
        assert_eq!(elsewhere, RestartHint::None);
    }
}
