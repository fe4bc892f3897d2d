//! The process's logging: stderr (as before, `RUST_LOG`, default warnings and errors), a rolling
//! log file in the data dir for the long-running faces, and the last warnings and errors kept in
//! memory for the diagnostics report.
//!
//! - `init` runs first thing in `main`, before the data dir is known: it installs all three
//!   layers, the file one writing nowhere yet.
//! - `attach_file` (by `serve` and the desktop app, once their data dir is known) points the file
//!   layer at `<data dir>/logs/codex-vault.log.YYYY-MM-DD` (UTC days, `tracing-appender`'s daily
//!   rotation, 7 files kept). The CLI's one-shot commands never attach it: they print what went
//!   wrong, and a file per `accounts list` would only bury the long-running processes' lines.
//! - The file gets `RUST_LOG` too when it is set, else `info`. Nothing in the core logs
//!   periodically, so an idle process writes nothing.
//! - Lines go through `tracing-appender`'s non-blocking writer: one thread that blocks on its
//!   channel (no timer), so a request never waits for the disk.
//! - The directory is 0700 and every file 0600: `tracing-appender` opens its files with the
//!   default mode, so each day's file is created private (`fsutil::touch_private`) before the
//!   appender first writes to it (`PrivateDaily`).
//! - Nothing here redacts: no token, key or email is ever logged (the leak test scans this file
//!   too, `tests/it/hardening/leaks.rs`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::fmt::writer::{EitherWriter, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod read;
pub use read::*;

/// The log files' directory under the data dir.
pub const LOG_DIR_NAME: &str = "logs";
/// Each day's file is this plus `.YYYY-MM-DD` (UTC).
pub const LOG_FILE_PREFIX: &str = "codex-vault.log";
/// Days of files kept (today's included).
pub const KEEP_FILES: usize = 7;
/// How many warnings and errors the in-memory ring (and the diagnostics report) keeps.
pub const RECENT_PROBLEMS: usize = 50;

/// Where `data_dir`'s log files are.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_DIR_NAME)
}

/// Installs the process's subscriber (once; later calls do nothing): stderr filtered by
/// `RUST_LOG` (default `warn`), the log file (`RUST_LOG`, default `info`; written only once
/// `attach_file` ran) and the ring of recent warnings and errors.
pub fn init() {
    let env = || EnvFilter::try_from_default_env().ok();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_filter(env().unwrap_or_else(|| EnvFilter::new("warn")));
    let file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(FileSlot)
        .with_filter(env().unwrap_or_else(|| EnvFilter::new("info")));
    let recent = RecentLayer.with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .with(recent)
        .try_init();
}

/// The log file's writer thread, kept until `flush_file` (dropping it flushes what is queued).
static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Writes out what is queued for the log file and stops its writer (the end of `serve`, the app's
/// Quit): lines logged afterwards reach only stderr.
pub fn flush_file() {
    drop(GUARD.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// The writer the file layer was given: today's file once `attach_file` ran, else nothing.
static FILE: OnceLock<NonBlocking> = OnceLock::new();

/// Whether this process writes the log file (its recent problems are in it, then).
pub fn file_attached() -> bool {
    FILE.get().is_some()
}

/// Points the file layer at `data_dir`'s log files (the directory made 0700, today's file 0600).
/// Once per process: a second call is refused (`AlreadyExists`).
pub fn attach_file(data_dir: &Path) -> io::Result<()> {
    if file_attached() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the log file is already attached",
        ));
    }
    let (writer, guard) = open_writer(&log_dir(data_dir))?;
    FILE.set(writer).map_err(|_| {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the log file is already attached",
        )
    })?;
    *GUARD.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    Ok(())
}

/// `attach_file` for `serve` and the app: a process that cannot write its log file still runs
/// (stderr keeps everything), saying why once.
pub fn attach_or_warn(data_dir: &Path) {
    if let Err(e) = attach_file(data_dir) {
        tracing::warn!("no log file in {}: {e}", log_dir(data_dir).display());
    }
}

/// The non-blocking writer over `dir`'s private daily files.
pub fn open_writer(dir: &Path) -> io::Result<(NonBlocking, WorkerGuard)> {
    let daily = PrivateDaily::open(dir)?;
    Ok(
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .thread_name("vault-log")
            .finish(daily),
    )
}

#[derive(Clone, Copy)]
struct FileSlot;

impl<'a> MakeWriter<'a> for FileSlot {
    type Writer = EitherWriter<NonBlocking, io::Sink>;
    fn make_writer(&'a self) -> Self::Writer {
        match FILE.get() {
            Some(w) => EitherWriter::A(w.clone()),
            None => EitherWriter::B(io::sink()),
        }
    }
}

/// `tracing-appender`'s daily files, each created 0600 before the appender opens it.
pub struct PrivateDaily {
    dir: PathBuf,
    inner: tracing_appender::rolling::RollingFileAppender,
    /// The UTC day whose file was last made private.
    day: chrono::NaiveDate,
}

impl PrivateDaily {
    pub fn open(dir: &Path) -> io::Result<PrivateDaily> {
        crate::fsutil::ensure_private_dir(dir)?;
        let day = chrono::Utc::now().date_naive();
        crate::fsutil::touch_private(&file_for(dir, day))?;
        let inner = tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix(LOG_FILE_PREFIX)
            .max_log_files(KEEP_FILES)
            .build(dir)
            .map_err(io::Error::other)?;
        Ok(PrivateDaily {
            dir: dir.to_path_buf(),
            inner,
            day,
        })
    }

    /// Makes the file of the current UTC day private if the day moved since the last write: the
    /// appender rolls over to it on its next write (the same clock), opening it with the default
    /// mode only if it does not exist yet.
    fn keep_private(&mut self) {
        let today = chrono::Utc::now().date_naive();
        if today != self.day {
            self.day = today;
            // Not fatal: the directory is 0700 all the same.
            let _ = crate::fsutil::touch_private(&file_for(&self.dir, today));
        }
    }
}

/// The file of `day` in `dir` (the appender's own naming: prefix, a dot, the date).
pub fn file_for(dir: &Path, day: chrono::NaiveDate) -> PathBuf {
    dir.join(format!("{LOG_FILE_PREFIX}.{}", day.format("%Y-%m-%d")))
}

impl Write for PrivateDaily {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.keep_private();
        let n = self.inner.write(buf)?;
        // The appender may have read a later clock than ours (a write across midnight).
        self.keep_private();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One warning or error, as the diagnostics report and the Logs view show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
#[ts(export)]
pub struct LogLine {
    /// RFC 3339 (UTC), as the file writes it.
    pub at: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The rest of the line: the module, then the message and its fields.
    pub text: String,
}

impl LogLine {
    /// Reads a line the file layer wrote (`<time> <LEVEL> <target>: <message> <fields>`); None
    /// for anything else (a continuation of a multi-line message).
    pub fn parse(line: &str) -> Option<LogLine> {
        let mut parts = line.trim_end().splitn(2, ' ');
        let at = parts.next()?;
        let rest = parts.next()?.trim_start();
        let (level, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let known = matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE");
        (known && at.len() >= 20 && at.as_bytes()[4] == b'-').then(|| LogLine {
            at: at.to_string(),
            level: level.to_string(),
            text: text.trim_start().to_string(),
        })
    }

    pub fn is_problem(&self) -> bool {
        matches!(self.level.as_str(), "ERROR" | "WARN")
    }
}

/// The last warnings and errors of this process (at most `RECENT_PROBLEMS`, oldest first).
pub fn recent_in_memory() -> Vec<LogLine> {
    ring().iter().cloned().collect()
}

fn ring() -> std::sync::MutexGuard<'static, VecDeque<LogLine>> {
    static RING: Mutex<VecDeque<LogLine>> = Mutex::new(VecDeque::new());
    RING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps each warning and error in the ring (its filter lets only those through).
struct RecentLayer;

impl<S: tracing::Subscriber> Layer<S> for RecentLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let mut text = FieldText(format!("{}:", meta.target()));
        event.record(&mut text);
        let line = LogLine {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            level: meta.level().to_string(),
            text: text.0,
        };
        let mut ring = ring();
        if ring.len() == RECENT_PROBLEMS {
            ring.pop_front();
        }
        ring.push_back(line);
    }
}

/// An event's message and fields as the file writes them (`message key=value`).
struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_log_file_and_its_directory_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let (writer, guard) = open_writer(&dir).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(account = "acc-1", "a warning for the file");
        });
        drop(guard); // flushes
        let files = log_files(&dir);
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
        let today = chrono::Utc::now().date_naive();
        assert!(
            name == format!("codex-vault.log.{}", today.format("%Y-%m-%d")),
            "{name}"
        );
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&files[0]), 0o600);
        let recent = recent_in_files(tmp.path(), 50);
        assert_eq!(recent.len(), 1, "{recent:?}");
        assert_eq!(recent[0].level, "WARN");
        assert!(
            recent[0].text.contains("a warning for the file"),
            "{recent:?}"
        );
        assert!(recent[0].text.contains("account=\"acc-1\""), "{recent:?}");
    }

    #[test]
    fn a_new_day_file_is_made_private_before_the_appender_writes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut daily = PrivateDaily::open(tmp.path()).unwrap();
        // As if the last write was yesterday: the next write makes today's file private (here
        // it exists already; it is restricted again, as a fresh one is created).
        let today = daily.day;
        let file = file_for(tmp.path(), today);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        daily.day = today.pred_opt().unwrap();
        daily.write_all(b"x\n").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(daily.day, today);
    }

    #[test]
    fn lines_are_read_back_from_the_file_format() {
        let l = LogLine::parse(
            "2026-12-02T03:16:10.123456Z  WARN codex_vault::serve: no key account=\"a\"",
        )
        .unwrap();
        assert_eq!(l.level, "WARN");
        assert_eq!(l.at, "2026-12-02T03:16:10.123456Z");
        assert_eq!(l.text, "codex_vault::serve: no key account=\"a\"");
        assert!(l.is_problem());
        assert!(LogLine::parse("  continuation of a message").is_none());
        assert!(LogLine::parse("2026-12-02T03:16:10.123456Z NOTE x").is_none());
    }

    #[test]
    fn only_the_newest_problems_are_kept_across_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = log_dir(tmp.path());
        std::fs::create_dir_all(&dir).unwrap();
        let line = |i: usize, level: &str| {
            format!("2026-12-0{}T00:00:00.000000Z {level} t: n{i}\n", 1 + i / 40)
        };
        let mut day1 = String::new();
        let mut day2 = String::new();
        for i in 0..80 {
            let text = line(i, if i % 2 == 0 { "WARN" } else { "INFO" });
            if i < 40 {
                day1.push_str(&text)
            } else {
                day2.push_str(&text)
            }
        }
        std::fs::write(dir.join("codex-vault.log.2026-12-01"), day1).unwrap();
        std::fs::write(dir.join("codex-vault.log.2026-12-02"), day2).unwrap();
        let recent = recent_in_files(tmp.path(), 30);
        assert_eq!(recent.len(), 30);
        assert_eq!(recent[0].text, "t: n20", "oldest kept first");
        assert_eq!(recent[29].text, "t: n78");
    }

    #[test]
    fn a_tail_starts_at_a_line_boundary() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, "first line\nsecond\nthird\n").unwrap();
        assert_eq!(read_tail(&p, 9).unwrap(), "third\n");
        assert_eq!(read_tail(&p, 1000).unwrap(), "first line\nsecond\nthird\n");
    }

    #[test]
    fn pages_go_back_from_the_end_filter_and_follow() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = log_dir(tmp.path());
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("codex-vault.log.2026-12-02");
        let mut text = String::new();
        for i in 0..1000 {
            let level = if i % 10 == 0 { "WARN" } else { "INFO" };
            text.push_str(&format!(
                "2026-12-02T00:00:00.000000Z  {level} t: line {i}\n"
            ));
        }
        std::fs::write(&path, &text).unwrap();
        let q = |f: fn(&mut LogQuery)| {
            let mut q = LogQuery {
                limit: Some(50),
                ..Default::default()
            };
            f(&mut q);
            page(tmp.path(), &q).unwrap()
        };
        let last = q(|_| {});
        assert_eq!(last.lines.len(), 50);
        assert_eq!(last.lines[49].text, "t: line 999");
        assert_eq!(last.lines[0].text, "t: line 950");
        assert_eq!(last.end, text.len() as u64);
        let before = last.start;
        let prev = page(
            tmp.path(),
            &LogQuery {
                limit: Some(50),
                before: Some(before),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            prev.lines[49].text, "t: line 949",
            "the page before, no overlap"
        );
        let warns = q(|q| q.level = Some("WARN".into()));
        assert!(warns.lines.iter().all(|l| l.level == "WARN"));
        assert_eq!(warns.lines[49].text, "t: line 990");
        let found = q(|q| q.search = Some("LINE 77".into()));
        let texts: Vec<&str> = found.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.len(), 11, "77 and 770..=779: {texts:?}");
        // Following: only lines written after `end`, whole ones.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let whole = b"2026-12-02T00:00:01.000000Z ERROR t: new\n";
        f.write_all(whole).unwrap();
        f.write_all(b"2026-12-02T00:00:01.0").unwrap();
        let next = page(
            tmp.path(),
            &LogQuery {
                after: Some(last.end),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(next.lines.len(), 1, "{:?}", next.lines);
        assert_eq!(next.lines[0].text, "t: new");
        assert_eq!(
            next.end,
            last.end + whole.len() as u64,
            "up to the last whole line"
        );
        assert!(page(&tmp.path().join("none"), &LogQuery::default())
            .unwrap()
            .file
            .is_none());
    }
}
