//! The host side of T=1 (ISO/IEC 7816-3:2006 §11.6), as a sans-IO state
//! machine.
//!
//! The reader layer calls [`T1Engine::transceive_start`] with an APDU,
//! sends each [`T1Step::Send`] block (in an XfrBlock for a TPDU reader),
//! and feeds the card's block, or the [`LinkError`] that replaced it, to
//! [`T1Engine::on_response`], until [`T1Step::Done`] or an error.
//!
//! Rules implemented (numbering of §11.6.2.3 and §11.6.3.2):
//! * rule 1: the host starts with an I-block, or S(RESYNCH request) when the
//!   sequence numbers are unknown after a failed exchange;
//! * rule 2: N(S) alternates; the card's I-block acknowledges the host's;
//! * rule 3: S(WTX request) is answered with the same INF and extends the
//!   waiting time of the next block only ([`T1Step::Send::wtx`]);
//! * rule 4: S(IFS request) from the card is answered and IFSC updated;
//! * rule 5: chaining both ways (M-bit, IFSC for sending, IFSD enforced on
//!   reception), each chained I-block acknowledged with an R-block;
//! * rule 6: S(RESYNCH request) after three failed retransmissions,
//!   N(S) = N(R) = 0 afterwards and the APDU sent again from its start; at
//!   most three resynchronisations, then the engine is dead until
//!   [`T1Engine::reset`] (a new power-up);
//! * rule 7.1: an invalid or missing block is answered with an R-block
//!   carrying the expected N(R) and the error (EDC/parity or other);
//! * rule 7.2: if that block answered an R-block, the R-block is sent again;
//! * rule 7.3: an S-request without valid answer is sent again;
//! * rule 7.4: at most three retransmissions per block, then rule 6;
//! * rule 7.6: no block within the waiting time is handled as an invalid
//!   block;
//! * the card's side of rules 7.1-7.2: an R-block from the card with
//!   N(R) = N(S) of the host's outstanding I-block (or with an error code
//!   after an S-response) asks for that block again, which counts as a
//!   retransmission;
//! * rule 9: S(ABORT request) from the card is answered with S(ABORT
//!   response) and the exchange ends with [`T1Error::AbortedByCard`].
//!
//! Termination: every call to [`T1Engine::on_response`] counts one step,
//! and an exchange fails with [`T1Error::StepBudget`] once its steps exceed
//! [`step_budget`], a finite function of the APDU and maximum response
//! sizes fixed when the exchange starts. No card behaviour can therefore
//! keep an exchange going forever, whatever it sends.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use super::block::{decode, encode, swap_nad, Block, BlockError, RCode, SKind};
use super::{T1Params, MAX_IFS};
use crate::iso7816::params::Timing;
use thiserror::Error;

/// Retransmissions of one block before resynchronising (rule 7.4).
pub const MAX_RETRIES: u8 = 3;
/// Resynchronisations per exchange before giving up (rule 6).
pub const MAX_RESYNCS: u8 = 3;
/// S(IFS request) attempts when negotiating IFSD.
pub const IFS_TRIES: u8 = 3;
/// S-requests (WTX, IFS) a card may send per exchange attempt, counted in
/// the step budget.
pub const S_REQUEST_ALLOWANCE: u64 = 1024;
/// The default largest response accepted: a 65536-byte extended response
/// plus SW1 SW2.
pub const DEFAULT_MAX_RESPONSE: usize = 65_538;

/// What replaced the card's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkError {
    /// No block within the waiting time.
    Timeout,
    /// The reader reported a parity error.
    Parity,
    /// Any other reception failure (a garbled or short frame).
    Other,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum T1Step {
    /// Send `block` and report the answer with [`T1Engine::on_response`].
    Send {
        /// The block, EDC included.
        block: Vec<u8>,
        /// Multiplier of the block waiting time for the answer to this
        /// block (S(WTX response)); 0 and 1 mean none.
        wtx: u8,
    },
    /// The exchange is complete.
    Done {
        /// The response APDU (empty for IFSD negotiation and
        /// resynchronisation).
        response: Vec<u8>,
    },
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum T1Error {
    /// Three resynchronisations failed; nothing works until a power-up
    /// ([`T1Engine::reset`]).
    #[error("T=1 resynchronisation failed")]
    ResyncFailed,
    /// The engine is dead (after [`T1Error::ResyncFailed`]).
    #[error("T=1 engine dead, the card must be reset")]
    Dead,
    /// `on_response` without an exchange in progress.
    #[error("no T=1 exchange in progress")]
    NoExchange,
    /// A secure-PIN block was requested during an exchange.
    #[error("a T=1 exchange is in progress")]
    Busy,
    /// An empty APDU.
    #[error("empty APDU")]
    EmptyApdu,
    /// The response exceeds the maximum.
    #[error("response longer than {max} bytes")]
    ResponseTooLong {
        /// The maximum.
        max: usize,
    },
    /// The card aborted the exchange (S(ABORT request)).
    #[error("exchange aborted by the card")]
    AbortedByCard,
    /// The exchange exceeded its step budget.
    #[error("T=1 exchange exceeded its budget of {budget} blocks")]
    StepBudget {
        /// The budget.
        budget: u64,
    },
    /// IFSD negotiation failed three times.
    #[error("S(IFS) negotiation failed")]
    IfsdNegotiationFailed,
    /// An IFS value outside 1..=254.
    #[error("invalid IFS {0}")]
    InvalidIfs(u8),
    /// The sequence numbers must be resynchronised first
    /// ([`T1Engine::resynchronize`]).
    #[error("T=1 resynchronisation needed first")]
    NeedsResync,
    /// The data does not fit one block of IFSC bytes.
    #[error("{len} bytes do not fit one block (IFSC {ifsc})")]
    TooLongForBlock {
        /// Data length.
        len: usize,
        /// IFSC.
        ifsc: u8,
    },
    /// The card's block is malformed.
    #[error("invalid block: {0}")]
    Block(#[from] BlockError),
    /// The card's block is well-formed but not the one expected.
    #[error("unexpected block from the card (PCB {pcb:#04x})")]
    UnexpectedBlock {
        /// Its PCB.
        pcb: u8,
    },
}

/// The step budget of an exchange sending `apdu_len` bytes and accepting
/// up to `max_response` bytes: every byte may travel in its own block
/// (IFSC or IFSD 1), plus one block each way; each block may be retried
/// [`MAX_RETRIES`] times; the card may interleave
/// [`S_REQUEST_ALLOWANCE`] S-requests; and all of it may be restarted
/// after each of [`MAX_RESYNCS`] resynchronisations.
pub fn step_budget(apdu_len: usize, max_response: usize) -> u64 {
    let blocks = (apdu_len as u64)
        .saturating_add(max_response as u64)
        .saturating_add(2);
    let per_attempt = blocks
        .saturating_mul(u64::from(MAX_RETRIES) + 1)
        .saturating_add(S_REQUEST_ALLOWANCE);
    (u64::from(MAX_RESYNCS) + 1)
        .saturating_mul(per_attempt.saturating_add(u64::from(MAX_RETRIES) + 1))
}

/// What the current exchange is for.
#[derive(Debug, Clone)]
enum Kind {
    Apdu(Vec<u8>),
    Ifs(u8),
    ResyncOnly,
}

/// Where the exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The host's I-block at `offset` (`len` bytes) awaits acknowledgement.
    Sending {
        offset: usize,
        len: usize,
        more: bool,
    },
    /// The card is sending its chain.
    Receiving,
    /// S(RESYNCH request) sent.
    Resynch,
    /// S(IFS request) sent.
    IfsRequest,
    /// S(ABORT response) sent.
    Aborting,
}

/// The kind of the last block the host sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    I,
    R,
    SRequest,
    SResponse,
}

#[derive(Debug, Clone)]
struct Exchange {
    kind: Kind,
    phase: Phase,
    response: Vec<u8>,
    current_i: Vec<u8>,
    last_sent: Vec<u8>,
    last_kind: Sent,
    retries: u8,
    resyncs: u8,
    tries: u8,
    steps: u64,
    budget: u64,
}

/// The answer to a secure-PIN block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecureAnswer {
    /// The card's response APDU.
    Response(Vec<u8>),
    /// The card asks for more time: send `reply` (S(WTX response)) and
    /// unwrap the next block, waiting `multiplier` times longer.
    Wtx {
        /// The S(WTX response) block.
        reply: Vec<u8>,
        /// The BWT multiplier.
        multiplier: u8,
    },
}

/// The host T=1 engine. See the module documentation.
#[derive(Debug, Clone)]
pub struct T1Engine {
    params: T1Params,
    ifsc: u8,
    ifsd: u8,
    ns: u8,
    nr: u8,
    dead: bool,
    needs_resync: bool,
    max_response: usize,
    secure_pending: bool,
    ex: Option<Exchange>,
}

fn clamp_ifs(v: u8) -> u8 {
    v.clamp(1, MAX_IFS)
}

impl T1Engine {
    /// An engine in its power-up state (N(S) = N(R) = 0) with `params`.
    /// IFSC and IFSD are clamped to 1..=254.
    pub fn new(params: T1Params) -> Self {
        T1Engine {
            params,
            ifsc: clamp_ifs(params.ifsc),
            ifsd: clamp_ifs(params.ifsd),
            ns: 0,
            nr: 0,
            dead: false,
            needs_resync: false,
            max_response: DEFAULT_MAX_RESPONSE,
            secure_pending: false,
            ex: None,
        }
    }

    /// Back to the power-up state: sequence numbers 0, IFSC/IFSD from the
    /// parameters, not dead, no exchange.
    pub fn reset(&mut self) {
        *self = T1Engine {
            max_response: self.max_response,
            ..T1Engine::new(self.params)
        };
    }

    /// Sets the largest response accepted (default
    /// [`DEFAULT_MAX_RESPONSE`]), e.g. the caller's buffer size.
    pub fn set_max_response(&mut self, max: usize) {
        self.max_response = max;
    }

    /// The current IFSC.
    pub fn ifsc(&self) -> u8 {
        self.ifsc
    }

    /// The current IFSD.
    pub fn ifsd(&self) -> u8 {
        self.ifsd
    }

    /// The parameters given at creation.
    pub fn params(&self) -> T1Params {
        self.params
    }

    /// N(S) of the host's next I-block.
    pub fn ns(&self) -> u8 {
        self.ns
    }

    /// N(S) expected in the card's next I-block.
    pub fn nr(&self) -> u8 {
        self.nr
    }

    /// True after [`T1Error::ResyncFailed`], until [`T1Engine::reset`].
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// True when the next exchange will start with a resynchronisation.
    pub fn needs_resync(&self) -> bool {
        self.needs_resync
    }

    /// True while an exchange is in progress.
    pub fn in_exchange(&self) -> bool {
        self.ex.is_some()
    }

    /// The longest block the card may send: prologue, IFSD bytes, EDC.
    /// With [`crate::iso7816::params::Timing::t1_block_timeout_ms`] this
    /// gives the per-block timeout.
    pub fn max_block_len(&self) -> usize {
        3 + usize::from(self.ifsd) + self.params.edc.len()
    }

    /// The timeout for the card's answer to a block sent with WTX factor
    /// `wtx` (from [`T1Step::Send`]): `wtx × BWT` plus [`Self::max_block_len`]
    /// characters at CWT plus the reader's margin, capped at `cap_ms`. The
    /// answer's length is unknown in advance, so the longest possible block
    /// is assumed.
    pub fn answer_timeout_ms(&self, timing: &Timing, wtx: u8, cap_ms: u64) -> u64 {
        timing.t1_block_timeout_ms(self.max_block_len(), wtx, cap_ms)
    }

    /// Gives up the exchange in progress (the reader could not complete
    /// it). The next exchange starts with a resynchronisation.
    pub fn abandon(&mut self) {
        if self.ex.take().is_some() {
            self.needs_resync = true;
        }
        self.secure_pending = false;
    }

    fn block(&self, b: &Block) -> Vec<u8> {
        encode(self.params.nad, b, self.params.edc)
    }

    fn check_usable(&mut self) -> Result<(), T1Error> {
        if self.dead {
            return Err(T1Error::Dead);
        }
        self.abandon();
        Ok(())
    }

    fn new_exchange(&self, kind: Kind, budget: u64) -> Exchange {
        Exchange {
            kind,
            phase: Phase::Resynch,
            response: Vec::new(),
            current_i: Vec::new(),
            last_sent: Vec::new(),
            last_kind: Sent::SRequest,
            retries: 0,
            resyncs: 0,
            tries: 0,
            steps: 0,
            budget,
        }
    }

    /// Starts sending `apdu`. An exchange still in progress is abandoned.
    pub fn transceive_start(&mut self, apdu: &[u8]) -> Result<T1Step, T1Error> {
        self.check_usable()?;
        if apdu.is_empty() {
            return Err(T1Error::EmptyApdu);
        }
        let budget = step_budget(apdu.len(), self.max_response);
        let mut ex = self.new_exchange(Kind::Apdu(apdu.to_vec()), budget);
        let step = if self.needs_resync {
            // Rule 1: the first block may be an S-block.
            self.resync(&mut ex)?
        } else {
            self.send_chunk(&mut ex, 0)
        };
        self.ex = Some(ex);
        Ok(step)
    }

    /// Starts an IFSD negotiation (S(IFS request) with `ifsd`, up to
    /// [`IFS_TRIES`] attempts). Ends with `Done { response: [] }` once the
    /// card echoed the value; the engine then accepts blocks of `ifsd`
    /// bytes.
    pub fn negotiate_ifsd(&mut self, ifsd: u8) -> Result<T1Step, T1Error> {
        self.check_usable()?;
        if !(1..=MAX_IFS).contains(&ifsd) {
            return Err(T1Error::InvalidIfs(ifsd));
        }
        let mut ex = self.new_exchange(Kind::Ifs(ifsd), u64::from(IFS_TRIES) + 1);
        ex.phase = Phase::IfsRequest;
        ex.tries = 1;
        let b = self.block(&Block::s(SKind::Ifs, false, &[ifsd]));
        let step = self.send(&mut ex, b, Sent::SRequest, 0);
        self.ex = Some(ex);
        Ok(step)
    }

    /// Starts a resynchronisation alone (S(RESYNCH request)); ends with
    /// `Done { response: [] }` and N(S) = N(R) = 0.
    pub fn resynchronize(&mut self) -> Result<T1Step, T1Error> {
        self.check_usable()?;
        let budget = u64::from(MAX_RESYNCS) + 1;
        let mut ex = self.new_exchange(Kind::ResyncOnly, budget);
        let step = self.resync(&mut ex)?;
        self.ex = Some(ex);
        Ok(step)
    }

    /// Feeds the card's answer to the last block sent.
    pub fn on_response(&mut self, rx: Result<&[u8], LinkError>) -> Result<T1Step, T1Error> {
        if self.dead {
            return Err(T1Error::Dead);
        }
        let mut ex = self.ex.take().ok_or(T1Error::NoExchange)?;
        ex.steps += 1;
        if ex.steps > ex.budget {
            self.needs_resync = true;
            return Err(T1Error::StepBudget { budget: ex.budget });
        }
        match self.handle(&mut ex, rx) {
            Ok(T1Step::Send { block, wtx }) => {
                self.ex = Some(ex);
                Ok(T1Step::Send { block, wtx })
            }
            Ok(done) => Ok(done),
            Err(e) => {
                if !self.dead {
                    self.needs_resync = true;
                }
                Err(e)
            }
        }
    }

    fn send(&mut self, ex: &mut Exchange, block: Vec<u8>, kind: Sent, wtx: u8) -> T1Step {
        ex.last_sent.clone_from(&block);
        ex.last_kind = kind;
        T1Step::Send { block, wtx }
    }

    /// Sends the I-block carrying the APDU from `offset` (rule 5: IFSC
    /// bytes at most, M set when more follows).
    fn send_chunk(&mut self, ex: &mut Exchange, offset: usize) -> T1Step {
        let apdu = match &ex.kind {
            Kind::Apdu(a) => a.as_slice(),
            _ => &[],
        };
        let rest = apdu.get(offset..).unwrap_or_default();
        let len = rest.len().min(usize::from(self.ifsc));
        let more = len < rest.len();
        let inf = rest.get(..len).unwrap_or_default().to_vec();
        let b = self.block(&Block::I {
            ns: self.ns,
            more,
            inf,
        });
        ex.phase = Phase::Sending { offset, len, more };
        ex.current_i.clone_from(&b);
        self.send(ex, b, Sent::I, 0)
    }

    /// Rule 6: S(RESYNCH request), at most [`MAX_RESYNCS`] times.
    fn resync(&mut self, ex: &mut Exchange) -> Result<T1Step, T1Error> {
        if ex.resyncs >= MAX_RESYNCS {
            self.dead = true;
            self.needs_resync = false;
            return Err(T1Error::ResyncFailed);
        }
        ex.resyncs += 1;
        ex.retries = 0;
        ex.phase = Phase::Resynch;
        let b = self.block(&Block::s(SKind::Resynch, false, &[]));
        Ok(self.send(ex, b, Sent::SRequest, 0))
    }

    /// Rules 7.1-7.4: an invalid or missing block.
    fn invalid(&mut self, ex: &mut Exchange, code: RCode) -> Result<T1Step, T1Error> {
        match ex.phase {
            Phase::Resynch => return self.resync(ex),
            Phase::Aborting => return Err(T1Error::AbortedByCard),
            Phase::IfsRequest => {
                // Rule 7.3: send the S-request again.
                if ex.tries >= IFS_TRIES {
                    return Err(T1Error::IfsdNegotiationFailed);
                }
                ex.tries += 1;
                let b = ex.last_sent.clone();
                return Ok(self.send(ex, b, Sent::SRequest, 0));
            }
            Phase::Sending { .. } | Phase::Receiving => {}
        }
        // Rule 7.4: three retransmissions, then rule 6.
        if ex.retries >= MAX_RETRIES {
            return self.resync(ex);
        }
        ex.retries += 1;
        if ex.last_kind == Sent::R {
            // Rule 7.2: the R-block again.
            let b = ex.last_sent.clone();
            return Ok(self.send(ex, b, Sent::R, 0));
        }
        // Rule 7.1: R-block with the expected N(R) and the error.
        let b = self.block(&Block::R { nr: self.nr, code });
        Ok(self.send(ex, b, Sent::R, 0))
    }

    /// Retransmission of `block` requested by the card (counted as a retry).
    fn retransmit(
        &mut self,
        ex: &mut Exchange,
        block: Vec<u8>,
        kind: Sent,
    ) -> Result<T1Step, T1Error> {
        if ex.retries >= MAX_RETRIES {
            return self.resync(ex);
        }
        ex.retries += 1;
        Ok(self.send(ex, block, kind, 0))
    }

    fn handle(
        &mut self,
        ex: &mut Exchange,
        rx: Result<&[u8], LinkError>,
    ) -> Result<T1Step, T1Error> {
        let bytes = match rx {
            Ok(b) => b,
            Err(LinkError::Parity) => return self.invalid(ex, RCode::Edc),
            Err(LinkError::Timeout | LinkError::Other) => return self.invalid(ex, RCode::Other),
        };
        let (nad, block) = match decode(bytes, self.params.edc) {
            Ok(d) => d,
            Err(e) => return self.invalid(ex, e.r_code()),
        };
        // §11.3.2.1: the card answers with SAD and DAD swapped.
        if nad != swap_nad(self.params.nad) {
            return self.invalid(ex, RCode::Other);
        }
        match ex.phase {
            Phase::Aborting => Err(T1Error::AbortedByCard),
            Phase::Resynch => match block {
                Block::S {
                    kind: SKind::Resynch,
                    response: true,
                    ..
                } => {
                    // Rule 6.3: both sides restart at N(S) = N(R) = 0.
                    self.ns = 0;
                    self.nr = 0;
                    self.needs_resync = false;
                    ex.retries = 0;
                    ex.response.clear();
                    match ex.kind {
                        Kind::Apdu(_) => Ok(self.send_chunk(ex, 0)),
                        Kind::ResyncOnly | Kind::Ifs(_) => Ok(T1Step::Done {
                            response: Vec::new(),
                        }),
                    }
                }
                _ => self.resync(ex),
            },
            Phase::IfsRequest => match block {
                Block::S {
                    kind: SKind::Ifs,
                    response: true,
                    inf,
                } if matches!(ex.kind, Kind::Ifs(v) if inf == [v]) => {
                    if let Kind::Ifs(v) = ex.kind {
                        self.ifsd = v;
                    }
                    Ok(T1Step::Done {
                        response: Vec::new(),
                    })
                }
                _ => self.invalid(ex, RCode::Other),
            },
            Phase::Sending { .. } | Phase::Receiving => self.handle_block(ex, block),
        }
    }

    fn handle_block(&mut self, ex: &mut Exchange, block: Block) -> Result<T1Step, T1Error> {
        match block {
            Block::I { ns, more, inf } => {
                // Rule 5 / §11.4.2: the card may not exceed IFSD.
                if inf.len() > usize::from(self.ifsd) {
                    return self.invalid(ex, RCode::Other);
                }
                match ex.phase {
                    // During the host's chain the card must answer with
                    // R-blocks (rule 5).
                    Phase::Sending { more: true, .. } => self.invalid(ex, RCode::Other),
                    Phase::Sending { more: false, .. } => {
                        if ns != self.nr {
                            return self.invalid(ex, RCode::Other);
                        }
                        // Rule 2: the card's I-block acknowledges the host's.
                        self.ns ^= 1;
                        ex.phase = Phase::Receiving;
                        self.accept(ex, more, &inf)
                    }
                    _ => {
                        if ns != self.nr {
                            // A repeated block: the card missed the
                            // acknowledgement (rule 7.2 resends it).
                            return self.invalid(ex, RCode::Other);
                        }
                        self.accept(ex, more, &inf)
                    }
                }
            }
            Block::R { nr, code } => {
                if ex.last_kind == Sent::SResponse && code != RCode::Ok {
                    // The card could not read the host's S-response.
                    let b = ex.last_sent.clone();
                    return self.retransmit(ex, b, Sent::SResponse);
                }
                match ex.phase {
                    Phase::Sending { offset, len, more } => {
                        if nr != self.ns {
                            if more {
                                // Rule 5: chunk acknowledged, send the next.
                                self.ns ^= 1;
                                ex.retries = 0;
                                return Ok(self.send_chunk(ex, offset + len));
                            }
                            // Acknowledged without an answer: not allowed.
                            return self.invalid(ex, RCode::Other);
                        }
                        // The card asks for the I-block again (its rule 7.1).
                        if len > usize::from(self.ifsc) {
                            // An S(IFS request) lowered IFSC since the block
                            // was sent: the same data is cut again to fit.
                            if ex.retries >= MAX_RETRIES {
                                return self.resync(ex);
                            }
                            ex.retries += 1;
                            return Ok(self.send_chunk(ex, offset));
                        }
                        let b = ex.current_i.clone();
                        self.retransmit(ex, b, Sent::I)
                    }
                    _ => {
                        // The card asks for the host's last block again.
                        let b = ex.last_sent.clone();
                        let k = ex.last_kind;
                        self.retransmit(ex, b, k)
                    }
                }
            }
            Block::S {
                kind,
                response: false,
                inf,
            } => self.s_request(ex, kind, &inf),
            // An S-response that answers nothing the host asked.
            Block::S { .. } => self.invalid(ex, RCode::Other),
        }
    }

    /// Appends a valid I-block of the card (rule 5 acknowledges chained
    /// blocks with R(N(R))).
    fn accept(&mut self, ex: &mut Exchange, more: bool, inf: &[u8]) -> Result<T1Step, T1Error> {
        if ex.response.len().saturating_add(inf.len()) > self.max_response {
            return Err(T1Error::ResponseTooLong {
                max: self.max_response,
            });
        }
        ex.response.extend_from_slice(inf);
        self.nr ^= 1;
        ex.retries = 0;
        if more {
            let b = self.block(&Block::R {
                nr: self.nr,
                code: RCode::Ok,
            });
            return Ok(self.send(ex, b, Sent::R, 0));
        }
        Ok(T1Step::Done {
            response: std::mem::take(&mut ex.response),
        })
    }

    /// Requests from the card (rules 3, 4, 9; a card may not request
    /// RESYNCH).
    fn s_request(&mut self, ex: &mut Exchange, kind: SKind, inf: &[u8]) -> Result<T1Step, T1Error> {
        match (kind, inf) {
            (SKind::Ifs, [v]) if (1..=MAX_IFS).contains(v) => {
                self.ifsc = *v;
                ex.retries = 0;
                let b = self.block(&Block::s(SKind::Ifs, true, inf));
                Ok(self.send(ex, b, Sent::SResponse, 0))
            }
            (SKind::Wtx, [m]) => {
                ex.retries = 0;
                let b = self.block(&Block::s(SKind::Wtx, true, inf));
                Ok(self.send(ex, b, Sent::SResponse, *m))
            }
            (SKind::Abort, []) => {
                ex.phase = Phase::Aborting;
                let b = self.block(&Block::s(SKind::Abort, true, &[]));
                Ok(self.send(ex, b, Sent::SResponse, 0))
            }
            _ => self.invalid(ex, RCode::Other),
        }
    }

    /// Builds one I-block around `data` with the current N(S), for a CCID
    /// Secure command on a TPDU reader: its first three bytes are the
    /// prologue for `bTeoPrologue`. Check the card's answer with
    /// [`T1Engine::unwrap_secure_answer`].
    pub fn wrap_secure_pin(&mut self, data: &[u8]) -> Result<Vec<u8>, T1Error> {
        if self.dead {
            return Err(T1Error::Dead);
        }
        if self.ex.is_some() {
            return Err(T1Error::Busy);
        }
        if self.needs_resync {
            return Err(T1Error::NeedsResync);
        }
        if data.len() > usize::from(self.ifsc) {
            return Err(T1Error::TooLongForBlock {
                len: data.len(),
                ifsc: self.ifsc,
            });
        }
        self.secure_pending = true;
        Ok(self.block(&Block::I {
            ns: self.ns,
            more: false,
            inf: data.to_vec(),
        }))
    }

    /// Checks the card's answer to a [`T1Engine::wrap_secure_pin`] block:
    /// EDC, NAD, an unchained I-block with the expected N(S). On success the
    /// sequence numbers advance and the response APDU is returned. An
    /// S(WTX request) gives the reply to send. Anything else is an error
    /// and the next exchange starts with a resynchronisation.
    pub fn unwrap_secure_answer(&mut self, answer: &[u8]) -> Result<SecureAnswer, T1Error> {
        if !self.secure_pending {
            return Err(T1Error::NoExchange);
        }
        let fail = |e: &mut Self, err: T1Error| {
            e.secure_pending = false;
            e.needs_resync = true;
            Err(err)
        };
        let (nad, block) = match decode(answer, self.params.edc) {
            Ok(d) => d,
            Err(e) => return fail(self, e.into()),
        };
        let pcb = block.pcb();
        if nad != swap_nad(self.params.nad) {
            return fail(self, T1Error::UnexpectedBlock { pcb });
        }
        match block {
            Block::I {
                ns,
                more: false,
                inf,
            } if ns == self.nr && inf.len() <= usize::from(self.ifsd) => {
                self.ns ^= 1;
                self.nr ^= 1;
                self.secure_pending = false;
                Ok(SecureAnswer::Response(inf))
            }
            Block::S {
                kind: SKind::Wtx,
                response: false,
                inf,
            } => Ok(SecureAnswer::Wtx {
                reply: self.block(&Block::s(SKind::Wtx, true, &inf)),
                multiplier: inf.first().copied().unwrap_or(0),
            }),
            _ => fail(self, T1Error::UnexpectedBlock { pcb }),
        }
    }

    /// Forgets a pending secure-PIN block that never reached the card (the
    /// reader reported a PIN timeout or cancellation).
    pub fn cancel_secure(&mut self) {
        self.secure_pending = false;
    }
}
