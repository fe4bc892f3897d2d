//! `accounts login`: the browser sign-in (the default), `--device` (a code typed on any device)
//! and `--paste` (the browser is on another machine; its callback address is pasted back).
//! Each ends the same way: the sign-in is stored, or revives the account that has it.

use super::runtime;
use crate::accounts::Service;
use crate::error::{AppError, ConfigError};
use crate::oauth::auth_json::Credential;
use crate::oauth::client::TokenClient;
use crate::oauth::device::{DeviceFlow, DeviceProgress};
use crate::oauth::login::{LoginError, LoginFlow, LoginOptions};
use crate::oauth::paste::PastedLogin;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// How the sign-in reaches the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Browser { no_browser: bool },
    Device,
    Paste,
}

pub fn login(label: Option<String>, way: Way, timeout: u64) -> Result<ExitCode, AppError> {
    if let Some(l) = &label {
        crate::accounts::validate_label(l)?;
    }
    // Open the store first: a locked keychain should fail before the user signs in. The label
    // is not checked against the held ones here: which account this is, is known only after the
    // sign-in (a re-sign-in of the account that has it is fine), and `sign_in` never refuses a
    // completed sign-in over a name.
    let service = Service::open_default()?;
    let mut opts = LoginOptions::from_env().map_err(ConfigError::LoginSettings)?;
    opts.timeout = Duration::from_secs(timeout);
    let client = TokenClient::new(opts.issuer.clone());
    let rt = runtime()?;
    let cred = match way {
        Way::Browser { no_browser } => rt.block_on(browser(&opts, client, no_browser))?,
        Way::Device => rt.block_on(device(client))?,
        Way::Paste => paste(&rt, &opts, client)?,
    };
    let outcome = service.sign_in(&cred, label.as_deref())?;
    println!("{}", outcome.sentence());
    if let Some(note) = crate::accounts::label_note(label.as_deref(), &outcome) {
        eprintln!("note: {note}.");
    }
    Ok(ExitCode::SUCCESS)
}

async fn browser(
    opts: &LoginOptions,
    client: TokenClient,
    no_browser: bool,
) -> Result<Credential, LoginError> {
    let flow = LoginFlow::start(opts, client).await?;
    println!("Sign in with ChatGPT: open this URL in your browser:");
    println!("{}", flow.url());
    println!(
        "Waiting for the browser (callback on port {}; Ctrl-C cancels)...",
        flow.port()
    );
    let _ = std::io::stdout().flush();
    if !no_browser {
        crate::oauth::login::open_browser(flow.url());
    }
    flow.wait().await
}

async fn device(client: TokenClient) -> Result<Credential, LoginError> {
    let flow = DeviceFlow::start(client).await?;
    let code = flow.code().clone();
    let expires = crate::account::ms_to_rfc3339(code.expires_at_ms);
    println!("Sign in with a device code: on any device, open");
    println!("  {}", code.verification_url);
    println!("and enter this code:");
    println!("  {}", code.user_code);
    println!(
        "The code expires in {} (at {expires}). Never share it: whoever enters it gets this sign-in.",
        span(left_ms(code.expires_at_ms))
    );
    println!("Waiting for the approval (Ctrl-C cancels)...");
    let _ = std::io::stdout().flush();
    let tty = std::io::stderr().is_terminal();
    let result = flow
        .wait(|p| match p {
            DeviceProgress::Pending { .. } if tty => {
                eprint!("\r  waiting: {} left ", span(left_ms(code.expires_at_ms)));
            }
            DeviceProgress::Pending { .. } | DeviceProgress::Approved => {}
            DeviceProgress::SlowedDown { interval, .. } => eprintln!(
                "\rnote: the sign-in server asked to poll less often: every {} s now.",
                interval.as_secs()
            ),
            DeviceProgress::Retrying { reason, interval } => eprintln!(
                "\rnote: no answer from the sign-in server ({reason}); trying again in {} s.",
                interval.as_secs()
            ),
        })
        .await;
    if tty {
        eprintln!();
    }
    result
}

fn paste(
    rt: &tokio::runtime::Runtime,
    opts: &LoginOptions,
    client: TokenClient,
) -> Result<Credential, AppError> {
    let login = PastedLogin::new(opts, client);
    println!("Sign in with ChatGPT: open this URL in a browser on any machine:");
    println!("{}", login.url());
    println!(
        "After you sign in, that browser is sent to http://localhost:…/auth/callback?code=…, which fails there."
    );
    println!("Copy that whole address from its address bar, paste it here and press Enter:");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| LoginError::PasteInvalid(format!("cannot read standard input: {e}")))?;
    if line.trim().is_empty() {
        return Err(LoginError::PasteInvalid("nothing was pasted".into()).into());
    }
    Ok(rt.block_on(login.finish(&line))?)
}

fn left_ms(expires_at_ms: i64) -> i64 {
    (expires_at_ms - crate::account::now_ms()).max(0)
}

/// `14:05` (minutes and seconds).
fn span(ms: i64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The flags' choice: `--device` and `--paste` only when asked, else the browser.
pub fn way(no_browser: bool, device: bool, paste: bool) -> Way {
    match (device, paste) {
        (true, _) => Way::Device,
        (_, true) => Way::Paste,
        _ => Way::Browser { no_browser },
    }
}
