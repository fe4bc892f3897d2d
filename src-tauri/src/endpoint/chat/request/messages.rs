//! Chat messages → `instructions` (system/developer text) and Responses `input` items (user and
//! assistant messages, `function_call` / `function_call_output` items). Pure.

use super::super::names::NameMap;
use super::RequestError;
use serde_json::{json, Value};

/// The text of a `content` that is a string or an array of `{type: "text", text}` parts.
fn plain_text(content: &Value, index: usize) -> Result<String, RequestError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") | Some("input_text") | Some("output_text") => {
                        out.push(p.get("text").and_then(Value::as_str).unwrap_or_default())
                    }
                    Some("refusal") => {
                        out.push(p.get("refusal").and_then(Value::as_str).unwrap_or_default())
                    }
                    other => {
                        return Err(RequestError::BadMessage {
                            index,
                            why: format!(
                                "a content part of type {} is not allowed here (text only)",
                                other.unwrap_or("(none)")
                            ),
                        })
                    }
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(RequestError::BadMessage {
            index,
            why: "`content` must be a string or an array of parts".into(),
        }),
    }
}

/// User content parts → Responses input parts (`input_text`, `input_image`).
fn user_parts(content: &Value, index: usize) -> Result<Vec<Value>, RequestError> {
    let bad = |why: String| RequestError::BadMessage { index, why };
    match content {
        Value::String(s) => Ok(vec![json!({"type": "input_text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "input_text",
                    "text": p.get("text").and_then(Value::as_str).unwrap_or_default()})),
                Some("image_url") => {
                    let image = p.get("image_url");
                    // Both `{"image_url": {"url": …}}` and the older `{"image_url": "…"}`.
                    let url = image
                        .and_then(|i| i.get("url").or(Some(i)))
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("an image_url part needs `image_url.url`".into()))?;
                    let detail = image
                        .and_then(|i| i.get("detail"))
                        .and_then(Value::as_str)
                        .unwrap_or("auto");
                    Ok(json!({"type": "input_image", "image_url": url, "detail": detail}))
                }
                other => Err(bad(format!(
                    "content parts of type {} are not supported (text and image_url are)",
                    other.unwrap_or("(none)")
                ))),
            })
            .collect(),
        _ => Err(bad("`content` must be a string or an array of parts".into())),
    }
}

pub(super) fn translate_messages(
    messages: &[Value],
    names: &mut NameMap,
) -> Result<(String, Vec<Value>), RequestError> {
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    for (index, m) in messages.iter().enumerate() {
        let bad = |why: &str| RequestError::BadMessage {
            index,
            why: why.into(),
        };
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("`role` is required"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => instructions.push(plain_text(content, index)?),
            "user" => {
                if content.is_null() {
                    return Err(bad("a user message needs `content`"));
                }
                input.push(json!({"type": "message", "role": "user",
                    "content": user_parts(content, index)?}));
            }
            "assistant" => {
                let text = plain_text(content, index)?;
                if !text.is_empty() {
                    input.push(json!({"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": text}]}));
                }
                let calls = m.get("tool_calls").and_then(Value::as_array);
                for call in calls.into_iter().flatten() {
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("every tool call needs an `id`"))?;
                    let function = call
                        .get("function")
                        .ok_or_else(|| bad("only function tool calls are supported"))?;
                    let name = function
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("a tool call needs `function.name`"))?;
                    let arguments = function
                        .get("arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    input.push(json!({"type": "function_call", "call_id": id,
                        "name": names.shorten(name), "arguments": arguments}));
                }
            }
            "tool" => {
                let call_id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a tool message needs `tool_call_id`"))?;
                input.push(json!({"type": "function_call_output", "call_id": call_id,
                    "output": plain_text(content, index)?}));
            }
            "function" => {
                return Err(bad(
                    "the deprecated `function` role is not supported; use `tool` messages",
                ))
            }
            other => return Err(bad(&format!("unknown role `{other}`"))),
        }
    }
    Ok((instructions.join("\n\n"), input))
}
