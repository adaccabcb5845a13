//! The ten IFDH entry points called the way a careless or hostile caller
//! might: null pointers, zero and huge lengths, Luns never opened, calls
//! after close, and many threads at once on one reader and on several.
//! The readers are in-test virtual readers installed through
//! `registry::set_transport_factory`; every test is bounded to seconds.
//!
//! Codes: 0 success, 612 IFD_COMMUNICATION_ERROR, 614 IFD_NOT_SUPPORTED,
//! 615 IFD_ICC_PRESENT, 616 IFD_ICC_NOT_PRESENT, 617 IFD_NO_SUCH_DEVICE,
//! 618 IFD_ERROR_INSUFFICIENT_BUFFER.

use ccid::error::Error;
use ccid::ffi::{self, DWORD, LPSTR, PDWORD, PUCHAR, RESPONSECODE, SCARD_IO_HEADER};
use ccid::proto::descriptor::CcidDescriptor;
use ccid::proto::message::{Command, Header, MessageType, Response, SlotError, Status, HEADER_LEN};
use ccid::reader::registry;
use ccid::transport::{ControlSetup, Transport, TransportError, UsbInfo};
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

const OK: RESPONSECODE = 0;
const COMM: RESPONSECODE = 612;
const NO_DEVICE: RESPONSECODE = 617;
const SHORT_BUFFER: RESPONSECODE = 618;
const POWER_UP: DWORD = 500;
const POWER_DOWN: DWORD = 501;
const RESET: DWORD = 502;
/// The card's ATR: T=0 only, no interface bytes beyond TA1.
const ATR: [u8; 4] = [0x3B, 0x02, 0x14, 0x50];

/// A short-APDU reader with `slots` slots, each holding a card that
/// echoes the APDU followed by its slot number and 90 00.
struct EchoReader {
    info: UsbInfo,
    answers: Mutex<VecDeque<Vec<u8>>>,
    cond: Condvar,
    gone: AtomicBool,
    commands: AtomicUsize,
}

impl EchoReader {
    fn new(slots: u8) -> Self {
        let mut d = CcidDescriptor::example();
        // Automatic parameters, clock, rate, PPS and IFSD; short APDU level.
        d.dwFeatures = 0x0002_04BA;
        d.bMaxSlotIndex = slots - 1;
        d.bMaxCCIDBusySlots = slots;
        d.dwMaxCCIDMessageLength = 271;
        EchoReader {
            info: UsbInfo {
                vendor_id: 0x1209,
                product_id: 0x2702,
                bulk_in_packet_size: 64,
                has_interrupt: true,
                interrupt_packet_size: 8,
                ccid_descriptor: d.to_bytes().to_vec(),
                ..UsbInfo::default()
            },
            answers: Mutex::new(VecDeque::new()),
            cond: Condvar::new(),
            gone: AtomicBool::new(false),
            commands: AtomicUsize::new(0),
        }
    }

    fn answer(h: &Header, c: &Command) -> Vec<u8> {
        let reply = |message_type, data: Vec<u8>| Response {
            message_type,
            slot: h.slot,
            seq: h.seq,
            status: Status(0),
            error: SlotError(0),
            specific: 0,
            data,
        };
        match c {
            Command::IccPowerOn { .. } => reply(MessageType::RDR_TO_PC_DATA_BLOCK, ATR.to_vec()),
            Command::XfrBlock { data, .. } => {
                let mut d = data.clone();
                d.extend_from_slice(&[h.slot, 0x90, 0x00]);
                reply(MessageType::RDR_TO_PC_DATA_BLOCK, d)
            }
            Command::Escape { .. } => reply(MessageType::RDR_TO_PC_ESCAPE, Vec::new()),
            Command::GetParameters | Command::ResetParameters => {
                reply(MessageType::RDR_TO_PC_PARAMETERS, vec![0x11, 0, 0, 10, 0])
            }
            Command::SetParameters { protocol, data } => {
                let mut r = reply(MessageType::RDR_TO_PC_PARAMETERS, data.clone());
                r.specific = *protocol;
                r
            }
            other => reply(
                other
                    .message_type()
                    .expected_response()
                    .unwrap_or(MessageType::RDR_TO_PC_SLOT_STATUS),
                Vec::new(),
            ),
        }
        .encode()
    }
}

impl Transport for EchoReader {
    fn info(&self) -> &UsbInfo {
        &self.info
    }
    fn bulk_out(&self, data: &[u8], _t: Duration) -> Result<(), TransportError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(TransportError::NoDevice);
        }
        self.commands.fetch_add(1, Ordering::SeqCst);
        let (h, c) = Command::decode(data).map_err(|e| TransportError::Io(e.to_string()))?;
        self.answers.lock().unwrap().push_back(Self::answer(&h, &c));
        self.cond.notify_all();
        Ok(())
    }
    fn bulk_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut q = self.answers.lock().unwrap();
        loop {
            if self.gone.load(Ordering::SeqCst) {
                return Err(TransportError::NoDevice);
            }
            if let Some(a) = q.pop_front() {
                let n = a.len().min(buf.len());
                buf[..n].copy_from_slice(&a[..n]);
                return Ok(n);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::Timeout);
            }
            q = self.cond.wait_timeout(q, deadline - now).unwrap().0;
        }
    }
    fn interrupt_in(&self, _b: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        // No card ever moves: wait out the timeout, or until unplugged.
        let deadline = Instant::now() + timeout;
        let mut q = self.answers.lock().unwrap();
        loop {
            if self.gone.load(Ordering::SeqCst) {
                return Err(TransportError::NoDevice);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::Timeout);
            }
            q = self.cond.wait_timeout(q, deadline - now).unwrap().0;
        }
    }
    fn control_in(
        &self,
        setup: ControlSetup,
        buf: &mut [u8],
        _t: Duration,
    ) -> Result<usize, TransportError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(TransportError::NoDevice);
        }
        // Standard GET_STATUS answers; class requests are not supported.
        if setup.request_type == 0x80 && setup.request == 0 && buf.len() >= 2 {
            buf[..2].copy_from_slice(&[0, 0]);
            return Ok(2);
        }
        Err(TransportError::Pipe)
    }
    fn control_out(
        &self,
        _s: ControlSetup,
        _d: &[u8],
        _t: Duration,
    ) -> Result<usize, TransportError> {
        Err(TransportError::Pipe)
    }
    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }
}

static READERS: Mutex<Option<HashMap<String, Arc<EchoReader>>>> = Mutex::new(None);
static INSTALL: Once = Once::new();

/// Plugs a virtual reader in under `name` (names are unique per test).
fn plug(name: &str, slots: u8) -> Arc<EchoReader> {
    INSTALL.call_once(|| {
        let f: Arc<registry::TransportFactory> = Arc::new(|name: &str, _cfg| {
            READERS
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|m| m.get(name).cloned())
                .map(|r| r as Arc<dyn Transport>)
                .ok_or_else(|| Error::NoReader(name.to_string()))
        });
        registry::set_transport_factory(Some(f));
    });
    let r = Arc::new(EchoReader::new(slots));
    READERS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(name.to_string(), r.clone());
    r
}

// Safe wrappers: every pointer the tests pass is null or points to a live
// buffer at least as long as the length passed with it.

fn create(lun: DWORD, name: &str) -> RESPONSECODE {
    let c = CString::new(name).unwrap();
    // SAFETY: a NUL-terminated string alive for the call.
    unsafe { ffi::IFDHCreateChannelByName(lun, c.as_ptr() as LPSTR) }
}

fn get_cap(lun: DWORD, tag: DWORD, len: PDWORD, value: PUCHAR) -> RESPONSECODE {
    // SAFETY: see above.
    unsafe { ffi::IFDHGetCapabilities(lun, tag, len, value) }
}

fn set_cap(lun: DWORD, tag: DWORD, len: DWORD, value: PUCHAR) -> RESPONSECODE {
    // SAFETY: see above.
    unsafe { ffi::IFDHSetCapabilities(lun, tag, len, value) }
}

fn power(lun: DWORD, action: DWORD, atr: PUCHAR, len: PDWORD) -> RESPONSECODE {
    // SAFETY: see above.
    unsafe { ffi::IFDHPowerICC(lun, action, atr, len) }
}

fn transmit(
    lun: DWORD,
    tx: PUCHAR,
    txlen: DWORD,
    rx: PUCHAR,
    rxlen: PDWORD,
    recv: *mut SCARD_IO_HEADER,
) -> RESPONSECODE {
    let pci = SCARD_IO_HEADER {
        Protocol: 0,
        Length: 8,
    };
    // SAFETY: see above.
    unsafe { ffi::IFDHTransmitToICC(lun, pci, tx, txlen, rx, rxlen, recv) }
}

fn control(
    lun: DWORD,
    code: DWORD,
    tx: PUCHAR,
    txlen: DWORD,
    rx: PUCHAR,
    rxlen: DWORD,
    ret: PDWORD,
) -> RESPONSECODE {
    // SAFETY: see above.
    unsafe { ffi::IFDHControl(lun, code, tx, txlen, rx, rxlen, ret) }
}

fn power_up(lun: DWORD) -> RESPONSECODE {
    let mut atr = [0u8; 33];
    let mut len: DWORD = 33;
    power(lun, POWER_UP, atr.as_mut_ptr(), &mut len)
}

/// Sends `apdu` and returns the code and the answer.
fn apdu(lun: DWORD, apdu: &[u8]) -> (RESPONSECODE, Vec<u8>) {
    let mut tx = apdu.to_vec();
    let mut rx = vec![0u8; 1024];
    let mut len: DWORD = rx.len() as DWORD;
    let mut recv = SCARD_IO_HEADER {
        Protocol: 0,
        Length: 0,
    };
    let r = transmit(
        lun,
        tx.as_mut_ptr(),
        tx.len() as DWORD,
        rx.as_mut_ptr(),
        &mut len,
        &mut recv,
    );
    rx.truncate(len as usize);
    (r, rx)
}

/// The polling callback pcscd would read through TAG 0x0FB3.
fn polling_fn(lun: DWORD) -> extern "C" fn(DWORD, c_int) -> RESPONSECODE {
    let mut buf = [0u8; std::mem::size_of::<usize>()];
    let mut len = buf.len() as DWORD;
    assert_eq!(get_cap(lun, 0x0FB3, &mut len, buf.as_mut_ptr()), OK);
    assert_eq!(len as usize, buf.len());
    let addr = usize::from_ne_bytes(buf);
    // SAFETY: the driver wrote the address of its `extern "C" fn(DWORD,
    // c_int) -> RESPONSECODE` polling function, which lives as long as the
    // library.
    unsafe { std::mem::transmute::<usize, extern "C" fn(DWORD, c_int) -> RESPONSECODE>(addr) }
}

/// The stop callback pcscd would read through TAG 0x0FB2.
fn stop_fn(lun: DWORD) -> extern "C" fn(DWORD) -> RESPONSECODE {
    let mut buf = [0u8; std::mem::size_of::<usize>()];
    let mut len = buf.len() as DWORD;
    assert_eq!(get_cap(lun, 0x0FB2, &mut len, buf.as_mut_ptr()), OK);
    let addr = usize::from_ne_bytes(buf);
    // SAFETY: as in `polling_fn`, for `extern "C" fn(DWORD) -> RESPONSECODE`.
    unsafe { std::mem::transmute::<usize, extern "C" fn(DWORD) -> RESPONSECODE>(addr) }
}

/// Every entry point on a Lun that is not open: IFD_NO_SUCH_DEVICE, output
/// lengths set to 0, nothing written.
fn assert_all_refused(lun: DWORD) {
    let mut buf = [0xAAu8; 64];
    let mut len: DWORD = buf.len() as DWORD;
    assert_eq!(
        get_cap(lun, 0x0FAE, &mut len, buf.as_mut_ptr()),
        NO_DEVICE,
        "lun {lun:#x}"
    );
    assert_eq!(len, 0);
    let mut one = [1u8];
    assert_eq!(set_cap(lun, 0x0FB4, 1, one.as_mut_ptr()), NO_DEVICE);
    assert_eq!(
        ffi::IFDHSetProtocolParameters(lun, 1, 0, 0, 0, 0),
        NO_DEVICE
    );
    let mut len: DWORD = 33;
    assert_eq!(power(lun, POWER_UP, buf.as_mut_ptr(), &mut len), NO_DEVICE);
    assert_eq!(len, 0);
    let mut len: DWORD = 33;
    assert_eq!(
        power(lun, POWER_DOWN, buf.as_mut_ptr(), &mut len),
        NO_DEVICE
    );
    let (r, rx) = apdu(lun, &[0, 0xA4, 0, 0]);
    assert_eq!((r, rx.len()), (NO_DEVICE, 0));
    let mut ret: DWORD = 99;
    let code = 0x4200_0000 + 3400;
    assert_eq!(
        control(
            lun,
            code,
            buf.as_mut_ptr(),
            0,
            buf.as_mut_ptr(),
            64,
            &mut ret
        ),
        NO_DEVICE
    );
    assert_eq!(ret, 0);
    assert_eq!(ffi::IFDHICCPresence(lun), NO_DEVICE);
    assert_eq!(ffi::IFDHCloseChannel(lun), NO_DEVICE);
    assert!(
        buf[..].iter().all(|b| *b == 0xAA),
        "a refused call wrote output"
    );
}

#[test]
fn luns_never_opened_are_refused() {
    for lun in [
        0x00F0_0000,
        0x00F0_0001,
        0x00F1_FFFF,
        0xFFFF_FFFF,
        DWORD::MAX,
        DWORD::MAX - 1,
    ] {
        assert_all_refused(lun);
    }
}

#[test]
fn create_channel_rejects_bad_names_and_reused_luns() {
    // SAFETY: a null name is checked before use.
    let rc = unsafe { ffi::IFDHCreateChannelByName(0x0010_0000, std::ptr::null_mut()) };
    assert_eq!(rc, COMM);
    assert_eq!(create(0x0010_0000, "usb:ffff/ffff:not-plugged"), NO_DEVICE);
    assert_eq!(create(0x0010_0000, ""), NO_DEVICE);
    assert_eq!(create(0x0010_0000, &"x".repeat(100_000)), NO_DEVICE);
    assert_eq!(create(0x0010_0000, "usb:zzzz/1"), NO_DEVICE);
    plug("callers:reuse", 1);
    assert_eq!(create(0x0011_0000, "callers:reuse"), OK);
    // The same Lun again, or a second slot of a one-slot reader.
    assert_ne!(create(0x0011_0000, "callers:reuse"), OK);
    assert_eq!(create(0x0011_0001, "callers:reuse"), NO_DEVICE);
    // A further slot of a reader that was never opened.
    assert_eq!(create(0x0012_0001, "callers:reuse"), NO_DEVICE);
    assert_eq!(power_up(0x0011_0000), OK);
    assert_eq!(ffi::IFDHCloseChannel(0x0011_0000), OK);
    assert_all_refused(0x0011_0000);
}

#[test]
fn null_pointers_everywhere() {
    let lun = 0x0020_0000;
    plug("callers:null", 1);
    assert_eq!(create(lun, "callers:null"), OK);
    let null = std::ptr::null_mut::<u8>();
    let mut buf = [0u8; 64];

    // GetCapabilities: no length pointer; no value buffer for a tag that
    // has bytes.
    assert_eq!(
        get_cap(lun, 0x0FAE, std::ptr::null_mut(), buf.as_mut_ptr()),
        COMM
    );
    let mut len: DWORD = 64;
    assert_ne!(get_cap(lun, 0x0FAE, &mut len, null), OK);
    assert_eq!(len, 0);
    let mut len: DWORD = 64;
    assert_ne!(get_cap(lun, 0x0FB3, &mut len, null), OK);
    assert_eq!(len, 0);

    // SetCapabilities: a null value is ignored, whatever length it claims.
    assert_eq!(set_cap(lun, 0x0FB4, 1, null), OK);
    assert_eq!(set_cap(lun, 0x0FB4, 0, null), OK);

    // PowerICC: a null length pointer on power-up; a null ATR buffer.
    assert_eq!(
        power(lun, POWER_UP, buf.as_mut_ptr(), std::ptr::null_mut()),
        COMM
    );
    let mut len: DWORD = 33;
    assert_ne!(power(lun, POWER_UP, null, &mut len), OK);
    assert_eq!(len, 0);
    assert_eq!(power(lun, POWER_DOWN, null, std::ptr::null_mut()), OK);
    assert_eq!(power_up(lun), OK);

    // TransmitToICC: every pointer in turn.
    let mut tx = [0x00u8, 0xB0, 0x00, 0x00, 0x02];
    let mut len: DWORD = 64;
    assert_eq!(
        transmit(
            lun,
            tx.as_mut_ptr(),
            5,
            buf.as_mut_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut()
        ),
        COMM
    );
    assert_eq!(
        transmit(
            lun,
            null,
            5,
            buf.as_mut_ptr(),
            &mut len,
            std::ptr::null_mut()
        ),
        COMM
    );
    assert_eq!(len, 0);
    let mut len: DWORD = 64;
    assert_ne!(
        transmit(
            lun,
            tx.as_mut_ptr(),
            5,
            null,
            &mut len,
            std::ptr::null_mut()
        ),
        OK
    );
    assert_eq!(len, 0);
    let mut len: DWORD = 64;
    assert_eq!(
        transmit(
            lun,
            tx.as_mut_ptr(),
            5,
            buf.as_mut_ptr(),
            &mut len,
            std::ptr::null_mut()
        ),
        OK
    );
    assert_eq!(
        &buf[..len as usize],
        &[0x00, 0xB0, 0x00, 0x00, 0x02, 0x00, 0x90, 0x00]
    );

    // Control: null input with a length, null output, null count.
    let get_features = 0x4200_0000 + 3400;
    let mut ret: DWORD = 7;
    assert_eq!(
        control(lun, get_features, null, 4, buf.as_mut_ptr(), 64, &mut ret),
        COMM
    );
    assert_eq!(ret, 0);
    let r = control(lun, get_features, null, 0, null, 64, &mut ret);
    assert!(r == OK || r == SHORT_BUFFER, "{r}");
    if r == OK {
        assert_eq!(ret, 0, "bytes claimed without an output buffer");
    }
    assert_eq!(
        control(
            lun,
            get_features,
            null,
            0,
            buf.as_mut_ptr(),
            64,
            std::ptr::null_mut()
        ),
        OK
    );

    // The reader is still fine after all that.
    assert_eq!(apdu(lun, &[0, 0x84, 0, 0, 8]).0, OK);
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
}

#[test]
fn zero_and_huge_lengths() {
    let lun = 0x0030_0000;
    plug("callers:lengths", 1);
    assert_eq!(create(lun, "callers:lengths"), OK);

    // A zero-length ATR buffer: refused, and power-up works afterwards.
    let mut atr = [0u8; 33];
    let mut len: DWORD = 0;
    assert_eq!(
        power(lun, POWER_UP, atr.as_mut_ptr(), &mut len),
        SHORT_BUFFER
    );
    assert_eq!(len, 0);
    // A length far larger than needed is fine: only the ATR is written.
    let mut len: DWORD = DWORD::MAX;
    assert_eq!(power(lun, RESET, atr.as_mut_ptr(), &mut len), OK);
    assert_eq!(&atr[..len as usize], &ATR);

    // Capabilities with a zero and a huge buffer length.
    let mut v = [0u8; 64];
    let mut len: DWORD = 0;
    assert_eq!(get_cap(lun, 0x0303, &mut len, v.as_mut_ptr()), SHORT_BUFFER);
    assert_eq!(len, 0);
    let mut len: DWORD = DWORD::MAX;
    assert_eq!(get_cap(lun, 0x0303, &mut len, v.as_mut_ptr()), OK);
    assert_eq!(&v[..len as usize], &ATR);

    // An empty command is refused; 1 to 3 bytes go to the card of a short
    // APDU reader, whose answer comes back whole.
    let mut rx = vec![0u8; 300];
    for n in [0usize, 1, 3] {
        let mut tx = vec![0u8; 4];
        let mut len: DWORD = 300;
        let r = transmit(
            lun,
            tx.as_mut_ptr(),
            n as DWORD,
            rx.as_mut_ptr(),
            &mut len,
            std::ptr::null_mut(),
        );
        if n == 0 {
            assert_ne!(r, OK, "empty command accepted");
            assert_eq!(len, 0);
        } else if r == OK {
            assert_eq!(len as usize, n + 3);
        } else {
            assert_eq!(len, 0);
        }
    }
    // A command far larger than the reader takes (1 MiB, real buffer).
    let mut big = vec![0x5Au8; 1 << 20];
    big[..4].copy_from_slice(&[0x00, 0xD6, 0x00, 0x00]);
    let t0 = Instant::now();
    let mut len: DWORD = 300;
    let r = transmit(
        lun,
        big.as_mut_ptr(),
        big.len() as DWORD,
        rx.as_mut_ptr(),
        &mut len,
        std::ptr::null_mut(),
    );
    assert_ne!(r, OK);
    assert_eq!(len, 0);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // An answer that does not fit: IFD_ERROR_INSUFFICIENT_BUFFER, nothing
    // claimed; a huge capacity over a real 64 KiB buffer works.
    let mut len: DWORD = 2;
    let mut tx = [0x00u8, 0xB0, 0x00, 0x00, 0x10];
    let r = transmit(
        lun,
        tx.as_mut_ptr(),
        5,
        rx.as_mut_ptr(),
        &mut len,
        std::ptr::null_mut(),
    );
    assert_eq!((r, len), (SHORT_BUFFER, 0));
    let mut out = vec![0u8; 65_536];
    let mut len: DWORD = DWORD::MAX;
    let r = transmit(
        lun,
        tx.as_mut_ptr(),
        5,
        out.as_mut_ptr(),
        &mut len,
        std::ptr::null_mut(),
    );
    assert_eq!((r, len), (OK, 8));

    // SetCapabilities with a huge real value: not the one-byte 'removed'
    // flag, ignored.
    assert_eq!(
        set_cap(lun, 0x0FB4, big.len() as DWORD, big.as_mut_ptr()),
        OK
    );
    assert_eq!(ffi::IFDHICCPresence(lun), 615);

    // Control with empty and huge input, and a zero output length.
    let mut ret: DWORD = 0;
    let get_features = 0x4200_0000 + 3400;
    let r = control(
        lun,
        get_features,
        big.as_mut_ptr(),
        0,
        out.as_mut_ptr(),
        0,
        &mut ret,
    );
    assert!(r == OK || r == SHORT_BUFFER, "{r}");
    assert_eq!(ret, 0);
    let escape = 0x4200_0000 + 1;
    let r = control(
        lun,
        escape,
        big.as_mut_ptr(),
        big.len() as DWORD,
        out.as_mut_ptr(),
        65_536,
        &mut ret,
    );
    assert_ne!(r, OK, "a 1 MiB escape was accepted");
    assert_eq!(ret, 0);
    for code in [0, 1, DWORD::MAX, 0x4200_0000 + 3400 + 1, 0x3136B0] {
        let r = control(
            lun,
            code,
            big.as_mut_ptr(),
            8,
            out.as_mut_ptr(),
            65_536,
            &mut ret,
        );
        assert!(r != OK || (ret as usize) <= out.len(), "code {code:#x}");
    }
    // Protocol numbers and flags nobody uses.
    for (p, f) in [
        (0, 0),
        (4, 0),
        (8, 0),
        (DWORD::MAX, 0xFF),
        (1, 0xFF),
        (2, 0x07),
    ] {
        let r = ffi::IFDHSetProtocolParameters(lun, p, f, 0xFF, 0xFF, 0xFF);
        assert!(
            r != 612 || p == 1 || p == 2,
            "protocol {p:#x} flags {f:#x}: {r}"
        );
    }
    for action in [0, 499, 503, DWORD::MAX] {
        let mut len: DWORD = 33;
        assert_eq!(power(lun, action, atr.as_mut_ptr(), &mut len), 614);
    }
    assert_eq!(apdu(lun, &[0, 0x84, 0, 0, 8]).0, OK);
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
}

#[test]
fn calls_after_close_then_reopen() {
    let lun = 0x0040_0000;
    plug("callers:close", 2);
    assert_eq!(create(lun, "callers:close"), OK);
    assert_eq!(create(lun + 1, "callers:close"), OK);
    let poll = polling_fn(lun);
    let stop = stop_fn(lun);
    assert_eq!(power_up(lun + 1), OK);
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
    assert_all_refused(lun);
    // The other slot keeps working with its reader.
    assert_eq!(apdu(lun + 1, &[0, 0xCA, 0, 0, 0]).0, OK);
    assert_eq!(ffi::IFDHCloseChannel(lun + 1), OK);
    assert_all_refused(lun + 1);
    // The callbacks pcscd kept return at once for a closed Lun.
    let t0 = Instant::now();
    assert_eq!(poll(lun, 10_000), NO_DEVICE);
    assert_eq!(stop(lun), OK);
    assert!(t0.elapsed() < Duration::from_secs(1));
    // Reopening the same Luns works.
    assert_eq!(create(lun, "callers:close"), OK);
    assert_eq!(power_up(lun), OK);
    assert_eq!(apdu(lun, &[0, 0xCA, 0, 0, 0]).0, OK);
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
}

#[test]
fn polling_is_bounded_and_stoppable() {
    let lun = 0x0050_0000;
    plug("callers:poll", 1);
    assert_eq!(create(lun, "callers:poll"), OK);
    let poll = polling_fn(lun);
    let stop = stop_fn(lun);
    let t0 = Instant::now();
    assert_eq!(poll(lun, 100), OK);
    let e = t0.elapsed();
    assert!(e < Duration::from_millis(1100), "{e:?}");
    assert_eq!(poll(lun, 0), OK);
    assert_eq!(poll(lun, -1), OK);
    // A long poll ended by the stop callback from another thread.
    let t0 = Instant::now();
    let h = thread::spawn(move || poll(lun, 60_000));
    thread::sleep(Duration::from_millis(100));
    assert_eq!(stop(lun), OK);
    assert_eq!(h.join().unwrap(), OK);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
}

/// `threads` threads each send `per_thread` APDUs carrying their own
/// numbers on `luns` (round robin); every answer must echo its own APDU.
fn hammer(luns: &[DWORD], threads: usize, per_thread: usize) -> Duration {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let luns = luns.to_vec();
            thread::spawn(move || {
                for i in 0..per_thread {
                    let lun = luns[(t + i) % luns.len()];
                    let cmd = [
                        0x80, 0xCA, t as u8, i as u8, 0x04, 0xDE, 0xAD, t as u8, i as u8,
                    ];
                    let (r, rx) = apdu(lun, &cmd);
                    assert_eq!(r, OK, "thread {t} APDU {i} on {lun:#x}");
                    let mut want = cmd.to_vec();
                    want.extend_from_slice(&[(lun & 0xFFFF) as u8, 0x90, 0x00]);
                    assert_eq!(rx, want, "thread {t} got another command's answer");
                    // Calls that need no I/O, interleaved.
                    let mut v = [0u8; 64];
                    let mut len: DWORD = 64;
                    assert_eq!(get_cap(lun, 0x0303, &mut len, v.as_mut_ptr()), OK);
                    assert_eq!(ffi::IFDHICCPresence(lun), 615);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a caller thread failed");
    }
    t0.elapsed()
}

#[test]
fn many_threads_on_one_reader() {
    let lun = 0x0060_0000;
    plug("callers:one", 1);
    assert_eq!(create(lun, "callers:one"), OK);
    assert_eq!(power_up(lun), OK);
    let took = hammer(&[lun], 16, 40);
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
}

#[test]
fn many_threads_on_several_readers_and_slots() {
    let mut luns = Vec::new();
    for r in 0..3u32 {
        let name = format!("callers:multi{r}");
        let slots = if r == 0 { 4 } else { 1 };
        plug(&name, slots);
        let base = DWORD::from(0x0070_0000 + (r << 16));
        for s in 0..DWORD::from(slots) {
            assert_eq!(create(base + s, &name), OK);
            assert_eq!(power_up(base + s), OK);
            luns.push(base + s);
        }
    }
    let took = hammer(&luns, 12, 40);
    assert!(took < Duration::from_secs(20), "{took:?}");
    for lun in luns {
        assert_eq!(ffi::IFDHCloseChannel(lun), OK);
    }
}

#[test]
fn close_while_other_threads_call() {
    let lun = 0x0080_0000;
    let reader = plug("callers:race", 1);
    assert_eq!(create(lun, "callers:race"), OK);
    assert_eq!(power_up(lun), OK);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) && n < 2000 {
                    n += 1;
                    let cmd = [0x00, 0xB0, t as u8, n as u8, 0x01];
                    let (r, rx) = apdu(lun, &cmd);
                    match r {
                        OK => assert_eq!(&rx[..5], &cmd),
                        // Closed, or reopened with the card not powered.
                        NO_DEVICE | 616 => assert!(rx.is_empty()),
                        other => panic!("thread {t}: {other}"),
                    }
                    let p = ffi::IFDHICCPresence(lun);
                    assert!(p == 615 || p == NO_DEVICE, "{p}");
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Reopen and close a few times under fire.
    for _ in 0..5 {
        assert_eq!(create(lun, "callers:race"), OK);
        assert_eq!(ffi::IFDHCloseChannel(lun), OK);
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().expect("a caller thread panicked");
    }
    assert!(reader.commands.load(Ordering::SeqCst) > 0);
    assert_all_refused(lun);
}

#[test]
fn unplugged_reader_answers_no_device_everywhere() {
    let lun = 0x0090_0000;
    let reader = plug("callers:unplug", 1);
    assert_eq!(create(lun, "callers:unplug"), OK);
    assert_eq!(power_up(lun), OK);
    reader.gone.store(true, Ordering::SeqCst);
    reader.cond.notify_all();
    let t0 = Instant::now();
    assert_eq!(ffi::IFDHICCPresence(lun), NO_DEVICE);
    let (r, rx) = apdu(lun, &[0, 0xB0, 0, 0, 1]);
    assert_eq!((r, rx.len()), (NO_DEVICE, 0));
    let mut atr = [0u8; 33];
    let mut len: DWORD = 33;
    assert_eq!(power(lun, POWER_UP, atr.as_mut_ptr(), &mut len), NO_DEVICE);
    assert_eq!(len, 0);
    let poll = polling_fn(lun);
    assert_eq!(poll(lun, 5_000), NO_DEVICE);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(ffi::IFDHCloseChannel(lun), OK);
    let _ = HEADER_LEN;
}
