//! The C ABI called the way pcscd calls it, against scripted devices:
//! null pointers, short buffers, unknown Luns, unknown tags and codes.

use super::*;
use crate::proto::descriptor::CcidDescriptor;
use crate::proto::message::{Command, Header, MessageType, Response, SlotError, Status};
use crate::reader::testing::Scripted;
use crate::transport::Transport;
use std::sync::{Arc, Mutex, Once};

// The exported functions are `unsafe`: these test wrappers call them with
// pointers to live local buffers, or null where the test says so.
macro_rules! safe {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name($($arg: $ty),*) -> RESPONSECODE {
            // SAFETY: every pointer passed in the tests is null or points to
            // a live buffer of at least the length passed with it.
            unsafe { super::$name($($arg),*) }
        }
    )*};
}
safe! {
    IFDHCreateChannelByName(lun: DWORD, name: LPSTR);
    IFDHGetCapabilities(lun: DWORD, tag: DWORD, len: PDWORD, value: PUCHAR);
    IFDHSetCapabilities(lun: DWORD, tag: DWORD, len: DWORD, value: PUCHAR);
    IFDHPowerICC(lun: DWORD, action: DWORD, atr: PUCHAR, len: PDWORD);
    IFDHTransmitToICC(lun: DWORD, pci: SCARD_IO_HEADER, tx: PUCHAR, txlen: DWORD, rx: PUCHAR, rxlen: PDWORD, recv: *mut SCARD_IO_HEADER);
    IFDHControl(lun: DWORD, code: DWORD, tx: PUCHAR, txlen: DWORD, rx: PUCHAR, rxlen: DWORD, ret: PDWORD);
}

static DEVICES: Mutex<Vec<(String, Arc<Scripted>)>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

fn answer(cmd: &[u8], msg: MessageType, status: u8, data: &[u8]) -> Vec<u8> {
    let h = Header::parse(cmd).unwrap();
    Response {
        message_type: msg,
        slot: h.slot,
        seq: h.seq,
        status: Status(status),
        error: SlotError(0),
        specific: 0,
        data: data.to_vec(),
    }
    .encode()
}

/// A short-APDU reader with a card that echoes commands followed by 90 00.
fn device(name: &str) -> Arc<Scripted> {
    INSTALL.call_once(|| {
        let f: Arc<registry::TransportFactory> = Arc::new(|name: &str, _cfg| {
            let g = DEVICES.lock().unwrap();
            g.iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone() as Arc<dyn Transport>)
                .ok_or_else(|| Error::NoReader(name.to_string()))
        });
        registry::set_transport_factory(Some(f));
    });
    let mut desc = CcidDescriptor::example();
    desc.dwFeatures = 0x0002_04BA;
    let t = Arc::new(Scripted::new(desc, |cmd| {
        let (_, c) = Command::decode(cmd).unwrap();
        vec![match c {
            Command::IccPowerOn { .. } => answer(
                cmd,
                MessageType::RDR_TO_PC_DATA_BLOCK,
                0,
                &[0x3B, 0x02, 0x14, 0x50],
            ),
            Command::XfrBlock { mut data, .. } => {
                data.extend_from_slice(&[0x90, 0x00]);
                answer(cmd, MessageType::RDR_TO_PC_DATA_BLOCK, 0, &data)
            }
            _ => answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 0, &[]),
        }]
    }));
    DEVICES.lock().unwrap().push((name.to_string(), t.clone()));
    t
}

fn open(lun: DWORD, name: &str) -> Arc<Scripted> {
    let t = device(name);
    let c = std::ffi::CString::new(name).unwrap();
    assert_eq!(IFDHCreateChannelByName(lun, c.as_ptr() as LPSTR), 0);
    t
}

// pcscd passes the protocol number: 1 for T=1.
const T1: SCARD_IO_HEADER = SCARD_IO_HEADER {
    Protocol: 1,
    Length: 8,
};

#[test]
fn create_channel_errors() {
    assert_eq!(IFDHCreateChannelByName(0x7000, std::ptr::null_mut()), 612);
    device("placeholder");
    let c = std::ffi::CString::new("usb:dead/beef").unwrap();
    assert_eq!(IFDHCreateChannelByName(0x7100, c.as_ptr() as LPSTR), 617);
    assert_eq!(IFDHCloseChannel(0x7200), 617);
}

#[test]
fn capabilities_with_short_and_null_buffers() {
    let lun = 0x10000;
    open(lun, "t:caps");
    let mut buf = [0u8; 64];
    assert_eq!(
        IFDHGetCapabilities(lun, 0x0FAE, std::ptr::null_mut(), buf.as_mut_ptr()),
        612
    );
    let mut len: DWORD = 64;
    assert_eq!(
        IFDHGetCapabilities(lun, 0x0FAE, &mut len, buf.as_mut_ptr()),
        0
    );
    assert_eq!((len, buf[0]), (1, 1));
    len = 64;
    assert_eq!(
        IFDHGetCapabilities(lun, 0x1234_5678, &mut len, buf.as_mut_ptr()),
        600
    );
    assert_eq!(len, 0);
    let mut atr = [0u8; 33];
    assert_eq!(
        IFDHPowerICC(lun, 500, atr.as_mut_ptr(), std::ptr::null_mut()),
        612
    );
    len = 33;
    assert_eq!(IFDHPowerICC(lun, 500, atr.as_mut_ptr(), &mut len), 0);
    assert_eq!(&atr[..len as usize], &[0x3B, 0x02, 0x14, 0x50]);
    // ATR into a 2-byte buffer: insufficient, nothing written past it.
    let mut small = [0xAAu8; 4];
    len = 2;
    assert_eq!(
        IFDHGetCapabilities(lun, 0x0303, &mut len, small.as_mut_ptr()),
        618
    );
    assert_eq!(len, 0);
    assert_eq!(small, [0xAA; 4]);
    len = 4;
    assert_eq!(
        IFDHGetCapabilities(lun, 0x90303, &mut len, small.as_mut_ptr()),
        0
    );
    assert_eq!(len, 4);
    // MAXINPUT = dwMaxCCIDMessageLength - 10
    len = 4;
    assert_eq!(
        IFDHGetCapabilities(lun, 0x7A007, &mut len, buf.as_mut_ptr()),
        0
    );
    assert_eq!(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]), 261);
    len = 3;
    assert_eq!(
        IFDHGetCapabilities(lun, 0x7A007, &mut len, buf.as_mut_ptr()),
        618
    );
    assert_eq!(IFDHPowerICC(lun, 499, atr.as_mut_ptr(), &mut len), 614);
    assert_eq!(IFDHCloseChannel(lun), 0);
    assert_eq!(IFDHICCPresence(lun), 617);
}

#[test]
fn transmit_checks_every_pointer_and_length() {
    let lun = 0x20000;
    open(lun, "t:xmit");
    let mut atr = [0u8; 33];
    let mut len: DWORD = 33;
    assert_eq!(IFDHPowerICC(lun, 500, atr.as_mut_ptr(), &mut len), 0);
    let mut tx = [0x00u8, 0xB0, 0x00, 0x00, 0x02];
    let mut rx = [0u8; 300];
    let mut rxlen: DWORD = 300;
    let mut recv = SCARD_IO_HEADER {
        Protocol: 0,
        Length: 0,
    };
    let r = IFDHTransmitToICC(
        lun,
        T1,
        tx.as_mut_ptr(),
        5,
        rx.as_mut_ptr(),
        &mut rxlen,
        &mut recv,
    );
    assert_eq!(r, 0);
    assert_eq!(&rx[..rxlen as usize], &[0, 0xB0, 0, 0, 2, 0x90, 0]);
    // Short receive buffer.
    rxlen = 3;
    let r = IFDHTransmitToICC(
        lun,
        T1,
        tx.as_mut_ptr(),
        5,
        rx.as_mut_ptr(),
        &mut rxlen,
        &mut recv,
    );
    assert_eq!((r, rxlen), (618, 0));
    // Null RxLength, null TxBuffer with a length.
    let r = IFDHTransmitToICC(
        lun,
        T1,
        tx.as_mut_ptr(),
        5,
        rx.as_mut_ptr(),
        std::ptr::null_mut(),
        &mut recv,
    );
    assert_eq!(r, 612);
    rxlen = 300;
    let r = IFDHTransmitToICC(
        lun,
        T1,
        std::ptr::null_mut(),
        5,
        rx.as_mut_ptr(),
        &mut rxlen,
        &mut recv,
    );
    assert_eq!((r, rxlen), (612, 0));
    // Unknown Lun.
    rxlen = 300;
    let r = IFDHTransmitToICC(
        0x7F0000,
        T1,
        tx.as_mut_ptr(),
        5,
        rx.as_mut_ptr(),
        &mut rxlen,
        &mut recv,
    );
    assert_eq!((r, rxlen), (617, 0));
    assert_eq!(IFDHCloseChannel(lun), 0);
}

#[test]
fn control_codes() {
    let lun = 0x30000;
    open(lun, "t:ctl");
    let mut rx = [0u8; 64];
    let mut ret: DWORD = 99;
    let r = IFDHControl(
        lun,
        0x4200_0D48,
        std::ptr::null_mut(),
        0,
        rx.as_mut_ptr(),
        64,
        &mut ret,
    );
    assert_eq!(r, 0);
    assert_eq!(&rx[..6], &[0x12, 4, 0x42, 0x33, 0x00, 0x12]);
    assert_eq!(ret, 6);
    let r = IFDHControl(
        lun,
        0x0031_3520,
        std::ptr::null_mut(),
        0,
        rx.as_mut_ptr(),
        3,
        &mut ret,
    );
    assert_eq!((r, ret), (618, 0));
    let r = IFDHControl(
        lun,
        0x4200_1234,
        std::ptr::null_mut(),
        0,
        rx.as_mut_ptr(),
        64,
        &mut ret,
    );
    assert_eq!((r, ret), (606, 0));
    // Escape is refused without ifdDriverOptions 0x01.
    let mut tx = [0x02u8];
    let r = IFDHControl(
        lun,
        0x4200_0001,
        tx.as_mut_ptr(),
        1,
        rx.as_mut_ptr(),
        64,
        &mut ret,
    );
    assert_eq!(r, 606);
    // TLV properties: vendor and product IDs present.
    let r = IFDHControl(
        lun,
        0x4233_0012,
        std::ptr::null_mut(),
        0,
        rx.as_mut_ptr(),
        64,
        &mut ret,
    );
    assert_eq!(r, 0);
    let tlv = &rx[..ret as usize];
    assert!(tlv.windows(4).any(|w| w == [0x0B, 2, 0x09, 0x12]));
    assert_eq!(IFDHCloseChannel(lun), 0);
}

#[test]
fn device_removed_only_acts_on_a_gone_device() {
    let lun = 0x40000;
    let t = open(lun, "t:removed");
    let mut one = [1u8];
    assert_eq!(IFDHSetCapabilities(lun, 0x0FB4, 1, one.as_mut_ptr()), 0);
    // Still answers: the request was ignored.
    assert_eq!(IFDHICCPresence(lun), 615);
    assert_eq!(IFDHSetCapabilities(lun, 0x0303, 1, one.as_mut_ptr()), 600);
    t.unplug();
    assert_eq!(IFDHSetCapabilities(lun, 0x0FB4, 1, one.as_mut_ptr()), 0);
    let start = std::time::Instant::now();
    assert_eq!(IFDHICCPresence(lun), 617);
    let mut atr = [0u8; 33];
    let mut len: DWORD = 33;
    assert_eq!(IFDHPowerICC(lun, 500, atr.as_mut_ptr(), &mut len), 617);
    assert!(start.elapsed() < std::time::Duration::from_millis(50));
    assert_eq!(IFDHCloseChannel(lun), 0);
}

#[test]
fn panics_become_communication_errors() {
    let r = guard("test", || panic!("boom"));
    assert_eq!(r, 612);
}
