//! Driver configuration, loaded once per process:
//!
//! * from the bundle's Info.plist: `ifdLogLevel`, `ifdDriverOptions`,
//!   `ifdTimeoutCap` (ms) and the reader allow-list (`ifdVendorID` /
//!   `ifdProductID` / `ifdFriendlyName`);
//! * from the environment: `LIBCCID_ifdLogLevel` (or `CCID_ifdLogLevel`)
//!   overrides the log level, `CCID_TIMEOUT_CAP_MS` the timeout cap.
//!
//! Numbers are read like C's `strtoul(s, NULL, 0)` (`0x..` hex, `0..`
//! octal, decimal). The Info.plist is looked for next to the loaded
//! library first (`Contents/Linux/libccid.so` → `Contents/Info.plist`), so
//! a bundle installed anywhere works; then in `$PCSCLITE_HP_DROPDIR` and
//! the drop directory compiled in ([`DEFAULT_DROPDIR`]).

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

/// The smallest accepted cap on any single wait (ms): readers need a few
/// seconds for some answers even when nothing is wrong.
pub const MIN_TIMEOUT_CAP_MS: u64 = 1000;

/// pcscd's drop directory: `CCID_USBDROPDIR` at build time (the Makefile
/// passes pcsc-lite's `usbdropdir`), else Debian's.
pub const DEFAULT_DROPDIR: &str = match option_env!("CCID_USBDROPDIR") {
    Some(d) => d,
    None => "/usr/lib/pcsc/drivers",
};

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
    /// The allow-list; `None`: none (any CCID interface may be opened).
    /// [`Config::load`] falls back to the compiled reader table when no
    /// Info.plist is found.
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

/// Parses a number like C's `strtoul(s, NULL, 0)`: leading white space and
/// an optional `+`, then `0x`/`0X` hexadecimal, a leading `0` octal, else
/// decimal; text after the digits is ignored. Unlike `strtoul`, a string
/// without digits or a value that does not fit gives `None` rather than 0
/// or `ULONG_MAX`.
pub fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim_start();
    let s = s.strip_prefix('+').unwrap_or(s);
    let (radix, digits) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if h.bytes().next().is_some_and(|b| b.is_ascii_hexdigit()) => (16, h),
        // "0x" without hex digits: strtoul reads the "0".
        Some(_) => return Some(0),
        None if s.starts_with('0') => (8, s),
        None => (10, s),
    };
    let n = digits
        .bytes()
        .take_while(|b| char::from(*b).is_digit(radix))
        .count();
    if n == 0 {
        return None;
    }
    // Only ASCII digits were counted: `n` is a character boundary.
    u64::from_str_radix(digits.get(..n)?, radix).ok()
}

/// A value of the property list: a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlistValue {
    /// `<string>`.
    String(String),
    /// `<array>` of `<string>`.
    Array(Vec<String>),
}

/// Replaces XML's predefined entities and numeric character references;
/// an unknown or malformed reference is kept as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i + 1..).unwrap_or("");
        let entity = after.find(';').and_then(|j| after.get(..j).map(|e| (e, j)));
        let decoded = entity.and_then(|(e, j)| {
            let c = match e {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = e.strip_prefix('#')?;
                    let code = match num.strip_prefix('x').or_else(|| num.strip_prefix('X')) {
                        Some(h) => u32::from_str_radix(h, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, j))
        });
        match decoded {
            Some((c, j)) => {
                out.push(c);
                rest = after.get(j + 1..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// An Info.plist error, with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlistError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for PlistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for PlistError {}

/// Reads the `<key>` / `<string>` / `<array>` (of `<string>`) pairs of an
/// Info.plist, in order. Comments, the XML declaration, the DOCTYPE and
/// other elements are skipped; a key whose value is of another kind
/// (`<integer>`, `<true/>`, `<dict>`...) is dropped. White space around
/// keys is ignored, string contents are kept as written (entities
/// decoded). Malformed text gives an error naming its line.
pub fn parse_plist(text: &str) -> Result<Vec<(String, PlistValue)>, PlistError> {
    let mut out = Vec::new();
    let mut pos = 0;
    let line = |off: usize| text.get(..off).map_or(0, |t| t.matches('\n').count()) + 1;
    let err = |off: usize, what: String| PlistError {
        line: line(off),
        what,
    };
    let mut pending: Option<String> = None;
    // The open array and the line it started on.
    let mut array: Option<(Vec<String>, usize)> = None;
    while let Some(i) = text.get(pos..).and_then(|r| r.find('<')) {
        let start = pos + i;
        let rest = text.get(start..).unwrap_or("");
        if rest.starts_with("<!--") {
            let end = rest
                .find("-->")
                .ok_or_else(|| err(start, "comment without -->".into()))?;
            pos = start + end + 3;
            continue;
        }
        if rest.starts_with("<![CDATA[") {
            return Err(err(start, "CDATA sections are not supported".into()));
        }
        let end = rest
            .find('>')
            .ok_or_else(|| err(start, "tag without '>'".into()))?;
        let tag = rest.get(1..end).unwrap_or("").trim();
        let after = start + end + 1;
        let self_closing = tag.ends_with('/');
        let name = tag
            .trim_end_matches('/')
            .split_ascii_whitespace()
            .next()
            .unwrap_or("");
        // The text up to `</name>`, and the offset after it.
        let content = |name: &str| -> Result<(String, usize), PlistError> {
            let close = format!("</{name}>");
            let body = text.get(after..).unwrap_or("");
            let j = body
                .find(&close)
                .ok_or_else(|| err(start, format!("<{name}> without {close}")))?;
            let inner = body.get(..j).unwrap_or("");
            if inner.contains('<') {
                return Err(err(start, format!("markup inside <{name}>")));
            }
            Ok((unescape(inner), after + j + close.len()))
        };
        pos = after;
        match (name, self_closing) {
            ("key", false) => {
                let (k, next) = content("key")?;
                if array.is_some() {
                    return Err(err(start, "<key> inside <array>".into()));
                }
                pending = Some(k.trim().to_string());
                pos = next;
            }
            ("string", closing) => {
                let v = if closing {
                    String::new()
                } else {
                    let (v, next) = content("string")?;
                    pos = next;
                    v
                };
                if let Some((a, _)) = array.as_mut() {
                    a.push(v);
                } else if let Some(k) = pending.take() {
                    out.push((k, PlistValue::String(v)));
                }
            }
            ("array", false) => {
                if array.is_some() {
                    return Err(err(start, "nested <array>".into()));
                }
                array = Some((Vec::new(), start));
            }
            ("array", true) => {
                if let Some(k) = pending.take() {
                    out.push((k, PlistValue::Array(Vec::new())));
                }
            }
            ("/array", _) => {
                let (a, _) = array
                    .take()
                    .ok_or_else(|| err(start, "</array> without <array>".into()))?;
                if let Some(k) = pending.take() {
                    out.push((k, PlistValue::Array(a)));
                }
            }
            (n, _) if n.starts_with('?') || n.starts_with('!') || n.starts_with('/') => {}
            ("plist", false) => {}
            (_, _) => {
                // A value of another kind: the pending key is not ours.
                if array.is_none() {
                    pending = None;
                }
            }
        }
    }
    if let Some((_, at)) = array {
        return Err(err(at, "<array> without </array>".into()));
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

    /// The friendly name the allow-list gives `vid:pid`.
    pub fn friendly_name(&self, vid: u16, pid: u16) -> Option<&str> {
        self.readers
            .as_ref()?
            .iter()
            .find(|e| e.vendor_id == vid && e.product_id == pid)
            .map(|e| e.name.as_str())
    }

    /// Builds the configuration from Info.plist text and an environment
    /// (a function from variable names to values). Returns it with
    /// warnings about values it could not use; never fails.
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
        let find = |k: &str| items.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let get_str = |k: &str| match find(k) {
            Some(PlistValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let get_arr = |k: &str| match find(k) {
            Some(PlistValue::Array(a)) => Some(a.clone()),
            Some(PlistValue::String(s)) => Some(vec![s.clone()]),
            None => None,
        };
        let number32 = |what: &str, s: &str, warnings: &mut Vec<String>| -> Option<u32> {
            let n = parse_number(s).and_then(|n| u32::try_from(n).ok());
            if n.is_none() {
                warnings.push(format!("{what} {s:?} is not a 32-bit number"));
            }
            n
        };
        if let Some(s) = get_str("ifdLogLevel") {
            if let Some(v) = number32("Info.plist: ifdLogLevel", &s, &mut warnings) {
                c.log_level = LogLevel::from_bits_retain(v);
            }
        }
        if let Some(s) = get_str("ifdDriverOptions") {
            if let Some(v) = number32("Info.plist: ifdDriverOptions", &s, &mut warnings) {
                c.driver_options = DriverOptions::from_bits_retain(v);
            }
        }
        let cap = |what: &str, s: &str, warnings: &mut Vec<String>| match parse_number(s) {
            Some(v) if v >= MIN_TIMEOUT_CAP_MS => Some(v),
            Some(v) => {
                warnings.push(format!(
                    "{what} {v} ms is below {MIN_TIMEOUT_CAP_MS} ms; using {MIN_TIMEOUT_CAP_MS}"
                ));
                Some(MIN_TIMEOUT_CAP_MS)
            }
            None => {
                warnings.push(format!("{what} {s:?} is not a number"));
                None
            }
        };
        if let Some(s) = get_str("ifdTimeoutCap") {
            if let Some(v) = cap("Info.plist: ifdTimeoutCap", &s, &mut warnings) {
                c.timeout_cap_ms = v;
            }
        }
        if let (Some(v), Some(p)) = (get_arr("ifdVendorID"), get_arr("ifdProductID")) {
            let names = get_arr("ifdFriendlyName").unwrap_or_default();
            if v.len() != p.len() || v.len() != names.len() {
                warnings.push(format!(
                    "Info.plist: ifdVendorID, ifdProductID and ifdFriendlyName have {}, {} and {} entries",
                    v.len(),
                    p.len(),
                    names.len()
                ));
            }
            let mut readers = Vec::new();
            for (i, (vs, ps)) in v.iter().zip(p.iter()).enumerate() {
                let id = |s: &str| parse_number(s).and_then(|n| u16::try_from(n).ok());
                match (id(vs), id(ps)) {
                    (Some(vendor_id), Some(product_id)) => readers.push(ListedReader {
                        vendor_id,
                        product_id,
                        name: names.get(i).cloned().unwrap_or_default(),
                    }),
                    _ => warnings.push(format!(
                        "Info.plist: reader {i}: {vs:?}/{ps:?} is not a 16-bit VID/PID"
                    )),
                }
            }
            c.readers = Some(readers);
        } else if get_arr("ifdVendorID").is_some() || get_arr("ifdProductID").is_some() {
            warnings.push("Info.plist: ifdVendorID without ifdProductID, or the reverse".into());
        }
        for var in ["LIBCCID_ifdLogLevel", "CCID_ifdLogLevel"] {
            if let Some(s) = env(var) {
                if let Some(v) = number32(var, &s, &mut warnings) {
                    c.log_level = LogLevel::from_bits_retain(v);
                }
                break;
            }
        }
        if let Some(s) = env("CCID_TIMEOUT_CAP_MS") {
            if let Some(v) = cap("CCID_TIMEOUT_CAP_MS", &s, &mut warnings) {
                c.timeout_cap_ms = v;
            }
        }
        (c, warnings)
    }

    /// Loads the configuration from the first readable Info.plist among
    /// `candidates`, plus the environment. Without any, the defaults and
    /// no allow-list.
    pub fn load_from(
        candidates: &[PathBuf],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Config, Vec<String>) {
        for p in candidates {
            if let Ok(text) = std::fs::read_to_string(p) {
                let (mut c, w) = Config::from_plist(&text, env);
                c.source = Some(p.clone());
                let w = w
                    .into_iter()
                    .map(|w| format!("{}: {w}", p.display()))
                    .collect();
                return (c, w);
            }
        }
        Config::from_plist("", env)
    }

    /// Loads this process's configuration: the Info.plist of the bundle the
    /// library was loaded from, else of `$PCSCLITE_HP_DROPDIR` or the
    /// default drop directory, plus the environment. Without an Info.plist
    /// the compiled reader table (its non-disabled entries) is the
    /// allow-list. Returns the warnings instead of logging them.
    pub fn load() -> (Config, Vec<String>) {
        let env = |k: &str| std::env::var(k).ok();
        let lib = crate::ffi::library_path();
        let (mut c, mut warnings) =
            Config::load_from(&plist_candidates(lib.as_deref(), &env), &env);
        if c.readers.is_none() {
            warnings.push("no Info.plist found: using the compiled reader table".into());
            c.readers = Some(
                crate::readers::listed()
                    .map(|r| ListedReader {
                        vendor_id: r.vendor_id,
                        product_id: r.product_id,
                        name: r.name.to_string(),
                    })
                    .collect(),
            );
        }
        (c, warnings)
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

/// The process-wide configuration, loaded once ([`Config::load`]); its
/// warnings are logged.
pub fn global() -> &'static Config {
    GLOBAL.get_or_init(|| {
        let (c, warnings) = Config::load();
        for w in warnings {
            log::warn!("{w}");
        }
        c
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple Computer//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>ifdManufacturerString</key>
	<string>Test maker</string>
	<key>ifdLogLevel</key>
	<string>0x0005</string>
	<!-- a comment with <key>ignored</key>
	     over two lines -->
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
		<string>Yubico YubiKey OTP+FIDO+CCID</string>
	</array>
</dict>
</plist>"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_levels_options_and_readers() {
        let (c, w) = Config::from_plist(PLIST, &no_env);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.log_level, LogLevel::CRITICAL | LogLevel::COMM);
        assert_eq!(c.driver_options.bits(), 0x11);
        assert!(c
            .driver_options
            .contains(DriverOptions::CCID_EXCHANGE_AUTHORIZED));
        assert_eq!(c.power_voltage(), PowerVoltage::V3);
        assert_eq!(c.timeout_cap_ms(), DEFAULT_TIMEOUT_CAP_MS);
        assert!(c.is_listed(0x08E6, 0x4433));
        assert!(c.is_listed(0x1050, 0x0407));
        assert!(!c.is_listed(0x08E6, 0x4434));
        assert_eq!(c.friendly_name(0x08E6, 0x4433), Some("Gemalto & Co Reader"));
        assert_eq!(c.friendly_name(0x08E6, 0x4434), None);
        assert_eq!(
            c.ids_for_name("Gemalto & Co Reader"),
            Some((0x08E6, 0x4433))
        );
        assert_eq!(c.ids_for_name("Gemalto"), None);
    }

    #[test]
    fn voltage_field() {
        let mut c = Config::default();
        for (bits, v) in [
            (0x00, PowerVoltage::V5),
            (0x10, PowerVoltage::V3),
            (0x20, PowerVoltage::V1_8),
            (0x30, PowerVoltage::Auto),
            (0x41, PowerVoltage::V5),
        ] {
            c.driver_options = DriverOptions::from_bits_retain(bits);
            assert_eq!(c.power_voltage(), v, "{bits:#x}");
        }
    }

    #[test]
    fn environment_overrides_the_level() {
        let (c, w) = Config::from_plist(PLIST, &env_of(&[("LIBCCID_ifdLogLevel", "15")]));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.log_level.bits(), 15);
        let octal = env_of(&[("LIBCCID_ifdLogLevel", "017")]);
        assert_eq!(Config::from_plist(PLIST, &octal).0.log_level.bits(), 15);
        let alias = env_of(&[("CCID_ifdLogLevel", "0x2")]);
        assert_eq!(
            Config::from_plist(PLIST, &alias).0.log_level,
            LogLevel::INFO
        );
        // LIBCCID_ifdLogLevel wins over the alias.
        let both = env_of(&[("CCID_ifdLogLevel", "2"), ("LIBCCID_ifdLogLevel", "4")]);
        assert_eq!(Config::from_plist(PLIST, &both).0.log_level, LogLevel::COMM);
        let bad = env_of(&[("LIBCCID_ifdLogLevel", "lots")]);
        let (c, w) = Config::from_plist(PLIST, &bad);
        assert_eq!(c.log_level.bits(), 5);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("LIBCCID_ifdLogLevel"), "{w:?}");
        // Without an Info.plist the variable still applies.
        let (c, _) = Config::from_plist("", &env_of(&[("LIBCCID_ifdLogLevel", "7")]));
        assert_eq!(c.log_level.bits(), 7);
    }

    #[test]
    fn timeout_cap_from_the_plist_and_the_environment() {
        let text = "<dict><key>ifdTimeoutCap</key><string>90000</string></dict>";
        let (c, w) = Config::from_plist(text, &no_env);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.timeout_cap_ms(), 90_000);
        let (c, _) = Config::from_plist(text, &env_of(&[("CCID_TIMEOUT_CAP_MS", "0x1388")]));
        assert_eq!(c.timeout_cap_ms(), 5000);
        let (c, w) = Config::from_plist(text, &env_of(&[("CCID_TIMEOUT_CAP_MS", "10")]));
        assert_eq!(c.timeout_cap_ms(), MIN_TIMEOUT_CAP_MS);
        assert_eq!(w.len(), 1);
        let (c, w) = Config::from_plist(text, &env_of(&[("CCID_TIMEOUT_CAP_MS", "soon")]));
        assert_eq!(c.timeout_cap_ms(), 90_000);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn numbers_like_strtoul() {
        assert_eq!(parse_number("0x1F"), Some(31));
        assert_eq!(parse_number("0X1f"), Some(31));
        assert_eq!(parse_number("010"), Some(8));
        assert_eq!(parse_number("10"), Some(10));
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("  +12"), Some(12));
        assert_eq!(parse_number("0x0003 (default)"), Some(3));
        assert_eq!(parse_number("019"), Some(1));
        assert_eq!(parse_number("0x"), Some(0));
        assert_eq!(parse_number("x"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("0x1_0000_0000_0000_0000"), Some(1));
        assert_eq!(parse_number("99999999999999999999999"), None);
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(unescape("A &amp; B"), "A & B");
        assert_eq!(unescape("&lt;&gt;&quot;&apos;"), "<>\"'");
        assert_eq!(unescape("&#38;&#x26;&#X41;"), "&&A");
        assert_eq!(unescape("&amp;amp;"), "&amp;");
        assert_eq!(unescape("a & b &bogus; &#xZZ; &"), "a & b &bogus; &#xZZ; &");
        assert_eq!(unescape("&#x110000;"), "&#x110000;");
    }

    #[test]
    fn plist_reader_tolerates_layout() {
        let text = "<plist><dict>\n<key> ifdLogLevel </key>\n<string>2</string>\n\
                    <key>Empty</key><string/>\n<key>Flag</key><true/>\n\
                    <key>Count</key><integer>3</integer>\n<key>Names</key>\n<array>\n\
                    <string>a</string><string></string>\n</array>\n\
                    <key>None</key><array/></dict></plist>";
        let items = parse_plist(text).unwrap();
        assert_eq!(
            items,
            vec![
                ("ifdLogLevel".into(), PlistValue::String("2".into())),
                ("Empty".into(), PlistValue::String(String::new())),
                (
                    "Names".into(),
                    PlistValue::Array(vec!["a".into(), String::new()])
                ),
                ("None".into(), PlistValue::Array(Vec::new())),
            ]
        );
        // A string after a non-string value does not take its key.
        let items = parse_plist("<key>A</key><true/><string>x</string>").unwrap();
        assert!(items.is_empty(), "{items:?}");
    }

    #[test]
    fn plist_errors_name_their_line() {
        for (text, line, what) in [
            (
                "<dict>\n<key>ifdLogLevel</key>\n<string>3",
                3,
                "without </string>",
            ),
            ("\n\n<!-- open", 3, "comment"),
            (
                "<dict>\n<key>A</key>\n<array>\n<string>x</string>\n",
                3,
                "without </array>",
            ),
            ("</array>", 1, "without <array>"),
            ("<array>\n<array>", 2, "nested"),
            ("<key>A</key>\n<string>x<b/></string>", 2, "markup"),
            ("<array><key>A</key></array>", 1, "inside <array>"),
            ("\n<key", 2, "'>'"),
            ("<string><![CDATA[x]]></string>", 1, "markup"),
        ] {
            let e = parse_plist(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.what.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn malformed_plists_warn_and_default() {
        let (c, w) = Config::from_plist("<key>ifdLogLevel</key><string>3", &no_env);
        assert_eq!(c, Config::default());
        assert!(w[0].contains("line 1"), "{w:?}");
        let (c, w) = Config::from_plist("<key>ifdLogLevel</key>\n<string>abc</string>", &no_env);
        assert_eq!(c.log_level, Config::default().log_level);
        assert_eq!(w.len(), 1);
        let (c, w) = Config::from_plist(
            "<key>ifdLogLevel</key><string>0x100000000</string>",
            &no_env,
        );
        assert_eq!(c.log_level, Config::default().log_level);
        assert!(w[0].contains("32-bit"), "{w:?}");
        let (c, w) = Config::from_plist("", &no_env);
        assert!(w.is_empty());
        assert!(c.is_listed(1, 2));
        assert_eq!(c.friendly_name(1, 2), None);
    }

    #[test]
    fn reader_arrays_are_checked() {
        let text = "<key>ifdVendorID</key><array><string>0x1</string><string>0x10000</string>\
                    <string>3</string></array>\
                    <key>ifdProductID</key><array><string>0x2</string><string>0x2</string></array>\
                    <key>ifdFriendlyName</key><array><string>One</string></array>";
        let (c, w) = Config::from_plist(text, &no_env);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("3, 2 and 1"), "{w:?}");
        assert!(w[1].contains("reader 1"), "{w:?}");
        let readers = c.readers.unwrap();
        assert_eq!(readers.len(), 1);
        assert_eq!(readers[0].name, "One");
        let (c, w) = Config::from_plist("<key>ifdVendorID</key><array/>", &no_env);
        assert_eq!(c.readers, None);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn candidates_start_next_to_the_library() {
        let lib = Path::new("/opt/b/ifd-ccid.bundle/Contents/Linux/libccid.so");
        let c = plist_candidates(Some(lib), &env_of(&[("PCSCLITE_HP_DROPDIR", "/d")]));
        assert_eq!(
            c[0],
            Path::new("/opt/b/ifd-ccid.bundle/Contents/Info.plist")
        );
        assert_eq!(c[1], Path::new("/d/ifd-ccid.bundle/Contents/Info.plist"));
        assert_eq!(
            c[2],
            Path::new(DEFAULT_DROPDIR).join("ifd-ccid.bundle/Contents/Info.plist")
        );
        assert_eq!(plist_candidates(None, &no_env).len(), 1);
    }

    #[test]
    fn loading_reads_the_first_plist_found() {
        let dir = std::env::temp_dir().join(format!("ccid-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("Info.plist");
        std::fs::write(&good, PLIST).unwrap();
        let missing = dir.join("missing.plist");
        let (c, w) = Config::load_from(&[missing.clone(), good.clone()], &no_env);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.source.as_deref(), Some(good.as_path()));
        assert!(c.is_listed(0x1050, 0x0407));
        let bad = dir.join("bad.plist");
        std::fs::write(&bad, "<key>ifdLogLevel</key>\n<string>zz</string>").unwrap();
        let (_, w) = Config::load_from(std::slice::from_ref(&bad), &no_env);
        assert!(w[0].starts_with(&bad.display().to_string()), "{w:?}");
        let (c, _) = Config::load_from(&[missing], &no_env);
        assert_eq!(c, Config::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn never_panics(cut in 0usize..2000, junk in "[<>&;/!?a-z# -]{0,40}") {
            let mut text: String = PLIST.chars().take(cut).collect();
            text.push_str(&junk);
            let _ = parse_plist(&text);
            let _ = Config::from_plist(&text, &no_env);
            let _ = unescape(&junk);
            let _ = parse_number(&junk);
        }
    }
}
