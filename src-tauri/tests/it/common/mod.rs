//! The suite's rig: one builder, `TestVault::builder()` (in `vault`), for every scenario.
//!
//! - `.start()` — the fake OpenAI, a data dir with `.accounts(n)` imported from grants the fake
//!   issued and `.setting(k, v)`s written, the core opened from one `Config` as `serve` opens it
//!   and its endpoint on a free port; `.stopped()` leaves the endpoint to the test (the app's
//!   controls, `TestVault::ctl`), `.no_endpoint()` opens no core (refresh-engine scenarios start
//!   their own `TestVault::manager`s), `TestVault::restart` is `serve` restarted on the same store.
//! - `.data_dir()` — only the data-dir layer, [`DataDir`]: temp dirs and the real binary
//!   (`cmd()`/`run()`, `spawn_serve`), for the process-level scenarios; every `TestVault` has one
//!   (`dir`).
//!
//! The configuration the core reads is made in one function, `vault::config` (a `Config`: data
//! dir, key store, issuer and upstream = the fake, refresh tuning); a process gets the same values
//! through its environment (`vault::process_env` in `DataDir::cmd`; `vault::fake_env`, also
//! through [`env_for`], for a process that talks to the fake). Knobs the `Config` has and a test
//! needs go through the builder (`.configure(f)`, `.upstream(url)`), never around it. Also here:
//! auth.json fixtures minted by the fake (never pasted tokens), leak scans, the one `wait_until`
//! that awaits a condition (`poll_until` where the deadline is itself an outcome), and
//! `in_own_process`.

#![allow(
    dead_code,
    reason = "not every helper is used by every build of the suite"
)]

pub mod vault;
mod wait;

pub use vault::{fake_env, per_account, TestVault};
pub use wait::{poll_until, wait_until, wait_until_async};

use codex_vault_testkit::{AccountSpec, FakeOpenAi, IssuedTokens};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The data-dir layer of the rig (`TestVault::builder().data_dir()`, and every `TestVault`'s
/// `dir`): a temp dir holding the store's directory (`vault/`), a `CODEX_HOME` (`codex-home/`)
/// and the test's fixtures; the real binary run over it.
pub struct DataDir {
    pub dir: tempfile::TempDir,
}

impl DataDir {
    pub(crate) fn new() -> DataDir {
        DataDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The vault opened on this data dir in this process with `vault::config`'s key store, as
    /// the core opens it (without the core's integrity check: a CLI call's open).
    pub fn open(&self) -> codex_vault::accounts::Service {
        codex_vault::accounts::Service::open(&self.vault_home(), vault::KEY_STORE).unwrap()
    }

    pub fn vault_home(&self) -> PathBuf {
        self.dir.path().join("vault")
    }

    pub fn codex_home(&self) -> PathBuf {
        self.dir.path().join("codex-home")
    }

    /// The real binary with this test's dirs; the keychain is the session's (scripts/keyring-session.sh).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_codex-vault"));
        c.envs(vault::process_env(&self.vault_home()))
            .env("CODEX_HOME", self.codex_home())
            .env_remove("CODEX_VAULT_KEY_STORE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("spawn codex-vault"))
    }

    /// [`DataDir::run`], which must succeed (exit 0).
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "{args:?} failed: {}", r.stderr);
        r
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn codex-vault");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("wait"))
    }

    pub fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).expect("write fixture");
        p
    }

    /// Writes `tokens` as `auth.json` (signed in at `last_refresh`) and imports it with the real
    /// binary, which must succeed; returns the file.
    pub fn import_auth_json(&self, tokens: &IssuedTokens, last_refresh: &str) -> PathBuf {
        let path = self.write_file("auth.json", auth_json(tokens, last_refresh).as_bytes());
        let r = self.run(&["accounts", "import", path.to_str().unwrap()]);
        assert_eq!(r.code, 0, "import failed: {}", r.stderr);
        path
    }

    pub fn list_json(&self) -> Vec<serde_json::Value> {
        let r = self.run(&["accounts", "list", "--json"]);
        assert_eq!(r.code, 0, "list failed: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("list --json is JSON")
    }

    /// Every file under the data dir with its bytes: "byte-identical before and after".
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot_dir(&self.vault_home())
    }

    pub fn store_id(&self) -> String {
        let conn = rusqlite::Connection::open(self.vault_home().join("codex-vault.db")).unwrap();
        conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
            r.get(0)
        })
        .unwrap()
    }
}

pub fn snapshot_dir(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Waits for a child whose stdout was read elsewhere (`stdout`: what that reader got) and
    /// reads its piped stderr to the end.
    pub fn finished(child: &mut std::process::Child, stdout: String) -> Run {
        use std::io::Read;
        let status = child.wait().expect("wait for the child");
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut stderr)
                .expect("read the child's stderr");
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn fake() -> FakeOpenAi {
    FakeOpenAi::start_blocking(Default::default())
}

pub fn account(fake: &FakeOpenAi, email: &str, plan: &str) -> IssuedTokens {
    fake.add_account(AccountSpec {
        email: email.to_string(),
        plan: plan.to_string(),
        ..Default::default()
    })
}

pub fn auth_json(tokens: &IssuedTokens, last_refresh: &str) -> String {
    let at = chrono::DateTime::parse_from_rfc3339(last_refresh)
        .unwrap()
        .with_timezone(&chrono::Utc);
    FakeOpenAi::auth_json(tokens, at)
}

/// Asserts none of the token strings (nor a 16-char slice of each) appear in `hay`.
pub fn assert_no_tokens(hay: &[u8], tokens: &IssuedTokens, what: &str) {
    for t in [
        &tokens.access_token,
        &tokens.refresh_token,
        &tokens.id_token,
    ] {
        for needle in [t.as_bytes(), &t.as_bytes()[t.len() / 2..t.len() / 2 + 16]] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle),
                "{what} contains token text"
            );
        }
    }
}

pub fn secret_tool_search(store_id: &str) -> String {
    let out = Command::new("secret-tool")
        .args(["search", "--all", "service", "codex-vault"])
        .output()
        .expect("secret-tool (libsecret-tools) must be installed");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter(|l| l.contains(store_id))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A port free on 127.0.0.1 now (bound and let go: the test binds it again soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// No variables on top of `DataDir::cmd`'s (for `spawn_serve`).
pub const NO_ENV: &[(&str, &str)] = &[];

/// A running `codex-vault serve` (port 0: a free port), its stderr in a file, stdout collected.
/// Killed (SIGKILL) on drop unless stopped first.
pub struct ServeProc {
    pub child: std::process::Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl DataDir {
    /// Starts `serve --port 0` with `envs` on top of `cmd()`'s, stderr into `stderr_path`; returns
    /// once it printed its listening line (bounded: 30 s).
    pub fn spawn_serve<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        &self,
        envs: &[(K, V)],
        stderr_path: PathBuf,
    ) -> ServeProc {
        use std::io::BufRead;
        let mut c = self.cmd();
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c
            .args(["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn serve");
        let out = child.stdout.take().expect("stdout");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = stdout.clone();
        let reader = std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(out);
            let mut line = String::new();
            let mut sent = false;
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                sink.lock().unwrap().extend_from_slice(line.as_bytes());
                if !sent {
                    if let Some(port) = line
                        .trim()
                        .strip_prefix("Codex Vault endpoint listening on http://127.0.0.1:")
                        .and_then(|rest| rest.strip_suffix("/v1"))
                        .and_then(|p| p.parse::<u16>().ok())
                    {
                        let _ = tx.send(port);
                        sent = true;
                    }
                }
                line.clear();
            }
        });
        let port = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not start: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        ServeProc {
            child,
            port,
            stderr_path,
            stdout,
            reader: Some(reader),
        }
    }
}

impl ServeProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to clean up: the crash the store must survive.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a clean stop) and wait; returns the exit code (bounded: 30 s, then SIGKILL).
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let exited = poll_until(std::time::Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        match exited {
            Some(status) => status.code(),
            None => {
                self.kill_9();
                None
            }
        }
    }

    /// Everything it printed on stdout so far (complete once it exited).
    pub fn stdout(&mut self) -> Vec<u8> {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<u8> {
        std::fs::read(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.kill_9();
        }
    }
}

/// Every 12-byte window of every secret: a leak scan's needles. Twelve characters of a token are
/// already too many to show anywhere (a prefix names a family; a slice may complete a guess).
pub const LEAK_WINDOW: usize = 12;

pub struct LeakScanner {
    windows: std::collections::HashSet<Vec<u8>>,
    pub secrets: usize,
}

impl LeakScanner {
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> LeakScanner {
        let mut windows = std::collections::HashSet::new();
        let mut n = 0;
        for s in secrets {
            let b = s.as_ref().as_bytes();
            n += 1;
            for w in b.windows(LEAK_WINDOW) {
                windows.insert(w.to_vec());
            }
        }
        LeakScanner {
            windows,
            secrets: n,
        }
    }

    /// The first leaked window in `hay` with some context, if any.
    pub fn find(&self, hay: &[u8]) -> Option<String> {
        hay.windows(LEAK_WINDOW)
            .position(|w| self.windows.contains(w))
            .map(|i| {
                let from = i.saturating_sub(40);
                let to = (i + LEAK_WINDOW + 40).min(hay.len());
                format!("at byte {i}: …{}…", String::from_utf8_lossy(&hay[from..to]))
            })
    }
}

/// Points a command at the fake (auth and backend).
pub fn env_for(env: &DataDir, fake: &FakeOpenAi) -> impl Fn(&mut Command) {
    let _ = env;
    let vars = vault::fake_env(fake);
    move |c: &mut Command| {
        c.envs(vars.iter().map(|(k, v)| (k, v)));
    }
}

pub fn import_expired(
    env: &DataDir,
    fake: &FakeOpenAi,
    label: &str,
) -> codex_vault_testkit::IssuedTokens {
    let first = fake.add_account(AccountSpec {
        email: format!("{label}@corp.com"),
        ..Default::default()
    });
    let t = fake.issue_grant(&first.account_id, Some(std::time::Duration::ZERO));
    let p = env.write_file(
        &format!("{label}.json"),
        auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
    );
    let r = env.run(&["accounts", "import", p.to_str().unwrap(), "--label", label]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    t
}

pub fn accepted_blocking(fake: &FakeOpenAi, access: &str, account_id: &str) -> bool {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .get(fake.usage_url())
            .bearer_auth(access)
            .header("ChatGPT-Account-ID", account_id)
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    })
}

/// Reads until the peer closes (EOF or reset); returns what it sent. `None`: still open at `limit`.
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| got)
}

/// The rest of a streamed answer, to its end (panics if the stream breaks: `what` it was).
pub async fn rest_of(resp: &mut reqwest::Response, what: &str) -> Vec<u8> {
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.expect(what) {
        rest.extend_from_slice(&c);
    }
    rest
}

/// A tiny seeded generator (xorshift), so the trial schedule is reproducible from its seed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Raises this process's soft open-file limit to its hard limit (children inherit it): a test
/// with a thousand connections needs more than the common default of 1024 descriptors.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        // rlim_t is platform-defined (u64 on Linux and macOS, where the cast is a no-op).
        #[allow(clippy::unnecessary_cast, reason = "rlim_t is platform-defined")]
        let cur = lim.rlim_cur as u64;
        cur
    }
}

/// Raises the open-file limit ([`raise_fd_limit`]) and asserts it allows about `n` open files:
/// a test holding many connections says what it needs instead of failing somewhere inside.
pub fn need_open_files(n: usize) {
    let limit = raise_fd_limit();
    assert!(
        limit > n as u64,
        "this test needs about {n} open files; the hard limit is {limit}"
    );
}

/// The real Codex CLI (`version`, or the default one) for a test that runs it; None — said on
/// stderr, the caller returns — when the run asked to skip those (`CODEX_VAULT_SKIP_CODEX_CLI=1`).
pub fn real_codex_cli(version: Option<&'static str>) -> Option<PathBuf> {
    use codex_vault_testkit::codex_cli::{codex_cli_bin, codex_cli_bin_for, skip_requested};
    if skip_requested() {
        eprintln!("skipped: CODEX_VAULT_SKIP_CODEX_CLI=1");
        return None;
    }
    let bin = match version {
        Some(v) => codex_cli_bin_for(v),
        None => codex_cli_bin(),
    };
    Some(bin.expect("the real Codex CLI (scripts/ensure-codex-cli.sh installs it)"))
}

/// Marks a child started by [`in_own_process`]: the value is the test it runs.
const OWN_PROCESS: &str = "CODEX_VAULT_IT_OWN_PROCESS";

/// For the few tests that need a process to themselves (a process-wide counter, an environment
/// variable read once per process, a changed session bus): in the suite's process this re-runs
/// `test` (its `module_path!()`-style path) alone in a child of this test binary with `envs` set,
/// asserts it passed, and returns false (the caller returns); in that child it returns true (the
/// caller runs its body).
pub fn in_own_process(test: &str, envs: &[(&str, &std::ffi::OsStr)]) -> bool {
    rerun_alone(test, envs, false)
}

/// [`in_own_process`], with the child in a D-Bus session and gnome-keyring of its own
/// (scripts/keyring-session.sh again): for a test that stops or kills the keyring daemon, which
/// the rest of the suite shares.
pub fn in_own_keyring_session(test: &str) -> bool {
    rerun_alone(test, &[], true)
}

fn rerun_alone(test: &str, envs: &[(&str, &std::ffi::OsStr)], own_session: bool) -> bool {
    // libtest names tests without the crate's name.
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    if std::env::var_os(OWN_PROCESS).is_some_and(|v| v == name) {
        return true;
    }
    // The running image itself, even if a rebuild replaced the file meanwhile.
    let exe = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().expect("this test binary")
    };
    let mut c = if own_session {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/keyring-session.sh");
        let mut c = Command::new(script);
        // /proc/self/exe would name the script's own process: name this one's by its pid.
        let exe = if exe == Path::new("/proc/self/exe") {
            PathBuf::from(format!("/proc/{}/exe", std::process::id()))
        } else {
            exe
        };
        c.arg(exe).env_remove("CODEX_VAULT_TEST_SESSION");
        c
    } else {
        Command::new(exe)
    };
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS, name)
        .stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("spawn this test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{name} failed in its own process ({})",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {name}"
    );
    false
}
