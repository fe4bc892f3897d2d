//! Opening the sign-in page in the user's browser, and the switch that turns it off.

/// A yes/no switch (`CODEX_VAULT_NO_BROWSER`): `1`/`true`/`yes` or `0`/`false`/`no`, any case.
pub fn parse_switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("expected 1, true or yes (or 0, false or no)".to_string()),
    }
}

/// Opens `url` in the default browser, best effort: the URL is always shown too, so a missing
/// opener is not an error. `CODEX_VAULT_NO_BROWSER=1` (or `true`, `yes`) turns it off (tests,
/// remote sessions); a value that is no switch is logged and ignored here (`accounts login`
/// refuses it up front).
pub fn open_browser(url: &str) {
    if let Some(v) = std::env::var_os("CODEX_VAULT_NO_BROWSER").filter(|v| !v.is_empty()) {
        match parse_switch(&v.to_string_lossy()) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!("CODEX_VAULT_NO_BROWSER is ignored: {e}"),
        }
    }
    let mut cmd = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    let spawned = cmd
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::info!("could not open a browser: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_take_the_usual_spellings_in_any_case() {
        for v in ["1", "true", "TRUE", "Yes", "yes", " true "] {
            assert_eq!(parse_switch(v), Ok(true), "{v}");
        }
        for v in ["0", "false", "False", "NO", "no"] {
            assert_eq!(parse_switch(v), Ok(false), "{v}");
        }
        for v in ["", "2", "on", "y", "maybe"] {
            let e = parse_switch(v).unwrap_err();
            assert!(e.contains("1, true or yes"), "{v}: {e}");
        }
    }
}
