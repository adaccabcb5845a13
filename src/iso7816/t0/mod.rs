//! T=0, the half-duplex character protocol (ISO/IEC 7816-3:2006 §10) and
//! its transport of APDUs (§12.2).
//!
//! * [`check_tpdu`]: for TPDU and short-APDU readers, which run the
//!   procedure bytes themselves, a command only has to fit one CCID
//!   message.
//! * [`T0CharEngine`]: for character-level readers, the host runs the
//!   procedure bytes (§10.3.3). Sans-IO: each [`T0Step::Send`] is an
//!   XfrBlock carrying `bytes` and asking the reader for exactly `expect`
//!   bytes back (`wLevelParameter`), which go to
//!   [`T0CharEngine::on_bytes`]. The engine never asks for a byte the card
//!   is not bound to send.
//!
//! APDU transport choices (§12.2):
//! * case 1 goes as a header with P3 = 0; case 2S with P3 = Le; case 3S with
//!   P3 = Lc; case 4S is sent as case 3S;
//! * `61XX` after a command that expects data (cases 2 and 4), when
//!   [`T0Options::get_response`] is set (the default), is followed by GET
//!   RESPONSE `CLA C0 00 00 XX` carrying the command's CLA (so that
//!   logical channels and GSM-class `A0` cards work), repeated while the
//!   card answers `61XX`; the data are concatenated. Without the option
//!   `61XX` is returned as it is, as a TPDU reader would;
//! * `6CXX` after a command that receives data, when
//!   [`T0Options::resend_on_6c`] is set (the default), makes the engine
//!   send the same header again with P3 = XX (§12.2.2);
//! * extended APDUs are refused (they need ENVELOPE, not provided here);
//! * INS `6X` and `9X` are refused (§10.3.2: they could not be told from
//!   SW1).

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

pub mod card;

use super::apdu::{Apdu, ApduCase, ApduError};
use thiserror::Error;

/// The CCID header that precedes every command in a CCID message.
pub const CCID_HEADER_LEN: usize = 10;

/// NULL procedure byte (§10.3.3).
pub const NULL: u8 = 0x60;

/// The default largest response: 65536 data bytes plus SW1 SW2.
pub const DEFAULT_MAX_RESPONSE: usize = 65_538;

/// NULL bytes (and other steps that carry no data) allowed per exchange in
/// the step budget.
pub const NULL_ALLOWANCE: u64 = 4096;

/// Why a T=0 command or exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum T0Error {
    /// The command does not fit one CCID message.
    #[error("command of {len} bytes exceeds the reader's {max} (dwMaxCCIDMessageLength - 10)")]
    TooLong {
        /// Command length.
        len: usize,
        /// The largest the reader takes.
        max: usize,
    },
    /// The command is shorter than a 4-byte header.
    #[error("command of {0} bytes is too short")]
    TooShort(usize),
    /// The APDU is malformed.
    #[error("invalid APDU: {0}")]
    Apdu(#[from] ApduError),
    /// Extended APDUs cannot go over T=0 without ENVELOPE.
    #[error("extended APDU not supported over T=0")]
    Extended,
    /// INS 6X or 9X.
    #[error("invalid INS {0:#04x} for T=0")]
    InvalidIns(u8),
    /// A byte that is neither NULL, ACK nor SW1.
    #[error("unexpected procedure byte {0:#04x}")]
    UnexpectedProcedureByte(u8),
    /// The reader returned more bytes than the protocol allows here.
    #[error("{0} unexpected bytes from the card")]
    UnexpectedBytes(usize),
    /// The reader returned no byte.
    #[error("no byte from the card")]
    NoData,
    /// The response exceeds the maximum.
    #[error("response longer than {max} bytes")]
    ResponseTooLong {
        /// The maximum.
        max: usize,
    },
    /// The exchange exceeded its step budget.
    #[error("T=0 exchange exceeded its budget of {budget} steps")]
    StepBudget {
        /// The budget.
        budget: u64,
    },
    /// `on_bytes` after the exchange ended.
    #[error("T=0 exchange already finished")]
    Finished,
}

/// Checks that a command for a TPDU or short-APDU reader fits one CCID
/// message of `max_message_len` (`dwMaxCCIDMessageLength`, header
/// included).
pub fn check_tpdu(cmd: &[u8], max_message_len: u32) -> Result<(), T0Error> {
    if cmd.len() < 4 {
        return Err(T0Error::TooShort(cmd.len()));
    }
    let max = usize::try_from(max_message_len)
        .unwrap_or(usize::MAX)
        .saturating_sub(CCID_HEADER_LEN);
    if cmd.len() > max {
        return Err(T0Error::TooLong {
            len: cmd.len(),
            max,
        });
    }
    Ok(())
}

/// Options of the character-level engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct T0Options {
    /// The largest response accepted (data and SW).
    pub max_response: usize,
    /// Follow `61XX` with GET RESPONSE (cases 2 and 4).
    pub get_response: bool,
    /// Resend the command with P3 = XX after `6CXX`.
    pub resend_on_6c: bool,
}

impl Default for T0Options {
    fn default() -> Self {
        T0Options {
            max_response: DEFAULT_MAX_RESPONSE,
            get_response: true,
            resend_on_6c: true,
        }
    }
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum T0Step {
    /// Send `bytes` (possibly none) and read exactly `expect` bytes.
    Send {
        /// Bytes for the card.
        bytes: Vec<u8>,
        /// Bytes to read back (at least 1).
        expect: usize,
    },
    /// The exchange is complete.
    Done {
        /// Response data followed by SW1 SW2.
        response: Vec<u8>,
    },
}

/// Data direction of the command in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Host to card (cases 1, 3, 4): `data` is sent.
    In,
    /// Card to host (case 2, GET RESPONSE): `ne` bytes are received.
    Out,
}

/// What the engine is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Proc,
    Data(usize),
    Sw2(u8),
}

/// The character-level T=0 engine for one APDU.
#[derive(Debug, Clone)]
pub struct T0CharEngine {
    opts: T0Options,
    case: ApduCase,
    header: [u8; 5],
    data: Vec<u8>,
    dir: Dir,
    ne: usize,
    sent: usize,
    received: Vec<u8>,
    acc: Vec<u8>,
    wait: Wait,
    finished: bool,
    steps: u64,
    budget: u64,
}

/// P3 → Ne for outgoing data (§10.3.2: P3 = 0 means 256).
fn ne_of(p3: u8) -> usize {
    if p3 == 0 {
        256
    } else {
        usize::from(p3)
    }
}

impl T0CharEngine {
    /// Starts the exchange of `apdu`; returns the engine and the first
    /// step (the 5-byte header, expecting one procedure byte).
    pub fn start(apdu: &[u8], opts: T0Options) -> Result<(T0CharEngine, T0Step), T0Error> {
        let a = Apdu::parse(apdu)?;
        if a.case.is_extended() {
            return Err(T0Error::Extended);
        }
        let ins = a.ins();
        if matches!(ins & 0xF0, 0x60 | 0x90) {
            return Err(T0Error::InvalidIns(ins));
        }
        let [cla, _, p1, p2] = a.header;
        let (p3, dir) = match a.case {
            ApduCase::Case2Short => ((a.le.unwrap_or(256) % 256) as u8, Dir::Out),
            ApduCase::Case1 => (0, Dir::In),
            _ => (a.data.len() as u8, Dir::In),
        };
        let budget = 64u64
            .saturating_add((apdu.len() as u64).saturating_mul(4))
            .saturating_add((opts.max_response as u64).saturating_mul(4))
            .saturating_add(NULL_ALLOWANCE);
        let mut e = T0CharEngine {
            opts,
            case: a.case,
            header: [cla, ins, p1, p2, p3],
            data: a.data.to_vec(),
            dir,
            ne: if dir == Dir::Out { ne_of(p3) } else { 0 },
            sent: 0,
            received: Vec::new(),
            acc: Vec::new(),
            wait: Wait::Proc,
            finished: false,
            steps: 0,
            budget,
        };
        let step = e.send_header();
        Ok((e, step))
    }

    fn send_header(&mut self) -> T0Step {
        self.sent = 0;
        self.received.clear();
        self.wait = Wait::Proc;
        T0Step::Send {
            bytes: self.header.to_vec(),
            expect: 1,
        }
    }

    fn ins(&self) -> u8 {
        self.header[1]
    }

    /// Bytes to read for the current wait state.
    fn need(&self) -> usize {
        match self.wait {
            Wait::Proc | Wait::Sw2(_) => 1,
            // The data, then the next procedure byte (§10.3.3).
            Wait::Data(n) => n + 1,
        }
    }

    /// Feeds the bytes the reader returned.
    pub fn on_bytes(&mut self, bytes: &[u8]) -> Result<T0Step, T0Error> {
        if self.finished {
            return Err(T0Error::Finished);
        }
        self.steps += 1;
        if self.steps > self.budget {
            self.finished = true;
            return Err(T0Error::StepBudget {
                budget: self.budget,
            });
        }
        if bytes.is_empty() {
            self.finished = true;
            return Err(T0Error::NoData);
        }
        let r = self.consume(bytes);
        if !matches!(r, Ok(T0Step::Send { .. })) {
            self.finished = true;
        }
        r
    }

    fn consume(&mut self, bytes: &[u8]) -> Result<T0Step, T0Error> {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(step) = self.feed(b)? {
                let extra = bytes.len() - i - 1;
                if extra != 0 {
                    return Err(T0Error::UnexpectedBytes(extra));
                }
                return Ok(step);
            }
        }
        Ok(T0Step::Send {
            bytes: Vec::new(),
            expect: self.need(),
        })
    }

    fn check_size(&self, extra: usize) -> Result<(), T0Error> {
        if self.acc.len() + self.received.len() + extra > self.opts.max_response {
            return Err(T0Error::ResponseTooLong {
                max: self.opts.max_response,
            });
        }
        Ok(())
    }

    /// One byte from the card; `Some` when something must be sent or the
    /// exchange is over.
    fn feed(&mut self, b: u8) -> Result<Option<T0Step>, T0Error> {
        match self.wait {
            Wait::Data(n) => {
                // Room for this byte and the SW that must follow.
                self.check_size(3)?;
                self.received.push(b);
                self.wait = if n > 1 { Wait::Data(n - 1) } else { Wait::Proc };
                Ok(None)
            }
            Wait::Sw2(sw1) => self.status(sw1, b).map(Some),
            Wait::Proc => {
                let ins = self.ins();
                if b == NULL {
                    // §10.3.3: NULL, the card wants more time.
                    Ok(None)
                } else if matches!(b & 0xF0, 0x60 | 0x90) {
                    // §10.3.3: SW1, SW2 follows.
                    self.wait = Wait::Sw2(b);
                    Ok(None)
                } else if b == ins || b == ins ^ 0x01 {
                    // §10.3.3: ACK = INS, all remaining data.
                    Ok(self.ack(false))
                } else if b == ins ^ 0xFF || b == ins ^ 0xFE {
                    // §10.3.3: ACK = INS ⊕ FF, one data byte.
                    Ok(self.ack(true))
                } else {
                    Err(T0Error::UnexpectedProcedureByte(b))
                }
            }
        }
    }

    fn ack(&mut self, single: bool) -> Option<T0Step> {
        match self.dir {
            Dir::In => {
                let rest = self.data.get(self.sent..).unwrap_or_default();
                let n = if single {
                    rest.len().min(1)
                } else {
                    rest.len()
                };
                let bytes = rest.get(..n).unwrap_or_default().to_vec();
                self.sent += n;
                Some(T0Step::Send { bytes, expect: 1 })
            }
            Dir::Out => {
                let rest = self.ne.saturating_sub(self.received.len());
                let n = if single { rest.min(1) } else { rest };
                if n > 0 {
                    self.wait = Wait::Data(n);
                }
                None
            }
        }
    }

    /// SW1 SW2 received (§12.2.2-§12.2.5).
    fn status(&mut self, sw1: u8, sw2: u8) -> Result<T0Step, T0Error> {
        if sw1 == 0x6C && self.opts.resend_on_6c && self.dir == Dir::Out {
            // §12.2.2: wrong length, resend with P3 = SW2.
            self.header[4] = sw2;
            self.ne = ne_of(sw2);
            return Ok(self.send_header());
        }
        if sw1 == 0x61 && self.opts.get_response && self.case.expects_data() {
            // §12.2.2/§12.2.5: data available, GET RESPONSE.
            let received = std::mem::take(&mut self.received);
            self.acc.extend_from_slice(&received);
            self.header = [self.header[0], 0xC0, 0x00, 0x00, sw2];
            self.dir = Dir::Out;
            self.ne = ne_of(sw2);
            self.data.clear();
            return Ok(self.send_header());
        }
        self.check_size(2)?;
        let mut response = std::mem::take(&mut self.acc);
        response.extend_from_slice(&self.received);
        response.extend_from_slice(&[sw1, sw2]);
        Ok(T0Step::Done { response })
    }
}

#[cfg(test)]
mod tests;
