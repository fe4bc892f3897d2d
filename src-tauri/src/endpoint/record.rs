//! One request's entry in the activity log: begun when the request arrives, finished when its
//! answer has gone to the client — at the end of the body stream, or when the client went away
//! (the body dropped before its end). Tokens come from the stream's `response.completed`, read by
//! the ciphertext tap as the stream passes (`continuity::tap`), never by buffering it.

use crate::activity::{Log, Outcome, Record, Route, Tokens};
use axum::body::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// How a stream's last event ended it, and its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    pub failed: bool,
    pub tokens: Option<Tokens>,
}

/// Where the tap leaves the terminal event it saw (set once).
pub type TerminalSlot = Arc<OnceLock<Terminal>>;

/// A request being logged (`None` inside when the log is off: every call is then a no-op).
pub struct Trace {
    log: Arc<Log>,
    start: Instant,
    record: Record,
    /// The account tried first: an answer from another one is a failover.
    first_account: Option<String>,
    /// The label of the account last tried (for `/metrics`).
    label: Option<String>,
    pub refreshed: bool,
    pub terminal: TerminalSlot,
}

impl Trace {
    /// `None` when there is no log (its file could not be opened). A log switched off
    /// (`activity.log = off`) still counts the request in `/metrics`.
    pub fn begin(log: Option<&Arc<Log>>, route: Route) -> Option<Trace> {
        let log = log?;
        Some(Trace {
            log: log.clone(),
            start: Instant::now(),
            record: Record {
                at_ms: crate::account::now_ms(),
                route,
                model: None,
                account_id: None,
                conversation: None,
                status: 0,
                outcome: Outcome::Ok,
                latency_us: 0,
                ttfb_us: None,
                tokens: None,
            },
            first_account: None,
            label: None,
            refreshed: false,
            terminal: TerminalSlot::default(),
        })
    }

    pub fn request(&mut self, model: Option<String>, conversation: Option<&str>) {
        self.record.model = model;
        self.record.conversation = conversation.map(crate::secret::fingerprint);
    }

    pub fn tried(&mut self, account: &str, label: Option<&str>) {
        if self.first_account.is_none() {
            self.first_account = Some(account.to_string());
        }
        self.record.account_id = Some(account.to_string());
        self.label = label.map(str::to_string);
    }

    fn done(self) {
        let label = self.record.account_id.as_ref().and(self.label.as_deref());
        crate::activity::metrics::request(&self.record, label);
        if self.log.enabled() {
            self.log.record(self.record);
        }
    }

    /// What a successful answer is, before its stream says otherwise.
    fn served_outcome(&self) -> Outcome {
        if self.record.account_id != self.first_account {
            Outcome::FailedOver
        } else if self.refreshed {
            Outcome::Refreshed
        } else {
            Outcome::Ok
        }
    }

    fn by_status(&self, status: u16) -> Outcome {
        match status {
            200..=399 => self.served_outcome(),
            429 => Outcome::RateLimited,
            500..=599 => Outcome::UpstreamError,
            _ => Outcome::Rejected,
        }
    }

    /// An answer of ours (or one read whole to decide): it is finished now.
    pub fn answered(mut self, status: u16, no_account: bool) {
        self.record.status = status;
        // All accounts capped is a 429 of ours: rate-limited, as the client sees it.
        self.record.outcome = if no_account && status != 429 {
            Outcome::NoAccount
        } else {
            self.by_status(status)
        };
        let us = self.start.elapsed().as_micros() as u64;
        self.record.latency_us = us;
        self.record.ttfb_us = Some(us);
        self.done();
    }

    /// An upstream answer still streaming: it is finished when `body` ends or is dropped.
    pub fn streaming(
        mut self,
        status: u16,
        content_length: Option<u64>,
        body: BoxStream<'static, Result<Bytes, crate::http::BodyError>>,
    ) -> BoxStream<'static, Result<Bytes, crate::http::BodyError>> {
        self.record.status = status;
        self.record.outcome = self.by_status(status);
        Recorded {
            inner: body,
            trace: Some(self),
            left: content_length,
            ended: false,
            broken: false,
        }
        .boxed()
    }
}

/// The body of an answer being logged.
struct Recorded {
    inner: BoxStream<'static, Result<Bytes, crate::http::BodyError>>,
    trace: Option<Trace>,
    /// Bytes still to come when the length was announced (the server may stop polling once it
    /// has sent that many, so the end is seen by count, not by the stream's `None`).
    left: Option<u64>,
    ended: bool,
    broken: bool,
}

impl Stream for Recorded {
    type Item = Result<Bytes, crate::http::BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.poll_next_unpin(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => {
                let len = chunk.len() as u64;
                if let Some(t) = self.trace.as_mut() {
                    if t.record.ttfb_us.is_none() {
                        t.record.ttfb_us = Some(t.start.elapsed().as_micros() as u64);
                    }
                }
                if let Some(left) = self.left.as_mut() {
                    *left = left.saturating_sub(len);
                    if *left == 0 {
                        self.ended = true;
                        self.finish();
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.broken = true;
                self.finish();
            }
            Poll::Ready(None) => {
                self.ended = true;
                self.finish();
            }
            Poll::Pending => {}
        }
        next
    }
}

impl Recorded {
    fn finish(&mut self) {
        let Some(mut t) = self.trace.take() else {
            return;
        };
        let terminal = t.terminal.get().copied();
        t.record.tokens = terminal.and_then(|x| x.tokens);
        t.record.outcome = if self.broken || terminal.is_some_and(|x| x.failed) {
            Outcome::UpstreamError
        } else if !self.ended {
            Outcome::ClientClosed
        } else {
            t.record.outcome
        };
        t.record.latency_us = t.start.elapsed().as_micros() as u64;
        t.done();
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.finish();
    }
}
