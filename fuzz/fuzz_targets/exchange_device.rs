//! A hostile device: whatever the fuzzer says arrives on bulk-IN in answer
//! to the driver's commands. The driver must never panic, never hand back
//! an answer that does not match the command, and never wait past its
//! bound.
#![no_main]
use ccid::proto::descriptor::CcidDescriptor;
use ccid::proto::message::{Command, CommandStatus, MessageType};
use ccid::reader::exchange::{ExchangeLimits, Exchanger};
use ccid::transport::{ControlSetup, Transport, TransportError, UsbInfo};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Hostile {
    info: UsbInfo,
    transfers: Mutex<Vec<Vec<u8>>>,
}

impl Transport for Hostile {
    fn info(&self) -> &UsbInfo {
        &self.info
    }
    fn bulk_out(&self, _d: &[u8], _t: Duration) -> Result<(), TransportError> {
        Ok(())
    }
    fn bulk_in(&self, buf: &mut [u8], _t: Duration) -> Result<usize, TransportError> {
        match self.transfers.lock().unwrap().pop() {
            Some(t) => {
                let n = t.len().min(buf.len());
                buf[..n].copy_from_slice(&t[..n]);
                Ok(n)
            }
            None => Err(TransportError::Timeout),
        }
    }
    fn interrupt_in(&self, _b: &mut [u8], _t: Duration) -> Result<usize, TransportError> {
        Err(TransportError::NotFound)
    }
    fn control_in(
        &self,
        _s: ControlSetup,
        _b: &mut [u8],
        _t: Duration,
    ) -> Result<usize, TransportError> {
        Err(TransportError::Pipe)
    }
    fn control_out(
        &self,
        _s: ControlSetup,
        _d: &[u8],
        _t: Duration,
    ) -> Result<usize, TransportError> {
        Err(TransportError::Pipe)
    }
}

fuzz_target!(|data: &[u8]| {
    // The input is split into transfers at every 0xA5 byte.
    let mut transfers: Vec<Vec<u8>> = data.split(|b| *b == 0xA5).map(|s| s.to_vec()).collect();
    transfers.reverse();
    let info = UsbInfo {
        bulk_in_packet_size: 64,
        ccid_descriptor: CcidDescriptor::example().to_bytes().to_vec(),
        ..UsbInfo::default()
    };
    let t = Arc::new(Hostile {
        info,
        transfers: Mutex::new(transfers),
    });
    let ex = Exchanger::new(t, 1, 0);
    let lim = ExchangeLimits::new(Duration::from_millis(1), Duration::from_millis(5));
    for cmd in [
        Command::GetSlotStatus,
        Command::XfrBlock {
            bwi: 0,
            level: 0,
            data: vec![0, 0xA4, 0, 0],
        },
    ] {
        let expected_seq = ex.next_seq().wrapping_add(1);
        if let Ok(r) = ex.exchange(0, &cmd, lim) {
            assert_eq!(r.slot, 0);
            assert_eq!(r.seq, expected_seq);
            // The expected answer, or a failed SlotStatus: some readers
            // refuse a command that way, and the caller sees the failure.
            let refused = r.message_type == MessageType::RDR_TO_PC_SLOT_STATUS
                && r.status.command() == CommandStatus::Failed;
            assert!(
                refused || Some(r.message_type) == cmd.message_type().expected_response(),
                "answer {:?} to {:?}",
                r.message_type,
                cmd.message_type()
            );
        }
    }
});
