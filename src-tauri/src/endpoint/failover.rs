//! One request's way through the accounts (`send`): pick an account, inject its credentials,
//! send, and on a 401 refresh and retry once, on a usage cap or a stream failing before its first
//! output fail over, on unreadable ciphertext retry once without it. Routes in `proxy` and
//! `chat` turn what comes back into their answers.

use super::continuity::{self, hold, rewrite, scan, tap};
use super::proxy::{
    conversation, is_invalid_encrypted_content, passthrough, read_small, refresh_error,
    request_keys, select_error, upstream_request, usage_limit_reset, Sent, Upstream, PIN_HEADER,
};
use super::record::{TerminalSlot, Trace};
use super::select::{Request as Pick, SelectError};
use super::{error, lock, Shared};
use crate::account::usage;
use crate::account::{now_ms, FailureReason};
use crate::activity::Route;
use crate::error_code::ErrorCode;
use crate::oauth::classify::{error_code, error_message};
use crate::refresh::AccessToken;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use futures_util::stream::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a request carries that decides where it may go: a pin, its conversation, and the
/// ciphertext in its body with who minted each piece.
struct Inspected {
    pin: Option<String>,
    posted: bool,
    compact: bool,
    carried: Vec<scan::Digest>,
    minters: Vec<Option<(Arc<str>, continuity::Kind)>>,
    conv: Option<String>,
    model: Option<String>,
}

fn inspect(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Inspected {
    let pin = headers
        .get(PIN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let posted = *method == Method::POST;
    let cont = &shared.continuity;
    // The ciphertext this body carries, found by a byte scan (no parse) and looked up once.
    let carried: Vec<scan::Digest> = if posted {
        let c = scan::carried(body);
        if c.needs_parse {
            rewrite::carried_parsed(body)
        } else {
            c.digests
        }
    } else {
        Vec::new()
    };
    let minters = cont.minters(&carried);
    // A compacted conversation lives on the account holding its summary while that one serves.
    let compaction_home: Option<Arc<str>> = minters.iter().rev().find_map(|m| match m {
        Some((a, continuity::Kind::Compaction)) => Some(a.clone()),
        _ => None,
    });
    let (mut conv, model) = if posted {
        request_keys(headers, body)
    } else {
        (conversation(headers, &[]), None)
    };
    if let Some(home) = &compaction_home {
        let key = conv.get_or_insert_with(|| {
            format!(
                "compaction:{}",
                hex16(carried.last().copied().unwrap_or_default())
            )
        });
        lock(&shared.selector).stick(key, home);
    }
    Inspected {
        pin,
        posted,
        compact: path.ends_with("/compact"),
        carried,
        minters,
        conv,
        model,
    }
}

/// The accounts tried so far for one request, and what the client gets if none answers.
#[derive(Default)]
struct Tries {
    excluded: HashSet<String>,
    refreshed: HashSet<String>,
    passed_over: HashMap<String, &'static str>,
    last_failure: Option<Sent>,
    /// After a 400 for unreadable ciphertext: the same account once more, with only its own.
    retry_stripped: Option<String>,
    stripped_once: bool,
    /// This request's entry in the activity log (`None`: not logged).
    trace: Option<Trace>,
    /// No account could be chosen (the answer is ours).
    no_account: bool,
}

impl Tries {
    /// `id` is not tried again for this request; `failure` is what the client sees if no other
    /// account answers.
    fn pass_over(&mut self, id: &str, why: &'static str, failure: Option<Sent>) {
        self.excluded.insert(id.to_string());
        self.passed_over.insert(id.to_string(), why);
        self.last_failure = failure;
    }
}

/// The next account to try, and whether ciphertext of unknown origin is to be left out.
fn pick(
    shared: &Shared,
    req: &Inspected,
    tries: &mut Tries,
) -> Result<(String, bool), SelectError> {
    if let Some(id) = tries.retry_stripped.take() {
        if let Some(t) = tries.trace.as_mut() {
            let accounts = shared.accounts();
            let label = accounts
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.label.as_str());
            t.tried(&id, label);
        }
        return Ok((id, true));
    }
    let accounts = shared.accounts();
    let usage = lock(&shared.usage);
    let mut selector = lock(&shared.selector);
    selector.backing_off = shared.tm.backing_off();
    selector
        .select(
            &accounts,
            &usage,
            &Pick {
                pin: req.pin.as_deref(),
                conversation: req.conv.as_deref(),
                excluded: &tries.excluded,
            },
            now_ms(),
        )
        .map(|a| {
            if let Some(t) = tries.trace.as_mut() {
                t.tried(&a.id, Some(&a.label));
            }
            (a.id.clone(), false)
        })
}

/// Only what this account minted goes to it: others' ciphertext is dropped whole (and, after a
/// rejection, ciphertext of unknown origin too). Parsed only when needed. Also returns the
/// accounts whose summaries were left out.
fn body_for(
    shared: &Shared,
    req: &Inspected,
    body: &Bytes,
    id: &str,
    strip_unknown: bool,
) -> (Bytes, Vec<Arc<str>>) {
    let cont = &shared.continuity;
    let foreign = req.minters.iter().any(|m| match m {
        Some((a, _)) => **a != *id,
        None => strip_unknown,
    });
    let mut summary_lost: Vec<Arc<str>> = Vec::new();
    if !foreign {
        return (body.clone(), summary_lost);
    }
    let keep = |d: &scan::Digest| match cont.minter(d) {
        Some(a) => *a == *id,
        None => !strip_unknown,
    };
    match rewrite::drop_items(body, keep) {
        Some((b, dropped)) => {
            for d in dropped.iter().filter(|d| d.kind.starts_with("compaction")) {
                if let Some(a) = cont.minter(&d.digest) {
                    summary_lost.push(a);
                }
            }
            tracing::debug!(account = %id, dropped = dropped.len(), "ciphertext of other accounts left out");
            (Bytes::from(b), summary_lost)
        }
        None => (body.clone(), summary_lost),
    }
}

/// The account choice, credential injection, 401 refresh and 429 failover every route shares;
/// callers decide how to turn the upstream answer into theirs (passthrough, or translation).
/// Each request is logged (`route`) when its answer has gone to the client.
pub(crate) async fn send(
    shared: Arc<Shared>,
    route: Route,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Sent {
    let req = inspect(&shared, &method, path, &headers, &body);
    let mut tries = Tries {
        trace: Trace::begin(shared.activity.as_ref(), route),
        ..Tries::default()
    };
    if let Some(t) = tries.trace.as_mut() {
        t.request(req.model.clone(), req.conv.as_deref());
    }
    let sent = try_accounts(&shared, &method, path, &headers, &body, &req, &mut tries).await;
    match tries.trace.take() {
        None => sent,
        Some(t) => logged(t, sent, tries.no_account),
    }
}

/// Hands the answer to the log: ours is finished now, upstream's when its body ends.
fn logged(trace: Trace, sent: Sent, no_account: bool) -> Sent {
    match sent {
        Sent::Answer(r) => {
            trace.answered(r.status().as_u16(), no_account);
            Sent::Answer(r)
        }
        Sent::Upstream(mut up) => {
            let len = up
                .headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let body = std::mem::replace(&mut up.body, futures_util::stream::empty().boxed());
            up.body = trace.streaming(up.status, len, body);
            Sent::Upstream(up)
        }
    }
}

async fn try_accounts(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    req: &Inspected,
    tries: &mut Tries,
) -> Sent {
    let attempts = shared.accounts().len() * 2 + 3;
    for _ in 0..attempts {
        let (id, strip_unknown) = match pick(shared, req, tries) {
            Ok(x) => x,
            Err(e) => {
                return tries.last_failure.take().unwrap_or_else(|| {
                    tries.no_account = true;
                    Sent::Answer(select_error(e))
                });
            }
        };
        let token = match shared.tm.access_token(&id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(account = %id, "not usable for this request: {e}");
                tries.pass_over(
                    &id,
                    "could not be used",
                    Some(Sent::Answer(refresh_error(&e))),
                );
                continue;
            }
        };
        let (out_body, summary_lost) = body_for(shared, req, body, &id, strip_unknown);
        let sent = upstream_request(shared, method, path, headers, &token, &out_body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Sent::Answer(error(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::UpstreamUnreachable,
                    format!("could not reach the Codex backend: {}", e.without_url()),
                ))
            }
        };
        let status = resp.status().as_u16();
        if let Some(u) = usage::from_headers(resp.headers()) {
            shared.note_usage(&id, u);
        }
        let answered = match status {
            401 => {
                on_401(shared, resp, &id, &token, tries).await;
                None
            }
            429 => on_429(shared, resp, &id, tries).await,
            400 if req.posted && !tries.stripped_once && !req.carried.is_empty() => {
                on_unreadable_ciphertext(resp, &id, tries).await
            }
            _ => on_answer(shared, resp, &id, req, tries, &summary_lost).await,
        };
        if let Some(sent) = answered {
            return sent;
        }
    }
    tries.last_failure.take().unwrap_or_else(|| {
        Sent::Answer(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoUsableAccount,
            "no account could answer this request",
        ))
    })
}

/// A 401: refresh (single-flight, race-safe) and retry this account once; still 401 with a
/// token fresh from the issuer means the session itself was revoked.
async fn on_401(
    shared: &Arc<Shared>,
    resp: Upstream,
    id: &str,
    token: &AccessToken,
    tries: &mut Tries,
) {
    let (h, b) = read_small(resp).await;
    if tries.refreshed.insert(id.to_string()) {
        if let Some(t) = tries.trace.as_mut() {
            t.refreshed = true;
        }
        match shared.tm.force_refresh(id, Some(token)).await {
            Ok(_) => tries.last_failure = Some(Sent::Answer(passthrough(401, &h, b.into()))),
            Err(e) => tries.pass_over(
                id,
                "could not refresh its sign-in",
                Some(Sent::Answer(refresh_error(&e))),
            ),
        }
        return;
    }
    let json: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    let code = error_code(&json).unwrap_or_else(|| "unauthorized".into());
    let reason = FailureReason {
        message: error_message(&json).unwrap_or_else(|| {
            "the Codex backend refused a freshly refreshed token: the session was revoked".into()
        }),
        code,
        http_status: Some(401),
        at: now_ms(),
    };
    let (health, gen, aid) = (shared.health.clone(), token.generation, id.to_string());
    // Health applies the verdict to this endpoint's view before it returns.
    report(
        id,
        tokio::task::spawn_blocking(move || health.mark_terminal(&aid, gen, &reason)).await,
    );
    tries.pass_over(
        id,
        "needs sign-in",
        Some(Sent::Answer(passthrough(401, &h, b.into()))),
    );
}

/// A 429: a usage cap fails over; any other 429 is the client's to handle.
async fn on_429(shared: &Arc<Shared>, resp: Upstream, id: &str, tries: &mut Tries) -> Option<Sent> {
    let (h, b) = read_small(resp).await;
    let json: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    match usage_limit_reset(&json) {
        Some(until) => {
            mark_limited(shared, id, until).await;
            tracing::info!(account = %id, "usage limit reached; failing over");
            tries.pass_over(id, "hit its limit", None);
            None
        }
        None => Some(Sent::Answer(passthrough(429, &h, b.into()))),
    }
}

/// A 400: for ciphertext from before we ran (or one we missed), once more on the same account
/// with only what it minted itself. Never a second time.
async fn on_unreadable_ciphertext(resp: Upstream, id: &str, tries: &mut Tries) -> Option<Sent> {
    let (h, b) = read_small(resp).await;
    if !is_invalid_encrypted_content(&b) {
        return Some(Sent::Answer(passthrough(400, &h, b.into())));
    }
    tracing::info!(account = %id, "ciphertext refused; retrying without what it did not mint");
    tries.stripped_once = true;
    tries.retry_stripped = Some(id.to_string());
    tries.last_failure = Some(Sent::Answer(passthrough(400, &h, b.into())));
    None
}

/// Any other answer goes to the client, unless a held stream fails before its first output
/// (then `None`: fail over).
async fn on_answer(
    shared: &Arc<Shared>,
    resp: Upstream,
    id: &str,
    req: &Inspected,
    tries: &mut Tries,
    summary_lost: &[Arc<str>],
) -> Option<Sent> {
    let ok = resp.status().is_success();
    let mut up = resp;
    if ok && req.posted {
        let slot = tries.trace.as_ref().map(|_| TerminalSlot::default());
        if let Some(t) = tries.trace.as_mut() {
            t.terminal = slot.clone().unwrap_or_default();
        }
        up = match tap_and_hold(shared, up, id, req.compact, slot).await {
            Held::Serve(up) => up,
            Held::FailOver { up, until, limit } => {
                if limit {
                    mark_limited(shared, id, until).await;
                    tracing::info!(account = %id, "usage limit reached in the stream; failing over");
                    tries.pass_over(id, "hit its limit", None);
                } else {
                    lock(&shared.selector)
                        .rate_limited
                        .insert(id.to_string(), until);
                    tracing::info!(account = %id, "overloaded in the stream; failing over");
                    tries.pass_over(id, "was overloaded", None);
                }
                // When no other account can answer, the client sees this failure as upstream
                // sent it.
                tries.last_failure = Some(Sent::Upstream(up));
                return None;
            }
        };
    }
    *lock(&shared.served).entry(id.to_string()).or_default() += 1;
    shared.served_dirtied.notify_one();
    if ok && req.posted {
        note_served(
            shared,
            req.conv.as_deref(),
            id,
            &tries.passed_over,
            summary_lost,
        );
    }
    Some(Sent::Upstream(up))
}

enum Held {
    Serve(Upstream),
    /// Failed before any output: a usage limit (`limit`) or overload until `until`.
    FailOver {
        up: Upstream,
        until: i64,
        limit: bool,
    },
}

/// Records the ciphertext the answer mints as it passes, and holds a stream's head until its
/// first output event (unless `first_byte_hold` is off or it is a compaction).
async fn tap_and_hold(
    shared: &Arc<Shared>,
    mut up: Upstream,
    id: &str,
    compact: bool,
    terminal: Option<TerminalSlot>,
) -> Held {
    let cont = shared.continuity.clone();
    let tap = if compact {
        let len = up
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        tap::Tap::json(cont, id, len)
    } else {
        tap::Tap::sse(cont, id)
    }
    .with_terminal(terminal);
    let mut tapped = tap::Tapped::new(up.body, tap);
    if compact || !shared.first_byte_hold() {
        up.body = tapped.boxed();
        return Held::Serve(up);
    }
    let held = hold::until_first_output(&mut tapped).await;
    let head = futures_util::stream::iter((!held.head.is_empty()).then_some(Ok(held.head)));
    match held.outcome {
        hold::Outcome::Pass => up.body = head.chain(tapped).boxed(),
        hold::Outcome::Broken(e) => {
            up.body = head.chain(futures_util::stream::iter([Err(e)])).boxed();
        }
        hold::Outcome::Failed(failed) => {
            up.body = head.chain(tapped).boxed();
            match hold::verdict(&failed) {
                hold::Verdict::UsageLimit { until } => {
                    return Held::FailOver {
                        up,
                        until,
                        limit: true,
                    }
                }
                hold::Verdict::Busy { until } => {
                    return Held::FailOver {
                        up,
                        until,
                        limit: false,
                    }
                }
                hold::Verdict::PassThrough => {}
            }
        }
    }
    Held::Serve(up)
}

fn hex16(d: scan::Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A usage cap (HTTP 429 or in the stream): rate-limited until `until`, in memory and the store.
pub(super) async fn mark_limited(shared: &Arc<Shared>, id: &str, until: i64) {
    lock(&shared.selector)
        .rate_limited
        .insert(id.to_string(), until);
    let (h, aid) = (shared.health.clone(), id.to_string());
    report(
        id,
        tokio::task::spawn_blocking(move || h.rate_limited(&aid, until)).await,
    );
}

/// A health write that failed (after health's own retries) is said, never dropped silently;
/// the request goes on with what this process knows in memory.
pub(crate) fn report<T>(
    account_id: &str,
    r: Result<Result<T, crate::store::StoreError>, tokio::task::JoinError>,
) {
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(account = %account_id, code = e.code().as_str(), "account health not saved: {e}")
        }
        Err(e) => tracing::error!(account = %account_id, "account health write task failed: {e}"),
    }
}

/// Bookkeeping after an answer began: the conversation's account, and the account events for a
/// conversation that moved or lost its summarised context.
fn note_served(
    shared: &Shared,
    conv: Option<&str>,
    id: &str,
    passed_over: &HashMap<String, &'static str>,
    summary_lost: &[Arc<str>],
) {
    let cont = &shared.continuity;
    let accounts = shared.accounts();
    let label = |aid: &str| {
        accounts
            .iter()
            .find(|a| a.id == aid)
            .map_or_else(|| aid.to_string(), |a| a.label.clone())
    };
    if let Some(conv) = conv {
        if let Some(before) = cont.served(conv, id) {
            let why = passed_over
                .get(&before)
                .copied()
                .unwrap_or("could not serve it");
            cont.event(
                id,
                "conversation_moved",
                format!(
                    "conversation moved from {} to {}: {}",
                    label(&before),
                    label(id),
                    moved_reason(&label(&before), why)
                ),
                false,
            );
        }
    }
    let mut told = HashSet::new();
    for from in summary_lost {
        if told.insert(from.clone()) {
            cont.event(
                id,
                "context_not_moved",
                format!(
                    "earlier context was summarised by account {} and could not move to {}",
                    label(from),
                    label(id)
                ),
                true,
            );
        }
    }
}

/// Why an account was passed over for this request (for the "conversation moved" event).
fn moved_reason(label: &str, why: &str) -> String {
    format!("{label} {why}")
}
