//! Virtual smart cards: an Answer-to-Reset built from its parts
//! ([`AtrBuilder`]), an application answering command APDUs
//! ([`Application`], with the ISO 7816-4 test application [`IsoApplet`]),
//! and the card side of the transmission protocols: PPS, T=0 at character
//! level and T=1 blocks (the responders of `ccid::iso7816`).
//!
//! A [`Card`] is pure: it never sleeps. The time it would spend is added
//! up ([`Card::take_busy_time`]) for the reader's time model.
#![forbid(unsafe_code)]

use ccid::iso7816::apdu::Apdu;
use ccid::iso7816::atr::{Atr, AtrError, Convention, Edc, InterfaceBytes};
use ccid::iso7816::params;
use ccid::iso7816::t0::card::{T0Card, T0CardConfig};
use ccid::iso7816::t1::card::{CardConfig, CardT1, Fault as T1Fault};
use std::collections::VecDeque;
use std::time::Duration;

/// The AID the test application answers SELECT with `90 00`.
pub const TEST_AID: [u8; 8] = [0xF0, 0x45, 0x32, 0x45, 0x43, 0x43, 0x49, 0x44];

/// The PIN of a fresh [`IsoApplet`]: ASCII `123456`.
pub const DEFAULT_PIN: [u8; 6] = *b"123456";

/// Builds an ATR (ISO/IEC 7816-3 §8.2) from the features a test cares
/// about. The default is a direct-convention card offering T=0 and T=1,
/// no TA1 (Fd/Dd), IFSC 254, LRC, and the historical bytes `ccid-sim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtrBuilder {
    t0: bool,
    t1: bool,
    ta1: Option<u8>,
    tc1: Option<u8>,
    specific: Option<u8>,
    wi: Option<u8>,
    ifsc: Option<u8>,
    waiting: Option<u8>,
    edc: Edc,
    convention: Convention,
    historical: Vec<u8>,
}

impl Default for AtrBuilder {
    fn default() -> Self {
        AtrBuilder {
            t0: true,
            t1: true,
            ta1: None,
            tc1: None,
            specific: None,
            wi: None,
            ifsc: Some(254),
            waiting: None,
            edc: Edc::Lrc,
            convention: Convention::Direct,
            historical: b"ccid-sim".to_vec(),
        }
    }
}

impl AtrBuilder {
    /// The default builder (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Offer T=0 and/or T=1 (at least one is kept: asking for neither
    /// gives T=0).
    pub fn protocols(mut self, t0: bool, t1: bool) -> Self {
        self.t0 = t0 || !t1;
        self.t1 = t1;
        self
    }

    /// TA1: FI in the high nibble, DI in the low nibble.
    pub fn ta1(mut self, fi_di: u8) -> Self {
        self.ta1 = Some(fi_di);
        self
    }

    /// TC1: the extra guard time N.
    pub fn guard_time(mut self, n: u8) -> Self {
        self.tc1 = Some(n);
        self
    }

    /// TA2: specific mode fixed to protocol `t`; `can_change` clears bit 8,
    /// `implicit` sets bit 5.
    pub fn specific_mode(mut self, t: u8, can_change: bool, implicit: bool) -> Self {
        let mut b = t & 0x0F;
        if !can_change {
            b |= 0x80;
        }
        if implicit {
            b |= 0x10;
        }
        self.specific = Some(b);
        self
    }

    /// TC2: the T=0 waiting integer WI.
    pub fn wi(mut self, wi: u8) -> Self {
        self.wi = Some(wi);
        self
    }

    /// The T=1 IFSC (first TA after T=1); `None` leaves it out (32).
    pub fn ifsc(mut self, ifsc: Option<u8>) -> Self {
        self.ifsc = ifsc;
        self
    }

    /// The T=1 waiting integers (BWI high nibble, CWI low nibble).
    pub fn waiting_integers(mut self, bwi: u8, cwi: u8) -> Self {
        self.waiting = Some(((bwi & 0x0F) << 4) | (cwi & 0x0F));
        self
    }

    /// The T=1 error detection code.
    pub fn edc(mut self, edc: Edc) -> Self {
        self.edc = edc;
        self
    }

    /// The convention (TS `3B` or `3F`).
    pub fn convention(mut self, c: Convention) -> Self {
        self.convention = c;
        self
    }

    /// The historical bytes (at most 15).
    pub fn historical(mut self, h: &[u8]) -> Self {
        self.historical = h.to_vec();
        self
    }

    /// The ATR bytes, TCK included when §8.2.5 requires it.
    pub fn build(&self) -> Result<Vec<u8>, AtrError> {
        let first = if self.t0 { 0 } else { 1 };
        let t1_bytes =
            self.t1 && (self.ifsc.is_some() || self.waiting.is_some() || self.edc == Edc::Crc);
        let mut levels = vec![InterfaceBytes {
            ta: self.ta1,
            tc: self.tc1,
            td: Some(first),
            ..InterfaceBytes::default()
        }];
        // Level 2 carries TA2/TC2 and, to reach the T=1 bytes, TD2 = 1. A
        // T=0-and-T=1 card needs it anyway to announce T=1.
        let need_l2 =
            self.specific.is_some() || self.wi.is_some() || t1_bytes || (self.t0 && self.t1);
        if need_l2 {
            levels.push(InterfaceBytes {
                ta: self.specific,
                tc: self.wi,
                td: Some(1),
                ..InterfaceBytes::default()
            });
            if t1_bytes {
                levels.push(InterfaceBytes {
                    ta: self.ifsc,
                    tb: self.waiting,
                    tc: (self.edc == Edc::Crc).then_some(1),
                    td: None,
                });
            } else if self.t0 && self.t1 {
                // TD2 = 1 must be followed by a level, even an empty one.
                levels.push(InterfaceBytes::default());
            }
        } else if !self.t0 {
            // T=1 only and nothing specific: TD1 = 1 then an empty level.
            levels.push(InterfaceBytes::default());
        }
        Atr::build(self.convention, &levels, &self.historical)
    }
}

/// What a card's application does with command APDUs.
pub trait Application: Send {
    /// Processes one command APDU; returns the response data followed by
    /// SW1 SW2.
    fn process(&mut self, apdu: &[u8]) -> Vec<u8>;

    /// Called at every reset of the card (power-on, warm reset).
    fn reset(&mut self) {}

    /// How long the card works on `apdu` (added to the exchange time).
    fn processing_time(&self, _apdu: &[u8]) -> Duration {
        Duration::ZERO
    }

    /// The T=0 direction rule: true when the command with this header
    /// sends data to the host (P3 is then Le).
    fn t0_outgoing(&self, header: &[u8; 5]) -> bool {
        iso_outgoing(header)
    }
}

/// The T=0 direction rule of [`IsoApplet`]: READ BINARY, GET CHALLENGE,
/// GET DATA and GET RESPONSE, and ECHO (`80 EE`) with P1 P2 other than
/// `00 00` (the throughput form) send data.
pub fn iso_outgoing(header: &[u8; 5]) -> bool {
    let [cla, ins, p1, p2, _] = *header;
    match ins {
        0xB0 | 0xB1 | 0x84 | 0xCA | 0xCB | 0xC0 | 0xB2 | 0xB3 => true,
        0xEE => cla & 0x80 != 0 && (p1, p2) != (0, 0),
        _ => false,
    }
}

/// The ISO 7816-4 test application.
///
/// * `00 A4 04 xx Lc AID`: SELECT by AID: [`TEST_AID`] → `90 00`, any
///   other AID → `6A 82`.
/// * `00 B0 P1 P2 Le` / `00 D6 P1 P2 Lc data`: READ / UPDATE BINARY on a
///   transparent file (offset P1 P2, 15 bits), once the application is
///   selected (`69 86` otherwise); past the end `6B 00`, a short read ends
///   with `62 82`.
/// * `00 84 00 00 Le`: GET CHALLENGE, Le pseudo-random bytes.
/// * `00 20 00 P2 [Lc PIN]`: VERIFY (trailing `FF` padding ignored) with a
///   retry counter: a wrong PIN gives
///   `63 Cx` (x tries left), a blocked PIN `69 83`; no data asks for the
///   status (`90 00` when verified, else `63 Cx`).
/// * `00 24 00 P2 Lc old‖new`: CHANGE REFERENCE DATA (two `FF`-padded
///   blocks of equal size, or the old PIN at the current PIN's length; the
///   new one 4 to 16 bytes, else `6A 80`).
/// * `00 CA 00 00 Le`: GET DATA, Ne bytes `00 01 02 …`.
/// * `80 EE 00 00 Lc data [Le]`: ECHO, the data back (short or extended);
///   `80 EE P1 P2 Le` with P1 P2 ≠ `00 00`: Ne bytes `00 01 02 …` for
///   throughput tests.
/// * Anything else: `6D 00`; a malformed APDU `67 00`.
#[derive(Debug, Clone)]
pub struct IsoApplet {
    selected: bool,
    file: Vec<u8>,
    pin: Vec<u8>,
    tries_max: u8,
    tries: u8,
    verified: bool,
    rng: u64,
    per_apdu: Duration,
    commands: u64,
}

impl Default for IsoApplet {
    fn default() -> Self {
        Self::new()
    }
}

impl IsoApplet {
    /// A fresh application: a 1024-byte file holding `i mod 256`, PIN
    /// [`DEFAULT_PIN`] with 3 tries, no processing time.
    pub fn new() -> Self {
        IsoApplet {
            selected: false,
            file: (0..1024u32).map(|i| (i % 256) as u8).collect(),
            pin: DEFAULT_PIN.to_vec(),
            tries_max: 3,
            tries: 3,
            verified: false,
            rng: 0x9E37_79B9_7F4A_7C15,
            per_apdu: Duration::ZERO,
            commands: 0,
        }
    }

    /// Sets the time the card spends on every APDU.
    pub fn with_processing_time(mut self, t: Duration) -> Self {
        self.per_apdu = t;
        self
    }

    /// Sets the PIN and the number of tries (1..=15).
    pub fn with_pin(mut self, pin: &[u8], tries: u8) -> Self {
        self.pin = pin.to_vec();
        self.tries_max = tries.clamp(1, 15);
        self.tries = self.tries_max;
        self
    }

    /// Sets the content of the transparent file.
    pub fn with_file(mut self, content: Vec<u8>) -> Self {
        self.file = content;
        self
    }

    /// The file's current content.
    pub fn file(&self) -> &[u8] {
        &self.file
    }

    /// Tries left before the PIN is blocked.
    pub fn tries_left(&self) -> u8 {
        self.tries
    }

    /// Commands processed since creation.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    fn next_random(&mut self) -> u8 {
        // xorshift64*: deterministic, so tests can repeat runs.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    }

    fn wrong_pin(&mut self) -> Vec<u8> {
        self.verified = false;
        self.tries = self.tries.saturating_sub(1);
        if self.tries == 0 {
            vec![0x69, 0x83]
        } else {
            vec![0x63, 0xC0 | self.tries]
        }
    }

    fn counting(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 256) as u8).collect()
    }
}

/// A PIN without its trailing `FF` padding.
fn unpadded(pin: &[u8]) -> &[u8] {
    let end = pin.iter().rposition(|b| *b != 0xFF).map_or(0, |i| i + 1);
    pin.get(..end).unwrap_or_default()
}

fn with_sw(mut data: Vec<u8>, sw: [u8; 2]) -> Vec<u8> {
    data.extend_from_slice(&sw);
    data
}

impl Application for IsoApplet {
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.commands += 1;
        let Ok(a) = Apdu::parse(apdu) else {
            return vec![0x67, 0x00];
        };
        let ne = a.le.map_or(0, |l| l as usize);
        match (a.cla() & 0x80 != 0, a.ins()) {
            (false, 0xA4) => {
                if a.p1() != 0x04 {
                    return vec![0x6A, 0x86];
                }
                if a.data == TEST_AID {
                    self.selected = true;
                    vec![0x90, 0x00]
                } else {
                    vec![0x6A, 0x82]
                }
            }
            (false, 0xB0) => {
                if !self.selected {
                    return vec![0x69, 0x86];
                }
                if a.p1() & 0x80 != 0 {
                    return vec![0x6A, 0x81];
                }
                let off = usize::from(u16::from_be_bytes([a.p1(), a.p2()]));
                if off > self.file.len() {
                    return vec![0x6B, 0x00];
                }
                let end = off.saturating_add(ne).min(self.file.len());
                let data = self.file.get(off..end).unwrap_or_default().to_vec();
                let sw = if data.len() < ne {
                    [0x62, 0x82]
                } else {
                    [0x90, 0x00]
                };
                with_sw(data, sw)
            }
            (false, 0xD6) => {
                if !self.selected {
                    return vec![0x69, 0x86];
                }
                if a.p1() & 0x80 != 0 {
                    return vec![0x6A, 0x81];
                }
                let off = usize::from(u16::from_be_bytes([a.p1(), a.p2()]));
                let end = off.saturating_add(a.data.len());
                match self.file.get_mut(off..end) {
                    Some(dst) => {
                        dst.copy_from_slice(a.data);
                        vec![0x90, 0x00]
                    }
                    None => vec![0x6B, 0x00],
                }
            }
            (false, 0x84) => {
                let n = if ne == 0 { 8 } else { ne };
                let data = (0..n).map(|_| self.next_random()).collect();
                with_sw(data, [0x90, 0x00])
            }
            (false, 0x20) => {
                if self.tries == 0 {
                    return vec![0x69, 0x83];
                }
                if a.data.is_empty() {
                    return if self.verified {
                        vec![0x90, 0x00]
                    } else {
                        vec![0x63, 0xC0 | self.tries]
                    };
                }
                if unpadded(a.data) == self.pin.as_slice() {
                    self.tries = self.tries_max;
                    self.verified = true;
                    vec![0x90, 0x00]
                } else {
                    self.wrong_pin()
                }
            }
            (false, 0x24) => {
                if self.tries == 0 {
                    return vec![0x69, 0x83];
                }
                // Two padded blocks of equal size (a PIN pad's template), or
                // the old PIN at its length followed by the new one.
                let half = a.data.len() / 2;
                let (old, new) = match (a.data.get(..half), a.data.get(half..)) {
                    (Some(o), Some(n)) if a.data.len() % 2 == 0 && o.ends_with(&[0xFF]) => {
                        (unpadded(o), unpadded(n))
                    }
                    _ => {
                        let n = self.pin.len();
                        match (a.data.get(..n), a.data.get(n..)) {
                            (Some(o), Some(n)) => (o, n),
                            _ => return self.wrong_pin(),
                        }
                    }
                };
                if old != self.pin.as_slice() {
                    return self.wrong_pin();
                }
                if !(4..=16).contains(&new.len()) {
                    return vec![0x6A, 0x80];
                }
                self.pin = new.to_vec();
                self.tries = self.tries_max;
                self.verified = true;
                vec![0x90, 0x00]
            }
            (false, 0xCA) if (a.p1(), a.p2()) == (0, 0) => {
                with_sw(Self::counting(ne), [0x90, 0x00])
            }
            (true, 0xEE) => {
                if !a.data.is_empty() {
                    let n = if a.le.is_some() {
                        ne.min(a.data.len())
                    } else {
                        a.data.len()
                    };
                    with_sw(a.data.get(..n).unwrap_or_default().to_vec(), [0x90, 0x00])
                } else {
                    with_sw(Self::counting(ne), [0x90, 0x00])
                }
            }
            _ => vec![0x6D, 0x00],
        }
    }

    fn reset(&mut self) {
        self.selected = false;
        self.verified = false;
    }

    fn processing_time(&self, _apdu: &[u8]) -> Duration {
        self.per_apdu
    }
}

/// What the card answered a PPS request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PpsAnswer {
    /// The response bytes (an echo when everything was accepted).
    Response(Vec<u8>),
    /// No answer (an invalid request, a card in specific mode).
    Mute,
}

/// Card-side T=1 block assembly for character-level readers: bytes come in
/// one by one, a block is complete after its prologue says so.
#[derive(Debug, Clone, Default)]
struct BlockAssembler {
    buf: Vec<u8>,
}

impl BlockAssembler {
    fn push(&mut self, bytes: &[u8], edc: Edc) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(&len) = self.buf.get(2) {
            let total = 3 + usize::from(len) + edc.len();
            if self.buf.len() < total {
                break;
            }
            let rest = self.buf.split_off(total);
            out.push(std::mem::replace(&mut self.buf, rest));
        }
        out
    }
}

/// A virtual card: its ATR, its application and the card side of PPS,
/// T=0 and T=1.
pub struct Card {
    atr: Vec<u8>,
    parsed: Atr,
    app: Box<dyn Application>,
    voltages: u8,
    mute: bool,
    t0_cfg: T0CardConfig,
    t0: T0Card,
    t1: CardT1,
    t1_in: BlockAssembler,
    t1_out: VecDeque<u8>,
    negotiable: bool,
    protocol: u8,
    fi_di: u8,
    busy: Duration,
    resets: u64,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("atr", &self.atr)
            .field("protocol", &self.protocol)
            .field("voltages", &self.voltages)
            .field("mute", &self.mute)
            .finish_non_exhaustive()
    }
}

impl Card {
    /// A card with this ATR (it must decode) and application.
    pub fn new(atr: Vec<u8>, app: impl Application + 'static) -> Result<Card, AtrError> {
        Self::boxed(atr, Box::new(app))
    }

    /// Like [`Card::new`] with a boxed application.
    pub fn boxed(atr: Vec<u8>, app: Box<dyn Application>) -> Result<Card, AtrError> {
        let parsed = Atr::parse(&atr)?;
        let t1 = CardT1::new(t1_config(&parsed));
        let protocol = parsed.default_protocol();
        Ok(Card {
            atr,
            t0_cfg: T0CardConfig::default(),
            t0: T0Card::new(T0CardConfig::default()),
            t1,
            t1_in: BlockAssembler::default(),
            t1_out: VecDeque::new(),
            negotiable: parsed.specific_mode().is_none(),
            protocol,
            fi_di: params::DEFAULT_FI_DI,
            parsed,
            app,
            voltages: 0x07,
            mute: false,
            busy: Duration::ZERO,
            resets: 0,
        })
    }

    /// The default test card: [`AtrBuilder::default`] and [`IsoApplet`].
    pub fn test_card() -> Card {
        Self::with_protocols(true, true)
    }

    /// A test card offering the given protocols, with [`IsoApplet`].
    pub fn with_protocols(t0: bool, t1: bool) -> Card {
        // The builder's output for these settings is fixed and covered by
        // the tests: it always decodes.
        let atr = AtrBuilder::new()
            .protocols(t0, t1)
            .build()
            .expect("the test ATR builds");
        Card::new(atr, IsoApplet::new()).expect("the test ATR decodes")
    }

    /// The voltages the card works at, as `bVoltageSupport` bits (1: 5 V,
    /// 2: 3 V, 4: 1.8 V). At any other voltage it stays mute.
    pub fn with_voltages(mut self, bits: u8) -> Self {
        self.voltages = bits;
        self
    }

    /// A card that never answers the reset.
    pub fn mute(mut self) -> Self {
        self.mute = true;
        self
    }

    /// Overrides the T=0 character behaviour (NULL bytes, acknowledgement
    /// forms, GET RESPONSE chunking). The direction rule stays the
    /// application's.
    pub fn with_t0_config(mut self, cfg: T0CardConfig) -> Self {
        self.t0_cfg = cfg;
        self.t0 = T0Card::new(cfg);
        self
    }

    /// The ATR bytes.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// The decoded ATR.
    pub fn parsed_atr(&self) -> &Atr {
        &self.parsed
    }

    /// The protocol the card uses now (after the ATR or a PPS).
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// The Fi/Di byte in force (`11` until a PPS changes it).
    pub fn fi_di(&self) -> u8 {
        self.fi_di
    }

    /// Number of resets (cold or warm) so far.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Queues a fault for the card's next T=1 block.
    pub fn inject_t1(&mut self, fault: T1Fault) {
        self.t1.inject(fault);
    }

    /// The T=1 responder (statistics, IFSD).
    pub fn t1(&self) -> &CardT1 {
        &self.t1
    }

    /// Time spent since the last call.
    pub fn take_busy_time(&mut self) -> Duration {
        std::mem::take(&mut self.busy)
    }

    /// Resets the card at voltage `bits` (a `bVoltageSupport` bit, 0 for
    /// automatic selection); returns the ATR, or `None` when the card
    /// stays mute.
    pub fn reset(&mut self, voltage_bit: u8) -> Option<Vec<u8>> {
        if self.mute || (voltage_bit != 0 && self.voltages & voltage_bit == 0) {
            return None;
        }
        self.resets += 1;
        self.app.reset();
        self.t0 = T0Card::new(self.t0_cfg);
        self.t1 = CardT1::new(t1_config(&self.parsed));
        self.t1_in = BlockAssembler::default();
        self.t1_out.clear();
        self.negotiable = self.parsed.specific_mode().is_none();
        self.protocol = self.parsed.default_protocol();
        self.fi_di = match self.parsed.specific_mode() {
            Some(m) if !m.implicit => self.parsed.ta1().unwrap_or(params::DEFAULT_FI_DI),
            _ => params::DEFAULT_FI_DI,
        };
        Some(self.atr.clone())
    }

    /// One command APDU straight to the application (APDU-level readers).
    pub fn apdu(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.negotiable = false;
        self.busy += self.app.processing_time(apdu);
        self.app.process(apdu)
    }

    /// Whether a PPS request is still allowed (right after the ATR, in
    /// negotiable mode).
    pub fn negotiable(&self) -> bool {
        self.negotiable
    }

    /// A PPS request (ISO/IEC 7816-3 §9). The card accepts a protocol it
    /// offers and a Fi/Di no faster than TA1's; refusing only PPS1 answers
    /// without PPS1 (default Fi/Di).
    pub fn pps(&mut self, req: &[u8]) -> PpsAnswer {
        if !self.negotiable {
            return PpsAnswer::Mute;
        }
        self.negotiable = false;
        let (Some(&0xFF), Some(&pps0)) = (req.first(), req.get(1)) else {
            return PpsAnswer::Mute;
        };
        let present = [pps0 & 0x10 != 0, pps0 & 0x20 != 0, pps0 & 0x40 != 0];
        let expected = 3 + present.iter().filter(|p| **p).count();
        if req.len() != expected || req.iter().fold(0u8, |a, b| a ^ b) != 0 {
            return PpsAnswer::Mute;
        }
        let t = pps0 & 0x0F;
        if !self.parsed.offers(t) {
            return PpsAnswer::Mute;
        }
        let pps1 = if present[0] {
            req.get(2).copied()
        } else {
            None
        };
        let accepted = match pps1 {
            None => true,
            Some(v) => {
                let card = self.parsed.ta1().unwrap_or(params::DEFAULT_FI_DI);
                params::fi_di_values(v).is_some()
                    && (v == params::DEFAULT_FI_DI
                        || ((v >> 4) <= (card >> 4) && (v & 0x0F) <= (card & 0x0F)))
            }
        };
        self.protocol = t;
        if accepted {
            self.fi_di = pps1.unwrap_or(params::DEFAULT_FI_DI);
            PpsAnswer::Response(req.to_vec())
        } else {
            self.fi_di = params::DEFAULT_FI_DI;
            let mut r = vec![0xFF, pps0 & !0x10];
            if present[1] {
                r.extend(req.get(3).copied());
            }
            if present[2] {
                r.extend(req.get(if present[1] { 4 } else { 3 }).copied());
            }
            let pck = r.iter().fold(0u8, |a, b| a ^ b);
            r.push(pck);
            PpsAnswer::Response(r)
        }
    }

    /// Bytes written to the card at T=0 (character level).
    pub fn t0_write(&mut self, bytes: &[u8]) {
        self.negotiable = false;
        let Card { t0, app, busy, .. } = self;
        let mut handler = |header: &[u8; 5], data: &[u8]| -> (Vec<u8>, [u8; 2]) {
            let apdu = t0_apdu(app.as_ref(), header, data);
            *busy += app.processing_time(&apdu);
            let mut r = app.process(&apdu);
            let sw2 = r.pop().unwrap_or(0x00);
            let sw1 = r.pop().unwrap_or(0x6F);
            (r, [sw1, sw2])
        };
        t0.on_bytes(bytes, &mut handler);
    }

    /// Bytes the card has sent at T=0 and nobody read yet.
    pub fn t0_available(&self) -> usize {
        self.t0.available()
    }

    /// Takes up to `n` bytes the card sent at T=0.
    pub fn t0_read(&mut self, n: usize) -> Vec<u8> {
        self.t0.read(n)
    }

    /// One whole T=1 block from the host; the card's block, or `None` when
    /// it stays silent.
    pub fn t1_block(&mut self, block: &[u8]) -> Option<Vec<u8>> {
        self.negotiable = false;
        let Card { t1, app, busy, .. } = self;
        let mut handler = |apdu: &[u8]| -> Vec<u8> {
            *busy += app.processing_time(apdu);
            app.process(apdu)
        };
        t1.on_block(block, &mut handler)
    }

    /// T=1 bytes from a character-level reader: complete blocks are
    /// answered into the card's output.
    pub fn t1_write(&mut self, bytes: &[u8]) {
        let edc = self.parsed.edc();
        for block in self.t1_in.push(bytes, edc) {
            if let Some(answer) = self.t1_block(&block) {
                self.t1_out.extend(answer);
            }
        }
    }

    /// Bytes the card has sent at T=1 (character level) and nobody read.
    pub fn t1_available(&self) -> usize {
        self.t1_out.len()
    }

    /// Takes up to `n` bytes the card sent at T=1 (character level).
    pub fn t1_read(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.t1_out.len());
        self.t1_out.drain(..n).collect()
    }
}

/// The card's T=1 configuration from its ATR.
fn t1_config(atr: &Atr) -> CardConfig {
    CardConfig {
        ifsc: atr.ifsc(),
        edc: atr.edc(),
        ..CardConfig::default()
    }
}

/// The APDU a T=0 header and its data stand for.
fn t0_apdu(app: &dyn Application, header: &[u8; 5], data: &[u8]) -> Vec<u8> {
    let mut apdu = header.get(..4).unwrap_or_default().to_vec();
    if app.t0_outgoing(header) {
        apdu.push(header[4]);
    } else if !data.is_empty() {
        apdu.push(header[4]);
        apdu.extend_from_slice(data);
    }
    apdu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_builder_variants_decode() {
        let a = Atr::parse(&AtrBuilder::new().build().unwrap()).unwrap();
        assert_eq!(a.protocols(), vec![0, 1]);
        assert_eq!(a.ifsc(), 254);
        assert_eq!(a.historical(), b"ccid-sim");
        assert_eq!(a.tck_ok(), Some(true));

        let b = AtrBuilder::new()
            .protocols(false, true)
            .ta1(0x96)
            .specific_mode(1, true, false)
            .ifsc(Some(128))
            .waiting_integers(5, 3)
            .edc(Edc::Crc)
            .convention(Convention::Inverse)
            .build()
            .unwrap();
        let a = Atr::parse(&b).unwrap();
        assert_eq!(a.convention(), Convention::Inverse);
        assert_eq!(a.protocols(), vec![1]);
        assert_eq!(a.ta1(), Some(0x96));
        assert_eq!(a.specific_mode().unwrap().protocol, 1);
        assert_eq!((a.ifsc(), a.bwi(), a.cwi()), (128, 5, 3));
        assert_eq!(a.edc(), Edc::Crc);

        let t0 = Atr::parse(&AtrBuilder::new().protocols(true, false).build().unwrap()).unwrap();
        assert_eq!(t0.protocols(), vec![0]);
        assert_eq!(t0.tck(), None);

        let t1 = AtrBuilder::new()
            .protocols(false, true)
            .ifsc(None)
            .historical(&[])
            .build()
            .unwrap();
        let a = Atr::parse(&t1).unwrap();
        assert_eq!(a.protocols(), vec![1]);
        assert_eq!(a.ifsc(), 32);
    }

    fn ok(r: &[u8]) -> bool {
        r.ends_with(&[0x90, 0x00])
    }

    #[test]
    fn applet_commands() {
        let mut app = IsoApplet::new().with_pin(b"1234", 3);
        assert_eq!(app.process(&[0, 0xB0, 0, 0, 4]), [0x69, 0x86]);
        let mut select = vec![0, 0xA4, 4, 0, 8];
        select.extend_from_slice(&TEST_AID);
        assert_eq!(app.process(&select), [0x90, 0x00]);
        assert_eq!(app.process(&[0, 0xA4, 4, 0, 2, 1, 2]), [0x6A, 0x82]);
        assert_eq!(app.process(&[0, 0xB0, 0, 2, 3]), [2, 3, 4, 0x90, 0x00]);
        assert!(ok(&app.process(&[0, 0xD6, 0, 1, 2, 0xAA, 0xBB])));
        assert_eq!(
            app.process(&[0, 0xB0, 0, 0, 3]),
            [0, 0xAA, 0xBB, 0x90, 0x00]
        );
        assert_eq!(
            app.process(&[0, 0xB0, 0x03, 0xFE, 4]),
            [0xFE, 0xFF, 0x62, 0x82]
        );
        assert_eq!(app.process(&[0, 0xB0, 0x04, 0x01, 1]), [0x6B, 0x00]);
        assert_eq!(app.process(&[0, 0x84, 0, 0, 8]).len(), 10);
        assert_eq!(app.process(&[0, 0x20, 0, 0x81]), [0x63, 0xC3]);
        assert_eq!(
            app.process(&[0, 0x20, 0, 0x81, 4, 9, 9, 9, 9]),
            [0x63, 0xC2]
        );
        assert!(ok(
            &app.process(&[0, 0x20, 0, 0x81, 4, b'1', b'2', b'3', b'4'])
        ));
        assert_eq!(app.tries_left(), 3);
        let change = [
            0, 0x24, 0, 0x81, 8, b'1', b'2', b'3', b'4', b'9', b'8', b'7', b'6',
        ];
        assert!(ok(&app.process(&change)));
        for left in [2u8, 1] {
            assert_eq!(
                app.process(&[0, 0x20, 0, 0x81, 4, 1, 1, 1, 1]),
                [0x63, 0xC0 | left]
            );
        }
        assert_eq!(
            app.process(&[0, 0x20, 0, 0x81, 4, 1, 1, 1, 1]),
            [0x69, 0x83]
        );
        assert_eq!(
            app.process(&[0, 0x20, 0, 0x81, 4, b'9', b'8', b'7', b'6']),
            [0x69, 0x83]
        );
        assert_eq!(app.process(&[0, 0xCA, 0, 0, 3]), [0, 1, 2, 0x90, 0x00]);
        assert_eq!(app.process(&[0, 0xCA, 0, 0, 0]).len(), 258);
        assert_eq!(app.process(&[0, 0xCA, 0, 0, 0, 0x01, 0x00]).len(), 258);
        assert_eq!(
            app.process(&[0x80, 0xEE, 0, 0, 2, 7, 8]),
            [7, 8, 0x90, 0x00]
        );
        assert_eq!(app.process(&[0x80, 0xEE, 1, 0, 2]), [0, 1, 0x90, 0x00]);
        let mut ext = vec![0x80, 0xEE, 0, 0, 0, 0x01, 0x2C];
        ext.extend(std::iter::repeat_n(0x5A, 300));
        ext.extend_from_slice(&[0x00, 0x00]);
        let r = app.process(&ext);
        assert_eq!(r.len(), 302);
        assert_eq!(app.process(&[0, 0x12, 0, 0]), [0x6D, 0x00]);
        assert_eq!(app.process(&[0, 0x12, 0]), [0x67, 0x00]);
    }

    #[test]
    fn pps_accept_refuse_and_specific_mode() {
        let mut c = Card::new(
            AtrBuilder::new().ta1(0x96).build().unwrap(),
            IsoApplet::new(),
        )
        .unwrap();
        c.reset(0).unwrap();
        let req = [0xFF, 0x11, 0x96, 0xFF ^ 0x11 ^ 0x96];
        assert_eq!(c.pps(&req), PpsAnswer::Response(req.to_vec()));
        assert_eq!((c.protocol(), c.fi_di()), (1, 0x96));
        assert_eq!(c.pps(&req), PpsAnswer::Mute, "only once after the ATR");
        c.reset(0).unwrap();
        let fast = [0xFF, 0x10, 0x97, 0xFF ^ 0x10 ^ 0x97];
        assert_eq!(c.pps(&fast), PpsAnswer::Response(vec![0xFF, 0x00, 0xFF]));
        c.reset(0).unwrap();
        assert_eq!(c.pps(&[0xFF, 0x10, 0x96, 0]), PpsAnswer::Mute, "bad PCK");
        let mut s = Card::new(
            AtrBuilder::new()
                .specific_mode(1, false, false)
                .build()
                .unwrap(),
            IsoApplet::new(),
        )
        .unwrap();
        s.reset(0).unwrap();
        assert_eq!(s.pps(&req), PpsAnswer::Mute);
        assert_eq!(s.protocol(), 1);
    }

    #[test]
    fn voltages_and_mute() {
        let mut c = Card::test_card().with_voltages(0x02);
        assert!(c.reset(0x01).is_none());
        assert!(c.reset(0x02).is_some());
        assert!(c.reset(0).is_some());
        assert!(Card::test_card().mute().reset(0).is_none());
    }

    #[test]
    fn t0_character_dialogue_goes_through_the_applet() {
        let mut c = Card::test_card();
        c.reset(0).unwrap();
        c.t0_write(&[0x00, 0xCA, 0x00, 0x00, 0x03]);
        assert_eq!(c.t0_read(10), [0xCA, 0, 1, 2, 0x90, 0x00]);
        let mut select = vec![0, 0xA4, 4, 0, 8];
        c.t0_write(&select);
        assert_eq!(c.t0_read(1), [0xA4]);
        c.t0_write(&TEST_AID);
        assert_eq!(c.t0_read(2), [0x90, 0x00]);
        select.truncate(0);
        // ECHO as case 4: 61 xx then GET RESPONSE.
        c.t0_write(&[0x80, 0xEE, 0, 0, 2]);
        assert_eq!(c.t0_read(1), [0xEE]);
        c.t0_write(&[5, 6]);
        assert_eq!(c.t0_read(2), [0x61, 0x02]);
        c.t0_write(&[0x00, 0xC0, 0, 0, 2]);
        assert_eq!(c.t0_read(5), [0xC0, 5, 6, 0x90, 0x00]);
    }

    #[test]
    fn t1_blocks_by_whole_block_and_by_bytes() {
        use ccid::iso7816::t1::block::{decode, encode, Block};
        let mut c = Card::test_card();
        c.reset(0).unwrap();
        let i0 = encode(
            0,
            &Block::I {
                ns: 0,
                more: false,
                inf: vec![0, 0xCA, 0, 0, 2],
            },
            Edc::Lrc,
        );
        let r = c.t1_block(&i0).unwrap();
        assert_eq!(decode(&r, Edc::Lrc).unwrap().1.inf(), [0, 1, 0x90, 0x00]);
        let i1 = encode(
            0,
            &Block::I {
                ns: 1,
                more: false,
                inf: vec![0, 0xCA, 0, 0, 1],
            },
            Edc::Lrc,
        );
        c.t1_write(&i1[..3]);
        assert_eq!(c.t1_available(), 0);
        c.t1_write(&i1[3..]);
        let r = c.t1_read(100);
        assert_eq!(decode(&r, Edc::Lrc).unwrap().1.inf(), [0, 0x90, 0x00]);
    }
}
