//! The operations over connected configs: connect, disconnect, and following a new key or port.

use super::broker_env::BrokerEnvState;
use super::procs::{restart_hint, RestartHint};
use super::toml_block::{self as tb, KeySource};
use super::{file, ConnectOptions, Connection, KeyMode};
use crate::accounts::Service;
use crate::error::{AppError, ConnectError};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const TOKEN_WARNING: &str = "config.toml now holds a local secret (the endpoint's key): it was made readable by you only (0600). Never commit it to a dotfiles repository; `--key command` (the default) keeps the key out of it";

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ConnectReport {
    pub connection: Connection,
    /// The file was written (an unchanged file is not touched).
    pub changed: bool,
    /// The endpoint URL the block points at.
    pub url: String,
    pub restart: RestartHint,
    pub warnings: Vec<String>,
    /// For `--key env`: the line to add to Codex's environment (key left as a placeholder).
    pub env_line: Option<String>,
    pub broker_env: BrokerEnvState,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectOutcome {
    /// Nothing else had changed the file: the backup was put back, byte for byte.
    Restored,
    /// We had created the file and nothing else changed it: removed.
    Removed,
    /// The file changed since our last write: only our block and top-level lines were removed.
    BlockRemoved,
    /// The file no longer exists: only the record was dropped.
    Gone,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct DisconnectReport {
    pub codex_home: String,
    pub config_path: String,
    pub outcome: DisconnectOutcome,
    pub backup: Option<String>,
    pub restart: RestartHint,
    pub broker_env: BrokerEnvState,
}

/// A connection with what a running Codex would need now, for the Endpoint page.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ConnectionView {
    #[serde(flatten)]
    pub connection: Connection,
    pub restart: RestartHint,
    /// Our block is still in the file (someone may have removed it by hand).
    pub present: bool,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ConnectState {
    pub connections: Vec<ConnectionView>,
    pub broker_env: BrokerEnvState,
    /// Where `connect` without a directory writes (`$CODEX_HOME`, else `~/.codex`).
    pub default_codex_home: Option<String>,
}

fn config_path(home: &Path) -> PathBuf {
    home.join("config.toml")
}

fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, ConnectError> {
    String::from_utf8(bytes).map_err(|_| ConnectError::InvalidToml {
        path: path.display().to_string(),
        detail: "it is not UTF-8 text".into(),
    })
}

fn parse(path: &Path, text: &str) -> Result<toml_edit::DocumentMut, ConnectError> {
    tb::parse(text).map_err(|detail| ConnectError::InvalidToml {
        path: path.display().to_string(),
        detail,
    })
}

fn unsupported(path: &Path) -> impl FnOnce(tb::Unsupported) -> ConnectError + '_ {
    move |u| ConnectError::Unsupported {
        path: path.display().to_string(),
        detail: u.0,
    }
}

/// Writes the key file (0600) the command-backed auth reads, when its content differs.
fn write_key_file(service: &Service, key: &str) -> Result<PathBuf, AppError> {
    let path = super::key_file(service);
    if file::read(&path)?.as_deref() != Some(key.as_bytes()) {
        file::replace(&path, key.as_bytes(), Some(0o600))?;
    }
    Ok(path)
}

/// Applies our block (and the top-level keys the connection owns) to `doc`.
fn apply(
    service: &Service,
    doc: &mut toml_edit::DocumentMut,
    c: &Connection,
    path: &Path,
) -> Result<bool, AppError> {
    let url = super::endpoint_url(c.port);
    let key = service.local_api_key()?;
    let (program, key_file);
    let source = match c.key {
        KeyMode::Command => {
            key_file = write_key_file(service, key.expose())?.display().to_string();
            program = super::cat_program();
            KeySource::Command {
                program: &program,
                key_file: &key_file,
            }
        }
        KeyMode::Token => KeySource::Token(key.expose()),
        KeyMode::Env => KeySource::Env,
    };
    let mut changed = tb::write_block(doc, &url, &source).map_err(unsupported(path))?;
    if c.make_default {
        changed |= tb::set_top(doc, tb::MODEL_PROVIDER, tb::PROVIDER_ID);
    }
    if c.status_routes {
        changed |= tb::set_top(doc, tb::CHATGPT_BASE_URL, &super::chatgpt_base_url(c.port));
    }
    Ok(changed)
}

fn mode_for(c: &Connection) -> Option<u32> {
    // A file holding the key is the user's only; otherwise the file keeps its own mode.
    (c.key == KeyMode::Token).then_some(0o600)
}

/// The connection record after this `connect`: a new one, or the old one with the options
/// added (a reconnect adds options; disconnect removes them all).
fn record(
    old: Option<&Connection>,
    home: &Path,
    path: &Path,
    before: Option<&[u8]>,
    opts: &ConnectOptions,
    port: u16,
    doc: &toml_edit::DocumentMut,
) -> Connection {
    let mut c = old.cloned().unwrap_or_else(|| Connection {
        codex_home: home.display().to_string(),
        config_path: path.display().to_string(),
        backup: None,
        created: before.is_none(),
        original_sha256: before.map(file::sha256_hex),
        written_sha256: None,
        original_mode: file::mode(path),
        key: opts.key,
        make_default: false,
        previous_model_provider: None,
        status_routes: false,
        previous_chatgpt_base_url: None,
        broker: false,
        port,
        connected_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    c.port = port;
    c.key = opts.key;
    c.broker |= opts.broker;
    if opts.make_default && !c.make_default {
        c.make_default = true;
        c.previous_model_provider = tb::top_string(doc, tb::MODEL_PROVIDER);
    }
    if opts.status_routes && !c.status_routes {
        c.status_routes = true;
        c.previous_chatgpt_base_url = tb::top_string(doc, tb::CHATGPT_BASE_URL);
    }
    c
}

pub fn connect(service: &Service, opts: &ConnectOptions) -> Result<ConnectReport, AppError> {
    let home = super::resolve_home(opts.codex_home.as_deref())?;
    if !home.is_dir() {
        return Err(ConnectError::NoCodexHome {
            dir: home.display().to_string(),
        }
        .into());
    }
    let path = config_path(&home);
    let mut list = super::connections(service)?;
    let existing = list
        .iter()
        .position(|c| super::same_dir(Path::new(&c.codex_home), &home));
    let before = file::read(&path)?;
    let text = match before.clone() {
        Some(b) => text_of(&path, b)?,
        None => String::new(),
    };
    let mut doc = parse(&path, &text)?;
    let port = super::live_port(service)?;
    let old = existing.map(|i| list[i].clone());
    let mut c = record(
        old.as_ref(),
        &home,
        &path,
        before.as_deref(),
        opts,
        port,
        &doc,
    );
    let changed = apply(service, &mut doc, &c, &path)? || before.is_none();
    let current_sha = before.as_deref().map(file::sha256_hex);
    // Our last write still stands (or this is the first): a restore stays byte-exact.
    let pristine = old
        .as_ref()
        .is_none_or(|o| o.written_sha256.is_some() && o.written_sha256 == current_sha);
    if changed {
        if old.is_none() {
            if let Some(bytes) = &before {
                c.backup = Some(file::backup(&path, bytes)?.display().to_string());
            }
        }
        let out = doc.to_string();
        file::replace(&path, out.as_bytes(), mode_for(&c))?;
        c.written_sha256 = pristine.then(|| file::sha256_hex(out.as_bytes()));
    } else if !pristine {
        c.written_sha256 = None;
    }
    match existing {
        Some(i) => list[i] = c.clone(),
        None => list.push(c.clone()),
    }
    super::save(service, &list)?;
    let mut warnings = Vec::new();
    if c.key == KeyMode::Token {
        warnings.push(TOKEN_WARNING.to_string());
    }
    Ok(ConnectReport {
        changed,
        url: super::endpoint_url(port),
        restart: if changed {
            restart_hint(&home)
        } else {
            RestartHint::None
        },
        warnings,
        env_line: (c.key == KeyMode::Env).then(|| format!("export {}=<your key>", tb::KEY_ENV)),
        broker_env: super::sync_broker_env(service)?,
        connection: c,
    })
}

pub fn disconnect(service: &Service, dir: Option<&Path>) -> Result<DisconnectReport, AppError> {
    let home = super::resolve_home(dir)?;
    let mut list = super::connections(service)?;
    let Some(i) = list
        .iter()
        .position(|c| super::same_dir(Path::new(&c.codex_home), &home))
    else {
        let connected: Vec<&str> = list.iter().map(|c| c.codex_home.as_str()).collect();
        return Err(ConnectError::NotConnected {
            dir: home.display().to_string(),
            connected: if connected.is_empty() {
                "none".into()
            } else {
                connected.join(", ")
            },
        }
        .into());
    };
    let c = list[i].clone();
    let path = PathBuf::from(&c.config_path);
    let outcome = undo(&c, &path)?;
    list.remove(i);
    super::save(service, &list)?;
    if !list.iter().any(|c| c.key == KeyMode::Command) {
        file::remove(&super::key_file(service))?;
    }
    Ok(DisconnectReport {
        codex_home: c.codex_home.clone(),
        config_path: c.config_path.clone(),
        outcome,
        backup: c.backup.clone(),
        restart: match outcome {
            DisconnectOutcome::Gone => RestartHint::None,
            _ => restart_hint(&home),
        },
        broker_env: super::sync_broker_env(service)?,
    })
}

/// Takes our part out of the file: the backup back when nothing else wrote since, else only
/// what is ours. Any failure leaves the file as it was.
fn undo(c: &Connection, path: &Path) -> Result<DisconnectOutcome, AppError> {
    let Some(bytes) = file::read(path)? else {
        return Ok(DisconnectOutcome::Gone);
    };
    let untouched_since = c.written_sha256.as_deref() == Some(file::sha256_hex(&bytes).as_str());
    let backup = match &c.backup {
        Some(b) => file::read(Path::new(b))?,
        None => None,
    };
    if untouched_since {
        if c.created {
            file::remove(path)?;
            return Ok(DisconnectOutcome::Removed);
        }
        if let Some(orig) = backup
            .as_ref()
            .filter(|b| c.original_sha256.as_deref() == Some(file::sha256_hex(b).as_str()))
        {
            file::replace(path, orig, c.original_mode)?;
            return Ok(DisconnectOutcome::Restored);
        }
        // The backup is gone or changed: fall back to removing what is ours.
    }
    let text = text_of(path, bytes)?;
    let mut doc = parse(path, &text)?;
    let original = backup
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| tb::parse(&t).ok());
    let mut changed = tb::remove_block(&mut doc, original.as_ref());
    if c.make_default {
        changed |= tb::restore_top(
            &mut doc,
            tb::MODEL_PROVIDER,
            tb::PROVIDER_ID,
            c.previous_model_provider.as_deref(),
        );
    }
    if c.status_routes {
        changed |= tb::restore_top(
            &mut doc,
            tb::CHATGPT_BASE_URL,
            &super::chatgpt_base_url(c.port),
            c.previous_chatgpt_base_url.as_deref(),
        );
    }
    if changed {
        let mode = (c.key == KeyMode::Token)
            .then_some(c.original_mode)
            .flatten();
        file::replace(path, doc.to_string().as_bytes(), mode)?;
    }
    Ok(DisconnectOutcome::BlockRemoved)
}

pub fn state(service: &Service) -> Result<ConnectState, AppError> {
    let connections = super::connections(service)?
        .into_iter()
        .map(|c| {
            let present = file::read(Path::new(&c.config_path))
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| tb::parse(&t).ok())
                .is_some_and(|d| tb::has_block(&d));
            ConnectionView {
                restart: restart_hint(Path::new(&c.codex_home)),
                present,
                connection: c,
            }
        })
        .collect();
    Ok(ConnectState {
        connections,
        broker_env: super::sync_broker_env(service)?,
        default_codex_home: crate::paths::codex_home().map(|p| p.display().to_string()),
    })
}

/// Re-applies every connection (a new key, a new port): writes a file only when its text
/// changes; a file whose block was removed by hand, or that no longer parses, is left alone.
/// Returns how many files were written.
fn rewrite_all(service: &Service, port: Option<u16>) -> Result<usize, AppError> {
    let mut list = super::connections(service)?;
    let mut written = 0;
    for c in &mut list {
        let path = PathBuf::from(&c.config_path);
        let old_port = c.port;
        if let Some(p) = port {
            c.port = p;
        }
        let outcome = (|| -> Result<bool, AppError> {
            let Some(bytes) = file::read(&path)? else {
                return Ok(false);
            };
            let sha = file::sha256_hex(&bytes);
            let mut doc = parse(&path, &text_of(&path, bytes)?)?;
            if !tb::has_block(&doc) {
                return Ok(false);
            }
            let ours_before = super::chatgpt_base_url(old_port);
            let status_routes = c.status_routes
                && tb::top_string(&doc, tb::CHATGPT_BASE_URL).as_deref() == Some(&*ours_before);
            let mut applied = c.clone();
            applied.status_routes = status_routes;
            if !apply(service, &mut doc, &applied, &path)? {
                return Ok(false);
            }
            let out = doc.to_string();
            file::replace(&path, out.as_bytes(), mode_for(c))?;
            let pristine = c.written_sha256.as_deref() == Some(sha.as_str());
            c.written_sha256 = pristine.then(|| file::sha256_hex(out.as_bytes()));
            Ok(true)
        })();
        match outcome {
            Ok(true) => written += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), code = e.code().as_str(), "cannot update a connected Codex config: {e}");
            }
        }
    }
    super::save(service, &list)?;
    Ok(written)
}

/// What `endpoint rotate-key` did to the connected configs.
#[derive(Debug, Clone, Serialize)]
pub struct RotateReport {
    pub connections: usize,
    pub configs_rewritten: usize,
}

/// Rotates the local key and makes every connected Codex follow it: the key file (read again by
/// a running CLI on its next 401) and each `--key token` config.
pub fn rotate_key(service: &Service) -> Result<RotateReport, AppError> {
    service.rotate_local_api_key()?;
    let connections = super::connections(service)?.len();
    if connections == 0 {
        return Ok(RotateReport {
            connections,
            configs_rewritten: 0,
        });
    }
    let configs_rewritten = rewrite_all(service, None)?;
    Ok(RotateReport {
        connections,
        configs_rewritten,
    })
}

/// Points every connected config at `port` (the endpoint moved); returns how many were written.
pub fn retarget(service: &Service, port: u16) -> Result<usize, AppError> {
    let list = super::connections(service)?;
    if list.iter().all(|c| c.port == port) {
        return Ok(0);
    }
    let n = rewrite_all(service, Some(port))?;
    super::sync_broker_env(service)?;
    Ok(n)
}

/// A listener started on `port`: when it is the only one serving this store, the connected
/// configs follow it (a connected Codex never holds a dead port). Best effort: logged, never
/// fatal to the start.
pub fn follow_listener(service: &Service, port: u16) {
    let dir = PathBuf::from(service.info().data_dir);
    if crate::listeners::other_live_pid(&dir).is_some() {
        return;
    }
    match retarget(service, port) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            port,
            files = n,
            "connected Codex configs now point at the new port"
        ),
        Err(e) => tracing::warn!(
            code = e.code().as_str(),
            "cannot update the connected Codex configs: {e}"
        ),
    }
}
