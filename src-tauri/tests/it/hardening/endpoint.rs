//! Endpoint abuse: a slowloris client (a request head trickled a byte at a time) is cut off by the
//! header-read timeout while a long streamed answer on another connection is not; a thousand idle
//! connections do not keep a normal request from being served (and are reaped later); a client
//! that leaves mid-stream cancels the upstream request (counted at the fake), for
//! `/v1/responses` and the translated `/v1/chat/completions` alike.

use crate::common;

use crate::common::vault::{chat_turn, turn, TestVault};
use crate::common::{read_until_closed, rest_of};
use codex_vault::endpoint::HEADER_READ_TIMEOUT;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_off_but_a_long_stream_is_not() {
    let rig = TestVault::new(1).await;
    // A legitimate streamed answer that starts now and stays open past the header timeout.
    let gate = rig.fake.hold_streams_after_first_output();
    let mut stream_resp = rig
        .keyed_post("/v1/responses", &turn(None))
        .send()
        .await
        .unwrap();
    assert_eq!(stream_resp.status(), 200);
    let first = stream_resp.chunk().await.unwrap().expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("response.created"));

    // The slowloris client: a valid start, then one header byte every 200 ms, never finishing.
    let mut slow = TcpStream::connect(("127.0.0.1", rig.ep().port))
        .await
        .unwrap();
    slow.write_all(b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut rd, mut wr) = slow.into_split();
    let trickle = tokio::spawn(async move {
        // Stops by itself once writes fail (the server closed); bounded either way.
        for _ in 0..(HEADER_READ_TIMEOUT.as_millis() / 200 * 3) {
            if wr.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, rd.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the server kept a trickling client's connection open past 3x the header timeout"
    );
    trickle.abort();
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a head never completed must not be answered as a request: {answer:?}"
    );
    assert_eq!(
        rig.fake.counters().responses_calls,
        1,
        "only the legitimate request reached upstream"
    );

    // The stream that began before the slowloris connection is still open after it was cut:
    // the timeout bounds heads, not answers.
    gate.release();
    let rest = rest_of(&mut stream_resp, "the long stream was not cut").await;
    assert!(String::from_utf8_lossy(&rest).contains("response.completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_stop_a_normal_request_and_are_reaped() {
    const IDLE: usize = 1000;
    // Client and server ends.
    common::need_open_files(2 * IDLE + 200);
    let rig = TestVault::new(1).await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            TcpStream::connect(("127.0.0.1", rig.ep().port))
                .await
                .expect("connect an idle client"),
        );
    }
    // A normal request, while all of them are open.
    rig.assert_answers_a_turn().await;
    let chat = rig.chat(chat_turn(false, None)).send().await.unwrap();
    assert_eq!(chat.status(), 200);

    // None of the idle ones was answered, and each is closed by the server in the end (the
    // header timeout covers a connection that never sends a byte), so they cannot pile up.
    let reaped = futures_util::future::join_all(
        idle.iter_mut()
            .map(|s| read_until_closed(s, HEADER_READ_TIMEOUT * 3)),
    )
    .await;
    let still_open = reaped.iter().filter(|r| r.is_none()).count();
    assert_eq!(still_open, 0, "{still_open} idle connections never closed");
    assert!(
        reaped.iter().flatten().all(
            |sent| sent.is_empty() || String::from_utf8_lossy(sent).starts_with("HTTP/1.1 408")
        ),
        "an idle connection got an answer to a request it never made"
    );
    // And the endpoint serves on.
    let health = rig.http.get(rig.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_cancels_the_upstream_request() {
    let rig = TestVault::new(1).await;
    let gate = rig.fake.hold_streams_after_first_output();

    // /v1/responses: bytes passed through.
    let mut resp = rig
        .keyed_post("/v1/responses", &turn(None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let n = rig
        .fake
        .wait_for_counters(Duration::from_secs(10), |c| c.responses_cancelled == 1)
        .await
        .expect("upstream sees the /v1/responses request cancelled");
    assert_eq!(n.responses_completed, 0);

    // /v1/chat/completions: through the stream translator.
    let mut resp = rig.chat(chat_turn(true, None)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let n = rig
        .fake
        .wait_for_counters(Duration::from_secs(10), |c| c.responses_cancelled == 2)
        .await
        .expect("upstream sees the chat request cancelled");
    assert_eq!(n.responses_completed, 0);
    assert_eq!(n.responses_calls, 2);

    // Control: a client that stays gets the whole answer, counted as completed.
    gate.release();
    let body = rig
        .keyed_post("/v1/responses", &turn(None))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("response.completed"));
    rig.fake
        .wait_for_counters(Duration::from_secs(10), |c| c.responses_completed == 1)
        .await
        .expect("a full read counts as completed");
}
