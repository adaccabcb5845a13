//! USB transport on rusb (libusb-1.0): finding the CCID interface a device
//! name designates, its endpoints and class descriptor, and bounded
//! transfers. Once libusb says the device is gone, no further call touches
//! libusb.

use super::{ControlSetup, Transport, TransportError, UsbInfo};
use crate::config::Config;
use crate::devname::{self, DeviceName, UsbName};
use crate::error::{Error, Result};
use crate::proto::descriptor::CCID_DESCRIPTOR_LEN;
use rusb::{Direction, GlobalContext, TransferType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Timeout of descriptor and string requests at open.
const STRING_TIMEOUT: Duration = Duration::from_millis(1000);

/// Finds a 54-byte CCID class descriptor (type 0x21, or 0xFF on some
/// proprietary readers) among the descriptors packed in `extra`.
pub fn find_class_descriptor(extra: &[u8]) -> Option<&[u8]> {
    let mut rest = extra;
    while let Some(&len) = rest.first() {
        let len = usize::from(len);
        if len < 2 || len > rest.len() {
            return None;
        }
        let (d, tail) = rest.split_at(len);
        if len == CCID_DESCRIPTOR_LEN && matches!(d.get(1), Some(0x21) | Some(0xFF)) {
            return Some(d);
        }
        rest = tail;
    }
    None
}

/// The class descriptor of an interface: after the interface descriptor,
/// or (some O2Micro readers) after its last endpoint. A class 0xFF
/// interface counts as CCID only with such a descriptor.
pub fn interface_class_descriptor<'a>(
    class: u8,
    interface_extra: &'a [u8],
    last_endpoint_extra: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if class != 0x0B && class != 0xFF {
        return None;
    }
    find_class_descriptor(interface_extra)
        .or_else(|| last_endpoint_extra.and_then(find_class_descriptor))
}

fn map(e: rusb::Error) -> TransportError {
    match e {
        rusb::Error::NoDevice => TransportError::NoDevice,
        rusb::Error::Timeout => TransportError::Timeout,
        rusb::Error::Pipe => TransportError::Pipe,
        rusb::Error::Overflow => TransportError::Overflow,
        rusb::Error::Access => TransportError::Access,
        rusb::Error::Busy => TransportError::Busy,
        rusb::Error::NotFound => TransportError::NotFound,
        rusb::Error::Interrupted => TransportError::Cancelled,
        e => TransportError::Io(e.to_string()),
    }
}

/// libusb treats a zero timeout as infinite: never pass one.
fn bounded(t: Duration) -> Duration {
    t.max(Duration::from_millis(1))
}

/// An opened and claimed CCID interface.
pub struct UsbTransport {
    handle: rusb::DeviceHandle<GlobalContext>,
    info: UsbInfo,
    bulk_in: u8,
    bulk_out: u8,
    interrupt: Option<u8>,
    gone: AtomicBool,
}

impl std::fmt::Debug for UsbTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsbTransport")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

struct Candidate {
    device: rusb::Device<GlobalContext>,
    config_value: u8,
    interface: u8,
    class: u8,
    protocol: u8,
    num_endpoints: u8,
    iinterface: Option<u8>,
    descriptor: Vec<u8>,
    bulk_in: Option<(u8, u16)>,
    bulk_out: Option<u8>,
    interrupt: Option<(u8, u16)>,
}

/// Facts about one CCID interface found on the bus (for `ccid-parse`).
#[derive(Debug, Clone)]
pub struct FoundInterface {
    /// Bus number.
    pub bus: u8,
    /// Device address.
    pub address: u8,
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bInterfaceNumber.
    pub interface: u8,
    /// bInterfaceClass.
    pub class: u8,
    /// bInterfaceProtocol.
    pub protocol: u8,
    /// The 54-byte class descriptor.
    pub descriptor: Vec<u8>,
}

fn bcd_of(v: rusb::Version) -> u16 {
    let major = u16::from(v.major());
    ((major / 10) << 12)
        | ((major % 10) << 8)
        | (u16::from(v.minor()) << 4)
        | u16::from(v.sub_minor())
}

fn candidates(device: &rusb::Device<GlobalContext>) -> Vec<Candidate> {
    let config = match device
        .active_config_descriptor()
        .or_else(|_| device.config_descriptor(0))
    {
        Ok(c) => c,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for iface in config.interfaces() {
        let Some(alt) = iface.descriptors().next() else {
            continue;
        };
        let endpoints: Vec<_> = alt.endpoint_descriptors().collect();
        let last_extra = endpoints.last().and_then(|e| e.extra());
        let Some(desc) = interface_class_descriptor(alt.class_code(), alt.extra(), last_extra)
        else {
            continue;
        };
        let mut c = Candidate {
            device: device.clone(),
            config_value: config.number(),
            interface: alt.interface_number(),
            class: alt.class_code(),
            protocol: alt.protocol_code(),
            num_endpoints: alt.num_endpoints(),
            iinterface: alt.description_string_index(),
            descriptor: desc.to_vec(),
            bulk_in: None,
            bulk_out: None,
            interrupt: None,
        };
        for e in &endpoints {
            match (e.transfer_type(), e.direction()) {
                (TransferType::Bulk, Direction::In) if c.bulk_in.is_none() => {
                    c.bulk_in = Some((e.address(), e.max_packet_size()))
                }
                (TransferType::Bulk, Direction::Out) if c.bulk_out.is_none() => {
                    c.bulk_out = Some(e.address())
                }
                (TransferType::Interrupt, Direction::In) if c.interrupt.is_none() => {
                    c.interrupt = Some((e.address(), e.max_packet_size()))
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Lists every CCID / ICCD interface on the bus.
pub fn list_ccid_interfaces() -> Vec<FoundInterface> {
    let Ok(list) = rusb::devices() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in list.iter() {
        let Ok(dd) = d.device_descriptor() else {
            continue;
        };
        for c in candidates(&d) {
            out.push(FoundInterface {
                bus: d.bus_number(),
                address: d.address(),
                vendor_id: dd.vendor_id(),
                product_id: dd.product_id(),
                interface: c.interface,
                class: c.class,
                protocol: c.protocol,
                descriptor: c.descriptor,
            });
        }
    }
    out
}

impl UsbTransport {
    /// Opens the CCID interface `name` designates, if `allow` accepts its
    /// VID/PID.
    pub fn open(
        name: &UsbName,
        allow: &dyn Fn(u16, u16) -> bool,
    ) -> std::result::Result<UsbTransport, TransportError> {
        let list = rusb::devices().map_err(map)?;
        let mut wrong_interface = false;
        for d in list.iter() {
            let Ok(dd) = d.device_descriptor() else {
                continue;
            };
            let (vid, pid) = (dd.vendor_id(), dd.product_id());
            if name.vendor_id.is_some_and(|v| v != vid) || name.product_id.is_some_and(|p| p != pid)
            {
                continue;
            }
            if name.bus.is_some_and(|b| b != d.bus_number())
                || name.address.is_some_and(|a| a != d.address())
            {
                continue;
            }
            if !allow(vid, pid) {
                continue;
            }
            let cands = candidates(&d);
            let chosen = match name.interface {
                Some(i) => {
                    let c = cands.into_iter().find(|c| c.interface == i);
                    if c.is_none() {
                        wrong_interface = true;
                    }
                    c
                }
                None => cands.into_iter().next(),
            };
            let Some(c) = chosen else { continue };
            match Self::open_candidate(c, &dd) {
                Ok(t) => return Ok(t),
                // Another process (or another slot's channel) holds this
                // interface; with no interface given, try the next device.
                Err(TransportError::Busy) if name.interface.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        if wrong_interface {
            log::info!("not a CCID interface of a composite device");
        }
        Err(TransportError::NotFound)
    }

    fn open_candidate(
        c: Candidate,
        dd: &rusb::DeviceDescriptor,
    ) -> std::result::Result<UsbTransport, TransportError> {
        let (Some((bulk_in, in_mps)), Some(bulk_out)) = (c.bulk_in, c.bulk_out) else {
            // ICCD tokens may have no bulk endpoints: they use the control pipe.
            return Self::claim(c, dd, (0, 64), 0);
        };
        Self::claim(c, dd, (bulk_in, in_mps), bulk_out)
    }

    fn claim(
        c: Candidate,
        dd: &rusb::DeviceDescriptor,
        bulk_in: (u8, u16),
        bulk_out: u8,
    ) -> std::result::Result<UsbTransport, TransportError> {
        let handle = c.device.open().map_err(map)?;
        let _ = handle.set_auto_detach_kernel_driver(true);
        handle.claim_interface(c.interface).map_err(map)?;
        let lang = handle
            .read_languages(STRING_TIMEOUT)
            .ok()
            .and_then(|l| l.first().copied());
        let string = |idx: Option<u8>| -> Option<String> {
            let lang = lang?;
            let idx = idx.filter(|i| *i != 0)?;
            handle
                .read_string_descriptor(lang, idx, STRING_TIMEOUT)
                .ok()
                .map(|s| s.chars().take(127).collect())
        };
        let ports = c.device.port_numbers().unwrap_or_default();
        let port_path = if ports.is_empty() {
            String::new()
        } else {
            let p: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            format!("{}-{}", c.device.bus_number(), p.join("."))
        };
        let info = UsbInfo {
            vendor_id: dd.vendor_id(),
            product_id: dd.product_id(),
            bcd_device: bcd_of(dd.device_version()),
            bus: c.device.bus_number(),
            address: c.device.address(),
            port_path,
            configuration: c.config_value,
            interface_number: c.interface,
            interface_class: c.class,
            interface_protocol: c.protocol,
            num_endpoints: c.num_endpoints,
            has_interrupt: c.interrupt.is_some(),
            bulk_in_packet_size: bulk_in.1,
            interrupt_packet_size: c.interrupt.map_or(0, |i| i.1),
            manufacturer: string(dd.manufacturer_string_index()),
            product: string(dd.product_string_index()),
            serial: string(dd.serial_number_string_index()),
            interface_name: string(c.iinterface),
            ccid_descriptor: c.descriptor,
        };
        Ok(UsbTransport {
            handle,
            info,
            bulk_in: bulk_in.0,
            bulk_out,
            interrupt: c.interrupt.map(|i| i.0),
            gone: AtomicBool::new(false),
        })
    }

    /// Marks the device gone: every later call fails at once.
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
    }

    fn check(&self) -> std::result::Result<(), TransportError> {
        if self.gone.load(Ordering::Acquire) {
            Err(TransportError::NoDevice)
        } else {
            Ok(())
        }
    }

    fn note<T>(&self, r: rusb::Result<T>) -> std::result::Result<T, TransportError> {
        r.map_err(|e| {
            let e = map(e);
            if e == TransportError::NoDevice {
                self.mark_gone();
            }
            e
        })
    }
}

impl Drop for UsbTransport {
    fn drop(&mut self) {
        if !self.gone.load(Ordering::Acquire) {
            let _ = self.handle.release_interface(self.info.interface_number);
        }
    }
}

impl Transport for UsbTransport {
    fn info(&self) -> &UsbInfo {
        &self.info
    }

    fn bulk_out(&self, data: &[u8], timeout: Duration) -> std::result::Result<(), TransportError> {
        self.check()?;
        let mut sent = 0;
        while sent < data.len() {
            let chunk = data.get(sent..).unwrap_or(&[]);
            let n = self.note(
                self.handle
                    .write_bulk(self.bulk_out, chunk, bounded(timeout)),
            )?;
            if n == 0 {
                return Err(TransportError::Io("bulk write made no progress".into()));
            }
            sent += n;
        }
        Ok(())
    }

    fn bulk_in(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, TransportError> {
        self.check()?;
        self.note(self.handle.read_bulk(self.bulk_in, buf, bounded(timeout)))
    }

    fn interrupt_in(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, TransportError> {
        self.check()?;
        let ep = self.interrupt.ok_or(TransportError::NotFound)?;
        self.note(self.handle.read_interrupt(ep, buf, bounded(timeout)))
    }

    fn control_in(
        &self,
        s: ControlSetup,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, TransportError> {
        self.check()?;
        self.note(self.handle.read_control(
            s.request_type,
            s.request,
            s.value,
            s.index,
            buf,
            bounded(timeout),
        ))
    }

    fn control_out(
        &self,
        s: ControlSetup,
        data: &[u8],
        timeout: Duration,
    ) -> std::result::Result<usize, TransportError> {
        self.check()?;
        self.note(self.handle.write_control(
            s.request_type,
            s.request,
            s.value,
            s.index,
            data,
            bounded(timeout),
        ))
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }
}

/// Opens the reader `name` for the registry: the Info.plist allow-list
/// (or, without one, the compiled reader table) decides which devices may
/// be opened; a non-CCID interface of a composite device is 'no such
/// device'.
pub fn open_by_name(name: &str, cfg: &Config) -> Result<Arc<dyn Transport>> {
    let parsed = devname::parse(name).map_err(|e| Error::NoReader(e.to_string()))?;
    let usb = match parsed {
        DeviceName::Usb(u) => u,
        DeviceName::Friendly(f) => {
            // macOS passes the friendly name: find its VID/PID in the table.
            let Some((vid, pid)) = cfg.ids_for_name(&f) else {
                return Err(Error::NoReader(format!(
                    "no reader called {f:?} in Info.plist"
                )));
            };
            UsbName {
                vendor_id: Some(vid),
                product_id: Some(pid),
                ..UsbName::default()
            }
        }
    };
    let allow = |v: u16, p: u16| cfg.is_listed(v, p);
    match UsbTransport::open(&usb, &allow) {
        Ok(t) => Ok(Arc::new(t)),
        Err(TransportError::NotFound) => Err(Error::NoReader(format!("{name}: no CCID interface"))),
        Err(TransportError::NoDevice) => Err(Error::NoDevice),
        Err(e) => Err(Error::Transport(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ccid_desc(kind: u8) -> Vec<u8> {
        let mut d = crate::proto::descriptor::CcidDescriptor::example()
            .to_bytes()
            .to_vec();
        d[1] = kind;
        d
    }

    #[test]
    fn class_descriptor_after_the_interface() {
        let d = ccid_desc(0x21);
        assert_eq!(interface_class_descriptor(0x0B, &d, None), Some(&d[..]));
        // Behind another class descriptor.
        let mut extra = vec![4, 0x24, 0, 0];
        extra.extend_from_slice(&d);
        assert_eq!(find_class_descriptor(&extra), Some(&d[..]));
    }

    #[test]
    fn class_descriptor_after_the_last_endpoint() {
        let d = ccid_desc(0x21);
        assert_eq!(
            interface_class_descriptor(0x0B, &[], Some(&d)),
            Some(&d[..])
        );
    }

    #[test]
    fn proprietary_class_needs_the_descriptor() {
        let d = ccid_desc(0xFF);
        assert_eq!(interface_class_descriptor(0xFF, &d, None), Some(&d[..]));
        assert_eq!(interface_class_descriptor(0xFF, &[], None), None);
        assert_eq!(interface_class_descriptor(0x03, &d, None), None);
    }

    #[test]
    fn malformed_extra_bytes() {
        assert_eq!(find_class_descriptor(&[0]), None);
        assert_eq!(find_class_descriptor(&[54, 0x21, 1]), None);
        assert_eq!(find_class_descriptor(&[1, 2, 3]), None);
        let mut short = ccid_desc(0x21);
        short[0] = 53;
        short.pop();
        assert_eq!(find_class_descriptor(&short), None);
    }

    #[test]
    fn bcd_device_round_trip() {
        for bcd in [0x0100u16, 0x0516, 0x5000, 0x1234, 0x0002] {
            assert_eq!(bcd_of(rusb::Version::from_bcd(bcd)), bcd);
        }
    }
}
