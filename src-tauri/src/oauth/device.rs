//! Device-code sign-in (protocol.md § Device sign-in): ask the issuer for a user code, show it
//! with the verification URL, poll at the issuer's interval until the user approves it on any
//! device, then redeem the authorization code and PKCE verifier the approval carries.

use super::classify::error_code;
use super::client::{Issuer, TokenClient, CLIENT_ID};
use super::login::{redeem, LoginCanceller, LoginError, Outcome};
use crate::account::now_ms;
use crate::secret::Secret;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Upstream's client gives up after 15 minutes and tells the user the code lasts that long;
/// used when the issuer's answer names no lifetime.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// When the answer has no usable interval (upstream's fallback too).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 § 3.5: each `slow_down` adds 5 seconds, unless the issuer names the new interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Failed polls (network, 5xx) in a row before giving up; each waits a full interval.
const MAX_TRANSIENT: u32 = 3;

/// What the user is shown: the code to type and where.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    pub user_code: String,
    pub verification_url: String,
    pub interval: Duration,
    /// When the code stops being approvable (unix ms; our estimate when the issuer names none).
    pub expires_at_ms: i64,
    device_auth_id: String,
}

/// A poll's news, for a progress line or a UI event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceProgress {
    /// Not approved yet; the next poll is due after `interval`.
    Pending { polls: u32, interval: Duration },
    /// The issuer asked us to poll less often: from now on every `interval`.
    SlowedDown { polls: u32, interval: Duration },
    /// A poll failed to get an answer; it is tried again after `interval`.
    Retrying { reason: String, interval: Duration },
    /// Approved: the code is being redeemed.
    Approved,
}

/// Cancels a waiting device sign-in (Ctrl-C is the CLI's; the UI's Cancel button uses this).
#[derive(Clone)]
pub struct DeviceCanceller(watch::Sender<Option<String>>);

impl DeviceCanceller {
    pub fn cancel(&self, why: &str) {
        self.0.send_replace(Some(why.to_string()));
    }
}

pub struct DeviceFlow {
    client: TokenClient,
    code: DeviceCode,
    deadline: Instant,
    cancel: watch::Sender<Option<String>>,
}

/// One poll's answer, classified.
enum Poll {
    Approved { code: String, verifier: Secret },
    Pending,
    SlowDown(Option<Duration>),
    Expired,
    Denied(String),
    Transient(String),
    Refused { status: u16, code: String },
}

impl DeviceFlow {
    /// Asks the issuer for a user code.
    pub async fn start(client: TokenClient) -> Result<DeviceFlow, LoginError> {
        let issuer: Issuer = client.issuer().clone();
        let (status, body) = client
            .post_json(
                issuer.device_usercode_url(),
                &json!({ "client_id": CLIENT_ID }),
            )
            .await
            .map_err(LoginError::Network)?;
        let v: Option<Value> = serde_json::from_slice(&body).ok();
        if status == 404 {
            return Err(LoginError::DeviceUnavailable);
        }
        if !(200..300).contains(&status) {
            return Err(LoginError::DeviceRefused {
                status,
                code: v
                    .as_ref()
                    .and_then(error_code)
                    .unwrap_or_else(|| format!("http_{status}")),
            });
        }
        let v = v.unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (Some(device_auth_id), Some(user_code)) = (
            text("device_auth_id"),
            text("user_code").or(text("usercode")),
        ) else {
            return Err(LoginError::DeviceRefused {
                status,
                code: "no device_auth_id or user_code in the answer".into(),
            });
        };
        let interval = seconds(v.get("interval"))
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_INTERVAL);
        let lifetime = seconds(v.get("expires_in")).unwrap_or(DEFAULT_LIFETIME);
        let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2);
        let code = DeviceCode {
            user_code: user_code.to_string(),
            verification_url: issuer.device_verification_url(),
            interval,
            expires_at_ms: now_ms().saturating_add(lifetime_ms),
            device_auth_id: device_auth_id.to_string(),
        };
        Ok(DeviceFlow {
            client,
            code,
            deadline: Instant::now() + lifetime,
            cancel: watch::Sender::new(None),
        })
    }

    pub fn code(&self) -> &DeviceCode {
        &self.code
    }

    pub fn canceller(&self) -> DeviceCanceller {
        DeviceCanceller(self.cancel.clone())
    }

    /// The same, as the handle the app keeps for whichever sign-in is pending.
    pub fn login_canceller(&self) -> LoginCanceller {
        LoginCanceller::device(self.canceller())
    }

    /// Polls until approved, denied, expired or cancelled. Each poll is due one interval after
    /// the previous answer arrived (the first one interval after the code was issued); between
    /// polls nothing runs.
    pub async fn wait(self, mut progress: impl FnMut(DeviceProgress)) -> Outcome {
        let mut cancelled = self.cancel.subscribe();
        let mut interval = self.code.interval;
        let mut due = Instant::now() + interval;
        let mut polls = 0u32;
        let mut transient = 0u32;
        let body = json!({
            "device_auth_id": self.code.device_auth_id,
            "user_code": self.code.user_code,
        });
        loop {
            if due >= self.deadline {
                // No poll is due before the code dies: wait for its end, then say so.
                tokio::select! {
                    _ = tokio::time::sleep_until(self.deadline) => return Err(LoginError::DeviceExpired),
                    why = wait_cancel(&mut cancelled) => return Err(LoginError::Cancelled(why)),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                why = wait_cancel(&mut cancelled) => return Err(LoginError::Cancelled(why)),
            }
            polls += 1;
            let answer = tokio::select! {
                a = self.client.post_json(self.client.issuer().device_token_url(), &body) => a,
                why = wait_cancel(&mut cancelled) => return Err(LoginError::Cancelled(why)),
            };
            let poll = match answer {
                Ok((status, bytes)) => classify(status, &bytes),
                Err(reason) => Poll::Transient(reason),
            };
            if !matches!(poll, Poll::Transient(_)) {
                transient = 0;
            }
            match poll {
                Poll::Approved { code, verifier } => {
                    progress(DeviceProgress::Approved);
                    let redirect = self.client.issuer().device_redirect_uri();
                    return redeem(&self.client, &code, &redirect, &verifier).await;
                }
                Poll::Pending => progress(DeviceProgress::Pending { polls, interval }),
                Poll::SlowDown(named) => {
                    interval = named
                        .filter(|n| *n > interval)
                        .unwrap_or(interval + SLOW_DOWN_STEP);
                    progress(DeviceProgress::SlowedDown { polls, interval });
                }
                Poll::Transient(reason) => {
                    transient += 1;
                    if transient >= MAX_TRANSIENT {
                        return Err(LoginError::Network(reason));
                    }
                    progress(DeviceProgress::Retrying { reason, interval });
                }
                Poll::Expired => return Err(LoginError::DeviceExpired),
                Poll::Denied(code) => return Err(LoginError::DeviceDenied(code)),
                Poll::Refused { status, code } => {
                    return Err(LoginError::DeviceRefused { status, code })
                }
            }
            due = Instant::now() + interval;
        }
    }
}

/// Resolves with the reason once cancelled; never, if the canceller is dropped uncancelled.
async fn wait_cancel(rx: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(why) = rx.borrow_and_update().clone() {
            return why;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Seconds as a number or a string of digits (upstream sends `"interval": "5"`).
fn seconds(v: Option<&Value>) -> Option<Duration> {
    let n = match v? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    Some(Duration::from_secs(n))
}

/// The body's error code decides first (RFC 8628's names, and upstream's
/// `authorization_declined`); without a known one, 403/404 mean "not yet", as upstream's own
/// client reads them.
fn classify(status: u16, bytes: &[u8]) -> Poll {
    let v: Option<Value> = serde_json::from_slice(bytes).ok();
    if (200..300).contains(&status) {
        let v = v.unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        return match (text("authorization_code"), text("code_verifier")) {
            (Some(code), Some(verifier)) => Poll::Approved {
                code: code.to_string(),
                verifier: Secret::new(verifier),
            },
            _ => Poll::Refused {
                status,
                code: "no authorization_code or code_verifier in the answer".into(),
            },
        };
    }
    let code = v.as_ref().and_then(error_code);
    match code.as_deref() {
        Some("authorization_pending") => Poll::Pending,
        Some("slow_down") => Poll::SlowDown(v.as_ref().and_then(|v| seconds(v.get("interval")))),
        Some("expired_token") => Poll::Expired,
        Some(c @ ("access_denied" | "authorization_declined")) => Poll::Denied(c.to_string()),
        _ if status == 429 => Poll::SlowDown(None),
        _ if status == 403 || status == 404 => Poll::Pending,
        _ if status >= 500 => Poll::Transient(format!("the sign-in server answered HTTP {status}")),
        other => Poll::Refused {
            status,
            code: other.map_or_else(|| format!("http_{status}"), str::to_string),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: Value) -> &'static str {
        match classify(status, body.to_string().as_bytes()) {
            Poll::Approved { .. } => "approved",
            Poll::Pending => "pending",
            Poll::SlowDown(_) => "slow_down",
            Poll::Expired => "expired",
            Poll::Denied(_) => "denied",
            Poll::Transient(_) => "transient",
            Poll::Refused { .. } => "refused",
        }
    }

    #[test]
    fn poll_answers_are_read_by_code_then_status() {
        let ok = json!({"authorization_code": "c", "code_challenge": "x", "code_verifier": "v"});
        assert_eq!(kind(200, ok), "approved");
        assert_eq!(kind(200, json!({})), "refused");
        assert_eq!(
            kind(403, json!({"error": "authorization_pending"})),
            "pending"
        );
        assert_eq!(kind(403, json!({"error": "slow_down"})), "slow_down");
        assert_eq!(kind(410, json!({"error": "expired_token"})), "expired");
        assert_eq!(
            kind(401, json!({"error": "authorization_declined"})),
            "denied"
        );
        assert_eq!(
            kind(400, json!({"error": {"code": "access_denied"}})),
            "denied"
        );
        // Upstream's client: a bare 403/404 is "not yet".
        assert_eq!(kind(404, json!(null)), "pending");
        assert_eq!(kind(403, json!({"error": "whatever"})), "pending");
        assert_eq!(kind(429, json!(null)), "slow_down");
        assert_eq!(kind(502, json!(null)), "transient");
        assert_eq!(kind(400, json!({"error": "invalid_request"})), "refused");
    }

    #[test]
    fn intervals_come_as_numbers_or_strings() {
        assert_eq!(seconds(Some(&json!(5))), Some(Duration::from_secs(5)));
        assert_eq!(seconds(Some(&json!(" 7 "))), Some(Duration::from_secs(7)));
        assert_eq!(seconds(Some(&json!("x"))), None);
        assert_eq!(seconds(None), None);
    }
}
