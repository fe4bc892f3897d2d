//! Driving the real Codex CLI (`@openai/codex`, pinned to 0.169.0) against an endpoint: write a
//! throw-away `CODEX_HOME` whose `config.toml` points a custom model provider at a URL
//! (protocol.md § Pointing the stock Codex CLI), then run `codex exec` with a timeout, an
//! isolated `HOME` and a scrubbed environment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The default CLI version (`codex_cli_bin`).
pub const CODEX_CLI_VERSION: &str = "0.169.0";
/// Every CLI version the project supports; interoperability tests run against each
/// (`codex_cli_bin_for`). `scripts/ensure-codex-cli.sh` installs them.
pub const CODEX_CLI_VERSIONS: &[&str] = &["0.169.0", "0.171.0"];
/// The env var naming the `codex` binary to use.
pub const CODEX_CLI_BIN_ENV: &str = "CODEX_CLI_BIN";
/// Set to `1` to skip tests that need the real CLI.
pub const SKIP_ENV: &str = "CODEX_VAULT_SKIP_CODEX_CLI";

#[derive(Debug, thiserror::Error)]
pub enum CodexCliError {
    #[error(
        "the real Codex CLI was not found at {path}. Install it with\n    \
         npm install --prefix {prefix} @openai/codex@{version}\n\
         (or point {bin_env} at a codex binary, or set {skip_env}=1 to skip these tests)"
    )]
    NotInstalled {
        path: PathBuf,
        prefix: PathBuf,
        version: &'static str,
        bin_env: &'static str,
        skip_env: &'static str,
    },
    #[error("I/O error preparing or running the Codex CLI: {0}")]
    Io(#[from] std::io::Error),
    #[error("codex did not finish within {0:?} (killed)\nstdout:\n{1}\nstderr:\n{2}")]
    TimedOut(Duration, String, String),
}

/// The workspace root (the parent of this package).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// True when `CODEX_VAULT_SKIP_CODEX_CLI=1`.
pub fn skip_requested() -> bool {
    std::env::var(SKIP_ENV).is_ok_and(|v| v == "1")
}

/// `$CODEX_CLI_BIN`, else `<workspace>/.cache/codex-cli/node_modules/.bin/codex`; an error that
/// says how to install it when it is not there.
pub fn codex_cli_bin() -> Result<PathBuf, CodexCliError> {
    let prefix = workspace_root().join(".cache/codex-cli");
    let path = std::env::var_os(CODEX_CLI_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| prefix.join("node_modules/.bin/codex"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(CodexCliError::NotInstalled {
            path,
            prefix,
            version: CODEX_CLI_VERSION,
            bin_env: CODEX_CLI_BIN_ENV,
            skip_env: SKIP_ENV,
        })
    }
}

/// The `codex` binary of one supported version: `.cache/codex-cli-<version>`, or `$CODEX_CLI_BIN`
/// for the default version.
pub fn codex_cli_bin_for(version: &'static str) -> Result<PathBuf, CodexCliError> {
    if version == CODEX_CLI_VERSION && std::env::var_os(CODEX_CLI_BIN_ENV).is_some() {
        return codex_cli_bin();
    }
    let prefix = workspace_root().join(format!(".cache/codex-cli-{version}"));
    let path = prefix.join("node_modules/.bin/codex");
    if path.is_file() {
        Ok(path)
    } else {
        Err(CodexCliError::NotInstalled {
            path,
            prefix,
            version,
            bin_env: CODEX_CLI_BIN_ENV,
            skip_env: SKIP_ENV,
        })
    }
}

/// A custom model provider for `config.toml`.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The provider id (`model_provider = "<id>"`); built-in ids such as `openai` cannot be
    /// redefined.
    pub id: String,
    /// The CLI POSTs `{base_url}/responses` and GETs `{base_url}/models`.
    pub base_url: String,
    /// The env var whose value the CLI sends as `Authorization: Bearer <value>`.
    pub env_key: Option<String>,
    /// Use the ChatGPT sign-in of `$CODEX_HOME/auth.json` instead of `env_key`: the CLI then
    /// adds `ChatGPT-Account-ID` itself, fetches `/models`, and refreshes its tokens (at
    /// `CODEX_REFRESH_TOKEN_URL_OVERRIDE` when set).
    pub requires_openai_auth: bool,
    /// Top-level `chatgpt_base_url`: where a ChatGPT-signed-in CLI sends its side requests
    /// (account checks, plugins); point it at a local server to keep the CLI offline.
    pub chatgpt_base_url: Option<String>,
    /// `[features]` switches.
    pub features: BTreeMap<String, bool>,
    /// Static headers on every request (e.g. `ChatGPT-Account-ID`).
    pub http_headers: BTreeMap<String, String>,
    /// Headers whose value is read from an env var (`header name → env var name`).
    pub env_http_headers: BTreeMap<String, String>,
    /// `model = "…"`.
    pub model: String,
    /// Retries the CLI makes before giving up (0 keeps failing tests fast).
    pub request_max_retries: u32,
    pub stream_max_retries: u32,
    /// Appended verbatim to `config.toml`.
    pub extra_toml: String,
}

impl ProviderConfig {
    /// A provider authenticated by a bearer token read from the env var `env_key`.
    pub fn new(base_url: impl Into<String>, env_key: impl Into<String>) -> Self {
        ProviderConfig {
            id: "codex-vault-test".into(),
            base_url: base_url.into(),
            env_key: Some(env_key.into()),
            requires_openai_auth: false,
            chatgpt_base_url: None,
            features: BTreeMap::new(),
            http_headers: BTreeMap::new(),
            env_http_headers: BTreeMap::new(),
            model: crate::models::FAKE_MODEL.into(),
            request_max_retries: 0,
            stream_max_retries: 0,
            extra_toml: String::new(),
        }
    }

    /// A provider using the CLI's own ChatGPT sign-in (`auth.json`), with side requests sent to
    /// `chatgpt_base_url` (e.g. `{fake}/backend-api/`) and the features that would reach
    /// chatgpt.com for plugins and connectors switched off.
    pub fn chatgpt(base_url: impl Into<String>, chatgpt_base_url: impl Into<String>) -> Self {
        let mut p = Self::new(base_url, "");
        p.env_key = None;
        p.requires_openai_auth = true;
        p.chatgpt_base_url = Some(chatgpt_base_url.into());
        for feature in ["apps", "plugins", "remote_plugin"] {
            p.features.insert(feature.into(), false);
        }
        p
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.http_headers.insert(name.into(), value.into());
        self
    }

    pub fn env_header(mut self, name: impl Into<String>, env_var: impl Into<String>) -> Self {
        self.env_http_headers.insert(name.into(), env_var.into());
        self
    }

    /// The `config.toml` text.
    pub fn config_toml(&self) -> String {
        let q = toml_string;
        let mut s = String::new();
        let _ = writeln!(s, "model = {}", q(&self.model));
        let _ = writeln!(s, "model_provider = {}", q(&self.id));
        // Keep the CLI offline apart from the provider: no update checks, no analytics, no
        // feedback uploads.
        let _ = writeln!(s, "check_for_update_on_startup = false");
        if let Some(url) = &self.chatgpt_base_url {
            let _ = writeln!(s, "chatgpt_base_url = {}", q(url));
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "[analytics]\nenabled = false\n");
        let _ = writeln!(s, "[feedback]\nenabled = false\n");
        if !self.features.is_empty() {
            let _ = writeln!(s, "[features]");
            for (name, on) in &self.features {
                let _ = writeln!(s, "{} = {on}", q(name));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "[model_providers.{}]", q(&self.id));
        let _ = writeln!(s, "name = {}", q("Codex Vault test provider"));
        let _ = writeln!(s, "base_url = {}", q(&self.base_url));
        let _ = writeln!(s, "wire_api = \"responses\"");
        if let Some(env_key) = &self.env_key {
            let _ = writeln!(s, "env_key = {}", q(env_key));
        }
        if self.requires_openai_auth {
            let _ = writeln!(s, "requires_openai_auth = true");
        }
        let _ = writeln!(s, "request_max_retries = {}", self.request_max_retries);
        let _ = writeln!(s, "stream_max_retries = {}", self.stream_max_retries);
        if !self.http_headers.is_empty() {
            let _ = writeln!(s, "http_headers = {}", inline_table(&self.http_headers));
        }
        if !self.env_http_headers.is_empty() {
            let _ = writeln!(
                s,
                "env_http_headers = {}",
                inline_table(&self.env_http_headers)
            );
        }
        if !self.extra_toml.is_empty() {
            let _ = writeln!(s, "\n{}", self.extra_toml);
        }
        s
    }
}

/// A TOML basic string (JSON string escaping is a subset TOML accepts).
fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn inline_table(map: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// A throw-away home: `HOME`, `CODEX_HOME` (with `config.toml`) and a working directory, all
/// removed on drop.
pub struct CodexHome {
    root: tempfile::TempDir,
}

impl CodexHome {
    pub fn new(provider: &ProviderConfig) -> std::io::Result<Self> {
        let root = tempfile::Builder::new().prefix("codex-home-").tempdir()?;
        let home = CodexHome { root };
        std::fs::create_dir_all(home.codex_home())?;
        std::fs::create_dir_all(home.workdir())?;
        std::fs::write(
            home.codex_home().join("config.toml"),
            provider.config_toml(),
        )?;
        Ok(home)
    }

    /// `HOME` for the CLI.
    pub fn home(&self) -> &Path {
        self.root.path()
    }

    /// `CODEX_HOME` (`$HOME/.codex`).
    pub fn codex_home(&self) -> PathBuf {
        self.root.path().join(".codex")
    }

    /// The directory `codex exec` runs in.
    pub fn workdir(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// Writes `$CODEX_HOME/auth.json` (0600, like the CLI).
    pub fn write_auth_json(&self, text: &str) -> std::io::Result<()> {
        let path = self.codex_home().join("auth.json");
        std::fs::write(&path, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}

/// What a `codex` run printed and how it ended.
#[derive(Debug, Clone)]
pub struct CodexRun {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CodexRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// One `codex exec` invocation.
pub struct CodexExec<'a> {
    pub bin: PathBuf,
    pub home: &'a CodexHome,
    pub prompt: String,
    /// Extra environment (the provider's `env_key` value goes here).
    pub env: Vec<(String, String)>,
    /// Extra arguments placed before the prompt.
    pub args: Vec<String>,
    pub timeout: Duration,
}

impl<'a> CodexExec<'a> {
    pub fn new(bin: PathBuf, home: &'a CodexHome, prompt: impl Into<String>) -> Self {
        CodexExec {
            bin,
            home,
            prompt: prompt.into(),
            env: Vec::new(),
            args: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        // A scrubbed environment: nothing of the developer's own Codex setup (OPENAI_API_KEY,
        // CODEX_HOME, proxies) may leak in. PATH stays, since the npm launcher runs on node.
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("HOME", self.home.home())
            .env("CODEX_HOME", self.home.codex_home())
            .env("XDG_CONFIG_HOME", self.home.home().join(".config"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.home.workdir())
            .arg("exec")
            .arg("--skip-git-repo-check")
            // Unknown config keys must fail loudly, not be silently ignored.
            .arg("--strict-config")
            .arg("--color")
            .arg("never")
            .args(&self.args)
            .arg(&self.prompt)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs it on the current tokio runtime.
    pub async fn run(&self) -> Result<CodexRun, CodexCliError> {
        let mut cmd = self.command();
        // Its own process group: the npm launcher (node) starts the native binary as a child,
        // and a timeout must kill both, or the orphan keeps our pipes open.
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn()?;
        let collect = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut buf).await;
                }
                buf
            })
        };
        let out = collect(child.stdout.take().map(|p| Box::new(p) as _));
        let err = collect(child.stderr.take().map(|p| Box::new(p) as _));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => Some(status?),
            Err(_) => {
                kill_group(&mut child).await;
                None
            }
        };
        // Bounded: a stray grandchild holding a pipe must not hang the test.
        let grace = Duration::from_secs(5);
        let stdout = tokio::time::timeout(grace, out)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stderr = tokio::time::timeout(grace, err)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        match status {
            Some(status) => Ok(CodexRun {
                code: status.code(),
                stdout,
                stderr,
            }),
            None => Err(CodexCliError::TimedOut(self.timeout, stdout, stderr)),
        }
    }

    /// Runs it from synchronous code (on a private runtime).
    pub fn run_blocking(&self) -> Result<CodexRun, CodexCliError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(self.run())
    }
}

async fn kill_group(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // The group id is the child's pid (process_group(0)); `kill -KILL -- -PGID` ends all.
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status()
            .await;
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_toml_quotes_everything() {
        let p = ProviderConfig::new("http://127.0.0.1:1/backend-api/codex", "KEY")
            .header("ChatGPT-Account-ID", "a\"b");
        let t = p.config_toml();
        assert!(t.contains("model_provider = \"codex-vault-test\""));
        assert!(t.contains("[model_providers.\"codex-vault-test\"]"));
        assert!(t.contains("base_url = \"http://127.0.0.1:1/backend-api/codex\""));
        assert!(t.contains("http_headers = { \"ChatGPT-Account-ID\" = \"a\\\"b\" }"));
    }
}
