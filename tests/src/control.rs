//! The control operations behind both the Rust API (`FakeOpenAi::…`) and the admin HTTP API, so
//! the two can never drift apart.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{AccountSpec, Fault, FaultRoute, IssuedTokens, ReuseMode};
use crate::counters::Counters;
use crate::gate::StreamGate;
use crate::state::{now_unix, Shared};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ControlError {
    #[error("unknown account {0}")]
    UnknownAccount(String),
    /// The token endpoint would have refused this (status and body as it would answer).
    #[error("refused with HTTP {status}: {body}")]
    Rejected { status: u16, body: Value },
}

/// Runtime switches; `None` leaves a setting unchanged. Also the answer of the admin
/// `settings` route (then every field is set).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub reuse_mode: Option<ReuseMode>,
    pub family_revoke_on_reuse: Option<bool>,
    pub omit_id_token_on_refresh: Option<bool>,
    pub omit_sse_content_type: Option<bool>,
    pub access_token_lifetime_secs: Option<u64>,
    pub responses_text: Option<String>,
    pub stream_deltas: Option<usize>,
    pub registered_redirect_ports: Option<Vec<u16>>,
}

impl Shared {
    pub(crate) fn add_account(&self, spec: AccountSpec) -> IssuedTokens {
        let now = now_unix();
        let mut state = self.lock();
        let id = spec.chatgpt_account_id.clone();
        state.register_account(spec, now);
        // Invariant: the account was registered on the line above.
        match state.new_family(&id, None, now) {
            Some((_, minted)) => minted.tokens,
            None => unreachable!("account {id} was just registered"),
        }
    }

    pub(crate) fn issue_grant(
        &self,
        account_id: &str,
        lifetime: Option<Duration>,
    ) -> Result<IssuedTokens, ControlError> {
        let now = now_unix();
        self.lock()
            .new_family(account_id, lifetime, now)
            .map(|(_, minted)| minted.tokens)
            .ok_or_else(|| ControlError::UnknownAccount(account_id.to_string()))
    }

    pub(crate) fn revoke_account(&self, account_id: &str) -> Result<(), ControlError> {
        if self.lock().revoke_account(account_id) {
            Ok(())
        } else {
            Err(ControlError::UnknownAccount(account_id.to_string()))
        }
    }

    pub(crate) fn rotate_out_of_band(
        &self,
        refresh_token: &str,
    ) -> Result<IssuedTokens, ControlError> {
        let now = now_unix();
        self.lock()
            .refresh(
                Some(crate::config::CLIENT_ID),
                Some(refresh_token),
                true,
                now,
            )
            .map(|minted| minted.tokens)
            .map_err(|(_, r)| ControlError::Rejected {
                status: r.status,
                body: r.body,
            })
    }

    pub(crate) fn set_rate_limited(
        &self,
        account_id: &str,
        resets_at: Option<i64>,
    ) -> Result<(), ControlError> {
        let mut state = self.lock();
        let account = state
            .accounts
            .get_mut(account_id)
            .ok_or_else(|| ControlError::UnknownAccount(account_id.to_string()))?;
        account.rate_limited_until = resets_at;
        Ok(())
    }

    pub(crate) fn set_usage(
        &self,
        account_id: &str,
        primary_used_percent: f64,
        secondary_used_percent: f64,
    ) -> Result<(), ControlError> {
        let now = now_unix();
        let mut state = self.lock();
        let account = state
            .accounts
            .get_mut(account_id)
            .ok_or_else(|| ControlError::UnknownAccount(account_id.to_string()))?;
        account.roll_windows(now);
        account.primary_used_percent = primary_used_percent;
        account.secondary_used_percent = secondary_used_percent;
        Ok(())
    }

    pub(crate) fn set_encrypted_content_error(
        &self,
        account_id: &str,
        shape: crate::encrypted::EncryptedContentError,
    ) -> Result<(), ControlError> {
        let mut state = self.lock();
        let account = state
            .accounts
            .get_mut(account_id)
            .ok_or_else(|| ControlError::UnknownAccount(account_id.to_string()))?;
        account.encrypted_content_error = shape;
        Ok(())
    }

    pub(crate) fn set_refresh_failure(
        &self,
        account_id: &str,
        status: Option<u16>,
    ) -> Result<(), ControlError> {
        let mut state = self.lock();
        let account = state
            .accounts
            .get_mut(account_id)
            .ok_or_else(|| ControlError::UnknownAccount(account_id.to_string()))?;
        account.refresh_failure = status;
        Ok(())
    }

    pub(crate) fn inject_faults(&self, route: FaultRoute, faults: Vec<Fault>) {
        self.lock().faults.entry(route).or_default().extend(faults);
    }

    pub(crate) fn set_login_identity(&self, spec: Option<AccountSpec>) {
        self.lock().login_identity = spec;
    }

    pub(crate) fn register_redirect_port(&self, port: u16) {
        let mut state = self.lock();
        if !state.cfg.registered_redirect_ports.contains(&port) {
            state.cfg.registered_redirect_ports.push(port);
        }
    }

    /// Parks every stream started from now on after its first event (or, with `after_output`,
    /// after its first output item), until the gate is released.
    pub(crate) fn hold_streams(&self, after_output: bool) -> StreamGate {
        let (gate, inner) = StreamGate::new(after_output);
        self.lock().gate = Some(inner);
        gate
    }

    pub(crate) fn counters(&self) -> Counters {
        self.raw_lock().counters.clone()
    }

    /// Applies the given switches and returns all of them as they now are.
    pub(crate) fn update_settings(&self, s: Settings) -> Settings {
        let mut state = self.lock();
        let cfg = &mut state.cfg;
        if let Some(v) = s.reuse_mode {
            cfg.reuse_mode = v;
        }
        if let Some(v) = s.family_revoke_on_reuse {
            cfg.family_revoke_on_reuse = v;
        }
        if let Some(v) = s.omit_id_token_on_refresh {
            cfg.omit_id_token_on_refresh = v;
        }
        if let Some(v) = s.omit_sse_content_type {
            cfg.omit_sse_content_type = v;
        }
        if let Some(v) = s.access_token_lifetime_secs {
            cfg.access_token_lifetime = Duration::from_secs(v);
        }
        if let Some(v) = s.responses_text {
            cfg.responses_text = v;
        }
        if let Some(v) = s.stream_deltas {
            cfg.stream_deltas = v;
        }
        if let Some(v) = s.registered_redirect_ports {
            cfg.registered_redirect_ports = v;
        }
        Settings {
            reuse_mode: Some(cfg.reuse_mode),
            family_revoke_on_reuse: Some(cfg.family_revoke_on_reuse),
            omit_id_token_on_refresh: Some(cfg.omit_id_token_on_refresh),
            omit_sse_content_type: Some(cfg.omit_sse_content_type),
            access_token_lifetime_secs: Some(cfg.access_token_lifetime.as_secs()),
            responses_text: Some(cfg.responses_text.clone()),
            stream_deltas: Some(cfg.stream_deltas),
            registered_redirect_ports: Some(cfg.registered_redirect_ports.clone()),
        }
    }
}
