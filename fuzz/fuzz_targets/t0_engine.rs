//! The character-level T=0 engine (ISO 7816-3 §10.3.3) fed whatever a
//! card returns: procedure bytes, data, status words, garbage. The engine
//! must never panic, never ask for zero bytes, end within its step budget
//! and never return more than the maximum response. The TPDU length check
//! runs on the same APDU.
//!
//! Input: an options byte, a maximum-response byte, an APDU length byte
//! and the APDU, then records: a tag byte whose top bit set means "exactly
//! the bytes the engine asked for, from the input", else the low 7 bits
//! are a length of raw bytes.
#![no_main]
use ccid::iso7816::t0::{check_tpdu, T0CharEngine, T0Error, T0Options, T0Step, NULL_ALLOWANCE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [opt, max, len, rest @ ..] = data else {
        return;
    };
    let (apdu, mut cardside) = rest.split_at(usize::from(*len).min(rest.len()));
    let max_message = u32::from(*max) * 8;
    if let Err(T0Error::TooLong { len, max }) = check_tpdu(apdu, max_message) {
        assert!(len > max);
    }
    let opts = T0Options {
        max_response: if *max == 0 {
            65_538
        } else {
            usize::from(*max) * 3
        },
        get_response: opt & 1 != 0,
        resend_on_6c: opt & 2 != 0,
    };
    let Ok((mut e, mut step)) = T0CharEngine::start(apdu, opts) else {
        return;
    };
    // The first step is the command header: CLA INS P1 P2 as in the APDU.
    match &step {
        T0Step::Send { bytes, .. } => assert_eq!(bytes.get(..4), apdu.get(..4)),
        T0Step::Done { .. } => panic!("done before sending anything"),
    }
    let budget = 64 + apdu.len() as u64 * 4 + opts.max_response as u64 * 4 + NULL_ALLOWANCE;
    let mut steps = 0u64;
    loop {
        let expect = match &step {
            T0Step::Send { expect, .. } => {
                assert!(*expect >= 1, "asked for no byte");
                assert!(*expect <= 257, "asked for more than a T=0 transfer holds");
                *expect
            }
            T0Step::Done { response } => {
                assert!(response.len() >= 2, "a response ends with SW1 SW2");
                assert!(response.len() <= opts.max_response);
                // Nothing more is accepted.
                assert_eq!(e.on_bytes(&[0x90, 0x00]), Err(T0Error::Finished));
                return;
            }
        };
        let Some((&tag, r)) = cardside.split_first() else {
            return;
        };
        let n = if tag & 0x80 != 0 {
            expect
        } else {
            usize::from(tag & 0x7F)
        };
        let (chunk, r) = r.split_at(n.min(r.len()));
        cardside = r;
        steps += 1;
        match e.on_bytes(chunk) {
            Ok(s) => step = s,
            Err(T0Error::Finished) => panic!("finished engine still running"),
            Err(_) => {
                assert_eq!(e.on_bytes(&[0x90, 0x00]), Err(T0Error::Finished));
                return;
            }
        }
        assert!(steps <= budget, "exchange went past its step budget");
    }
});
