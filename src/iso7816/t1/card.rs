//! A card-side T=1 responder (ISO/IEC 7816-3:2006 §11.6, the card's view),
//! pure like the host engine, for the simulator and for tests.
//!
//! [`CardT1::on_block`] takes a block from the host and returns the card's
//! answer, or `None` when the card stays silent (the host then sees a
//! timeout). Complete command APDUs go to the caller's closure, whose
//! result is sent back, chained at IFSD. Faults can be queued with
//! [`CardT1::inject`]; each applies to the next block the card sends.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use super::block::{decode, encode, swap_nad, Block, RCode, SKind};
use super::{Edc, MAX_IFS};
use std::collections::VecDeque;

/// The card's T=1 configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardConfig {
    /// The card's IFSC (largest INF it accepts, 1..=254).
    pub ifsc: u8,
    /// The IFSD the card assumes before any S(IFS request) (32 by §11.4.2).
    pub ifsd: u8,
    /// The EDC.
    pub edc: Edc,
    /// The NAD the host uses; the card answers with its nibbles swapped.
    pub host_nad: u8,
}

impl Default for CardConfig {
    fn default() -> Self {
        CardConfig {
            ifsc: 32,
            ifsd: 32,
            edc: Edc::Lrc,
            host_nad: 0,
        }
    }
}

/// A fault for the next block the card sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send the block with its EDC damaged.
    CorruptEdc,
    /// Do not send the block (the host times out); the card behaves as if
    /// it had sent it.
    Lose,
    /// Send S(WTX request) with this multiplier first.
    Wtx(u8),
    /// Send S(IFS request) with this IFSC first; the card uses it once the
    /// host answers.
    Ifs(u8),
    /// Send the next I-block with the wrong N(S) (valid EDC).
    WrongNs,
    /// Send S(ABORT request) instead, drop the exchange, and stay silent
    /// after the host's S(ABORT response).
    Abort,
}

/// Counters of what the card saw and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardStats {
    /// Blocks received from the host.
    pub received: u64,
    /// Blocks received that were invalid.
    pub invalid: u64,
    /// Complete command APDUs handed to the application.
    pub commands: u64,
    /// S(RESYNCH request) received.
    pub resyncs: u64,
    /// S(IFS request) received.
    pub ifs_requests: u64,
}

#[derive(Debug, Clone)]
struct Answer {
    data: Vec<u8>,
    offset: usize,
    len: usize,
    more: bool,
    ns: u8,
}

/// The card. See the module documentation.
#[derive(Debug, Clone)]
pub struct CardT1 {
    cfg: CardConfig,
    ifsc: u8,
    ifsd: u8,
    ns: u8,
    nr: u8,
    command: Vec<u8>,
    answer: Option<Answer>,
    last_sent: Option<Vec<u8>>,
    /// The S-request the card sent and the block it holds back meanwhile.
    pending: Option<(SKind, Vec<u8>, Option<Vec<u8>>)>,
    faults: VecDeque<Fault>,
    silent: bool,
    stats: CardStats,
}

impl CardT1 {
    /// A card just after its ATR.
    pub fn new(cfg: CardConfig) -> Self {
        CardT1 {
            cfg,
            ifsc: cfg.ifsc.clamp(1, MAX_IFS),
            ifsd: cfg.ifsd.clamp(1, MAX_IFS),
            ns: 0,
            nr: 0,
            command: Vec::new(),
            answer: None,
            last_sent: None,
            pending: None,
            faults: VecDeque::new(),
            silent: false,
            stats: CardStats::default(),
        }
    }

    /// Queues a fault for the next block sent.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    /// Faults queued and not applied yet (a [`Fault::WrongNs`] waits for an
    /// I-block).
    pub fn queued_faults(&self) -> usize {
        self.faults.len()
    }

    /// The IFSD the card currently uses.
    pub fn ifsd(&self) -> u8 {
        self.ifsd
    }

    /// The card's current IFSC.
    pub fn ifsc(&self) -> u8 {
        self.ifsc
    }

    /// What the card saw.
    pub fn stats(&self) -> CardStats {
        self.stats
    }

    fn enc(&self, b: &Block) -> Vec<u8> {
        encode(swap_nad(self.cfg.host_nad), b, self.cfg.edc)
    }

    /// Processes one block from the host; returns the card's block, or
    /// `None` for silence.
    pub fn on_block(
        &mut self,
        bytes: &[u8],
        app: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    ) -> Option<Vec<u8>> {
        self.stats.received += 1;
        let decoded = decode(bytes, self.cfg.edc)
            .ok()
            .filter(|(nad, _)| *nad == self.cfg.host_nad);
        let Some((_, block)) = decoded else {
            self.stats.invalid += 1;
            let code = match decode(bytes, self.cfg.edc) {
                Err(e) => e.r_code(),
                Ok(_) => RCode::Other,
            };
            return self.emit_fresh(Block::R { nr: self.nr, code });
        };
        if self.silent {
            // After an abort the card waits for a resynchronisation.
            if !matches!(
                block,
                Block::S {
                    kind: SKind::Resynch,
                    response: false,
                    ..
                }
            ) {
                return None;
            }
        }
        match block {
            Block::I { ns, more, inf } => self.on_i(ns, more, &inf, app),
            Block::R { nr, .. } => self.on_r(nr),
            Block::S {
                kind,
                response: false,
                inf,
            } => self.on_s_request(kind, &inf),
            Block::S {
                kind,
                response: true,
                inf,
            } => self.on_s_response(kind, &inf),
        }
    }

    fn on_i(
        &mut self,
        ns: u8,
        more: bool,
        inf: &[u8],
        app: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    ) -> Option<Vec<u8>> {
        if inf.len() > usize::from(self.ifsc) {
            self.stats.invalid += 1;
            return self.emit_fresh(Block::R {
                nr: self.nr,
                code: RCode::Other,
            });
        }
        if ns != self.nr {
            // The host repeats a block already accepted: its answer was
            // lost, send it again.
            return self.resend_last();
        }
        self.nr ^= 1;
        // A host I-block acknowledges the card's last I-block.
        self.answer = None;
        self.command.extend_from_slice(inf);
        if more {
            return self.emit_fresh(Block::R {
                nr: self.nr,
                code: RCode::Ok,
            });
        }
        self.stats.commands += 1;
        let cmd = std::mem::take(&mut self.command);
        let data = app(&cmd);
        self.answer = Some(Answer {
            data,
            offset: 0,
            len: 0,
            more: false,
            ns: self.ns,
        });
        self.send_answer_chunk(0)
    }

    fn send_answer_chunk(&mut self, offset: usize) -> Option<Vec<u8>> {
        let ifsd = usize::from(self.ifsd);
        let ns = self.ns;
        let a = self.answer.as_mut()?;
        let rest = a.data.get(offset..).unwrap_or_default();
        let len = rest.len().min(ifsd);
        let more = len < rest.len();
        let inf = rest.get(..len).unwrap_or_default().to_vec();
        a.offset = offset;
        a.len = len;
        a.more = more;
        a.ns = ns;
        self.ns ^= 1;
        self.emit_fresh(Block::I { ns, more, inf })
    }

    fn on_r(&mut self, nr: u8) -> Option<Vec<u8>> {
        if self.pending.is_some() {
            // The host could not read the card's S-request.
            return self.resend_last();
        }
        if let Some(a) = &self.answer {
            if nr != a.ns && a.more {
                // The host acknowledges the chunk and asks for the next.
                let next = a.offset + a.len;
                return self.send_answer_chunk(next);
            }
        }
        self.resend_last()
    }

    fn on_s_request(&mut self, kind: SKind, inf: &[u8]) -> Option<Vec<u8>> {
        // A request from the host supersedes the card's own.
        self.pending = None;
        match kind {
            SKind::Resynch => {
                self.stats.resyncs += 1;
                self.ns = 0;
                self.nr = 0;
                self.command.clear();
                self.answer = None;
                self.pending = None;
                self.silent = false;
                self.emit_fresh(Block::s(SKind::Resynch, true, &[]))
            }
            SKind::Ifs => match inf {
                [v] if (1..=MAX_IFS).contains(v) => {
                    self.stats.ifs_requests += 1;
                    self.ifsd = *v;
                    self.emit_fresh(Block::s(SKind::Ifs, true, inf))
                }
                _ => self.emit_fresh(Block::R {
                    nr: self.nr,
                    code: RCode::Other,
                }),
            },
            SKind::Abort => {
                self.command.clear();
                self.answer = None;
                self.emit_fresh(Block::s(SKind::Abort, true, &[]))
            }
            // Only the card may request WTX.
            SKind::Wtx => self.emit_fresh(Block::R {
                nr: self.nr,
                code: RCode::Other,
            }),
        }
    }

    fn on_s_response(&mut self, kind: SKind, inf: &[u8]) -> Option<Vec<u8>> {
        match self.pending.take() {
            Some((k, v, held)) if k == kind && v == inf => {
                match kind {
                    SKind::Ifs => {
                        if let Some(n) = v.first() {
                            self.ifsc = *n;
                        }
                    }
                    SKind::Abort => {
                        self.silent = true;
                        return None;
                    }
                    SKind::Wtx | SKind::Resynch => {}
                }
                let held = held?;
                self.emit_fresh_bytes(held)
            }
            other => {
                self.pending = other;
                self.emit_fresh(Block::R {
                    nr: self.nr,
                    code: RCode::Other,
                })
            }
        }
    }

    fn resend_last(&mut self) -> Option<Vec<u8>> {
        match self.last_sent.clone() {
            Some(b) => self.transmit(b),
            None => self.emit_fresh(Block::R {
                nr: self.nr,
                code: RCode::Other,
            }),
        }
    }

    fn emit_fresh(&mut self, block: Block) -> Option<Vec<u8>> {
        let b = self.enc(&block);
        self.emit_fresh_bytes(b)
    }

    /// Sends a new block, first applying an S-request fault if one is
    /// queued (the block is then held until the host answers).
    fn emit_fresh_bytes(&mut self, block: Vec<u8>) -> Option<Vec<u8>> {
        let req = match self.faults.front() {
            Some(Fault::Wtx(m)) => Some((SKind::Wtx, vec![*m])),
            Some(Fault::Ifs(n)) => Some((SKind::Ifs, vec![*n])),
            Some(Fault::Abort) => Some((SKind::Abort, vec![])),
            _ => None,
        };
        if let Some((kind, inf)) = req {
            self.faults.pop_front();
            let held = if kind == SKind::Abort {
                self.command.clear();
                self.answer = None;
                None
            } else {
                Some(block)
            };
            self.pending = Some((kind, inf.clone(), held));
            let s = self.enc(&Block::s(kind, false, &inf));
            return self.transmit(s);
        }
        self.transmit(block)
    }

    /// Records `block` as the last sent and puts it on the wire, applying
    /// a transmission fault if one is queued.
    fn transmit(&mut self, block: Vec<u8>) -> Option<Vec<u8>> {
        self.last_sent = Some(block.clone());
        match self.faults.front().copied() {
            Some(Fault::CorruptEdc) => {
                self.faults.pop_front();
                let mut b = block;
                if let Some(last) = b.last_mut() {
                    *last ^= 0x5A;
                }
                Some(b)
            }
            Some(Fault::Lose) => {
                self.faults.pop_front();
                None
            }
            Some(Fault::WrongNs) => match decode(&block, self.cfg.edc) {
                Ok((_, Block::I { ns, more, inf })) => {
                    self.faults.pop_front();
                    Some(self.enc(&Block::I {
                        ns: ns ^ 1,
                        more,
                        inf,
                    }))
                }
                _ => Some(block),
            },
            _ => Some(block),
        }
    }
}
