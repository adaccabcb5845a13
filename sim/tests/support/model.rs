//! Helpers shared by the model tests: readers at each level and CCID
//! frames built with `ccid::proto::message`.
#![allow(dead_code)]

use ccid::proto::descriptor::{CcidDescriptor, ExchangeLevel};
use ccid::proto::message::{Command, MessageType, Response};
use ccid_sim::card::{Card, TEST_AID};
use ccid_sim::model::{ReaderConfig, VirtualReader};

/// A descriptor like [`CcidDescriptor::example`] at `level`, without the
/// automatic PPS / voltage features (the host drives those).
pub fn descriptor(level: ExchangeLevel) -> CcidDescriptor {
    let mut d = CcidDescriptor::example();
    d.dwFeatures = 0x0000_0030 | level.feature_bits();
    d
}

pub fn config(level: ExchangeLevel) -> ReaderConfig {
    ReaderConfig::new(descriptor(level))
}

pub fn reader(level: ExchangeLevel, card: Card) -> VirtualReader {
    let mut r = VirtualReader::with_card(config(level), Some(card));
    r.start();
    r
}

pub struct Host {
    pub r: VirtualReader,
    pub seq: u8,
}

impl Host {
    pub fn new(r: VirtualReader) -> Host {
        Host { r, seq: 0 }
    }

    pub fn at(level: ExchangeLevel, card: Card) -> Host {
        Host::new(reader(level, card))
    }

    /// Sends `cmd` to `slot`; returns the final answer, checked to carry
    /// the slot, the sequence number and the expected message type.
    pub fn send(&mut self, slot: u8, cmd: Command) -> Response {
        self.seq = self.seq.wrapping_add(1);
        let rsp = self.r.transact(slot, self.seq, &cmd).expect("an answer");
        assert_eq!((rsp.slot, rsp.seq), (slot, self.seq), "{cmd:?}");
        let want = cmd
            .message_type()
            .expected_response()
            .unwrap_or(MessageType::RDR_TO_PC_SLOT_STATUS);
        assert_eq!(rsp.message_type, want, "{cmd:?}");
        rsp
    }

    pub fn cmd(&mut self, cmd: Command) -> Response {
        self.send(0, cmd)
    }

    pub fn power_on(&mut self) -> Response {
        self.cmd(Command::IccPowerOn { power_select: 0 })
    }

    pub fn xfr(&mut self, level: u16, data: &[u8]) -> Response {
        self.cmd(Command::XfrBlock {
            bwi: 0,
            level,
            data: data.to_vec(),
        })
    }

    pub fn set_params(&mut self, protocol: u8, data: &[u8]) -> Response {
        self.cmd(Command::SetParameters {
            protocol,
            data: data.to_vec(),
        })
    }
}

pub fn select() -> Vec<u8> {
    let mut a = vec![0x00, 0xA4, 0x04, 0x00, TEST_AID.len() as u8];
    a.extend_from_slice(&TEST_AID);
    a
}

pub fn counting(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 256) as u8).collect()
}

pub fn with_sw(mut v: Vec<u8>) -> Vec<u8> {
    v.extend_from_slice(&[0x90, 0x00]);
    v
}

/// (bStatus, bError) of an answer.
pub fn status(r: &Response) -> (u8, u8) {
    (r.status.0, r.error.0)
}
