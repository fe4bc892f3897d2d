//! An incremental reader of the backend's SSE frames: body chunks in (split anywhere, even inside
//! a UTF-8 character), whole events out as soon as their blank line arrived.

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event:` field; empty when absent (the JSON's `type` then says what it is).
    pub name: String,
    pub data: String,
}

#[derive(Default)]
pub struct SseReader {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no frame end: a long frame arriving in many chunks is
    /// then searched once, not once per chunk (that was quadratic: a 10 MB frame in 4 KB chunks
    /// took minutes).
    searched: usize,
}

impl SseReader {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = frame_end(&self.buf, self.searched) {
            let raw: Vec<u8> = self.buf.drain(..end + sep).collect();
            self.searched = 0;
            if let Some(ev) = parse(&String::from_utf8_lossy(&raw[..end])) {
                out.push(ev);
            }
        }
        self.searched = self.buf.len();
        out
    }
}

/// The first frame end (`\n\n` or `\r\n\r\n`) at or after `searched - 3`: a separator may have
/// begun in the last bytes already searched and been completed by the new chunk.
fn frame_end(buf: &[u8], searched: usize) -> Option<(usize, usize)> {
    let from = searched.saturating_sub(3);
    let tail = &buf[from.min(buf.len())..];
    let lf = tail
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (from + i, 2));
    let crlf = tail
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (from + i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse(block: &str) -> Option<Event> {
    let mut name = String::new();
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with(':') {
            continue; // a comment (keep-alive)
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    (!data.is_empty()).then(|| Event {
        name,
        data: data.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let wire = "event: a\ndata: {\"x\":\"é\"}\n\n: keep-alive\n\nevent: b\r\ndata: 1\r\ndata: 2\r\n\r\ndata: [DONE]\n\n";
        let bytes = wire.as_bytes();
        for cut in 0..bytes.len() {
            let mut r = SseReader::default();
            let mut got = r.push(&bytes[..cut]);
            got.extend(r.push(&bytes[cut..]));
            assert_eq!(
                got,
                vec![
                    Event {
                        name: "a".into(),
                        data: "{\"x\":\"é\"}".into()
                    },
                    Event {
                        name: "b".into(),
                        data: "1\n2".into()
                    },
                    Event {
                        name: "".into(),
                        data: "[DONE]".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }
}
