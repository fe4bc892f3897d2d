//! Who holds a TCP port, where the OS tells (Linux: `/proc/net/tcp*` gives the listening socket's
//! inode, `/proc/<pid>/fd` the process that has it open). Best effort: `None` when unknown.

/// " (held by <name>, pid <pid>)" for the process listening on `port`, if it can be found.
pub fn describe(port: u16) -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let inode = listening_inode(port)?;
    let (pid, name) = process_with_socket(&inode)?;
    Some(format!(" (held by {name}, pid {pid})"))
}

fn listening_inode(port: u16) -> Option<String> {
    let want = format!("{port:04X}");
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && f[1].rsplit(':').next() == Some(want.as_str()) {
                return Some(f[9].to_string());
            }
        }
    }
    None
}

fn process_with_socket(inode: &str) -> Option<(u32, String)> {
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "an unknown program".into());
                return Some((pid, name));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_this_process_as_the_holder() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if cfg!(target_os = "linux") {
            let d = super::describe(port).expect("the holder is found");
            assert!(d.contains(&format!("pid {}", std::process::id())), "{d}");
        }
    }
}
