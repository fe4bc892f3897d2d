//! The way out when a store cannot be opened with the key the keychain holds: move the whole
//! data directory aside, under a dated name beside it, so the app can start fresh. Nothing is
//! ever deleted — the old directory keeps every sealed sign-in for the day the key turns up.

use crate::error::{AppError, ConfigError};
use std::path::{Path, PathBuf};

/// Error codes for which starting fresh is the offer: the store's data is there but cannot be
/// read with what this machine has. Not for a newer store (update instead) or an absent keychain
/// (install or unlock one: starting fresh would not help).
pub fn can_set_aside(code: &str) -> bool {
    matches!(
        code,
        "key_missing" | "key_mismatch" | "key_corrupt" | "store_not_a_database" | "store_corrupt"
    )
}

/// Renames `data_dir` to `<name>.set-aside-<UTC timestamp>` (with a counter if that is taken)
/// and returns where it went. Fails, changing nothing, when the directory is absent.
pub fn set_aside(data_dir: &Path) -> Result<PathBuf, AppError> {
    let fail = |detail: String| {
        AppError::from(ConfigError::SetAside {
            path: data_dir.display().to_string(),
            detail,
        })
    };
    if !data_dir.is_dir() {
        return Err(fail("it is not a directory".into()));
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| fail("it has no name".into()))?
        .to_string_lossy()
        .into_owned();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let parent = data_dir.parent().unwrap_or(Path::new("."));
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let target = parent.join(format!("{name}.set-aside-{stamp}{suffix}"));
        if target.exists() {
            continue;
        }
        // A rename within one parent directory: atomic, and never a copy that could half-fail.
        return match std::fs::rename(data_dir, &target) {
            Ok(()) => {
                tracing::warn!(to = %target.display(), "store set aside");
                Ok(target)
            }
            Err(e) => Err(fail(e.to_string())),
        };
    }
    Err(fail("too many set-aside copies with this timestamp".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_everything_and_deletes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("codex-vault");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("codex-vault.db"), b"sealed").unwrap();
        let first = set_aside(&dir).unwrap();
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read(first.join("codex-vault.db")).unwrap(),
            b"sealed"
        );
        assert!(first
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("codex-vault.set-aside-"));
        // A second set-aside in the same second gets its own name.
        std::fs::create_dir(&dir).unwrap();
        let second = set_aside(&dir).unwrap();
        assert_ne!(first, second);
        assert!(first.exists() && second.exists());
    }

    #[test]
    fn absent_directory_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let e = set_aside(&root.path().join("none")).unwrap_err();
        assert!(e.to_string().contains("nothing was moved"), "{e}");
    }

    #[test]
    fn offered_only_where_starting_fresh_helps() {
        assert!(can_set_aside("key_missing"));
        assert!(can_set_aside("store_not_a_database"));
        assert!(can_set_aside("store_corrupt"));
        assert!(!can_set_aside("keychain_unavailable"));
        assert!(!can_set_aside("store_too_new"));
    }
}
