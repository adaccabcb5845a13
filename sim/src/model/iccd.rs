//! USB ICCD (bInterfaceProtocol 1 and 2): the CCID functions carried by
//! class requests on the control pipe instead of bulk messages.
//!
//! Version A (character-level T=0 driven by a status byte):
//! * `IN  0x62` ICC_POWER_ON: the ATR;
//! * `OUT 0x63` ICC_POWER_OFF;
//! * `OUT 0x65` XFR_BLOCK: the 5-byte command header, then (when the card
//!   asks for it) the command data;
//! * `IN  0x6F` DATA_BLOCK: the card's data, or SW1 SW2;
//! * `IN  0xA0` GET_ICC_STATUS: one byte, 0x80 no card or mute, 0x40 busy,
//!   0x20 SW1 SW2 ready, 0x10 ready for data in either direction, 0x00
//!   idle.
//!
//! Version B (APDU level with chaining):
//! * `OUT 0x62` ICC_POWER_ON, `OUT 0x63` ICC_POWER_OFF;
//! * `OUT 0x65` XFR_BLOCK with the level parameter in wValue (high byte,
//!   or low byte), the extended-APDU chaining of CCID;
//! * `IN  0x6F` DATA_BLOCK: `bResponseType` then data: 0x00 whole answer,
//!   0x01/0x03/0x02 a chained answer (first, middle, last), 0x10 more
//!   command data expected, 0x40 error (byte 1 bStatus, byte 2 bError),
//!   0x80 not ready yet (bytes 1-2: delay in 10 ms units, little endian);
//! * `IN  0x81` SLOT_STATUS: three bytes, the second being bStatus.
#![forbid(unsafe_code)]

use super::VirtualReader;
use ccid::proto::message::{CommandStatus, IccStatus, SlotError, Status};
use ccid::transport::TransportError;
use std::time::Duration;

/// The ICCD version of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IccdVersion {
    /// bInterfaceProtocol 1.
    A,
    /// bInterfaceProtocol 2.
    B,
}

impl IccdVersion {
    /// From bInterfaceProtocol.
    pub fn from_protocol(p: u8) -> Option<Self> {
        match p {
            1 => Some(IccdVersion::A),
            2 => Some(IccdVersion::B),
            _ => None,
        }
    }
}

/// Version A: where the T=0 dialogue stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum AState {
    #[default]
    Idle,
    /// The card acknowledged: data may move. `ne` bytes to read when the
    /// card sends.
    Data { ne: usize },
    /// SW1 SW2 ready.
    Sw([u8; 2]),
    /// The card stopped answering.
    Mute,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct IccdState {
    a: AState,
    a_ins: u8,
    /// Version B: the data block for the next DATA_BLOCK and when it is
    /// ready.
    pending: Option<(Duration, Vec<u8>)>,
}

const STATUS_MUTE: u8 = 0x80;
const STATUS_SW: u8 = 0x20;
const STATUS_DATA: u8 = 0x10;

impl VirtualReader {
    fn iccd_status_a(&self) -> u8 {
        match (self.icc_status(0), self.iccd_state.a) {
            (Some(IccStatus::Absent) | None, _) => STATUS_MUTE,
            (_, AState::Mute) => STATUS_MUTE,
            (_, AState::Sw(_)) => STATUS_SW,
            (_, AState::Data { .. }) => STATUS_DATA,
            (_, AState::Idle) => 0x00,
        }
    }

    /// Reads procedure bytes after something was sent to the card.
    fn iccd_a_procedure(&mut self) {
        let ins = self.iccd_state.a_ins;
        let ne = match self.iccd_state.a {
            AState::Data { ne } => ne,
            _ => 0,
        };
        let Some(card) = self.card_mut(0) else {
            self.iccd_state.a = AState::Mute;
            return;
        };
        let next = loop {
            let Some(&b) = card.t0_read(1).first() else {
                break AState::Mute;
            };
            if b == 0x60 {
                continue;
            }
            if matches!(b & 0xF0, 0x60 | 0x90) {
                break match card.t0_read(1).first() {
                    Some(&sw2) => AState::Sw([b, sw2]),
                    None => AState::Mute,
                };
            }
            if b == ins || b == ins ^ 0x01 || b == ins ^ 0xFF || b == ins ^ 0xFE {
                break AState::Data { ne };
            }
            break AState::Mute;
        };
        self.iccd_state.a = next;
    }

    fn iccd_block_error(&self, error: u8) -> Vec<u8> {
        let icc = self.icc_status(0).unwrap_or(IccStatus::Absent);
        vec![0x40, Status::new(icc, CommandStatus::Failed).0, error]
    }

    pub(super) fn iccd_in(
        &mut self,
        req: u8,
        _value: u16,
        len: usize,
    ) -> Result<Vec<u8>, TransportError> {
        let version = self.iccd.ok_or(TransportError::Pipe)?;
        let mut out = match (version, req) {
            (IccdVersion::A, 0x62) => {
                let ctx = self.ctx_owned();
                let Some(s) = self.slots.get_mut(0) else {
                    return Err(TransportError::Pipe);
                };
                let (r, _) = s.power_on(&ctx.as_ctx(), 0);
                self.iccd_state.a = AState::Idle;
                r.map_err(|_| TransportError::Pipe)?
            }
            (IccdVersion::A, 0xA0) => vec![self.iccd_status_a()],
            (IccdVersion::A, 0x6F) => match self.iccd_state.a {
                AState::Sw(sw) => {
                    self.iccd_state.a = AState::Idle;
                    sw.to_vec()
                }
                AState::Data { ne } => {
                    let Some(card) = self.card_mut(0) else {
                        return Err(TransportError::Pipe);
                    };
                    let n = ne.min(len).min(card.t0_available());
                    let data = card.t0_read(n);
                    self.iccd_state.a = AState::Data {
                        ne: ne.saturating_sub(n),
                    };
                    if ne.saturating_sub(n) == 0 {
                        self.iccd_a_procedure();
                    }
                    data
                }
                _ => return Err(TransportError::Pipe),
            },
            (IccdVersion::B, 0x81) => {
                let icc = self.icc_status(0).unwrap_or(IccStatus::Absent);
                vec![0x00, Status::new(icc, CommandStatus::Ok).0, 0x00]
            }
            (IccdVersion::B, 0x6F) => match self.iccd_state.pending.take() {
                Some((ready, block)) if ready <= self.now => block,
                Some((ready, block)) => {
                    let wait = ready.saturating_sub(self.now);
                    let units =
                        u16::try_from(wait.as_millis().div_ceil(10).max(1)).unwrap_or(u16::MAX);
                    self.iccd_state.pending = Some((ready, block));
                    let [lo, hi] = units.to_le_bytes();
                    vec![0x80, lo, hi]
                }
                None => self.iccd_block_error(SlotError::CMD_NOT_SUPPORTED.0),
            },
            _ => return Err(TransportError::Pipe),
        };
        out.truncate(len);
        Ok(out)
    }

    pub(super) fn iccd_out(
        &mut self,
        req: u8,
        value: u16,
        data: &[u8],
    ) -> Result<usize, TransportError> {
        let version = self.iccd.ok_or(TransportError::Pipe)?;
        let ctx = self.ctx_owned();
        match (version, req) {
            (_, 0x63) => {
                if let Some(s) = self.slots.get_mut(0) {
                    s.power_off();
                }
                self.iccd_state = IccdState::default();
                Ok(0)
            }
            (IccdVersion::B, 0x62) => {
                let Some(s) = self.slots.get_mut(0) else {
                    return Err(TransportError::Pipe);
                };
                let (r, d) = s.power_on(&ctx.as_ctx(), 0);
                let block = match r {
                    Ok(atr) => {
                        let mut b = vec![0x00];
                        b.extend_from_slice(&atr);
                        b
                    }
                    Err(e) => self.iccd_block_error(e),
                };
                self.iccd_state.pending = Some((self.now + d, block));
                Ok(0)
            }
            (IccdVersion::B, 0x65) => {
                let level = if value & 0x00FF != 0 {
                    value
                } else {
                    value >> 8
                };
                let Some(s) = self.slots.get_mut(0) else {
                    return Err(TransportError::Pipe);
                };
                let (r, d) = if s.icc() == IccStatus::Active {
                    s.xfr_extended(&ctx.as_ctx(), level, data, ctx.as_ctx().max_data())
                } else {
                    (Err(SlotError::ICC_MUTE.0), Duration::ZERO)
                };
                let block = match r {
                    Ok((d, chain)) => {
                        let mut b = vec![chain];
                        b.extend_from_slice(&d);
                        b
                    }
                    Err(e) => self.iccd_block_error(e),
                };
                self.iccd_state.pending = Some((self.now + d, block));
                Ok(data.len())
            }
            (IccdVersion::A, 0x65) => {
                if self.icc_status(0) != Some(IccStatus::Active) {
                    self.iccd_state.a = AState::Mute;
                    return Ok(data.len());
                }
                match self.iccd_state.a {
                    AState::Data { ne } => {
                        if let Some(card) = self.card_mut(0) {
                            card.t0_write(data);
                        }
                        self.iccd_state.a = AState::Data { ne };
                        self.iccd_a_procedure();
                    }
                    _ => {
                        let mut header = [0u8; 5];
                        let Some(h) = data.get(..4) else {
                            return Err(TransportError::Pipe);
                        };
                        header[..4].copy_from_slice(h);
                        header[4] = data.get(4).copied().unwrap_or(0);
                        self.iccd_state.a_ins = header[1];
                        let p3 = usize::from(header[4]);
                        self.iccd_state.a = AState::Data {
                            ne: if p3 == 0 { 256 } else { p3 },
                        };
                        if let Some(card) = self.card_mut(0) {
                            card.t0_write(&header);
                        }
                        self.iccd_a_procedure();
                    }
                }
                Ok(data.len())
            }
            _ => Err(TransportError::Pipe),
        }
    }

    /// A copy of what [`super::slot::Ctx`] borrows, so that a slot can be
    /// borrowed mutably at the same time.
    fn ctx_owned(&self) -> OwnedCtx {
        OwnedCtx {
            descriptor: self.cfg.descriptor.clone(),
            level: self.level,
            timing: self.cfg.timing,
            data_rates: self.cfg.data_rates.clone(),
            clocks: self.cfg.clock_frequencies.clone(),
        }
    }
}

pub(crate) struct OwnedCtx {
    descriptor: ccid::proto::descriptor::CcidDescriptor,
    level: ccid::proto::descriptor::ExchangeLevel,
    timing: crate::timing::TimeModel,
    data_rates: Vec<u32>,
    clocks: Vec<u32>,
}

impl OwnedCtx {
    pub(crate) fn as_ctx(&self) -> super::slot::Ctx<'_> {
        super::slot::Ctx {
            descriptor: &self.descriptor,
            level: self.level,
            timing: &self.timing,
            data_rates: &self.data_rates,
            clocks: &self.clocks,
        }
    }
}
