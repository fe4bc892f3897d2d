//! Streams are really streamed: the hold gate parks them after the first event, and a client
//! that goes away mid-stream is seen and counted.

use crate::common;

use std::time::Duration;

use codex_vault_testkit::sse::SseParser;
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi};
use common::{client, next_event, post_responses_as};

#[tokio::test]
async fn the_gate_holds_streams_after_their_first_event() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let gate = fake.hold_streams_after_first_event();

    let resp = post_responses_as(&c, &fake, &t).await;
    assert_eq!(
        resp.status(),
        200,
        "headers arrive before the body is complete"
    );
    let mut body = resp.bytes_stream();
    let (mut parser, mut queue) = (SseParser::new(), Vec::new());
    let first = next_event(&mut body, &mut parser, &mut queue)
        .await
        .expect("first event arrives while the gate is held");
    assert_eq!(first.event, "response.created");

    // Held: nothing more comes (an absence can only be shown with a bound).
    let more = tokio::time::timeout(
        Duration::from_millis(300),
        next_event(&mut body, &mut parser, &mut queue),
    )
    .await;
    assert!(more.is_err(), "the stream must be parked: {more:?}");
    assert_eq!(fake.counters().responses_completed, 0);

    gate.release();
    let mut names = vec![first.event];
    while let Some(e) = next_event(&mut body, &mut parser, &mut queue).await {
        names.push(e.event);
    }
    assert_eq!(names.last().map(String::as_str), Some("response.completed"));
    assert_eq!(
        names.len(),
        8 + 4,
        "every event after release (4 deltas by default)"
    );
    fake.wait_for_counters(Duration::from_secs(5), |c| c.responses_completed == 1)
        .await
        .expect("counted as completed");

    // Streams started after the release are not held.
    let resp = post_responses_as(&c, &fake, &t).await;
    assert!(resp
        .text()
        .await
        .expect("body")
        .contains("response.completed"));
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_counted_as_cancelled() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let gate = fake.hold_streams_after_first_event();

    let resp = post_responses_as(&c, &fake, &t).await;
    let mut body = resp.bytes_stream();
    let (mut parser, mut queue) = (SseParser::new(), Vec::new());
    next_event(&mut body, &mut parser, &mut queue)
        .await
        .expect("first event");
    drop(body); // the client goes away while the stream is parked

    let counters = fake
        .wait_for_counters(Duration::from_secs(10), |c| c.responses_cancelled == 1)
        .await
        .expect("the fake notices the client left");
    assert_eq!(counters.responses_completed, 0);
    drop(gate);
}

#[tokio::test]
async fn dropping_the_gate_releases_and_many_streams_can_be_parked() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let gate = fake.hold_streams_after_first_event();

    let mut bodies = Vec::new();
    for _ in 0..3 {
        let resp = post_responses_as(&c, &fake, &t).await;
        let mut body = resp.bytes_stream();
        let (mut parser, mut queue) = (SseParser::new(), Vec::new());
        next_event(&mut body, &mut parser, &mut queue)
            .await
            .expect("first event");
        bodies.push((body, parser, queue));
    }
    assert_eq!(fake.counters().responses_completed, 0);
    drop(gate);
    for (mut body, mut parser, mut queue) in bodies {
        let mut last = None;
        while let Some(e) = next_event(&mut body, &mut parser, &mut queue).await {
            last = Some(e.event);
        }
        assert_eq!(last.as_deref(), Some("response.completed"));
    }
    fake.wait_for_counters(Duration::from_secs(5), |c| c.responses_completed == 3)
        .await
        .expect("three completed");
}

#[test]
fn the_blocking_fake_serves_sync_tests() {
    let fake = FakeOpenAi::start_blocking(FakeConfig::default());
    let t = fake.add_account(AccountSpec::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = rt.block_on(async {
        let c = client();
        let resp = post_responses_as(&c, &fake, &t).await;
        let status = resp.status();
        let _ = resp.text().await;
        status
    });
    assert_eq!(status, 200);
    let counters = fake
        .wait_for_counters_blocking(Duration::from_secs(5), |c| c.responses_completed == 1)
        .expect("completed");
    assert_eq!(counters.responses_calls, 1);
    let url = fake.base_url();
    drop(fake);
    // Stopped on drop: nothing listens there any more.
    assert!(std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err());
}

#[tokio::test]
async fn the_output_gate_holds_streams_after_their_first_output_item() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let gate = fake.hold_streams_after_first_output();
    let resp = post_responses_as(&c, &fake, &t).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let (mut parser, mut queue) = (SseParser::new(), Vec::new());
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut body, &mut parser, &mut queue)
            .await
            .expect("the opening events and the first output item arrive while held");
        kinds.push(e.event);
    }
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added"
        ]
    );
    // Held: nothing more comes (an absence can only be shown with a bound).
    let more = tokio::time::timeout(
        Duration::from_millis(300),
        next_event(&mut body, &mut parser, &mut queue),
    )
    .await;
    assert!(more.is_err(), "the stream must be parked: {more:?}");
    gate.release();
    let mut last = None;
    while let Some(e) = next_event(&mut body, &mut parser, &mut queue).await {
        last = Some(e.event);
    }
    assert_eq!(last.as_deref(), Some("response.completed"));
}
