//! Tests of the T=1 engine against hand-written card blocks and against
//! the card-side responder. Each cites the ISO/IEC 7816-3:2006 clause or
//! rule it checks (§11.6.2.3 rules 1-5, 9; §11.6.3.2 rules 6-7).

#![allow(clippy::indexing_slicing)]

use super::block::{decode, encode, lrc, Block, RCode, SKind};
use super::card::{CardConfig, CardT1, Fault};
use super::engine::{step_budget, LinkError, SecureAnswer, T1Engine, T1Error, T1Step};
use super::{Edc, T1Params};
use proptest::prelude::*;

fn params(ifsc: u8, ifsd: u8, edc: Edc) -> T1Params {
    T1Params {
        ifsc,
        ifsd,
        edc,
        nad: 0,
    }
}

fn lrc_engine() -> T1Engine {
    T1Engine::new(T1Params::default())
}

/// A card block (NAD 0).
fn card(b: &Block, edc: Edc) -> Vec<u8> {
    encode(0, b, edc)
}

fn i_block(ns: u8, more: bool, inf: &[u8]) -> Block {
    Block::I {
        ns,
        more,
        inf: inf.to_vec(),
    }
}

fn sent(step: &T1Step) -> &[u8] {
    match step {
        T1Step::Send { block, .. } => block,
        T1Step::Done { .. } => panic!("expected Send, got {step:?}"),
    }
}

fn sent_block(step: &T1Step, edc: Edc) -> Block {
    decode(sent(step), edc)
        .expect("engine sent a valid block")
        .1
}

fn done(step: T1Step) -> Vec<u8> {
    match step {
        T1Step::Done { response } => response,
        T1Step::Send { .. } => panic!("expected Done, got {step:?}"),
    }
}

/// Runs one exchange between the engine and the card, applying
/// `fault(step)` before each block the host sends (only when the card has
/// no fault queued, so faults never pile up). Returns the result,
/// the number of steps and the WTX values reported.
fn run(
    engine: &mut T1Engine,
    card: &mut CardT1,
    first: Result<T1Step, T1Error>,
    fault: &mut dyn FnMut(u64) -> Option<Fault>,
    app: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    limit: u64,
) -> (Result<Vec<u8>, T1Error>, u64, Vec<u8>) {
    let mut step = match first {
        Ok(s) => s,
        Err(e) => return (Err(e), 0, vec![]),
    };
    let mut n = 0u64;
    let mut wtxs = Vec::new();
    loop {
        match step {
            T1Step::Done { response } => return (Ok(response), n, wtxs),
            T1Step::Send { block, wtx } => {
                if wtx > 1 {
                    wtxs.push(wtx);
                }
                n += 1;
                assert!(
                    n <= limit,
                    "exchange did not terminate within {limit} steps"
                );
                if let Some(f) = fault(n).filter(|_| card.queued_faults() == 0) {
                    card.inject(f);
                }
                let reply = card.on_block(&block, app);
                match engine.on_response(reply.as_deref().ok_or(LinkError::Timeout)) {
                    Ok(s) => step = s,
                    Err(e) => return (Err(e), n, wtxs),
                }
            }
        }
    }
}

fn echo_app(cmd: &[u8]) -> Vec<u8> {
    let mut r: Vec<u8> = cmd.iter().rev().copied().collect();
    r.extend([0x90, 0x00]);
    r
}

fn no_fault(_: u64) -> Option<Fault> {
    None
}

// §11.3 / rule 1 / rule 2: the first I-block has N(S) = 0, the card's
// I-block answers it, and N(S)/N(R) alternate across exchanges.
#[test]
fn simple_exchange_bytes_and_sequence_numbers() {
    let mut e = lrc_engine();
    let apdu = [0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00];
    let s = e.transceive_start(&apdu).unwrap();
    assert_eq!(
        sent(&s),
        &[0x00, 0x00, 0x07, 0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00, 0x9A]
    );
    let r = e
        .on_response(Ok(&[0x00, 0x00, 0x02, 0x90, 0x00, 0x92]))
        .unwrap();
    assert_eq!(done(r), vec![0x90, 0x00]);
    assert_eq!((e.ns(), e.nr()), (1, 1));
    assert!(!e.in_exchange());
    // Second exchange: PCB 40, the card answers with N(S) = 1.
    let s = e.transceive_start(&[0x00, 0xB0, 0x00, 0x00, 0x00]).unwrap();
    assert_eq!(sent(&s)[1], 0x40);
    let r = e
        .on_response(Ok(&card(&i_block(1, false, &[0x6A, 0x82]), Edc::Lrc)))
        .unwrap();
    assert_eq!(done(r), vec![0x6A, 0x82]);
    assert_eq!((e.ns(), e.nr()), (0, 0));
    assert_eq!(e.on_response(Ok(&[])), Err(T1Error::NoExchange));
}

// Rule 5: host chaining at IFSC with the M-bit, each chunk acknowledged by
// R(N(R) = next N(S)).
#[test]
fn host_chaining_at_ifsc() {
    let mut e = T1Engine::new(params(16, 32, Edc::Lrc));
    let apdu: Vec<u8> = (0..40).collect();
    let s = e.transceive_start(&apdu).unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(0, true, &apdu[..16]));
    let s = e
        .on_response(Ok(&card(
            &Block::R {
                nr: 1,
                code: RCode::Ok,
            },
            Edc::Lrc,
        )))
        .unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(1, true, &apdu[16..32]));
    let s = e
        .on_response(Ok(&card(
            &Block::R {
                nr: 0,
                code: RCode::Ok,
            },
            Edc::Lrc,
        )))
        .unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(0, false, &apdu[32..]));
    let r = e
        .on_response(Ok(&card(&i_block(0, false, &[0x90, 0x00]), Edc::Lrc)))
        .unwrap();
    assert_eq!(done(r), vec![0x90, 0x00]);
}

// Rule 5: card chaining; the host acknowledges each chained I-block with
// R(N(R)), N(R) alternating.
#[test]
fn card_chaining_acknowledged() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0xCA, 0x00, 0x6E, 0x00]).unwrap();
    let s = e
        .on_response(Ok(&card(&i_block(0, true, &[1; 32]), Edc::Lrc)))
        .unwrap();
    assert_eq!(sent(&s), &[0x00, 0x90, 0x00, 0x90]);
    let s = e
        .on_response(Ok(&card(&i_block(1, true, &[2; 32]), Edc::Lrc)))
        .unwrap();
    assert_eq!(sent(&s), &[0x00, 0x80, 0x00, 0x80]);
    let r = e
        .on_response(Ok(&card(&i_block(0, false, &[0x90, 0x00]), Edc::Lrc)))
        .unwrap();
    let resp = done(r);
    assert_eq!(resp.len(), 66);
    assert_eq!(&resp[..32], &[1; 32]);
}

// Rule 3: S(WTX request) is answered with the same INF, the multiplier
// applies to the next block only.
#[test]
fn wtx_answered_for_next_block_only() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Wtx, false, &[5]), Edc::Lrc)))
        .unwrap();
    assert_eq!(
        s,
        T1Step::Send {
            block: vec![0x00, 0xE3, 0x01, 0x05, 0xE7],
            wtx: 5
        }
    );
    // A lost block afterwards: the R-block carries no multiplier.
    let s = e.on_response(Err(LinkError::Timeout)).unwrap();
    assert!(matches!(s, T1Step::Send { wtx: 0, .. }));
    let r = e
        .on_response(Ok(&card(&i_block(0, false, &[0x90, 0x00]), Edc::Lrc)))
        .unwrap();
    assert_eq!(done(r), vec![0x90, 0x00]);
}

// Rule 4: S(IFS request) from the card updates IFSC for the next chunks.
#[test]
fn card_ifs_request_changes_ifsc() {
    let mut e = T1Engine::new(params(16, 32, Edc::Lrc));
    let apdu: Vec<u8> = (0..40).collect();
    e.transceive_start(&apdu).unwrap();
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Ifs, false, &[8]), Edc::Lrc)))
        .unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), Block::s(SKind::Ifs, true, &[8]));
    assert_eq!(e.ifsc(), 8);
    // The outstanding chunk keeps its size; the next ones use IFSC 8.
    let s = e
        .on_response(Ok(&card(
            &Block::R {
                nr: 1,
                code: RCode::Ok,
            },
            Edc::Lrc,
        )))
        .unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(1, true, &apdu[16..24]));
    // An invalid IFS value (0) is an invalid block.
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Ifs, false, &[0]), Edc::Lrc)))
        .unwrap();
    assert_eq!(
        sent_block(&s, Edc::Lrc),
        Block::R {
            nr: 0,
            code: RCode::Other
        }
    );
}

// §11.4.2: IFSC lowered by the card's S(IFS request) before it asks for
// the outstanding I-block again: the block is cut to the new IFSC (found
// by the t1_engine fuzz target, which sent 10 bytes after IFSC 2).
#[test]
fn retransmission_after_ifsc_lowered_fits_the_new_ifsc() {
    let mut e = T1Engine::new(params(32, 32, Edc::Lrc));
    let apdu: Vec<u8> = (0..10).collect();
    let s = e.transceive_start(&apdu).unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(0, false, &apdu));
    e.on_response(Ok(&card(&Block::s(SKind::Ifs, false, &[2]), Edc::Lrc)))
        .unwrap();
    let r0 = Block::R {
        nr: 0,
        code: RCode::Ok,
    };
    let s = e.on_response(Ok(&card(&r0, Edc::Lrc))).unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(0, true, &apdu[..2]));
    // The chain goes on at IFSC 2 and the card's answer ends it.
    let r1 = Block::R {
        nr: 1,
        code: RCode::Ok,
    };
    let s = e.on_response(Ok(&card(&r1, Edc::Lrc))).unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(1, true, &apdu[2..4]));
    // Asked again at the same IFSC: byte-identical.
    let again = e.on_response(Ok(&card(&r1, Edc::Lrc))).unwrap();
    assert_eq!(sent(&again), sent(&s));
}

// Rule 9: S(ABORT request) is answered and the exchange fails; the next
// exchange starts with S(RESYNCH request) (rule 1 allows an S-block first).
#[test]
fn abort_from_card() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Abort, false, &[]), Edc::Lrc)))
        .unwrap();
    assert_eq!(sent(&s), &[0x00, 0xE2, 0x00, 0xE2]);
    assert_eq!(
        e.on_response(Err(LinkError::Timeout)),
        Err(T1Error::AbortedByCard)
    );
    assert!(e.needs_resync());
    let s = e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    assert_eq!(sent(&s), &[0x00, 0xC0, 0x00, 0xC0]);
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Resynch, true, &[]), Edc::Lrc)))
        .unwrap();
    assert_eq!(
        sent_block(&s, Edc::Lrc),
        i_block(0, false, &[0x00, 0x88, 0x00, 0x00, 0x00])
    );
    assert!(!e.needs_resync());
}

// Rule 7.1 / 7.6: a missing block gives R(N(R), other error), a parity or
// EDC error R(N(R), EDC error); rule 7.2: after an R-block the same R-block
// is sent again.
#[test]
fn error_r_blocks() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let s = e.on_response(Err(LinkError::Timeout)).unwrap();
    assert_eq!(sent(&s), &[0x00, 0x82, 0x00, 0x82]);
    let s = e.on_response(Err(LinkError::Parity)).unwrap();
    // Rule 7.2: the R-block again (not a new one).
    assert_eq!(sent(&s), &[0x00, 0x82, 0x00, 0x82]);
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let s = e
        .on_response(Ok(&[0x00, 0x00, 0x02, 0x90, 0x00, 0x00]))
        .unwrap();
    assert_eq!(sent(&s), &[0x00, 0x81, 0x00, 0x81]);
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let s = e.on_response(Err(LinkError::Parity)).unwrap();
    assert_eq!(sent(&s), &[0x00, 0x81, 0x00, 0x81]);
}

// Shared trace 03: the card answers an I-block with R(0, other error):
// the host must send the same I-block again.
#[test]
fn card_r_block_requests_retransmission() {
    let mut e = lrc_engine();
    let s = e.transceive_start(&[0x00, 0xA4, 0x04, 0x00, 0x00]).unwrap();
    let first = sent(&s).to_vec();
    let s = e.on_response(Ok(&[0x00, 0x82, 0x00, 0x82])).unwrap();
    assert_eq!(sent(&s), &first[..]);
}

// §11.4.4: CRC blocks, retransmissions byte-identical with both CRC bytes.
#[test]
fn crc_exchange_and_identical_retransmission() {
    let mut e = T1Engine::new(params(32, 32, Edc::Crc));
    let s = e.transceive_start(&[0x00, 0xA4, 0x04, 0x00, 0x00]).unwrap();
    let first = sent(&s).to_vec();
    assert_eq!(first.len(), 3 + 5 + 2);
    let c = super::block::crc(&first[..8]).to_be_bytes();
    assert_eq!(&first[8..], &c);
    let s = e
        .on_response(Ok(&card(
            &Block::R {
                nr: 0,
                code: RCode::Edc,
            },
            Edc::Crc,
        )))
        .unwrap();
    assert_eq!(sent(&s), &first[..]);
    let r = e
        .on_response(Ok(&card(&i_block(0, false, &[0x90, 0x00]), Edc::Crc)))
        .unwrap();
    assert_eq!(done(r), vec![0x90, 0x00]);
    // A CRC block judged with one wrong CRC byte is an EDC error.
    e.transceive_start(&[0x00, 0xA4, 0x04, 0x00, 0x00]).unwrap();
    let mut bad = card(&i_block(1, false, &[0x90, 0x00]), Edc::Crc);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let s = e.on_response(Ok(&bad)).unwrap();
    assert_eq!(
        sent_block(&s, Edc::Crc),
        Block::R {
            nr: 1,
            code: RCode::Edc
        }
    );
}

// Rule 7.4 then rule 6: after three retransmissions S(RESYNCH request);
// after the response N(S) = N(R) = 0 and the APDU restarts from its first
// byte.
#[test]
fn resync_after_three_retransmissions() {
    let mut e = T1Engine::new(params(16, 32, Edc::Lrc));
    let apdu: Vec<u8> = (0..40).collect();
    e.transceive_start(&apdu).unwrap();
    // First chunk acknowledged: N(S) moves to 1.
    e.on_response(Ok(&card(
        &Block::R {
            nr: 1,
            code: RCode::Ok,
        },
        Edc::Lrc,
    )))
    .unwrap();
    for _ in 0..3 {
        let s = e.on_response(Err(LinkError::Timeout)).unwrap();
        assert_eq!(
            sent_block(&s, Edc::Lrc),
            Block::R {
                nr: 0,
                code: RCode::Other
            }
        );
    }
    let s = e.on_response(Err(LinkError::Timeout)).unwrap();
    assert_eq!(
        sent_block(&s, Edc::Lrc),
        Block::s(SKind::Resynch, false, &[])
    );
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Resynch, true, &[]), Edc::Lrc)))
        .unwrap();
    assert_eq!(sent_block(&s, Edc::Lrc), i_block(0, true, &apdu[..16]));
    assert_eq!((e.ns(), e.nr()), (0, 0));
}

// Rule 6.4: at most three resynchronisations, then the engine is dead
// until a reset (new activation).
#[test]
fn dead_after_three_resyncs() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let mut resyncs = 0;
    let err = loop {
        match e.on_response(Err(LinkError::Timeout)) {
            Ok(s) => {
                if sent(&s) == [0x00, 0xC0, 0x00, 0xC0] {
                    resyncs += 1;
                }
            }
            Err(err) => break err,
        }
    };
    assert_eq!(err, T1Error::ResyncFailed);
    assert_eq!(resyncs, 3);
    assert!(e.is_dead());
    assert_eq!(e.transceive_start(&[0x00]), Err(T1Error::Dead));
    assert_eq!(e.on_response(Err(LinkError::Timeout)), Err(T1Error::Dead));
    e.reset();
    assert!(!e.is_dead());
    let s = e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    assert_eq!(sent(&s)[1], 0x00);
}

// Rule 6: only the interface device may request RESYNCH; from the card it
// is an invalid block.
#[test]
fn card_resynch_request_is_invalid() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Resynch, false, &[]), Edc::Lrc)))
        .unwrap();
    assert_eq!(
        sent_block(&s, Edc::Lrc),
        Block::R {
            nr: 0,
            code: RCode::Other
        }
    );
}

// §11.4.2: the card may not send more than IFSD bytes; wrong NAD and wrong
// N(S) are invalid blocks (§11.3.2.1, rule 2).
#[test]
fn invalid_card_blocks() {
    let mut e = T1Engine::new(params(32, 16, Edc::Lrc));
    e.transceive_start(&[0x00, 0xCA, 0x00, 0x00, 0x00]).unwrap();
    let s = e
        .on_response(Ok(&card(&i_block(0, false, &[0; 17]), Edc::Lrc)))
        .unwrap();
    assert_eq!(
        sent_block(&s, Edc::Lrc),
        Block::R {
            nr: 0,
            code: RCode::Other
        }
    );
    let s = e
        .on_response(Ok(&encode(
            0x12,
            &i_block(0, false, &[0x90, 0x00]),
            Edc::Lrc,
        )))
        .unwrap();
    assert_eq!(
        sent_block(&s, Edc::Lrc),
        Block::R {
            nr: 0,
            code: RCode::Other
        }
    );
    // Wrong N(S): not accepted, the R-block is repeated (rule 7.2).
    let s = e
        .on_response(Ok(&card(&i_block(1, false, &[0x90, 0x00]), Edc::Lrc)))
        .unwrap();
    assert_eq!(
        sent_block(&s, Edc::Lrc),
        Block::R {
            nr: 0,
            code: RCode::Other
        }
    );
    let r = e
        .on_response(Ok(&card(&i_block(0, false, &[0x90, 0x00]), Edc::Lrc)))
        .unwrap();
    assert_eq!(done(r), vec![0x90, 0x00]);
}

// The caller's maximum response size is enforced.
#[test]
fn response_too_long() {
    let mut e = lrc_engine();
    e.set_max_response(40);
    e.transceive_start(&[0x00, 0xCA, 0x00, 0x00, 0x00]).unwrap();
    e.on_response(Ok(&card(&i_block(0, true, &[0; 32]), Edc::Lrc)))
        .unwrap();
    assert_eq!(
        e.on_response(Ok(&card(&i_block(1, false, &[0; 10]), Edc::Lrc))),
        Err(T1Error::ResponseTooLong { max: 40 })
    );
    assert!(e.needs_resync());
    assert_eq!(e.transceive_start(&[]), Err(T1Error::EmptyApdu));
}

// IFSD negotiation: S(IFS request) echoed by S(IFS response), three tries.
#[test]
fn ifsd_negotiation() {
    let mut e = T1Engine::new(params(32, 32, Edc::Lrc));
    let s = e.negotiate_ifsd(254).unwrap();
    assert_eq!(sent(&s), &[0x00, 0xC1, 0x01, 0xFE, 0x3E]);
    // A wrong echo and a timeout are retried.
    let s = e
        .on_response(Ok(&card(&Block::s(SKind::Ifs, true, &[32]), Edc::Lrc)))
        .unwrap();
    assert_eq!(sent(&s), &[0x00, 0xC1, 0x01, 0xFE, 0x3E]);
    let s = e.on_response(Err(LinkError::Timeout)).unwrap();
    assert_eq!(sent(&s), &[0x00, 0xC1, 0x01, 0xFE, 0x3E]);
    let r = e
        .on_response(Ok(&card(&Block::s(SKind::Ifs, true, &[254]), Edc::Lrc)))
        .unwrap();
    assert_eq!(done(r), Vec::<u8>::new());
    assert_eq!(e.ifsd(), 254);
    assert_eq!(e.max_block_len(), 258);
    // §11.4.3: the answer timeout assumes the longest block.
    let t = crate::iso7816::params::Timing {
        cwi: 5,
        ..Default::default()
    };
    assert_eq!(
        e.answer_timeout_ms(&t, 0, u64::MAX),
        t.t1_block_timeout_ms(258, 0, u64::MAX)
    );
    assert_eq!(e.answer_timeout_ms(&t, 2, 100), 100);
    // Three failures.
    let mut e = lrc_engine();
    e.negotiate_ifsd(200).unwrap();
    e.on_response(Err(LinkError::Timeout)).unwrap();
    e.on_response(Err(LinkError::Timeout)).unwrap();
    assert_eq!(
        e.on_response(Err(LinkError::Timeout)),
        Err(T1Error::IfsdNegotiationFailed)
    );
    assert_eq!(e.ifsd(), 32);
    assert_eq!(e.negotiate_ifsd(0), Err(T1Error::InvalidIfs(0)));
    assert_eq!(e.negotiate_ifsd(255), Err(T1Error::InvalidIfs(255)));
}

// Rule 6 alone: resynchronize() ends at N(S) = N(R) = 0.
#[test]
fn resynchronize_alone() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    e.on_response(Ok(&[0x00, 0x00, 0x02, 0x90, 0x00, 0x92]))
        .unwrap();
    assert_eq!(e.ns(), 1);
    let s = e.resynchronize().unwrap();
    assert_eq!(sent(&s), &[0x00, 0xC0, 0x00, 0xC0]);
    let r = e.on_response(Ok(&[0x00, 0xE0, 0x00, 0xE0])).unwrap();
    assert_eq!(done(r), Vec::<u8>::new());
    assert_eq!((e.ns(), e.nr()), (0, 0));
}

// Abandoning an exchange forces a resynchronisation first.
#[test]
fn abandon_then_resync() {
    let mut e = lrc_engine();
    e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    let s = e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]).unwrap();
    assert_eq!(sent(&s), &[0x00, 0xC0, 0x00, 0xC0]);
}

// Secure PIN: one I-block with the current N(S); the card's answer checked
// (EDC, N(S), PCB) before the sequence numbers advance.
#[test]
fn secure_pin_wrapping() {
    let mut e = lrc_engine();
    let apdu = [0x00, 0x20, 0x00, 0x81, 0x08];
    let b = e.wrap_secure_pin(&apdu).unwrap();
    assert_eq!(&b[..3], &[0x00, 0x00, 0x05]);
    assert_eq!(*b.last().unwrap(), lrc(&b[..b.len() - 1]));
    assert_eq!(e.transceive_start(&apdu).map(|_| ()), Ok(()));
    e.abandon();
    // The abandoned exchange forced a resynchronisation.
    assert_eq!(e.wrap_secure_pin(&apdu), Err(T1Error::NeedsResync));
    let mut e = lrc_engine();
    e.wrap_secure_pin(&apdu).unwrap();
    // WTX: reply and wait again.
    let w = e
        .unwrap_secure_answer(&card(&Block::s(SKind::Wtx, false, &[3]), Edc::Lrc))
        .unwrap();
    assert_eq!(
        w,
        SecureAnswer::Wtx {
            reply: vec![0x00, 0xE3, 0x01, 0x03, 0xE1],
            multiplier: 3
        }
    );
    let r = e
        .unwrap_secure_answer(&card(&i_block(0, false, &[0x90, 0x00]), Edc::Lrc))
        .unwrap();
    assert_eq!(r, SecureAnswer::Response(vec![0x90, 0x00]));
    assert_eq!((e.ns(), e.nr()), (1, 1));
    // Next one: wrong N(S) in the answer.
    let b = e.wrap_secure_pin(&apdu).unwrap();
    assert_eq!(b[1], 0x40);
    assert_eq!(
        e.unwrap_secure_answer(&card(&i_block(0, false, &[0x90, 0x00]), Edc::Lrc)),
        Err(T1Error::UnexpectedBlock { pcb: 0x00 })
    );
    assert!(e.needs_resync());
    assert_eq!((e.ns(), e.nr()), (1, 1));
    // EDC error.
    let mut e = lrc_engine();
    e.wrap_secure_pin(&apdu).unwrap();
    assert!(matches!(
        e.unwrap_secure_answer(&[0x00, 0x00, 0x02, 0x90, 0x00, 0x00]),
        Err(T1Error::Block(_))
    ));
    assert_eq!(e.unwrap_secure_answer(&[]), Err(T1Error::NoExchange));
    // Too long for one block; busy during an exchange.
    let mut e = lrc_engine();
    assert_eq!(
        e.wrap_secure_pin(&[0; 33]),
        Err(T1Error::TooLongForBlock { len: 33, ifsc: 32 })
    );
    e.transceive_start(&apdu).unwrap();
    assert_eq!(e.wrap_secure_pin(&apdu), Err(T1Error::Busy));
    // Cancelled PIN entry: the sequence numbers do not move.
    let mut e = lrc_engine();
    e.wrap_secure_pin(&apdu).unwrap();
    e.cancel_secure();
    assert_eq!((e.ns(), e.nr()), (0, 0));
}

// Termination: a card that asks for WTX forever is stopped by the budget.
#[test]
fn endless_wtx_hits_the_budget() {
    let mut e = lrc_engine();
    e.set_max_response(258);
    let apdu = [0x00, 0x88, 0x00, 0x00, 0x00];
    let budget = step_budget(apdu.len(), 258);
    e.transceive_start(&apdu).unwrap();
    let wtx = card(&Block::s(SKind::Wtx, false, &[1]), Edc::Lrc);
    let mut n = 0u64;
    let err = loop {
        n += 1;
        assert!(n <= budget + 1);
        if let Err(err) = e.on_response(Ok(&wtx)) {
            break err;
        }
    };
    assert_eq!(err, T1Error::StepBudget { budget });
    assert_eq!(n, budget + 1);
}

// Termination: empty chained I-blocks forever are stopped by the budget.
#[test]
fn endless_empty_chain_hits_the_budget() {
    let mut e = lrc_engine();
    e.set_max_response(100);
    let apdu = [0x00, 0xCA, 0x00, 0x00, 0x00];
    let budget = step_budget(apdu.len(), 100);
    e.transceive_start(&apdu).unwrap();
    let mut ns = 0;
    let mut n = 0u64;
    let err = loop {
        n += 1;
        assert!(n <= budget + 1);
        match e.on_response(Ok(&card(&i_block(ns, true, &[]), Edc::Lrc))) {
            Ok(_) => ns ^= 1,
            Err(err) => break err,
        }
    };
    assert_eq!(err, T1Error::StepBudget { budget });
}

// The card responder and the engine together: chaining both ways with
// IFSD negotiated, CRC, and every fault kind that the rules recover from.
#[test]
fn engine_and_card_with_faults() {
    let p = params(20, 100, Edc::Crc);
    let mut e = T1Engine::new(p);
    let mut c = CardT1::new(CardConfig {
        ifsc: 20,
        ifsd: 32,
        edc: Edc::Crc,
        host_nad: 0,
    });
    let first = e.negotiate_ifsd(100);
    let (r, _, _) = run(&mut e, &mut c, first, &mut no_fault, &mut echo_app, 10);
    assert_eq!(r, Ok(vec![]));
    assert_eq!(c.ifsd(), 100);
    let apdu: Vec<u8> = (0..=255).cycle().take(700).collect();
    let faults = [
        Fault::CorruptEdc,
        Fault::Lose,
        Fault::Wtx(7),
        Fault::Ifs(50),
        Fault::WrongNs,
        Fault::Lose,
        Fault::CorruptEdc,
    ];
    let mut fault = |n: u64| {
        if n % 4 == 2 {
            faults.get((n / 4) as usize).copied()
        } else {
            None
        }
    };
    let first = e.transceive_start(&apdu);
    let (r, _, wtxs) = run(&mut e, &mut c, first, &mut fault, &mut echo_app, 1000);
    assert_eq!(r, Ok(echo_app(&apdu)));
    assert_eq!(wtxs, vec![7]);
    assert_eq!(e.ifsc(), 50);
    assert_eq!(c.stats().commands, 1);
    // And again, sequence numbers carried over.
    let first = e.transceive_start(&[0x00, 0xB0, 0x00, 0x00, 0x10]);
    let (r, _, _) = run(&mut e, &mut c, first, &mut no_fault, &mut echo_app, 100);
    assert_eq!(r, Ok(echo_app(&[0x00, 0xB0, 0x00, 0x00, 0x10])));
}

// Rule 9 with the responder: the card aborts, the host fails the exchange,
// resynchronises at the next one, which succeeds.
#[test]
fn engine_and_card_abort_then_recover() {
    let mut e = lrc_engine();
    let mut c = CardT1::new(CardConfig::default());
    let mut fault = |n: u64| (n == 1).then_some(Fault::Abort);
    let first = e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]);
    let (r, _, _) = run(&mut e, &mut c, first, &mut fault, &mut echo_app, 10);
    assert_eq!(r, Err(T1Error::AbortedByCard));
    let first = e.transceive_start(&[0x00, 0x88, 0x00, 0x00, 0x00]);
    let (r, _, _) = run(&mut e, &mut c, first, &mut no_fault, &mut echo_app, 10);
    assert_eq!(r, Ok(echo_app(&[0x00, 0x88, 0x00, 0x00, 0x00])));
    assert_eq!(c.stats().resyncs, 1);
}

// Rule 7.4 / 6 with the responder: four lost blocks in a row force a
// resynchronisation, after which the APDU goes through whole.
#[test]
fn engine_and_card_resync_recovers() {
    let mut e = T1Engine::new(params(16, 32, Edc::Lrc));
    let mut c = CardT1::new(CardConfig {
        ifsc: 16,
        ..Default::default()
    });
    let apdu: Vec<u8> = (0..50).collect();
    let mut fault = |n: u64| (2..=5).contains(&n).then_some(Fault::Lose);
    let first = e.transceive_start(&apdu);
    let (r, _, _) = run(&mut e, &mut c, first, &mut fault, &mut echo_app, 100);
    assert_eq!(r, Ok(echo_app(&apdu)));
    assert_eq!(c.stats().resyncs, 1);
    // The card received the APDU once, in full, after the resync.
    assert_eq!(c.stats().commands, 1);
}

fn arb_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::CorruptEdc),
        Just(Fault::Lose),
        (2u8..=255).prop_map(Fault::Wtx),
        (16u8..=254).prop_map(Fault::Ifs),
        Just(Fault::WrongNs),
    ]
}

/// A response generated from the command, `len` bytes long.
fn make_response(cmd: &[u8], len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ cmd.get(i % cmd.len().max(1)).copied().unwrap_or(0x5A))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    // Rules 1-7 end to end: random APDUs of 1..=65535 bytes and responses
    // of up to 65538 bytes, random IFSC/IFSD/EDC, with EDC errors, lost
    // blocks, WTX, S(IFS) and wrong N(S) injected (never more than one in
    // four blocks): the response always comes back intact.
    #[test]
    fn apdus_survive_faults(
        apdu_len in prop_oneof![1usize..300, 1usize..=65535],
        resp_len in prop_oneof![1usize..300, 1usize..=65538],
        ifsc in 16u8..=254, ifsd in 16u8..=254, crc_edc in any::<bool>(),
        faults in proptest::collection::vec(proptest::option::of(arb_fault()), 0..64),
        seed in any::<u8>(),
    ) {
        let edc = if crc_edc { Edc::Crc } else { Edc::Lrc };
        let mut e = T1Engine::new(params(ifsc, ifsd, edc));
        let mut c = CardT1::new(CardConfig { ifsc, ifsd: 32, edc, host_nad: 0 });
        let first = e.negotiate_ifsd(ifsd);
        let (r, _, _) = run(&mut e, &mut c, first, &mut no_fault, &mut echo_app, 10);
        prop_assert_eq!(r, Ok(vec![]));
        let apdu: Vec<u8> = (0..apdu_len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let mut app = |cmd: &[u8]| make_response(cmd, resp_len);
        let mut fault = |n: u64| {
            if n % 4 == 1 && n > 1 {
                faults.get(((n / 4) as usize) % faults.len().max(1)).copied().flatten()
            } else {
                None
            }
        };
        let budget = step_budget(apdu.len(), super::engine::DEFAULT_MAX_RESPONSE);
        let first = e.transceive_start(&apdu);
        let (r, _, _) = run(&mut e, &mut c, first, &mut fault, &mut app, budget + 1);
        prop_assert_eq!(r, Ok(make_response(&apdu, resp_len)));
        prop_assert_eq!(c.stats().commands, 1);
    }

    // Garbage from the "card": random bytes, random well-formed blocks and
    // link errors never panic, and every exchange ends within its budget.
    #[test]
    fn garbage_card_terminates(
        apdu_len in 1usize..600,
        ifsc in 1u8..=254, crc_edc in any::<bool>(),
        script in proptest::collection::vec(arb_garbage(), 1..64),
    ) {
        let edc = if crc_edc { Edc::Crc } else { Edc::Lrc };
        let mut e = T1Engine::new(params(ifsc, 32, edc));
        e.set_max_response(300);
        let budget = step_budget(apdu_len, 300);
        let mut step = e.transceive_start(&vec![0x42; apdu_len]);
        let mut n = 0u64;
        while let Ok(T1Step::Send { .. }) = step {
            n += 1;
            prop_assert!(n <= budget + 1);
            step = match &script[(n as usize) % script.len()] {
                Garbage::Bytes(bytes) => e.on_response(Ok(bytes)),
                Garbage::Block(pcb, inf) => {
                    let mut b = vec![0x00, *pcb, inf.len() as u8];
                    b.extend_from_slice(inf);
                    super::block::push_edc(&mut b, edc);
                    e.on_response(Ok(&b))
                }
                Garbage::Link(l) => e.on_response(Err(*l)),
            };
        }
        prop_assert!(n <= budget + 1);
    }
}

/// What a misbehaving card may send.
#[derive(Debug, Clone)]
enum Garbage {
    Bytes(Vec<u8>),
    /// A well-formed block (valid EDC) with any PCB and INF.
    Block(u8, Vec<u8>),
    Link(LinkError),
}

fn arb_garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Garbage::Bytes),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(pcb, inf)| Garbage::Block(pcb, inf)),
        prop_oneof![
            Just(LinkError::Timeout),
            Just(LinkError::Parity),
            Just(LinkError::Other)
        ]
        .prop_map(Garbage::Link),
    ]
}
