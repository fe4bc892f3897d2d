//! The diagnostics report (`codex-vault diagnostics`, the app's *Copy diagnostics*): what someone
//! helping with a problem needs — versions, OS, keychain backend, store schema, settings, each
//! account's state, the endpoint, and the last warnings and errors — and never a token, a key
//! or an email. Labels and emails appear only as fingerprints (`secret::fingerprint`), upstream
//! messages not at all (their codes do), and anything email-like in a log line is replaced by its
//! fingerprint too.

use crate::accounts::Service;
use crate::error::AppError;
use crate::logging::LogLine;
use crate::secret::fingerprint;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct Diagnostics {
    pub app_version: String,
    pub os: OsInfo,
    /// Where the data key is kept: `keychain` (with the platform's name for it) or `file`.
    pub key_store: String,
    pub store_schema_version: i64,
    pub data_dir: String,
    /// The store's settings (none is a secret: the local key lives sealed elsewhere).
    pub settings: BTreeMap<String, String>,
    pub accounts: Vec<AccountDiagnostics>,
    pub endpoint: EndpointDiagnostics,
    /// The last warnings and errors (at most 50, oldest first): from the log file, plus this
    /// process's own when it does not write the file (a CLI call).
    pub recent_problems: Vec<LogLine>,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct OsInfo {
    pub os: String,
    pub arch: String,
    /// The distribution (`PRETTY_NAME` of /etc/os-release), where there is one.
    pub release: Option<String>,
    /// The kernel's release, where it can be read.
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct AccountDiagnostics {
    pub id: String,
    pub label_fp: String,
    pub email_fp: Option<String>,
    pub plan: Option<String>,
    pub status: String,
    /// Why it needs sign-in: the failure's code, HTTP status and when.
    pub reason_code: Option<String>,
    pub reason_http_status: Option<u16>,
    pub reason_at: Option<String>,
    pub last_error_at: Option<String>,
    pub rate_limited_until: Option<String>,
    pub access_expires_at: Option<String>,
    pub last_refresh_at: Option<String>,
    pub held_in_memory: bool,
    pub shared_grant: bool,
    pub brokered: bool,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct EndpointDiagnostics {
    pub configured_port: u16,
    /// Every process serving this store now (the app, `serve`s).
    pub listeners: Vec<ListenerDiagnostics>,
    /// Why this process's endpoint last failed to start, if it did (the app).
    pub last_start_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ListenerDiagnostics {
    pub pid: u32,
    pub port: u16,
}

/// Builds the report for `service`'s store. `last_start_error`: the face's own endpoint failure.
pub fn build(service: &Service, last_start_error: Option<String>) -> Result<Diagnostics, AppError> {
    let data_dir = std::path::PathBuf::from(service.info().data_dir);
    let configured_port = crate::endpoint::info::configured_port(service)?;
    let listeners = crate::listeners::live_preferring(&data_dir, Some(configured_port))
        .into_iter()
        .map(|l| ListenerDiagnostics {
            pid: l.pid,
            port: l.port,
        })
        .collect();
    Ok(Diagnostics {
        app_version: env!("CARGO_PKG_VERSION").to_string(),
        os: os_info(),
        key_store: key_store_name(service.vault().kind()),
        store_schema_version: crate::store::schema::LATEST,
        data_dir: data_dir.display().to_string(),
        settings: service.store().settings().snapshot(),
        accounts: service.list()?.iter().map(account).collect(),
        endpoint: EndpointDiagnostics {
            configured_port,
            listeners,
            last_start_error: last_start_error.map(|e| scrub(&e)),
        },
        recent_problems: recent_problems(&data_dir),
    })
}

fn account(v: &crate::account::AccountView) -> AccountDiagnostics {
    AccountDiagnostics {
        id: v.id.clone(),
        label_fp: fingerprint(&v.label),
        email_fp: v.email.as_deref().map(fingerprint),
        plan: v.plan.clone(),
        status: v.status.as_str().to_string(),
        reason_code: v.failure.as_ref().map(|f| f.code.clone()),
        reason_http_status: v.failure.as_ref().and_then(|f| f.http_status),
        reason_at: v.failure.as_ref().map(|f| f.at.clone()),
        last_error_at: v.last_error.as_ref().map(|e| e.at.clone()),
        rate_limited_until: v.rate_limited_until.clone(),
        access_expires_at: v.access_expires_at.clone(),
        last_refresh_at: v.last_refresh_at.clone(),
        held_in_memory: v.held_rotation.is_some(),
        shared_grant: v.shared_grant,
        brokered: v.brokered,
    }
}

fn key_store_name(kind: crate::vault::KeyStoreKind) -> String {
    match kind {
        crate::vault::KeyStoreKind::File => "file (data-key in the data dir)".into(),
        crate::vault::KeyStoreKind::Keychain if cfg!(target_os = "macos") => {
            "keychain (macOS Keychain)".into()
        }
        crate::vault::KeyStoreKind::Keychain if cfg!(target_os = "windows") => {
            "keychain (Windows Credential Manager)".into()
        }
        crate::vault::KeyStoreKind::Keychain => "keychain (Secret Service)".into(),
    }
}

fn os_info() -> OsInfo {
    let release = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim().trim_matches('"').to_string())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_string());
    OsInfo {
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        release,
        kernel,
    }
}

/// The last warnings and errors: the log file's, and this process's own when it does not write
/// the file (they are in the file otherwise), each scrubbed.
fn recent_problems(data_dir: &Path) -> Vec<LogLine> {
    let max = crate::logging::RECENT_PROBLEMS;
    let mut lines = crate::logging::recent_in_files(data_dir, max);
    if !crate::logging::file_attached() {
        lines.extend(crate::logging::recent_in_memory());
        // RFC 3339 UTC times with the same precision sort as text.
        lines.sort_by(|a, b| a.at.cmp(&b.at));
    }
    let skip = lines.len().saturating_sub(max);
    lines
        .into_iter()
        .skip(skip)
        .map(|mut l| {
            l.text = scrub(&l.text);
            l
        })
        .collect()
}

/// Replaces every email-like word (something@something.something) by its fingerprint: a log
/// line or an error message should never carry one, and the report must not even if it did.
pub fn scrub(text: &str) -> String {
    let is_word = |c: char| {
        !c.is_whitespace() && !matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | ',' | ';' | '`')
    };
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let email_like = word
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'));
        if email_like {
            out.push_str("email:");
            out.push_str(&fingerprint(word.trim_end_matches('.')));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_word(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The report as text, for `codex-vault diagnostics`.
pub fn render_text(d: &Diagnostics) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Codex Vault {}", d.app_version);
    let _ = writeln!(
        s,
        "OS: {} {} ({}; kernel {})",
        d.os.os,
        d.os.arch,
        d.os.release.as_deref().unwrap_or("-"),
        d.os.kernel.as_deref().unwrap_or("-")
    );
    let _ = writeln!(s, "Key store: {}", d.key_store);
    let _ = writeln!(s, "Store schema version: {}", d.store_schema_version);
    let _ = writeln!(s, "Data dir: {}", d.data_dir);
    let _ = writeln!(s, "Settings:");
    if d.settings.is_empty() {
        let _ = writeln!(s, "  (none set)");
    }
    for (k, v) in &d.settings {
        let _ = writeln!(s, "  {k} = {v}");
    }
    let _ = writeln!(s, "Accounts ({}):", d.accounts.len());
    for a in &d.accounts {
        let _ = writeln!(s, "  {}", account_line(a));
    }
    render_endpoint(&mut s, &d.endpoint);
    let _ = writeln!(
        s,
        "Recent warnings and errors ({}):",
        d.recent_problems.len()
    );
    for l in &d.recent_problems {
        let _ = writeln!(s, "  {} {:<5} {}", l.at, l.level, l.text);
    }
    s
}

fn account_line(a: &AccountDiagnostics) -> String {
    let mut line = format!(
        "{} label:{} email:{} plan:{} {}",
        a.id,
        a.label_fp,
        a.email_fp.as_deref().unwrap_or("-"),
        a.plan.as_deref().unwrap_or("-"),
        a.status
    );
    if let Some(code) = &a.reason_code {
        line.push_str(&format!(" [{code}"));
        if let Some(h) = a.reason_http_status {
            line.push_str(&format!(", HTTP {h}"));
        }
        line.push_str(&format!(
            ", since {}]",
            a.reason_at.as_deref().unwrap_or("?")
        ));
    }
    if let Some(until) = &a.rate_limited_until {
        line.push_str(&format!(" rate-limited until {until}"));
    }
    if let Some(at) = &a.last_error_at {
        line.push_str(&format!(" last error {at}"));
    }
    for (flag, word) in [
        (a.held_in_memory, "held-in-memory"),
        (a.shared_grant, "shared-grant"),
        (a.brokered, "brokered"),
    ] {
        if flag {
            line.push(' ');
            line.push_str(word);
        }
    }
    line
}

fn render_endpoint(s: &mut String, e: &EndpointDiagnostics) {
    use std::fmt::Write;
    let _ = write!(s, "Endpoint: configured port {}; ", e.configured_port);
    if e.listeners.is_empty() {
        let _ = writeln!(s, "not running");
    } else {
        let all: Vec<String> = e
            .listeners
            .iter()
            .map(|l| format!("port {} (pid {})", l.port, l.pid))
            .collect();
        let _ = writeln!(s, "listening: {}", all.join(", "));
    }
    if let Some(err) = &e.last_start_error {
        let _ = writeln!(s, "  last start failed: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_replaced_by_their_fingerprints() {
        let s = scrub("signed in as ana@corp.com, then \"bo@x.io\" (c@d.ef). not@mail nor @x.y");
        assert!(
            !s.contains("ana@corp.com") && !s.contains("bo@x.io") && !s.contains("c@d.ef"),
            "{s}"
        );
        assert!(
            s.contains(&format!("email:{}", fingerprint("ana@corp.com"))),
            "{s}"
        );
        assert!(
            s.contains(&format!("\"email:{}\"", fingerprint("bo@x.io"))),
            "{s}"
        );
        assert!(
            s.contains(&format!("(email:{})", fingerprint("c@d.ef"))),
            "{s}"
        );
        assert!(s.contains("not@mail nor @x.y"), "not emails, kept: {s}");
    }
}
