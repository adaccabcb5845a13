//! Logging, filtered first by libccid's `ifdLogLevel` bits (1 critical,
//! 2 info, 4 every frame (COMM), 8 periodic polling), then routed:
//!
//! * inside pcscd, through its `log_msg` / `log_xxd`, looked up in the host
//!   process at run time (no link-time dependency);
//! * elsewhere (tests, the simulator), to standard error in env_logger's
//!   manner when `RUST_LOG` is set (its filter applies too), else nowhere;
//! * or to a [`Sink`] installed with [`set_sink`].
//!
//! `log` records map to pcscd priorities: target `ccid::comm` (COMM bit)
//! and `ccid::periodic` (PERIODIC bit) to PCSC_LOG_DEBUG, debug and trace
//! records to PCSC_LOG_DEBUG under the COMM bit, info to PCSC_LOG_INFO
//! (INFO bit), warnings to PCSC_LOG_ERROR and errors to PCSC_LOG_CRITICAL
//! (CRITICAL bit). Lines read `file.rs:line:module() text`, as libccid's
//! `file.c:line:function() text`.
//!
//! Frames are dumped as libccid 1.8 does (`-> lun: 0, 62 00 ...`, each byte
//! `%02X ` with a trailing space), so tools that read those logs read ours.

use crate::config::LogLevel;
use std::ffi::{c_char, c_int, CString};
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// The log level bits in force (libccid's default 0x0003 until [`init`]).
static LEVEL: AtomicU32 = AtomicU32::new(0x03);

/// Whether our logger is the one `log` uses (then the `log` maximum level
/// follows the bits).
static OURS: AtomicBool = AtomicBool::new(false);

/// pcscd's priorities (`debuglog.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// PCSC_LOG_DEBUG.
    Debug = 0,
    /// PCSC_LOG_INFO.
    Info = 1,
    /// PCSC_LOG_ERROR.
    Error = 2,
    /// PCSC_LOG_CRITICAL.
    Critical = 3,
}

/// Receives every line that passed the level filter, in place of pcscd or
/// standard error (see [`set_sink`]).
pub type Sink = dyn Fn(Priority, &str) + Send + Sync;

static SINK: RwLock<Option<Arc<Sink>>> = RwLock::new(None);

/// Sends every line that passes the level filter to `sink` instead of
/// pcscd or standard error; `None` restores the normal route. Frame dumps
/// arrive formatted (`-> lun: 0, 62 00 ...`).
pub fn set_sink(sink: Option<Arc<Sink>>) {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = sink;
}

fn sink() -> Option<Arc<Sink>> {
    SINK.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// pcscd's `void log_msg(const int priority, const char *fmt, ...)`.
type LogMsg = unsafe extern "C" fn(c_int, *const c_char, ...);
/// pcscd's `void log_xxd(const int priority, const char *msg,
/// const unsigned char *buffer, const int size)`.
type LogXxd = unsafe extern "C" fn(c_int, *const c_char, *const u8, c_int);

/// Where lines go when no sink is installed.
enum Output {
    /// pcscd's functions.
    Host {
        log_msg: LogMsg,
        log_xxd: Option<LogXxd>,
    },
    /// Standard error, filtered by `RUST_LOG`.
    Stderr(env_logger::Logger),
    /// Nowhere.
    Silent,
}

/// Looks `name` up in the process (the executable and every loaded
/// object); null when absent.
fn lookup(name: &std::ffi::CStr) -> *mut libc::c_void {
    // SAFETY: dlsym only reads the NUL-terminated name and returns an
    // address or null; RTLD_DEFAULT searches the global scope.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn output() -> &'static Output {
    static OUTPUT: OnceLock<Output> = OnceLock::new();
    OUTPUT.get_or_init(|| {
        let msg = lookup(c"log_msg");
        if !msg.is_null() {
            let xxd = lookup(c"log_xxd");
            return Output::Host {
                // SAFETY: a non-null `log_msg` in the process hosting this
                // driver is pcscd's, whose C signature is `LogMsg`.
                log_msg: unsafe { std::mem::transmute::<*mut libc::c_void, LogMsg>(msg) },
                log_xxd: (!xxd.is_null()).then(|| {
                    // SAFETY: pcscd's `log_xxd`, whose C signature is
                    // `LogXxd`.
                    unsafe { std::mem::transmute::<*mut libc::c_void, LogXxd>(xxd) }
                }),
            };
        }
        if std::env::var_os("RUST_LOG").is_some() {
            let logger = env_logger::Builder::from_env("RUST_LOG")
                .format(|buf, r| {
                    use std::io::Write;
                    writeln!(buf, "[{} {}] {}", r.level(), r.target(), r.args())
                })
                .build();
            return Output::Stderr(logger);
        }
        Output::Silent
    })
}

/// Sets the log level bits in force.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level.bits(), Ordering::Relaxed);
    if OURS.load(Ordering::Relaxed) {
        log::set_max_level(max_level_for(level));
    }
}

/// The log level bits in force.
pub fn level() -> LogLevel {
    LogLevel::from_bits_retain(LEVEL.load(Ordering::Relaxed))
}

/// The most verbose `log` level any record could pass `bits` with.
pub fn max_level_for(bits: LogLevel) -> log::LevelFilter {
    if bits.intersects(LogLevel::COMM | LogLevel::PERIODIC) {
        log::LevelFilter::Trace
    } else if bits.contains(LogLevel::INFO) {
        log::LevelFilter::Info
    } else if bits.contains(LogLevel::CRITICAL) {
        log::LevelFilter::Warn
    } else {
        log::LevelFilter::Off
    }
}

/// Formats bytes the way libccid's COMM dumps do: `"%02X "` per byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        let _ = write!(s, "{b:02X} ");
    }
    s
}

/// Formats bytes like [`hex`], with the bytes at the indexes of `masked`
/// (PIN blocks, keys) shown as `** `. Ranges may overlap or run past the
/// end.
pub fn redact(bytes: &[u8], masked: &[Range<usize>]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if masked.iter().any(|r| r.contains(&i)) {
            s.push_str("** ");
        } else {
            let _ = write!(s, "{b:02X} ");
        }
    }
    s
}

/// The prefix of a frame dump: `-> lun: 0, ` (lun in hex, unpadded).
pub fn comm_prefix(direction: &str, lun: u64) -> String {
    format!("{direction} lun: {lun:X}, ")
}

/// A C string of `text`, with NUL bytes (which would cut it) shown as
/// spaces.
fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// Sends one line that passed filtering to the sink, pcscd, stderr or
/// nowhere. `level` and `target` serve the `RUST_LOG` filter.
fn route(priority: Priority, level: log::Level, target: &str, text: &str) {
    if let Some(s) = sink() {
        s(priority, text);
        return;
    }
    match output() {
        Output::Host { log_msg, .. } => {
            let c = c_text(text);
            // SAFETY: the format is the literal "%s" and its one argument a
            // NUL-terminated string that outlives the call, as log_msg's
            // variadic contract requires; text never becomes the format.
            unsafe { log_msg(priority as c_int, c"%s".as_ptr(), c.as_ptr()) };
        }
        Output::Stderr(logger) => log::Log::log(
            logger,
            &log::Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("{text}"))
                .build(),
        ),
        Output::Silent => {}
    }
}

/// Sends one line to pcscd at `priority` (or to the sink or stderr),
/// whatever the level bits.
pub fn emit(priority: Priority, text: &str) {
    let level = match priority {
        Priority::Debug => log::Level::Debug,
        Priority::Info => log::Level::Info,
        Priority::Error => log::Level::Warn,
        Priority::Critical => log::Level::Error,
    };
    route(priority, level, "ccid", text);
}

/// Logs a frame at COMM level: `-> lun: 0, 62 00 ...` (`direction` is
/// `->` for bytes sent, `<-` for bytes received), through pcscd's
/// `log_xxd` when it is there.
pub fn comm(direction: &str, lun: u64, bytes: &[u8]) {
    if !level().contains(LogLevel::COMM) {
        return;
    }
    let prefix = comm_prefix(direction, lun);
    if sink().is_none() {
        if let Output::Host {
            log_xxd: Some(xxd), ..
        } = output()
        {
            if let Ok(len) = c_int::try_from(bytes.len()) {
                let c = c_text(&prefix);
                // SAFETY: a NUL-terminated prefix and `len` readable bytes
                // at `bytes`, both valid for the call; log_xxd only reads.
                unsafe { xxd(Priority::Debug as c_int, c.as_ptr(), bytes.as_ptr(), len) };
                return;
            }
        }
    }
    route(
        Priority::Debug,
        log::Level::Debug,
        "ccid::comm",
        &format!("{prefix}{}", hex(bytes)),
    );
}

/// Logs a frame at COMM level like [`comm`], with the bytes at the indexes
/// of `masked` shown as `**` (see [`redact`]).
pub fn comm_masked(direction: &str, lun: u64, bytes: &[u8], masked: &[Range<usize>]) {
    if !level().contains(LogLevel::COMM) {
        return;
    }
    let text = format!("{}{}", comm_prefix(direction, lun), redact(bytes, masked));
    route(Priority::Debug, log::Level::Debug, "ccid::comm", &text);
}

/// The pcscd priority of a record of `level` for `target` under `bits`;
/// `None` when the bits filter it out.
pub fn allowed(bits: LogLevel, level: log::Level, target: &str) -> Option<Priority> {
    let under = |prefix: &str| {
        target
            .strip_prefix(prefix)
            .is_some_and(|r| r.is_empty() || r.starts_with("::"))
    };
    if under("ccid::comm") {
        return bits.contains(LogLevel::COMM).then_some(Priority::Debug);
    }
    if under("ccid::periodic") {
        return bits.contains(LogLevel::PERIODIC).then_some(Priority::Debug);
    }
    match level {
        log::Level::Error => bits
            .contains(LogLevel::CRITICAL)
            .then_some(Priority::Critical),
        log::Level::Warn => bits.contains(LogLevel::CRITICAL).then_some(Priority::Error),
        log::Level::Info => bits.contains(LogLevel::INFO).then_some(Priority::Info),
        log::Level::Debug | log::Level::Trace => {
            bits.contains(LogLevel::COMM).then_some(Priority::Debug)
        }
    }
}

/// The text of a record: `file.rs:line:module() message`, the file
/// relative to the crate's `src/` (`reader/slot.rs`).
pub fn format_record(r: &log::Record<'_>) -> String {
    let file = r
        .file()
        .map(|f| match f.rfind("/src/") {
            Some(i) => f.get(i + 5..).unwrap_or(f),
            None => f.strip_prefix("src/").unwrap_or(f),
        })
        .unwrap_or("ccid");
    let module = r
        .module_path()
        .and_then(|m| m.rsplit("::").next())
        .unwrap_or("ccid");
    format!("{file}:{}:{module}() {}", r.line().unwrap_or(0), r.args())
}

/// The `log` front end: filters by the level bits, formats, routes.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        allowed(level(), m.level(), m.target()).is_some()
    }

    fn log(&self, r: &log::Record<'_>) {
        if let Some(prio) = allowed(level(), r.level(), r.target()) {
            route(prio, r.level(), r.target(), &format_record(r));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger (unless another one is installed already) and
/// applies the configured level ([`crate::config::global`]). Idempotent.
pub fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if log::set_logger(&LOGGER).is_ok() {
            OURS.store(true, Ordering::Relaxed);
            log::set_max_level(max_level_for(level()));
        }
        set_level(crate::config::global().log_level);
    });
}

#[cfg(test)]
// One masked range per frame is the common case, not a mistaken `Vec`.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn hex_like_libccid() {
        assert_eq!(hex(&[0x62, 0, 0xAB]), "62 00 AB ");
        assert_eq!(hex(&[]), "");
        assert_eq!(comm_prefix("->", 0), "-> lun: 0, ");
        assert_eq!(comm_prefix("<-", 0x10001), "<- lun: 10001, ");
    }

    #[test]
    fn redaction() {
        let b = [0x6F, 7, 0, 0, 0, 0, 1, 0x12, 0x34, 0x56];
        assert_eq!(redact(&b, &[]), hex(&b));
        assert_eq!(redact(&b, &[7..9]), "6F 07 00 00 00 00 01 ** ** 56 ");
        assert_eq!(
            redact(&b, &[8..100, 0..1]),
            "** 07 00 00 00 00 01 12 ** ** "
        );
        assert_eq!(redact(&[], &[0..4]), "");
    }

    #[test]
    fn filtering_by_bits() {
        let default = LogLevel::CRITICAL | LogLevel::INFO;
        let cases = [
            (
                default,
                log::Level::Error,
                "ccid::reader",
                Some(Priority::Critical),
            ),
            (
                default,
                log::Level::Warn,
                "ccid::reader",
                Some(Priority::Error),
            ),
            (
                default,
                log::Level::Info,
                "ccid::reader",
                Some(Priority::Info),
            ),
            (default, log::Level::Debug, "ccid::reader", None),
            (default, log::Level::Debug, "ccid::comm", None),
            (default, log::Level::Info, "ccid::periodic", None),
            (
                LogLevel::COMM,
                log::Level::Debug,
                "ccid::comm",
                Some(Priority::Debug),
            ),
            (
                LogLevel::COMM,
                log::Level::Info,
                "ccid::comm",
                Some(Priority::Debug),
            ),
            (
                LogLevel::COMM,
                log::Level::Trace,
                "ccid",
                Some(Priority::Debug),
            ),
            (LogLevel::COMM, log::Level::Error, "ccid::reader", None),
            (LogLevel::COMM, log::Level::Debug, "ccid::periodic", None),
            (
                LogLevel::COMM,
                log::Level::Debug,
                "ccid::communicate",
                Some(Priority::Debug),
            ),
            (
                LogLevel::PERIODIC,
                log::Level::Debug,
                "ccid::periodic",
                Some(Priority::Debug),
            ),
            (
                LogLevel::PERIODIC,
                log::Level::Debug,
                "ccid::periodic::x",
                Some(Priority::Debug),
            ),
            (LogLevel::PERIODIC, log::Level::Debug, "ccid::comm", None),
            (LogLevel::INFO, log::Level::Error, "ccid", None),
            (LogLevel::empty(), log::Level::Error, "ccid", None),
        ];
        for (bits, lvl, target, want) in cases {
            assert_eq!(allowed(bits, lvl, target), want, "{bits:?} {lvl} {target}");
        }
        assert_eq!(max_level_for(default), log::LevelFilter::Info);
        assert_eq!(max_level_for(LogLevel::CRITICAL), log::LevelFilter::Warn);
        assert_eq!(max_level_for(LogLevel::PERIODIC), log::LevelFilter::Trace);
        assert_eq!(max_level_for(LogLevel::empty()), log::LevelFilter::Off);
    }

    #[test]
    fn records_read_like_libccid() {
        let text = format_record(
            &log::Record::builder()
                .args(format_args!("action: PowerUp (lun: {:X})", 0x10000))
                .level(log::Level::Info)
                .target("ccid::reader::slot")
                .file(Some("src/reader/slot.rs"))
                .line(Some(123))
                .module_path(Some("ccid::reader::slot"))
                .build(),
        );
        assert_eq!(
            text,
            "reader/slot.rs:123:slot() action: PowerUp (lun: 10000)"
        );
        let dep = format_record(
            &log::Record::builder()
                .args(format_args!("x"))
                .file(Some("/home/u/.cargo/registry/src/x/rusb-0.9.4/src/lib.rs"))
                .line(Some(1))
                .module_path(Some("rusb"))
                .build(),
        );
        assert_eq!(dep, "lib.rs:1:rusb() x");
        let bare = format_record(&log::Record::builder().args(format_args!("x")).build());
        assert_eq!(bare, "ccid:0:ccid() x");
    }

    /// Lines this thread sent to the sink.
    type Lines = Arc<Mutex<Vec<(Priority, String)>>>;

    /// Serialises the tests that change the global level and sink, and
    /// captures only the lines of the calling thread (other tests log
    /// concurrently).
    fn capture(bits: LogLevel, f: impl FnOnce()) -> Vec<(Priority, String)> {
        static SERIAL: Mutex<()> = Mutex::new(());
        let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Lines = Arc::default();
        let me = std::thread::current().id();
        let l = lines.clone();
        set_sink(Some(Arc::new(move |p: Priority, t: &str| {
            if std::thread::current().id() == me {
                l.lock().unwrap().push((p, t.to_string()));
            }
        })));
        let before = level();
        set_level(bits);
        f();
        set_level(before);
        set_sink(None);
        let out = lines.lock().unwrap().clone();
        out
    }

    fn record(level: log::Level, target: &str, line: u32, msg: &str) {
        log::Log::log(
            &LOGGER,
            &log::Record::builder()
                .args(format_args!("{msg}"))
                .level(level)
                .target(target)
                .file(Some("src/reader/exchange.rs"))
                .line(Some(line))
                .module_path(Some("ccid::reader::exchange"))
                .build(),
        );
    }

    #[test]
    fn frames_and_records_reach_the_sink_filtered() {
        let frame = [0x62, 0, 0, 0, 0, 0, 1, 1, 0, 0];
        let got = capture(LogLevel::CRITICAL | LogLevel::COMM, || {
            comm("->", 0, &frame);
            comm("<-", 0x20001, &[0x80, 0]);
            comm_masked("->", 1, &[0x6F, 0x31, 0x32], &[1..3]);
            record(log::Level::Error, "ccid::reader", 10, "bad");
            record(log::Level::Info, "ccid::reader", 11, "hidden");
            record(
                log::Level::Debug,
                "ccid::comm",
                12,
                "PPS: Sending request: FF 10 11 FE ",
            );
            record(log::Level::Debug, "ccid::periodic", 13, "hidden");
            emit(Priority::Info, "always");
        });
        assert_eq!(
            got,
            vec![
                (
                    Priority::Debug,
                    "-> lun: 0, 62 00 00 00 00 00 01 01 00 00 ".into()
                ),
                (Priority::Debug, "<- lun: 20001, 80 00 ".into()),
                (Priority::Debug, "-> lun: 1, 6F ** ** ".into()),
                (
                    Priority::Critical,
                    "reader/exchange.rs:10:exchange() bad".into()
                ),
                (
                    Priority::Debug,
                    "reader/exchange.rs:12:exchange() PPS: Sending request: FF 10 11 FE ".into()
                ),
                (Priority::Info, "always".into()),
            ]
        );
        let got = capture(LogLevel::INFO | LogLevel::PERIODIC, || {
            comm("->", 0, &frame);
            comm_masked("->", 0, &frame, &[]);
            record(log::Level::Warn, "ccid::reader", 20, "hidden");
            record(log::Level::Info, "ccid::reader", 21, "shown");
            record(log::Level::Trace, "ccid::periodic", 22, "poll");
        });
        assert_eq!(
            got,
            vec![
                (
                    Priority::Info,
                    "reader/exchange.rs:21:exchange() shown".into()
                ),
                (
                    Priority::Debug,
                    "reader/exchange.rs:22:exchange() poll".into()
                ),
            ]
        );
    }
}
