//! Fault injection for virtual readers, scripted per test.
//!
//! A [`FaultScript`] is a queue of [`FaultRule`]s. Each bulk command the
//! reader accepts (a valid slot, not answered 'slot busy') is matched
//! against the rules: every matching *persistent* rule applies, and so
//! does the first matching *counted* rule (one-shot by default), whose
//! count then drops; counted rules thus fire in the order they were
//! queued. Card-side faults ([`Fault::Card`]) are handed to the card of
//! the command's slot before the command is processed.
#![forbid(unsafe_code)]

use ccid::iso7816::t1::card::Fault as T1Fault;
use ccid::proto::message::{MessageType, SlotError};
use std::time::Duration;

/// One way a reader can misbehave, and the frame it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The bulk-IN endpoint stalls: the next bulk-IN read fails with
    /// `Pipe` instead of the answer, which is lost.
    Stall,
    /// The bulk-OUT endpoint stalls: writing the command fails with `Pipe`
    /// and the reader never sees it.
    StallOut,
    /// The reader processes the command but its answer is lost (nothing on
    /// bulk-IN; the slot is free again).
    Silence,
    /// The reader never finishes: no answer, and the slot stays busy until
    /// the host aborts (class request ABORT, then PC_to_RDR_Abort), after
    /// which the command is answered with bError CMD_ABORTED.
    Hang,
    /// The answer carries bSeq + delta.
    WrongSeq(u8),
    /// The answer carries this bSlot (use a value ≥ the slot count for an
    /// impossible slot).
    WrongSlot(u8),
    /// A copy of the answer readdressed to bSlot `slot` (unchanged when
    /// `None`; a value ≥ the slot count for an impossible slot) with bSeq +
    /// `seq_delta` arrives just before the intact answer.
    StrayCopy {
        /// bSlot of the copy.
        slot: Option<u8>,
        /// Added to bSeq in the copy.
        seq_delta: u8,
    },
    /// The intact answer arrives twice.
    Duplicate,
    /// The answer is cut to this many bytes (fewer than 10: no header).
    ShortFrame(usize),
    /// The answer's dwLength claims this many bytes more than it carries.
    LongLength(u32),
    /// The answer is preceded by this many time-extension frames
    /// (bStatus 0x80, bError = multiplier).
    TimeExtension {
        /// Frames before the answer.
        count: u8,
        /// bError of each frame (the multiplier).
        multiplier: u8,
    },
    /// Time-extension frames forever (until the host aborts).
    EndlessTimeExtension {
        /// bError of each frame.
        multiplier: u8,
    },
    /// Extended-APDU response chaining never ends: the answer starts a
    /// chain (bChainParameter 1) and every 0x10 continuation gets another
    /// chunk with bChainParameter 3.
    EndlessChaining,
    /// The command fails with this bError (e.g. 0xFD parity, 0xFE mute,
    /// 0xFB hardware error); bStatus keeps the slot's ICC status.
    Fail(u8),
    /// A RDR_to_PC_HardwareError with this code on the interrupt
    /// endpoint, and the command fails with bError HW_ERROR.
    HardwareError(u8),
    /// A zero-length packet on bulk-IN before the answer.
    StrayZlp,
    /// A zero-length packet after the answer when its length is a
    /// multiple of the bulk-IN wMaxPacketSize (as some readers do).
    ZlpAfterFullPacket,
    /// The card is pulled out before the command reaches it: the command
    /// fails (ICC absent, bError ICC_MUTE) and a NotifySlotChange follows.
    CardRemoved,
    /// The device is unplugged while the command is in transfer: no
    /// answer, and every later transport call fails with NoDevice.
    Unplug,
    /// The answer is delayed this much more (a slow reader).
    Delay(Duration),
    /// A fault for the card's T=1 responder (EDC error, lost block, wrong
    /// N(S), S(ABORT), S(WTX), S(IFS)).
    Card(T1Fault),
}

impl Fault {
    /// Parity error during the exchange (bError 0xFD).
    pub const PARITY: Fault = Fault::Fail(SlotError::XFR_PARITY_ERROR.0);
    /// Card mute (bError 0xFE with the card still present).
    pub const MUTE: Fault = Fault::Fail(SlotError::ICC_MUTE.0);
    /// Hardware error (bError 0xFB).
    pub const HW_ERROR: Fault = Fault::Fail(SlotError::HW_ERROR.0);
}

/// How many times a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Fires this many more times, then disappears.
    Times(u32),
    /// Fires for every matching command.
    Always,
}

/// A fault and the commands it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// The fault.
    pub fault: Fault,
    /// Only commands for this slot (any slot when `None`).
    pub slot: Option<u8>,
    /// Only commands of this type (any type when `None`).
    pub message_type: Option<MessageType>,
    /// How often.
    pub repeat: Repeat,
}

impl FaultRule {
    /// A one-shot rule for the next command of any type on any slot.
    pub fn once(fault: Fault) -> Self {
        FaultRule {
            fault,
            slot: None,
            message_type: None,
            repeat: Repeat::Times(1),
        }
    }

    /// A persistent rule for every command.
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            repeat: Repeat::Always,
            ..Self::once(fault)
        }
    }

    /// Fires `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.repeat = Repeat::Times(n);
        self
    }

    /// Only for commands to `slot`.
    pub fn on_slot(mut self, slot: u8) -> Self {
        self.slot = Some(slot);
        self
    }

    /// Only for commands of type `t` (e.g. `MessageType::PC_TO_RDR_XFR_BLOCK`).
    pub fn on(mut self, t: MessageType) -> Self {
        self.message_type = Some(t);
        self
    }

    fn matches(&self, slot: u8, t: MessageType) -> bool {
        self.slot.is_none_or(|s| s == slot) && self.message_type.is_none_or(|m| m == t)
    }
}

/// The queue of rules of one reader.
#[derive(Debug, Clone, Default)]
pub struct FaultScript {
    rules: Vec<FaultRule>,
    fired: u64,
}

impl FaultScript {
    /// Appends a rule.
    pub fn push(&mut self, rule: FaultRule) {
        if rule.repeat != Repeat::Times(0) {
            self.rules.push(rule);
        }
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Rules still queued.
    pub fn pending(&self) -> usize {
        self.rules.len()
    }

    /// Faults applied so far.
    pub fn fired(&self) -> u64 {
        self.fired
    }

    /// The faults for a command to `slot` of type `t`: every matching
    /// persistent rule, then the first matching counted rule.
    pub fn take(&mut self, slot: u8, t: MessageType) -> Vec<Fault> {
        let mut out: Vec<Fault> = self
            .rules
            .iter()
            .filter(|r| r.repeat == Repeat::Always && r.matches(slot, t))
            .map(|r| r.fault)
            .collect();
        let pos = self
            .rules
            .iter()
            .position(|r| matches!(r.repeat, Repeat::Times(_)) && r.matches(slot, t));
        if let Some(i) = pos {
            if let Some(r) = self.rules.get_mut(i) {
                out.push(r.fault);
                if let Repeat::Times(n) = &mut r.repeat {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.rules.remove(i);
                    }
                }
            }
        }
        self.fired += out.len() as u64;
        out
    }

    /// Whether a persistent rule for `fault` exists (for faults that act
    /// outside commands, such as [`Fault::ZlpAfterFullPacket`]).
    pub fn has_persistent(&self, fault: Fault) -> bool {
        self.rules
            .iter()
            .any(|r| r.repeat == Repeat::Always && r.fault == fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XFR: MessageType = MessageType::PC_TO_RDR_XFR_BLOCK;
    const STATUS: MessageType = MessageType::PC_TO_RDR_GET_SLOT_STATUS;

    #[test]
    fn one_shot_rules_fire_in_order_persistent_ones_always() {
        let mut s = FaultScript::default();
        s.push(FaultRule::once(Fault::Silence));
        s.push(FaultRule::once(Fault::WrongSeq(1)));
        s.push(FaultRule::always(Fault::StrayZlp).on_slot(1));
        assert_eq!(s.take(0, XFR), vec![Fault::Silence]);
        assert_eq!(s.take(1, XFR), vec![Fault::StrayZlp, Fault::WrongSeq(1)]);
        assert_eq!(s.take(1, XFR), vec![Fault::StrayZlp]);
        assert_eq!(s.take(0, XFR), Vec::<Fault>::new());
        assert_eq!(s.pending(), 1);
        assert_eq!(s.fired(), 4);
    }

    #[test]
    fn filters_and_counts() {
        let mut s = FaultScript::default();
        s.push(FaultRule::once(Fault::PARITY).on(XFR).times(2));
        s.push(FaultRule::once(Fault::MUTE).times(0));
        assert_eq!(s.pending(), 1);
        assert!(s.take(0, STATUS).is_empty());
        assert_eq!(s.take(0, XFR), vec![Fault::Fail(0xFD)]);
        assert_eq!(s.take(3, XFR), vec![Fault::Fail(0xFD)]);
        assert!(s.take(0, XFR).is_empty());
        s.push(FaultRule::always(Fault::ZlpAfterFullPacket));
        assert!(s.has_persistent(Fault::ZlpAfterFullPacket));
        s.clear();
        assert_eq!(s.pending(), 0);
    }
}
