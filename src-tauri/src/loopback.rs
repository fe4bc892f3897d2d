//! A tiny blocking HTTP/1.1 GET to this machine's own endpoint (`127.0.0.1`), for a CLI run
//! asking the live `serve` or app what only that process knows (rotations it holds in memory).
//! Plain std sockets with short timeouts: no runtime to start for one local read.

use crate::secret::Secret;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);
/// `/v1/accounts` of even a large pool is far below this.
const MAX_ANSWER: u64 = 8 * 1024 * 1024;

/// `GET {path}` with the local key; the JSON body of a 200, else `None`.
pub fn get_json(port: u16, path: &str, key: &Secret) -> Option<serde_json::Value> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    s.set_write_timeout(Some(TIMEOUT)).ok()?;
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        key.expose()
    );
    s.write_all(head.as_bytes()).ok()?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut answer).ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (head, body) = (&answer[..split], &answer[split + 4..]);
    let head = std::str::from_utf8(head).ok()?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        serde_json::from_slice(&dechunk(body)?).ok()
    } else {
        serde_json::from_slice(body).ok()
    }
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n").unwrap(),
            b"[1,2,3]"
        );
        assert!(dechunk(b"9\r\nshort\r\n").is_none());
    }
}
