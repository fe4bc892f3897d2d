//! Shared helpers for the process-level scenarios: a temp data dir per test, the real binary,
//! auth.json fixtures minted by the fake OpenAI (never pasted tokens).

#![allow(dead_code)]

use codex_vault_testkit::{AccountSpec, FakeOpenAi, IssuedTokens};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().expect("temp dir"),
        }
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
        c.env("CODEX_VAULT_HOME", self.vault_home())
            .env("CODEX_HOME", self.codex_home())
            .env_remove("CODEX_VAULT_KEY_STORE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("spawn codex-vault"))
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
