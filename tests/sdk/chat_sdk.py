"""The official OpenAI Python SDK against Codex Vault's endpoint (backed by the fake OpenAI).

Driven by src-tauri/tests/chat_sdk.rs, which starts the fake and the endpoint and passes
CV_BASE_URL (ending in /v1), CV_KEY (the local key), CV_TEXT (the fake's answer text) and
CV_MODEL. Prints `PASS <check>` per check; any failed assertion or SDK error exits non-zero.
"""

import json
import os
import sys

import openai

BASE = os.environ["CV_BASE_URL"]
TEXT = os.environ["CV_TEXT"]
MODEL = os.environ["CV_MODEL"]
LONG_NAME = "mcp__workspace_files__" + "read_a_file_from_the_project_tree_" * 2  # > 64 chars

client = openai.OpenAI(base_url=BASE, api_key=os.environ["CV_KEY"], max_retries=0, timeout=30)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
LONG_TOOL = {
    "type": "function",
    "function": {
        "name": LONG_NAME,
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
}


def passed(name):
    print(f"PASS {name}", flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def non_streaming():
    r = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        temperature=0.3,  # the backend rejects it: the endpoint drops it
    )
    check(r.object == "chat.completion", r)
    check(r.choices[0].message.content == TEXT, r.choices[0].message.content)
    check(r.choices[0].message.role == "assistant", r)
    check(r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)
    check(r.usage is not None and r.usage.total_tokens > 0, r.usage)
    passed("chat_non_streaming")


def streaming():
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    check(len(chunks) >= 3, f"{len(chunks)} chunks")
    check(chunks[0].choices[0].delta.role == "assistant", chunks[0])
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(content == TEXT, content)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finishes == ["stop"], finishes)
    check(chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0, chunks[-1])
    passed("chat_streaming")


def tool_round_trip():
    messages = [{"role": "user", "content": "What is the weather in Oslo?"}]
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER, LONG_TOOL],
        tool_choice="required",
        stream=True,
    )
    calls = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        for d in choice.delta.tool_calls or []:
            slot = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            if d.id:
                slot["id"] = d.id
            if d.function and d.function.name:
                slot["name"] += d.function.name
            if d.function and d.function.arguments:
                slot["arguments"] += d.function.arguments
        finish = choice.finish_reason or finish
    check(finish == "tool_calls", finish)
    check(list(calls) == [0], calls)
    call = calls[0]
    check(call["name"] == "get_weather" and call["id"], call)
    check(json.loads(call["arguments"]) == {"city": "fake-city"}, call)
    passed("chat_tool_call_streaming")

    # The tool result goes back; the conversation continues with text.
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"]}}
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    check(r.choices[0].finish_reason == "stop", r)
    check(r.choices[0].message.content == f"{TEXT} (tool said: sunny, 21 C)", r.choices[0].message.content)
    passed("chat_tool_result_continues")


def long_tool_name_non_streaming():
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Read README.md"}],
        tools=[WEATHER, LONG_TOOL],
        tool_choice={"type": "function", "function": {"name": LONG_NAME}},
    )
    check(r.choices[0].finish_reason == "tool_calls", r)
    tc = r.choices[0].message.tool_calls
    check(len(tc) == 1 and tc[0].function.name == LONG_NAME, tc)
    check(json.loads(tc[0].function.arguments) == {"path": "fake-path"}, tc)
    passed("chat_long_tool_name_restored")


def responses_stream():
    events = list(
        client.responses.create(model=MODEL, instructions="", input="Say hello.", store=False, stream=True)
    )
    kinds = [e.type for e in events]
    check(kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    check(text == TEXT, text)
    check(events[-1].response.output[0].content[0].text == TEXT, events[-1])
    passed("responses_streaming")


def models_and_errors():
    ids = [m.id for m in client.models.list()]
    check(MODEL in ids, ids)
    passed("models_list")
    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
        raise AssertionError("n=2 was accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body.get("param") == "n", e.body)
    passed("n_above_one_refused")


for step in (non_streaming, streaming, tool_round_trip, long_tool_name_non_streaming,
             responses_stream, models_and_errors):
    step()
print("ALL OK", flush=True)
sys.exit(0)
