//! USB ICCD (Integrated Circuit(s) Card Devices, USB-IF ICCD rev 1.0):
//! tokens that carry CCID semantics over the control pipe instead of bulk
//! endpoints. `bInterfaceProtocol` 1 is version A (character-level T=0
//! state machine driven by a status byte), 2 is version B (APDU level,
//! `bResponseType` in every data block).
//!
//! Each CCID command the slot layer sends is carried out with control
//! requests and answered with a synthesized CCID response, so the rest of
//! the driver does not know the difference. Every polling loop is bounded
//! by the exchange's deadline.

use crate::error::{Error, Result};
use crate::proto::message::{
    Command, CommandStatus, IccStatus, MessageType, Response, SlotError, Status,
};
use crate::transport::{ControlSetup, Transport, TransportError};
use std::time::{Duration, Instant};

/// ICCD request codes.
mod request {
    pub const ICC_POWER_ON: u8 = 0x62;
    pub const ICC_POWER_OFF: u8 = 0x63;
    pub const XFR_BLOCK: u8 = 0x65;
    pub const DATA_BLOCK: u8 = 0x6F;
    pub const GET_ICC_STATUS: u8 = 0xA0;
    pub const SLOT_STATUS: u8 = 0x81;
}

/// Largest data block a control transfer carries (wLength is 16 bits; the
/// reference caps it at 4096 bytes, which real tokens accept).
pub const MAX_BLOCK: usize = 0x1000;

/// Which ICCD version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Version A (bInterfaceProtocol 1).
    A,
    /// Version B (bInterfaceProtocol 2).
    B,
}

impl Version {
    /// From `bInterfaceProtocol`.
    pub fn from_protocol(p: u8) -> Option<Version> {
        match p {
            1 => Some(Version::A),
            2 => Some(Version::B),
            _ => None,
        }
    }
}

/// Version A status byte: busy.
const A_BUSY: u8 = 0x40;
/// Version A status byte: card mute / absent.
const A_MUTE: u8 = 0x80;
/// Version A status byte: ready to send or receive data.
const A_DATA: u8 = 0x10;
/// Version A status byte: SW1 SW2 ready.
const A_STATUS_WORDS: u8 = 0x20;

/// Control-pipe access for one ICCD interface.
pub(crate) struct Iccd<'a> {
    pub(crate) version: Version,
    pub(crate) transport: &'a dyn Transport,
    pub(crate) interface: u16,
    pub(crate) deadline: Instant,
}

fn map(e: TransportError) -> Error {
    match e {
        TransportError::NoDevice => Error::NoDevice,
        e => Error::Transport(e),
    }
}

fn response(
    msg: MessageType,
    slot: u8,
    seq: u8,
    icc: IccStatus,
    data: Vec<u8>,
    chain: u8,
) -> Response {
    Response {
        message_type: msg,
        slot,
        seq,
        status: Status::new(icc, CommandStatus::Ok),
        error: SlotError(0),
        specific: chain,
        data,
    }
}

fn failed(msg: MessageType, slot: u8, seq: u8, icc: IccStatus, error: u8) -> Response {
    Response {
        message_type: msg,
        slot,
        seq,
        status: Status::new(icc, CommandStatus::Failed),
        error: SlotError(error),
        specific: 0,
        data: Vec::new(),
    }
}

impl Iccd<'_> {
    fn remaining(&self) -> Result<Duration> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Error::Timeout { ms: 0 });
        }
        Ok(self.deadline - now)
    }

    fn control_in(&self, req: u8, value: u16, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let setup = ControlSetup {
            request_type: 0xA1,
            request: req,
            value,
            index: self.interface,
        };
        let n = self
            .transport
            .control_in(setup, &mut buf, self.remaining()?)
            .map_err(map)?;
        buf.truncate(n);
        super::trace_control("receive:", &buf);
        Ok(buf)
    }

    fn control_out(&self, req: u8, value: u16, data: &[u8]) -> Result<()> {
        let setup = ControlSetup {
            request_type: 0x21,
            request: req,
            value,
            index: self.interface,
        };
        super::trace_control("send:", data);
        self.transport
            .control_out(setup, data, self.remaining()?)
            .map_err(map)?;
        Ok(())
    }

    /// Version A: the status byte, waiting out 'busy' (10 ms steps).
    fn status_a(&self) -> Result<u8> {
        loop {
            let s = self.control_in(request::GET_ICC_STATUS, 0, 1)?;
            let b = *s
                .first()
                .ok_or(Error::Protocol("empty ICCD status".into()))?;
            if b & A_BUSY == 0 {
                return Ok(b);
            }
            std::thread::sleep(Duration::from_millis(10).min(self.remaining()?));
        }
    }

    /// Version B: one data block, waiting out 'polling' answers. Returns
    /// (bResponseType, data).
    fn data_block_b(&self, len: usize) -> Result<(u8, Vec<u8>)> {
        loop {
            let b = self.control_in(request::DATA_BLOCK, 0, len.max(4) + 1)?;
            let Some((&kind, rest)) = b.split_first() else {
                return Err(Error::Protocol("empty ICCD data block".into()));
            };
            match kind {
                0x00 | 0x01 | 0x02 | 0x03 | 0x10 => return Ok((kind, rest.to_vec())),
                0x40 => {
                    let err = rest.get(1).copied().unwrap_or(0);
                    return Err(Error::Slot {
                        error: SlotError(err),
                        status: Status(0x40),
                    });
                }
                0x80 => {
                    let lo = u64::from(rest.first().copied().unwrap_or(0));
                    let hi = u64::from(rest.get(1).copied().unwrap_or(0));
                    let delay = Duration::from_millis(((hi << 8) | lo).max(1) * 10);
                    std::thread::sleep(delay.min(self.remaining()?));
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "unknown ICCD bResponseType {other:#04x}"
                    )))
                }
            }
        }
    }

    /// Carries out one CCID command.
    pub(crate) fn exchange(&self, slot: u8, seq: u8, cmd: &Command) -> Result<Response> {
        let rsp = |icc, data, chain| {
            response(
                MessageType::RDR_TO_PC_DATA_BLOCK,
                slot,
                seq,
                icc,
                data,
                chain,
            )
        };
        match (self.version, cmd) {
            (_, Command::GetSlotStatus) => {
                let icc = self.slot_status()?;
                Ok(response(
                    MessageType::RDR_TO_PC_SLOT_STATUS,
                    slot,
                    seq,
                    icc,
                    Vec::new(),
                    0,
                ))
            }
            (v, Command::IccPowerOff) => {
                self.control_out(request::ICC_POWER_OFF, 0, &[])?;
                if v == Version::B {
                    self.control_in(request::SLOT_STATUS, 0, 3)?;
                }
                Ok(response(
                    MessageType::RDR_TO_PC_SLOT_STATUS,
                    slot,
                    seq,
                    IccStatus::Inactive,
                    Vec::new(),
                    0,
                ))
            }
            (Version::A, Command::IccPowerOn { .. }) => {
                self.control_out(request::ICC_POWER_OFF, 0, &[])?;
                if self.status_a()? == A_MUTE {
                    return Ok(failed(
                        MessageType::RDR_TO_PC_DATA_BLOCK,
                        slot,
                        seq,
                        IccStatus::Absent,
                        0xFE,
                    ));
                }
                let atr = self.control_in(request::ICC_POWER_ON, 0, 33)?;
                Ok(rsp(IccStatus::Active, atr, 0))
            }
            (Version::B, Command::IccPowerOn { .. }) => {
                self.control_out(request::ICC_POWER_OFF, 0, &[])?;
                self.control_in(request::SLOT_STATUS, 0, 3)?;
                self.control_out(request::ICC_POWER_ON, 1, &[])?;
                match self.data_block_b(33) {
                    Ok((0, atr)) => Ok(rsp(IccStatus::Active, atr, 0)),
                    Ok((kind, _)) => {
                        Err(Error::Protocol(format!("ICCD ATR block type {kind:#04x}")))
                    }
                    Err(Error::Slot { error, .. }) => Ok(failed(
                        MessageType::RDR_TO_PC_DATA_BLOCK,
                        slot,
                        seq,
                        IccStatus::Inactive,
                        error.0,
                    )),
                    Err(e) => Err(e),
                }
            }
            (Version::B, Command::XfrBlock { level, data, .. }) => {
                let level = if data.is_empty() && *level == 0 {
                    0x10
                } else {
                    *level
                };
                self.control_out(request::XFR_BLOCK, level << 8, data)?;
                match self.data_block_b(MAX_BLOCK) {
                    Ok((kind, d)) => {
                        let chain = if kind == 0 { 0 } else { kind };
                        Ok(rsp(IccStatus::Active, d, chain))
                    }
                    Err(Error::Slot { error, .. }) => Ok(failed(
                        MessageType::RDR_TO_PC_DATA_BLOCK,
                        slot,
                        seq,
                        IccStatus::Active,
                        error.0,
                    )),
                    Err(e) => Err(e),
                }
            }
            (Version::A, Command::XfrBlock { data, .. }) => {
                self.transmit_a(data).map(|d| rsp(IccStatus::Active, d, 0))
            }
            (_, other) => Ok(failed(
                other
                    .message_type()
                    .expected_response()
                    .unwrap_or(MessageType::RDR_TO_PC_SLOT_STATUS),
                slot,
                seq,
                IccStatus::Active,
                SlotError::CMD_NOT_SUPPORTED.0,
            )),
        }
    }

    fn slot_status(&self) -> Result<IccStatus> {
        match self.version {
            Version::A => Ok(if self.status_a()? == A_MUTE {
                IccStatus::Absent
            } else {
                IccStatus::Active
            }),
            Version::B => {
                let s = self.control_in(request::SLOT_STATUS, 0, 3)?;
                Ok(match s.get(1).map(|b| b & 3) {
                    Some(0) => IccStatus::Active,
                    Some(1) => IccStatus::Inactive,
                    Some(_) => IccStatus::Absent,
                    None => return Err(Error::Protocol("short ICCD slot status".into())),
                })
            }
        }
    }

    /// Version A: a T=0 APDU through the token's status-driven state
    /// machine: the 5-byte header, then the data to send or the data to
    /// receive when the token asks for it, then SW1 SW2.
    fn transmit_a(&self, apdu: &[u8]) -> Result<Vec<u8>> {
        if apdu.len() < 4 {
            return Err(Error::InvalidArgument("APDU shorter than 4 bytes"));
        }
        let (header, body) = if apdu.len() == 4 {
            let mut h = apdu.to_vec();
            h.push(0);
            (h, &[][..])
        } else {
            (
                apdu.get(..5).unwrap_or(apdu).to_vec(),
                apdu.get(5..).unwrap_or(&[]),
            )
        };
        let p3 = usize::from(header.get(4).copied().unwrap_or(0));
        self.control_out(request::XFR_BLOCK, 0, &header)?;
        let mut out = Vec::new();
        let mut status = self.status_a()?;
        if status == A_DATA {
            if body.is_empty() {
                let want = if p3 == 0 { 256 } else { p3 };
                out = self.control_in(request::DATA_BLOCK, 0, want.min(MAX_BLOCK))?;
            } else {
                self.control_out(request::XFR_BLOCK, 0, body)?;
            }
            status = self.status_a()?;
        }
        if status == A_STATUS_WORDS {
            let sw = self.control_in(request::DATA_BLOCK, 0, 2)?;
            out.extend_from_slice(&sw);
            return Ok(out);
        }
        if status == A_MUTE {
            return Err(Error::IccMute);
        }
        Err(Error::Protocol(format!(
            "ICCD status {status:#04x} where SW1 SW2 were expected"
        )))
    }
}
