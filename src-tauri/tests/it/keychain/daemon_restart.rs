//! The keyring daemon may leave the bus while one of our calls waits for its answer: gnome-keyring
//! aborts when another client vanishes mid-call (GNOME/gnome-keyring#196; our kill -9 tests are such
//! clients), and a desktop starts a new one. The call is asked again of the new daemon, and the
//! user sees nothing. In a session bus of its own: it stops and kills the daemon.

use crate::common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The pid of the process that owns `org.freedesktop.secrets` on this session bus.
fn keyring_daemon_pid() -> i32 {
    let out = Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply=literal",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixProcessID",
            "string:org.freedesktop.secrets",
        ])
        .output()
        .expect("dbus-send (dbus) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    // `   uint32 1234`
    text.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no keyring daemon on the bus: {text:?}"))
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; the pid is the daemon's, read from the bus.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

#[test]
fn a_keyring_daemon_that_dies_under_our_call_is_asked_again_once_it_is_back() {
    if !in_own_keyring_session(concat!(
        module_path!(),
        "::a_keyring_daemon_that_dies_under_our_call_is_asked_again_once_it_is_back"
    )) {
        return;
    }
    let env = TestVault::builder().data_dir();
    // The first open mints the data key into the keychain.
    env.ok(&["accounts", "list"]);

    // Watch calls to the keyring; the monitor is ready once it has been told its own name.
    let mut monitor = Command::new("dbus-monitor")
        .args(["--session", "destination=org.freedesktop.secrets"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-monitor (dbus) is installed");
    let mut lines = BufReader::new(monitor.stdout.take().expect("piped")).lines();
    let mut next_line = || {
        lines
            .next()
            .expect("dbus-monitor ended")
            .expect("dbus-monitor output")
    };
    while !next_line().contains("member=NameLost") {}

    // A stopped daemon takes the call and never answers it; killed, it leaves the call unanswered.
    let daemon = keyring_daemon_pid();
    signal(daemon, libc::SIGSTOP);
    let child = env
        .cmd()
        .args(["accounts", "list", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn codex-vault");
    while !next_line().starts_with("method call") {}
    signal(daemon, libc::SIGKILL);
    let r = Run::from(child.wait_with_output().expect("wait"));
    let _ = monitor.kill();
    let _ = monitor.wait();

    assert_eq!(r.code, 0, "the call was not asked again: {}", r.stderr);
    assert_eq!(r.stdout.trim(), "[]", "{}", r.stdout);
    assert!(
        r.stderr
            .contains("the keyring daemon went away mid-call; asking again"),
        "{}",
        r.stderr
    );
    let session = std::env::var("CODEX_VAULT_TEST_SESSION").expect("inside keyring-session");
    let starts = std::fs::read_to_string(std::path::Path::new(&session).join("keyring-starts"))
        .expect("the session counts daemon starts");
    assert_eq!(starts.trim(), "2", "a new daemon answered the second try");
    assert_ne!(keyring_daemon_pid(), daemon);
}
