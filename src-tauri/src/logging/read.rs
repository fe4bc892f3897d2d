//! Reading the log files back: the newest files, the recent warnings and errors for the
//! diagnostics report, and the Logs view's pages (from the end, filtered, or following).

use super::{log_dir, LogLine, LOG_FILE_PREFIX};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The log files in `dir`, newest first.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{LOG_FILE_PREFIX}.")))
                })
                .collect()
        })
        .unwrap_or_default();
    // The date in the name sorts as text.
    files.sort();
    files.reverse();
    files
}

/// How much of a file's end the readers look at: the recent problems are near the end, and a
/// trace-level file can be large.
const TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// The last `max` warnings and errors in the log files of `data_dir` (oldest first), reading
/// only the files' ends, newest file first.
pub fn recent_in_files(data_dir: &Path, max: usize) -> Vec<LogLine> {
    let mut found: Vec<LogLine> = Vec::new();
    for file in log_files(&log_dir(data_dir)) {
        let Ok(text) = read_tail(&file, TAIL_BYTES) else {
            continue;
        };
        let mut lines: Vec<LogLine> = text
            .lines()
            .filter_map(LogLine::parse)
            .filter(LogLine::is_problem)
            .collect();
        lines.append(&mut found);
        found = lines;
        if found.len() >= max {
            break;
        }
    }
    let skip = found.len().saturating_sub(max);
    found.split_off(skip)
}

/// The last `max_bytes` of `path` as text, starting at a line boundary.
pub fn read_tail(path: &Path, max_bytes: u64) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut bytes)?;
    if start > 0 {
        // Drop the partial first line.
        let cut = memchr::memchr(b'\n', &bytes).map_or(bytes.len(), |i| i + 1);
        bytes.drain(..cut);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What the Logs view asks for: one page of the newest log file's lines.
#[derive(Debug, Clone, Default, serde::Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct LogQuery {
    /// The least severe level shown (`ERROR` … `TRACE`); None: all.
    pub level: Option<String>,
    /// Only lines containing this text (case-insensitive).
    pub search: Option<String>,
    /// Lines before this byte offset (paging back); None: up to the end.
    #[ts(type = "number | null")]
    pub before: Option<u64>,
    /// Lines from this byte offset on (following the file); wins over `before`.
    #[ts(type = "number | null")]
    pub after: Option<u64>,
    /// At most this many lines (default 200, at most 2,000).
    pub limit: Option<usize>,
}

/// One page: matching lines, oldest first, with where they came from in the file.
#[derive(Debug, Clone, Default, serde::Serialize, ts_rs::TS)]
#[ts(export)]
pub struct LogPage {
    /// The file's name (`codex-vault.log.YYYY-MM-DD`), None when there is no log file yet.
    pub file: Option<String>,
    pub lines: Vec<LogLine>,
    /// Where the page starts (pass as `before` for the previous page); 0: the file's start.
    #[ts(type = "number")]
    pub start: u64,
    /// The file's length when read (pass as `after` to follow it).
    #[ts(type = "number")]
    pub end: u64,
}

fn level_rank(level: &str) -> u8 {
    match level {
        "ERROR" => 0,
        "WARN" => 1,
        "INFO" => 2,
        "DEBUG" => 3,
        _ => 4,
    }
}

/// A page of the newest log file in `data_dir`, read from its end backwards (or forwards from
/// `after`), never the whole file at once.
pub fn page(data_dir: &Path, q: &LogQuery) -> io::Result<LogPage> {
    let Some(path) = log_files(&log_dir(data_dir)).into_iter().next() else {
        return Ok(LogPage::default());
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 2000);
    let max = q.level.as_deref().map_or(4, level_rank);
    let needle = q
        .search
        .as_deref()
        .map(str::to_lowercase)
        .filter(|s| !s.is_empty());
    let keep = |l: &LogLine| {
        level_rank(&l.level) <= max
            && needle.as_deref().is_none_or(|n| {
                format!("{} {} {}", l.at, l.level, l.text)
                    .to_lowercase()
                    .contains(n)
            })
    };
    let mut f = std::fs::File::open(&path)?;
    let len = f.metadata()?.len();
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some(after) = q.after {
        let from = after.min(len);
        let bytes = read_range(&mut f, from, len.min(from + TAIL_BYTES))?;
        // Only whole lines: a line being written stays for the next call.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&bytes[..whole]);
        let mut lines: Vec<LogLine> = text
            .lines()
            .filter_map(LogLine::parse)
            .filter(keep)
            .collect();
        let skip = lines.len().saturating_sub(limit);
        lines.drain(..skip);
        return Ok(LogPage {
            file,
            lines,
            start: from,
            end: from + whole as u64,
        });
    }
    let before = q.before.unwrap_or(len).min(len);
    let mut window: u64 = 256 * 1024;
    loop {
        let start = before.saturating_sub(window);
        let bytes = read_range(&mut f, start, before)?;
        // From the first whole line (unless at the file's start).
        let cut = if start == 0 {
            0
        } else {
            memchr::memchr(b'\n', &bytes).map_or(bytes.len(), |i| i + 1)
        };
        let text = String::from_utf8_lossy(&bytes[cut..]);
        let mut lines: Vec<(u64, LogLine)> = Vec::new();
        let mut offset = start + cut as u64;
        for raw in text.split_inclusive('\n') {
            if let Some(l) = LogLine::parse(raw).filter(|l| keep(l)) {
                lines.push((offset, l));
            }
            offset += raw.len() as u64;
        }
        if lines.len() >= limit || start == 0 || window >= TAIL_BYTES {
            let skip = lines.len().saturating_sub(limit);
            let page_start = if skip == 0 && lines.len() < limit {
                start + cut as u64
            } else {
                lines[skip].0
            };
            return Ok(LogPage {
                file,
                lines: lines.into_iter().skip(skip).map(|(_, l)| l).collect(),
                start: page_start,
                end: len,
            });
        }
        window *= 4;
    }
}

fn read_range(f: &mut std::fs::File, from: u64, to: u64) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = vec![0; to.saturating_sub(from) as usize];
    f.read_exact(&mut bytes)?;
    Ok(bytes)
}
