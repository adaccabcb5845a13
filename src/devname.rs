//! Device names pcscd passes to IFDHCreateChannelByName:
//!
//! * `usb:VVVV/PPPP` (VID/PID only),
//! * `usb:VVVV/PPPP:libudev:IF:/dev/bus/usb/BBB/DDD` (pcscd with libudev),
//! * `usb:VVVV/PPPP:libusb-1.0:B:D:IF` (pcscd with its libusb hotplug),
//! * on macOS, the reader's friendly name.
//!
//! Anything after the forms above is ignored, as libccid does.

#![forbid(unsafe_code)]

use thiserror::Error;

/// A parsed device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceName {
    /// A USB device.
    Usb(UsbName),
    /// Not a `usb:` name: on macOS, the friendly name of the reader.
    Friendly(String),
}

/// The parts of a `usb:` device name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsbName {
    /// idVendor, when given.
    pub vendor_id: Option<u16>,
    /// idProduct, when given.
    pub product_id: Option<u16>,
    /// bInterfaceNumber, when given.
    pub interface: Option<u8>,
    /// USB bus number, when given.
    pub bus: Option<u8>,
    /// USB device address, when given.
    pub address: Option<u8>,
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

fn hex16(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

fn dec8(s: &str) -> Option<u8> {
    let s = s.trim();
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a device name.
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
    let (ids, tail) = match rest.split_once(':') {
        Some((ids, tail)) => (ids, Some(tail)),
        None => (rest, None),
    };
    let (v, p) = ids
        .split_once('/')
        .ok_or(err("expected VVVV/PPPP after usb:"))?;
    u.vendor_id = Some(hex16(v).ok_or(err("vendor ID is not hexadecimal"))?);
    u.product_id = Some(hex16(p).ok_or(err("product ID is not hexadecimal"))?);
    let Some(tail) = tail else {
        return Ok(DeviceName::Usb(u));
    };
    if let Some(t) = tail.strip_prefix("libudev:") {
        // IF:/dev/bus/usb/BBB/DDD
        let (iface, node) = t.split_once(':').unwrap_or((t, ""));
        u.interface = Some(dec8(iface).ok_or(err("interface number after libudev:"))?);
        if let Some(path) = node.strip_prefix("/dev/bus/usb/") {
            let mut parts = path.split('/');
            let bus = parts.next().and_then(dec8);
            let addr = parts.next().and_then(dec8);
            if let (Some(b), Some(a)) = (bus, addr) {
                u.bus = Some(b);
                u.address = Some(a);
            }
        }
    } else if let Some(t) = tail.strip_prefix("libusb-1.0:") {
        // B:D:IF
        let mut parts = t.split(':');
        u.bus = Some(
            parts
                .next()
                .and_then(dec8)
                .ok_or(err("bus number after libusb-1.0:"))?,
        );
        u.address = Some(parts.next().and_then(dec8).ok_or(err("device address"))?);
        u.interface = Some(parts.next().and_then(dec8).ok_or(err("interface number"))?);
    }
    Ok(DeviceName::Usb(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb(n: &str) -> UsbName {
        match parse(n).unwrap() {
            DeviceName::Usb(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn vid_pid_only() {
        let u = usb("usb:08e6/3437");
        assert_eq!((u.vendor_id, u.product_id), (Some(0x08E6), Some(0x3437)));
        assert_eq!((u.interface, u.bus, u.address), (None, None, None));
        assert_eq!(usb("usb:08E6/3437").vendor_id, Some(0x08E6));
    }

    #[test]
    fn libudev_form() {
        let u = usb("usb:08e6/3437:libudev:0:/dev/bus/usb/008/047");
        assert_eq!(
            (u.interface, u.bus, u.address),
            (Some(0), Some(8), Some(47))
        );
        // A devnode not shaped /dev/bus/usb/B/D gives no bus/address.
        let u = usb("usb:08e6/3437:libudev:2:/dev/something");
        assert_eq!((u.interface, u.bus, u.address), (Some(2), None, None));
    }

    #[test]
    fn libusb_form() {
        let u = usb("usb:08e6/3437:libusb-1.0:7:99:1");
        assert_eq!(
            (u.bus, u.address, u.interface),
            (Some(7), Some(99), Some(1))
        );
    }

    #[test]
    fn any_usb_and_friendly() {
        assert_eq!(usb("usb:"), UsbName::default());
        assert_eq!(
            parse("Gemalto PC Twin Reader").unwrap(),
            DeviceName::Friendly("Gemalto PC Twin Reader".into())
        );
        // Unknown tails are ignored.
        assert_eq!(usb("usb:1050/0407:something").interface, None);
    }

    #[test]
    fn malformed_names_are_errors() {
        for n in [
            "usb:zz/0001",
            "usb:0001",
            "usb:00001/0001",
            "usb:0001/",
            "usb:0001/0002:libudev:x:/dev/bus/usb/1/2",
            "usb:0001/0002:libusb-1.0:1:2",
            "usb:0001/0002:libusb-1.0:1:2:999",
        ] {
            assert!(parse(n).is_err(), "{n}");
        }
    }
}
