//! Protocol selection (IFDHSetProtocolParameters) and the card-protocol
//! engines driven over XfrBlock for TPDU and character-level readers.

use super::device::DEFAULT_TIMEOUT;
use super::slot::Slot;
use crate::error::{Error, Result};
use crate::ifd::protocol::{SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1};
use crate::iso7816::atr::Atr;
use crate::iso7816::negotiate::{
    self, NegotiateError, NegotiateOptions, Protocol, ReaderCaps, SetParametersOutcome,
};
use crate::iso7816::params::Timing;
use crate::iso7816::t0::{T0CharEngine, T0Options, T0Step};
use crate::iso7816::t1::block::rest_after_prologue;
use crate::iso7816::t1::{LinkError, SecureAnswer, T1Engine, T1Error, T1Step};
use crate::proto::descriptor::ExchangeLevel;
use crate::proto::message::{Command, CommandStatus};
use crate::quirks::QuirkFlags;
use std::time::Duration;

/// Maps a protocol-selection failure to the driver error whose IFD code
/// pcscd expects (pcsc-lite prothandler.c: IFD_ERROR_NOT_SUPPORTED and
/// IFD_PROTOCOL_NOT_SUPPORTED make it try the other protocol,
/// IFD_NOT_SUPPORTED makes it use the card's default one).
fn negotiate_error(e: NegotiateError) -> Error {
    match e {
        NegotiateError::ReaderLacksProtocol(_) => Error::NotSupported(e.to_string()),
        NegotiateError::CardLacksProtocol(_) | NegotiateError::SpecificModeMismatch { .. } => {
            Error::ProtocolNotSupported(e.to_string())
        }
        NegotiateError::PpsUnavailable { .. } => Error::CommandNotSupported,
        NegotiateError::InvalidPts1(_) | NegotiateError::Pps(_) => Error::PpsFailed(e.to_string()),
        NegotiateError::ImplicitParameters
        | NegotiateError::ReaderCannotUseTa1 { .. }
        | NegotiateError::SetParametersFailed(_) => Error::Protocol(e.to_string()),
    }
}

/// Selects `protocol` for the card in `slot` (IFDHSetProtocolParameters):
/// PPS when the reader does not do it, SetParameters, the T=1 state and
/// IFSD negotiation for readers where the driver runs T=1, and the
/// exchange timeout computed from the card's parameters.
pub fn set_protocol(slot: &Slot, protocol: u32, flags: u8, pts: [u8; 3]) -> Result<()> {
    let requested = match protocol {
        SCARD_PROTOCOL_T0 => Protocol::T0,
        SCARD_PROTOCOL_T1 => Protocol::T1,
        p => return Err(Error::ProtocolNotSupported(format!("protocol {p:#x}"))),
    };
    let atr_bytes = slot.atr();
    if atr_bytes.is_empty() {
        return Err(Error::IccAbsent);
    }
    let atr = Atr::parse(&atr_bytes).map_err(|e| {
        log::error!("ATR cannot be used: {e}");
        Error::ProtocolNotSupported(format!("malformed ATR: {e}"))
    })?;
    if atr.tck_ok() == Some(false) {
        log::info!("ATR checksum (TCK) is wrong; the card is used anyway");
    }
    let device = &slot.device;
    let (slot_descriptor, slot_rates) = device.quirks().slot_caps(slot.index);
    let mut caps = ReaderCaps::from_descriptor(&slot_descriptor, slot_rates);
    if caps.protocols & 3 == 0 {
        // A descriptor announcing neither T=0 nor T=1 is wrong: let the
        // card's ATR decide.
        log::info!(
            "dwProtocols {:#x} offers neither T=0 nor T=1: both assumed",
            caps.protocols
        );
        caps.protocols |= 3;
    }
    // The exchange level may have changed at open (ICCD, init escapes).
    caps.exchange_level = device.caps().level();
    let base = NegotiateOptions {
        timeout_cap_ms: device.timeout_cap().as_millis() as u64,
        pts1: (flags & 0x01 != 0).then_some(pts[0]),
        pts2: (flags & 0x02 != 0).then_some(pts[1]),
        pts3: (flags & 0x04 != 0).then_some(pts[2]),
        ..NegotiateOptions::default()
    };
    let opts = device.quirks().negotiate_options(requested, base);
    let mut plan = negotiate::plan(&atr, requested, &caps, &opts).map_err(negotiate_error)?;
    apply_card_quirks(&atr_bytes, &mut plan, opts.timeout_cap_ms);
    let level = device.caps().level();
    // At APDU level the reader runs the card protocol itself: an XfrBlock
    // carries APDUs, never a raw PPS.
    let pps = plan
        .pps
        .clone()
        .filter(|_| matches!(level, ExchangeLevel::Tpdu | ExchangeLevel::Character));
    if let Some(pps) = pps {
        log::debug!(target: "ccid::comm", "PPS: Sending request: {}", crate::logging::hex(&pps));
        let wlevel = if level == ExchangeLevel::Character {
            pps.len() as u16
        } else {
            0
        };
        let answer = slot
            .xfr_block(wlevel, &pps, 0, DEFAULT_TIMEOUT)
            .map_err(|e| Error::PpsFailed(e.to_string()))?;
        log::debug!(target: "ccid::comm", "PPS: Receiving confirm: {}", crate::logging::hex(&answer.data));
        plan.apply_pps_answer(&answer.data)
            .map_err(negotiate_error)?;
    }
    let mut chosen = requested;
    let mut result = Ok(());
    if let Some((num, data)) = plan.set_parameters.clone() {
        let cmd = Command::SetParameters {
            protocol: num,
            data,
        };
        let r = device.exchange(slot.index, &cmd, DEFAULT_TIMEOUT)?;
        let failed = r.status.command() == CommandStatus::Failed;
        if failed
            && chosen == Protocol::T1
            && device
                .quirks()
                .has(QuirkFlags::RESET_TWICE_ON_SET_PARAMETERS_FAILURE)
        {
            // This reader fails SetParameters with some cards, which then
            // work after two resets with the reader's own parameters.
            log::info!(
                "SetParameters failed ({:?}): resetting the card twice",
                r.error
            );
            for _ in 0..2 {
                let on = Command::IccPowerOn { power_select: 0 };
                if let Err(e) = device.exchange(slot.index, &on, DEFAULT_TIMEOUT) {
                    log::info!("reset after SetParameters failure: {e}");
                }
            }
        } else {
            match negotiate::set_parameters_outcome(failed, r.error.0).map_err(negotiate_error)? {
                SetParametersOutcome::Applied => {}
                SetParametersOutcome::NotChangeable(b) => {
                    log::info!("SetParameters: parameter at offset {b} not changeable; reader keeps its own");
                }
                SetParametersOutcome::NotSupported => {
                    // The reader configures itself; the card then runs its
                    // default protocol, which pcscd uses on IFD_NOT_SUPPORTED.
                    let default =
                        Protocol::from_number(atr.default_protocol()).unwrap_or(Protocol::T0);
                    if default != requested {
                        chosen = default;
                        result = Err(Error::CommandNotSupported);
                    }
                }
            }
        }
    }
    let engine = match (level, chosen) {
        (ExchangeLevel::Tpdu | ExchangeLevel::Character, Protocol::T1) => {
            let mut params = plan.t1.unwrap_or_default();
            // Every block, ours and the card's, must fit one CCID message.
            let room = device
                .caps()
                .max_data()
                .saturating_sub(3 + params.edc.len());
            let room = u8::try_from(room.min(254)).unwrap_or(254).max(1);
            if params.ifsd > room || params.ifsc > room {
                log::info!(
                    "IFSC {} / IFSD {} lowered to {room} to fit dwMaxCCIDMessageLength",
                    params.ifsc,
                    params.ifsd
                );
                params.ifsd = params.ifsd.min(room);
                params.ifsc = params.ifsc.min(room);
            }
            let mut engine = T1Engine::new(params);
            if plan.negotiate_ifsd {
                negotiate_ifsd(slot, &mut engine, params.ifsd, plan.timeout_ms)?;
            }
            Some(engine)
        }
        _ => None,
    };
    let mut st = slot.lock();
    st.protocol = Some(match chosen {
        Protocol::T0 => SCARD_PROTOCOL_T0,
        Protocol::T1 => SCARD_PROTOCOL_T1,
    });
    st.card_timeout = Duration::from_millis(plan.timeout_ms.max(1));
    st.timing = Some(plan.timing);
    st.t1 = engine;
    log::info!(
        "protocol T={} selected, FI DI {:#04x}, timeout {} ms",
        chosen.number(),
        plan.fi_di,
        plan.timeout_ms
    );
    result
}

fn t1_error(e: T1Error) -> Error {
    log::error!("T=1: {e}");
    Error::Protocol(format!("T=1: {e}"))
}

/// How a failed XfrBlock is reported to the T=1 engine; errors that end
/// the exchange (device gone, card removed) are returned as is.
fn link_error(e: Error) -> std::result::Result<LinkError, Error> {
    match e {
        Error::Parity => Ok(LinkError::Parity),
        Error::Timeout { .. } | Error::IccMute => Ok(LinkError::Timeout),
        Error::Frame(_) | Error::Slot { .. } | Error::Unexpected { .. } => Ok(LinkError::Other),
        e => Err(e),
    }
}

/// Runs T=1 steps over XfrBlock until the engine is done. Each block gets
/// its own timeout: BWT (times the WTX factor) plus the characters at CWT
/// plus the reader's margin, capped.
fn drive_t1(
    slot: &Slot,
    engine: &mut T1Engine,
    timing: Option<&Timing>,
    fallback: Duration,
    mut step: T1Step,
) -> Result<Vec<u8>> {
    let cap = slot.device.timeout_cap().as_millis() as u64;
    loop {
        match step {
            T1Step::Done { response } => return Ok(response),
            T1Step::Send { block, wtx } => {
                // The answer may be the longest block the card can send.
                let timeout = match timing {
                    Some(t) => Duration::from_millis(engine.answer_timeout_ms(t, wtx, cap)),
                    None => fallback.saturating_mul(u32::from(wtx.max(1))),
                };
                let bwi = if wtx > 1 { wtx } else { 0 };
                let rx = match xfr_t1_block(slot, engine, &block, bwi, timeout) {
                    Ok(r) => Ok(r),
                    Err(e) => Err(link_error(e)?),
                };
                step = engine
                    .on_response(rx.as_deref().map_err(|e| *e))
                    .map_err(t1_error)?;
            }
        }
    }
}

/// Sends one T=1 block and returns the card's block. A TPDU reader does
/// this in one XfrBlock; at character level the driver asks for the
/// 3-byte prologue, then for LEN + EDC bytes.
fn xfr_t1_block(
    slot: &Slot,
    engine: &T1Engine,
    block: &[u8],
    bwi: u8,
    timeout: Duration,
) -> Result<Vec<u8>> {
    if slot.device.caps().level() != ExchangeLevel::Character {
        return Ok(slot.xfr_block(0, block, bwi, timeout)?.data);
    }
    let mut answer = slot.xfr_block(3, block, bwi, timeout)?.data;
    let len = *answer
        .get(2)
        .ok_or(Error::Protocol("T=1 prologue shorter than 3 bytes".into()))?;
    let rest = rest_after_prologue(len, engine.params().edc)
        .ok_or(Error::Protocol("T=1 block with LEN 0xFF".into()))?;
    let tail = slot.xfr_block(rest as u16, &[], 0, timeout)?.data;
    answer.extend_from_slice(&tail);
    Ok(answer)
}

/// One character-level exchange: send `bytes`, then read `expect` bytes,
/// in as many XfrBlocks as the reader's message size needs (each
/// XfrBlock's wLevelParameter is the number of bytes it reads back).
fn char_exchange(slot: &Slot, bytes: &[u8], expect: usize, timeout: Duration) -> Result<Vec<u8>> {
    let max = slot.device.caps().max_data().max(1);
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(max).collect()
    };
    let last = chunks.len() - 1;
    let mut got = Vec::with_capacity(expect);
    for (i, c) in chunks.iter().enumerate() {
        let want = if i == last { expect.min(max) } else { 0 };
        let r = slot.xfr_block(want as u16, c, 0, timeout)?.data;
        got.extend_from_slice(&r);
    }
    while got.len() < expect {
        let want = (expect - got.len()).min(max);
        let r = slot.xfr_block(want as u16, &[], 0, timeout)?.data;
        if r.is_empty() {
            break;
        }
        got.extend_from_slice(&r);
    }
    Ok(got)
}

/// Character level, T=0: the driver handles the procedure bytes.
fn transmit_t0_char(slot: &Slot, tx: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let (mut engine, mut step) = T0CharEngine::start(tx, T0Options::default()).map_err(|e| {
        log::error!("T=0: {e}");
        Error::Protocol(format!("T=0: {e}"))
    })?;
    loop {
        match step {
            T0Step::Done { response } => return Ok(response),
            T0Step::Send { bytes, expect } => {
                let got = char_exchange(slot, &bytes, expect, timeout)?;
                step = engine.on_bytes(&got).map_err(|e| {
                    log::error!("T=0: {e}");
                    Error::Protocol(format!("T=0: {e}"))
                })?;
            }
        }
    }
}

fn negotiate_ifsd(slot: &Slot, engine: &mut T1Engine, ifsd: u8, timeout_ms: u64) -> Result<()> {
    let step = engine.negotiate_ifsd(ifsd).map_err(t1_error)?;
    let fallback = Duration::from_millis(timeout_ms.clamp(1, 10_000));
    if let Err(e) = drive_t1(slot, engine, None, fallback, step) {
        engine.abandon();
        return Err(e);
    }
    log::info!("IFSD {ifsd} accepted by the card");
    Ok(())
}

/// Exchanges through the driver's own T=0 / T=1 engine (TPDU and
/// character-level readers).
pub fn transmit_engine(
    slot: &Slot,
    protocol: u32,
    tx: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>> {
    let level = slot.device.caps().level();
    match (level, protocol) {
        (ExchangeLevel::Character, SCARD_PROTOCOL_T0) => transmit_t0_char(slot, tx, timeout),
        (ExchangeLevel::Tpdu | ExchangeLevel::Character, SCARD_PROTOCOL_T1) => {
            let mut st = slot.lock();
            let timing = st.timing;
            let Some(engine) = st.t1.as_mut() else {
                return Err(Error::Protocol("T=1 was not selected for this card".into()));
            };
            let step = engine.transceive_start(tx).map_err(t1_error)?;
            let r = drive_t1(slot, engine, timing.as_ref(), timeout, step);
            if r.is_err() {
                // The next exchange starts with a resynchronisation.
                engine.abandon();
            }
            r
        }
        _ => Err(Error::ProtocolNotSupported(format!(
            "protocol {protocol:#x} at {} level",
            level.name()
        ))),
    }
}

/// Secure PIN entry on a TPDU reader with a T=1 card: the PIN APDU
/// template (at `apdu_offset` of `data`) travels in a T=1 I-block whose
/// prologue goes into `bTeoPrologue`; the answer is a T=1 block, checked
/// (EDC, NAD, N(S), chaining) and unwrapped; a WTX request is answered.
pub fn secure_t1(
    slot: &Slot,
    data: &[u8],
    apdu_offset: usize,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let mut st = slot.lock();
    let Some(engine) = st.t1.as_mut() else {
        return Err(Error::Protocol("T=1 was not selected for this card".into()));
    };
    let apdu = data
        .get(apdu_offset..)
        .ok_or(Error::InvalidArgument("PIN structure"))?;
    let block = engine.wrap_secure_pin(apdu).map_err(t1_error)?;
    let mut cmd = data.to_vec();
    let prologue = block.get(..3).ok_or(Error::InvalidArgument("T=1 block"))?;
    let at = apdu_offset
        .checked_sub(3)
        .ok_or(Error::InvalidArgument("PIN structure"))?;
    if let Some(dst) = cmd.get_mut(at..apdu_offset) {
        dst.copy_from_slice(prologue);
    }
    let r = slot.device.exchange(
        slot.index,
        &Command::Secure {
            bwi: 0,
            level: 0,
            data: cmd,
        },
        timeout,
    )?;
    if r.status.command() == CommandStatus::Failed {
        engine.cancel_secure();
        if let Some(sw) = crate::pinpad::pin_error_sw(r.error.0) {
            return Ok(sw.to_vec());
        }
        super::slot::check_status(&r)?;
    }
    let mut answer = r.data;
    for _ in 0..64 {
        match engine.unwrap_secure_answer(&answer).map_err(t1_error)? {
            SecureAnswer::Response(apdu) => return Ok(apdu),
            SecureAnswer::Wtx { reply, multiplier } => {
                let t = timeout.saturating_mul(u32::from(multiplier.max(1)));
                answer = slot.xfr_block(0, &reply, multiplier, t)?.data;
            }
        }
    }
    engine.cancel_secure();
    Err(Error::Protocol(
        "T=1: too many WTX requests during PIN entry".into(),
    ))
}

/// Card quirks keyed by ATR (the reader-independent rows of the quirk
/// table): a T=1 waiting-integers byte announced to the reader in
/// SetParameters, and the timeout that goes with it.
fn apply_card_quirks(atr: &[u8], plan: &mut negotiate::Plan, cap_ms: u64) {
    let effect = crate::quirks::card_quirks(atr);
    if effect.applied.is_empty() || plan.protocol != Protocol::T1 {
        return;
    }
    let Some(b) = plan.set_parameters.as_mut().and_then(|(_, d)| d.get_mut(3)) else {
        return;
    };
    let fixed = effect.waiting_integers_t1(*b);
    if fixed != *b {
        log::info!(
            "card quirk {:?}: bmWaitingIntegersT1 {:#04x} -> {fixed:#04x}",
            effect.applied,
            *b
        );
        *b = fixed;
        plan.timing.bwi = fixed >> 4;
        plan.timing.cwi = fixed & 0x0F;
        plan.timeout_ms = plan.timeout_ms.max(plan.timing.t1_timeout_ms(cap_ms));
    }
}
