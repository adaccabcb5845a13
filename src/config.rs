//! Driver configuration: `ifdLogLevel`, `ifdDriverOptions`, the reader
//! allow-list (`ifdVendorID` / `ifdProductID` / `ifdFriendlyName`) and
//! `ifdTimeoutCap` from the bundle's Info.plist, and `LIBCCID_ifdLogLevel`
//! from the environment; parsed once.
//!
//! The Info.plist is looked for next to the loaded library first
//! (`Contents/Linux/libccid.so` → `Contents/Info.plist`), so a bundle
//! installed anywhere works; then in `$PCSCLITE_HP_DROPDIR` and pcscd's
//! default drop directory.

#![forbid(unsafe_code)]

use bitflags::bitflags;
use std::path::{Path, PathBuf};
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

/// Default hard cap on any single wait (ms).
pub const DEFAULT_TIMEOUT_CAP_MS: u64 = 600_000;

/// pcscd's default drop directory on Debian.
pub const DEFAULT_DROPDIR: &str = "/usr/lib/pcsc/drivers";

/// A reader of the Info.plist allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedReader {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// Friendly name.
    pub name: String,
}

/// The driver's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Log level bits.
    pub log_level: LogLevel,
    /// Driver options.
    pub driver_options: DriverOptions,
    /// Hard cap on any single wait, ms.
    pub timeout_cap_ms: u64,
    /// The allow-list; `None` when no Info.plist was found (then any CCID
    /// interface may be opened).
    pub readers: Option<Vec<ListedReader>>,
    /// Where the configuration came from.
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: LogLevel::CRITICAL | LogLevel::INFO,
            driver_options: DriverOptions::empty(),
            timeout_cap_ms: DEFAULT_TIMEOUT_CAP_MS,
            readers: None,
            source: None,
        }
    }
}

/// Parses a number like C's `strtoul(s, NULL, 0)`: `0x` hex, leading `0`
/// octal, else decimal.
pub fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// A value of the property list: a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlistValue {
    /// `<string>`.
    String(String),
    /// `<array>` of `<string>`.
    Array(Vec<String>),
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Reads the `<key>` / `<string>` / `<array>` pairs of an Info.plist. Other
/// elements are skipped; malformed text gives an error with its line.
pub fn parse_plist(text: &str) -> Result<Vec<(String, PlistValue)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    let line_of = |r: &str| text.len().saturating_sub(r.len());
    let line = |off: usize| text.get(..off).map_or(0, |t| t.matches('\n').count()) + 1;
    let mut pending: Option<String> = None;
    let mut array: Option<Vec<String>> = None;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        let Some(end) = rest.find('>') else {
            return Err(format!("line {}: unterminated tag", line(line_of(rest))));
        };
        let tag = &rest[1..end];
        let after = &rest[end + 1..];
        let content_of = |name: &str| -> Result<(String, &str), String> {
            let close = format!("</{name}>");
            let i = after
                .find(&close)
                .ok_or_else(|| format!("line {}: <{name}> without {close}", line(line_of(rest))))?;
            Ok((unescape(&after[..i]), &after[i + close.len()..]))
        };
        match tag {
            "key" => {
                let (k, r) = content_of("key")?;
                pending = Some(k.trim().to_string());
                rest = r;
            }
            "string" => {
                let (v, r) = content_of("string")?;
                if let Some(a) = array.as_mut() {
                    a.push(v);
                } else if let Some(k) = pending.take() {
                    out.push((k, PlistValue::String(v)));
                }
                rest = r;
            }
            "string/" => {
                if let Some(a) = array.as_mut() {
                    a.push(String::new());
                } else if let Some(k) = pending.take() {
                    out.push((k, PlistValue::String(String::new())));
                }
                rest = after;
            }
            "array" => {
                array = Some(Vec::new());
                rest = after;
            }
            "/array" => {
                let a = array.take().ok_or_else(|| {
                    format!("line {}: </array> without <array>", line(line_of(rest)))
                })?;
                if let Some(k) = pending.take() {
                    out.push((k, PlistValue::Array(a)));
                }
                rest = after;
            }
            t if t.starts_with("!--") => {
                let i = rest
                    .find("-->")
                    .ok_or_else(|| format!("line {}: unterminated comment", line(line_of(rest))))?;
                rest = &rest[i + 3..];
            }
            _ => rest = after,
        }
    }
    Ok(out)
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

    /// The hard cap on waits, ms.
    pub fn timeout_cap_ms(&self) -> u64 {
        self.timeout_cap_ms
    }

    /// Whether the allow-list accepts `vid:pid` (everything without one).
    pub fn is_listed(&self, vid: u16, pid: u16) -> bool {
        match &self.readers {
            None => true,
            Some(r) => r.iter().any(|e| e.vendor_id == vid && e.product_id == pid),
        }
    }

    /// The VID/PID of the reader called `name` in the allow-list.
    pub fn ids_for_name(&self, name: &str) -> Option<(u16, u16)> {
        self.readers
            .as_ref()?
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.vendor_id, e.product_id))
    }

    /// Builds the configuration from Info.plist text and an environment.
    /// Returns it with warnings about values it could not use.
    pub fn from_plist(text: &str, env: &dyn Fn(&str) -> Option<String>) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut warnings = Vec::new();
        let items = match parse_plist(text) {
            Ok(i) => i,
            Err(e) => {
                warnings.push(format!("Info.plist: {e}"));
                Vec::new()
            }
        };
        let get_str = |k: &str| {
            items
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| match v {
                    PlistValue::String(s) => Some(s.clone()),
                    PlistValue::Array(_) => None,
                })
        };
        let get_arr = |k: &str| {
            items
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| match v {
                    PlistValue::Array(a) => Some(a.clone()),
                    PlistValue::String(s) => Some(vec![s.clone()]),
                })
        };
        let number = |k: &str, warnings: &mut Vec<String>| -> Option<u64> {
            let s = get_str(k)?;
            let n = parse_number(&s);
            if n.is_none() {
                warnings.push(format!("Info.plist: {k} {s:?} is not a number"));
            }
            n
        };
        if let Some(v) = number("ifdLogLevel", &mut warnings) {
            c.log_level = LogLevel::from_bits_retain(v as u32);
        }
        if let Some(v) = number("ifdDriverOptions", &mut warnings) {
            c.driver_options = DriverOptions::from_bits_retain(v as u32);
        }
        if let Some(v) = number("ifdTimeoutCap", &mut warnings) {
            c.timeout_cap_ms = v.max(1000);
        }
        if let (Some(v), Some(p)) = (get_arr("ifdVendorID"), get_arr("ifdProductID")) {
            let names = get_arr("ifdFriendlyName").unwrap_or_default();
            if v.len() != p.len() {
                warnings.push("Info.plist: ifdVendorID and ifdProductID differ in length".into());
            }
            let mut readers = Vec::new();
            for (i, (vs, ps)) in v.iter().zip(p.iter()).enumerate() {
                match (parse_number(vs), parse_number(ps)) {
                    (Some(vid), Some(pid)) if vid <= 0xFFFF && pid <= 0xFFFF => {
                        readers.push(ListedReader {
                            vendor_id: vid as u16,
                            product_id: pid as u16,
                            name: names.get(i).cloned().unwrap_or_default(),
                        })
                    }
                    _ => warnings.push(format!("Info.plist: reader {i}: bad ID {vs}/{ps}")),
                }
            }
            c.readers = Some(readers);
        }
        for var in ["LIBCCID_ifdLogLevel", "CCID_ifdLogLevel"] {
            if let Some(s) = env(var) {
                match parse_number(&s) {
                    Some(v) => c.log_level = LogLevel::from_bits_retain(v as u32),
                    None => warnings.push(format!("{var} {s:?} is not a number")),
                }
                break;
            }
        }
        if let Some(s) = env("CCID_TIMEOUT_CAP_MS") {
            match parse_number(&s) {
                Some(v) => c.timeout_cap_ms = v.max(1000),
                None => warnings.push(format!("CCID_TIMEOUT_CAP_MS {s:?} is not a number")),
            }
        }
        (c, warnings)
    }

    /// Loads the configuration of this process: the first Info.plist found
    /// among `candidates`, plus the environment.
    pub fn load_from(
        candidates: &[PathBuf],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Config, Vec<String>) {
        for p in candidates {
            if let Ok(text) = std::fs::read_to_string(p) {
                let (mut c, w) = Config::from_plist(&text, env);
                c.source = Some(p.clone());
                return (c, w);
            }
        }
        Config::from_plist("", env)
    }
}

/// Where the Info.plist may be: next to the library, then the drop
/// directories.
pub fn plist_candidates(
    library: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(contents) = library.and_then(|l| l.parent()).and_then(|d| d.parent()) {
        v.push(contents.join("Info.plist"));
    }
    if let Some(d) = env("PCSCLITE_HP_DROPDIR") {
        v.push(Path::new(&d).join("ifd-ccid.bundle/Contents/Info.plist"));
    }
    v.push(Path::new(DEFAULT_DROPDIR).join("ifd-ccid.bundle/Contents/Info.plist"));
    v
}

static GLOBAL: OnceLock<Config> = OnceLock::new();

/// The process-wide configuration, loaded on first use.
pub fn global() -> &'static Config {
    GLOBAL.get_or_init(|| {
        let env = |k: &str| std::env::var(k).ok();
        let lib = crate::ffi::library_path();
        let (mut c, warnings) = Config::load_from(&plist_candidates(lib.as_deref(), &env), &env);
        if c.readers.is_none() {
            // No Info.plist: the compiled reader table is the allow-list.
            c.readers = Some(
                crate::readers::READERS
                    .iter()
                    .filter(|r| r.section != crate::readers::Section::Disabled)
                    .map(|r| ListedReader {
                        vendor_id: r.vendor_id,
                        product_id: r.product_id,
                        name: r.name.to_string(),
                    })
                    .collect(),
            );
        }
        for w in warnings {
            log::error!("{w}");
        }
        c
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0">
<dict>
	<key>ifdLogLevel</key>
	<string>0x0005</string>
	<!-- a comment with <key>ignored</key> -->
	<key>ifdDriverOptions</key>
	<string>0x0011</string>
	<key>ifdVendorID</key>
	<array>
		<string>0x08E6</string>
		<string>0x1050</string>
	</array>
	<key>ifdProductID</key>
	<array>
		<string>0x4433</string>
		<string>0x0407</string>
	</array>
	<key>ifdFriendlyName</key>
	<array>
		<string>Gemalto &amp; Co Reader</string>
		<string>Yubico YubiKey</string>
	</array>
</dict>
</plist>"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_levels_options_and_readers() {
        let (c, w) = Config::from_plist(PLIST, &no_env);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.log_level.bits(), 5);
        assert_eq!(c.driver_options.bits(), 0x11);
        assert_eq!(c.power_voltage(), PowerVoltage::V3);
        assert!(c.is_listed(0x08E6, 0x4433));
        assert!(!c.is_listed(0x08E6, 0x4434));
        assert_eq!(
            c.ids_for_name("Gemalto & Co Reader"),
            Some((0x08E6, 0x4433))
        );
    }

    #[test]
    fn environment_overrides_the_level() {
        let env = |k: &str| (k == "LIBCCID_ifdLogLevel").then(|| "15".to_string());
        let (c, _) = Config::from_plist(PLIST, &env);
        assert_eq!(c.log_level.bits(), 15);
        let env = |k: &str| (k == "LIBCCID_ifdLogLevel").then(|| "017".to_string());
        assert_eq!(Config::from_plist(PLIST, &env).0.log_level.bits(), 15);
        let env = |k: &str| (k == "LIBCCID_ifdLogLevel").then(|| "lots".to_string());
        let (c, w) = Config::from_plist(PLIST, &env);
        assert_eq!(c.log_level.bits(), 5);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn numbers_like_strtoul() {
        assert_eq!(parse_number("0x1F"), Some(31));
        assert_eq!(parse_number("010"), Some(8));
        assert_eq!(parse_number("10"), Some(10));
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("x"), None);
    }

    #[test]
    fn malformed_plists_warn_and_default() {
        let (c, w) = Config::from_plist("<key>ifdLogLevel</key><string>3", &no_env);
        assert_eq!(c, Config::default());
        assert!(w[0].contains("line 1"), "{w:?}");
        let (c, w) = Config::from_plist("<key>ifdLogLevel</key>\n<string>abc</string>", &no_env);
        assert_eq!(c.log_level, Config::default().log_level);
        assert_eq!(w.len(), 1);
        let (c, _) = Config::from_plist("", &no_env);
        assert!(c.is_listed(1, 2));
    }

    #[test]
    fn candidates_start_next_to_the_library() {
        let lib = Path::new("/opt/b/ifd-ccid.bundle/Contents/Linux/libccid.so");
        let env = |k: &str| (k == "PCSCLITE_HP_DROPDIR").then(|| "/d".to_string());
        let c = plist_candidates(Some(lib), &env);
        assert_eq!(
            c[0],
            Path::new("/opt/b/ifd-ccid.bundle/Contents/Info.plist")
        );
        assert_eq!(c[1], Path::new("/d/ifd-ccid.bundle/Contents/Info.plist"));
        assert_eq!(
            c[2],
            Path::new("/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist")
        );
    }
}
