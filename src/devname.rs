//! Device names pcscd passes to IFDHCreateChannelByName:
//!
//! * `usb:VVVV/PPPP` (VID/PID only),
//! * `usb:VVVV/PPPP:libudev:IF:/dev/bus/usb/BBB/DDD` (pcscd with libudev;
//!   a devnode of another shape gives no bus/address),
//! * `usb:VVVV/PPPP:libusb-1.0:B:D:IF` (pcscd with its libusb hotplug),
//! * `usb:` alone: any CCID reader (IFDHCreateChannel),
//! * on macOS, the reader's friendly name: any string not starting with
//!   `usb:` is returned as [`DeviceName::Friendly`] and the caller decides
//!   what it means on its platform.
//!
//! Hexadecimal digits are case-insensitive. Text after the forms above is
//! ignored, as libccid does (it reads the names with `sscanf`).

#![forbid(unsafe_code)]

use std::fmt;
use thiserror::Error;

/// A parsed device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceName {
    /// A USB device.
    Usb(UsbName),
    /// Not a `usb:` name: on macOS, the friendly name of the reader.
    Friendly(String),
}

impl DeviceName {
    /// The USB parts, when this is a `usb:` name.
    pub fn usb(&self) -> Option<&UsbName> {
        match self {
            DeviceName::Usb(u) => Some(u),
            DeviceName::Friendly(_) => None,
        }
    }
}

/// The parts of a `usb:` device name. `None` fields match anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsbName {
    /// idVendor, when given.
    pub vendor_id: Option<u16>,
    /// idProduct, when given.
    pub product_id: Option<u16>,
    /// bInterfaceNumber, when given: exactly this interface is opened.
    pub interface: Option<u8>,
    /// USB bus number, when given.
    pub bus: Option<u8>,
    /// USB device address, when given.
    pub address: Option<u8>,
}

impl UsbName {
    /// Whether a device with these facts is the one named (fields the
    /// name leaves out match anything).
    pub fn matches_device(&self, vid: u16, pid: u16, bus: u8, address: u8) -> bool {
        self.vendor_id.map_or(true, |v| v == vid)
            && self.product_id.map_or(true, |p| p == pid)
            && self.bus.map_or(true, |b| b == bus)
            && self.address.map_or(true, |a| a == address)
    }
}

impl fmt::Display for UsbName {
    /// A `usb:` form of the name that parses back to the same parts: the
    /// libusb-1.0 form when bus, address and interface are all known, the
    /// libudev form without a devnode when only the interface is (a bus and
    /// address without an interface cannot be written, and are left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("usb:")?;
        if let (Some(v), Some(p)) = (self.vendor_id, self.product_id) {
            write!(f, "{v:04x}/{p:04x}")?;
            match (self.bus, self.address, self.interface) {
                (Some(b), Some(a), Some(i)) => write!(f, ":libusb-1.0:{b}:{a}:{i}")?,
                (_, _, Some(i)) => write!(f, ":libudev:{i}:")?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// A malformed `usb:` name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid device name {name:?}: {why}")]
pub struct DeviceNameError {
    /// The name.
    pub name: String,
    /// What is wrong.
    pub why: &'static str,
}

/// Splits the leading run of bytes accepted by `pred` off `s`.
fn leading(s: &str, pred: impl Fn(u8) -> bool) -> (&str, &str) {
    let n = s.bytes().take_while(|b| pred(*b)).count();
    // `pred` only accepts ASCII bytes, so `n` is a character boundary.
    s.split_at(n)
}

/// A hexadecimal ID of 1 to 4 digits at the start of `s`, and the rest.
fn hex16(s: &str) -> Option<(u16, &str)> {
    let (digits, rest) = leading(s, |b| b.is_ascii_hexdigit());
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u16::from_str_radix(digits, 16).ok().map(|v| (v, rest))
}

/// A decimal number of at most 3 digits (0..=255) at the start of `s`,
/// and the rest.
fn dec8(s: &str) -> Option<(u8, &str)> {
    let (digits, rest) = leading(s, |b| b.is_ascii_digit());
    if digits.is_empty() || digits.len() > 3 {
        return None;
    }
    digits.parse().ok().map(|v| (v, rest))
}

/// `IF:/dev/bus/usb/BBB/DDD` after `libudev:`.
fn parse_libudev(t: &str, u: &mut UsbName) -> Result<(), &'static str> {
    let (iface, rest) = dec8(t).ok_or("interface number expected after libudev:")?;
    u.interface = Some(iface);
    let node = rest.strip_prefix(':').unwrap_or("");
    if let Some(path) = node.strip_prefix("/dev/bus/usb/") {
        let bus_addr = dec8(path).and_then(|(bus, r)| {
            let (addr, _) = dec8(r.strip_prefix('/')?)?;
            Some((bus, addr))
        });
        if let Some((bus, addr)) = bus_addr {
            u.bus = Some(bus);
            u.address = Some(addr);
        }
    }
    Ok(())
}

/// `B:D:IF` after `libusb-1.0:`.
fn parse_libusb(t: &str, u: &mut UsbName) -> Result<(), &'static str> {
    let (bus, r) = dec8(t).ok_or("bus number expected after libusb-1.0:")?;
    let r = r
        .strip_prefix(':')
        .ok_or("':' and a device address expected after the bus number")?;
    let (addr, r) = dec8(r).ok_or("device address expected after the bus number")?;
    let r = r
        .strip_prefix(':')
        .ok_or("':' and an interface number expected after the device address")?;
    let (iface, _) = dec8(r).ok_or("interface number expected after the device address")?;
    u.bus = Some(bus);
    u.address = Some(addr);
    u.interface = Some(iface);
    Ok(())
}

/// Parses a device name. Never panics; a malformed `usb:` name is an error
/// naming what is wrong.
pub fn parse(name: &str) -> Result<DeviceName, DeviceNameError> {
    let err = |why| DeviceNameError {
        name: name.to_string(),
        why,
    };
    let Some(rest) = name.strip_prefix("usb:") else {
        return Ok(DeviceName::Friendly(name.to_string()));
    };
    let mut u = UsbName::default();
    if rest.is_empty() {
        return Ok(DeviceName::Usb(u));
    }
    let (vid, r) = hex16(rest).ok_or(err("vendor ID of 1 to 4 hex digits expected after usb:"))?;
    let r = r
        .strip_prefix('/')
        .ok_or(err("'/' expected after the vendor ID"))?;
    let (pid, tail) = hex16(r).ok_or(err("product ID of 1 to 4 hex digits expected after '/'"))?;
    u.vendor_id = Some(vid);
    u.product_id = Some(pid);
    if let Some(t) = tail.strip_prefix(":libudev:") {
        parse_libudev(t, &mut u).map_err(err)?;
    } else if let Some(t) = tail.strip_prefix(":libusb-1.0:") {
        parse_libusb(t, &mut u).map_err(err)?;
    }
    Ok(DeviceName::Usb(u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usb(n: &str) -> UsbName {
        match parse(n) {
            Ok(DeviceName::Usb(u)) => u,
            other => panic!("{n}: {other:?}"),
        }
    }

    #[test]
    fn vid_pid_only() {
        let u = usb("usb:08e6/3437");
        assert_eq!((u.vendor_id, u.product_id), (Some(0x08E6), Some(0x3437)));
        assert_eq!((u.interface, u.bus, u.address), (None, None, None));
        assert_eq!(usb("usb:08E6/3437"), u);
        assert_eq!(usb("usb:8e6/3437"), u);
        assert_eq!(usb("usb:Ab/cD").vendor_id, Some(0xAB));
        assert_eq!(usb("usb:Ab/cD").product_id, Some(0xCD));
    }

    #[test]
    fn libudev_form() {
        let u = usb("usb:08e6/3437:libudev:0:/dev/bus/usb/008/047");
        assert_eq!((u.vendor_id, u.product_id), (Some(0x08E6), Some(0x3437)));
        assert_eq!(
            (u.interface, u.bus, u.address),
            (Some(0), Some(8), Some(47))
        );
        let u = usb("usb:1050/0407:libudev:2:/dev/bus/usb/001/005");
        assert_eq!((u.interface, u.bus, u.address), (Some(2), Some(1), Some(5)));
    }

    #[test]
    fn libudev_devnode_of_another_shape() {
        for n in [
            "usb:08e6/3437:libudev:2:/dev/something",
            "usb:08e6/3437:libudev:2:/dev/bus/usb/x/1",
            "usb:08e6/3437:libudev:2:/dev/bus/usb/001",
            "usb:08e6/3437:libudev:2:",
            "usb:08e6/3437:libudev:2",
        ] {
            let u = usb(n);
            assert_eq!(
                (u.interface, u.bus, u.address),
                (Some(2), None, None),
                "{n}"
            );
        }
    }

    #[test]
    fn libusb_form() {
        let u = usb("usb:08e6/3437:libusb-1.0:7:99:1");
        assert_eq!((u.vendor_id, u.product_id), (Some(0x08E6), Some(0x3437)));
        assert_eq!(
            (u.bus, u.address, u.interface),
            (Some(7), Some(99), Some(1))
        );
    }

    #[test]
    fn trailing_text_is_ignored() {
        assert_eq!(
            usb("usb:08e6/3437:libusb-1.0:7:99:1:extra"),
            usb("usb:08e6/3437:libusb-1.0:7:99:1")
        );
        assert_eq!(
            usb("usb:08e6/3437:libudev:0:/dev/bus/usb/008/047/more"),
            usb("usb:08e6/3437:libudev:0:/dev/bus/usb/008/047")
        );
        assert_eq!(usb("usb:1050/0407:something"), usb("usb:1050/0407"));
        assert_eq!(usb("usb:1050/0407 trailing"), usb("usb:1050/0407"));
    }

    #[test]
    fn any_reader_and_friendly_names() {
        assert_eq!(usb("usb:"), UsbName::default());
        assert_eq!(
            parse("Gemalto PC Twin Reader").unwrap(),
            DeviceName::Friendly("Gemalto PC Twin Reader".into())
        );
        assert_eq!(parse("").unwrap(), DeviceName::Friendly(String::new()));
        // The prefix is case-sensitive, as pcscd writes it.
        assert!(matches!(
            parse("USB:08e6/3437"),
            Ok(DeviceName::Friendly(_))
        ));
        assert_eq!(parse("x").unwrap().usb(), None);
    }

    #[test]
    fn malformed_names_are_errors() {
        for (n, what) in [
            ("usb:zz/0001", "vendor ID"),
            ("usb:0001", "'/'"),
            ("usb:00001/0001", "vendor ID"),
            ("usb:0001/", "product ID"),
            ("usb:0001/10000", "product ID"),
            ("usb:/0001", "vendor ID"),
            ("usb:0001/0002:libudev:x:/dev/bus/usb/1/2", "interface"),
            ("usb:0001/0002:libudev:", "interface"),
            ("usb:0001/0002:libusb-1.0:1:2", "interface"),
            ("usb:0001/0002:libusb-1.0:1:2:999", "interface"),
            ("usb:0001/0002:libusb-1.0:1", "device address"),
            ("usb:0001/0002:libusb-1.0:", "bus"),
            ("usb:0001/0002:libusb-1.0:256:1:0", "bus"),
        ] {
            let e = parse(n).expect_err(n);
            assert_eq!(e.name, n);
            assert!(e.why.contains(what), "{n}: {}", e.why);
            assert!(e.to_string().contains(n), "{e}");
        }
    }

    #[test]
    fn matching_and_display() {
        let u = usb("usb:08e6/3437:libusb-1.0:7:99:1");
        assert!(u.matches_device(0x08E6, 0x3437, 7, 99));
        assert!(!u.matches_device(0x08E6, 0x3437, 7, 98));
        assert!(!u.matches_device(0x08E6, 0x3438, 7, 99));
        assert!(UsbName::default().matches_device(1, 2, 3, 4));
        assert_eq!(u.to_string(), "usb:08e6/3437:libusb-1.0:7:99:1");
        assert_eq!(usb("usb:08E6/3437").to_string(), "usb:08e6/3437");
        assert_eq!(UsbName::default().to_string(), "usb:");
        let u = usb("usb:08e6/3437:libudev:3:/dev/other");
        assert_eq!(u.to_string(), "usb:08e6/3437:libudev:3:");
        assert_eq!(usb(&u.to_string()), u);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,60}") {
            let _ = parse(&s);
            let _ = parse(&format!("usb:{s}"));
            let _ = parse(&format!("usb:08e6/3437:libudev:{s}"));
            let _ = parse(&format!("usb:08e6/3437:libusb-1.0:{s}"));
        }

        #[test]
        fn libusb_names_round_trip(v: u16, p: u16, b: u8, a: u8, i: u8) {
            let n = format!("usb:{v:04x}/{p:04X}:libusb-1.0:{b}:{a}:{i}");
            let u = usb(&n);
            prop_assert_eq!(u, UsbName {
                vendor_id: Some(v), product_id: Some(p),
                interface: Some(i), bus: Some(b), address: Some(a),
            });
            prop_assert_eq!(usb(&u.to_string()), u);
        }
    }
}
