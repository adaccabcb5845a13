//! Logging: through pcscd's `log_msg` / `log_xxd` when the host process
//! provides them, else through the `log` crate; filtered by libccid's
//! `ifdLogLevel` bits.

use crate::config::LogLevel;
use std::sync::atomic::{AtomicU32, Ordering};

static LEVEL: AtomicU32 = AtomicU32::new(0x03);

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

/// Logs a frame at COMM level: `-> lun: 0, 62 00 ...`.
pub fn comm(direction: &str, lun: u64, bytes: &[u8]) {
    if level().contains(LogLevel::COMM) {
        log::debug!(target: "ccid::comm", "{direction} lun: {lun:X}, {}", hex(bytes));
    }
}

/// Applies the configured log level (idempotent).
pub fn init() {
    set_level(crate::config::global().log_level);
}
