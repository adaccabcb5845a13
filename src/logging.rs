//! Logging: through pcscd's `log_msg` / `log_xxd` when the host process
//! provides them (looked up at run time, no link-time dependency), else to
//! standard error; filtered first by libccid's `ifdLogLevel` bits:
//! 1 critical, 2 info, 4 every frame (COMM), 8 periodic polling.
//!
//! Frames are dumped as libccid 1.8 does (`-> lun: 0, 62 00 ...`), so logs
//! stay readable with the tools that know that format.

use crate::config::LogLevel;
use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

static LEVEL: AtomicU32 = AtomicU32::new(0x03);

/// pcscd's priorities (`debuglog.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

type LogMsg = unsafe extern "C" fn(c_int, *const c_char, ...);
type LogXxd = unsafe extern "C" fn(c_int, *const c_char, *const u8, c_int);

struct Host {
    log_msg: Option<LogMsg>,
    log_xxd: Option<LogXxd>,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names only
        // looks symbols up; a null result means absent.
        let msg = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"log_msg".as_ptr()) };
        // SAFETY: as above.
        let xxd = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"log_xxd".as_ptr()) };
        Host {
            log_msg: (!msg.is_null()).then(|| {
                // SAFETY: pcscd's `void log_msg(const int priority, const
                // char *fmt, ...)` has this C signature.
                unsafe { std::mem::transmute::<*mut libc::c_void, LogMsg>(msg) }
            }),
            log_xxd: (!xxd.is_null()).then(|| {
                // SAFETY: pcscd's `void log_xxd(const int priority, const
                // char *msg, const unsigned char *buffer, const int size)`.
                unsafe { std::mem::transmute::<*mut libc::c_void, LogXxd>(xxd) }
            }),
        }
    })
}

/// Sets the active log level bits.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level.bits(), Ordering::Relaxed);
}

/// The active log level bits.
pub fn level() -> LogLevel {
    LogLevel::from_bits_retain(LEVEL.load(Ordering::Relaxed))
}

/// Formats bytes the way libccid's COMM dumps do: `"%02X "` per byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        use std::fmt::Write;
        let _ = write!(s, "{b:02X} ");
    }
    s
}

/// Sends one line to pcscd, or to standard error without pcscd.
pub fn emit(priority: Priority, text: &str) {
    let h = host();
    if let Some(f) = h.log_msg {
        let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
        // SAFETY: "%s" with one NUL-terminated string argument matches the
        // variadic contract; user data never becomes the format.
        unsafe { f(priority as c_int, c"%s".as_ptr(), c.as_ptr()) };
    } else {
        eprintln!("{text}");
    }
}

/// Logs a frame at COMM level: `-> lun: 0, 62 00 ...`.
pub fn comm(direction: &str, lun: u64, bytes: &[u8]) {
    if !level().contains(LogLevel::COMM) {
        return;
    }
    let prefix = format!("{direction} lun: {lun:X}, ");
    let h = host();
    if let (Some(f), Ok(len)) = (h.log_xxd, c_int::try_from(bytes.len())) {
        let c = CString::new(prefix).unwrap_or_default();
        // SAFETY: a NUL-terminated prefix and `len` readable bytes.
        unsafe { f(Priority::Debug as c_int, c.as_ptr(), bytes.as_ptr(), len) };
    } else {
        emit(Priority::Debug, &format!("{prefix}{}", hex(bytes)));
    }
}

/// Routes `log` records by libccid's bits: target `ccid::comm` needs COMM,
/// `ccid::periodic` needs PERIODIC, info and debug need INFO, warnings and
/// errors need CRITICAL.
struct Logger;

fn allowed(level: log::Level, target: &str) -> Option<Priority> {
    let bits = self::level();
    if target.starts_with("ccid::comm") {
        return bits.contains(LogLevel::COMM).then_some(Priority::Debug);
    }
    if target.starts_with("ccid::periodic") {
        return bits.contains(LogLevel::PERIODIC).then_some(Priority::Debug);
    }
    match level {
        log::Level::Error => bits.contains(LogLevel::CRITICAL).then_some(Priority::Error),
        log::Level::Warn => bits.contains(LogLevel::CRITICAL).then_some(Priority::Error),
        log::Level::Info => bits.contains(LogLevel::INFO).then_some(Priority::Info),
        log::Level::Debug | log::Level::Trace => {
            bits.contains(LogLevel::COMM).then_some(Priority::Debug)
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        allowed(m.level(), m.target()).is_some()
    }

    fn log(&self, r: &log::Record<'_>) {
        let Some(prio) = allowed(r.level(), r.target()) else {
            return;
        };
        let file = r
            .file()
            .and_then(|f| f.rsplit('/').next())
            .unwrap_or("ccid");
        let line = r.line().unwrap_or(0);
        let module = r
            .module_path()
            .and_then(|m| m.rsplit("::").next())
            .unwrap_or("");
        emit(prio, &format!("{file}:{line}:{module}() {}", r.args()));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger (when no other is installed) and applies the
/// configured level. Idempotent.
pub fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
        set_level(crate::config::global().log_level);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_like_libccid() {
        assert_eq!(hex(&[0x62, 0, 0xAB]), "62 00 AB ");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn filtering_by_bits() {
        set_level(LogLevel::CRITICAL | LogLevel::INFO);
        assert_eq!(
            allowed(log::Level::Error, "ccid::reader"),
            Some(Priority::Error)
        );
        assert_eq!(
            allowed(log::Level::Info, "ccid::reader"),
            Some(Priority::Info)
        );
        assert_eq!(allowed(log::Level::Debug, "ccid::comm"), None);
        assert_eq!(allowed(log::Level::Debug, "ccid::periodic"), None);
        set_level(LogLevel::COMM);
        assert_eq!(
            allowed(log::Level::Debug, "ccid::comm"),
            Some(Priority::Debug)
        );
        assert_eq!(allowed(log::Level::Error, "ccid::reader"), None);
        set_level(LogLevel::CRITICAL | LogLevel::INFO);
    }
}
