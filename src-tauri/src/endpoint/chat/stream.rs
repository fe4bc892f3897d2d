//! Responses stream events → Chat Completions chunks, one event at a time (so the answer streams
//! as upstream produces it), and the fold of those chunks into one `chat.completion` for
//! `stream: false`. Pure.

mod completion;

pub use completion::Completion;

use super::error::{self, ApiError};
use super::names::NameMap;
use serde_json::{json, Value};
use std::collections::HashMap;

/// What one upstream event turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Chunk(Value),
    /// The answer failed after it began; nothing follows.
    Fail(ApiError),
    /// The answer is complete (`data: [DONE]` follows in a stream).
    Done,
}

struct ToolCall {
    index: usize,
    args_sent: bool,
}

pub struct ChatStream {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    names: NameMap,
    role_sent: bool,
    tools: HashMap<String, ToolCall>,
    over: bool,
}

/// Function-call events name their item by `output_index` (always sent) or `item_id`.
fn item_key(data: &Value) -> Option<String> {
    if let Some(i) = data.get("output_index").and_then(Value::as_u64) {
        return Some(format!("o{i}"));
    }
    data.get("item_id")
        .or_else(|| data.get("item").and_then(|i| i.get("id")))
        .and_then(Value::as_str)
        .map(|s| format!("i{s}"))
}

/// Responses usage → Chat usage.
pub fn usage(u: &Value) -> Value {
    let input = u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0);
    let output = u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
    json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input + output),
        "prompt_tokens_details": {"cached_tokens":
            u.pointer("/input_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0)},
        "completion_tokens_details": {"reasoning_tokens":
            u.pointer("/output_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0)},
    })
}

impl ChatStream {
    pub fn new(
        id: String,
        model: String,
        created: i64,
        include_usage: bool,
        names: NameMap,
    ) -> Self {
        ChatStream {
            id,
            model,
            created,
            include_usage,
            names,
            role_sent: false,
            tools: HashMap::new(),
            over: false,
        }
    }

    /// True once `Done` or `Fail` was produced.
    pub fn is_over(&self) -> bool {
        self.over
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    fn push_delta(&mut self, out: &mut Vec<Out>, mut delta: Value) {
        if !self.role_sent {
            self.role_sent = true;
            delta["role"] = json!("assistant");
        }
        out.push(Out::Chunk(self.chunk(delta, None)));
    }

    fn tool_delta(
        &mut self,
        out: &mut Vec<Out>,
        index: usize,
        function: Value,
        head: Option<&str>,
    ) {
        let mut call = json!({"index": index, "function": function});
        if let Some(id) = head {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        self.push_delta(out, json!({"tool_calls": [call]}));
    }

    fn finish(&mut self, out: &mut Vec<Out>, reason: &str, response: &Value) {
        if !self.role_sent {
            self.push_delta(out, json!({"content": ""}));
        }
        out.push(Out::Chunk(self.chunk(json!({}), Some(reason))));
        if self.include_usage {
            let mut c = self.chunk(json!({}), None);
            c["choices"] = json!([]);
            c["usage"] = response.get("usage").map(usage).unwrap_or(Value::Null);
            out.push(Out::Chunk(c));
        }
        out.push(Out::Done);
        self.over = true;
    }

    /// One upstream event (its `type` and JSON data) → what the client gets for it.
    pub fn on_event(&mut self, kind: &str, data: &Value) -> Vec<Out> {
        let mut out = Vec::new();
        if self.over {
            return out;
        }
        let delta = || data.get("delta").and_then(Value::as_str);
        match kind {
            "response.created" => {
                // Role first, as OpenAI does, so the client sees the answer start at once.
                self.push_delta(&mut out, json!({"content": ""}));
            }
            "response.output_text.delta" => {
                if let Some(d) = delta() {
                    self.push_delta(&mut out, json!({"content": d}));
                }
            }
            "response.reasoning_summary_text.delta" => {
                // Not in OpenAI's schema; the field several clients read for reasoning text.
                if let Some(d) = delta() {
                    self.push_delta(&mut out, json!({"reasoning_content": d}));
                }
            }
            "response.output_item.added" => self.item_added(&mut out, data),
            "response.function_call_arguments.delta" => self.arguments_delta(&mut out, data),
            "response.function_call_arguments.done" | "response.output_item.done" => {
                self.item_done(&mut out, data);
            }
            "response.completed" | "response.done" => {
                let reason = if self.tools.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                };
                self.finish(
                    &mut out,
                    reason,
                    data.get("response").unwrap_or(&Value::Null),
                );
            }
            "response.incomplete" => {
                let response = data.get("response").unwrap_or(&Value::Null);
                let reason = match response
                    .pointer("/incomplete_details/reason")
                    .and_then(Value::as_str)
                {
                    Some("content_filter") => "content_filter",
                    _ => "length",
                };
                self.finish(&mut out, reason, response);
            }
            "response.failed" => {
                let e = data
                    .pointer("/response/error")
                    .cloned()
                    .unwrap_or_else(|| json!({"message": "the Codex backend failed the response"}));
                out.push(Out::Fail(error::from_stream_error(&e)));
                self.over = true;
            }
            "error" => {
                let e = data.get("error").unwrap_or(data);
                out.push(Out::Fail(error::from_stream_error(e)));
                self.over = true;
            }
            _ => {}
        }
        out
    }

    /// A new output item: a function call starts its tool-call delta (id, name, any arguments).
    fn item_added(&mut self, out: &mut Vec<Out>, data: &Value) {
        let item = data.get("item").unwrap_or(&Value::Null);
        if item.get("type").and_then(Value::as_str) != Some("function_call") {
            return;
        }
        let Some(key) = item_key(data) else {
            return;
        };
        let index = self.tools.len();
        let args = item.get("arguments").and_then(Value::as_str).unwrap_or("");
        self.tools.insert(
            key,
            ToolCall {
                index,
                args_sent: !args.is_empty(),
            },
        );
        let name = self
            .names
            .restore(item.get("name").and_then(Value::as_str).unwrap_or(""));
        let id = item
            .get("call_id")
            .or_else(|| item.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.tool_delta(
            out,
            index,
            json!({"name": name, "arguments": args}),
            Some(&id),
        );
    }

    fn arguments_delta(&mut self, out: &mut Vec<Out>, data: &Value) {
        let d = data.get("delta").and_then(Value::as_str).unwrap_or("");
        let found = item_key(data).and_then(|k| self.tools.get_mut(&k));
        if let (Some(call), false) = (found, d.is_empty()) {
            call.args_sent = true;
            let index = call.index;
            self.tool_delta(out, index, json!({"arguments": d}), None);
        }
    }

    /// Arguments that never came as deltas arrive whole here; send them once.
    fn item_done(&mut self, out: &mut Vec<Out>, data: &Value) {
        let args = data
            .get("arguments")
            .or_else(|| data.get("item").and_then(|i| i.get("arguments")))
            .and_then(Value::as_str)
            .unwrap_or("");
        let found = item_key(data).and_then(|k| self.tools.get_mut(&k));
        if let (Some(call), false) = (found, args.is_empty()) {
            if !call.args_sent {
                call.args_sent = true;
                let index = call.index;
                self.tool_delta(out, index, json!({"arguments": args}), None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(names: NameMap, include_usage: bool, events: &[(&str, Value)]) -> Vec<Out> {
        let mut s = ChatStream::new(
            "chatcmpl-1".into(),
            "gpt-5.5".into(),
            7,
            include_usage,
            names,
        );
        events.iter().flat_map(|(k, d)| s.on_event(k, d)).collect()
    }

    fn deltas(out: &[Out]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Out::Chunk(c) => c.pointer("/choices/0/delta").cloned(),
                _ => None,
            })
            .collect()
    }

    fn completed(usage: Value) -> (&'static str, Value) {
        (
            "response.completed",
            json!({"response": {"id": "resp_1", "status": "completed", "usage": usage}}),
        )
    }

    #[test]
    fn text_streams_role_first_then_deltas_then_stop() {
        let out = run(
            NameMap::default(),
            false,
            &[
                ("response.created", json!({"response": {"id": "resp_1"}})),
                ("response.in_progress", json!({})),
                (
                    "response.output_item.added",
                    json!({"output_index": 0, "item": {"type": "message"}}),
                ),
                (
                    "response.output_text.delta",
                    json!({"output_index": 0, "delta": "Hel"}),
                ),
                (
                    "response.output_text.delta",
                    json!({"output_index": 0, "delta": "lo"}),
                ),
                ("response.output_text.done", json!({"text": "Hello"})),
                (
                    "response.output_item.done",
                    json!({"output_index": 0, "item": {"type": "message"}}),
                ),
                completed(json!({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})),
            ],
        );
        assert_eq!(
            deltas(&out),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"content": "Hel"}),
                json!({"content": "lo"}),
                json!({})
            ]
        );
        let Out::Chunk(last) = &out[out.len() - 2] else {
            panic!("{out:?}")
        };
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["object"], "chat.completion.chunk");
        assert_eq!(
            (last["id"].as_str(), last["created"].as_i64()),
            (Some("chatcmpl-1"), Some(7))
        );
        assert_eq!(out.last(), Some(&Out::Done));
        assert!(
            !out.iter()
                .any(|o| matches!(o, Out::Chunk(c) if c.get("usage").is_some())),
            "no usage unless asked"
        );
    }

    #[test]
    fn usage_chunk_when_asked() {
        let out = run(
            NameMap::default(),
            true,
            &[completed(json!({
            "input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 16}))],
        );
        let Out::Chunk(u) = &out[out.len() - 2] else {
            panic!("{out:?}")
        };
        assert_eq!(u["choices"], json!([]));
        assert_eq!(
            u["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}})
        );
    }

    #[test]
    fn function_calls_stream_as_tool_call_deltas_with_names_restored() {
        let long = format!("mcp__srv__{}", "x".repeat(70));
        let mut names = NameMap::default();
        let short = names.shorten(&long);
        let out = run(
            names,
            false,
            &[
                ("response.created", json!({})),
                (
                    "response.output_item.added",
                    json!({"output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_A", "name": "get_weather", "arguments": ""}}),
                ),
                (
                    "response.function_call_arguments.delta",
                    json!({"output_index": 0, "item_id": "fc_1", "delta": "{\"city\":"}),
                ),
                (
                    "response.function_call_arguments.delta",
                    json!({"output_index": 0, "item_id": "fc_1", "delta": "\"Oslo\"}"}),
                ),
                (
                    "response.function_call_arguments.done",
                    json!({"output_index": 0, "item_id": "fc_1", "arguments": "{\"city\":\"Oslo\"}"}),
                ),
                (
                    "response.output_item.done",
                    json!({"output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_A", "arguments": "{\"city\":\"Oslo\"}"}}),
                ),
                // A second call whose arguments arrive only whole, at done.
                (
                    "response.output_item.added",
                    json!({"output_index": 1, "item": {"type": "function_call", "id": "fc_2", "call_id": "call_B", "name": short}}),
                ),
                (
                    "response.output_item.done",
                    json!({"output_index": 1, "item": {"type": "function_call", "id": "fc_2", "call_id": "call_B", "arguments": "{}"}}),
                ),
                completed(json!({})),
            ],
        );
        assert_eq!(
            deltas(&out),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}),
                json!({"tool_calls": [{"index": 1, "id": "call_B", "type": "function", "function": {"name": long, "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                json!({}),
            ]
        );
        let Out::Chunk(last) = &out[out.len() - 2] else {
            panic!()
        };
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn incomplete_and_failed_end_the_answer() {
        let len = run(
            NameMap::default(),
            false,
            &[(
                "response.incomplete",
                json!({"response": {"incomplete_details": {"reason": "max_output_tokens"}}}),
            )],
        );
        assert_eq!(deltas(&len).last(), Some(&json!({})));
        let Out::Chunk(c) = &len[len.len() - 2] else {
            panic!()
        };
        assert_eq!(c["choices"][0]["finish_reason"], "length");

        let failed = run(
            NameMap::default(),
            false,
            &[
                ("response.created", json!({})),
                (
                    "response.failed",
                    json!({"response": {"error": {"code": "usage_limit_reached", "message": "cap", "resets_at": 99}}}),
                ),
                (
                    "response.output_text.delta",
                    json!({"delta": "ignored after the end"}),
                ),
            ],
        );
        assert_eq!(failed.len(), 2, "{failed:?}");
        let Out::Fail(e) = &failed[1] else {
            panic!("{failed:?}")
        };
        assert_eq!((e.status, &e.body["error"]["resets_at"]), (429, &json!(99)));

        let ev = run(
            NameMap::default(),
            false,
            &[(
                "error",
                json!({"type": "error", "code": "server_error", "message": "boom"}),
            )],
        );
        assert!(
            matches!(&ev[0], Out::Fail(e) if e.status == 500 && e.body["error"]["message"] == "boom")
        );
    }

    #[test]
    fn chunks_fold_into_one_completion() {
        let mut s = ChatStream::new("chatcmpl-9".into(), "m".into(), 1, true, NameMap::default());
        let mut c = Completion::default();
        for (k, d) in [
            ("response.created", json!({})),
            (
                "response.output_text.delta",
                json!({"delta": "Let me check. "}),
            ),
            (
                "response.output_item.added",
                json!({"output_index": 1, "item": {"type": "function_call", "call_id": "call_Z", "name": "f"}}),
            ),
            (
                "response.function_call_arguments.delta",
                json!({"output_index": 1, "delta": "{\"a\""}),
            ),
            (
                "response.function_call_arguments.delta",
                json!({"output_index": 1, "delta": ":1}"}),
            ),
            (
                "response.completed",
                json!({"response": {"usage": {"input_tokens": 2, "output_tokens": 3}}}),
            ),
        ] {
            for o in s.on_event(k, &d) {
                if let Out::Chunk(ch) = o {
                    c.absorb(&ch);
                }
            }
        }
        let done = c.into_json();
        assert_eq!(done["object"], "chat.completion");
        assert_eq!(done["id"], "chatcmpl-9");
        let choice = &done["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me check. ");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_Z", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}])
        );
        assert_eq!(done["usage"]["total_tokens"], 5);
    }
}
