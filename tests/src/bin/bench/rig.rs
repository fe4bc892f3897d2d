//! The fake OpenAI and the vaults under test, driven through their release binaries.

use super::*;

pub(crate) struct Fake {
    pub(crate) proc: Proc,
    pub(crate) base: String,
}

impl Fake {
    pub(crate) async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let url = format!("{}/__admin{path}", self.base);
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let (status, b) =
            loadgen::request(method, &url, &[("content-type", "application/json")], body)
                .await
                .unwrap_or_else(|e| panic!("admin {path}: {e}"));
        assert!(status < 300, "admin {path}: HTTP {status}");
        serde_json::from_slice(&b).unwrap_or(Value::Null)
    }

    pub(crate) async fn counter(&self, name: &str) -> u64 {
        self.admin(Method::GET, "/counters", Value::Null).await[name]
            .as_u64()
            .unwrap_or(0)
    }

    pub(crate) async fn new_account(&self, expired: bool) -> IssuedTokens {
        let t: IssuedTokens =
            serde_json::from_value(self.admin(Method::POST, "/accounts", json!({})).await)
                .expect("IssuedTokens");
        if !expired {
            return t;
        }
        serde_json::from_value(
            self.admin(
                Method::POST,
                &format!("/accounts/{}/grants", t.account_id),
                json!({"access_lifetime_secs": 0}),
            )
            .await,
        )
        .expect("IssuedTokens")
    }

    pub(crate) fn codex_base(&self) -> String {
        format!("{}/backend-api/codex", self.base)
    }
}

/// One vault data dir, driven through the release CLI.
pub(crate) struct Vault {
    pub(crate) bin: PathBuf,
    pub(crate) core: PathBuf,
    pub(crate) home: PathBuf,
    pub(crate) fake_base: String,
    pub(crate) codex_base: String,
    pub(crate) logs: PathBuf,
}

impl Vault {
    pub(crate) fn new(o: &Opts, tmp: &Path, name: &str, fake: &Fake) -> Vault {
        let home = tmp.join(name);
        std::fs::create_dir_all(&home).expect("vault dir");
        Vault {
            bin: o.vault.clone(),
            core: o.core.clone(),
            home,
            fake_base: fake.base.clone(),
            codex_base: fake.codex_base(),
            logs: tmp.to_path_buf(),
        }
    }

    /// Points this vault's endpoint at another Codex backend (the static SSE upstream).
    pub(crate) fn upstream(mut self, codex_base: String) -> Vault {
        self.codex_base = codex_base;
        self
    }

    pub(crate) fn cmd(&self) -> Command {
        self.cmd_for(&self.bin)
    }

    /// `bin` run against this vault's data dir and the fake.
    pub(crate) fn cmd_for(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.env("CODEX_VAULT_HOME", &self.home)
            .env("CODEX_HOME", self.home.join("codex-home"))
            .env("CODEX_VAULT_AUTH_BASE", &self.fake_base)
            .env("CODEX_VAULT_UPSTREAM", &self.codex_base)
            .env("RUST_LOG", "warn");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        let out = self.cmd().args(args).output().expect("codex-vault runs");
        assert!(
            out.status.success(),
            "codex-vault {:?} failed: {}",
            args.first(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub(crate) fn import(
        &self,
        tokens: &IssuedTokens,
        label: &str,
        last_refresh_ago: chrono::Duration,
    ) {
        let path = self.home.join(format!("{label}.auth.json"));
        let text = codex_vault_testkit::auth_json(tokens, chrono::Utc::now() - last_refresh_ago);
        std::fs::write(&path, text).expect("auth.json written");
        self.run(&[
            "accounts",
            "import",
            path.to_str().expect("utf-8 path"),
            "--label",
            label,
        ]);
        let _ = std::fs::remove_file(&path);
    }

    /// Writes one row of this vault's `settings` table (`bench_core set`).
    pub(crate) fn set(&self, key: &str, value: &str) {
        let out = Command::new(&self.core)
            .args(["set", key, value])
            .env("CODEX_VAULT_HOME", &self.home)
            .env("CODEX_HOME", self.home.join("codex-home"))
            .output()
            .expect("bench_core set runs");
        assert!(
            out.status.success(),
            "bench_core set {key} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn key(&self) -> String {
        let out = self.run(&["endpoint", "info", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("endpoint info JSON");
        v["key"].as_str().expect("key").to_string()
    }

    /// `serve --port 0`; returns it, its base URL and the time to its "listening" line.
    pub(crate) fn serve(&self, log: &str) -> (Proc, String, Duration) {
        let mut c = self.cmd();
        c.args(["serve", "--port", "0"]);
        let (p, line, took) =
            spawn_until_line(c, "codex-vault serve", "listening on", &self.logs.join(log));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("URL in the listening line")
            .trim_end_matches("/v1")
            .to_string();
        (p, url, took)
    }
}

pub(crate) async fn health(base: &str) -> Option<Value> {
    let (s, b) = loadgen::request(Method::GET, &format!("{base}/health"), &[], Bytes::new())
        .await
        .ok()?;
    (s == 200)
        .then(|| serde_json::from_slice(&b).ok())
        .flatten()
}
