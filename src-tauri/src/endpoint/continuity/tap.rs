//! Watching an upstream answer as it passes, without holding it back: the SSE frames are cut
//! out of the chunks (only a frame split across chunks is copied), and only frames that carry
//! `"encrypted_content"` are parsed, to record who minted that ciphertext. Until the first
//! output event the tap also reads each frame's type, for the hold before the first byte.

use super::scan::{digest, FIND_KEY};
use super::Continuity;
use crate::activity::Tokens;
use crate::endpoint::record::{Terminal, TerminalSlot};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use serde_json::Value;
use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A frame or JSON body larger than this is let through unread (its ciphertext, if any, is not
/// recorded: the 400 fallback covers it).
const MAX_CARRY: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `text/event-stream` (`/responses`).
    Sse,
    /// One JSON document (`/responses/compact`), read when it ends.
    Json,
}

pub struct Tap {
    carry: Vec<u8>,
    /// A JSON body's announced length: it is read as soon as that much arrived (the server
    /// sending it on may stop polling once it has sent as many bytes).
    expect_len: Option<usize>,
    overflow: bool,
    mode: Mode,
    account: Arc<str>,
    sink: Arc<Continuity>,
    /// An event other than `response.created` / `response.in_progress` has passed.
    pub first_output: bool,
    /// `response.failed` before any output: its `data`.
    pub failed: Option<Value>,
    /// Where the answer's terminal event (its tokens, whether it failed) is left for the
    /// request log; `None` when nothing logs this request.
    terminal: Option<TerminalSlot>,
}

impl Tap {
    pub fn sse(sink: Arc<Continuity>, account: &str) -> Tap {
        Tap::new(sink, account, Mode::Sse)
    }

    pub fn json(sink: Arc<Continuity>, account: &str, content_length: Option<usize>) -> Tap {
        let mut t = Tap::new(sink, account, Mode::Json);
        t.expect_len = content_length;
        t
    }

    fn new(sink: Arc<Continuity>, account: &str, mode: Mode) -> Tap {
        Tap {
            carry: Vec::new(),
            expect_len: None,
            overflow: false,
            mode,
            account: account.into(),
            sink,
            first_output: false,
            failed: None,
            terminal: None,
        }
    }

    /// Leaves the terminal event's tokens in `slot` (the request log's).
    pub fn with_terminal(mut self, slot: Option<TerminalSlot>) -> Tap {
        self.terminal = slot;
        self
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.overflow {
            return;
        }
        if self.mode == Mode::Json {
            self.carry.extend_from_slice(chunk);
            self.overflow = self.carry.len() > MAX_CARRY;
            if self.expect_len.is_some_and(|n| self.carry.len() >= n) {
                self.finish();
                self.overflow = true; // read: ignore anything after
            }
            return;
        }
        if self.carry.is_empty() {
            let used = self.frames(chunk);
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            self.carry.extend_from_slice(chunk);
            let buf = std::mem::take(&mut self.carry);
            let used = self.frames(&buf);
            self.carry.extend_from_slice(&buf[used..]);
        }
        if self.carry.len() > MAX_CARRY {
            self.carry = Vec::new();
            self.overflow = true;
        }
    }

    /// The answer ended: a JSON body is read now.
    pub fn finish(&mut self) {
        if let (Some(slot), Mode::Json, false) = (&self.terminal, self.mode, self.overflow) {
            if let Ok(doc) = serde_json::from_slice::<WireResponse>(&self.carry) {
                let _ = slot.set(Terminal {
                    failed: false,
                    tokens: doc.usage.map(WireUsage::tokens),
                });
            }
        }
        if self.mode == Mode::Json && !self.overflow && FIND_KEY.find(&self.carry).is_some() {
            if let Ok(doc) = serde_json::from_slice::<WireOutput>(&self.carry) {
                for item in &doc.output {
                    self.record(item);
                }
            }
        }
        self.carry = Vec::new();
    }

    /// Handles every complete frame in `buf`; returns how many bytes they took.
    fn frames(&mut self, buf: &[u8]) -> usize {
        let mut start = 0;
        while let Some((len, sep)) = frame_end(&buf[start..]) {
            self.frame(&buf[start..start + len]);
            start += len + sep;
        }
        start
    }

    fn frame(&mut self, f: &[u8]) {
        let carries = FIND_KEY.find(f).is_some();
        let ends = self.terminal.is_some() && maybe_terminal(f);
        if self.first_output && !carries && !ends {
            return; // the fast path: nearly every frame of a long answer
        }
        // The name borrowed and the data joined only when a frame is parsed: the frames before
        // the first output are a few allocations a request otherwise.
        let data = frame_data(f);
        let kind: Cow<'_, str> = match frame_name(f) {
            Some(n) => n.into(),
            // A frame with no `event:` line names itself in its data's `type`.
            None => serde_json::from_slice::<WireType>(&data)
                .ok()
                .and_then(|t| t.kind)
                .unwrap_or_default(),
        };
        if !self.first_output {
            match &*kind {
                // A comment / keep-alive frame, or the response's opening events.
                "" | "response.created" | "response.in_progress" => {}
                "response.failed" => {
                    self.failed =
                        Some(serde_json::from_slice::<Value>(&data).unwrap_or(Value::Null));
                }
                _ => self.first_output = true,
            }
        }
        if ends {
            self.note_terminal(&kind, &data);
        }
        if carries && kind == "response.output_item.done" {
            // Typed and borrowed: the item's other fields are skipped, not built, and its
            // ciphertext is not copied (base64 has no escapes to undo).
            if let Ok(WireDone { item: Some(item) }) = serde_json::from_slice::<WireDone>(&data) {
                self.record(&item);
            }
        }
    }

    fn note_terminal(&self, kind: &str, data: &[u8]) {
        let failed = match kind {
            "response.completed" | "response.incomplete" => false,
            "response.failed" => true,
            _ => return,
        };
        let tokens = serde_json::from_slice::<WireEvent>(data)
            .ok()
            .and_then(|e| e.response?.usage)
            .map(WireUsage::tokens);
        if let Some(slot) = &self.terminal {
            let _ = slot.set(Terminal { failed, tokens });
        }
    }

    fn record(&self, item: &WireItem<'_>) {
        let Some(ct) = &item.encrypted_content else {
            return;
        };
        let kind = item.kind.as_deref().unwrap_or("item");
        self.sink
            .record_minted(digest(ct.as_bytes()), &self.account, kind);
    }
}

/// An output item as far as continuity reads it: its type and ciphertext.
#[derive(serde::Deserialize)]
struct WireItem<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    encrypted_content: Option<Cow<'a, str>>,
}

/// `response.output_item.done`'s data.
#[derive(serde::Deserialize)]
struct WireDone<'a> {
    #[serde(borrow)]
    item: Option<WireItem<'a>>,
}

/// A compact answer: its output items.
#[derive(serde::Deserialize)]
struct WireOutput<'a> {
    #[serde(borrow, default)]
    output: Vec<WireItem<'a>>,
}

/// A frame's data, for its `type` when the frame has no `event:` line.
#[derive(serde::Deserialize)]
struct WireType<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

/// Whether a frame may be the answer's last event: its name is near its start (`event: …` or
/// `data: {"type":…`), so only the head is searched, and only a match is parsed.
fn maybe_terminal(f: &[u8]) -> bool {
    static ENDS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        std::sync::LazyLock::new(|| {
            [
                memchr::memmem::Finder::new(b"response.completed"),
                memchr::memmem::Finder::new(b"response.incomplete"),
                memchr::memmem::Finder::new(b"response.failed"),
            ]
        });
    let head = &f[..f.len().min(96)];
    ENDS.iter().any(|e| e.find(head).is_some())
}

/// The parts of a terminal event the log reads (serde skips the rest unbuilt).
#[derive(serde::Deserialize)]
struct WireEvent {
    response: Option<WireResponse>,
}

#[derive(serde::Deserialize)]
struct WireResponse {
    usage: Option<WireUsage>,
}

#[derive(serde::Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<WireInputDetails>,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    output_tokens_details: Option<WireOutputDetails>,
}

#[derive(serde::Deserialize)]
struct WireInputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(serde::Deserialize)]
struct WireOutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl WireUsage {
    fn tokens(self) -> Tokens {
        Tokens {
            input: self.input_tokens,
            cached: self.input_tokens_details.map_or(0, |d| d.cached_tokens),
            output: self.output_tokens,
            reasoning: self.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
        }
    }
}

/// `(content length, separator length)` of the first frame in `buf`: frames end at a blank
/// line, `\n\n` or `\r\n\r\n`.
fn frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    // The first `\n` followed by `\n` or `\r\n`: one pass over the frame, where searching
    // the rest of the buffer for each separator apart went over every later frame too.
    memchr::memchr_iter(b'\n', buf).find_map(|i| match &buf[i + 1..] {
        [b'\n', ..] => Some((i, 2)),
        [b'\r', b'\n', ..] => Some((i, 3)),
        _ => None,
    })
}

/// The lines of one frame, without their `\r\n` / `\n` ends (memchr: a frame's data line
/// may be kilobytes of ciphertext, too long to walk a byte at a time).
fn lines(f: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(f);
    std::iter::from_fn(move || {
        let r = rest?;
        let line = match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                &r[..i]
            }
            None => {
                rest = None;
                r
            }
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// The `event:` name of one frame, if any (the last such line wins, as in the SSE spec).
fn frame_name(f: &[u8]) -> Option<&str> {
    let mut name = None;
    for line in lines(f) {
        if let Some(v) = line.strip_prefix(b"event:") {
            name = std::str::from_utf8(v).ok().map(str::trim);
        }
    }
    name.filter(|n| !n.is_empty())
}

/// The joined `data:` lines of one frame: borrowed when there is one (nearly always).
fn frame_data(f: &[u8]) -> Cow<'_, [u8]> {
    let mut data: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut any = false;
    for line in lines(f) {
        if let Some(v) = line.strip_prefix(b"data:") {
            let v = v.strip_prefix(b" ").unwrap_or(v);
            if !any {
                data = Cow::Borrowed(v);
                any = true;
            } else {
                let joined = data.to_mut();
                joined.push(b'\n');
                joined.extend_from_slice(v);
            }
        }
    }
    data
}

/// An upstream body with a [`Tap`] on it: every chunk passes unchanged and at once.
pub struct Tapped {
    inner: BoxStream<'static, crate::http::BodyResult>,
    pub tap: Tap,
}

impl Tapped {
    pub fn new(inner: BoxStream<'static, crate::http::BodyResult>, tap: Tap) -> Tapped {
        Tapped { inner, tap }
    }
}

impl Drop for Tapped {
    /// A body dropped before its end was polled (the server stopped at its length) is read now.
    fn drop(&mut self) {
        self.tap.finish();
    }
}

impl Stream for Tapped {
    type Item = crate::http::BodyResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.tap.feed(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                this.tap.finish();
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> Arc<Continuity> {
        Arc::new(Continuity::default())
    }

    #[test]
    fn records_ciphertext_split_anywhere_and_sees_the_first_output() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\"}\n\n\
            event: response.in_progress\ndata: {}\n\n\
            event: response.output_item.added\ndata: {\"item\":{\"type\":\"reasoning\",\"encrypted_content\":null}}\n\n\
            event: response.output_item.done\ndata: {\"item\":{\"type\":\"reasoning\",\"encrypted_content\":\"gAAAAx\"}}\n\n\
            event: response.completed\ndata: {\"response\":{\"output\":[{\"type\":\"reasoning\",\"encrypted_content\":\"gAAAAx\"}]}}\n\n";
        for split in [1usize, 7, 50, stream.len()] {
            let s = sink();
            let mut tap = Tap::sse(s.clone(), "acct-b");
            let mut seen_output_at = None;
            for (i, c) in stream.as_bytes().chunks(split).enumerate() {
                tap.feed(c);
                if tap.first_output && seen_output_at.is_none() {
                    seen_output_at = Some((i + 1) * split);
                }
            }
            tap.finish();
            assert!(tap.failed.is_none());
            // Not before the bytes of the first output frame had arrived.
            let at = seen_output_at.expect("output seen");
            assert!(at > stream.find("event: response.output_item.added").unwrap());
            assert_eq!(
                s.minter(&digest(b"gAAAAx")).as_deref(),
                Some("acct-b"),
                "split {split}"
            );
        }
    }

    #[test]
    fn a_failure_before_output_is_caught_and_crlf_frames_parse() {
        let s = sink();
        let mut tap = Tap::sse(s, "a");
        tap.feed(b"event: response.created\r\ndata: {}\r\n\r\n: keep-alive\r\n\r\n");
        assert!(!tap.first_output && tap.failed.is_none());
        tap.feed(b"data: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_is_overloaded\"}}}\n\n");
        assert_eq!(
            tap.failed.as_ref().unwrap()["response"]["error"]["code"],
            "server_is_overloaded"
        );
        assert!(!tap.first_output);
    }

    #[test]
    fn frame_lines_split_on_either_end_and_data_lines_join() {
        let f =
            b"event: a\r\nid: 1\nevent: response.output_item.done\ndata: {\"item\":\r\ndata:{}}";
        assert_eq!(
            frame_name(f),
            Some("response.output_item.done"),
            "the last name wins"
        );
        assert!(matches!(frame_data(f), Cow::Owned(_)));
        assert_eq!(&*frame_data(f), b"{\"item\":\n{}}");
        let one = b"event: x\ndata: {\"type\":\"y\"}";
        assert!(matches!(
            frame_data(one),
            Cow::Borrowed(b"{\"type\":\"y\"}")
        ));
        assert_eq!(frame_name(b"data: {}"), None);
        assert_eq!(
            frame_name(b"event:   \ndata: {}"),
            None,
            "an empty name is none"
        );
        // A multi-line item still records its ciphertext, and a data-only frame names itself.
        let s = sink();
        let mut tap = Tap::sse(s.clone(), "acct");
        tap.feed(b"data: {\"type\":\"response.output_item.done\",\n");
        tap.feed(b"data: \"item\":{\"type\":\"reasoning\",\"encrypted_content\":\"gAAAAm\"}}\n\n");
        assert!(tap.first_output);
        assert_eq!(s.minter(&digest(b"gAAAAm")).as_deref(), Some("acct"));
        assert_eq!(
            s.kind_of(&digest(b"gAAAAm")),
            Some(super::super::Kind::Reasoning)
        );
    }

    #[test]
    fn a_compact_answer_is_read_at_its_end() {
        let s = sink();
        let mut tap = Tap::json(s.clone(), "a", None);
        let body = br#"{"output":[{"type":"message"},{"type":"compaction","encrypted_content":"gAAAAc"}]}"#;
        tap.feed(&body[..10]);
        tap.feed(&body[10..]);
        assert!(s.minter(&digest(b"gAAAAc")).is_none());
        tap.finish();
        assert_eq!(s.minter(&digest(b"gAAAAc")).as_deref(), Some("a"));
        assert_eq!(
            s.kind_of(&digest(b"gAAAAc")),
            Some(super::super::Kind::Compaction)
        );
    }
}
