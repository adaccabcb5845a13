//! How long a virtual reader takes: USB latency, card activation, card
//! processing and the characters on the card's line at the negotiated
//! rate. The model only computes durations; the transport frontend waits
//! them out, and the default is no delay at all (unit tests).
#![forbid(unsafe_code)]

use ccid::iso7816::params::Timing;
use std::time::Duration;

/// The time model of a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeModel {
    /// Whether any delay applies. When false every answer is ready at once.
    pub enabled: bool,
    /// Bus latency added to every answer (one bulk-OUT and one bulk-IN
    /// transfer on a full-speed bus: about a millisecond).
    pub usb_latency: Duration,
    /// Card activation before the first ATR character.
    pub activation: Duration,
    /// etu per character on the card's line (10 data etu plus the guard
    /// time: 12 at the minimum).
    pub etu_per_char: u32,
    /// Interval between repeated time-extension frames of an endless
    /// time extension.
    pub time_extension_interval: Duration,
}

impl TimeModel {
    /// No delays (the default).
    pub const fn zero() -> Self {
        TimeModel {
            enabled: false,
            usb_latency: Duration::from_millis(1),
            activation: Duration::from_millis(5),
            etu_per_char: 12,
            time_extension_interval: Duration::from_millis(100),
        }
    }

    /// Delays like a real full-speed reader.
    pub const fn realistic() -> Self {
        TimeModel {
            enabled: true,
            ..Self::zero()
        }
    }

    /// Only the card's processing time counts (no bus, activation or line
    /// time): for benchmarks with a fixed time per APDU.
    pub const fn card_only() -> Self {
        TimeModel {
            enabled: true,
            usb_latency: Duration::ZERO,
            activation: Duration::ZERO,
            etu_per_char: 0,
            ..Self::zero()
        }
    }

    /// The time `chars` characters take at Fi/Di `fi_di` and `clock_khz`.
    pub fn chars(&self, chars: usize, fi_di: u8, clock_khz: u32) -> Duration {
        if !self.enabled || chars == 0 {
            return Duration::ZERO;
        }
        let etu_ns = Timing {
            fi_di,
            clock_khz,
            ..Timing::default()
        }
        .etu_ns()
        .unwrap_or(93_000);
        let n = (chars as u64)
            .saturating_mul(u64::from(self.etu_per_char))
            .saturating_mul(etu_ns);
        Duration::from_nanos(n)
    }

    /// The delay of an answer: bus latency, card time and line time.
    pub fn answer(&self, card: Duration, line: Duration) -> Duration {
        if !self.enabled {
            return Duration::ZERO;
        }
        self.usb_latency + card + line
    }

    /// The T=1 block waiting time at these parameters (how long a reader
    /// waits for a silent card before reporting it mute).
    pub fn bwt(&self, fi_di: u8, clock_khz: u32, bwi: u8) -> Duration {
        if !self.enabled {
            return Duration::ZERO;
        }
        let ms = Timing {
            fi_di,
            clock_khz,
            bwi,
            ..Timing::default()
        }
        .t1_bwt_ms()
        .unwrap_or(1_600);
        Duration::from_millis(ms)
    }

    /// The interval between endless time-extension frames (0 when delays
    /// are off: the frames then alternate fairly with other answers).
    pub fn wtx_interval(&self) -> Duration {
        if self.enabled {
            self.time_extension_interval
        } else {
            Duration::ZERO
        }
    }
}

impl Default for TimeModel {
    fn default() -> Self {
        Self::zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_model_has_no_delay() {
        let t = TimeModel::zero();
        assert_eq!(t.chars(1000, 0x11, 4000), Duration::ZERO);
        assert_eq!(
            t.answer(Duration::from_secs(1), Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(t.bwt(0x11, 4000, 4), Duration::ZERO);
    }

    #[test]
    fn card_only_counts_the_card() {
        let t = TimeModel::card_only();
        assert_eq!(t.chars(1000, 0x11, 4000), Duration::ZERO);
        let five = Duration::from_millis(5);
        assert_eq!(t.answer(five, t.chars(300, 0x11, 4000)), five);
    }

    #[test]
    fn realistic_line_time() {
        let t = TimeModel::realistic();
        // 372 / 4 MHz = 93 µs per etu, 12 etu per character.
        let d = t.chars(10, 0x11, 4000);
        assert_eq!(d, Duration::from_nanos(10 * 12 * 93_000));
        // Fi/Di 96 (512/32) is 23.25 times faster.
        assert!(t.chars(10, 0x96, 4000) < d / 20);
        assert_eq!(
            t.answer(Duration::from_millis(5), Duration::ZERO),
            Duration::from_millis(6)
        );
        assert!(t.bwt(0x11, 4000, 4) > Duration::from_millis(1000));
    }
}
