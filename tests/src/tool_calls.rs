//! Function calling, as the backend does it: a request that offers function `tools` and demands
//! a call (`tool_choice: "required"` or `{"type":"function","name":…}`) is answered with one
//! `function_call` item, streamed as `response.output_item.added` → N ×
//! `response.function_call_arguments.delta` → `response.function_call_arguments.done` →
//! `response.output_item.done` → `response.completed`. A request whose input ends with the
//! `function_call_output` of that call is answered with text again, quoting the output, so a test
//! can see the tool result went through.

use serde_json::{json, Map, Value};

use crate::sse::{response_object, split_deltas, ResponseScript, SseEvent};

/// The call the fake makes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedCall {
    pub name: String,
    pub arguments: String,
}

/// What the answer to `request` is: a function call, or text (`None`) — with the text to use.
pub(crate) fn plan(request: &Value, default_text: &str) -> (Option<PlannedCall>, String) {
    let input = request.get("input").and_then(Value::as_array);
    let last = input.and_then(|i| i.last());
    if last.and_then(|l| l.get("type")).and_then(Value::as_str) == Some("function_call_output") {
        let output = last
            .and_then(|l| l.get("output"))
            .map(|o| match o {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        return (None, format!("{default_text} (tool said: {output})"));
    }
    let tools: Vec<&Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .collect();
    let wanted = match request.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => tools.first().copied(),
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str);
            tools
                .iter()
                .copied()
                .find(|t| t.get("name").and_then(Value::as_str) == name)
        }
        _ => None,
    };
    match wanted {
        Some(tool) => (
            Some(PlannedCall {
                name: tool
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: arguments_for(tool.get("parameters")).to_string(),
            }),
            String::new(),
        ),
        None => (None, default_text.to_string()),
    }
}

/// Arguments that satisfy the tool's schema's top-level properties: strings `"fake-<name>"`,
/// numbers 1, booleans true, anything else null.
fn arguments_for(schema: Option<&Value>) -> Value {
    let mut args = Map::new();
    let props = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    for (name, prop) in props.into_iter().flatten() {
        let v = match prop.get("type").and_then(Value::as_str) {
            Some("string") => json!(format!("fake-{name}")),
            Some("number") | Some("integer") => json!(1),
            Some("boolean") => json!(true),
            _ => Value::Null,
        };
        args.insert(name.clone(), v);
    }
    Value::Object(args)
}

/// The event sequence of one function-call answer.
pub(crate) fn function_call_events(
    s: &ResponseScript<'_>,
    call: &PlannedCall,
    call_id: &str,
) -> Vec<SseEvent> {
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
    let item = |status: &str, arguments: &str| {
        json!({"id": s.item_id, "type": "function_call", "status": status,
            "arguments": arguments, "call_id": call_id, "name": call.name})
    };
    let done_item = item("completed", &call.arguments);
    let output_tokens = (call.arguments.len() as u64 / 4).max(1);
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
        json!({"output_index": 0, "item": item("in_progress", "")}),
    );
    for delta in split_deltas(&call.arguments, s.n_deltas) {
        push(
            "response.function_call_arguments.delta",
            json!({"item_id": s.item_id, "output_index": 0, "delta": delta}),
        );
    }
    push(
        "response.function_call_arguments.done",
        json!({"item_id": s.item_id, "output_index": 0, "name": call.name, "arguments": call.arguments}),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!({"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}})
    }

    #[test]
    fn a_call_only_when_tools_are_offered_and_one_is_demanded() {
        let other = json!({"type": "function", "name": "other"});
        let cases = [
            (
                json!({"tools": [weather()], "tool_choice": "required"}),
                Some("get_weather"),
            ),
            (
                json!({"tools": [weather(), other], "tool_choice": {"type": "function", "name": "other"}}),
                Some("other"),
            ),
            (json!({"tools": [weather()], "tool_choice": "auto"}), None),
            (json!({"tools": [], "tool_choice": "required"}), None),
            (json!({"tool_choice": "required"}), None),
            (
                json!({"tools": [weather()], "tool_choice": "required",
                "input": [{"type": "function_call_output", "call_id": "c", "output": "sunny"}]}),
                None,
            ),
        ];
        for (req, want) in cases {
            let (call, text) = plan(&req, "hello");
            assert_eq!(call.as_ref().map(|c| c.name.as_str()), want, "{req}");
            assert_eq!(text.is_empty(), want.is_some(), "{req}");
        }
        let (call, _) = plan(
            &json!({"tools": [weather()], "tool_choice": "required"}),
            "x",
        );
        let args: Value = serde_json::from_str(&call.unwrap().arguments).unwrap();
        assert_eq!(args, json!({"city": "fake-city", "days": 1}));
        let (_, text) = plan(
            &json!({"input": [{"type": "function_call_output", "call_id": "c", "output": "sunny"}]}),
            "ok",
        );
        assert_eq!(text, "ok (tool said: sunny)");
    }

    #[test]
    fn the_call_streams_in_upstream_order_and_the_deltas_join() {
        let s = ResponseScript {
            response_id: "resp_1",
            item_id: "fc_1",
            model: "m",
            text: "",
            n_deltas: 3,
            input_tokens: 5,
            created_at: 0,
        };
        let call = PlannedCall {
            name: "f".into(),
            arguments: "{\"city\":\"fake-city\"}".into(),
        };
        let events = function_call_events(&s, &call, "call_1");
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let joined: String = events
            .iter()
            .filter(|e| e.event == "response.function_call_arguments.delta")
            .map(|e| e.data["delta"].as_str().unwrap())
            .collect();
        assert_eq!(joined, call.arguments);
        assert_eq!(events[2].data["item"]["call_id"], "call_1");
        assert_eq!(
            events[8].data["response"]["output"][0]["type"],
            "function_call"
        );
    }
}
