//! Transmission parameters: the Fi/Di tables (ISO/IEC 7816-3:2006 §8.3,
//! tables 7 and 8), baud rates, data-rate table matching, and the waiting
//! times of T=0 (§10.2) and T=1 (§11.4.3) turned into millisecond timeouts.
//!
//! Everything is integer arithmetic: each time is kept as an exact fraction
//! of milliseconds whose denominator is `D × f` (f in kHz), and only the
//! final figure is rounded, upwards, to whole milliseconds. Sums and
//! products are done in `u128` and saturate to `u64`, so no input can
//! overflow or panic. Every timeout is finally capped by the caller's
//! `cap_ms`.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

/// Table 7: clock rate conversion integer Fi for each FI value; `None` is RFU.
pub const FI_TABLE: [Option<u16>; 16] = [
    Some(372),
    Some(372),
    Some(558),
    Some(744),
    Some(1116),
    Some(1488),
    Some(1860),
    None,
    None,
    Some(512),
    Some(768),
    Some(1024),
    Some(1536),
    Some(2048),
    None,
    None,
];

/// Table 7: maximum clock frequency f(max) in kHz for each FI value.
pub const FMAX_KHZ_TABLE: [Option<u32>; 16] = [
    Some(4_000),
    Some(5_000),
    Some(6_000),
    Some(8_000),
    Some(12_000),
    Some(16_000),
    Some(20_000),
    None,
    None,
    Some(5_000),
    Some(7_500),
    Some(10_000),
    Some(15_000),
    Some(20_000),
    None,
    None,
];

/// Table 8: baud rate adjustment integer Di for each DI value; `None` is RFU.
pub const DI_TABLE: [Option<u8>; 16] = [
    None,
    Some(1),
    Some(2),
    Some(4),
    Some(8),
    Some(16),
    Some(32),
    Some(64),
    Some(12),
    Some(20),
    None,
    None,
    None,
    None,
    None,
    None,
];

/// The default `FI DI` byte (Fd = 372, Dd = 1, §8.3), in the TA1 /
/// `bmFindexDindex` format.
pub const DEFAULT_FI_DI: u8 = 0x11;

/// Default Fi (§8.3).
pub const DEFAULT_FI: u16 = 372;

/// Default Di (§8.3).
pub const DEFAULT_DI: u8 = 1;

/// The timeout used when F, D or the clock is not an ISO value (as libccid
/// does): 60 seconds.
pub const NON_ISO_TIMEOUT_MS: u64 = 60_000;

/// The floor of every T=0 exchange timeout (reference-compatible), in ms.
pub const T0_MIN_TIMEOUT_MS: u64 = 3_000;

/// Margin added to T=1 timeouts so the reader can report its own timeout
/// before the host gives up, in ms.
pub const T1_READER_MARGIN_MS: u64 = 1_000;

/// Fi for an FI value (high nibble of TA1), `None` if RFU or out of range.
pub fn fi(index: u8) -> Option<u16> {
    FI_TABLE.get(usize::from(index)).copied().flatten()
}

/// Di for a DI value (low nibble of TA1), `None` if RFU or out of range.
pub fn di(index: u8) -> Option<u8> {
    DI_TABLE.get(usize::from(index)).copied().flatten()
}

/// f(max) in kHz for an FI value, `None` if RFU or out of range.
pub fn fmax_khz(index: u8) -> Option<u32> {
    FMAX_KHZ_TABLE.get(usize::from(index)).copied().flatten()
}

/// `(Fi, Di)` for a TA1-format byte (`FI` in the high nibble, `DI` in the
/// low nibble), `None` if either is RFU.
pub fn fi_di_values(fi_di: u8) -> Option<(u16, u8)> {
    Some((fi(fi_di >> 4)?, di(fi_di & 0x0F)?))
}

/// The card's bit rate in bits per second, `1000 × f × D / F` with `f` in
/// kHz, rounded down. Zero when `fi` or `di` is zero. Saturates at
/// `u32::MAX`.
pub fn baud_rate(clock_khz: u32, fi: u16, di: u8) -> u32 {
    if fi == 0 || di == 0 {
        return 0;
    }
    let r = 1000u128 * u128::from(clock_khz) * u128::from(di) / u128::from(fi);
    u32::try_from(r).unwrap_or(u32::MAX)
}

/// The entry of a reader's data-rate table (`GET_DATA_RATES`) matching
/// `rate` within ±2 bps, the tolerance libccid uses to absorb rounding
/// differences between the reader's table and `1000 × f × D / F`.
pub fn find_data_rate(rates: &[u32], rate: u32) -> Option<u32> {
    rates.iter().copied().find(|&r| r.abs_diff(rate) <= 2)
}

/// Converts a `u128` to `u64`, saturating.
fn sat(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Divides rounding up; `den` is never zero here.
fn ceil_div(num: u128, den: u128) -> u128 {
    num.div_ceil(den.max(1))
}

/// The parameters the waiting times depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timing {
    /// The negotiated `FI DI` byte (TA1 format, `bmFindexDindex`).
    pub fi_di: u8,
    /// The clock frequency given to the card, in kHz (`dwDefaultClock`).
    pub clock_khz: u32,
    /// Extra guard time integer N (TC1).
    pub n: u8,
    /// T=0 waiting time integer WI (TC2, default 10).
    pub wi: u8,
    /// T=1 block waiting time integer BWI (default 4). Values 10..=15 are
    /// RFU; they are used as given, which only lengthens the timeout.
    pub bwi: u8,
    /// T=1 character waiting time integer CWI (default 13).
    pub cwi: u8,
}

impl Default for Timing {
    /// Fd/Dd, 4 MHz, N = 0, WI = 10, BWI = 4, CWI = 13.
    fn default() -> Self {
        Timing {
            fi_di: DEFAULT_FI_DI,
            clock_khz: 4_000,
            n: 0,
            wi: 10,
            bwi: 4,
            cwi: 13,
        }
    }
}

/// Times as exact fractions `num / den` ms sharing `den = D × f`.
struct Exact {
    den: u128,
    f: u128,
    d: u128,
}

impl Exact {
    fn new(t: &Timing) -> Option<Self> {
        let (f, d) = fi_di_values(t.fi_di)?;
        if t.clock_khz == 0 {
            return None;
        }
        let d = u128::from(d);
        Some(Exact {
            den: d * u128::from(t.clock_khz),
            f: u128::from(f),
            d,
        })
    }

    /// 1 etu = F / (D × f).
    fn etu(&self) -> u128 {
        self.f
    }

    /// EGT as libccid counts it: 12 etu + N × F / (D × f) (§8.3, TC1).
    fn egt(&self, n: u8) -> u128 {
        self.f * (12 + u128::from(n))
    }

    /// T=0 WT = WI × 960 × Fi / f (§10.2).
    fn wwt(&self, wi: u8) -> u128 {
        960 * u128::from(wi) * self.f * self.d
    }

    /// T=1 BWT = 11 etu + 2^BWI × 960 × Fd / f (§11.4.3).
    fn bwt(&self, bwi: u8) -> u128 {
        11 * self.etu() + (1u128 << bwi.min(31)) * 960 * 372 * self.d
    }

    /// T=1 CWT = (11 + 2^CWI) etu (§11.4.3).
    fn cwt(&self, cwi: u8) -> u128 {
        (11 + (1u128 << cwi.min(31))) * self.etu()
    }

    fn ms(&self, num: u128) -> u128 {
        ceil_div(num, self.den)
    }
}

impl Timing {
    /// The elementary time unit in nanoseconds, `None` for non-ISO F/D or a
    /// zero clock.
    pub fn etu_ns(&self) -> Option<u64> {
        let e = Exact::new(self)?;
        Some(sat(ceil_div(e.etu() * 1_000_000, e.den)))
    }

    /// The T=0 work waiting time WT = WI × 960 × Fi / f (§10.2), in ms
    /// rounded up; `None` for non-ISO F/D or a zero clock.
    pub fn t0_wwt_ms(&self) -> Option<u64> {
        let e = Exact::new(self)?;
        Some(sat(e.ms(e.wwt(self.wi))))
    }

    /// The timeout for one T=0 exchange, in ms, capped at `cap_ms`:
    /// `max(3000, 261 × EGT + 6 × WWT, 5 × EGT + 260 × WWT)`, the figure
    /// libccid uses, where `EGT = 12 etu + N × F / (D × f)`.
    /// Non-ISO F or D, or a zero clock: [`NON_ISO_TIMEOUT_MS`].
    ///
    /// Typical: Fd/Dd, WI = 10, N = 0 at 4 MHz gives 232 134 ms (260 WWT of
    /// 892.8 ms). Worst case: F = 2048, D = 1, WI = 255, N = 254 at
    /// 3.58 MHz gives 36 411 684 ms (about 10 hours), which is why the cap
    /// exists.
    pub fn t0_timeout_ms(&self, cap_ms: u64) -> u64 {
        let Some(e) = Exact::new(self) else {
            return NON_ISO_TIMEOUT_MS.min(cap_ms);
        };
        let egt = e.egt(self.n);
        let wwt = e.wwt(self.wi);
        let num = (u128::from(T0_MIN_TIMEOUT_MS) * e.den)
            .max(261 * egt + 6 * wwt)
            .max(5 * egt + 260 * wwt);
        sat(e.ms(num)).min(cap_ms)
    }

    /// The T=1 block waiting time BWT = 11 etu + 2^BWI × 960 × 372 / f
    /// (§11.4.3), in ms rounded up; `None` for non-ISO F/D or a zero clock.
    pub fn t1_bwt_ms(&self) -> Option<u64> {
        let e = Exact::new(self)?;
        Some(sat(e.ms(e.bwt(self.bwi))))
    }

    /// The T=1 character waiting time CWT = (11 + 2^CWI) etu (§11.4.3), in
    /// ms rounded up; `None` for non-ISO F/D or a zero clock.
    pub fn t1_cwt_ms(&self) -> Option<u64> {
        let e = Exact::new(self)?;
        Some(sat(e.ms(e.cwt(self.cwi))))
    }

    /// The timeout for receiving one T=1 block of at most `block_len`
    /// characters after sending a block: `wtx × BWT + block_len × CWT`
    /// plus [`T1_READER_MARGIN_MS`], capped at `cap_ms`. `wtx` is the
    /// multiplier granted by the last S(WTX response) (0 and 1 mean none).
    /// Non-ISO F or D, or a zero clock: [`NON_ISO_TIMEOUT_MS`].
    ///
    /// Typical: Fd/Dd, BWI = 4, CWI = 13 at 4 MHz, a 259-byte block (IFSD
    /// 254, CRC) gives 199 018 ms, dominated by CWI = 13 (763 ms per
    /// character). With CWI = 5: 2 429 ms. Worst case: F = 2048, D = 1,
    /// BWI = CWI = 15, WTX = 255 at 3.58 MHz, 259 bytes: 838 389 368 ms.
    pub fn t1_block_timeout_ms(&self, block_len: usize, wtx: u8, cap_ms: u64) -> u64 {
        let Some(e) = Exact::new(self) else {
            return NON_ISO_TIMEOUT_MS.min(cap_ms);
        };
        let num = u128::from(wtx.max(1)) * e.bwt(self.bwi)
            + u128::try_from(block_len)
                .unwrap_or(u128::MAX / 4)
                .min(1 << 32)
                * e.cwt(self.cwi);
        sat(e.ms(num) + u128::from(T1_READER_MARGIN_MS)).min(cap_ms)
    }

    /// The reference-compatible timeout for a whole T=1 exchange, in ms:
    /// `260 × EGT + BWT + 260 × CWT + 1000`, capped at `cap_ms`.
    /// Non-ISO F or D, or a zero clock: [`NON_ISO_TIMEOUT_MS`].
    ///
    /// Typical: Fd/Dd, BWI = 4, CWI = 13, N = 0 at 4 MHz gives 201 069 ms.
    /// Worst case: F = 2048, D = 1, N = 254, BWI = CWI = 15 at 3.58 MHz
    /// gives 8 184 780 ms (about 2.3 hours).
    pub fn t1_timeout_ms(&self, cap_ms: u64) -> u64 {
        let Some(e) = Exact::new(self) else {
            return NON_ISO_TIMEOUT_MS.min(cap_ms);
        };
        let num = 260 * e.egt(self.n) + e.bwt(self.bwi) + 260 * e.cwt(self.cwi);
        sat(e.ms(num) + u128::from(T1_READER_MARGIN_MS)).min(cap_ms)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NO_CAP: u64 = u64::MAX;

    // ISO 7816-3:2006 §8.3 table 7 and table 8.
    #[test]
    fn tables() {
        assert_eq!(fi(0), Some(372));
        assert_eq!(fi(1), Some(372));
        assert_eq!(fi(6), Some(1860));
        assert_eq!(fi(7), None);
        assert_eq!(fi(8), None);
        assert_eq!(fi(9), Some(512));
        assert_eq!(fi(13), Some(2048));
        assert_eq!(fi(14), None);
        assert_eq!(fi(16), None);
        assert_eq!(fmax_khz(0), Some(4000));
        assert_eq!(fmax_khz(1), Some(5000));
        assert_eq!(fmax_khz(10), Some(7500));
        assert_eq!(fmax_khz(7), None);
        assert_eq!(di(0), None);
        assert_eq!(di(1), Some(1));
        assert_eq!(di(7), Some(64));
        assert_eq!(di(8), Some(12));
        assert_eq!(di(9), Some(20));
        assert_eq!(di(10), None);
        assert_eq!(fi_di_values(0x96), Some((512, 32)));
        assert_eq!(fi_di_values(0x11), Some((372, 1)));
        assert_eq!(fi_di_values(0x71), None);
        assert_eq!(fi_di_values(0x10), None);
    }

    // §7.1: the bit rate is D/F × f.
    #[test]
    fn baud_rates() {
        assert_eq!(baud_rate(4000, 372, 1), 10752);
        assert_eq!(baud_rate(4000, 512, 8), 62500);
        assert_eq!(baud_rate(3580, 372, 1), 9623);
        assert_eq!(baud_rate(4800, 372, 12), 154838);
        assert_eq!(baud_rate(4000, 0, 1), 0);
        assert_eq!(baud_rate(4000, 372, 0), 0);
        assert_eq!(baud_rate(u32::MAX, 372, 64), u32::MAX);
    }

    #[test]
    fn data_rate_matching_tolerates_two_bps() {
        let table = [10753, 21505, 43011, 125000];
        assert_eq!(find_data_rate(&table, 10752), Some(10753));
        assert_eq!(find_data_rate(&table, 10751), Some(10753));
        assert_eq!(find_data_rate(&table, 10750), None);
        assert_eq!(find_data_rate(&table, 125002), Some(125000));
        assert_eq!(find_data_rate(&table, 125003), None);
        assert_eq!(find_data_rate(&[], 9600), None);
    }

    fn timing(fi_di: u8, clock_khz: u32, n: u8, wi: u8, bwi: u8, cwi: u8) -> Timing {
        Timing {
            fi_di,
            clock_khz,
            n,
            wi,
            bwi,
            cwi,
        }
    }

    // §10.2: WT = WI × 960 × Fi / f.
    #[test]
    fn t0_waiting_time() {
        let t = timing(0x11, 4000, 0, 10, 4, 13);
        assert_eq!(t.t0_wwt_ms(), Some(893)); // 892.8 ms rounded up
        assert_eq!(t.etu_ns(), Some(93_000));
        // D does not change WT.
        assert_eq!(timing(0x18, 4000, 0, 10, 4, 13).t0_wwt_ms(), Some(893));
    }

    // §10.2 plus the reference formula max(3000, 261 EGT + 6 WWT, 5 EGT + 260 WWT).
    #[test]
    fn t0_timeouts() {
        assert_eq!(
            timing(0x11, 4000, 0, 10, 4, 13).t0_timeout_ms(NO_CAP),
            232_134
        );
        assert_eq!(
            timing(0x11, 3580, 0, 10, 4, 13).t0_timeout_ms(NO_CAP),
            259_368
        );
        assert_eq!(
            timing(0x94, 4000, 0, 10, 4, 13).t0_timeout_ms(NO_CAP),
            319_489
        );
        assert_eq!(
            timing(0x11, 4000, 255, 10, 4, 13).t0_timeout_ms(NO_CAP),
            232_253
        );
        // The 3000 ms floor.
        assert_eq!(
            timing(0x18, 20_000, 0, 0, 4, 13).t0_timeout_ms(NO_CAP),
            3000
        );
        // Documented worst case.
        assert_eq!(
            timing(0xD1, 3580, 254, 255, 4, 13).t0_timeout_ms(NO_CAP),
            36_411_684
        );
        assert_eq!(
            timing(0xD1, 4000, 254, 255, 4, 13).t0_timeout_ms(NO_CAP),
            32_588_457
        );
        // Cap.
        assert_eq!(
            timing(0xD1, 3580, 254, 255, 4, 13).t0_timeout_ms(600_000),
            600_000
        );
    }

    // Non-ISO F or D, or no clock: 60 s.
    #[test]
    fn non_iso_values_get_sixty_seconds() {
        for t in [
            timing(0x71, 4000, 0, 10, 4, 13),
            timing(0x10, 4000, 0, 10, 4, 13),
            timing(0x11, 0, 0, 10, 4, 13),
        ] {
            assert_eq!(t.t0_timeout_ms(NO_CAP), NON_ISO_TIMEOUT_MS);
            assert_eq!(t.t1_timeout_ms(NO_CAP), NON_ISO_TIMEOUT_MS);
            assert_eq!(t.t1_block_timeout_ms(10, 0, NO_CAP), NON_ISO_TIMEOUT_MS);
            assert_eq!(t.t1_timeout_ms(5000), 5000);
            assert_eq!(t.t0_wwt_ms(), None);
            assert_eq!(t.t1_bwt_ms(), None);
            assert_eq!(t.t1_cwt_ms(), None);
            assert_eq!(t.etu_ns(), None);
        }
    }

    // §11.4.3: BWT = 11 etu + 2^BWI × 960 × 372 / f; CWT = (11 + 2^CWI) etu.
    #[test]
    fn t1_waiting_times() {
        let t = timing(0x11, 4000, 0, 10, 4, 13);
        assert_eq!(t.t1_bwt_ms(), Some(1430)); // 1429.503
        assert_eq!(t.t1_cwt_ms(), Some(763)); // 762.879
        let t = timing(0x11, 4000, 0, 10, 7, 5);
        assert_eq!(t.t1_bwt_ms(), Some(11_429)); // 11428.863
        assert_eq!(t.t1_cwt_ms(), Some(4)); // 3.999
    }

    // Reference whole-exchange figure 260 EGT + BWT + 260 CWT + 1000.
    #[test]
    fn t1_exchange_timeouts() {
        assert_eq!(
            timing(0x11, 4000, 0, 10, 4, 13).t1_timeout_ms(NO_CAP),
            201_069
        );
        assert_eq!(
            timing(0x11, 3580, 0, 10, 4, 13).t1_timeout_ms(NO_CAP),
            224_540
        );
        assert_eq!(
            timing(0x11, 4000, 0, 10, 7, 5).t1_timeout_ms(NO_CAP),
            13_759
        );
        assert_eq!(timing(0x94, 4000, 2, 10, 4, 5).t1_timeout_ms(NO_CAP), 2_666);
        // Documented worst case.
        assert_eq!(
            timing(0xD1, 3580, 254, 10, 15, 15).t1_timeout_ms(NO_CAP),
            8_184_780
        );
        assert_eq!(
            timing(0xD1, 3580, 254, 10, 15, 15).t1_timeout_ms(90_000),
            90_000
        );
    }

    // Per-block figure: wtx × BWT + len × CWT + 1000.
    #[test]
    fn t1_block_timeouts() {
        let t = timing(0x11, 4000, 0, 10, 4, 13);
        // 1429.503 + 259 × 762.879 = 199015.164 → 199016 + 1000.
        assert_eq!(t.t1_block_timeout_ms(259, 0, NO_CAP), 200_016);
        let t = timing(0x11, 4000, 0, 10, 4, 5);
        // 1429.503 + 259 × 3.999 = 2465.244 → 2466 + 1000.
        assert_eq!(t.t1_block_timeout_ms(259, 1, NO_CAP), 3_466);
        // WTX multiplies BWT only: 3 × 1429.503 + 259 × 3.999.
        assert_eq!(t.t1_block_timeout_ms(259, 3, NO_CAP), 6_325);
        // Documented worst case.
        let t = timing(0xD1, 3580, 254, 10, 15, 15);
        assert_eq!(t.t1_block_timeout_ms(259, 255, NO_CAP), 838_389_368);
        assert_eq!(t.t1_block_timeout_ms(259, 255, 120_000), 120_000);
    }

    proptest! {
        // No parameter combination panics or overflows, and the cap holds.
        #[test]
        fn timeouts_never_panic(fi_di in any::<u8>(), clk in any::<u32>(), n in any::<u8>(),
                                wi in any::<u8>(), bwi in any::<u8>(), cwi in any::<u8>(),
                                len in any::<usize>(), wtx in any::<u8>(), cap in any::<u64>()) {
            let t = timing(fi_di, clk, n, wi, bwi, cwi);
            prop_assert!(t.t0_timeout_ms(cap) <= cap);
            prop_assert!(t.t1_timeout_ms(cap) <= cap);
            prop_assert!(t.t1_block_timeout_ms(len, wtx, cap) <= cap);
            let _ = (t.t0_wwt_ms(), t.t1_bwt_ms(), t.t1_cwt_ms(), t.etu_ns());
            let _ = baud_rate(clk, u16::from(n), wi);
        }

        // More WTX or more characters never shortens the block timeout.
        #[test]
        fn block_timeout_is_monotonic(fi_di in any::<u8>(), clk in 1u32..50_000, len in 0usize..300, wtx in 1u8..255) {
            let t = timing(fi_di, clk, 0, 10, 4, 5);
            prop_assert!(t.t1_block_timeout_ms(len, wtx, NO_CAP) <= t.t1_block_timeout_ms(len + 1, wtx, NO_CAP));
            prop_assert!(t.t1_block_timeout_ms(len, wtx, NO_CAP) <= t.t1_block_timeout_ms(len, wtx + 1, NO_CAP));
        }
    }
}
