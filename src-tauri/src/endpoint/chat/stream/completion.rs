//! The fold of Chat Completions chunks into one `chat.completion` (the `stream: false` answer). Pure.

use serde_json::{json, Value};

/// Folds chunks into one `chat.completion` (the `stream: false` answer).
#[derive(Default)]
pub struct Completion {
    head: Option<Value>,
    content: String,
    reasoning: String,
    tool_calls: Vec<Value>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl Completion {
    pub fn absorb(&mut self, chunk: &Value) {
        if self.head.is_none() {
            self.head = Some(
                json!({"id": chunk["id"], "created": chunk["created"], "model": chunk["model"]}),
            );
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(r.to_string());
        }
        let delta = &choice["delta"];
        if let Some(c) = delta.get("content").and_then(Value::as_str) {
            self.content.push_str(c);
        }
        if let Some(c) = delta.get("reasoning_content").and_then(Value::as_str) {
            self.reasoning.push_str(c);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(i) = call
                .get("index")
                .and_then(Value::as_u64)
                .map(|i| i as usize)
            else {
                continue;
            };
            while self.tool_calls.len() <= i {
                self.tool_calls.push(json!({"id": "", "type": "function",
                    "function": {"name": "", "arguments": ""}}));
            }
            let slot = &mut self.tool_calls[i];
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                slot["id"] = json!(id);
            }
            if let Some(n) = call.pointer("/function/name").and_then(Value::as_str) {
                slot["function"]["name"] = json!(n);
            }
            if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                let joined = format!(
                    "{}{a}",
                    slot["function"]["arguments"].as_str().unwrap_or("")
                );
                slot["function"]["arguments"] = json!(joined);
            }
        }
    }

    pub fn into_json(self) -> Value {
        let head = self.head.unwrap_or_else(|| json!({}));
        // OpenAI sends `content: null` for a pure tool-call answer.
        let content = if self.content.is_empty() && !self.tool_calls.is_empty() {
            Value::Null
        } else {
            json!(self.content)
        };
        let mut message = json!({"role": "assistant", "content": content, "refusal": null});
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = json!(self.tool_calls);
        }
        if !self.reasoning.is_empty() {
            message["reasoning_content"] = json!(self.reasoning);
        }
        json!({
            "id": head["id"],
            "object": "chat.completion",
            "created": head["created"],
            "model": head["model"],
            "choices": [{"index": 0, "message": message, "logprobs": null,
                "finish_reason": self.finish.unwrap_or_else(|| "stop".into())}],
            "usage": self.usage,
        })
    }
}
