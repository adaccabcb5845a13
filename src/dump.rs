//! Descriptor dumps in the format of libccid's `parse` tool.
//!
//! The tool prints, for every CCID or ICCD interface of a device, a block
//! that starts with the device's identity (`idVendor`, `iManufacturer`,
//! `idProduct`, `iProduct`, `bcdDevice`), continues with the interface
//! descriptor and, when the interface has one, a `CCID Class Descriptor`
//! section with the 54-byte class descriptor decoded field by field. The
//! live answers to `GET_CLOCK_FREQUENCIES` and `GET_DATA_RATES` appear as
//! `Support N kHz` and `Support N bps` lines (printed with `%d`, so values
//! of 2^31 and above show up negative).
//!
//! [`parse`] reads such text into one [`ReaderDump`] per device (a file
//! normally describes one device, possibly with several interfaces).
//! Indented explanatory lines (`T=1`, `5.0V`, `....02 Automatic …`, error
//! messages of the tool) are skipped; every field the structure needs must
//! be present exactly once per block and hold a valid number, otherwise the
//! error names the source and the line. Nothing here panics on any input.

#![forbid(unsafe_code)]

use crate::proto::descriptor::CcidDescriptor;
use std::fmt;

/// One interface of a device as the dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceDump {
    /// bInterfaceNumber.
    pub number: u8,
    /// bAlternateSetting.
    pub alternate_setting: u8,
    /// bInterfaceClass (0x0B CCID, 0xFF proprietary).
    pub class: u8,
    /// bInterfaceSubClass.
    pub subclass: u8,
    /// bInterfaceProtocol (0 CCID, 1 ICCD version A, 2 ICCD version B).
    pub protocol: u8,
    /// bNumEndpoints.
    pub num_endpoints: u8,
    /// The iInterface string, when the tool could read one (an index
    /// printed instead of a string gives `None`).
    pub name: Option<String>,
    /// The CCID class descriptor, when the interface has one.
    pub descriptor: Option<CcidDescriptor>,
    /// The answer to GET_DATA_RATES, in bps, as listed (`Support N bps`).
    pub data_rates: Vec<u32>,
    /// The answer to GET_CLOCK_FREQUENCIES, in kHz (`Support N kHz`).
    pub clock_frequencies: Vec<u32>,
}

/// One USB device of a dump with its interfaces, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderDump {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// The iManufacturer string (`None` when unreadable or blank).
    pub manufacturer: Option<String>,
    /// The iProduct string (`None` when unreadable or blank).
    pub product: Option<String>,
    /// bcdDevice.
    pub bcd_device: u16,
    /// The interfaces dumped for this device.
    pub interfaces: Vec<InterfaceDump>,
}

/// Why a dump could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    /// The name the caller gave the text (usually its file name).
    pub source: String,
    /// 1-based line number (0: the text as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}:{}: {}", self.source, self.line, self.message)
        }
    }
}

impl std::error::Error for DumpError {}

impl ReaderDump {
    /// Parses a dump that describes exactly one device.
    pub fn parse(text: &str, source: &str) -> Result<ReaderDump, DumpError> {
        let mut all = parse(text, source)?;
        if all.len() > 1 {
            return Err(DumpError {
                source: source.to_string(),
                line: 0,
                message: format!("{} devices in one dump, expected one", all.len()),
            });
        }
        all.pop().ok_or_else(|| DumpError {
            source: source.to_string(),
            line: 0,
            message: "no device in the dump".into(),
        })
    }

    /// The interfaces that carry a CCID class descriptor.
    pub fn ccid_interfaces(&self) -> impl Iterator<Item = &InterfaceDump> {
        self.interfaces.iter().filter(|i| i.descriptor.is_some())
    }
}

/// Every interface that carries a CCID class descriptor, over all devices
/// of a dump, in file order, with its device.
pub fn ccid_interfaces(dumps: &[ReaderDump]) -> Vec<(&ReaderDump, &InterfaceDump)> {
    dumps
        .iter()
        .flat_map(|d| d.ccid_interfaces().map(move |i| (d, i)))
        .collect()
}

/// Parses the text of a dump; `source` names it in errors. Consecutive
/// blocks of the same device (same idVendor, idProduct and bcdDevice) are
/// gathered into one [`ReaderDump`].
pub fn parse(text: &str, source: &str) -> Result<Vec<ReaderDump>, DumpError> {
    let mut p = Parser {
        source,
        blocks: Vec::new(),
        current: None,
    };
    for (i, raw) in text.lines().enumerate() {
        p.line(i + 1, raw.trim_end_matches('\r'))?;
    }
    p.finish_block(text.lines().count())?;
    if p.blocks.is_empty() {
        return Err(p.err(0, "no `idVendor:` line: not a descriptor dump"));
    }
    let mut devices: Vec<ReaderDump> = Vec::new();
    for (dev, iface) in p.blocks {
        match devices.last_mut() {
            Some(d)
                if d.vendor_id == dev.vendor_id
                    && d.product_id == dev.product_id
                    && d.bcd_device == dev.bcd_device =>
            {
                d.interfaces.push(iface)
            }
            _ => devices.push(ReaderDump {
                interfaces: vec![iface],
                ..dev
            }),
        }
    }
    Ok(devices)
}

/// Which part of a block the parser is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Device and interface descriptor.
    Interface,
    /// After `CCID Class Descriptor`.
    Class,
}

/// The fields of one block as found so far: (value text, line).
#[derive(Default)]
struct Block {
    start: usize,
    fields: Vec<(&'static str, String, usize)>,
    manufacturer: Option<Option<String>>,
    product: Option<Option<String>>,
    name: Option<Option<String>>,
    class_line: Option<usize>,
    data_rates: Vec<u32>,
    clocks: Vec<u32>,
}

struct Parser<'s> {
    source: &'s str,
    blocks: Vec<(ReaderDump, InterfaceDump)>,
    current: Option<(Block, Section)>,
}

/// Fields of the device and interface part, as printed.
const INTERFACE_FIELDS: [&str; 12] = [
    "idVendor",
    "idProduct",
    "bcdDevice",
    "bLength",
    "bDescriptorType",
    "bInterfaceNumber",
    "bAlternateSetting",
    "bNumEndpoints",
    "bInterfaceClass",
    "bInterfaceSubClass",
    "bInterfaceProtocol",
    "iInterface",
];

/// Fields of the class descriptor, as printed (in descriptor order).
const CLASS_FIELDS: [&str; 22] = [
    "bLength",
    "bDescriptorType",
    "bcdCCID",
    "bMaxSlotIndex",
    "bVoltageSupport",
    "dwProtocols",
    "dwDefaultClock",
    "dwMaximumClock",
    "bNumClockSupported",
    "dwDataRate",
    "dwMaxDataRate",
    "bNumDataRatesSupported",
    "dwMaxIFSD",
    "dwSynchProtocols",
    "dwMechanical",
    "dwFeatures",
    "dwMaxCCIDMessageLength",
    "bClassGetResponse",
    "bClassEnvelope",
    "wLcdLayout",
    "bPINSupport",
    "bMaxCCIDBusySlots",
];

/// Prefix of class-descriptor field keys in [`Block::fields`].
const CLASS_PREFIX: &str = "class.";

fn class_key(key: &str) -> Option<&'static str> {
    match key {
        "bLength" => Some("class.bLength"),
        "bDescriptorType" => Some("class.bDescriptorType"),
        _ => CLASS_FIELDS.iter().copied().find(|k| *k == key),
    }
}

/// The string value of `iManufacturer:`-style lines: `None` when blank.
fn string_value(v: &str) -> Option<String> {
    let t = v.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl<'s> Parser<'s> {
    fn err(&self, line: usize, message: impl Into<String>) -> DumpError {
        DumpError {
            source: self.source.to_string(),
            line,
            message: message.into(),
        }
    }

    fn line(&mut self, n: usize, raw: &str) -> Result<(), DumpError> {
        let text = raw.trim();
        if text.is_empty() {
            return Ok(());
        }
        let (key, value) = match text.split_once(':') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (text, None),
        };
        if key == "idVendor" && value.is_some() {
            self.finish_block(n.saturating_sub(1))?;
            self.current = Some((
                Block {
                    start: n,
                    ..Block::default()
                },
                Section::Interface,
            ));
        }
        let source = self.source;
        let Some((block, section)) = self.current.as_mut() else {
            // Text before the first block (a title, a blank) is allowed
            // only when it does not look like a field.
            if value.is_some() && (INTERFACE_FIELDS.contains(&key) || class_key(key).is_some()) {
                return Err(DumpError {
                    source: source.to_string(),
                    line: n,
                    message: format!("`{key}` before the first `idVendor:` line"),
                });
            }
            return Ok(());
        };
        if text == "CCID Class Descriptor" {
            if block.class_line.is_some() {
                return Err(self.err(n, "second `CCID Class Descriptor` in one block"));
            }
            block.class_line = Some(n);
            *section = Section::Class;
            return Ok(());
        }
        // `Support N bps` / `Support N kHz`: the live class-request lists.
        if let Some(rest) = text.strip_prefix("Support ") {
            if *section == Section::Class {
                let mut it = rest.split_whitespace();
                let (num, unit) = (it.next(), it.next());
                if let (Some(num), Some(unit @ ("bps" | "kHz")), None) = (num, unit, it.next()) {
                    let v = parse_c_int(num).ok_or_else(|| DumpError {
                        source: source.to_string(),
                        line: n,
                        message: format!("`Support {rest}`: {num:?} is not a number"),
                    })?;
                    if unit == "bps" {
                        block.data_rates.push(v);
                    } else {
                        block.clocks.push(v);
                    }
                    return Ok(());
                }
            }
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix("Can't get ") {
            let target = match rest.split_whitespace().next() {
                Some("iManufacturer") => &mut block.manufacturer,
                Some("iProduct") => &mut block.product,
                Some("iInterface") => &mut block.name,
                _ => return Ok(()),
            };
            if target.is_some() {
                return Err(self.err(n, format!("`{text}` after the string was given")));
            }
            *target = Some(None);
            return Ok(());
        }
        let Some(value) = value else {
            return Ok(());
        };
        match (key, *section) {
            ("iManufacturer" | "iProduct", _) => {
                let target = if key == "iManufacturer" {
                    &mut block.manufacturer
                } else {
                    &mut block.product
                };
                if target.is_some() {
                    return Err(self.err(n, format!("`{key}` given twice")));
                }
                *target = Some(string_value(value));
                Ok(())
            }
            ("iInterface", Section::Interface) => {
                if block.name.is_some() {
                    return Err(self.err(n, "`iInterface` given twice"));
                }
                let v = value.trim();
                // The tool prints the string index when it has no string.
                let name = if v.is_empty() || v.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    Some(v.to_string())
                };
                block.name = Some(name);
                Ok(())
            }
            (k, Section::Interface) if INTERFACE_FIELDS.contains(&k) => {
                let k = INTERFACE_FIELDS
                    .iter()
                    .copied()
                    .find(|f| *f == k)
                    .unwrap_or("?");
                if block.fields.iter().any(|(f, _, _)| *f == k) {
                    return Err(self.err(n, format!("`{k}` given twice")));
                }
                block.fields.push((k, value.trim().to_string(), n));
                Ok(())
            }
            (k, Section::Class) => {
                let Some(k) = class_key(k) else {
                    // Tool messages such as "IFD does not support …: Broken pipe".
                    return Ok(());
                };
                if block.fields.iter().any(|(f, _, _)| *f == k) {
                    return Err(self.err(n, format!("`{key}` given twice in the class descriptor")));
                }
                block.fields.push((k, value.trim().to_string(), n));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn finish_block(&mut self, last_line: usize) -> Result<(), DumpError> {
        let Some((block, _)) = self.current.take() else {
            return Ok(());
        };
        let get = |key: &'static str| -> Result<(&str, usize), DumpError> {
            block
                .fields
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, v, l)| (v.as_str(), *l))
                .ok_or_else(|| DumpError {
                    source: self.source.to_string(),
                    line: block.start,
                    message: format!(
                        "block of lines {}-{last_line} has no `{}` line",
                        block.start,
                        key.trim_start_matches(CLASS_PREFIX)
                    ),
                })
        };
        let num = |key: &'static str, max: u64| -> Result<u64, DumpError> {
            let (v, line) = get(key)?;
            let name = key.trim_start_matches(CLASS_PREFIX);
            let n = first_number(v).ok_or_else(|| {
                self.err(
                    line,
                    format!("`{name}`: {v:?} does not start with a number"),
                )
            })?;
            if n > max {
                return Err(self.err(
                    line,
                    format!("`{name}`: {n:#x} does not fit (max {max:#x})"),
                ));
            }
            Ok(n)
        };
        let bcd = |key: &'static str| -> Result<u16, DumpError> {
            let (v, line) = get(key)?;
            parse_bcd(v).ok_or_else(|| {
                self.err(
                    line,
                    format!("`{key}`: {v:?} is not a version such as 1.10"),
                )
            })
        };
        let u8f = |key| num(key, u64::from(u8::MAX)).map(|v| v as u8);
        let u16f = |key| num(key, u64::from(u16::MAX)).map(|v| v as u16);
        let u32f = |key| num(key, u64::from(u32::MAX)).map(|v| v as u32);

        let device = ReaderDump {
            vendor_id: u16f("idVendor")?,
            product_id: u16f("idProduct")?,
            manufacturer: block.manufacturer.clone().flatten(),
            product: block.product.clone().flatten(),
            bcd_device: bcd("bcdDevice")?,
            interfaces: Vec::new(),
        };
        if block.manufacturer.is_none() {
            return Err(self.err(block.start, "block has no `iManufacturer` line"));
        }
        if block.product.is_none() {
            return Err(self.err(block.start, "block has no `iProduct` line"));
        }
        if block.name.is_none() {
            return Err(self.err(block.start, "block has no `iInterface` line"));
        }
        let (len, len_line) = (u8f("bLength")?, get("bLength")?.1);
        if len != 9 {
            return Err(self.err(len_line, format!("interface bLength {len}, expected 9")));
        }
        let (dt, dt_line) = (u8f("bDescriptorType")?, get("bDescriptorType")?.1);
        if dt != 4 {
            return Err(self.err(
                dt_line,
                format!("interface bDescriptorType {dt}, expected 4"),
            ));
        }
        let descriptor = match block.class_line {
            None => None,
            Some(_) => {
                let (proto_text, proto_line) = get("dwProtocols")?;
                let protocols = parse_protocols(proto_text).ok_or_else(|| {
                    self.err(
                        proto_line,
                        format!("`dwProtocols`: {proto_text:?} is not two 16-bit words"),
                    )
                })?;
                let clock = |key: &'static str| -> Result<u32, DumpError> {
                    let (v, line) = get(key)?;
                    parse_mhz(v).ok_or_else(|| {
                        self.err(
                            line,
                            format!("`{key}`: {v:?} is not a frequency such as 4.000 MHz"),
                        )
                    })
                };
                let d = CcidDescriptor {
                    bLength: u8f("class.bLength")?,
                    bDescriptorType: u8f("class.bDescriptorType")?,
                    bcdCCID: bcd("bcdCCID")?,
                    bMaxSlotIndex: u8f("bMaxSlotIndex")?,
                    bVoltageSupport: u8f("bVoltageSupport")?,
                    dwProtocols: protocols,
                    dwDefaultClock: clock("dwDefaultClock")?,
                    dwMaximumClock: clock("dwMaximumClock")?,
                    bNumClockSupported: u8f("bNumClockSupported")?,
                    dwDataRate: u32f("dwDataRate")?,
                    dwMaxDataRate: u32f("dwMaxDataRate")?,
                    bNumDataRatesSupported: u8f("bNumDataRatesSupported")?,
                    dwMaxIFSD: u32f("dwMaxIFSD")?,
                    dwSynchProtocols: u32f("dwSynchProtocols")?,
                    dwMechanical: u32f("dwMechanical")?,
                    dwFeatures: u32f("dwFeatures")?,
                    dwMaxCCIDMessageLength: u32f("dwMaxCCIDMessageLength")?,
                    bClassGetResponse: u8f("bClassGetResponse")?,
                    bClassEnvelope: u8f("bClassEnvelope")?,
                    wLcdLayout: u16f("wLcdLayout")?,
                    bPINSupport: u8f("bPINSupport")?,
                    bMaxCCIDBusySlots: u8f("bMaxCCIDBusySlots")?,
                };
                if usize::from(d.bLength) != crate::proto::descriptor::CCID_DESCRIPTOR_LEN {
                    let line = get("class.bLength")?.1;
                    return Err(self.err(
                        line,
                        format!("class descriptor bLength {:#x}, expected 0x36", d.bLength),
                    ));
                }
                Some(d)
            }
        };
        let iface = InterfaceDump {
            number: u8f("bInterfaceNumber")?,
            alternate_setting: u8f("bAlternateSetting")?,
            class: u8f("bInterfaceClass")?,
            subclass: u8f("bInterfaceSubClass")?,
            protocol: u8f("bInterfaceProtocol")?,
            num_endpoints: u8f("bNumEndpoints")?,
            name: block.name.clone().flatten(),
            descriptor,
            data_rates: block.data_rates.clone(),
            clock_frequencies: block.clocks.clone(),
        };
        self.blocks.push((device, iface));
        Ok(())
    }
}

/// The first whitespace-separated token as a number: `0x` hexadecimal or
/// decimal.
fn first_number(v: &str) -> Option<u64> {
    let tok = v.split_whitespace().next()?;
    match tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => tok.parse().ok(),
    }
}

/// A number printed with `%d` from an unsigned 32-bit value: negative
/// values are the upper half of the range.
fn parse_c_int(tok: &str) -> Option<u32> {
    let v: i64 = tok.parse().ok()?;
    if let Ok(u) = u32::try_from(v) {
        return Some(u);
    }
    i32::try_from(v).ok().map(|i| i as u32)
}

/// `1.10` → 0x0110: the tool prints BCD versions as `%X.%02X` (older
/// versions as `%X.%X`, hence `1.0` → 0x0100).
fn parse_bcd(v: &str) -> Option<u16> {
    let tok = v.split_whitespace().next()?;
    let (hi, lo) = tok.split_once('.')?;
    if hi.is_empty() || hi.len() > 2 || lo.is_empty() || lo.len() > 2 {
        return None;
    }
    let hi = u16::from_str_radix(hi, 16).ok()?;
    let lo = u16::from_str_radix(lo, 16).ok()?;
    Some((hi << 8) | lo)
}

/// `4.000 MHz` → 4000 (kHz): the tool prints kHz / 1000 with `%.3f`.
fn parse_mhz(v: &str) -> Option<u32> {
    let mut it = v.split_whitespace();
    let num = it.next()?;
    if it.next() != Some("MHz") {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let mut frac_khz: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..3 {
        frac_khz *= 10;
    }
    u32::try_from(int.checked_mul(1000)?.checked_add(frac_khz)?).ok()
}

/// `0x0000 0x0003` → 0x0000_0003: the tool prints the high and the low
/// 16-bit halves.
fn parse_protocols(v: &str) -> Option<u32> {
    let mut it = v.split_whitespace();
    let hi = it.next()?.strip_prefix("0x")?;
    let lo = it.next()?.strip_prefix("0x")?;
    let hi = u16::from_str_radix(hi, 16).ok()?;
    let lo = u16::from_str_radix(lo, 16).ok()?;
    Some((u32::from(hi) << 16) | u32::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const ONE: &str = " idVendor: 0x072F
  iManufacturer:    
 idProduct: 0x90CC
  iProduct: CCID USB Reader
 bcdDevice: 1.00 (firmware release?)
 bLength: 9
 bDescriptorType: 4
 bInterfaceNumber: 0
 bAlternateSetting: 0
 bNumEndpoints: 3
  bulk-IN, bulk-OUT and Interrupt-IN
 bInterfaceClass: 0x0B [Chip Card Interface Device Class (CCID)]
 bInterfaceSubClass: 0
 bInterfaceProtocol: 0
  bulk transfer, optional interrupt-IN (CCID)
 iInterface: 0
 CCID Class Descriptor
  bLength: 0x36
  bDescriptorType: 0x21
  bcdCCID: 1.10
  bMaxSlotIndex: 0x01
  bVoltageSupport: 0x07
   5.0V
  dwProtocols: 0x0000 0x0003
   T=0
  dwDefaultClock: 3.686 MHz
  dwMaximumClock: 13.560 MHz
  bNumClockSupported: 2 (will use whatever is returned)
   Support 3686 kHz
   Support 13560 kHz
  dwDataRate: 10752 bps
  dwMaxDataRate: 250000 bps
  bNumDataRatesSupported: 3
   Support 10752 bps
   Support -2060565201 bps
   Support 0 bps
  dwMaxIFSD: 247
  dwSynchProtocols: 0x00000000
  dwMechanical: 0x00000000
   No special characteristics
  dwFeatures: 0x00010030
   ....10 Automatic ICC clock frequency change according to parameters
  dwMaxCCIDMessageLength: 271 bytes
  bClassGetResponse: 0xFF
   echoes the APDU class
  bClassEnvelope: 0x00
  wLcdLayout: 0x0214
  bPINSupport: 0x03
  bMaxCCIDBusySlots: 2
";

    #[test]
    fn parses_every_field() {
        let d = ReaderDump::parse(ONE, "one.txt").unwrap();
        assert_eq!(
            (d.vendor_id, d.product_id, d.bcd_device),
            (0x072F, 0x90CC, 0x0100)
        );
        assert_eq!(d.manufacturer, None);
        assert_eq!(d.product.as_deref(), Some("CCID USB Reader"));
        assert_eq!(d.interfaces.len(), 1);
        let i = &d.interfaces[0];
        assert_eq!((i.number, i.class, i.subclass, i.protocol), (0, 0x0B, 0, 0));
        assert_eq!((i.num_endpoints, i.name.as_deref()), (3, None));
        assert_eq!(i.clock_frequencies, vec![3686, 13560]);
        assert_eq!(i.data_rates, vec![10752, 2_234_402_095, 0]);
        let c = i.descriptor.as_ref().unwrap();
        assert_eq!(c.bcdCCID, 0x0110);
        assert_eq!(c.bMaxSlotIndex, 1);
        assert_eq!(c.dwProtocols, 3);
        assert_eq!((c.dwDefaultClock, c.dwMaximumClock), (3686, 13560));
        assert_eq!(c.bNumClockSupported, 2);
        assert_eq!((c.dwDataRate, c.dwMaxDataRate), (10752, 250_000));
        assert_eq!(c.bNumDataRatesSupported, 3);
        assert_eq!(c.dwMaxIFSD, 247);
        assert_eq!(c.dwFeatures, 0x0001_0030);
        assert_eq!(c.dwMaxCCIDMessageLength, 271);
        assert_eq!((c.bClassGetResponse, c.bClassEnvelope), (0xFF, 0));
        assert_eq!(
            (c.wLcdLayout, c.bPINSupport, c.bMaxCCIDBusySlots),
            (0x0214, 3, 2)
        );
        // The decoded structure round-trips through the 54-byte form.
        assert_eq!(CcidDescriptor::parse(&c.to_bytes()).unwrap(), *c);
    }

    #[test]
    fn crlf_wrapped_lines_and_missing_strings() {
        let text = ONE
            .replace(
                " iInterface: 0\n",
                " Can't get iInterface string: LIBUSB_ERROR_PIPE\n",
            )
            .replace(
                "  iProduct: CCID USB Reader\n",
                "  Can't get iProduct string\n",
            )
            .replace("params\n", "")
            .replace('\n', "\r\n")
            .replace("   ....10 Automatic", "params\r\n   ....10 Automatic");
        let d = ReaderDump::parse(&text, "crlf.txt").unwrap();
        assert_eq!(d.product, None);
        assert_eq!(d.interfaces[0].name, None);
        assert_eq!(
            d.interfaces[0].descriptor.as_ref().unwrap().dwFeatures,
            0x10030
        );
    }

    #[test]
    fn several_interfaces_and_devices() {
        let second = ONE.replace(" bInterfaceNumber: 0", " bInterfaceNumber: 1");
        let other = ONE.replace(" idProduct: 0x90CC", " idProduct: 0x1234");
        let text = format!("{ONE}{second}{other}");
        let all = parse(&text, "multi.txt").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].interfaces.len(), 2);
        assert_eq!(all[0].interfaces[1].number, 1);
        assert_eq!(all[1].product_id, 0x1234);
        assert_eq!(ccid_interfaces(&all).len(), 3);
        let e = ReaderDump::parse(&text, "multi.txt").unwrap_err();
        assert!(e.message.contains("2 devices"), "{e}");
    }

    #[test]
    fn interface_without_class_descriptor() {
        let cut = ONE.find(" CCID Class Descriptor").unwrap();
        let d = ReaderDump::parse(&ONE[..cut], "bare.txt").unwrap();
        assert_eq!(d.interfaces[0].descriptor, None);
        assert!(d.interfaces[0].data_rates.is_empty());
        assert_eq!(d.ccid_interfaces().count(), 0);
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn malformed_input_names_file_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("  dwMaxIFSD: 247", "  dwMaxIFSD: lots", "dwMaxIFSD"),
            (
                "  bMaxSlotIndex: 0x01",
                "  bMaxSlotIndex: 0x100",
                "bMaxSlotIndex",
            ),
            (
                "  dwDefaultClock: 3.686 MHz",
                "  dwDefaultClock: fast",
                "dwDefaultClock",
            ),
            (
                "  dwProtocols: 0x0000 0x0003",
                "  dwProtocols: 3",
                "dwProtocols",
            ),
            ("  bcdCCID: 1.10", "  bcdCCID: one", "bcdCCID"),
            ("  bLength: 0x36", "  bLength: 0x35", "bLength"),
            ("   Support 0 bps", "   Support zero bps", "Support"),
            (
                " bDescriptorType: 4",
                " bDescriptorType: 5",
                "bDescriptorType",
            ),
        ];
        for (from, to, needle) in cases {
            let text = ONE.replace(from, to);
            let e = parse(&text, "bad.txt").unwrap_err();
            assert_eq!(e.source, "bad.txt");
            assert_eq!(e.line, line_of(&text, to.trim()), "{needle}: {e}");
            assert!(e.to_string().starts_with("bad.txt:"), "{e}");
        }
        // A missing field is reported at the start of its block.
        let text = ONE.replace("  dwMaxIFSD: 247\n", "");
        let e = parse(&text, "bad.txt").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("dwMaxIFSD"), "{e}");
        // A duplicated field.
        let text = ONE.replace("  dwMaxIFSD: 247\n", "  dwMaxIFSD: 247\n  dwMaxIFSD: 248\n");
        let e = parse(&text, "bad.txt").unwrap_err();
        assert_eq!(e.line, line_of(&text, "dwMaxIFSD: 248"));
        // Not a dump at all.
        assert_eq!(parse("hello\n", "x").unwrap_err().line, 0);
        assert!(parse("", "x").is_err());
        assert!(parse("  bLength: 9\n idVendor: 0x1\n", "x").is_err());
    }

    #[test]
    fn arbitrary_prefixes_never_panic() {
        for end in 0..ONE.len() {
            if ONE.is_char_boundary(end) {
                let _ = parse(&ONE[..end], "cut");
            }
        }
        let bytes: Vec<u8> = (0..4000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = parse(&String::from_utf8_lossy(&bytes), "noise");
    }

    fn readers_dir() -> Option<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/ccid-data/readers");
        dir.is_dir().then_some(dir)
    }

    fn load(dir: &std::path::Path, name: &str) -> Vec<ReaderDump> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        parse(&text, name).unwrap()
    }

    #[test]
    fn every_shared_dump_parses() {
        let Some(dir) = readers_dir() else {
            println!("skipped: ../shared/ccid-data/readers is absent");
            return;
        };
        let mut files = 0;
        let mut devices = 0;
        let mut interfaces = 0;
        let mut with_descriptor = 0;
        let mut failures = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".txt") {
                continue;
            }
            files += 1;
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            match parse(&text, &name) {
                Ok(all) => {
                    devices += all.len();
                    for d in &all {
                        interfaces += d.interfaces.len();
                        with_descriptor += d.ccid_interfaces().count();
                        for i in d.ccid_interfaces() {
                            let c = i.descriptor.as_ref().unwrap();
                            assert_eq!(
                                CcidDescriptor::parse(&c.to_bytes()).as_ref(),
                                Ok(c),
                                "{name}"
                            );
                        }
                    }
                }
                Err(err) => failures.push(err.to_string()),
            }
        }
        println!("{files} dumps, {devices} devices, {interfaces} interfaces, {with_descriptor} with a CCID descriptor");
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(files > 0);
        assert_eq!(
            devices,
            files + 1,
            "only ELYCTIS_CL_reader.txt holds two devices"
        );
    }

    #[test]
    fn spot_checks_of_known_dumps() {
        let Some(dir) = readers_dir() else {
            println!("skipped: ../shared/ccid-data/readers is absent");
            return;
        };
        // Yubikey NEO: extended APDU, T=1 only, a wrapped line.
        let y = load(&dir, "Yubico_Yubikey_neo.txt");
        let (d, i) = (&y[0], &y[0].interfaces[0]);
        assert_eq!(
            (d.vendor_id, d.product_id, d.bcd_device),
            (0x1050, 0x0112, 0x0310)
        );
        assert_eq!(d.manufacturer.as_deref(), Some("Yubico"));
        assert_eq!(i.name, None);
        let c = i.descriptor.as_ref().unwrap();
        assert_eq!(c.dwProtocols, 2);
        assert_eq!(
            (c.dwDataRate, c.dwMaxIFSD, c.dwMaxCCIDMessageLength),
            (9600, 1400, 1400)
        );
        assert_eq!(c.dwFeatures, 0x0004_00FE);
        assert!(i.data_rates.is_empty() && i.clock_frequencies.is_empty());

        // Gemalto PDT: ICCD version B, control pipe only.
        let g = load(&dir, "Gemalto_PDT.txt");
        let i = &g[0].interfaces[0];
        assert_eq!((i.protocol, i.num_endpoints), (2, 0));
        assert_eq!(i.name.as_deref(), Some("ICCD"));
        assert_eq!(i.descriptor.as_ref().unwrap().dwDefaultClock, 3580);

        // Gem e-Seal Pro: class 0xFF, proprietary descriptor type, lists.
        let e = load(&dir, "Gem_e-SealPro.txt");
        assert_eq!(e[0].bcd_device, 0x0100);
        let i = &e[0].interfaces[0];
        assert_eq!((i.number, i.class, i.subclass), (1, 0xFF, 92));
        assert_eq!(i.descriptor.as_ref().unwrap().bDescriptorType, 0xFF);
        assert_eq!(i.clock_frequencies, vec![1500]);
        assert_eq!(i.data_rates, vec![4032, 23437, 46875]);

        // Access IS ATR220: five interfaces of one device.
        let a = load(&dir, "Access_IS_ATR220_0x0184.txt");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].product, None);
        let names: Vec<_> = a[0]
            .interfaces
            .iter()
            .map(|i| i.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["NFC0", "SMC0", "SMC1", "SMC2", "SMC3"]);
        assert_eq!(
            a[0].interfaces[0]
                .descriptor
                .as_ref()
                .unwrap()
                .dwMaximumClock,
            13560
        );

        // HID Crescendo: bcdDevice printed as `1.0`.
        let h = load(&dir, "HID_Global_Crescendo_Key_0x0028.txt");
        assert_eq!(h[0].bcd_device, 0x0100);

        // ELYCTIS: two devices in one file.
        let el = load(&dir, "ELYCTIS_CL_reader.txt");
        assert_eq!(el.len(), 2);
        assert_eq!((el[1].vendor_id, el[1].product_id), (0x04E6, 0x5810));
        assert_eq!(
            el[0].interfaces[0].descriptor.as_ref().unwrap().dwProtocols,
            0x0002_0003
        );

        // Verisign token: rate lines under bNumClockSupported, old layout.
        let v = load(&dir, "Verisign_secure_token.txt");
        assert_eq!(v[0].interfaces[0].data_rates, vec![4032, 23437, 46875]);
        assert_eq!(
            v[0].interfaces[0].descriptor.as_ref().unwrap().dwFeatures,
            0x0001_0230
        );
    }
}
