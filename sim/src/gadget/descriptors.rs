//! The FunctionFS descriptor and string blobs written to `ep0`
//! (`include/uapi/linux/usb/functionfs.h`, v2 format).
//!
//! One interface carrying the reader's 54-byte CCID class descriptor and its
//! endpoints, in full-speed and high-speed variants. The endpoints are
//! declared in a fixed order so that FunctionFS names their files `ep1`,
//! `ep2`, `ep3` in that order ([`EndpointKind`]).
#![forbid(unsafe_code)]

use ccid::proto::descriptor::CCID_DESCRIPTOR_LEN;
use ccid::transport::UsbInfo;

/// `FUNCTIONFS_DESCRIPTORS_MAGIC_V2`.
const DESCRIPTORS_MAGIC_V2: u32 = 3;
/// `FUNCTIONFS_STRINGS_MAGIC`.
const STRINGS_MAGIC: u32 = 2;
/// `FUNCTIONFS_HAS_FS_DESC`.
const HAS_FS_DESC: u32 = 1;
/// `FUNCTIONFS_HAS_HS_DESC`.
const HAS_HS_DESC: u32 = 2;
/// US English, the one language of the string table.
const LANG_EN_US: u16 = 0x0409;

/// Interface class of a CCID reader.
pub const CLASS_CCID: u8 = 0x0B;
/// Descriptor type of the CCID class descriptor.
pub const DESCRIPTOR_TYPE_CCID: u8 = 0x21;

/// wMaxPacketSize of bulk endpoints at full speed.
pub const BULK_MPS_FULL: u16 = 64;
/// wMaxPacketSize of bulk endpoints at high speed.
pub const BULK_MPS_HIGH: u16 = 512;
/// bInterval of the interrupt endpoint at full speed: 16 ms.
const INTERRUPT_INTERVAL_FULL: u8 = 16;
/// bInterval of the interrupt endpoint at high speed: 2^(8-1) microframes = 16 ms.
const INTERRUPT_INTERVAL_HIGH: u8 = 8;

/// One endpoint of the function. FunctionFS creates the files `ep1`, `ep2`,
/// ... in the order the endpoints are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// Bulk-OUT: commands from the host.
    BulkOut,
    /// Bulk-IN: responses to the host.
    BulkIn,
    /// Interrupt-IN: slot-change and hardware-error notifications.
    Interrupt,
}

/// Why a reader cannot be presented through FunctionFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptorError {
    /// The class descriptor is not 54 bytes long.
    ClassDescriptorLength(usize),
    /// FunctionFS accepts a type-0x21 class descriptor only after an
    /// interface of class 0x0B (or HID).
    InterfaceClass(u8),
    /// The class descriptor's bDescriptorType is neither 0x21 nor the 0xFF
    /// some proprietary readers use.
    ClassDescriptorType(u8),
    /// An interrupt wMaxPacketSize outside 1..=64 was asked for.
    InterruptPacketSize(u16),
    /// No interrupt wMaxPacketSize up to 64 exceeds the largest
    /// notification (bytes) of a reader with this many slots.
    NotificationTooLarge(usize),
    /// A string is too long or holds a NUL byte.
    BadString(String),
}

impl std::fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DescriptorError::ClassDescriptorLength(n) => {
                write!(
                    f,
                    "the CCID class descriptor has {n} bytes, FunctionFS needs exactly 54"
                )
            }
            DescriptorError::InterfaceClass(c) => write!(
                f,
                "interface class {c:#04x}: FunctionFS accepts the CCID class descriptor only \
                 after an interface of class 0x0B"
            ),
            DescriptorError::ClassDescriptorType(t) => {
                write!(f, "class descriptor type {t:#04x} (expected 0x21)")
            }
            DescriptorError::InterruptPacketSize(m) => {
                write!(f, "interrupt wMaxPacketSize {m}: must be 1 to 64")
            }
            DescriptorError::NotificationTooLarge(n) => write!(
                f,
                "the {n}-byte slot-change notification fills every interrupt packet up to 64 \
                 bytes (a full packet leaves the host's transfer open)"
            ),
            DescriptorError::BadString(s) => write!(f, "unusable USB string {s:?}"),
        }
    }
}

impl std::error::Error for DescriptorError {}

/// Everything FunctionFS needs to know about the function's one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionLayout {
    /// bInterfaceClass (0x0B).
    pub interface_class: u8,
    /// bInterfaceSubClass.
    pub interface_subclass: u8,
    /// bInterfaceProtocol: 0 CCID, 1 ICCD version A, 2 ICCD version B.
    pub interface_protocol: u8,
    /// The 54-byte class descriptor, its type byte set to 0x21.
    pub class_descriptor: [u8; CCID_DESCRIPTOR_LEN],
    /// The endpoints, in the order of their files.
    pub endpoints: Vec<EndpointKind>,
    /// wMaxPacketSize of the interrupt endpoint (both speeds).
    pub interrupt_packet_size: u16,
    /// The interface string (iInterface); `None`: iInterface 0, as on
    /// readers that have none.
    pub interface_name: Option<String>,
}

/// Size of the largest interrupt message a reader with `slots` slots sends:
/// NotifySlotChange is 1 + ceil(2·slots/8) bytes, HardwareError 4.
pub fn largest_notification(slots: usize) -> usize {
    (1 + (2 * slots.max(1)).div_ceil(8)).max(4)
}

/// The smallest of 8, 16, 32, 64 that is larger than every notification of
/// a reader with `slots` slots (a notification filling a whole packet would
/// leave the host's interrupt transfer open).
pub fn interrupt_packet_size_for(slots: usize) -> u16 {
    let need = largest_notification(slots);
    [8u16, 16, 32, 64]
        .into_iter()
        .find(|&m| usize::from(m) > need)
        .unwrap_or(64)
}

impl FunctionLayout {
    /// The layout presenting the interface described by `info`.
    /// `interrupt_packet_size` overrides the computed interrupt
    /// wMaxPacketSize; any value of 1 to 64 is taken, even one that
    /// notifications fill (to reproduce what that does to a host, see
    /// [`FunctionLayout::notifications_fill_packets`]).
    pub fn from_info(
        info: &UsbInfo,
        interrupt_packet_size: Option<u16>,
    ) -> Result<FunctionLayout, DescriptorError> {
        let desc = info.ccid_descriptor.as_slice();
        let mut class_descriptor = [0u8; CCID_DESCRIPTOR_LEN];
        if desc.len() != CCID_DESCRIPTOR_LEN {
            return Err(DescriptorError::ClassDescriptorLength(desc.len()));
        }
        class_descriptor.copy_from_slice(desc);
        if info.interface_class != CLASS_CCID {
            return Err(DescriptorError::InterfaceClass(info.interface_class));
        }
        match class_descriptor.get(1).copied() {
            Some(DESCRIPTOR_TYPE_CCID) => {}
            Some(0xFF) => class_descriptor[1] = DESCRIPTOR_TYPE_CCID,
            Some(t) => return Err(DescriptorError::ClassDescriptorType(t)),
            None => return Err(DescriptorError::ClassDescriptorLength(0)),
        }
        // bMaxSlotIndex is byte 4 of the class descriptor
        let slots = usize::from(class_descriptor.get(4).copied().unwrap_or(0)) + 1;
        let notification = largest_notification(slots);
        let int_mps = match interrupt_packet_size {
            Some(m) if (1..=64).contains(&m) => m,
            Some(m) => return Err(DescriptorError::InterruptPacketSize(m)),
            None => {
                let m = interrupt_packet_size_for(slots);
                if usize::from(m) <= notification {
                    return Err(DescriptorError::NotificationTooLarge(notification));
                }
                m
            }
        };
        let mut endpoints = Vec::new();
        if info.interface_protocol == 0 {
            endpoints.push(EndpointKind::BulkOut);
            endpoints.push(EndpointKind::BulkIn);
        }
        if info.has_interrupt {
            endpoints.push(EndpointKind::Interrupt);
        }
        let interface_name = info.interface_name.clone().filter(|s| !s.is_empty());
        Ok(FunctionLayout {
            interface_class: info.interface_class,
            interface_subclass: 0,
            interface_protocol: info.interface_protocol,
            class_descriptor,
            endpoints,
            interrupt_packet_size: int_mps,
            interface_name,
        })
    }

    /// Whether a notification can fill a whole interrupt packet, which
    /// leaves the host's interrupt transfer open until the next one (only
    /// with an explicit, too small wMaxPacketSize).
    pub fn notifications_fill_packets(&self) -> bool {
        let slots = usize::from(self.class_descriptor.get(4).copied().unwrap_or(0)) + 1;
        self.endpoints.contains(&EndpointKind::Interrupt)
            && usize::from(self.interrupt_packet_size) <= largest_notification(slots)
    }

    /// The file index (1 for `ep1`) of the first endpoint of `kind`.
    pub fn file_index(&self, kind: EndpointKind) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|&k| k == kind)
            .map(|i| i + 1)
    }

    fn descriptors_for(&self, high_speed: bool) -> Vec<u8> {
        let mut out = vec![
            9,
            4, // INTERFACE
            0, // bInterfaceNumber
            0, // bAlternateSetting
            self.endpoints.len() as u8,
            self.interface_class,
            self.interface_subclass,
            self.interface_protocol,
            // iInterface: the first string of the table, or none
            u8::from(self.interface_name.is_some()),
        ];
        out.extend_from_slice(&self.class_descriptor);
        let bulk = if high_speed {
            BULK_MPS_HIGH
        } else {
            BULK_MPS_FULL
        };
        for (i, kind) in self.endpoints.iter().enumerate() {
            let number = (i + 1) as u8;
            let (address, attributes, mps, interval) = match kind {
                EndpointKind::BulkOut => (number, 0x02, bulk, 0),
                EndpointKind::BulkIn => (0x80 | number, 0x02, bulk, 0),
                EndpointKind::Interrupt => (
                    0x80 | number,
                    0x03,
                    self.interrupt_packet_size,
                    if high_speed {
                        INTERRUPT_INTERVAL_HIGH
                    } else {
                        INTERRUPT_INTERVAL_FULL
                    },
                ),
            };
            out.extend_from_slice(&[7, 5, address, attributes]);
            out.extend_from_slice(&mps.to_le_bytes());
            out.push(interval);
        }
        out
    }

    /// Number of descriptors in one speed's list: interface, class
    /// descriptor, endpoints.
    fn descriptor_count(&self) -> u32 {
        2 + self.endpoints.len() as u32
    }

    /// The v2 descriptor blob (full and high speed).
    pub fn descriptors_blob(&self) -> Vec<u8> {
        let fs = self.descriptors_for(false);
        let hs = self.descriptors_for(true);
        let len = 4 * 5 + fs.len() + hs.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&DESCRIPTORS_MAGIC_V2.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&(HAS_FS_DESC | HAS_HS_DESC).to_le_bytes());
        out.extend_from_slice(&self.descriptor_count().to_le_bytes());
        out.extend_from_slice(&self.descriptor_count().to_le_bytes());
        out.extend_from_slice(&fs);
        out.extend_from_slice(&hs);
        out
    }

    /// The string blob: the interface name in US English, or an empty
    /// table.
    pub fn strings_blob(&self) -> Result<Vec<u8>, DescriptorError> {
        match &self.interface_name {
            Some(name) => strings_blob(&[name.as_str()]),
            None => strings_blob(&[]),
        }
    }
}

/// A FunctionFS string table with one language (US English); no strings
/// give a table with no language either.
pub fn strings_blob(strings: &[&str]) -> Result<Vec<u8>, DescriptorError> {
    if strings.is_empty() {
        let mut out = Vec::with_capacity(16);
        for v in [STRINGS_MAGIC, 16, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        return Ok(out);
    }
    let mut body = Vec::new();
    body.extend_from_slice(&LANG_EN_US.to_le_bytes());
    for s in strings {
        // a USB string descriptor holds at most 126 UTF-16 units
        if s.contains('\0') || s.encode_utf16().count() > 126 {
            return Err(DescriptorError::BadString((*s).to_string()));
        }
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let len = 16 + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&STRINGS_MAGIC.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccid::proto::descriptor::CcidDescriptor;

    fn info() -> UsbInfo {
        UsbInfo {
            vendor_id: 0x1209,
            product_id: 0x2702,
            interface_class: 0x0B,
            interface_protocol: 0,
            num_endpoints: 3,
            has_interrupt: true,
            ccid_descriptor: CcidDescriptor::example().to_bytes().to_vec(),
            interface_name: Some("CCID Interface".into()),
            ..UsbInfo::default()
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The single-slot blob of gadget-testbed.md §3, which the 6.1 kernel
    // accepted and usbcore enumerated.
    #[test]
    fn single_slot_blob_matches_the_known_good_layout() {
        let layout = FunctionLayout::from_info(&info(), None).unwrap();
        let blob = layout.descriptors_blob();
        let fs_body = "09 04 00 00 03 0b 00 00 01".to_string()
            + " 36 21 1001 00 07 03000000 a00f0000 a00f0000 00 002a0000 e74c0600 00 fe000000"
            + " 00000000 00000000 ba040400 0f010000 ff ff 0000 00 01"
            + " 07 05 01 02 4000 00  07 05 82 02 4000 00  07 05 83 03 0800 10";
        let hs_body = fs_body
            .replace("07 05 01 02 4000 00", "07 05 01 02 0002 00")
            .replace("07 05 82 02 4000 00", "07 05 82 02 0002 00")
            .replace("07 05 83 03 0800 10", "07 05 83 03 0800 08");
        let expected = hex(&format!(
            "03000000 bc000000 03000000 05000000 05000000 {fs_body} {hs_body}"
        ));
        assert_eq!(blob.len(), 188);
        assert_eq!(blob, expected);
    }

    #[test]
    fn strings_blob_matches_the_known_good_layout() {
        let layout = FunctionLayout::from_info(&info(), None).unwrap();
        let mut expected = hex("02000000 21000000 01000000 01000000 0904");
        expected.extend_from_slice(b"CCID Interface\0");
        assert_eq!(layout.strings_blob().unwrap(), expected);
        assert!(strings_blob(&["a\0b"]).is_err());
        assert!(strings_blob(&[&"x".repeat(127)]).is_err());
    }

    #[test]
    fn interrupt_packet_exceeds_every_notification() {
        assert_eq!(largest_notification(1), 4);
        assert_eq!(largest_notification(8), 4);
        assert_eq!(largest_notification(16), 5);
        assert_eq!(interrupt_packet_size_for(1), 8);
        assert_eq!(interrupt_packet_size_for(8), 8);
        // 28 slots: 1 + 7 = 8 bytes would fill an 8-byte packet
        assert_eq!(interrupt_packet_size_for(28), 16);
        // 256 slots need 65 bytes: no full-speed interrupt packet is larger
        assert_eq!(interrupt_packet_size_for(256), 64);
        let mut i = info();
        let mut d = CcidDescriptor::example();
        d.bMaxSlotIndex = 7;
        i.ccid_descriptor = d.to_bytes().to_vec();
        let l = FunctionLayout::from_info(&i, None).unwrap();
        assert_eq!(l.interrupt_packet_size, 8);
        assert!(!l.notifications_fill_packets());
        // an explicit small size is taken (a regression case for hosts)
        let l = FunctionLayout::from_info(&i, Some(2)).unwrap();
        assert_eq!(l.interrupt_packet_size, 2);
        assert!(l.notifications_fill_packets());
        assert_eq!(
            FunctionLayout::from_info(&i, Some(0)),
            Err(DescriptorError::InterruptPacketSize(0))
        );
        assert_eq!(
            FunctionLayout::from_info(&i, Some(128)),
            Err(DescriptorError::InterruptPacketSize(128))
        );
        d.bMaxSlotIndex = 255;
        i.ccid_descriptor = d.to_bytes().to_vec();
        assert_eq!(
            FunctionLayout::from_info(&i, None),
            Err(DescriptorError::NotificationTooLarge(65))
        );
        d.bMaxSlotIndex = 7;
        i.ccid_descriptor = d.to_bytes().to_vec();
        assert_eq!(
            FunctionLayout::from_info(&i, Some(16))
                .unwrap()
                .interrupt_packet_size,
            16
        );
    }

    #[test]
    fn refuses_what_functionfs_refuses() {
        let mut i = info();
        i.interface_class = 0xFF;
        assert_eq!(
            FunctionLayout::from_info(&i, None),
            Err(DescriptorError::InterfaceClass(0xFF))
        );
        let mut i = info();
        i.ccid_descriptor.pop();
        assert_eq!(
            FunctionLayout::from_info(&i, None),
            Err(DescriptorError::ClassDescriptorLength(53))
        );
        let mut i = info();
        i.ccid_descriptor[1] = 0x24;
        assert_eq!(
            FunctionLayout::from_info(&i, None),
            Err(DescriptorError::ClassDescriptorType(0x24))
        );
        let mut i = info();
        i.ccid_descriptor[1] = 0xFF;
        let l = FunctionLayout::from_info(&i, None).unwrap();
        assert_eq!(l.class_descriptor[1], 0x21);
    }

    #[test]
    fn endpoint_files_follow_the_protocol() {
        let l = FunctionLayout::from_info(&info(), None).unwrap();
        assert_eq!(l.file_index(EndpointKind::BulkOut), Some(1));
        assert_eq!(l.file_index(EndpointKind::BulkIn), Some(2));
        assert_eq!(l.file_index(EndpointKind::Interrupt), Some(3));
        let mut i = info();
        i.has_interrupt = false;
        let l = FunctionLayout::from_info(&i, None).unwrap();
        assert_eq!(l.endpoints, [EndpointKind::BulkOut, EndpointKind::BulkIn]);
        assert_eq!(l.descriptors_blob()[12..16], 4u32.to_le_bytes());
        // ICCD version B: control pipe and interrupt only
        let mut i = info();
        i.interface_protocol = 2;
        let l = FunctionLayout::from_info(&i, None).unwrap();
        assert_eq!(l.endpoints, [EndpointKind::Interrupt]);
        assert_eq!(l.file_index(EndpointKind::Interrupt), Some(1));
        let blob = l.descriptors_blob();
        // interface bNumEndpoints 1, protocol 2; the endpoint is 0x81
        assert_eq!(blob[20 + 4], 1);
        assert_eq!(blob[20 + 7], 2);
        assert_eq!(blob[20 + 9 + 54 + 2], 0x81);
    }

    #[test]
    fn reader_without_interface_string() {
        let mut i = info();
        i.interface_name = None;
        let l = FunctionLayout::from_info(&i, None).unwrap();
        assert_eq!(l.interface_name, None);
        let blob = l.descriptors_blob();
        // iInterface (byte 8 of the interface descriptor) is 0 at both speeds
        assert_eq!(blob[20 + 8], 0);
        let hs = 20 + (blob.len() - 20) / 2;
        assert_eq!(blob[hs + 8], 0);
        assert_eq!(
            l.strings_blob().unwrap(),
            hex("02000000 10000000 00000000 00000000")
        );
    }
}
