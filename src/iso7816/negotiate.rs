//! Protocol selection for IFDHSetProtocolParameters: from the ATR, the
//! requested protocol and the reader's capabilities, decide whether a PPS
//! (ISO/IEC 7816-3:2006 §9) is needed and with which `FI DI`, build the
//! CCID `PC_to_RDR_SetParameters` structure (CCID Rev 1.1 §6.1.7), the
//! timeout and the T=1 parameters.
//!
//! The decisions follow libccid's, with its defects fixed:
//! * the card must offer the requested protocol, or be in specific mode for
//!   it (§8.2.3, TA2);
//! * a PPS is sent only when the protocol differs from the card's default
//!   or a faster `FI DI` is wanted, and never to a card in specific mode;
//! * PPS1 = TA1 when the card's rate is faster than the default rate and the
//!   reader can do it (`dwMaxDataRate` and the data-rate table, ±2 bps);
//!   a Fi=9 card (TA1 `95`..`97`) too fast for the reader is offered the
//!   next slower Di down to TA1 `94`;
//! * in specific mode the card uses TA1 whatever the host does, so a rate
//!   the reader cannot do is an error;
//! * a PPS answer with PPS1 absent leaves the card at Fd/Dd, and the plan
//!   follows ([`Plan::apply_pps_answer`]);
//! * IFSD is negotiated whenever the host runs T=1 (TPDU and character
//!   level), unless the reader does it itself.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use super::atr::{Atr, Convention, Edc};
use super::params::{self, baud_rate, find_data_rate, Timing, DEFAULT_FI_DI};
use super::pps::{PpsError, PpsRequest};
use super::t1::{T1Params, MAX_IFS};
use crate::proto::descriptor::{CcidDescriptor, ExchangeLevel};
use thiserror::Error;

/// `dwFeatures`: automatic parameter negotiation made by the reader
/// (proprietary): no PPS and no SetParameters from the host.
pub const FEATURE_AUTO_PPS_PROP: u32 = 0x0000_0040;
/// `dwFeatures`: automatic PPS made by the reader from the parameters set
/// by SetParameters: no PPS from the host.
pub const FEATURE_AUTO_PPS_CUR: u32 = 0x0000_0080;
/// `dwFeatures`: automatic IFSD exchange by the reader.
pub const FEATURE_AUTO_IFSD: u32 = 0x0000_0400;

/// The default cap on computed timeouts: 10 minutes.
pub const DEFAULT_TIMEOUT_CAP_MS: u64 = 600_000;

/// The waiting-integers byte used when the ATR gives none (BWI 4, CWI 13).
pub const DEFAULT_T1_WAITING_INTEGERS: u8 = 0x4D;

/// A transmission protocol the driver can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// T=0.
    T0,
    /// T=1.
    T1,
}

impl Protocol {
    /// The protocol number T (also `bProtocolNum`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::T0 => 0,
            Protocol::T1 => 1,
        }
    }

    /// The bit in `dwProtocols` and in `SCARD_PROTOCOL_*`.
    pub fn mask(self) -> u32 {
        match self {
            Protocol::T0 => 1,
            Protocol::T1 => 2,
        }
    }

    /// The protocol for a number T, if the driver can select it.
    pub fn from_number(t: u8) -> Option<Self> {
        match t {
            0 => Some(Protocol::T0),
            1 => Some(Protocol::T1),
            _ => None,
        }
    }
}

/// What the reader can do, from its class descriptor and its
/// `GET_DATA_RATES` answer (after quirks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderCaps {
    /// `dwProtocols`.
    pub protocols: u32,
    /// `dwFeatures`.
    pub features: u32,
    /// `dwDefaultClock` in kHz.
    pub default_clock_khz: u32,
    /// `dwMaxDataRate` in bps.
    pub max_data_rate: u32,
    /// The data-rate table, empty when the reader gave none.
    pub data_rates: Vec<u32>,
    /// `dwMaxIFSD`.
    pub max_ifsd: u32,
    /// The exchange level.
    pub exchange_level: ExchangeLevel,
}

impl ReaderCaps {
    /// The capabilities of a reader described by `d`, with its data-rate
    /// table.
    pub fn from_descriptor(d: &CcidDescriptor, data_rates: Vec<u32>) -> Self {
        ReaderCaps {
            protocols: d.dwProtocols,
            features: d.dwFeatures,
            default_clock_khz: d.dwDefaultClock,
            max_data_rate: d.dwMaxDataRate,
            data_rates,
            max_ifsd: d.dwMaxIFSD,
            exchange_level: ExchangeLevel::from_features(d.dwFeatures),
        }
    }
}

/// Caller choices and reader quirks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateOptions {
    /// Never send a PPS (readers that break on it). The card then stays at
    /// Fd/Dd and its default protocol.
    pub no_pps: bool,
    /// Replaces `dwMaxDataRate` (readers whose maximum is wrong).
    pub max_data_rate_override: Option<u32>,
    /// Upper bound of the computed timeout.
    pub timeout_cap_ms: u64,
    /// Added to the computed timeout before the cap (slow operations such
    /// as on-card key generation on some tokens).
    pub extra_timeout_ms: u64,
    /// PPS1 imposed by the caller (`IFD_NEGOTIATE_PTS1`).
    pub pts1: Option<u8>,
    /// PPS2 imposed by the caller (`IFD_NEGOTIATE_PTS2`).
    pub pts2: Option<u8>,
    /// PPS3 imposed by the caller (`IFD_NEGOTIATE_PTS3`).
    pub pts3: Option<u8>,
}

impl Default for NegotiateOptions {
    fn default() -> Self {
        NegotiateOptions {
            no_pps: false,
            max_data_rate_override: None,
            timeout_cap_ms: DEFAULT_TIMEOUT_CAP_MS,
            extra_timeout_ms: 0,
            pts1: None,
            pts2: None,
            pts3: None,
        }
    }
}

/// Why a protocol cannot be selected. The comment of each variant gives
/// the IFD code it corresponds to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiateError {
    /// The reader's `dwProtocols` lacks it (`IFD_ERROR_NOT_SUPPORTED`).
    #[error("the reader does not support T={0}")]
    ReaderLacksProtocol(u8),
    /// The ATR does not offer it (`IFD_PROTOCOL_NOT_SUPPORTED`).
    #[error("the card does not offer T={0}")]
    CardLacksProtocol(u8),
    /// The card is in specific mode (TA2) for another protocol
    /// (`IFD_PROTOCOL_NOT_SUPPORTED`).
    #[error("card in specific mode for T={card}, T={requested} requested")]
    SpecificModeMismatch {
        /// Requested.
        requested: u8,
        /// TA2's protocol.
        card: u8,
    },
    /// The card is in specific mode with implicit parameters (TA2 bit 5),
    /// which the driver cannot know (`IFD_COMMUNICATION_ERROR`).
    #[error("card in specific mode with implicit parameters")]
    ImplicitParameters,
    /// The card must use TA1 (specific mode) at a rate the reader cannot
    /// do, or TA1 holds RFU values (`IFD_COMMUNICATION_ERROR`).
    #[error("card must use TA1 {ta1:#04x} ({rate} bps) but the reader cannot")]
    ReaderCannotUseTa1 {
        /// TA1.
        ta1: u8,
        /// The rate it means at the reader's clock (0 when RFU).
        rate: u32,
    },
    /// Switching to the requested protocol needs a PPS, which is disabled
    /// for this reader. As `IFD_NOT_SUPPORTED` it lets pcscd go on with the
    /// card's default protocol.
    #[error("T={requested} needs a PPS (card default T={default}) and PPS is disabled")]
    PpsUnavailable {
        /// Requested.
        requested: u8,
        /// The card's default protocol.
        default: u8,
    },
    /// The caller's PTS1 holds RFU values (`IFD_ERROR_PTS_FAILURE`).
    #[error("PTS1 {0:#04x} is not a valid FI DI byte")]
    InvalidPts1(u8),
    /// The PPS exchange failed (`IFD_ERROR_PTS_FAILURE`).
    #[error("PPS failed: {0}")]
    Pps(#[from] PpsError),
    /// SetParameters failed with this bError (`IFD_COMMUNICATION_ERROR`).
    #[error("SetParameters failed with bError {0:#04x}")]
    SetParametersFailed(u8),
}

/// What to do to select a protocol. The reader layer sends `pps` (if any)
/// in an XfrBlock and checks the answer with [`Plan::apply_pps_answer`],
/// then sends `set_parameters` (if any), then, when `negotiate_ifsd`,
/// runs the T=1 engine's IFSD negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The protocol selected.
    pub protocol: Protocol,
    /// The PPS request to send, `None` when the reader does it or none is
    /// needed.
    pub pps: Option<Vec<u8>>,
    /// The request behind `pps`, to check the answer.
    pub pps_request: Option<PpsRequest>,
    /// `bmFindexDindex`: the `FI DI` the card will use.
    pub fi_di: u8,
    /// `bProtocolNum` and the abProtocolDataStructure of SetParameters
    /// (5 bytes for T=0, 7 for T=1), `None` when the reader configures
    /// itself (`AUTO_PPS_PROP`).
    pub set_parameters: Option<(u8, Vec<u8>)>,
    /// The parameters the timeout was computed from.
    pub timing: Timing,
    /// The exchange timeout in ms (capped).
    pub timeout_ms: u64,
    /// The T=1 parameters, for T=1.
    pub t1: Option<T1Params>,
    /// True when the host must send S(IFS request) with `t1.ifsd`.
    pub negotiate_ifsd: bool,
    extra_timeout_ms: u64,
    timeout_cap_ms: u64,
}

impl Plan {
    /// Recomputes `timeout_ms` from `timing`.
    fn recompute_timeout(&mut self) {
        let base = match self.protocol {
            Protocol::T0 => self.timing.t0_timeout_ms(u64::MAX),
            Protocol::T1 => self.timing.t1_timeout_ms(u64::MAX),
        };
        self.timeout_ms = base
            .saturating_add(self.extra_timeout_ms)
            .min(self.timeout_cap_ms);
    }

    /// Checks the card's PPS answer (§9.3) and, when the card kept Fd/Dd
    /// (PPS1 absent), moves `fi_di`, the SetParameters structure and the
    /// timeout to Fd/Dd.
    pub fn apply_pps_answer(&mut self, answer: &[u8]) -> Result<(), NegotiateError> {
        let Some(req) = self.pps_request else {
            return Ok(());
        };
        let out = req.check_response(answer)?;
        self.set_fi_di(out.fi_di);
        Ok(())
    }

    fn set_fi_di(&mut self, fi_di: u8) {
        self.fi_di = fi_di;
        if let Some(b) = self
            .set_parameters
            .as_mut()
            .and_then(|(_, d)| d.first_mut())
        {
            *b = fi_di;
        }
        self.timing.fi_di = fi_di;
        self.recompute_timeout();
    }
}

/// The rate check: at most `max` (+2 bps) and, with a table, in the table.
fn rate_supported(caps: &ReaderCaps, max: u32, rate: u32) -> bool {
    rate <= max.saturating_add(2)
        && (caps.data_rates.is_empty() || find_data_rate(&caps.data_rates, rate).is_some())
}

fn rate_of(clock_khz: u32, fi_di: u8) -> Option<u32> {
    let (f, d) = params::fi_di_values(fi_di)?;
    Some(baud_rate(clock_khz, f, d))
}

/// PPS1 for a card in negotiable mode with this TA1, or `None` to stay at
/// Fd/Dd.
fn choose_pps1(caps: &ReaderCaps, max: u32, ta1: u8) -> Option<u8> {
    let clk = caps.default_clock_khz;
    let default_rate = baud_rate(clk, params::DEFAULT_FI, params::DEFAULT_DI);
    let rate = rate_of(clk, ta1)?;
    if rate <= default_rate {
        return None;
    }
    if rate_supported(caps, max, rate) {
        return Some(ta1);
    }
    // Fi = 512 cards (FI 9) with Di 16/32/64: try the next slower Di, down
    // to Di = 8, as libccid does.
    if (0x95..=0x97).contains(&ta1) {
        return (0x94..ta1)
            .rev()
            .find(|&c| rate_of(clk, c).is_some_and(|r| rate_supported(caps, max, r)));
    }
    None
}

/// Decides how to select `requested` for the card that sent `atr`.
pub fn plan(
    atr: &Atr,
    requested: Protocol,
    caps: &ReaderCaps,
    opts: &NegotiateOptions,
) -> Result<Plan, NegotiateError> {
    let t = requested.number();
    if caps.protocols & requested.mask() == 0 {
        return Err(NegotiateError::ReaderLacksProtocol(t));
    }
    let max = opts.max_data_rate_override.unwrap_or(caps.max_data_rate);
    let clk = caps.default_clock_khz;
    let auto_prop = caps.features & FEATURE_AUTO_PPS_PROP != 0;
    let auto_pps = auto_prop || caps.features & FEATURE_AUTO_PPS_CUR != 0;

    let mut pps_request = None;
    let fi_di = if let Some(mode) = atr.specific_mode() {
        // §8.3 TA2: the card uses its protocol and TA1, no PPS.
        if mode.protocol != t {
            return Err(NegotiateError::SpecificModeMismatch {
                requested: t,
                card: mode.protocol,
            });
        }
        if mode.implicit {
            return Err(NegotiateError::ImplicitParameters);
        }
        let ta1 = atr.ta1().unwrap_or(DEFAULT_FI_DI);
        let rate = rate_of(clk, ta1);
        let default_rate = rate_of(clk, DEFAULT_FI_DI);
        match rate {
            Some(r) if rate == default_rate || rate_supported(caps, max, r) => ta1,
            _ => {
                return Err(NegotiateError::ReaderCannotUseTa1 {
                    ta1,
                    rate: rate.unwrap_or(0),
                })
            }
        }
    } else {
        if !atr.offers(t) {
            return Err(NegotiateError::CardLacksProtocol(t));
        }
        let default = atr.default_protocol();
        let pps1 = if opts.no_pps {
            None
        } else if let Some(p) = opts.pts1 {
            if params::fi_di_values(p).is_none() {
                return Err(NegotiateError::InvalidPts1(p));
            }
            Some(p)
        } else {
            atr.ta1().and_then(|ta1| choose_pps1(caps, max, ta1))
        };
        let (pts2, pts3) = if opts.no_pps {
            (None, None)
        } else {
            (opts.pts2, opts.pts3)
        };
        let needs_pps = t != default || pps1.is_some() || pts2.is_some() || pts3.is_some();
        if needs_pps && !auto_pps {
            if opts.no_pps {
                return Err(NegotiateError::PpsUnavailable {
                    requested: t,
                    default,
                });
            }
            pps_request = Some(PpsRequest {
                protocol: t,
                pps1,
                pps2: pts2,
                pps3: pts3,
            });
        }
        pps1.unwrap_or(DEFAULT_FI_DI)
    };

    let inverse = atr.convention() == Convention::Inverse;
    let waiting = atr
        .t1_waiting_integers()
        .unwrap_or(DEFAULT_T1_WAITING_INTEGERS);
    let timing = Timing {
        fi_di,
        clock_khz: clk,
        n: atr.n(),
        wi: atr.wi(),
        bwi: waiting >> 4,
        cwi: waiting & 0x0F,
    };
    let set_parameters = (!auto_prop).then(|| match requested {
        // CCID §6.1.7 abProtocolDataStructure for T=0.
        Protocol::T0 => (
            0,
            vec![
                fi_di,                             // bmFindexDindex
                if inverse { 0x02 } else { 0x00 }, // bmTCCKST0
                atr.n(),                           // bGuardTimeT0
                atr.wi(),                          // bWaitingIntegerT0
                0x00,                              // bClockStop
            ],
        ),
        // CCID §6.1.7 abProtocolDataStructure for T=1.
        Protocol::T1 => (
            1,
            vec![
                fi_di,                                                                   // bmFindexDindex
                0x10 | u8::from(atr.edc() == Edc::Crc) | if inverse { 0x02 } else { 0 }, // bmTCCKST1
                atr.n(),    // bGuardTimeT1
                waiting,    // bmWaitingIntegersT1
                0x00,       // bClockStop
                atr.ifsc(), // bIFSC
                0x00,       // bNadValue
            ],
        ),
    });
    let (t1, negotiate_ifsd) = match requested {
        Protocol::T0 => (None, false),
        Protocol::T1 => {
            let ifsd = match caps.max_ifsd {
                0 => 32,
                n => u8::try_from(n.min(u32::from(MAX_IFS))).unwrap_or(MAX_IFS),
            };
            let host_runs_t1 = matches!(
                caps.exchange_level,
                ExchangeLevel::Tpdu | ExchangeLevel::Character
            );
            let negotiate = host_runs_t1 && caps.features & FEATURE_AUTO_IFSD == 0 && ifsd != 32;
            (
                Some(T1Params {
                    ifsc: atr.ifsc(),
                    ifsd,
                    edc: atr.edc(),
                    nad: 0,
                }),
                negotiate,
            )
        }
    };
    let mut plan = Plan {
        protocol: requested,
        pps: pps_request.map(|r| r.encode()).transpose()?,
        pps_request,
        fi_di,
        set_parameters,
        timing,
        timeout_ms: 0,
        t1,
        negotiate_ifsd,
        extra_timeout_ms: opts.extra_timeout_ms,
        timeout_cap_ms: opts.timeout_cap_ms,
    };
    plan.recompute_timeout();
    Ok(plan)
}

/// The OpenPGP card whose BWT (TB3 `45`, 1.4 s) is too short for on-card
/// key generation.
pub const OPENPGP_SLOW_BWT_ATR: [u8; 20] = [
    0x3B, 0xFA, 0x13, 0x00, 0xFF, 0x81, 0x31, 0x80, 0x45, 0x00, 0x31, 0xC1, 0x73, 0xC0, 0x01, 0x00,
    0x00, 0x90, 0x00, 0xB1,
];

/// The result of a SetParameters command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetParametersOutcome {
    /// The reader applied the parameters.
    Applied,
    /// bError 1..=127: the parameter at that offset cannot be changed; the
    /// reader keeps its own and the card can be used (success).
    NotChangeable(u8),
    /// bError 0: the reader does not support the command (maps to
    /// `IFD_NOT_SUPPORTED`, which pcscd treats as "go on with the default
    /// protocol").
    NotSupported,
}

/// Interprets a SetParameters answer: `failed` is bmCommandStatus = 1,
/// `b_error` the bError byte.
pub fn set_parameters_outcome(
    failed: bool,
    b_error: u8,
) -> Result<SetParametersOutcome, NegotiateError> {
    match (failed, b_error) {
        (false, _) => Ok(SetParametersOutcome::Applied),
        (true, 0) => Ok(SetParametersOutcome::NotSupported),
        (true, 1..=127) => Ok(SetParametersOutcome::NotChangeable(b_error)),
        (true, e) => Err(NegotiateError::SetParametersFailed(e)),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::iso7816::atr::InterfaceBytes;
    use proptest::prelude::*;

    fn caps() -> ReaderCaps {
        ReaderCaps {
            protocols: 3,
            features: 0x0001_0030, // TPDU, auto clock/baud
            default_clock_khz: 4000,
            max_data_rate: 344_086,
            data_rates: vec![],
            max_ifsd: 254,
            exchange_level: ExchangeLevel::Tpdu,
        }
    }

    fn atr(levels: &[InterfaceBytes]) -> Atr {
        Atr::parse(&Atr::build(Convention::Direct, levels, b"hist").unwrap()).unwrap()
    }

    fn lvl(ta: Option<u8>, tb: Option<u8>, tc: Option<u8>, td: Option<u8>) -> InterfaceBytes {
        InterfaceBytes { ta, tb, tc, td }
    }

    /// T=1 card, TA1 = `ta1`, IFSC FE, TB3 45, optional TC3.
    fn t1_card(ta1: u8, tc3: Option<u8>) -> Atr {
        atr(&[
            lvl(Some(ta1), None, None, Some(0x81)),
            lvl(None, None, None, Some(0x31)),
            lvl(Some(0xFE), Some(0x45), tc3, None),
        ])
    }

    /// A card offering T=0 (default) and T=1.
    fn dual_card(ta1: Option<u8>) -> Atr {
        atr(&[
            lvl(ta1, None, None, Some(0x80)),
            lvl(None, None, None, Some(0x01)),
            lvl(Some(0x80), None, None, None),
        ])
    }

    // §9: T=1 card at its default protocol with a faster TA1 → PPS with
    // PPS1 = TA1; CCID §6.1.7 T=1 structure.
    #[test]
    fn t1_card_fast_ta1() {
        let a = t1_card(0x96, None);
        let p = plan(&a, Protocol::T1, &caps(), &NegotiateOptions::default()).unwrap();
        assert_eq!(p.protocol, Protocol::T1);
        assert_eq!(p.fi_di, 0x96);
        assert_eq!(p.pps.as_deref(), Some(&[0xFF, 0x11, 0x96, 0x78][..]));
        assert_eq!(
            p.set_parameters,
            Some((1, vec![0x96, 0x10, 0x00, 0x45, 0x00, 0xFE, 0x00]))
        );
        assert_eq!(
            p.t1,
            Some(T1Params {
                ifsc: 254,
                ifsd: 254,
                edc: Edc::Lrc,
                nad: 0
            })
        );
        assert!(p.negotiate_ifsd);
        // 260 EGT + BWT + 260 CWT + 1000 at F=512 D=32, BWI 4, CWI 5.
        assert_eq!(p.timeout_ms, p.timing.t1_timeout_ms(u64::MAX));
        assert_eq!(
            p.timing,
            Timing {
                fi_di: 0x96,
                clock_khz: 4000,
                n: 0,
                wi: 10,
                bwi: 4,
                cwi: 5
            }
        );
    }

    // §9.3: a PPS answer without PPS1 moves the plan back to Fd/Dd.
    #[test]
    fn pps_answer_without_pps1_means_default() {
        let a = t1_card(0x96, Some(0x01));
        let mut p = plan(&a, Protocol::T1, &caps(), &NegotiateOptions::default()).unwrap();
        let fast = p.timeout_ms;
        p.apply_pps_answer(&[0xFF, 0x01, 0xFE]).unwrap();
        assert_eq!(p.fi_di, 0x11);
        assert_eq!(p.set_parameters.as_ref().unwrap().1[0], 0x11);
        assert_eq!(p.set_parameters.as_ref().unwrap().1[1], 0x11); // CRC
        assert!(p.timeout_ms > fast);
        assert_eq!(
            p.apply_pps_answer(&[0xFF, 0x10, 0x96, 0x79]),
            Err(NegotiateError::Pps(PpsError::ProtocolMismatch {
                sent: 1,
                got: 0
            }))
        );
    }

    // No PPS when the default protocol is requested at the default speed.
    #[test]
    fn no_pps_needed() {
        let a = t1_card(0x11, None);
        let p = plan(&a, Protocol::T1, &caps(), &NegotiateOptions::default()).unwrap();
        assert_eq!(p.pps, None);
        assert_eq!(p.fi_di, 0x11);
        // TA1 slower than the default rate: no PPS1 either.
        let a = t1_card(0x21, None);
        let p = plan(&a, Protocol::T1, &caps(), &NegotiateOptions::default()).unwrap();
        assert_eq!((p.pps.clone(), p.fi_di), (None, 0x11));
    }

    // §9: selecting the non-default protocol needs a PPS even at Fd/Dd.
    #[test]
    fn protocol_change_needs_pps() {
        let a = dual_card(None);
        let p = plan(&a, Protocol::T1, &caps(), &NegotiateOptions::default()).unwrap();
        assert_eq!(p.pps.as_deref(), Some(&[0xFF, 0x01, 0xFE][..]));
        let p = plan(&a, Protocol::T0, &caps(), &NegotiateOptions::default()).unwrap();
        assert_eq!(p.pps, None);
        assert_eq!(
            p.set_parameters,
            Some((0, vec![0x11, 0x00, 0x00, 0x0A, 0x00]))
        );
        assert_eq!(p.t1, None);
        assert_eq!(p.timeout_ms, 232_134);
        // PPS disabled: T=1 cannot be reached.
        let no_pps = NegotiateOptions {
            no_pps: true,
            ..Default::default()
        };
        assert_eq!(
            plan(&a, Protocol::T1, &caps(), &no_pps),
            Err(NegotiateError::PpsUnavailable {
                requested: 1,
                default: 0
            })
        );
        // PPS disabled, fast TA1: the card stays at Fd/Dd.
        let a = dual_card(Some(0x96));
        let p = plan(&a, Protocol::T0, &caps(), &no_pps).unwrap();
        assert_eq!((p.pps.clone(), p.fi_di), (None, 0x11));
    }

    // The reader's dwProtocols, and the card's offer.
    #[test]
    fn protocol_availability() {
        let a = t1_card(0x11, None);
        let t0_reader = ReaderCaps {
            protocols: 1,
            ..caps()
        };
        assert_eq!(
            plan(&a, Protocol::T1, &t0_reader, &NegotiateOptions::default()),
            Err(NegotiateError::ReaderLacksProtocol(1))
        );
        assert_eq!(
            plan(&a, Protocol::T0, &caps(), &NegotiateOptions::default()),
            Err(NegotiateError::CardLacksProtocol(0))
        );
    }

    // §8.3 TA2: specific mode protocol, implicit bit, and TA1 the reader
    // must support.
    #[test]
    fn specific_mode() {
        let sm = |ta1: u8, ta2: u8| {
            atr(&[
                lvl(Some(ta1), None, None, Some(0x01)),
                lvl(Some(ta2), None, None, None),
            ])
        };
        let p = plan(
            &sm(0x96, 0x81),
            Protocol::T1,
            &caps(),
            &NegotiateOptions::default(),
        )
        .unwrap();
        assert_eq!((p.pps.clone(), p.fi_di), (None, 0x96));
        assert_eq!(
            plan(
                &sm(0x96, 0x81),
                Protocol::T0,
                &caps(),
                &NegotiateOptions::default()
            ),
            Err(NegotiateError::SpecificModeMismatch {
                requested: 0,
                card: 1
            })
        );
        assert_eq!(
            plan(
                &sm(0x96, 0x91),
                Protocol::T1,
                &caps(),
                &NegotiateOptions::default()
            ),
            Err(NegotiateError::ImplicitParameters)
        );
        let slow_reader = ReaderCaps {
            max_data_rate: 9600 * 4,
            ..caps()
        };
        assert_eq!(
            plan(
                &sm(0x96, 0x81),
                Protocol::T1,
                &slow_reader,
                &NegotiateOptions::default()
            ),
            Err(NegotiateError::ReaderCannotUseTa1 {
                ta1: 0x96,
                rate: 250_000
            })
        );
        // TA1 = Fd/Dd in specific mode needs nothing from the reader.
        let p = plan(
            &sm(0x11, 0x81),
            Protocol::T1,
            &slow_reader,
            &NegotiateOptions::default(),
        );
        assert_eq!(p.map(|p| p.fi_di), Ok(0x11));
        // RFU TA1 in specific mode.
        assert!(matches!(
            plan(
                &sm(0x71, 0x81),
                Protocol::T1,
                &caps(),
                &NegotiateOptions::default()
            ),
            Err(NegotiateError::ReaderCannotUseTa1 { ta1: 0x71, rate: 0 })
        ));
    }

    // Fi=9 fallback: TA1 97 too fast, 96 too, 95 fits.
    #[test]
    fn fi9_fallback() {
        let a = t1_card(0x97, None);
        // At 4 MHz: 0x97 = 500000 bps, 0x96 = 250000, 0x95 = 125000, 0x94 = 62500.
        let r = ReaderCaps {
            max_data_rate: 200_000,
            ..caps()
        };
        let p = plan(&a, Protocol::T1, &r, &NegotiateOptions::default()).unwrap();
        assert_eq!(p.fi_di, 0x95);
        assert_eq!(p.pps.as_deref(), Some(&[0xFF, 0x11, 0x95, 0x7B][..]));
        // With an override instead of the descriptor value.
        let o = NegotiateOptions {
            max_data_rate_override: Some(90_000),
            ..Default::default()
        };
        assert_eq!(plan(&a, Protocol::T1, &caps(), &o).unwrap().fi_di, 0x94);
        // Nothing fits: stay at Fd/Dd.
        let o = NegotiateOptions {
            max_data_rate_override: Some(20_000),
            ..Default::default()
        };
        let p = plan(&a, Protocol::T1, &caps(), &o).unwrap();
        assert_eq!((p.fi_di, p.pps.clone()), (0x11, None));
        // A non-Fi=9 card too fast: no fallback.
        let a = t1_card(0x18, None);
        let r = ReaderCaps {
            max_data_rate: 100_000,
            ..caps()
        };
        assert_eq!(
            plan(&a, Protocol::T1, &r, &NegotiateOptions::default())
                .unwrap()
                .fi_di,
            0x11
        );
    }

    // The data-rate table is matched within ±2 bps.
    #[test]
    fn data_rate_table() {
        let a = t1_card(0x96, None);
        let r = ReaderCaps {
            data_rates: vec![10753, 125_000, 250_001],
            ..caps()
        };
        assert_eq!(
            plan(&a, Protocol::T1, &r, &NegotiateOptions::default())
                .unwrap()
                .fi_di,
            0x96
        );
        let r = ReaderCaps {
            data_rates: vec![10753, 125_002],
            ..caps()
        };
        // 0x96 not in the table: Fi=9 fallback finds 0x95.
        assert_eq!(
            plan(&a, Protocol::T1, &r, &NegotiateOptions::default())
                .unwrap()
                .fi_di,
            0x95
        );
    }

    // Readers doing PPS themselves.
    #[test]
    fn automatic_pps_readers() {
        let a = t1_card(0x96, None);
        let cur = ReaderCaps {
            features: caps().features | FEATURE_AUTO_PPS_CUR,
            ..caps()
        };
        let p = plan(&a, Protocol::T1, &cur, &NegotiateOptions::default()).unwrap();
        assert_eq!(p.pps, None);
        assert_eq!(p.set_parameters.as_ref().unwrap().1[0], 0x96);
        let prop = ReaderCaps {
            features: caps().features | FEATURE_AUTO_PPS_PROP,
            ..caps()
        };
        let p = plan(&a, Protocol::T1, &prop, &NegotiateOptions::default()).unwrap();
        assert_eq!((p.pps.clone(), p.set_parameters.clone()), (None, None));
        let ifsd = ReaderCaps {
            features: caps().features | FEATURE_AUTO_IFSD,
            ..caps()
        };
        assert!(
            !plan(&a, Protocol::T1, &ifsd, &NegotiateOptions::default())
                .unwrap()
                .negotiate_ifsd
        );
        let apdu = ReaderCaps {
            exchange_level: ExchangeLevel::ShortApdu,
            ..caps()
        };
        assert!(
            !plan(&a, Protocol::T1, &apdu, &NegotiateOptions::default())
                .unwrap()
                .negotiate_ifsd
        );
        let chr = ReaderCaps {
            exchange_level: ExchangeLevel::Character,
            ..caps()
        };
        assert!(
            plan(&a, Protocol::T1, &chr, &NegotiateOptions::default())
                .unwrap()
                .negotiate_ifsd
        );
    }

    // Caller's PTS flags.
    #[test]
    fn caller_pts() {
        let a = t1_card(0x11, None);
        let o = NegotiateOptions {
            pts1: Some(0x13),
            pts2: Some(0x00),
            ..Default::default()
        };
        let p = plan(&a, Protocol::T1, &caps(), &o).unwrap();
        let pps = p.pps.unwrap();
        assert_eq!(&pps[..4], &[0xFF, 0x31, 0x13, 0x00]);
        assert_eq!(p.fi_di, 0x13);
        let o = NegotiateOptions {
            pts1: Some(0x70),
            ..Default::default()
        };
        assert_eq!(
            plan(&a, Protocol::T1, &caps(), &o),
            Err(NegotiateError::InvalidPts1(0x70))
        );
    }

    // Inverse convention and CRC in the CCID structures.
    #[test]
    fn convention_and_crc_bits() {
        let b = Atr::build(
            Convention::Inverse,
            &[
                lvl(None, None, Some(0x02), Some(0x81)),
                lvl(None, None, None, Some(0x31)),
                lvl(Some(0x40), Some(0x12), Some(0x01), None),
            ],
            &[],
        )
        .unwrap();
        let a = Atr::parse(&b).unwrap();
        let p = plan(&a, Protocol::T1, &caps(), &NegotiateOptions::default()).unwrap();
        assert_eq!(
            p.set_parameters,
            Some((1, vec![0x11, 0x13, 0x02, 0x12, 0x00, 0x40, 0x00]))
        );
        assert_eq!(p.t1.unwrap().edc, Edc::Crc);
    }

    // The timeout cap and the extra time.
    #[test]
    fn timeout_cap_and_extra() {
        let a = dual_card(None);
        let o = NegotiateOptions {
            timeout_cap_ms: 10_000,
            ..Default::default()
        };
        assert_eq!(
            plan(&a, Protocol::T0, &caps(), &o).unwrap().timeout_ms,
            10_000
        );
        let o = NegotiateOptions {
            extra_timeout_ms: 300_000,
            timeout_cap_ms: u64::MAX,
            ..Default::default()
        };
        assert_eq!(
            plan(&a, Protocol::T0, &caps(), &o).unwrap().timeout_ms,
            532_134
        );
        // A zero clock: the 60 s non-ISO figure.
        let r = ReaderCaps {
            default_clock_khz: 0,
            ..caps()
        };
        assert_eq!(
            plan(&a, Protocol::T0, &r, &NegotiateOptions::default())
                .unwrap()
                .timeout_ms,
            60_000
        );
    }

    // The OpenPGP card fix: TB3 45 → 75.

    // CCID §6.2.3: SetParameters bError.
    #[test]
    fn set_parameters_errors() {
        assert_eq!(
            set_parameters_outcome(false, 0x00),
            Ok(SetParametersOutcome::Applied)
        );
        assert_eq!(
            set_parameters_outcome(true, 0x00),
            Ok(SetParametersOutcome::NotSupported)
        );
        assert_eq!(
            set_parameters_outcome(true, 0x0A),
            Ok(SetParametersOutcome::NotChangeable(10))
        );
        assert_eq!(
            set_parameters_outcome(true, 0x7F),
            Ok(SetParametersOutcome::NotChangeable(127))
        );
        assert_eq!(
            set_parameters_outcome(true, 0xFE),
            Err(NegotiateError::SetParametersFailed(0xFE))
        );
        assert_eq!(
            set_parameters_outcome(true, 0x80),
            Err(NegotiateError::SetParametersFailed(0x80))
        );
    }

    proptest! {
        // Any ATR and any reader: no panic; a plan's structures are
        // well-formed.
        #[test]
        fn plan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 2..33),
                             t1 in any::<bool>(), features in any::<u32>(), clk in any::<u32>(),
                             max in any::<u32>(), ifsd in any::<u32>(), no_pps in any::<bool>()) {
            let mut bytes = bytes;
            bytes[0] = 0x3B;
            let Ok(a) = Atr::parse(&bytes) else { return Ok(()); };
            let r = ReaderCaps {
                protocols: 3, features, default_clock_khz: clk, max_data_rate: max,
                data_rates: vec![], max_ifsd: ifsd,
                exchange_level: ExchangeLevel::from_features(features),
            };
            let o = NegotiateOptions { no_pps, ..Default::default() };
            let proto = if t1 { Protocol::T1 } else { Protocol::T0 };
            if let Ok(p) = plan(&a, proto, &r, &o) {
                prop_assert!(p.timeout_ms <= DEFAULT_TIMEOUT_CAP_MS);
                if let Some((n, d)) = &p.set_parameters {
                    prop_assert_eq!(usize::from(*n), usize::from(t1));
                    prop_assert_eq!(d.len(), if t1 { 7 } else { 5 });
                    prop_assert_eq!(d[0], p.fi_di);
                }
                if let Some(pps) = &p.pps {
                    prop_assert_eq!(pps.iter().fold(0u8, |x, b| x ^ b), 0);
                    prop_assert!(!no_pps);
                }
                if let Some(t) = p.t1 {
                    prop_assert!((1..=254).contains(&t.ifsd) && (1..=254).contains(&t.ifsc));
                }
            }
        }
    }
}
