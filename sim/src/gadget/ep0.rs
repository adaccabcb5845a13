//! FunctionFS `ep0`: the events the kernel reports, and the answer to a
//! SETUP request, taken from the virtual reader's control transfers.
//!
//! Each event is a 12-byte `struct usb_functionfs_event`: the 8-byte setup
//! packet (meaningful for SETUP only), the type, 3 bytes of padding. While
//! a SETUP is pending, a `write()` on ep0 sends the IN data stage and a
//! `read()` receives the OUT data stage (0 bytes: acknowledges a request
//! without data); the opposite call stalls the request.
#![forbid(unsafe_code)]

use ccid::proto::codec::Reader;
use ccid::transport::{ControlSetup, Transport, TransportError};
use std::io;
use std::time::Duration;

/// Size of one event record.
pub const EVENT_LEN: usize = 12;

/// A USB setup packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// bmRequestType.
    pub request_type: u8,
    /// bRequest.
    pub request: u8,
    /// wValue.
    pub value: u16,
    /// wIndex (FunctionFS rewrites an interface number to the function's
    /// own numbering, which starts at 0).
    pub index: u16,
    /// wLength.
    pub length: u16,
}

impl Setup {
    /// Whether the data stage goes to the host.
    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }

    /// The request kind: 0 standard, 1 class, 2 vendor, 3 reserved.
    pub fn kind(&self) -> u8 {
        (self.request_type >> 5) & 3
    }

    fn control_setup(&self) -> ControlSetup {
        ControlSetup {
            request_type: self.request_type,
            request: self.request,
            value: self.value,
            index: self.index,
        }
    }
}

/// One FunctionFS event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The function was bound to a gadget (UDC written).
    Bind,
    /// The function was unbound.
    Unbind,
    /// The host configured the device: endpoints are usable.
    Enable,
    /// The configuration went away (unplug, reset).
    Disable,
    /// A control request for the function.
    Setup(Setup),
    /// The bus was suspended.
    Suspend,
    /// The bus resumed.
    Resume,
    /// A type this program does not know.
    Unknown(u8),
}

impl Event {
    /// Decodes one 12-byte record.
    pub fn parse(record: &[u8]) -> Result<Event, ccid::proto::codec::DecodeError> {
        let mut r = Reader::new(record);
        let setup = Setup {
            request_type: r.u8("bRequestType")?,
            request: r.u8("bRequest")?,
            value: r.u16_le("wValue")?,
            index: r.u16_le("wIndex")?,
            length: r.u16_le("wLength")?,
        };
        let kind = r.u8("event type")?;
        r.skip(3, "event padding")?;
        r.finish("FunctionFS event")?;
        Ok(match kind {
            0 => Event::Bind,
            1 => Event::Unbind,
            2 => Event::Enable,
            3 => Event::Disable,
            4 => Event::Setup(setup),
            5 => Event::Suspend,
            6 => Event::Resume,
            n => Event::Unknown(n),
        })
    }

    /// Encodes the record (for tests and test doubles).
    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let mut out = [0u8; EVENT_LEN];
        let kind = match self {
            Event::Bind => 0,
            Event::Unbind => 1,
            Event::Enable => 2,
            Event::Disable => 3,
            Event::Setup(s) => {
                out[0] = s.request_type;
                out[1] = s.request;
                out[2..4].copy_from_slice(&s.value.to_le_bytes());
                out[4..6].copy_from_slice(&s.index.to_le_bytes());
                out[6..8].copy_from_slice(&s.length.to_le_bytes());
                4
            }
            Event::Suspend => 5,
            Event::Resume => 6,
            Event::Unknown(n) => *n,
        };
        out[8] = kind;
        out
    }
}

/// The control endpoint as the bridge uses it.
pub trait ControlEndpoint: Send + Sync {
    /// Waits up to `timeout` for the next event; `Ok(None)` when none came.
    fn next_event(&self, timeout: Duration) -> io::Result<Option<Event>>;
    /// Sends the IN data stage of the pending request.
    fn send(&self, data: &[u8]) -> io::Result<()>;
    /// Receives up to `len` bytes of the OUT data stage (0: acknowledges a
    /// request without data).
    fn receive(&self, len: usize) -> io::Result<Vec<u8>>;
    /// Stalls the pending request (`is_in`: its direction).
    fn stall(&self, is_in: bool) -> io::Result<()>;
}

/// How a SETUP request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOutcome {
    /// IN request answered with this many bytes.
    Sent(usize),
    /// OUT request accepted, with this many data bytes.
    Accepted(usize),
    /// Request stalled, with the reason.
    Stalled(String),
}

/// Time the virtual reader gets to answer a control request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers one SETUP request. Class and vendor requests go to the virtual
/// reader's control transfers (CCID ABORT, GET_CLOCK_FREQUENCIES,
/// GET_DATA_RATES, the ICCD requests); standard requests that reach the
/// function (usbcore's composite layer handles the usual ones) and every
/// request the reader refuses are stalled.
pub fn answer_setup(
    setup: &Setup,
    transport: &dyn Transport,
    ep0: &dyn ControlEndpoint,
) -> io::Result<SetupOutcome> {
    let stall = |why: String| -> io::Result<SetupOutcome> {
        ep0.stall(setup.is_in())?;
        Ok(SetupOutcome::Stalled(why))
    };
    if setup.kind() != 1 && setup.kind() != 2 {
        return stall(format!(
            "request type {:#04x} not handled",
            setup.request_type
        ));
    }
    if setup.is_in() {
        let mut buf = vec![0u8; usize::from(setup.length)];
        match transport.control_in(setup.control_setup(), &mut buf, CONTROL_TIMEOUT) {
            Ok(n) => {
                let n = n.min(buf.len());
                ep0.send(buf.get(..n).unwrap_or(&[]))?;
                Ok(SetupOutcome::Sent(n))
            }
            Err(e) => stall(describe(&e)),
        }
    } else if setup.length == 0 {
        match transport.control_out(setup.control_setup(), &[], CONTROL_TIMEOUT) {
            Ok(_) => {
                ep0.receive(0)?;
                Ok(SetupOutcome::Accepted(0))
            }
            Err(e) => stall(describe(&e)),
        }
    } else {
        // the data stage completes (and is acknowledged) when it is read,
        // so a refusal after it can only be logged
        let data = ep0.receive(usize::from(setup.length))?;
        match transport.control_out(setup.control_setup(), &data, CONTROL_TIMEOUT) {
            Ok(_) => Ok(SetupOutcome::Accepted(data.len())),
            Err(e) => Ok(SetupOutcome::Stalled(format!(
                "{} (after the data stage: acknowledged anyway)",
                describe(&e)
            ))),
        }
    }
}

fn describe(e: &TransportError) -> String {
    format!("refused by the reader: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccid::transport::UsbInfo;
    use std::sync::Mutex;

    #[test]
    fn events_round_trip() {
        // GET_DATA_RATES as it arrives: a1 03 0000 0000 12, type 4
        let rec = [0xa1, 0x03, 0, 0, 0, 0, 0x12, 0, 4, 0, 0, 0];
        let e = Event::parse(&rec).unwrap();
        assert_eq!(
            e,
            Event::Setup(Setup {
                request_type: 0xa1,
                request: 3,
                value: 0,
                index: 0,
                length: 0x12
            })
        );
        assert_eq!(e.encode(), rec);
        for ev in [
            Event::Bind,
            Event::Unbind,
            Event::Enable,
            Event::Disable,
            Event::Suspend,
            Event::Resume,
            Event::Unknown(9),
        ] {
            assert_eq!(Event::parse(&ev.encode()).unwrap(), ev);
        }
        assert!(Event::parse(&rec[..11]).is_err());
        assert!(Event::parse(&[0; 13]).is_err());
    }

    /// A control endpoint that records what the bridge did.
    #[derive(Default)]
    struct RecordingEp0 {
        log: Mutex<Vec<String>>,
        out_data: Vec<u8>,
    }

    impl ControlEndpoint for RecordingEp0 {
        fn next_event(&self, _: Duration) -> io::Result<Option<Event>> {
            Ok(None)
        }
        fn send(&self, data: &[u8]) -> io::Result<()> {
            self.log.lock().unwrap().push(format!("send {data:02x?}"));
            Ok(())
        }
        fn receive(&self, len: usize) -> io::Result<Vec<u8>> {
            self.log.lock().unwrap().push(format!("receive {len}"));
            Ok(self.out_data.iter().copied().take(len).collect())
        }
        fn stall(&self, is_in: bool) -> io::Result<()> {
            self.log.lock().unwrap().push(format!("stall in={is_in}"));
            Ok(())
        }
    }

    /// A reader answering GET_DATA_RATES with two rates and accepting ABORT
    /// for slot 0 only.
    struct ControlReader {
        info: UsbInfo,
        seen: Mutex<Vec<(ControlSetup, Vec<u8>)>>,
    }

    impl Transport for ControlReader {
        fn info(&self) -> &UsbInfo {
            &self.info
        }
        fn bulk_out(&self, _: &[u8], _: Duration) -> Result<(), TransportError> {
            Err(TransportError::Pipe)
        }
        fn bulk_in(&self, _: &mut [u8], _: Duration) -> Result<usize, TransportError> {
            Err(TransportError::Timeout)
        }
        fn interrupt_in(&self, _: &mut [u8], _: Duration) -> Result<usize, TransportError> {
            Err(TransportError::NotFound)
        }
        fn control_in(
            &self,
            setup: ControlSetup,
            buf: &mut [u8],
            _: Duration,
        ) -> Result<usize, TransportError> {
            self.seen.lock().unwrap().push((setup, Vec::new()));
            if setup.request != 3 {
                return Err(TransportError::Pipe);
            }
            let rates = [10752u32.to_le_bytes(), 21505u32.to_le_bytes()].concat();
            let n = rates.len().min(buf.len());
            buf[..n].copy_from_slice(&rates[..n]);
            Ok(n)
        }
        fn control_out(
            &self,
            setup: ControlSetup,
            data: &[u8],
            _: Duration,
        ) -> Result<usize, TransportError> {
            self.seen.lock().unwrap().push((setup, data.to_vec()));
            if setup.request == 1 && setup.value & 0xff == 0 {
                Ok(data.len())
            } else {
                Err(TransportError::Pipe)
            }
        }
    }

    fn reader() -> ControlReader {
        ControlReader {
            info: UsbInfo::default(),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn setup(request_type: u8, request: u8, value: u16, length: u16) -> Setup {
        Setup {
            request_type,
            request,
            value,
            index: 0,
            length,
        }
    }

    #[test]
    fn class_in_request_is_answered_by_the_reader() {
        let (r, ep0) = (reader(), RecordingEp0::default());
        let out = answer_setup(&setup(0xA1, 3, 0, 0x12), &r, &ep0).unwrap();
        assert_eq!(out, SetupOutcome::Sent(8));
        assert_eq!(
            ep0.log.lock().unwrap().as_slice(),
            ["send [00, 2a, 00, 00, 01, 54, 00, 00]"]
        );
        // wLength shorter than the answer: truncated
        let ep0 = RecordingEp0::default();
        assert_eq!(
            answer_setup(&setup(0xA1, 3, 0, 4), &r, &ep0).unwrap(),
            SetupOutcome::Sent(4)
        );
    }

    #[test]
    fn refused_requests_stall_in_their_direction() {
        let (r, ep0) = (reader(), RecordingEp0::default());
        // GET_CLOCK_FREQUENCIES refused
        let out = answer_setup(&setup(0xA1, 2, 0, 4), &r, &ep0).unwrap();
        assert!(matches!(out, SetupOutcome::Stalled(_)));
        // ABORT of slot 1 refused: an OUT stall
        let out = answer_setup(&setup(0x21, 1, 0x0301, 0), &r, &ep0).unwrap();
        assert!(matches!(out, SetupOutcome::Stalled(_)));
        // a standard request is never passed on
        let out = answer_setup(&setup(0x80, 6, 0x0100, 18), &r, &ep0).unwrap();
        assert!(matches!(out, SetupOutcome::Stalled(_)));
        assert_eq!(
            ep0.log.lock().unwrap().as_slice(),
            ["stall in=true", "stall in=false", "stall in=true"]
        );
        assert_eq!(r.seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn abort_is_acknowledged_with_an_empty_read() {
        let (r, ep0) = (reader(), RecordingEp0::default());
        // ABORT: wValue = bSeq << 8 | bSlot
        let out = answer_setup(&setup(0x21, 1, 0x0700, 0), &r, &ep0).unwrap();
        assert_eq!(out, SetupOutcome::Accepted(0));
        assert_eq!(ep0.log.lock().unwrap().as_slice(), ["receive 0"]);
        let seen = r.seen.lock().unwrap();
        assert_eq!(seen[0].0.request_type, 0x21);
        assert_eq!(seen[0].0.value, 0x0700);
    }

    #[test]
    fn out_data_stage_goes_to_the_reader() {
        let r = reader();
        let ep0 = RecordingEp0 {
            out_data: vec![1, 2, 3],
            ..RecordingEp0::default()
        };
        let out = answer_setup(&setup(0x21, 1, 0, 3), &r, &ep0).unwrap();
        assert_eq!(out, SetupOutcome::Accepted(3));
        assert_eq!(r.seen.lock().unwrap()[0].1, [1, 2, 3]);
        // refused after the data stage: reported, not stalled
        let ep0 = RecordingEp0 {
            out_data: vec![9],
            ..RecordingEp0::default()
        };
        let out = answer_setup(&setup(0x21, 0x65, 0, 1), &r, &ep0).unwrap();
        assert!(matches!(out, SetupOutcome::Stalled(ref s) if s.contains("acknowledged")));
        assert_eq!(ep0.log.lock().unwrap().as_slice(), ["receive 1"]);
    }
}
