//! The reader a replay emulates: its CCID class descriptor from a dump in
//! the `parse` tool's format (given, or found by VID:PID), checked against
//! what the frames show, or inferred from the frames alone.

use super::plan::{pps_shaped, t1_shaped, Plan};
use ccid::proto::descriptor::{CcidDescriptor, ExchangeLevel, Features};
use std::path::{Path, PathBuf};

/// One CCID interface described in a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// idVendor.
    pub vendor: Option<u16>,
    /// idProduct.
    pub product: Option<u16>,
    /// bInterfaceNumber.
    pub interface_number: u8,
    /// bInterfaceProtocol.
    pub interface_protocol: u8,
    /// The CCID class descriptor.
    pub descriptor: CcidDescriptor,
}

fn number(text: &str) -> Option<u32> {
    let tok = text.split_whitespace().next()?;
    if let Some(h) = tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        tok.parse().ok()
    }
}

/// `4.000 MHz` → 4000 kHz.
fn mhz_to_khz(text: &str) -> Option<u32> {
    let tok = text.split_whitespace().next()?;
    let (int, frac) = tok.split_once('.').unwrap_or((tok, "0"));
    let mut frac3: String = frac.chars().take(3).collect();
    while frac3.len() < 3 {
        frac3.push('0');
    }
    Some(int.parse::<u32>().ok()? * 1000 + frac3.parse::<u32>().ok()?)
}

/// `1.10` → 0x0110 (the tool prints `%X.%02X`).
fn bcd(text: &str) -> Option<u16> {
    let (hi, lo) = text.trim().split_once('.')?;
    Some((u16::from_str_radix(hi, 16).ok()? << 8) | u16::from_str_radix(lo.get(..2)?, 16).ok()?)
}

/// Sets one class-descriptor field; `false` if the key is not one.
fn class_field(d: &mut CcidDescriptor, key: &str, value: &str) -> Result<bool, ()> {
    let n = || number(value).ok_or(());
    match key {
        "bLength" => d.bLength = n()? as u8,
        "bDescriptorType" => d.bDescriptorType = n()? as u8,
        "bcdCCID" => d.bcdCCID = bcd(value).ok_or(())?,
        "bMaxSlotIndex" => d.bMaxSlotIndex = n()? as u8,
        "bVoltageSupport" => d.bVoltageSupport = n()? as u8,
        "dwProtocols" => {
            let mut it = value.split_whitespace();
            let hi = it.next().and_then(number).ok_or(())?;
            let lo = it.next().and_then(number).ok_or(())?;
            d.dwProtocols = (hi << 16) | (lo & 0xFFFF);
        }
        "dwDefaultClock" => d.dwDefaultClock = mhz_to_khz(value).ok_or(())?,
        "dwMaximumClock" => d.dwMaximumClock = mhz_to_khz(value).ok_or(())?,
        "bNumClockSupported" => d.bNumClockSupported = n()? as u8,
        "dwDataRate" => d.dwDataRate = n()?,
        "dwMaxDataRate" => d.dwMaxDataRate = n()?,
        "bNumDataRatesSupported" => d.bNumDataRatesSupported = n()? as u8,
        "dwMaxIFSD" => d.dwMaxIFSD = n()?,
        "dwSynchProtocols" => d.dwSynchProtocols = n()?,
        "dwMechanical" => d.dwMechanical = n()?,
        "dwFeatures" => d.dwFeatures = n()?,
        "dwMaxCCIDMessageLength" => d.dwMaxCCIDMessageLength = n()?,
        "bClassGetResponse" => d.bClassGetResponse = n()? as u8,
        "bClassEnvelope" => d.bClassEnvelope = n()? as u8,
        "wLcdLayout" => d.wLcdLayout = n()? as u16,
        "bPINSupport" => d.bPINSupport = n()? as u8,
        "bMaxCCIDBusySlots" => d.bMaxCCIDBusySlots = n()? as u8,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Parses a descriptor dump in the `parse` tool's format: every CCID
/// interface it describes, in order.
pub fn parse_dump(text: &str) -> Result<Vec<Dump>, String> {
    let mut out = Vec::new();
    let mut vendor = None;
    let mut product = None;
    let mut interface_number = 0u8;
    let mut interface_protocol = 0u8;
    // The class descriptor being read and how many fields it got.
    let mut class: Option<(CcidDescriptor, usize)> = None;
    let mut close = |class: &mut Option<(CcidDescriptor, usize)>,
                     vendor: Option<u16>,
                     product: Option<u16>,
                     number: u8,
                     protocol: u8|
     -> Result<(), String> {
        if let Some((d, seen)) = class.take() {
            if seen < 20 {
                return Err(format!("incomplete CCID class descriptor ({seen} fields)"));
            }
            out.push(Dump {
                vendor,
                product,
                interface_number: number,
                interface_protocol: protocol,
                descriptor: d,
            });
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line == "CCID Class Descriptor" {
            close(
                &mut class,
                vendor,
                product,
                interface_number,
                interface_protocol,
            )?;
            class = Some((CcidDescriptor::example(), 0));
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let bad = || format!("line {}: cannot read {key} '{value}'", i + 1);
        if let Some((d, seen)) = class.as_mut() {
            if indent >= 2 {
                if class_field(d, key, value).map_err(|_| bad())? {
                    *seen += 1;
                }
                continue;
            }
            close(
                &mut class,
                vendor,
                product,
                interface_number,
                interface_protocol,
            )?;
        }
        match key {
            "idVendor" => vendor = Some(number(value).ok_or_else(bad)? as u16),
            "idProduct" => product = Some(number(value).ok_or_else(bad)? as u16),
            "bInterfaceNumber" => interface_number = number(value).ok_or_else(bad)? as u8,
            "bInterfaceProtocol" => interface_protocol = number(value).ok_or_else(bad)? as u8,
            _ => {}
        }
    }
    close(
        &mut class,
        vendor,
        product,
        interface_number,
        interface_protocol,
    )?;
    if out.is_empty() {
        return Err("no CCID class descriptor in the dump".into());
    }
    Ok(out)
}

/// The interface number in a pcscd device name
/// (`usb:VVVV/PPPP:libudev:IF:…` or `usb:VVVV/PPPP:libusb-1.0:BUS:ADDR:IF`).
fn interface_of(name: &str) -> Option<u8> {
    let mut parts = name.split(':');
    let _usb = parts.next()?;
    let _ids = parts.next()?;
    match parts.next()? {
        "libudev" => parts.next()?.parse().ok(),
        "libusb-1.0" => parts.nth(2)?.parse().ok(),
        _ => None,
    }
}

/// The interface of `dumps` a trace used.
fn pick(dumps: Vec<Dump>, interface: Option<u8>) -> Option<Dump> {
    let wanted = interface.and_then(|n| dumps.iter().position(|d| d.interface_number == n));
    dumps.into_iter().nth(wanted.unwrap_or(0))
}

/// The descriptor a replay uses and how it was chosen.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The effective descriptor.
    pub descriptor: CcidDescriptor,
    /// VID:PID reported to the driver.
    pub vid_pid: (u16, u16),
    /// Where it comes from.
    pub source: String,
    /// Changes made so that it agrees with the recorded frames.
    pub adjustments: Vec<String>,
}

/// The first bPowerSelect the driver will use with `d` (as
/// `Slot::voltage_sequence` orders voltages with the default options).
fn first_power_select(d: &CcidDescriptor) -> u8 {
    let f = Features::from_bits_retain(d.dwFeatures);
    if f.intersects(Features::AUTO_VOLTAGE | Features::AUTO_ACTIVATION) {
        return 0;
    }
    let support = d.bVoltageSupport & 0x07;
    [(1u8, 0x01u8), (3, 0x04), (2, 0x02)]
        .iter()
        .find(|(_, bit)| support == 0 || support & bit != 0)
        .map_or(1, |(v, _)| *v)
}

/// Facts the recorded command frames show about the reader.
#[derive(Debug, Default)]
struct Evidence {
    power_select: Option<u8>,
    max_slot: u8,
    longest: usize,
    /// Every XfrBlock carries a T=1 block.
    t1_blocks: bool,
    chained: bool,
    set_parameters: bool,
    secure_ops: u8,
}

fn evidence(plan: &Plan) -> Evidence {
    let mut ev = Evidence::default();
    let (mut xfr, mut t1) = (0usize, 0usize);
    for rec in plan.devices.values() {
        for h in rec.hosts.iter().filter(|h| super::plan::complete(&h.data)) {
            let d = &h.data;
            ev.longest = ev.longest.max(d.len());
            if let Some(s) = d.get(5) {
                ev.max_slot = ev.max_slot.max((*s).min(15));
            }
            let data = d.get(10..).unwrap_or(&[]);
            match d.first() {
                Some(0x62) if ev.power_select.is_none() => ev.power_select = d.get(7).copied(),
                Some(0x6F) => {
                    xfr += 1;
                    if t1_shaped(data) {
                        t1 += 1;
                    }
                    if pps_shaped(data) {
                        ev.set_parameters = true;
                    }
                    if d.get(8).is_some_and(|l| *l != 0) || data.len() > 261 {
                        ev.chained = true;
                    }
                }
                Some(0x61) => ev.set_parameters = true,
                Some(0x69) => ev.secure_ops |= if data.first() == Some(&1) { 0x02 } else { 0x01 },
                _ => {}
            }
        }
    }
    ev.t1_blocks = xfr > 0 && t1 == xfr;
    ev
}

/// Makes `d` agree with what the frames show; returns what changed.
fn reconcile(d: &mut CcidDescriptor, ev: &Evidence) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(r) = ev.power_select {
        if first_power_select(d) != r {
            let auto = Features::AUTO_VOLTAGE.bits() | Features::AUTO_ACTIVATION.bits();
            if r == 0 {
                d.dwFeatures |= Features::AUTO_VOLTAGE.bits();
                notes.push(
                    "automatic voltage selection (the trace powers on with bPowerSelect 0)".into(),
                );
            } else if r <= 3 {
                d.dwFeatures &= !auto;
                d.bVoltageSupport = [0, 0x01, 0x02, 0x04][usize::from(r)];
                notes.push(format!(
                    "bVoltageSupport {:#04x} (the trace powers on with bPowerSelect {r})",
                    d.bVoltageSupport
                ));
            }
        }
    }
    if usize::from(d.bMaxSlotIndex) < usize::from(ev.max_slot) {
        d.bMaxSlotIndex = ev.max_slot;
        notes.push(format!(
            "bMaxSlotIndex {} (frames address that slot)",
            ev.max_slot
        ));
    }
    if ev.t1_blocks
        && matches!(
            d.exchange_level(),
            ExchangeLevel::ShortApdu | ExchangeLevel::ExtendedApdu
        )
    {
        d.dwFeatures = (d.dwFeatures & !0x0007_0000) | ExchangeLevel::Tpdu.feature_bits();
        notes.push("TPDU level (XfrBlocks carry T=1 blocks)".into());
    }
    if (d.dwMaxCCIDMessageLength as usize) < ev.longest {
        d.dwMaxCCIDMessageLength = ev.longest as u32;
        notes.push(format!(
            "dwMaxCCIDMessageLength {} (longest command)",
            ev.longest
        ));
    }
    notes
}

/// A descriptor built from the frames alone.
fn inferred(plan: &Plan, ev: &Evidence) -> (CcidDescriptor, Vec<String>) {
    let mut d = CcidDescriptor::example();
    let mut notes = Vec::new();
    let level = if ev.chained {
        ExchangeLevel::ExtendedApdu
    } else if ev.t1_blocks {
        ExchangeLevel::Tpdu
    } else {
        ExchangeLevel::ShortApdu
    };
    // Automatic clock and baud rate; PPS and parameters by the reader
    // unless the host was seen negotiating them.
    let mut features = 0x0000_0032 | level.feature_bits();
    if !ev.set_parameters {
        features |= 0x0000_0080 | 0x0000_0040;
    }
    if level == ExchangeLevel::Tpdu {
        features |= 0x0000_0400;
    }
    d.dwFeatures = features;
    d.dwMaxCCIDMessageLength = match level {
        ExchangeLevel::ExtendedApdu => 65544,
        _ => 271u32.max(ev.longest as u32),
    };
    d.bMaxSlotIndex = ev.max_slot;
    d.bPINSupport = ev.secure_ops;
    let printed = plan
        .descriptor_fields
        .iter()
        .find(|(n, _)| n == "dwFeatures")
        .and_then(|(_, v)| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok());
    match printed {
        Some(f) => {
            d.dwFeatures = f;
            notes.push(format!(
                "dwFeatures {f:#010x} as the host printed it ({} level)",
                d.exchange_level().name()
            ));
        }
        None => notes.push(format!("{} level", level.name())),
    }
    notes.extend(reconcile(&mut d, ev));
    (d, notes)
}

/// Where the shared data lives for a trace: `traces/INDEX.md` and
/// `readers/*.txt` beside it.
pub(crate) fn data_dir_for(trace: &Path) -> Option<PathBuf> {
    let parent = trace.parent()?.parent()?;
    parent
        .join("readers")
        .is_dir()
        .then(|| parent.to_path_buf())
}

/// VID:PID the INDEX.md row of `file_name` names.
fn index_vid_pid(index: &str, file_name: &str) -> Option<(u16, u16)> {
    let row = index
        .lines()
        .find(|l| l.starts_with('|') && l.contains(&format!("`{file_name}`")))?;
    let b = row.as_bytes();
    (0..b.len().saturating_sub(8)).find_map(|i| {
        let w = row.get(i..i + 9)?;
        let ok = w.as_bytes()[4] == b':'
            && w[..4].bytes().all(|c| c.is_ascii_hexdigit())
            && w[5..].bytes().all(|c| c.is_ascii_hexdigit())
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 9).is_none_or(|c| !c.is_ascii_alphanumeric());
        if !ok {
            return None;
        }
        Some((
            u16::from_str_radix(&w[..4], 16).ok()?,
            u16::from_str_radix(&w[5..], 16).ok()?,
        ))
    })
}

/// The dump in `readers` whose idVendor/idProduct match.
fn find_dump(readers: &Path, vid: u16, pid: u16) -> Option<(PathBuf, Vec<Dump>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(readers)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files.into_iter().find_map(|p| {
        let text = std::fs::read_to_string(&p).ok()?;
        let dumps = parse_dump(&text).ok()?;
        let first = dumps.first()?;
        (first.vendor == Some(vid) && first.product == Some(pid)).then_some((p, dumps))
    })
}

/// Chooses the descriptor of a replay.
pub(crate) fn choose(
    plan: &Plan,
    trace_path: Option<&Path>,
    given: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<Choice, String> {
    let ev = evidence(plan);
    let interface = plan.device_name.as_deref().and_then(interface_of);
    if let Some(path) = given {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let dumps = parse_dump(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let dump = pick(dumps, interface)
            .ok_or_else(|| format!("{}: no CCID interface", path.display()))?;
        let vid_pid = (
            dump.vendor.or(plan.vid_pid.map(|v| v.0)).unwrap_or(0),
            dump.product.or(plan.vid_pid.map(|v| v.1)).unwrap_or(0),
        );
        return Ok(Choice {
            descriptor: dump.descriptor,
            vid_pid,
            source: format!("given dump {}", path.display()),
            adjustments: Vec::new(),
        });
    }
    let data = data_dir
        .map(Path::to_path_buf)
        .or_else(|| trace_path.and_then(data_dir_for));
    let mut vid_pid = plan.vid_pid.or_else(|| {
        let name = plan.device_name.as_deref()?.strip_prefix("usb:")?;
        let (v, rest) = name.split_once('/')?;
        let p = rest.get(..4)?;
        Some((
            u16::from_str_radix(v, 16).ok()?,
            u16::from_str_radix(p, 16).ok()?,
        ))
    });
    let mut vid_source = "the trace";
    if vid_pid.is_none() {
        if let (Some(dir), Some(name)) = (
            data.as_ref(),
            trace_path
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str()),
        ) {
            if let Ok(index) = std::fs::read_to_string(dir.join("traces").join("INDEX.md")) {
                vid_pid = index_vid_pid(&index, name);
                vid_source = "INDEX.md";
            }
        }
    }
    if let (Some((vid, pid)), Some(dir)) = (vid_pid, data.as_ref()) {
        if let Some((path, dumps)) = find_dump(&dir.join("readers"), vid, pid) {
            let count = dumps.len();
            let Some(dump) = pick(dumps, interface) else {
                return Err(format!("{}: no CCID interface", path.display()));
            };
            let mut d = dump.descriptor;
            let adjustments = reconcile(&mut d, &ev);
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into());
            return Ok(Choice {
                descriptor: d,
                vid_pid: (vid, pid),
                source: format!(
                    "dump readers/{name}, interface {} of {count} ({vid:04X}:{pid:04X} from {vid_source})",
                    dump.interface_number
                ),
                adjustments,
            });
        }
    }
    let (d, notes) = inferred(plan, &ev);
    Ok(Choice {
        descriptor: d,
        vid_pid: vid_pid.unwrap_or((0, 0)),
        source: match vid_pid {
            Some((v, p)) => format!("inferred from the frames (no dump for {v:04X}:{p:04X})"),
            None => "inferred from the frames".into(),
        },
        adjustments: notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
 idVendor: 0x1209
  iManufacturer: Example
 idProduct: 0x2702
  iProduct: Example reader
 bcdDevice: 1.00 (firmware release?)
 bLength: 9
 bDescriptorType: 4
 bInterfaceNumber: 0
 bInterfaceProtocol: 0
  CCID Class Descriptor
  bLength: 0x36
  bDescriptorType: 0x21
  bcdCCID: 1.10
  bMaxSlotIndex: 0x01
  bVoltageSupport: 0x03
   5.0V
   3.0V
  dwProtocols: 0x0000 0x0002
   T=1
  dwDefaultClock: 3.571 MHz
  dwMaximumClock: 14.318 MHz
  bNumClockSupported: 0 (will use whatever is returned)
  dwDataRate: 9600 bps
  dwMaxDataRate: 625000 bps
  bNumDataRatesSupported: 0 (will use whatever is returned)
  dwMaxIFSD: 254
  dwSynchProtocols: 0x00000000
  dwMechanical: 0x00000000
   No special characteristics
  dwFeatures: 0x00010230
   ..01.. TPDU
  dwMaxCCIDMessageLength: 271 bytes
  bClassGetResponse: 0xFF
  bClassEnvelope: 0xFF
  wLcdLayout: 0x0000
  bPINSupport: 0x03
  bMaxCCIDBusySlots: 2
";

    #[test]
    fn dump_fields() {
        let all = parse_dump(DUMP).unwrap();
        assert_eq!(all.len(), 1);
        let d = all.into_iter().next().unwrap();
        assert_eq!((d.vendor, d.product), (Some(0x1209), Some(0x2702)));
        let c = d.descriptor;
        assert_eq!(c.bcdCCID, 0x0110);
        assert_eq!(c.bMaxSlotIndex, 1);
        assert_eq!(c.dwProtocols, 2);
        assert_eq!(c.dwDefaultClock, 3571);
        assert_eq!(c.dwMaximumClock, 14318);
        assert_eq!(c.dwFeatures, 0x0001_0230);
        assert_eq!(c.dwMaxCCIDMessageLength, 271);
        assert_eq!(c.bPINSupport, 3);
        assert_eq!(c.bMaxCCIDBusySlots, 2);
        assert!(parse_dump(" idVendor: 0x1209\n").is_err());
        assert!(parse_dump("  CCID Class Descriptor\n  bLength: 0xZZ\n").is_err());
    }

    #[test]
    fn power_select_reconciled() {
        let mut d = parse_dump(DUMP).unwrap().remove(0).descriptor;
        assert_eq!(first_power_select(&d), 1);
        let ev = Evidence {
            power_select: Some(0),
            ..Evidence::default()
        };
        let notes = reconcile(&mut d, &ev);
        assert_eq!(first_power_select(&d), 0);
        assert_eq!(notes.len(), 1);
        let ev = Evidence {
            power_select: Some(2),
            ..Evidence::default()
        };
        reconcile(&mut d, &ev);
        assert_eq!(first_power_select(&d), 2);
    }

    #[test]
    fn second_interface_and_device_names() {
        let two = format!(
            "{DUMP}{}",
            DUMP.replace(" bInterfaceNumber: 0", " bInterfaceNumber: 1")
                .replace("bMaxSlotIndex: 0x01", "bMaxSlotIndex: 0x00")
        );
        let all = parse_dump(&two).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].interface_number, 1);
        assert_eq!(all[1].descriptor.bMaxSlotIndex, 0);
        assert_eq!(all[0].descriptor.bMaxSlotIndex, 1);
        assert_eq!(
            interface_of("usb:096e/060d:libudev:1:/dev/bus/usb/002/033"),
            Some(1)
        );
        assert_eq!(interface_of("usb:08e6/3437:libusb-1.0:7:99:2"), Some(2));
        assert_eq!(interface_of("usb:08e6/3437"), None);
        assert_eq!(pick(all, Some(1)).unwrap().interface_number, 1);
    }

    #[test]
    fn index_rows() {
        let index = "| 05 | `05-x.log` | src | YubiKey 1050:0407, lun 10000 | a |\n\
                     | 19 | `19-y.log` | src | Touchatag (072f:90cc) | b |\n";
        assert_eq!(index_vid_pid(index, "05-x.log"), Some((0x1050, 0x0407)));
        assert_eq!(index_vid_pid(index, "19-y.log"), Some((0x072F, 0x90CC)));
        assert_eq!(index_vid_pid(index, "20-z.log"), None);
    }
}
