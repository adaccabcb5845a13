//! The host T=1 engine fed card blocks (ISO 7816-3 §11): whatever the card
//! sends, the engine must never panic, must only send well-formed blocks
//! that fit IFSC, must end within its step budget, and must never return
//! more than the maximum response.
//!
//! Input: 5 bytes of set-up (EDC, IFSC, IFSD, what to run, maximum
//! response), then per exchange an APDU length byte and card records. A
//! record is a tag byte and a length byte; the tag's top two bits say what
//! follows: 0 raw bytes, 1 bytes to which the harness appends the EDC, 2 a
//! PCB and an INF around which the harness builds the prologue (NAD 0,
//! LEN) and the EDC, 3 a link error instead of a block (no bytes). Between
//! exchanges a length byte and data make a secure-PIN block, whose answer
//! is the next record.
#![no_main]
use ccid::iso7816::t1::block::{decode, push_edc, Block};
use ccid::iso7816::t1::engine::step_budget;
use ccid::iso7816::t1::{Edc, LinkError, T1Engine, T1Error, T1Params, T1Step};
use libfuzzer_sys::fuzz_target;

enum Rx {
    Block(Vec<u8>),
    Link(LinkError),
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn record(&mut self, edc: Edc) -> Option<Rx> {
        let tag = self.byte()?;
        let len = usize::from(self.byte()?);
        Some(match tag >> 6 {
            0 => Rx::Block(self.take(len).to_vec()),
            1 => {
                let mut b = self.take(len).to_vec();
                push_edc(&mut b, edc);
                Rx::Block(b)
            }
            2 => {
                let pcb = self.byte()?;
                let inf = self.take(len.min(254));
                let mut b = vec![0, pcb, inf.len() as u8];
                b.extend_from_slice(inf);
                push_edc(&mut b, edc);
                Rx::Block(b)
            }
            _ => Rx::Link(match tag % 3 {
                0 => LinkError::Timeout,
                1 => LinkError::Parity,
                _ => LinkError::Other,
            }),
        })
    }
}

/// Checks a block the engine wants to send.
fn check_sent(e: &T1Engine, block: &[u8], edc: Edc) {
    let (nad, b) = decode(block, edc).expect("the engine sends valid blocks");
    assert_eq!(nad, 0);
    if let Block::I { inf, .. } = &b {
        assert!(
            inf.len() <= usize::from(e.ifsc()),
            "I-block longer than IFSC"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let (Some(cfg), Some(ifsc), Some(ifsd), Some(what), Some(max)) =
        (inp.byte(), inp.byte(), inp.byte(), inp.byte(), inp.byte())
    else {
        return;
    };
    let edc = if cfg & 1 != 0 { Edc::Crc } else { Edc::Lrc };
    let params = T1Params {
        ifsc,
        ifsd,
        edc,
        nad: 0,
    };
    let mut e = T1Engine::new(params);
    assert!((1..=254).contains(&e.ifsc()) && (1..=254).contains(&e.ifsd()));
    let max_response = if max == 0 {
        65_538
    } else {
        usize::from(max) * 4
    };
    e.set_max_response(max_response);

    // Several exchanges in a row, as long as the input lasts.
    for round in 0..8 {
        let apdu_len = usize::from(inp.byte().unwrap_or(0)) * 3 + 1;
        let apdu: Vec<u8> = (0..apdu_len).map(|i| i as u8).collect();
        let started = match (what >> (2 * (round % 4))) & 3 {
            0 | 3 => e.transceive_start(&apdu),
            1 => e.negotiate_ifsd(ifsd),
            _ => e.resynchronize(),
        };
        let mut step = match started {
            Ok(s) => s,
            Err(T1Error::Dead) => {
                assert!(e.is_dead());
                e.reset();
                continue;
            }
            Err(T1Error::InvalidIfs(_)) => return,
            Err(err) => panic!("start failed: {err}"),
        };
        let budget = step_budget(apdu_len, max_response);
        let mut steps = 0u64;
        loop {
            match step {
                T1Step::Send { ref block, .. } => check_sent(&e, block, edc),
                T1Step::Done { response } => {
                    assert!(response.len() <= max_response, "response over the maximum");
                    assert!(!e.in_exchange());
                    break;
                }
            }
            let Some(rx) = inp.record(edc) else {
                e.abandon();
                assert!(!e.in_exchange());
                return;
            };
            steps += 1;
            let r = match &rx {
                Rx::Block(b) => e.on_response(Ok(b)),
                Rx::Link(l) => e.on_response(Err(*l)),
            };
            match r {
                Ok(s) => step = s,
                Err(err) => {
                    assert!(!e.in_exchange(), "exchange still running after {err}");
                    assert!(e.is_dead() || e.needs_resync());
                    if let T1Error::ResponseTooLong { max } = err {
                        assert_eq!(max, max_response);
                    }
                    break;
                }
            }
            assert!(steps <= budget + 1, "exchange went past its step budget");
        }
        // A secure-PIN block between exchanges.
        if let Some(n) = inp.byte() {
            let pin = inp.take(usize::from(n));
            if let Ok(block) = e.wrap_secure_pin(pin) {
                check_sent(&e, &block, edc);
                if let Some(Rx::Block(b)) = inp.record(edc) {
                    let _ = e.unwrap_secure_answer(&b);
                }
                e.cancel_secure();
            }
        }
    }
});
