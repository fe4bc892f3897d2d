//! File-system rules for sensitive data: the data dir is 0700, every file in it 0600.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Creates the data directory (and parents) and restricts it to its owner.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `path` with mode 0600 if it is absent (SQLite then opens it and creates its -wal/-shm
/// files with the same mode), and restricts an existing one — by path, without opening it.
///
/// An existing file is never opened here: on Unix, closing *any* descriptor of a file drops every
/// POSIX lock this process holds on it, SQLite's own included. A second store connection in a
/// process (the desktop app has several) would then leave the first without its lock, and another
/// process closing its connection would checkpoint and delete the WAL under it: commits lost.
pub fn touch_private(path: &Path) -> io::Result<()> {
    if let Err(e) = fs::symlink_metadata(path) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            // Another process created it first: the same file, equally fine.
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Writes a new private file; refuses to overwrite one (a second key must never replace the first).
pub fn write_private_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
