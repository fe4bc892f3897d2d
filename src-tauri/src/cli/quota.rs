//! `accounts redeem-reset`: spend one reset credit of an account, only with `--yes`.

use crate::accounts::Service;
use crate::error::{AppError, RedeemError};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RedeemArgs {
    /// The account: its id, label or email.
    #[arg(value_name = "ID|LABEL")]
    pub account: String,
    /// Confirm spending the credit (a credit spent cannot be had back). Without it nothing is
    /// done and the account's credits are shown.
    #[arg(long)]
    pub yes: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn redeem_reset(args: RedeemArgs) -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    let account = service.store().find_account(&args.account)?;
    if !args.yes {
        let credits = service.reset_credits(&account.id)?;
        let expiry = credits
            .as_ref()
            .and_then(|c| c.next_to_spend())
            .and_then(|c| c.expires_at.clone())
            .map(|t| format!("; the next expires {t}"))
            .unwrap_or_default();
        return Err(RedeemError::NotConfirmed {
            label: account.label,
            available: credits.map_or(0, |c| c.available_count),
            expiry,
        }
        .into());
    }
    let tm = service.token_manager();
    let outcome = super::runtime()?.block_on(async {
        let out = service.redeem_reset(&tm, &account.id).await;
        crate::runtime::drain_refreshes(&tm).await;
        out
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).expect("RedeemOutcome serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let how = if outcome.joined {
        " (another redemption of it had just finished: nothing more was spent)"
    } else if outcome.retried {
        " (a retry of the redemption whose answer was lost: the same request id, nothing more spent)"
    } else {
        ""
    };
    println!(
        "{}: {} — {} window(s) reset{how}.",
        outcome.label, outcome.code, outcome.windows_reset
    );
    println!(
        "{}",
        if outcome.limit_lifted {
            "The account is not rate-limited now."
        } else {
            "The backend still reports the account's limit as reached."
        }
    );
    Ok(ExitCode::SUCCESS)
}
