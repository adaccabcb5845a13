//! Driver configuration: `ifdLogLevel` and `ifdDriverOptions` from the
//! bundle's Info.plist, `LIBCCID_ifdLogLevel` from the environment, parsed
//! once.

#![forbid(unsafe_code)]

use bitflags::bitflags;
use std::sync::OnceLock;

bitflags! {
    /// `ifdLogLevel` bits (libccid's values).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct LogLevel: u32 {
        /// Critical errors.
        const CRITICAL = 0x01;
        /// Informational messages.
        const INFO = 0x02;
        /// Every frame exchanged with the reader.
        const COMM = 0x04;
        /// Periodic presence polling.
        const PERIODIC = 0x08;
        const _ = !0;
    }
}

bitflags! {
    /// `ifdDriverOptions` bits (libccid's values).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DriverOptions: u32 {
        /// Allow IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE (raw Escape).
        const CCID_EXCHANGE_AUTHORIZED = 0x01;
        /// Put GemPC Twin / Key readers in APDU mode.
        const GEMPC_TWIN_KEY_APDU = 0x02;
        /// Accept readers whose firmware is on the bogus list.
        const USE_BOGUS_FIRMWARE = 0x04;
        /// Gemalto pinpads: disable the PIN retry-counter probe.
        const DISABLE_PIN_RETRIES = 0x40;
        const _ = !0;
    }
}

/// Power-on voltage order chosen by ifdDriverOptions bits 4-5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerVoltage {
    /// 5 V first (default).
    V5,
    /// 3 V first.
    V3,
    /// 1.8 V first.
    V1_8,
    /// Let the reader choose.
    Auto,
}

/// The driver's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Log level bits.
    pub log_level: LogLevel,
    /// Driver options.
    pub driver_options: DriverOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: LogLevel::CRITICAL | LogLevel::INFO,
            driver_options: DriverOptions::empty(),
        }
    }
}

impl Config {
    /// The voltage field of the driver options.
    pub fn power_voltage(&self) -> PowerVoltage {
        match (self.driver_options.bits() >> 4) & 0x03 {
            0 => PowerVoltage::V5,
            1 => PowerVoltage::V3,
            2 => PowerVoltage::V1_8,
            _ => PowerVoltage::Auto,
        }
    }
}

static GLOBAL: OnceLock<Config> = OnceLock::new();

/// The process-wide configuration, loaded on first use.
pub fn global() -> &'static Config {
    GLOBAL.get_or_init(Config::default)
}
