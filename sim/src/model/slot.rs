//! One card slot of a virtual reader: its card, power, parameters, clock
//! and the exchange state of XfrBlock at the reader's level.
#![forbid(unsafe_code)]

use crate::card::{Card, PpsAnswer};
use crate::timing::TimeModel;
use ccid::iso7816::atr::{Convention, Edc};
use ccid::iso7816::params;
use ccid::proto::descriptor::{CcidDescriptor, ExchangeLevel, Features};
use ccid::proto::message::{IccStatus, SlotError};
use std::time::Duration;

/// What the slot layer needs from the reader.
pub(crate) struct Ctx<'a> {
    pub descriptor: &'a CcidDescriptor,
    pub level: ExchangeLevel,
    pub timing: &'a TimeModel,
    pub data_rates: &'a [u32],
    pub clocks: &'a [u32],
}

impl Ctx<'_> {
    /// Largest abData of one message (dwMaxCCIDMessageLength − 10).
    pub fn max_data(&self) -> usize {
        (self.descriptor.dwMaxCCIDMessageLength as usize).saturating_sub(10)
    }

    fn features(&self) -> Features {
        self.descriptor.features()
    }

    /// Whether the reader selects protocol and speed with the card itself.
    fn auto_pps(&self) -> bool {
        self.features()
            .intersects(Features::AUTO_PPS_PROP | Features::AUTO_PPS_CUR)
    }
}

/// The result of a command on a slot: the answer's data and third specific
/// byte, or a bError.
pub(crate) type SlotResult = Result<(Vec<u8>, u8), u8>;

/// Length of the T=0 and T=1 protocol data structures.
pub(crate) const T0_PARAMS_LEN: usize = 5;
/// See [`T0_PARAMS_LEN`].
pub(crate) const T1_PARAMS_LEN: usize = 7;

/// One slot.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub card: Option<Card>,
    /// A card taken out by [`crate::model::VirtualReader::remove_card`],
    /// kept for re-insertion.
    pub spare: Option<Card>,
    pub powered: bool,
    /// bProtocolNum and abProtocolDataStructure in force.
    pub protocol: u8,
    pub params: Vec<u8>,
    /// bClockStatus.
    pub clock_status: u8,
    /// Clock (kHz) and data rate (bps) set by SetDataRateAndClockFrequency.
    pub clock_khz: u32,
    pub data_rate: u32,
    /// Extended APDU: command data gathered so far.
    pub cmd_chain: Option<Vec<u8>>,
    /// Extended APDU: response data still to send.
    pub resp_chain: Option<Vec<u8>>,
    pub endless_chain: bool,
    /// bmChanges / classes of the last T0APDU.
    pub t0_classes: (u8, u8),
    pub locked: bool,
    /// The card state changed since the last NotifySlotChange.
    pub changed: bool,
}

/// The default structure for `protocol` with the card's ATR values.
pub(crate) fn default_params(card: Option<&Card>, protocol: u8, fi_di: u8) -> Vec<u8> {
    let atr = card.map(Card::parsed_atr);
    let inverse = atr.is_some_and(|a| a.convention() == Convention::Inverse);
    let n = atr.map_or(0, |a| a.n());
    if protocol == 1 {
        let crc = atr.is_some_and(|a| a.edc() == Edc::Crc);
        let waiting = atr.map_or(0x4D, |a| (a.bwi() << 4) | (a.cwi() & 0x0F));
        let ifsc = atr.map_or(32, |a| a.ifsc());
        vec![
            fi_di,
            0x10 | u8::from(crc) | (u8::from(inverse) << 1),
            n,
            waiting,
            0,
            ifsc,
            0,
        ]
    } else {
        let wi = atr.map_or(10, |a| a.wi());
        vec![fi_di, u8::from(inverse) << 1, n, wi, 0]
    }
}

impl Slot {
    pub fn icc(&self) -> IccStatus {
        match (&self.card, self.powered) {
            (None, _) => IccStatus::Absent,
            (Some(_), true) => IccStatus::Active,
            (Some(_), false) => IccStatus::Inactive,
        }
    }

    pub fn fi_di(&self) -> u8 {
        self.params
            .first()
            .copied()
            .unwrap_or(params::DEFAULT_FI_DI)
    }

    fn clear_exchange(&mut self) {
        self.cmd_chain = None;
        self.resp_chain = None;
    }

    /// Parameters back to the defaults of the card's current protocol.
    pub fn reset_params(&mut self) {
        let (protocol, fi_di) = match &self.card {
            Some(c) if self.powered => (c.protocol(), c.fi_di()),
            Some(c) => (c.parsed_atr().default_protocol(), params::DEFAULT_FI_DI),
            None => (0, params::DEFAULT_FI_DI),
        };
        self.protocol = if protocol == 1 { 1 } else { 0 };
        self.params = default_params(self.card.as_ref(), self.protocol, fi_di);
    }

    /// Inserts a card (powered off).
    pub fn insert(&mut self, card: Card) {
        self.card = Some(card);
        self.powered = false;
        self.clock_status = 0;
        self.changed = true;
        self.clear_exchange();
        self.reset_params();
    }

    /// Takes the card out.
    pub fn remove(&mut self) -> Option<Card> {
        let c = self.card.take();
        if c.is_some() {
            self.changed = true;
        }
        self.powered = false;
        self.clear_exchange();
        self.reset_params();
        c
    }

    /// IccPowerOn: the ATR, or a bError; also the time it took.
    pub fn power_on(&mut self, ctx: &Ctx<'_>, select: u8) -> (Result<Vec<u8>, u8>, Duration) {
        let Some(voltage) = ccid::proto::message::Voltage::from_byte(select) else {
            return (Err(7), Duration::ZERO);
        };
        let bit = voltage.support_bit();
        if bit != 0 && ctx.descriptor.bVoltageSupport & bit == 0 {
            return (Err(7), Duration::ZERO);
        }
        self.clear_exchange();
        self.clock_status = 0;
        let Some(card) = self.card.as_mut() else {
            return (Err(SlotError::ICC_MUTE.0), Duration::ZERO);
        };
        // Automatic selection: the lowest voltage the reader has, upwards.
        let tries: Vec<u8> = if bit != 0 {
            vec![bit]
        } else {
            let have = ctx.descriptor.bVoltageSupport & 0x07;
            let v: Vec<u8> = [0x04, 0x02, 0x01]
                .into_iter()
                .filter(|b| have & b != 0)
                .collect();
            if v.is_empty() {
                vec![0]
            } else {
                v
            }
        };
        let atr = tries.into_iter().find_map(|b| card.reset(b));
        let t = ctx.timing;
        let clock = self.clock_khz;
        match atr {
            Some(atr) => {
                self.powered = true;
                // A reader doing its own parameter negotiation
                // (AUTO_PPS_PROP) moves a negotiable card to T=1 when both
                // offer it, as the host would have asked.
                let auto = ctx.descriptor.dwFeatures & 0x40 != 0;
                if auto && ctx.descriptor.dwProtocols & 2 != 0 {
                    if let Some(card) = self.card.as_mut() {
                        if card.negotiable() && card.protocol() == 0 && card.parsed_atr().offers(1)
                        {
                            // PPSS, PPS0 = T=1, PCK.
                            let _ = card.pps(&[0xFF, 0x01, 0xFE]);
                        }
                    }
                }
                self.reset_params();
                let line = t.chars(atr.len(), params::DEFAULT_FI_DI, clock);
                let act = if t.enabled {
                    t.activation
                } else {
                    Duration::ZERO
                };
                (Ok(atr), t.answer(act, line))
            }
            None => {
                self.powered = false;
                let wait = if t.enabled {
                    t.activation * 4
                } else {
                    Duration::ZERO
                };
                (Err(SlotError::ICC_MUTE.0), t.answer(wait, Duration::ZERO))
            }
        }
    }

    pub fn power_off(&mut self) {
        self.powered = false;
        self.clock_status = 0;
        self.clear_exchange();
    }

    /// SetParameters: checks the structure against the reader and the
    /// card, then applies it. Err: (bError, nothing applied).
    pub fn set_params(&mut self, ctx: &Ctx<'_>, protocol: u8, data: &[u8]) -> Result<(), u8> {
        let (len, mask) = match protocol {
            0 => (T0_PARAMS_LEN, 0x01),
            1 => (T1_PARAMS_LEN, 0x02),
            _ => return Err(7),
        };
        if ctx.descriptor.dwProtocols & mask == 0 {
            return Err(7);
        }
        if data.len() != len {
            return Err(1);
        }
        let fi_di = data.first().copied().unwrap_or(0);
        let Some((fi, di)) = params::fi_di_values(fi_di) else {
            return Err(10);
        };
        let rate = params::baud_rate(self.clock_khz, fi, di);
        let rate_ok = if ctx.data_rates.iter().any(|r| *r != 0) {
            fi_di == params::DEFAULT_FI_DI || params::find_data_rate(ctx.data_rates, rate).is_some()
        } else {
            fi_di == params::DEFAULT_FI_DI
                || ctx.descriptor.dwMaxDataRate == 0
                || rate <= ctx.descriptor.dwMaxDataRate.saturating_add(2)
        };
        if !rate_ok {
            return Err(10);
        }
        let tcck = data.get(1).copied().unwrap_or(0);
        let tcck_ok = if protocol == 0 {
            matches!(tcck, 0x00 | 0x02)
        } else {
            matches!(tcck, 0x10..=0x13)
        };
        if !tcck_ok {
            return Err(11);
        }
        if protocol == 1 {
            let ifsc = data.get(5).copied().unwrap_or(0);
            if !(1..=254).contains(&ifsc) {
                return Err(15);
            }
        }
        if let Some(card) = self.card.as_mut() {
            if !card.parsed_atr().offers(protocol) {
                return Err(SlotError::ICC_PROTOCOL_NOT_SUPPORTED.0);
            }
            let differs = card.protocol() != protocol || card.fi_di() != fi_di;
            if ctx.auto_pps() && self.powered && differs {
                if !card.negotiable() {
                    return Err(SlotError::ICC_PROTOCOL_NOT_SUPPORTED.0);
                }
                let mut req = vec![0xFF, 0x10 | protocol, fi_di];
                req.push(req.iter().fold(0, |a, b| a ^ b));
                match card.pps(&req) {
                    PpsAnswer::Response(_) => {}
                    PpsAnswer::Mute => return Err(SlotError::ICC_PROTOCOL_NOT_SUPPORTED.0),
                }
            }
        }
        self.protocol = protocol;
        self.params = data.to_vec();
        if ctx.auto_pps() {
            // The reader reports what it agreed with the card.
            if let (Some(card), Some(first)) = (self.card.as_ref(), self.params.first_mut()) {
                if self.powered {
                    *first = card.fi_di();
                }
            }
        }
        Ok(())
    }

    /// Whether the reader and the card run the same protocol at the same
    /// speed (checked where the host drives the card protocol).
    fn in_step(&self, ctx: &Ctx<'_>, card: &Card) -> bool {
        if ctx.auto_pps() {
            return true;
        }
        card.protocol() == self.protocol && card.fi_di() == self.fi_di()
    }

    /// Time for `chars` characters on the card line at the slot's rate.
    fn line(&self, ctx: &Ctx<'_>, chars: usize) -> Duration {
        ctx.timing.chars(chars, self.fi_di(), self.clock_khz)
    }

    /// XfrBlock at the reader's exchange level. Returns the answer (data,
    /// bChainParameter) or a bError, and the time it took.
    pub fn xfr(&mut self, ctx: &Ctx<'_>, level: u16, data: &[u8]) -> (SlotResult, Duration) {
        if self.card.is_none() {
            return (Err(SlotError::ICC_MUTE.0), Duration::ZERO);
        }
        if !self.powered || self.clock_status != 0 {
            return (Err(SlotError::ICC_MUTE.0), Duration::ZERO);
        }
        match ctx.level {
            ExchangeLevel::ExtendedApdu => self.xfr_extended(ctx, level, data, ctx.max_data()),
            ExchangeLevel::ShortApdu => self.xfr_short(ctx, level, data),
            ExchangeLevel::Tpdu => self.xfr_tpdu(ctx, data),
            ExchangeLevel::Character => self.xfr_character(ctx, level, data),
        }
    }

    fn apdu_to_card(&mut self, ctx: &Ctx<'_>, apdu: &[u8]) -> (Vec<u8>, Duration) {
        let Some(card) = self.card.as_mut() else {
            return (vec![0x6F, 0x00], Duration::ZERO);
        };
        let r = card.apdu(apdu);
        let busy = card.take_busy_time();
        // APDU levels: the reader's own T=0/T=1 framing adds a few bytes.
        let line = self.line(ctx, apdu.len() + r.len() + 8);
        (r, ctx.timing.answer(busy, line))
    }

    fn xfr_short(&mut self, ctx: &Ctx<'_>, level: u16, data: &[u8]) -> (SlotResult, Duration) {
        if level != 0 {
            return (Err(8), Duration::ZERO);
        }
        // A short APDU: header, Lc, 255 data bytes, Le.
        if data.len() > 261 {
            return (Err(1), Duration::ZERO);
        }
        let (r, t) = self.apdu_to_card(ctx, data);
        if r.len() > ctx.max_data() {
            return (Err(SlotError::XFR_OVERRUN.0), t);
        }
        (Ok((r, 0)), t)
    }

    /// Extended APDU level: command chaining with wLevelParameter 1/3/2,
    /// response chaining with bChainParameter 1/3/2 answered to the empty
    /// 0x10 continuation. `chunk` bounds every answer's data.
    pub fn xfr_extended(
        &mut self,
        ctx: &Ctx<'_>,
        level: u16,
        data: &[u8],
        chunk: usize,
    ) -> (SlotResult, Duration) {
        let chunk = chunk.max(1);
        let full = match level {
            0x0000 | 0x0001 => {
                self.resp_chain = None;
                if level == 1 {
                    self.cmd_chain = Some(data.to_vec());
                    return (
                        Ok((Vec::new(), 0x10)),
                        ctx.timing.answer(Duration::ZERO, Duration::ZERO),
                    );
                }
                self.cmd_chain = None;
                data.to_vec()
            }
            0x0002 | 0x0003 => {
                let Some(mut c) = self.cmd_chain.take() else {
                    return (Err(8), Duration::ZERO);
                };
                c.extend_from_slice(data);
                if level == 3 {
                    self.cmd_chain = Some(c);
                    return (
                        Ok((Vec::new(), 0x10)),
                        ctx.timing.answer(Duration::ZERO, Duration::ZERO),
                    );
                }
                c
            }
            0x0010 => {
                if !data.is_empty() {
                    return (Err(1), Duration::ZERO);
                }
                let t = ctx.timing.answer(Duration::ZERO, Duration::ZERO);
                if self.endless_chain {
                    return (Ok((vec![0xA5; chunk.min(64)], 0x03)), t);
                }
                let Some(rest) = self.resp_chain.take() else {
                    return (Err(8), Duration::ZERO);
                };
                return (Ok(self.next_chunk(rest, chunk, false)), t);
            }
            _ => return (Err(8), Duration::ZERO),
        };
        let (r, t) = self.apdu_to_card(ctx, &full);
        if self.endless_chain {
            return (Ok((vec![0xA5; chunk.min(64)], 0x01)), t);
        }
        (Ok(self.next_chunk(r, chunk, true)), t)
    }

    fn next_chunk(&mut self, mut rest: Vec<u8>, chunk: usize, first: bool) -> (Vec<u8>, u8) {
        if rest.len() <= chunk {
            return (rest, if first { 0x00 } else { 0x02 });
        }
        let tail = rest.split_off(chunk);
        self.resp_chain = Some(tail);
        (rest, if first { 0x01 } else { 0x03 })
    }

    fn pps(&mut self, ctx: &Ctx<'_>, req: &[u8]) -> (Option<Vec<u8>>, Duration) {
        let Some(card) = self.card.as_mut() else {
            return (None, Duration::ZERO);
        };
        let line = ctx
            .timing
            .chars(req.len() * 2, params::DEFAULT_FI_DI, self.clock_khz);
        match card.pps(req) {
            PpsAnswer::Response(r) => (Some(r), ctx.timing.answer(Duration::ZERO, line)),
            PpsAnswer::Mute => (None, ctx.timing.answer(Duration::from_millis(10), line)),
        }
    }

    fn mute_time(&self, ctx: &Ctx<'_>) -> Duration {
        let bwi = self.params.get(3).map_or(4, |b| b >> 4);
        let wait = ctx.timing.bwt(self.fi_di(), self.clock_khz, bwi);
        ctx.timing.answer(wait, Duration::ZERO)
    }

    fn xfr_tpdu(&mut self, ctx: &Ctx<'_>, data: &[u8]) -> (SlotResult, Duration) {
        let negotiable = self.card.as_ref().is_some_and(Card::negotiable);
        if negotiable && data.first() == Some(&0xFF) {
            return match self.pps(ctx, data) {
                (Some(r), t) => (Ok((r, 0)), t),
                (None, t) => (Err(SlotError::ICC_MUTE.0), t),
            };
        }
        let in_step = self.card.as_ref().is_some_and(|c| self.in_step(ctx, c));
        if !in_step {
            return (Err(SlotError::ICC_MUTE.0), self.mute_time(ctx));
        }
        if self.protocol == 1 {
            let line = self.line(ctx, data.len());
            let Some(card) = self.card.as_mut() else {
                return (Err(SlotError::ICC_MUTE.0), Duration::ZERO);
            };
            let answer = card.t1_block(data);
            let busy = card.take_busy_time();
            return match answer {
                Some(b) => {
                    let t = ctx.timing.answer(busy, line + self.line(ctx, b.len()));
                    if b.len() > ctx.max_data() {
                        return (Err(SlotError::XFR_OVERRUN.0), t);
                    }
                    (Ok((b, 0)), t)
                }
                None => (Err(SlotError::ICC_MUTE.0), self.mute_time(ctx) + busy),
            };
        }
        self.t0_tpdu(ctx, data)
    }

    /// T=0 TPDU: the reader runs the procedure bytes against the card.
    fn t0_tpdu(&mut self, ctx: &Ctx<'_>, tpdu: &[u8]) -> (SlotResult, Duration) {
        let mut header = [0u8; 5];
        match tpdu.get(..4) {
            Some(h) => header[..4].copy_from_slice(h),
            None => return (Err(1), Duration::ZERO),
        }
        header[4] = tpdu.get(4).copied().unwrap_or(0);
        let mut body = tpdu.get(5..).unwrap_or_default();
        let p3 = usize::from(header[4]);
        if !body.is_empty() {
            // A case 4 command sent as is: the trailing Le is not for the card.
            if body.len() == p3 + 1 {
                body = body.get(..p3).unwrap_or_default();
            } else if body.len() != p3 {
                return (Err(1), Duration::ZERO);
            }
        }
        let Some(card) = self.card.as_mut() else {
            return (Err(SlotError::ICC_MUTE.0), Duration::ZERO);
        };
        let ins = header[1];
        // Data the card sends after an acknowledgement (§10.3.2: P3 = 0
        // stands for 256 when the card sends).
        let want_out = if p3 == 0 { 256 } else { p3 };
        card.t0_write(&header);
        let mut chars = 5usize;
        let mut sent = 0usize;
        let mut received: Vec<u8> = Vec::new();
        let mut result: Option<SlotResult> = None;
        // Every step consumes at least one character; 70000 bounds the
        // largest exchange (256 data bytes, single-byte acks, NULLs).
        for _ in 0..70_000 {
            let Some(&b) = card.t0_read(1).first() else {
                result = Some(Err(SlotError::ICC_MUTE.0));
                break;
            };
            chars += 1;
            if b == 0x60 {
                continue;
            }
            if matches!(b & 0xF0, 0x60 | 0x90) {
                let Some(&sw2) = card.t0_read(1).first() else {
                    result = Some(Err(SlotError::ICC_MUTE.0));
                    break;
                };
                chars += 1;
                received.extend_from_slice(&[b, sw2]);
                result = Some(Ok((std::mem::take(&mut received), 0)));
                break;
            }
            let single = if b == ins || b == ins ^ 0x01 {
                false
            } else if b == ins ^ 0xFF || b == ins ^ 0xFE {
                true
            } else {
                result = Some(Err(SlotError::PROCEDURE_BYTE_CONFLICT.0));
                break;
            };
            if !body.is_empty() {
                let rest = body.get(sent..).unwrap_or_default();
                let n = if single {
                    rest.len().min(1)
                } else {
                    rest.len()
                };
                if n == 0 {
                    result = Some(Err(SlotError::PROCEDURE_BYTE_CONFLICT.0));
                    break;
                }
                card.t0_write(rest.get(..n).unwrap_or_default());
                sent += n;
                chars += n;
            } else {
                let rest = want_out.saturating_sub(received.len());
                let n = if single { rest.min(1) } else { rest };
                if n == 0 || card.t0_available() < n {
                    result = Some(Err(SlotError::ICC_MUTE.0));
                    break;
                }
                received.extend(card.t0_read(n));
                chars += n;
            }
        }
        let busy = card.take_busy_time();
        let t = ctx.timing.answer(busy, self.line(ctx, chars));
        match result {
            Some(Ok((r, _))) if r.len() > ctx.max_data() => (Err(SlotError::XFR_OVERRUN.0), t),
            Some(r) => (r, t),
            None => (Err(SlotError::PROCEDURE_BYTE_CONFLICT.0), t),
        }
    }

    /// Character level: send abData, then read wLevelParameter characters.
    fn xfr_character(&mut self, ctx: &Ctx<'_>, level: u16, data: &[u8]) -> (SlotResult, Duration) {
        let want = usize::from(level);
        if want > ctx.max_data() {
            return (Err(8), Duration::ZERO);
        }
        let negotiable = self.card.as_ref().is_some_and(Card::negotiable);
        let pps = negotiable && data.first() == Some(&0xFF);
        let in_step = self.card.as_ref().is_some_and(|c| self.in_step(ctx, c));
        let protocol = self.protocol;
        let line = self.line(ctx, data.len() + want);
        let Some(card) = self.card.as_mut() else {
            return (Err(SlotError::ICC_MUTE.0), Duration::ZERO);
        };
        let mut pps_answer = Vec::new();
        if pps {
            // A PPS request is complete once its announced length is in.
            if let PpsAnswer::Response(r) = card.pps(data) {
                pps_answer = r;
            }
        } else if !in_step {
            // Bytes at the wrong speed: the card hears noise.
        } else if protocol == 1 {
            card.t1_write(data);
        } else {
            card.t0_write(data);
        }
        let available = if pps {
            pps_answer.len()
        } else if !in_step {
            0
        } else if protocol == 1 {
            card.t1_available()
        } else {
            card.t0_available()
        };
        let busy = card.take_busy_time();
        if available < want {
            // The reader waits for characters that never come.
            if !pps && in_step {
                if protocol == 1 {
                    card.t1_read(available);
                } else {
                    card.t0_read(available);
                }
            }
            return (Err(SlotError::ICC_MUTE.0), self.mute_time(ctx) + busy);
        }
        let out = if pps {
            pps_answer.truncate(want);
            pps_answer
        } else if protocol == 1 {
            card.t1_read(want)
        } else {
            card.t0_read(want)
        };
        (Ok((out, 0)), ctx.timing.answer(busy, line))
    }

    /// SetDataRateAndClockFrequency: the values applied, or (bError,
    /// current values).
    pub fn set_rate_and_clock(&mut self, ctx: &Ctx<'_>, clock: u32, rate: u32) -> Result<(), u8> {
        let clock_ok = if ctx.clocks.iter().any(|c| *c != 0) {
            ctx.clocks.contains(&clock)
        } else {
            clock > 0
                && clock
                    <= ctx
                        .descriptor
                        .dwMaximumClock
                        .max(ctx.descriptor.dwDefaultClock)
        };
        if !clock_ok {
            return Err(10);
        }
        let rate_ok = if ctx.data_rates.iter().any(|r| *r != 0) {
            params::find_data_rate(ctx.data_rates, rate).is_some()
        } else {
            rate > 0 && rate <= ctx.descriptor.dwMaxDataRate.max(ctx.descriptor.dwDataRate)
        };
        if !rate_ok {
            return Err(14);
        }
        self.clock_khz = clock;
        self.data_rate = rate;
        Ok(())
    }
}
