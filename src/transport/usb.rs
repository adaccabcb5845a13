//! USB transport on rusb (libusb-1.0): finding the CCID interface a device
//! name designates, its endpoints and class descriptor, and bounded
//! transfers.
//!
//! libusb's default context serves the whole process; libusb creates it on
//! first use. Once libusb reports the device gone (or [`UsbTransport::
//! mark_gone`] is called), every call fails with
//! [`TransportError::NoDevice`] at once without touching libusb.
//!
//! The pure parts (where the class descriptor is, which endpoints are the
//! pipes, strings and port paths) are plain functions over bytes and
//! numbers, tested without hardware.

#![forbid(unsafe_code)]

use super::{ControlSetup, Transport, TransportError, UsbInfo};
use crate::config::Config;
use crate::devname::{self, DeviceName, UsbName};
use crate::error::{Error, Result};
use crate::proto::descriptor::CCID_DESCRIPTOR_LEN;
use rusb::{GlobalContext, TransferType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Timeout of each string descriptor request at open.
const STRING_TIMEOUT: Duration = Duration::from_millis(1000);

/// Longest string kept from a string descriptor, as libccid's 128-byte
/// buffers (NUL included) allow.
pub const MAX_STRING_LEN: usize = 127;

/// bInterfaceClass of CCID (and ICCD).
pub const CLASS_CCID: u8 = 0x0B;

/// bInterfaceClass of vendor-specific interfaces, CCID for some readers
/// when a CCID class descriptor follows.
pub const CLASS_VENDOR: u8 = 0xFF;

/// bDescriptorType of the CCID class descriptor (some proprietary readers
/// use 0xFF).
pub const CCID_DESCRIPTOR_TYPE: u8 = 0x21;

/// Finds a 54-byte CCID class descriptor (type 0x21, or 0xFF on some
/// proprietary readers) among the descriptors packed in `extra` (each one
/// starts with its length and type). Malformed packing ends the search.
pub fn find_class_descriptor(extra: &[u8]) -> Option<&[u8]> {
    let mut rest = extra;
    while let Some(&len) = rest.first() {
        let len = usize::from(len);
        if len < 2 || len > rest.len() {
            return None;
        }
        let (d, tail) = rest.split_at(len);
        if len == CCID_DESCRIPTOR_LEN
            && matches!(d.get(1), Some(&CCID_DESCRIPTOR_TYPE) | Some(&CLASS_VENDOR))
        {
            return Some(d);
        }
        rest = tail;
    }
    None
}

/// The class descriptor of an interface: among the bytes after the
/// interface descriptor, or (some O2Micro readers) after its last
/// endpoint. Only class 0x0B and 0xFF interfaces qualify, so a class 0xFF
/// interface counts as CCID exactly when it carries such a descriptor.
pub fn interface_class_descriptor<'a>(
    class: u8,
    interface_extra: &'a [u8],
    last_endpoint_extra: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if class != CLASS_CCID && class != CLASS_VENDOR {
        return None;
    }
    find_class_descriptor(interface_extra)
        .or_else(|| last_endpoint_extra.and_then(find_class_descriptor))
}

/// An endpoint descriptor's facts that choose the pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointFacts {
    /// bEndpointAddress (bit 7: IN).
    pub address: u8,
    /// bmAttributes (bits 0-1: 2 bulk, 3 interrupt).
    pub attributes: u8,
    /// wMaxPacketSize as in the descriptor (bits 11-12 are the
    /// high-bandwidth multiplier).
    pub max_packet_size: u16,
}

/// An endpoint address and its packet size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipe {
    /// bEndpointAddress.
    pub address: u8,
    /// Packet size (wMaxPacketSize bits 0-10).
    pub max_packet_size: u16,
}

/// The pipes of a CCID interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pipes {
    /// The first bulk-IN endpoint.
    pub bulk_in: Option<Pipe>,
    /// The first bulk-OUT endpoint.
    pub bulk_out: Option<Pipe>,
    /// The first interrupt-IN endpoint.
    pub interrupt_in: Option<Pipe>,
}

/// Chooses the first bulk-IN, bulk-OUT and interrupt-IN endpoints.
pub fn pick_pipes(endpoints: &[EndpointFacts]) -> Pipes {
    let mut p = Pipes::default();
    for e in endpoints {
        let pipe = Pipe {
            address: e.address,
            max_packet_size: e.max_packet_size & 0x07FF,
        };
        let input = e.address & 0x80 != 0;
        let slot = match (e.attributes & 0x03, input) {
            (2, true) => &mut p.bulk_in,
            (2, false) => &mut p.bulk_out,
            (3, true) => &mut p.interrupt_in,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(pipe);
        }
    }
    p
}

/// A string descriptor as libccid keeps it: ASCII (other characters become
/// `?`), at most [`MAX_STRING_LEN`] characters.
pub fn ascii_bounded(s: &str) -> String {
    s.chars()
        .take(MAX_STRING_LEN)
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// The sysfs-style port path of a device: `bus-port.port.port`; empty when
/// the ports are not known.
pub fn port_path(bus: u8, ports: &[u8]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let p: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    format!("{bus}-{}", p.join("."))
}

/// bcdDevice from rusb's decoded version.
fn bcd_of(v: rusb::Version) -> u16 {
    let major = u16::from(v.major());
    ((major / 10) << 12)
        | ((major % 10) << 8)
        | (u16::from(v.minor()) << 4)
        | u16::from(v.sub_minor())
}

/// Maps libusb errors to transport errors.
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

/// A CCID interface found in a device's active configuration.
struct Candidate {
    device: rusb::Device<GlobalContext>,
    config_value: u8,
    interface: u8,
    class: u8,
    protocol: u8,
    num_endpoints: u8,
    iinterface: Option<u8>,
    descriptor: Vec<u8>,
    pipes: Pipes,
}

fn transfer_bits(t: TransferType) -> u8 {
    match t {
        TransferType::Control => 0,
        TransferType::Isochronous => 1,
        TransferType::Bulk => 2,
        TransferType::Interrupt => 3,
    }
}

/// The CCID interfaces (first alternate setting) of a device's active
/// configuration (or its first one when none is active).
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
        let facts: Vec<EndpointFacts> = endpoints
            .iter()
            .map(|e| EndpointFacts {
                address: e.address(),
                attributes: transfer_bits(e.transfer_type()),
                max_packet_size: e.max_packet_size(),
            })
            .collect();
        out.push(Candidate {
            device: device.clone(),
            config_value: config.number(),
            interface: alt.interface_number(),
            class: alt.class_code(),
            protocol: alt.protocol_code(),
            num_endpoints: alt.num_endpoints(),
            iinterface: alt.description_string_index(),
            descriptor: desc.to_vec(),
            pipes: pick_pipes(&facts),
        });
    }
    out
}

/// Reads a device's strings through `handle` (ASCII, bounded); `None` for
/// absent or unreadable ones.
struct Strings<'a> {
    handle: &'a rusb::DeviceHandle<GlobalContext>,
    lang: Option<rusb::Language>,
}

impl<'a> Strings<'a> {
    fn new(handle: &'a rusb::DeviceHandle<GlobalContext>) -> Self {
        let lang = handle
            .read_languages(STRING_TIMEOUT)
            .ok()
            .and_then(|l| l.first().copied());
        Strings { handle, lang }
    }

    fn get(&self, index: Option<u8>) -> Option<String> {
        let index = index.filter(|i| *i != 0)?;
        self.handle
            .read_string_descriptor(self.lang?, index, STRING_TIMEOUT)
            .ok()
            .map(|s| ascii_bounded(&s))
    }
}

/// The facts of a candidate interface; strings when `strings` is given.
fn usb_info(c: &Candidate, dd: &rusb::DeviceDescriptor, strings: Option<&Strings<'_>>) -> UsbInfo {
    let s = |i: Option<u8>| strings.and_then(|st| st.get(i));
    UsbInfo {
        vendor_id: dd.vendor_id(),
        product_id: dd.product_id(),
        bcd_device: bcd_of(dd.device_version()),
        bus: c.device.bus_number(),
        address: c.device.address(),
        port_path: port_path(
            c.device.bus_number(),
            &c.device.port_numbers().unwrap_or_default(),
        ),
        configuration: c.config_value,
        interface_number: c.interface,
        interface_class: c.class,
        interface_protocol: c.protocol,
        num_endpoints: c.num_endpoints,
        has_interrupt: c.pipes.interrupt_in.is_some(),
        bulk_in_packet_size: c.pipes.bulk_in.map_or(0, |p| p.max_packet_size),
        interrupt_packet_size: c.pipes.interrupt_in.map_or(0, |p| p.max_packet_size),
        manufacturer: s(dd.manufacturer_string_index()),
        product: s(dd.product_string_index()),
        serial: s(dd.serial_number_string_index()),
        interface_name: s(c.iinterface),
        ccid_descriptor: c.descriptor.clone(),
    }
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
    /// Everything else known about it; the strings only when the device
    /// could be opened (permissions).
    pub info: UsbInfo,
    /// wMaxPacketSize of bulk-OUT (0 without one).
    pub bulk_out_packet_size: u16,
}

/// Lists every CCID / ICCD interface on the bus (class 0x0B, or 0xFF with
/// a CCID class descriptor), without claiming any.
pub fn list_ccid_interfaces() -> std::result::Result<Vec<FoundInterface>, TransportError> {
    let list = rusb::devices().map_err(map)?;
    let mut out = Vec::new();
    for d in list.iter() {
        let Ok(dd) = d.device_descriptor() else {
            continue;
        };
        let cands = candidates(&d);
        if cands.is_empty() {
            continue;
        }
        let handle = d.open().ok();
        let strings = handle.as_ref().map(Strings::new);
        for c in &cands {
            out.push(FoundInterface {
                bus: d.bus_number(),
                address: d.address(),
                vendor_id: dd.vendor_id(),
                product_id: dd.product_id(),
                interface: c.interface,
                info: usb_info(c, &dd, strings.as_ref()),
                bulk_out_packet_size: c.pipes.bulk_out.map_or(0, |p| p.max_packet_size),
            });
        }
    }
    Ok(out)
}

/// An opened and claimed CCID interface.
pub struct UsbTransport {
    handle: rusb::DeviceHandle<GlobalContext>,
    info: UsbInfo,
    bulk_in: Option<u8>,
    bulk_out: Option<u8>,
    interrupt_in: Option<u8>,
    gone: AtomicBool,
}

impl std::fmt::Debug for UsbTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsbTransport")
            .field("info", &self.info)
            .field("gone", &self.is_gone())
            .finish_non_exhaustive()
    }
}

impl UsbTransport {
    /// Opens and claims the CCID interface `name` designates, on a device
    /// whose VID/PID `allow` accepts (the Info.plist allow-list).
    ///
    /// Devices are filtered by VID/PID and, when the name gives them, bus
    /// and address. With an interface number, exactly that interface is
    /// opened: a non-CCID one is [`TransportError::NotFound`]. Without
    /// one, the first CCID interface whose claim succeeds is used (a busy
    /// one, e.g. an identical reader already open, is skipped). A
    /// [`DeviceName::Friendly`] name is not resolved here: it gives
    /// `NotFound` (see [`open_by_name`]).
    pub fn open(
        name: &DeviceName,
        allow: &dyn Fn(u16, u16) -> bool,
    ) -> std::result::Result<UsbTransport, TransportError> {
        match name {
            DeviceName::Usb(u) => Self::open_usb(u, allow),
            DeviceName::Friendly(f) => {
                log::info!("{f:?}: a friendly name, not a USB device name");
                Err(TransportError::NotFound)
            }
        }
    }

    fn open_usb(
        name: &UsbName,
        allow: &dyn Fn(u16, u16) -> bool,
    ) -> std::result::Result<UsbTransport, TransportError> {
        let list = rusb::devices().map_err(map)?;
        let mut busy = false;
        for d in list.iter() {
            let Ok(dd) = d.device_descriptor() else {
                continue;
            };
            let (vid, pid) = (dd.vendor_id(), dd.product_id());
            if !name.matches_device(vid, pid, d.bus_number(), d.address()) {
                continue;
            }
            let cands = candidates(&d);
            if cands.is_empty() {
                continue;
            }
            if !allow(vid, pid) {
                log::info!("{vid:04X}:{pid:04X} is not in the reader list (Info.plist)");
                continue;
            }
            let chosen: Vec<Candidate> = match name.interface {
                Some(i) => match cands.into_iter().find(|c| c.interface == i) {
                    Some(c) => vec![c],
                    None => {
                        log::info!(
                            "{name}: interface {i} of {vid:04X}:{pid:04X} is not a CCID interface"
                        );
                        continue;
                    }
                },
                None => cands,
            };
            for c in chosen {
                match Self::claim(c, &dd) {
                    Ok(t) => return Ok(t),
                    // Held by another process, or by another channel of
                    // ours: with no interface given, try the next one.
                    Err(TransportError::Busy) if name.interface.is_none() => busy = true,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(if busy {
            TransportError::Busy
        } else {
            TransportError::NotFound
        })
    }

    fn claim(
        c: Candidate,
        dd: &rusb::DeviceDescriptor,
    ) -> std::result::Result<UsbTransport, TransportError> {
        let handle = c.device.open().map_err(map)?;
        // Unsupported on some platforms; claiming then reports the problem.
        let _ = handle.set_auto_detach_kernel_driver(true);
        handle.claim_interface(c.interface).map_err(map)?;
        let info = usb_info(&c, dd, Some(&Strings::new(&handle)));
        Ok(UsbTransport {
            bulk_in: c.pipes.bulk_in.map(|p| p.address),
            bulk_out: c.pipes.bulk_out.map(|p| p.address),
            interrupt_in: c.pipes.interrupt_in.map(|p| p.address),
            handle,
            info,
            gone: AtomicBool::new(false),
        })
    }

    /// Marks the device gone (TAG_IFD_DEVICE_REMOVED): every later call
    /// fails at once with [`TransportError::NoDevice`].
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
    }

    fn check(&self) -> std::result::Result<(), TransportError> {
        if self.is_gone() {
            Err(TransportError::NoDevice)
        } else {
            Ok(())
        }
    }

    /// Maps a libusb result, remembering a vanished device.
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
        if !self.is_gone() {
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
        let ep = self.bulk_out.ok_or(TransportError::NotFound)?;
        let mut sent = 0;
        while sent < data.len() {
            let chunk = data.get(sent..).unwrap_or(&[]);
            let n = self.note(self.handle.write_bulk(ep, chunk, bounded(timeout)))?;
            if n == 0 {
                return Err(TransportError::Io("bulk-OUT write made no progress".into()));
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
        let ep = self.bulk_in.ok_or(TransportError::NotFound)?;
        self.note(self.handle.read_bulk(ep, buf, bounded(timeout)))
    }

    fn interrupt_in(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, TransportError> {
        self.check()?;
        let ep = self.interrupt_in.ok_or(TransportError::NotFound)?;
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

/// Opens the reader `name` for the registry. The configuration's
/// allow-list decides which devices may be opened. A friendly name (macOS)
/// is looked up in the allow-list for its VID/PID. Not finding a CCID
/// interface (a non-CCID interface of a composite device included) is
/// [`Error::NoReader`], pcscd's 'no such device'.
pub fn open_by_name(name: &str, cfg: &Config) -> Result<Arc<dyn Transport>> {
    let parsed = match devname::parse(name).map_err(|e| Error::NoReader(e.to_string()))? {
        DeviceName::Friendly(f) => {
            let Some((vid, pid)) = cfg.ids_for_name(&f) else {
                return Err(Error::NoReader(format!(
                    "no reader called {f:?} in Info.plist"
                )));
            };
            DeviceName::Usb(UsbName {
                vendor_id: Some(vid),
                product_id: Some(pid),
                ..UsbName::default()
            })
        }
        usb => usb,
    };
    let allow = |v: u16, p: u16| cfg.is_listed(v, p);
    match UsbTransport::open(&parsed, &allow) {
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
        // Behind another class-specific descriptor.
        let mut extra = vec![4, 0x24, 0, 0];
        extra.extend_from_slice(&d);
        assert_eq!(find_class_descriptor(&extra), Some(&d[..]));
        // The interface's own bytes win over the endpoint's.
        let other = ccid_desc(0xFF);
        assert_eq!(
            interface_class_descriptor(0x0B, &d, Some(&other)),
            Some(&d[..])
        );
    }

    #[test]
    fn class_descriptor_after_the_last_endpoint() {
        let d = ccid_desc(0x21);
        assert_eq!(
            interface_class_descriptor(0x0B, &[], Some(&d)),
            Some(&d[..])
        );
        assert_eq!(interface_class_descriptor(0x0B, &[], None), None);
        assert_eq!(interface_class_descriptor(0x0B, &[], Some(&[])), None);
    }

    #[test]
    fn proprietary_class_needs_the_descriptor() {
        let d = ccid_desc(0xFF);
        assert_eq!(interface_class_descriptor(0xFF, &d, None), Some(&d[..]));
        assert_eq!(
            interface_class_descriptor(0xFF, &ccid_desc(0x21), None).map(<[u8]>::len),
            Some(54)
        );
        assert_eq!(interface_class_descriptor(0xFF, &[], None), None);
        assert_eq!(
            interface_class_descriptor(0xFF, &[9, 0x21, 0, 0, 0, 0, 0, 0, 0], None),
            None
        );
        // Other classes never qualify, whatever follows them.
        assert_eq!(interface_class_descriptor(0x03, &d, None), None);
        assert_eq!(
            interface_class_descriptor(0x08, &ccid_desc(0x21), None),
            None
        );
    }

    #[test]
    fn malformed_extra_bytes() {
        assert_eq!(find_class_descriptor(&[]), None);
        assert_eq!(find_class_descriptor(&[0]), None);
        assert_eq!(find_class_descriptor(&[54, 0x21, 1]), None);
        assert_eq!(find_class_descriptor(&[1, 2, 3]), None);
        let mut short = ccid_desc(0x21);
        short[0] = 53;
        short.pop();
        assert_eq!(find_class_descriptor(&short), None);
        // A 54-byte descriptor of another type is not the class descriptor.
        assert_eq!(find_class_descriptor(&ccid_desc(0x24)), None);
    }

    #[test]
    fn pipes_are_the_first_of_each_kind() {
        let ep = |address, attributes, max_packet_size| EndpointFacts {
            address,
            attributes,
            max_packet_size,
        };
        let p = pick_pipes(&[
            ep(0x01, 0x02, 64),
            ep(0x82, 0x02, 512),
            ep(0x83, 0x03, 8),
            ep(0x84, 0x02, 64),
            ep(0x85, 0x01, 1023),
        ]);
        assert_eq!(
            p.bulk_out,
            Some(Pipe {
                address: 0x01,
                max_packet_size: 64
            })
        );
        assert_eq!(
            p.bulk_in,
            Some(Pipe {
                address: 0x82,
                max_packet_size: 512
            })
        );
        assert_eq!(
            p.interrupt_in,
            Some(Pipe {
                address: 0x83,
                max_packet_size: 8
            })
        );
        // High-bandwidth bits are not part of the packet size.
        let p = pick_pipes(&[ep(0x81, 0x03, 0x1808)]);
        assert_eq!(p.interrupt_in.map(|p| p.max_packet_size), Some(8));
        // ICCD tokens: no endpoints at all; an interrupt-OUT is ignored.
        assert_eq!(pick_pipes(&[]), Pipes::default());
        assert_eq!(pick_pipes(&[ep(0x02, 0x03, 8)]), Pipes::default());
    }

    #[test]
    fn strings_and_port_paths() {
        assert_eq!(
            ascii_bounded("Gemalto PC Twin Reader"),
            "Gemalto PC Twin Reader"
        );
        assert_eq!(ascii_bounded("Lecteur à puce"), "Lecteur ? puce");
        assert_eq!(ascii_bounded(&"x".repeat(300)).len(), MAX_STRING_LEN);
        assert_eq!(port_path(1, &[2, 3, 4]), "1-2.3.4");
        assert_eq!(port_path(3, &[1]), "3-1");
        assert_eq!(port_path(3, &[]), "");
    }

    #[test]
    fn libusb_errors_map_one_to_one() {
        assert_eq!(map(rusb::Error::NoDevice), TransportError::NoDevice);
        assert_eq!(map(rusb::Error::Timeout), TransportError::Timeout);
        assert_eq!(map(rusb::Error::Pipe), TransportError::Pipe);
        assert_eq!(map(rusb::Error::Overflow), TransportError::Overflow);
        assert_eq!(map(rusb::Error::Access), TransportError::Access);
        assert_eq!(map(rusb::Error::Busy), TransportError::Busy);
        assert_eq!(map(rusb::Error::NotFound), TransportError::NotFound);
        assert_eq!(map(rusb::Error::Interrupted), TransportError::Cancelled);
        assert!(matches!(map(rusb::Error::Io), TransportError::Io(_)));
        assert_eq!(bounded(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(bounded(Duration::from_secs(3)), Duration::from_secs(3));
    }

    #[test]
    fn bcd_device_round_trip() {
        for bcd in [0x0100u16, 0x0516, 0x5000, 0x1234, 0x0002] {
            assert_eq!(bcd_of(rusb::Version::from_bcd(bcd)), bcd);
        }
    }

    #[test]
    fn friendly_names_are_not_opened_here() {
        let r = UsbTransport::open(&DeviceName::Friendly("Some Reader".into()), &|_, _| true);
        assert_eq!(r.err(), Some(TransportError::NotFound));
        // Unknown friendly names and malformed names fail before any USB I/O.
        let cfg = Config::default();
        assert!(matches!(
            open_by_name("Some Reader", &cfg),
            Err(Error::NoReader(_))
        ));
        assert!(matches!(
            open_by_name("usb:zz/1", &cfg),
            Err(Error::NoReader(_))
        ));
    }
}
