//! A Chat Completions request → the Codex Responses request the backend accepts. Pure.
//!
//! system/developer messages become `instructions`; user/assistant text and images become
//! `input` messages; assistant `tool_calls` and `tool` messages become `function_call` /
//! `function_call_output` items with their call ids; tools, tool choice, reasoning effort and
//! response format map to their Responses fields. The backend only streams and never stores, so
//! `stream: true`, `store: false` are always sent; sampling knobs it rejects are dropped (and
//! named, for the debug log). `n > 1` is refused: answering one choice would change the meaning.

mod messages;

use super::names::NameMap;
use messages::translate_messages;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("the request body must be a JSON object")]
    NotObject,
    #[error("`model` is required")]
    MissingModel,
    #[error("`messages` must be a non-empty array")]
    NoMessages,
    #[error("n = {0} is not supported: the Codex backend returns one choice per request (send n = 1 or leave it out)")]
    ManyChoices(u64),
    #[error("messages[{index}]: {why}")]
    BadMessage { index: usize, why: String },
    #[error("tools[{index}]: {why}")]
    BadTool { index: usize, why: String },
    #[error("`{field}`: {why}")]
    BadField { field: &'static str, why: String },
}

impl RequestError {
    /// The `param` of the OpenAI error body.
    pub fn param(&self) -> Option<String> {
        match self {
            RequestError::NotObject => None,
            RequestError::MissingModel => Some("model".into()),
            RequestError::NoMessages => Some("messages".into()),
            RequestError::ManyChoices(_) => Some("n".into()),
            RequestError::BadMessage { index, .. } => Some(format!("messages[{index}]")),
            RequestError::BadTool { index, .. } => Some(format!("tools[{index}]")),
            RequestError::BadField { field, .. } => Some((*field).into()),
        }
    }
}

/// The translated request and what the answer needs to know about the original.
#[derive(Debug, Clone)]
pub struct Translated {
    pub body: Value,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub names: NameMap,
    /// Client parameters not sent upstream (logged at debug level by the caller).
    pub dropped: Vec<String>,
}

/// Parameters the Codex backend rejects or ignores; dropping them keeps the request answerable.
const DROPPED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "stop",
    "user",
    "metadata",
    "store",
    "service_tier",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "safety_identifier",
];

/// Parameters this module reads.
const HANDLED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "response_format",
    "verbosity",
    "prompt_cache_key",
    "functions",
    "function_call",
];

pub fn translate(req: &Value) -> Result<Translated, RequestError> {
    let obj = req.as_object().ok_or(RequestError::NotObject)?;
    let (model, messages) = check(obj)?;
    let mut names = NameMap::default();
    let mut body = Map::new();
    body.insert("model".into(), json!(model));

    let tools = match obj.get("tools").filter(|v| !v.is_null()) {
        Some(t) => translate_tools(t, &mut names)?,
        None => Vec::new(),
    };
    let (instructions, input) = translate_messages(messages, &mut names)?;
    body.insert("instructions".into(), json!(instructions));
    body.insert("input".into(), Value::Array(input));
    let has_tools = !tools.is_empty();
    body.insert("tools".into(), Value::Array(tools));
    let tool_choice = match obj.get("tool_choice").filter(|v| !v.is_null()) {
        Some(c) => translate_tool_choice(c, &mut names)?,
        None => json!("auto"),
    };
    body.insert("tool_choice".into(), tool_choice);
    body.insert(
        "parallel_tool_calls".into(),
        json!(parallel(obj, has_tools)?),
    );
    map_knobs(obj, &mut body)?;
    body.insert("store".into(), json!(false));
    body.insert("stream".into(), json!(true));
    body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    // The conversation key: upstream caches by it and the endpoint keeps it on one account.
    if let Some(k) = obj.get("prompt_cache_key").and_then(Value::as_str) {
        body.insert("prompt_cache_key".into(), json!(k));
    }

    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Translated {
        body: Value::Object(body),
        model,
        stream,
        include_usage,
        names,
        dropped: dropped(obj),
    })
}

/// The model and the messages, after refusing what cannot be answered faithfully.
fn check(obj: &Map<String, Value>) -> Result<(String, &[Value]), RequestError> {
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or(RequestError::MissingModel)?
        .to_string();
    if let Some(n) = obj.get("n").filter(|v| !v.is_null()) {
        match n.as_u64() {
            Some(1) => {}
            Some(k) => return Err(RequestError::ManyChoices(k)),
            None => {
                return Err(RequestError::BadField {
                    field: "n",
                    why: "must be a positive integer".into(),
                })
            }
        }
    }
    if obj.contains_key("functions") || obj.contains_key("function_call") {
        return Err(RequestError::BadField {
            field: "functions",
            why: "the deprecated `functions`/`function_call` are not supported; use `tools`/`tool_choice`".into(),
        });
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(RequestError::NoMessages)?;
    Ok((model, messages))
}

fn parallel(obj: &Map<String, Value>, has_tools: bool) -> Result<bool, RequestError> {
    match obj.get("parallel_tool_calls").filter(|v| !v.is_null()) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(RequestError::BadField {
            field: "parallel_tool_calls",
            why: "must be a boolean".into(),
        }),
        // Chat Completions' default: parallel calls allowed when there are tools.
        None => Ok(has_tools),
    }
}

/// Reasoning effort, response format and verbosity → `reasoning` and `text`.
fn map_knobs(obj: &Map<String, Value>, body: &mut Map<String, Value>) -> Result<(), RequestError> {
    if let Some(effort) = obj.get("reasoning_effort").filter(|v| !v.is_null()) {
        let effort = effort.as_str().ok_or(RequestError::BadField {
            field: "reasoning_effort",
            why: "must be a string such as \"low\", \"medium\" or \"high\"".into(),
        })?;
        body.insert("reasoning".into(), json!({"effort": effort}));
    }
    let mut text = Map::new();
    if let Some(format) = obj.get("response_format").filter(|v| !v.is_null()) {
        if let Some(f) = translate_response_format(format)? {
            text.insert("format".into(), f);
        }
    }
    if let Some(v) = obj.get("verbosity").and_then(Value::as_str) {
        text.insert("verbosity".into(), json!(v));
    }
    if !text.is_empty() {
        body.insert("text".into(), Value::Object(text));
    }
    Ok(())
}

/// Client parameters not sent upstream: known knobs first, then anything unexpected, each in a
/// stable order for the log.
fn dropped(obj: &Map<String, Value>) -> Vec<String> {
    let mut dropped: Vec<String> = obj
        .iter()
        .filter(|(k, v)| !HANDLED.contains(&k.as_str()) && !v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    dropped.sort_by_key(|k| (!DROPPED.contains(&k.as_str()), k.clone()));
    dropped
}

fn translate_tools(tools: &Value, names: &mut NameMap) -> Result<Vec<Value>, RequestError> {
    let list = tools.as_array().ok_or(RequestError::BadField {
        field: "tools",
        why: "must be an array".into(),
    })?;
    list.iter()
        .enumerate()
        .map(|(index, t)| {
            let bad = |why: &str| RequestError::BadTool {
                index,
                why: why.into(),
            };
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(bad("only `function` tools are supported"));
            }
            let f = t
                .get("function")
                .ok_or_else(|| bad("`function` is required"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("`function.name` is required"))?;
            let mut out = Map::new();
            out.insert("type".into(), json!("function"));
            out.insert("name".into(), json!(names.shorten(name)));
            if let Some(d) = f.get("description").filter(|v| !v.is_null()) {
                out.insert("description".into(), d.clone());
            }
            out.insert(
                "parameters".into(),
                f.get("parameters")
                    .filter(|v| !v.is_null())
                    .cloned()
                    // Responses requires a schema; "no parameters" is an empty object schema.
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            );
            if let Some(s) = f.get("strict").filter(|v| !v.is_null()) {
                out.insert("strict".into(), s.clone());
            }
            Ok(Value::Object(out))
        })
        .collect()
}

fn translate_tool_choice(choice: &Value, names: &mut NameMap) -> Result<Value, RequestError> {
    let bad = || {
        RequestError::BadField {
        field: "tool_choice",
        why: "must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}".into(),
    }
    };
    match choice {
        Value::String(s) if matches!(s.as_str(), "none" | "auto" | "required") => Ok(json!(s)),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            Ok(json!({"type": "function", "name": names.shorten(name)}))
        }
        _ => Err(bad()),
    }
}

fn translate_response_format(format: &Value) -> Result<Option<Value>, RequestError> {
    let bad = |why: &str| RequestError::BadField {
        field: "response_format",
        why: why.into(),
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let js = format
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("`json_schema` is required for type json_schema"))?;
            let mut out = Map::new();
            out.insert("type".into(), json!("json_schema"));
            out.insert(
                "name".into(),
                js.get("name").cloned().unwrap_or_else(|| json!("response")),
            );
            for k in ["schema", "strict", "description"] {
                if let Some(v) = js.get(k).filter(|v| !v.is_null()) {
                    out.insert(k.into(), v.clone());
                }
            }
            Ok(Some(Value::Object(out)))
        }
        _ => Err(bad("type must be text, json_object or json_schema")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(extra: Value) -> Value {
        let mut v = json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn body(extra: Value) -> Value {
        translate(&base(extra)).unwrap().body
    }

    #[test]
    fn fixed_fields_are_always_sent() {
        let b = body(json!({}));
        assert_eq!(b["model"], "gpt-5.5");
        assert_eq!(b["instructions"], "", "no system message: an empty string");
        assert_eq!(b["store"], false);
        assert_eq!(b["stream"], true);
        assert_eq!(b["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(b["tools"], json!([]));
        assert_eq!(b["tool_choice"], "auto");
        assert_eq!(b["parallel_tool_calls"], false);
        assert!(b.get("reasoning").is_none() && b.get("text").is_none());
        assert_eq!(
            b["input"],
            json!([{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}])
        );
    }

    #[test]
    fn messages_map_to_instructions_and_input_items() {
        let b = body(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "43"}]},
        ]}));
        assert_eq!(b["instructions"], "Be brief.\n\nUse metric units.");
        assert_eq!(
            b["input"],
            json!([
                {"type":"message","role":"user","content":[
                    {"type":"input_text","text":"what is this?"},
                    {"type":"input_image","image_url":"data:image/png;base64,AAAA","detail":"low"}]},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]},
                {"type":"function_call","call_id":"call_1","name":"lookup","arguments":"{\"q\":1}"},
                {"type":"function_call_output","call_id":"call_1","output":"42"},
                {"type":"function_call","call_id":"call_2","name":"lookup","arguments":"{}"},
                {"type":"function_call_output","call_id":"call_2","output":"43"},
            ])
        );
    }

    #[test]
    fn tools_choice_and_parallel_map_with_long_names_shortened() {
        let long = format!("mcp__files__{}", "read_".repeat(15));
        let t = translate(&base(json!({
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": long, "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
                {"type": "function", "function": {"name": long}}
            ],
            "tool_choice": {"type": "function", "function": {"name": long}},
            "parallel_tool_calls": false
        })))
        .unwrap();
        let short = t.body["tools"][1]["name"].as_str().unwrap().to_string();
        assert!(short.len() <= 64 && short != long);
        assert_eq!(t.names.restore(&short), long);
        assert_eq!(
            t.body["tools"][0],
            json!({"type":"function","name":"get_weather","description":"Weather",
                "parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true})
        );
        assert_eq!(
            t.body["tools"][1]["parameters"],
            json!({"type":"object","properties":{}})
        );
        assert_eq!(
            t.body["tool_choice"],
            json!({"type":"function","name": short})
        );
        assert_eq!(
            t.body["input"][1]["name"],
            json!(short),
            "history uses the same short name"
        );
        assert_eq!(t.body["parallel_tool_calls"], false);

        for (choice, want) in [("none", "none"), ("auto", "auto"), ("required", "required")] {
            assert_eq!(body(json!({"tool_choice": choice}))["tool_choice"], want);
        }
        let with_tools = body(json!({"tools": [{"type":"function","function":{"name":"f"}}]}));
        assert_eq!(
            with_tools["parallel_tool_calls"], true,
            "Chat's default with tools"
        );
    }

    #[test]
    fn reasoning_format_verbosity_and_cache_key_map() {
        let b = body(json!({
            "reasoning_effort": "high",
            "response_format": {"type": "json_schema", "json_schema": {"name": "pt", "strict": true,
                "schema": {"type": "object", "properties": {"x": {"type": "number"}}}}},
            "verbosity": "low",
            "prompt_cache_key": "conv-7"
        }));
        assert_eq!(b["reasoning"], json!({"effort": "high"}));
        assert_eq!(
            b["text"],
            json!({"format": {"type":"json_schema","name":"pt","strict":true,
                "schema":{"type":"object","properties":{"x":{"type":"number"}}}}, "verbosity": "low"})
        );
        assert_eq!(b["prompt_cache_key"], "conv-7");
        assert_eq!(
            body(json!({"response_format": {"type": "json_object"}}))["text"],
            json!({"format": {"type": "json_object"}})
        );
        assert!(body(json!({"response_format": {"type": "text"}}))
            .get("text")
            .is_none());
    }

    #[test]
    fn rejected_knobs_are_dropped_and_named() {
        let t = translate(&base(json!({
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 10, "logprobs": true, "n": 1,
            "store": true, "stream": true, "stream_options": {"include_usage": true}, "x_custom": 1
        })))
        .unwrap();
        assert_eq!(
            t.dropped,
            vec![
                "logprobs",
                "max_tokens",
                "store",
                "temperature",
                "top_p",
                "x_custom"
            ]
        );
        for k in [
            "temperature",
            "top_p",
            "max_tokens",
            "logprobs",
            "n",
            "x_custom",
        ] {
            assert!(t.body.get(k).is_none(), "{k} must not reach the backend");
        }
        assert_eq!(
            t.body["store"], false,
            "store:true from the client is overridden"
        );
        assert!(t.stream && t.include_usage);
        let plain = translate(&base(json!({}))).unwrap();
        assert!(
            !plain.stream && !plain.include_usage,
            "Chat's default is not streaming"
        );
    }

    #[test]
    fn invalid_requests_are_refused_with_the_param() {
        let cases: Vec<(Value, RequestError)> = vec![
            (json!("x"), RequestError::NotObject),
            (
                json!({"messages": [{"role":"user","content":"a"}]}),
                RequestError::MissingModel,
            ),
            (
                json!({"model": "m", "messages": []}),
                RequestError::NoMessages,
            ),
            (base(json!({"n": 2})), RequestError::ManyChoices(2)),
        ];
        for (req, want) in cases {
            assert_eq!(translate(&req).unwrap_err(), want, "{req}");
        }
        let params: Vec<(Value, &str)> = vec![
            (
                base(json!({"messages": [{"role": "wizard", "content": "a"}]})),
                "messages[0]",
            ),
            (
                base(json!({"messages": [{"role": "tool", "content": "a"}]})),
                "messages[0]",
            ),
            (
                base(json!({"messages": [{"role": "user", "content": [{"type":"input_audio"}]}]})),
                "messages[0]",
            ),
            (
                base(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})),
                "tools[0]",
            ),
            (base(json!({"tool_choice": "sometimes"})), "tool_choice"),
            (
                base(json!({"response_format": {"type": "yaml"}})),
                "response_format",
            ),
            (base(json!({"functions": []})), "functions"),
            (base(json!({"n": "two"})), "n"),
        ];
        for (req, param) in params {
            let e = translate(&req).unwrap_err();
            assert_eq!(e.param().as_deref(), Some(param), "{req}: {e}");
        }
    }
}
