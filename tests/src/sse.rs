//! Responses-API server-sent events: the frames a `/responses` stream carries (shaped like
//! OpenAI's, which the Codex CLI parses in `codex-rs/codex-api/src/sse/responses.rs`) and an
//! incremental parser test clients can feed raw body chunks to.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One SSE event: its `event:` name and its `data:` payload (JSON when it parses, else a string).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

impl SseEvent {
    /// The wire form: `event: <type>\ndata: <json>\n\n`.
    pub fn frame(&self) -> String {
        let data = match &self.data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!("event: {}\ndata: {}\n\n", self.event, data)
    }
}

/// What one scripted answer says.
pub struct ResponseScript<'a> {
    pub response_id: &'a str,
    pub item_id: &'a str,
    pub model: &'a str,
    pub text: &'a str,
    pub n_deltas: usize,
    pub input_tokens: u64,
    pub created_at: i64,
}

/// Splits `text` into exactly `n` pieces (some empty when `n` exceeds the character count) whose
/// concatenation is `text`.
pub fn split_deltas(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.max(1);
    (0..n)
        .map(|i| {
            let start = chars.len() * i / n;
            let end = chars.len() * (i + 1) / n;
            chars[start..end].iter().collect()
        })
        .collect()
}

pub(crate) fn response_object(
    s: &ResponseScript<'_>,
    status: &str,
    output: Value,
    usage: Value,
) -> Value {
    json!({
        "id": s.response_id,
        "object": "response",
        "created_at": s.created_at,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": s.model,
        "output": output,
        "parallel_tool_calls": false,
        "previous_response_id": null,
        "reasoning": {"effort": "medium", "summary": null},
        "store": false,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    })
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
}

/// The full event sequence of one successful text answer, in upstream's order:
/// `response.created`, `response.in_progress`, `response.output_item.added`,
/// `response.content_part.added`, N × `response.output_text.delta`, `response.output_text.done`,
/// `response.content_part.done`, `response.output_item.done`, `response.completed` (with usage).
pub fn response_events(s: &ResponseScript<'_>) -> Vec<SseEvent> {
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |event: &str, mut data: Value| {
        data["type"] = json!(event);
        data["sequence_number"] = json!(seq);
        seq += 1;
        events.push(SseEvent {
            event: event.to_string(),
            data,
        });
    };
    let done_item = json!({
        "id": s.item_id,
        "type": "message",
        "status": "completed",
        "content": [output_text_part(s.text)],
        "role": "assistant",
    });
    let output_tokens = s.text.split_whitespace().count().max(1) as u64;
    let usage = json!({
        "input_tokens": s.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": s.input_tokens + output_tokens,
    });

    push(
        "response.created",
        json!({"response": response_object(s, "in_progress", json!([]), Value::Null)}),
    );
    push(
        "response.in_progress",
        json!({"response": response_object(s, "in_progress", json!([]), Value::Null)}),
    );
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": {
            "id": s.item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant",
        }}),
    );
    push(
        "response.content_part.added",
        json!({"item_id": s.item_id, "output_index": 0, "content_index": 0, "part": output_text_part("")}),
    );
    for delta in split_deltas(s.text, s.n_deltas) {
        push(
            "response.output_text.delta",
            json!({"item_id": s.item_id, "output_index": 0, "content_index": 0, "delta": delta, "logprobs": []}),
        );
    }
    push(
        "response.output_text.done",
        json!({"item_id": s.item_id, "output_index": 0, "content_index": 0, "text": s.text, "logprobs": []}),
    );
    push(
        "response.content_part.done",
        json!({"item_id": s.item_id, "output_index": 0, "content_index": 0, "part": output_text_part(s.text)}),
    );
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done_item}),
    );
    push(
        "response.completed",
        json!({"response": response_object(s, "completed", json!([done_item]), usage)}),
    );
    events
}

/// A reasoning output item with its account-bound ciphertext (the answer to
/// `include: ["reasoning.encrypted_content"]`).
pub(crate) struct ReasoningItem<'a> {
    pub id: &'a str,
    pub summary: &'a str,
    pub encrypted_content: &'a str,
}

/// Puts a reasoning item first in an answer's output, as upstream streams it before the message
/// or call: `response.output_item.added` (reasoning, empty summary),
/// `response.reasoning_summary_part.added`, `response.reasoning_summary_text.delta`,
/// `response.reasoning_summary_text.done`, `response.reasoning_summary_part.done`,
/// `response.output_item.done` (with `summary` and `encrypted_content`). The later items move
/// one `output_index` up, `response.completed` lists the reasoning item first, and sequence
/// numbers are renumbered.
/// Sets the `response.completed` usage's cached input tokens and adds `reasoning` tokens to its
/// output (the backend counts reasoning inside `output_tokens` and says how many apart).
pub(crate) fn with_token_details(events: &mut [SseEvent], cached: u64, reasoning: u64) {
    for e in events
        .iter_mut()
        .filter(|e| e.event == "response.completed")
    {
        let usage = &mut e.data["response"]["usage"];
        if !usage.is_object() {
            continue;
        }
        let input = usage["input_tokens"].as_u64().unwrap_or(0);
        let output = usage["output_tokens"].as_u64().unwrap_or(0) + reasoning;
        usage["input_tokens_details"]["cached_tokens"] = json!(cached.min(input));
        usage["output_tokens"] = json!(output);
        usage["output_tokens_details"]["reasoning_tokens"] = json!(reasoning);
        usage["total_tokens"] = json!(input + output);
    }
}

pub(crate) fn with_reasoning(events: Vec<SseEvent>, r: &ReasoningItem<'_>) -> Vec<SseEvent> {
    let done_item = json!({
        "id": r.id, "type": "reasoning",
        "summary": [{"type": "summary_text", "text": r.summary}],
        "encrypted_content": r.encrypted_content,
    });
    let ev = |event: &str, data: Value| SseEvent {
        event: event.to_string(),
        data,
    };
    let part = |text: &str| json!({"type": "summary_text", "text": text});
    let reasoning = [
        ev(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": r.id, "type": "reasoning", "summary": [], "encrypted_content": null}}),
        ),
        ev(
            "response.reasoning_summary_part.added",
            json!({"item_id": r.id, "output_index": 0, "summary_index": 0, "part": part("")}),
        ),
        ev(
            "response.reasoning_summary_text.delta",
            json!({"item_id": r.id, "output_index": 0, "summary_index": 0, "delta": r.summary}),
        ),
        ev(
            "response.reasoning_summary_text.done",
            json!({"item_id": r.id, "output_index": 0, "summary_index": 0, "text": r.summary}),
        ),
        ev(
            "response.reasoning_summary_part.done",
            json!({"item_id": r.id, "output_index": 0, "summary_index": 0, "part": part(r.summary)}),
        ),
        ev(
            "response.output_item.done",
            json!({"output_index": 0, "item": done_item.clone()}),
        ),
    ];
    let mut out = Vec::with_capacity(events.len() + reasoning.len());
    let mut inserted = false;
    for mut e in events {
        let starts_output = !matches!(
            e.event.as_str(),
            "response.created" | "response.in_progress"
        );
        if starts_output && !inserted {
            out.extend(reasoning.iter().cloned());
            inserted = true;
        }
        if let Some(i) = e.data.get("output_index").and_then(Value::as_u64) {
            e.data["output_index"] = json!(i + 1);
        }
        if e.event == "response.completed" {
            if let Some(list) = e
                .data
                .pointer_mut("/response/output")
                .and_then(Value::as_array_mut)
            {
                list.insert(0, done_item.clone());
            }
        }
        out.push(e);
    }
    for (seq, e) in out.iter_mut().enumerate() {
        e.data["type"] = json!(e.event);
        e.data["sequence_number"] = json!(seq);
    }
    out
}

/// What an in-stream failure says (`response.failed`).
pub(crate) struct StreamFailure<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub resets_at: Option<i64>,
    /// Fail after the first output item and one text delta (the user saw something).
    pub after_output: bool,
}

/// A `200` stream that fails: `response.created`, `response.in_progress`, (with `after_output`:
/// `response.output_item.added` + one `response.output_text.delta`), then `response.failed` whose
/// `response.error` is `{type, code, message}` (+ `resets_at` for a usage limit).
pub(crate) fn failed_events(s: &ResponseScript<'_>, f: &StreamFailure<'_>) -> Vec<SseEvent> {
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |event: &str, mut data: Value| {
        data["type"] = json!(event);
        data["sequence_number"] = json!(seq);
        seq += 1;
        events.push(SseEvent {
            event: event.to_string(),
            data,
        });
    };
    push(
        "response.created",
        json!({"response": response_object(s, "in_progress", json!([]), Value::Null)}),
    );
    push(
        "response.in_progress",
        json!({"response": response_object(s, "in_progress", json!([]), Value::Null)}),
    );
    if f.after_output {
        push(
            "response.output_item.added",
            json!({"output_index": 0, "item": {
                "id": s.item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant",
            }}),
        );
        let first: String = s.text.chars().take(8).collect();
        push(
            "response.output_text.delta",
            json!({"item_id": s.item_id, "output_index": 0, "content_index": 0, "delta": first, "logprobs": []}),
        );
    }
    let mut error = json!({"type": f.code, "code": f.code, "message": f.message});
    if let Some(at) = f.resets_at {
        error["resets_at"] = json!(at);
    }
    let mut response = response_object(s, "failed", json!([]), Value::Null);
    response["error"] = error;
    push("response.failed", json!({ "response": response }));
    events
}

/// Incremental SSE parser: feed it body chunks as they arrive (a frame may be split anywhere,
/// even inside a UTF-8 character) and it returns each event once its blank line arrived.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some((end, sep_len)) = find_event_end(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end + sep_len).collect();
            if let Some(ev) = parse_block(&String::from_utf8_lossy(&raw[..end])) {
                events.push(ev);
            }
        }
        events
    }

    /// Bytes received after the last complete event (a stream cut mid-frame leaves some).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// Parses a whole SSE body.
pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    let mut p = SseParser::new();
    let mut events = p.push(body.as_bytes());
    events.extend(p.push(b"\n\n"));
    events
}

fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if line.starts_with(':') {
            continue; // a comment / keep-alive
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if event.is_none() && data.is_empty() {
        return None;
    }
    let joined = data.join("\n");
    let data = serde_json::from_str(&joined).unwrap_or(Value::String(joined));
    Some(SseEvent {
        event: event.unwrap_or_else(|| "message".to_string()),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_concatenate_to_the_text() {
        for n in [1, 2, 3, 7, 50] {
            let parts = split_deltas("héllo wörld", n);
            assert_eq!(parts.len(), n);
            assert_eq!(parts.concat(), "héllo wörld");
        }
    }

    #[test]
    fn parser_handles_split_frames_and_crlf() {
        let script = ResponseScript {
            response_id: "resp_1",
            item_id: "msg_1",
            model: "m",
            text: "hé there",
            n_deltas: 3,
            input_tokens: 5,
            created_at: 0,
        };
        let events = response_events(&script);
        let body: String = events.iter().map(SseEvent::frame).collect();
        // Feed it one byte at a time: splits inside frames and inside UTF-8 characters.
        let mut parser = SseParser::new();
        let mut parsed = Vec::new();
        for b in body.as_bytes() {
            parsed.extend(parser.push(std::slice::from_ref(b)));
        }
        assert_eq!(parsed, events);
        assert!(parser.pending().is_empty());

        let crlf = parse_sse(
            "event: a\r\ndata: {\"x\":1}\r\n\r\n: keepalive\n\nevent: b\ndata: plain\n\n",
        );
        assert_eq!(crlf.len(), 2);
        assert_eq!(crlf[0].data["x"], 1);
        assert_eq!(crlf[1].data, Value::String("plain".into()));
    }
}
