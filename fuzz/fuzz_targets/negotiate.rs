//! The protocol-selection plan (PPS, SetParameters, timeouts, IFSD) from an
//! arbitrary ATR and class descriptor, with the reader's quirks resolved as
//! at open, then the card's PPS answer applied.
//!
//! Input: flags (bit 0 T=1, bits 1-3 PTS1-3 given, bit 4 rates table),
//! PTS1-3, VID, PID, ifdDriverOptions, the 54-byte descriptor, a rate count and rates, an
//! ATR length and the ATR, then the PPS answer.
#![no_main]
use ccid::config::DriverOptions;
use ccid::iso7816::atr::Atr;
use ccid::iso7816::negotiate::{self, NegotiateOptions, Protocol, ReaderCaps};
use ccid::proto::descriptor::CcidDescriptor;
use ccid::quirks;
use ccid::transport::UsbInfo;
use libfuzzer_sys::fuzz_target;

fn take<'a>(d: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if d.len() < n {
        return None;
    }
    let (a, b) = d.split_at(n);
    *d = b;
    Some(a)
}

fuzz_target!(|data: &[u8]| {
    let mut d = data;
    let Some(head) = take(&mut d, 9) else { return };
    let [flags, pts1, pts2, pts3, v0, v1, p0, p1, options] = head.try_into().unwrap();
    let Some(desc) = take(&mut d, 54) else { return };
    let Ok(desc) = CcidDescriptor::parse(desc) else {
        return;
    };
    let Some(&nrates) = d.first() else { return };
    d = &d[1..];
    let mut rates = Vec::new();
    for _ in 0..(nrates % 16) {
        let Some(r) = take(&mut d, 4) else { return };
        rates.push(u32::from_le_bytes(r.try_into().unwrap()));
    }
    let Some(&atr_len) = d.first() else { return };
    d = &d[1..];
    let Some(atr) = take(&mut d, usize::from(atr_len % 34)) else {
        return;
    };
    let Ok(atr) = Atr::parse(atr) else { return };
    let pps_answer = d;

    let info = UsbInfo {
        vendor_id: u16::from_le_bytes([v0, v1]),
        product_id: u16::from_le_bytes([p0, p1]),
        ccid_descriptor: desc.to_bytes().to_vec(),
        ..UsbInfo::default()
    };
    let resolved = quirks::resolve(
        &info,
        &desc,
        &rates,
        DriverOptions::from_bits_retain(u32::from(options)),
    );
    let (slot_desc, slot_rates) = resolved.slot_caps(0);
    let caps = ReaderCaps::from_descriptor(&slot_desc, slot_rates);
    let requested = if flags & 1 != 0 {
        Protocol::T1
    } else {
        Protocol::T0
    };
    let cap_ms = 1 + u64::from(flags >> 5) * 20_000;
    let base = NegotiateOptions {
        timeout_cap_ms: cap_ms,
        pts1: (flags & 2 != 0).then_some(pts1),
        pts2: (flags & 4 != 0).then_some(pts2),
        pts3: (flags & 8 != 0).then_some(pts3),
        ..NegotiateOptions::default()
    };
    let opts = resolved.negotiate_options(requested, base);
    let Ok(mut plan) = negotiate::plan(&atr, requested, &caps, &opts) else {
        return;
    };
    assert_eq!(plan.protocol, requested);
    assert!(plan.timeout_ms <= cap_ms, "timeout above its cap");
    assert_eq!(plan.pps.is_some(), plan.pps_request.is_some());
    if let Some((num, data)) = &plan.set_parameters {
        assert_eq!(*num, requested.number());
        assert_eq!(data.len(), if requested == Protocol::T1 { 7 } else { 5 });
        assert_eq!(data.first(), Some(&plan.fi_di));
    }
    if let Some(t1) = plan.t1 {
        assert!((1..=254).contains(&t1.ifsd), "IFSD {}", t1.ifsd);
    }
    assert_eq!(plan.t1.is_some(), requested == Protocol::T1);
    if let (Some(pps), Some(req)) = (plan.pps.clone(), plan.pps_request) {
        // The card echoing the request is accepted without changes.
        let mut echoed = plan.clone();
        echoed
            .apply_pps_answer(&pps)
            .expect("an echoed PPS is accepted");
        assert_eq!(echoed.fi_di, req.pps1.unwrap_or(0x11));
    }
    let before = plan.fi_di;
    if plan.apply_pps_answer(pps_answer).is_ok() {
        assert!(plan.fi_di == before || plan.fi_di == 0x11);
        assert!(plan.timeout_ms <= cap_ms, "timeout above its cap after PPS");
        if let Some((_, data)) = &plan.set_parameters {
            assert_eq!(data.first(), Some(&plan.fi_di));
        }
    }
});
