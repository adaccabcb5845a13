//! Tests of the T=0 command check and character-level engine, alone and
//! against the card-side responder. Each cites the ISO/IEC 7816-3:2006
//! clause it checks (§10.3 procedure bytes, §12.2 APDU transport).

#![allow(clippy::indexing_slicing)]

use super::card::{T0Card, T0CardConfig};
use super::*;
use proptest::prelude::*;

fn send(step: &T0Step) -> (&[u8], usize) {
    match step {
        T0Step::Send { bytes, expect } => (bytes, *expect),
        T0Step::Done { .. } => panic!("expected Send, got {step:?}"),
    }
}

fn done(step: T0Step) -> Vec<u8> {
    match step {
        T0Step::Done { response } => response,
        T0Step::Send { .. } => panic!("expected Done, got {step:?}"),
    }
}

fn start(apdu: &[u8]) -> (T0CharEngine, T0Step) {
    T0CharEngine::start(apdu, T0Options::default()).unwrap()
}

// CCID: a command must fit dwMaxCCIDMessageLength - 10.
#[test]
fn tpdu_length_check() {
    assert_eq!(check_tpdu(&[0; 261], 271), Ok(()));
    assert_eq!(
        check_tpdu(&[0; 262], 271),
        Err(T0Error::TooLong { len: 262, max: 261 })
    );
    assert_eq!(check_tpdu(&[0; 3], 271), Err(T0Error::TooShort(3)));
    assert_eq!(
        check_tpdu(&[0; 5], 5),
        Err(T0Error::TooLong { len: 5, max: 0 })
    );
    assert_eq!(check_tpdu(&[0; 4], u32::MAX), Ok(()));
}

// §12.2.1 case 1: header with P3 = 0, then SW1 SW2 (§10.3.3).
#[test]
fn case1() {
    let (mut e, s) = start(&[0x00, 0x44, 0x00, 0x00]);
    assert_eq!(send(&s), (&[0x00, 0x44, 0x00, 0x00, 0x00][..], 1));
    let s = e.on_bytes(&[0x90]).unwrap();
    assert_eq!(send(&s), (&[][..], 1));
    assert_eq!(done(e.on_bytes(&[0x00]).unwrap()), vec![0x90, 0x00]);
    assert_eq!(e.on_bytes(&[0x00]), Err(T0Error::Finished));
}

// §12.2.2 case 2S: ACK = INS, then Le data bytes and the next procedure
// byte are read together; NULL bytes are skipped (§10.3.3).
#[test]
fn case2_with_nulls() {
    let (mut e, s) = start(&[0x00, 0xB0, 0x00, 0x00, 0x04]);
    assert_eq!(send(&s), (&[0x00, 0xB0, 0x00, 0x00, 0x04][..], 1));
    let s = e.on_bytes(&[0x60]).unwrap();
    assert_eq!(send(&s), (&[][..], 1));
    let s = e.on_bytes(&[0xB0]).unwrap();
    assert_eq!(send(&s), (&[][..], 5));
    let s = e.on_bytes(&[1, 2, 3, 4, 0x90]).unwrap();
    assert_eq!(send(&s), (&[][..], 1));
    assert_eq!(
        done(e.on_bytes(&[0x00]).unwrap()),
        vec![1, 2, 3, 4, 0x90, 0x00]
    );
}

// §12.2.3 case 3S: ACK = INS, all data sent at once.
#[test]
fn case3() {
    let (mut e, s) = start(&[0x00, 0xD6, 0x00, 0x00, 0x03, 7, 8, 9]);
    assert_eq!(send(&s).0, &[0x00, 0xD6, 0x00, 0x00, 0x03]);
    let s = e.on_bytes(&[0xD6]).unwrap();
    assert_eq!(send(&s), (&[7, 8, 9][..], 1));
    e.on_bytes(&[0x90]).unwrap();
    assert_eq!(done(e.on_bytes(&[0x00]).unwrap()), vec![0x90, 0x00]);
}

// §10.3.3: INS ⊕ FF moves one byte at a time, both ways; INS ⊕ 01 is an
// ACK too.
#[test]
fn single_byte_and_xor01_acks() {
    let (mut e, _) = start(&[0x00, 0xD6, 0x00, 0x00, 0x02, 7, 8]);
    assert_eq!(send(&e.on_bytes(&[0x29]).unwrap()), (&[7][..], 1));
    assert_eq!(send(&e.on_bytes(&[0x29]).unwrap()), (&[8][..], 1));
    e.on_bytes(&[0x90]).unwrap();
    assert_eq!(done(e.on_bytes(&[0x00]).unwrap()), vec![0x90, 0x00]);
    let (mut e, _) = start(&[0x00, 0xB0, 0x00, 0x00, 0x02]);
    assert_eq!(send(&e.on_bytes(&[0x4F]).unwrap()), (&[][..], 2));
    assert_eq!(send(&e.on_bytes(&[0xAA, 0x4F]).unwrap()), (&[][..], 2));
    assert_eq!(send(&e.on_bytes(&[0xBB, 0x90]).unwrap()), (&[][..], 1));
    assert_eq!(
        done(e.on_bytes(&[0x00]).unwrap()),
        vec![0xAA, 0xBB, 0x90, 0x00]
    );
    let (mut e, _) = start(&[0x00, 0xB0, 0x00, 0x00, 0x01]);
    assert_eq!(send(&e.on_bytes(&[0xB1]).unwrap()), (&[][..], 2));
    let (mut e, _) = start(&[0x00, 0xD6, 0x00, 0x00, 0x02, 7, 8]);
    assert_eq!(send(&e.on_bytes(&[0x28]).unwrap()), (&[7][..], 1));
}

// §12.2.5 case 4S: sent as case 3; 61XX → GET RESPONSE with the command's
// CLA and P3 = XX; the data are returned with the final status.
#[test]
fn case4_get_response() {
    let (mut e, _) = start(&[0xA0, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00, 0x00]);
    assert_eq!(send(&e.on_bytes(&[0xA4]).unwrap()), (&[0x3F, 0x00][..], 1));
    e.on_bytes(&[0x61]).unwrap();
    let s = e.on_bytes(&[0x03]).unwrap();
    assert_eq!(send(&s), (&[0xA0, 0xC0, 0x00, 0x00, 0x03][..], 1));
    assert_eq!(send(&e.on_bytes(&[0xC0]).unwrap()), (&[][..], 4));
    e.on_bytes(&[1, 2, 3, 0x61]).unwrap();
    let s = e.on_bytes(&[0x01]).unwrap();
    assert_eq!(send(&s), (&[0xA0, 0xC0, 0x00, 0x00, 0x01][..], 1));
    e.on_bytes(&[0xC0]).unwrap();
    e.on_bytes(&[4, 0x90]).unwrap();
    assert_eq!(
        done(e.on_bytes(&[0x00]).unwrap()),
        vec![1, 2, 3, 4, 0x90, 0x00]
    );
    // Without the option, 61XX is returned as it is.
    let opts = T0Options {
        get_response: false,
        ..Default::default()
    };
    let (mut e, _) =
        T0CharEngine::start(&[0x00, 0xA4, 0x00, 0x00, 0x01, 0x3F, 0x00], opts).unwrap();
    e.on_bytes(&[0xA4]).unwrap();
    e.on_bytes(&[0x61]).unwrap();
    assert_eq!(done(e.on_bytes(&[0x10]).unwrap()), vec![0x61, 0x10]);
    // Case 3 never triggers GET RESPONSE.
    let (mut e, _) = start(&[0x00, 0xD6, 0x00, 0x00, 0x01, 0x3F]);
    e.on_bytes(&[0xD6]).unwrap();
    e.on_bytes(&[0x61]).unwrap();
    assert_eq!(done(e.on_bytes(&[0x10]).unwrap()), vec![0x61, 0x10]);
}

// §12.2.2: 6CXX → the same header with P3 = XX.
#[test]
fn wrong_length_resend() {
    let (mut e, _) = start(&[0x00, 0xB0, 0x00, 0x00, 0x00]);
    e.on_bytes(&[0x6C]).unwrap();
    let s = e.on_bytes(&[0x02]).unwrap();
    assert_eq!(send(&s), (&[0x00, 0xB0, 0x00, 0x00, 0x02][..], 1));
    assert_eq!(send(&e.on_bytes(&[0xB0]).unwrap()), (&[][..], 3));
    e.on_bytes(&[5, 6, 0x90]).unwrap();
    assert_eq!(done(e.on_bytes(&[0x00]).unwrap()), vec![5, 6, 0x90, 0x00]);
    let opts = T0Options {
        resend_on_6c: false,
        ..Default::default()
    };
    let (mut e, _) = T0CharEngine::start(&[0x00, 0xB0, 0x00, 0x00, 0x00], opts).unwrap();
    e.on_bytes(&[0x6C]).unwrap();
    assert_eq!(done(e.on_bytes(&[0x02]).unwrap()), vec![0x6C, 0x02]);
}

// §10.3.2: INS 6X/9X refused; bad procedure bytes, extended APDUs, extra or
// missing bytes are errors.
#[test]
fn refusals_and_errors() {
    let o = T0Options::default();
    assert_eq!(
        T0CharEngine::start(&[0x00, 0x61, 0, 0], o).err(),
        Some(T0Error::InvalidIns(0x61))
    );
    assert_eq!(
        T0CharEngine::start(&[0x00, 0x9F, 0, 0], o).err(),
        Some(T0Error::InvalidIns(0x9F))
    );
    assert_eq!(
        T0CharEngine::start(&[0x00, 0xB0, 0, 0, 0, 0x01, 0x00], o).err(),
        Some(T0Error::Extended)
    );
    assert!(matches!(
        T0CharEngine::start(&[0x00, 0xB0, 0], o),
        Err(T0Error::Apdu(_))
    ));
    let (mut e, _) = start(&[0x00, 0xB0, 0x00, 0x00, 0x02]);
    assert_eq!(
        e.on_bytes(&[0x12]),
        Err(T0Error::UnexpectedProcedureByte(0x12))
    );
    let (mut e, _) = start(&[0x00, 0xD6, 0x00, 0x00, 0x01, 0x01]);
    assert_eq!(e.on_bytes(&[0xD6, 0x90]), Err(T0Error::UnexpectedBytes(1)));
    let (mut e, _) = start(&[0x00, 0x44, 0x00, 0x00]);
    assert_eq!(e.on_bytes(&[]), Err(T0Error::NoData));
    let (mut e, _) = start(&[0x00, 0x44, 0x00, 0x00]);
    e.on_bytes(&[0x90]).unwrap();
    assert_eq!(e.on_bytes(&[0x00, 0x00]), Err(T0Error::UnexpectedBytes(1)));
}

// The caller's maximum response size.
#[test]
fn max_response() {
    let opts = T0Options {
        max_response: 4,
        ..Default::default()
    };
    let (mut e, _) = T0CharEngine::start(&[0x00, 0xB0, 0x00, 0x00, 0x04], opts).unwrap();
    e.on_bytes(&[0xB0]).unwrap();
    assert_eq!(
        e.on_bytes(&[1, 2, 3]),
        Err(T0Error::ResponseTooLong { max: 4 })
    );
    let (mut e, _) = T0CharEngine::start(&[0x00, 0xB0, 0x00, 0x00, 0x02], opts).unwrap();
    e.on_bytes(&[0xB0]).unwrap();
    e.on_bytes(&[1, 2, 0x90]).unwrap();
    assert_eq!(done(e.on_bytes(&[0x00]).unwrap()), vec![1, 2, 0x90, 0x00]);
}

// Termination: a card sending NULL forever is stopped by the budget.
#[test]
fn endless_nulls_hit_the_budget() {
    let (mut e, _) = start(&[0x00, 0x44, 0x00, 0x00]);
    let mut n = 0u64;
    let err = loop {
        n += 1;
        assert!(n < 1_000_000);
        if let Err(err) = e.on_bytes(&[NULL]) {
            break err;
        }
    };
    assert!(matches!(err, T0Error::StepBudget { .. }));
    // A card answering 61XX to every GET RESPONSE without data.
    let (mut e, _) = start(&[0x00, 0xA4, 0x00, 0x00, 0x01, 0x3F, 0x00]);
    e.on_bytes(&[0xA4]).unwrap();
    let mut n = 0u64;
    let err = loop {
        n += 1;
        assert!(n < 2_000_000);
        let r = if n % 2 == 1 {
            e.on_bytes(&[0x61])
        } else {
            e.on_bytes(&[0x01])
        };
        if let Err(err) = r {
            break err;
        }
    };
    assert!(matches!(err, T0Error::StepBudget { .. }));
}

/// Runs one APDU between the engine and the card responder; checks that
/// the engine never asks for bytes the card did not send and leaves none.
fn run(
    apdu: &[u8],
    opts: T0Options,
    cfg: T0CardConfig,
    app: &mut super::card::T0App<'_>,
) -> Result<Vec<u8>, T0Error> {
    let (mut e, mut step) = T0CharEngine::start(apdu, opts)?;
    let mut card = T0Card::new(cfg);
    for _ in 0..100_000 {
        match step {
            T0Step::Done { response } => {
                assert_eq!(card.available(), 0, "bytes left unread");
                return Ok(response);
            }
            T0Step::Send { bytes, expect } => {
                card.on_bytes(&bytes, app);
                assert!(
                    card.available() >= expect,
                    "engine expects {expect} bytes, card sent {}",
                    card.available()
                );
                let got = card.read(expect);
                step = e.on_bytes(&got)?;
            }
        }
    }
    panic!("no end");
}

// Engine and card responder: case 4 with a long answer fetched in chunks,
// NULLs, byte-by-byte acknowledgements, INS ⊕ 01.
#[test]
fn engine_and_card() {
    let cfg = T0CardConfig {
        nulls: 2,
        single_byte_acks: true,
        xor01_acks: true,
        get_response_chunk: 100,
        ..Default::default()
    };
    let mut app = |h: &[u8; 5], data: &[u8]| {
        assert_eq!(h[1], 0xA4);
        (
            data.iter().cycle().take(300).copied().collect(),
            [0x90, 0x00],
        )
    };
    let r = run(
        &[0x00, 0xA4, 0x04, 0x00, 0x03, 1, 2, 3, 0x00],
        T0Options::default(),
        cfg,
        &mut app,
    )
    .unwrap();
    assert_eq!(r.len(), 302);
    assert_eq!(&r[..6], &[1, 2, 3, 1, 2, 3]);
    assert_eq!(&r[300..], &[0x90, 0x00]);
}

#[derive(Debug, Clone, Copy)]
enum Case {
    One,
    Two(u8),
    Three,
    Four(u8),
}

fn arb_case() -> impl Strategy<Value = Case> {
    prop_oneof![
        Just(Case::One),
        any::<u8>().prop_map(Case::Two),
        Just(Case::Three),
        any::<u8>().prop_map(Case::Four),
    ]
}

proptest! {
    // §12.2 end to end: any short case, any card behaviour allowed by
    // §10.3.3, the response is what the application answered.
    #[test]
    fn apdus_through_card(
        case in arb_case(),
        data in proptest::collection::vec(any::<u8>(), 1..=255),
        resp_len in 0usize..=600,
        nulls in 0u8..3, single in any::<bool>(), xor01 in any::<bool>(), exact_le in any::<bool>(),
        chunk in 1usize..=256,
        sw in prop_oneof![Just([0x90, 0x00]), Just([0x62, 0x83]), Just([0x6A, 0x82])],
    ) {
        let cfg = T0CardConfig { nulls, single_byte_acks: single, xor01_acks: xor01, exact_le,
                                 get_response_chunk: chunk, ..Default::default() };
        let (apdu, ins) = match case {
            Case::One => (vec![0x00, 0x44, 0x00, 0x00], 0x44),
            Case::Two(le) => (vec![0x00, 0xB0, 0x00, 0x00, le], 0xB0),
            Case::Three => {
                let mut a = vec![0x00, 0xD6, 0x00, 0x00, data.len() as u8];
                a.extend_from_slice(&data);
                (a, 0xD6)
            }
            Case::Four(le) => {
                let mut a = vec![0x00, 0xA4, 0x04, 0x00, data.len() as u8];
                a.extend_from_slice(&data);
                a.push(le);
                (a, 0xA4)
            }
        };
        // Outgoing answers are at most 256 bytes; incoming ones any length.
        let out_len = resp_len.clamp(1, 256);
        let body: Vec<u8> = (0..resp_len.max(out_len)).map(|i| (i as u8) ^ 0xA5).collect();
        let mut app = |h: &[u8; 5], _: &[u8]| {
            assert_eq!(h[1], ins);
            if h[1] == 0xB0 {
                (body[..out_len].to_vec(), [0x90, 0x00])
            } else {
                (body[..resp_len].to_vec(), sw)
            }
        };
        let got = run(&apdu, T0Options::default(), cfg, &mut app).unwrap();
        let want = match case {
            Case::One | Case::Three if resp_len == 0 => sw.to_vec(),
            Case::One | Case::Three => vec![0x61, (resp_len.min(256) % 256) as u8],
            Case::Four(_) => {
                let mut w = body[..resp_len].to_vec();
                w.extend_from_slice(&sw);
                w
            }
            Case::Two(le) => {
                let ne = if le == 0 { 256 } else { usize::from(le) };
                let n = if out_len > ne && !exact_le { ne } else { out_len };
                let mut w = body[..n].to_vec();
                w.extend_from_slice(&[0x90, 0x00]);
                w
            }
        };
        prop_assert_eq!(got, want);
    }

    // Random bytes from the card never panic and the exchange ends.
    #[test]
    fn garbage_never_panics(apdu_case in arb_case(),
                            script in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..50)) {
        let apdu = match apdu_case {
            Case::One => vec![0x00, 0x44, 0x00, 0x00],
            Case::Two(le) => vec![0x00, 0xB0, 0x00, 0x00, le],
            Case::Three => vec![0x00, 0xD6, 0x00, 0x00, 0x01, 0x01],
            Case::Four(le) => vec![0x00, 0xA4, 0x00, 0x00, 0x01, 0x01, le],
        };
        let opts = T0Options { max_response: 300, ..Default::default() };
        let (mut e, mut step) = T0CharEngine::start(&apdu, opts).unwrap();
        let mut n = 0usize;
        while let T0Step::Send { .. } = step {
            n += 1;
            prop_assert!(n < 200_000);
            match e.on_bytes(&script[n % script.len()]) {
                Ok(s) => step = s,
                Err(_) => break,
            }
        }
    }
}
