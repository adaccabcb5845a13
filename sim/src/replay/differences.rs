//! Deliberate differences between this driver and libccid that a replay
//! of a libccid trace shows. Each has a stable id; `docs/replay-differences.md`
//! explains each one.

use super::plan::{Op, Silence, StepKind};
use ccid::proto::message::HEADER_LEN;

/// A documented, deliberate difference.
#[derive(Debug, PartialEq, Eq)]
pub struct Difference {
    /// Stable identifier printed in replay reports.
    pub id: &'static str,
    /// One line saying what differs.
    pub summary: &'static str,
}

/// libccid sends GetSlotStatus up to three times when it opens a reader,
/// even after an answer; this driver stops at the first answer.
pub const WARM_UP_ONCE: Difference = Difference {
    id: "warm-up-once",
    summary: "opening a reader sends one GetSlotStatus once the reader answers; libccid sends further ones",
};

/// libccid asks readers with Gemalto's vendor ID for their firmware
/// features with an Escape at open.
pub const GEMALTO_FIRMWARE_FEATURES: Difference = Difference {
    id: "gemalto-firmware-features",
    summary: "Escape GET_FIRMWARE_FEATURES (6A) at open is tied to the reader identity: present where the replayed descriptor is Gemalto's (08E6) and the recording's reader was not, or the other way round",
};

/// libccid asks Gemalto readers for their firmware version (Escape 02)
/// while building FEATURE_GET_TLV_PROPERTIES.
pub const GEMALTO_FIRMWARE_ID: Difference = Difference {
    id: "gemalto-firmware-id",
    summary:
        "GET_TLV_PROPERTIES is answered from the descriptor, without an Escape 02 to the reader",
};

/// One IccPowerOff per power-down where the recording shows two.
pub const POWER_OFF_ONCE: Difference = Difference {
    id: "power-off-once",
    summary: "a power-down sends one IccPowerOff",
};

/// Every command gets the next bSeq, where the recording host reused one.
pub const BSEQ_PER_COMMAND: Difference = Difference {
    id: "bseq-per-command",
    summary: "each command carries the next bSeq; the recording host repeated a bSeq",
};

/// Zero-length bulk-IN transfers are skipped, not taken as answers.
pub const ZLP_SKIPPED: Difference = Difference {
    id: "zlp-skipped",
    summary: "a zero-length bulk-IN transfer is skipped and the read repeated",
};

/// Answers are tied to commands by bSeq, XfrBlock answers included.
pub const ANSWER_BY_BSEQ: Difference = Difference {
    id: "answer-by-bseq",
    summary: "every answer is matched to its command by bSeq; a stale answer is dropped",
};

/// Time extensions are waited out for every command.
pub const TIME_EXTENSION_WAITED: Difference = Difference {
    id: "time-extension-waited",
    summary: "a time-extension request is waited out whatever the command, power-on included",
};

/// No I/O to a reader known to be gone.
pub const NO_IO_WHEN_GONE: Difference = Difference {
    id: "no-io-when-gone",
    summary: "once a transfer failed with 'no device', nothing more is written to that reader",
};

/// Every documented difference.
pub const ALL: &[&Difference] = &[
    &RECORDING_MALFORMED,
    &HOST_BWI,
    &EXCERPT_T1_STATE,
    &PPS_CHOICE,
    &WARM_UP_ONCE,
    &GEMALTO_FIRMWARE_FEATURES,
    &GEMALTO_FIRMWARE_ID,
    &POWER_OFF_ONCE,
    &BSEQ_PER_COMMAND,
    &ZLP_SKIPPED,
    &ANSWER_BY_BSEQ,
    &TIME_EXTENSION_WAITED,
    &NO_IO_WHEN_GONE,
];

/// The recording holds a frame that is not a well-formed CCID message
/// (the recording tool cut or mangled it); the driver's frame is compared
/// against something no reader received.
pub const RECORDING_MALFORMED: Difference = Difference {
    id: "recording-malformed",
    summary: "the recorded frame is not a well-formed CCID message (dwLength and data disagree)",
};

/// Another host program set bBWI on XfrBlock without a WTX request.
pub const HOST_BWI: Difference = Difference {
    id: "host-bwi",
    summary: "the recording host sets bBWI in XfrBlock; the driver sends 0 unless the card asked for more time (WTX)",
};

/// The excerpt starts inside a T=1 session: the recorded N(S)/N(R) come
/// from exchanges the excerpt does not show.
pub const EXCERPT_T1_STATE: Difference = Difference {
    id: "excerpt-t1-state",
    summary: "the excerpt starts inside a T=1 session: the recorded block sequence numbers continue exchanges not in the trace, the driver's start from a power-up",
};

/// The recording host asked the card for other transmission parameters.
pub const PPS_CHOICE: Difference = Difference {
    id: "pps-choice",
    summary: "the recording host chose other PPS parameters; the driver asks for the card's TA1 within the reader's limits and, when the card confirms something else, stops as ISO 7816-3 §9 requires",
};

/// Explains a frame the driver sent that differs from the recorded one.
pub(crate) fn classify_differs(recorded: &[u8], sent: &[u8]) -> Option<&'static Difference> {
    let declared = recorded
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if recorded.len() < HEADER_LEN || declared != Some(recorded.len() - HEADER_LEN) {
        return Some(&RECORDING_MALFORMED);
    }
    if recorded.first() != sent.first() || recorded.first() != Some(&0x6F) {
        return None;
    }
    let rd = recorded.get(HEADER_LEN..).unwrap_or(&[]);
    let sd = sent.get(HEADER_LEN..).unwrap_or(&[]);
    if rd.first() == Some(&0xFF) && sd.first() == Some(&0xFF) {
        return Some(&PPS_CHOICE);
    }
    let same_but = |skip: &dyn Fn(usize) -> bool| {
        recorded.len() == sent.len()
            && recorded
                .iter()
                .zip(sent)
                .enumerate()
                .all(|(i, (a, b))| i == 6 || skip(i) || a == b)
    };
    if same_but(&|i| i == 7) {
        return Some(&HOST_BWI);
    }
    // T=1 blocks that differ in the PCB's sequence bits (and so in the EDC).
    let edc = rd.len().saturating_sub(1);
    if super::plan::t1_shaped(rd)
        && super::plan::t1_shaped(sd)
        && rd
            .get(1)
            .zip(sd.get(1))
            .is_some_and(|(a, b)| (a ^ b) & !0x50 == 0)
        && same_but(&|i| i == 7 || i == HEADER_LEN + 1 || i >= HEADER_LEN + edc)
    {
        return Some(&EXCERPT_T1_STATE);
    }
    None
}

/// The difference with this id.
pub fn by_id(id: &str) -> Option<&'static Difference> {
    ALL.iter().copied().find(|d| d.id == id)
}

/// Explains a recorded command the driver did not send during a step in
/// which it sent commands of the types `sent`.
pub(crate) fn classify_missing(
    kind: &StepKind,
    recorded: &[u8],
    silence: Silence,
    sent: &[u8],
) -> Option<&'static Difference> {
    if silence == Silence::Gone {
        return Some(&NO_IO_WHEN_GONE);
    }
    let t = *recorded.first()?;
    let data = recorded.get(HEADER_LEN..).unwrap_or(&[]);
    match (kind, t) {
        (StepKind::Open, 0x65) if sent.contains(&0x65) => Some(&WARM_UP_ONCE),
        (StepKind::Op(Op::SetProtocol { .. }), 0x61) if sent.contains(&0x6F) => Some(&PPS_CHOICE),
        (StepKind::Open, 0x6B) if data == [0x6A] => Some(&GEMALTO_FIRMWARE_FEATURES),
        (
            StepKind::Op(Op::Control {
                code: 0x4233_0012, ..
            }),
            0x6B,
        ) if data == [0x02] => Some(&GEMALTO_FIRMWARE_ID),
        (StepKind::Op(Op::PowerDown | Op::Close), 0x63) if sent.contains(&0x63) => {
            Some(&POWER_OFF_ONCE)
        }
        _ => None,
    }
}

/// Explains a command the driver sent that the recording lacks.
pub(crate) fn classify_extra(kind: &StepKind, sent: &[u8]) -> Option<&'static Difference> {
    let t = *sent.first()?;
    let data = sent.get(HEADER_LEN..).unwrap_or(&[]);
    match (kind, t) {
        // The recording's reader identity is not Gemalto's while the
        // descriptor the replay uses is: the driver asks for the firmware
        // features as it does for every 08E6 reader.
        (StepKind::Open, 0x6B) if data == [0x6A] => Some(&GEMALTO_FIRMWARE_FEATURES),
        _ => None,
    }
}

/// Explains a bSeq that does not follow the offset: the recording host
/// gave this command the same bSeq as the one before.
pub(crate) fn classify_seq(recorded: u8, previous: Option<u8>) -> Option<&'static Difference> {
    (previous == Some(recorded)).then_some(&BSEQ_PER_COMMAND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_found() {
        for d in ALL {
            assert_eq!(by_id(d.id), Some(*d));
            assert_eq!(ALL.iter().filter(|o| o.id == d.id).count(), 1);
        }
        assert!(by_id("nope").is_none());
    }

    const A: Silence = Silence::Answered;

    #[test]
    fn missing_frames() {
        let gsl = [0x65, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            classify_missing(&StepKind::Open, &gsl, A, &[0x65]),
            Some(&WARM_UP_ONCE)
        );
        assert_eq!(classify_missing(&StepKind::Open, &gsl, A, &[]), None);
        let esc = [0x6B, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0x6A];
        assert_eq!(
            classify_missing(&StepKind::Open, &esc, A, &[0x65]),
            Some(&GEMALTO_FIRMWARE_FEATURES)
        );
        let esc2 = [0x6B, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0x02];
        let tlv = StepKind::Op(Op::Control {
            code: 0x4233_0012,
            tx: Vec::new(),
        });
        assert_eq!(
            classify_missing(&tlv, &esc2, A, &[]),
            Some(&GEMALTO_FIRMWARE_ID)
        );
        assert_eq!(classify_missing(&tlv, &esc, A, &[]), None);
        let off = [0x63, 0, 0, 0, 0, 0, 9, 0, 0, 0];
        let pd = StepKind::Op(Op::PowerDown);
        assert_eq!(
            classify_missing(&pd, &off, A, &[0x63]),
            Some(&POWER_OFF_ONCE)
        );
        assert_eq!(classify_missing(&pd, &off, A, &[]), None);
        assert_eq!(
            classify_missing(&pd, &off, Silence::Gone, &[]),
            Some(&NO_IO_WHEN_GONE)
        );
        assert_eq!(classify_seq(0, Some(0)), Some(&BSEQ_PER_COMMAND));
        assert_eq!(classify_seq(1, Some(0)), None);
    }
}
