//! A one-slot reader double behind the driver's `Transport` trait, for the
//! gadget tests: GetSlotStatus, IccPowerOn (a fixed ATR), IccPowerOff, and
//! XfrBlock echoing its data; every other command fails with "command not
//! supported". Card removal and insertion queue a NotifySlotChange;
//! GET_DATA_RATES answers three rates, every other control request stalls.
#![allow(dead_code)]

use ccid::proto::message::{Notification, Response, HEADER_LEN};
use ccid::transport::{ControlSetup, Transport, TransportError, UsbInfo};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The card's ATR (T=1, historical bytes "FFS-CCID").
pub const ATR: [u8; 15] = [
    0x3B, 0x88, 0x81, 0x31, 0xFE, 0x45, 0x46, 0x46, 0x53, 0x2D, 0x43, 0x43, 0x49, 0x44, 0xF0,
];

#[derive(Default)]
struct ReaderState {
    present: bool,
    powered: bool,
    responses: VecDeque<Vec<u8>>,
    notifications: VecDeque<Vec<u8>>,
}

/// One slot; answers GetSlotStatus, IccPowerOn (ATR), IccPowerOff, and
/// XfrBlock by echoing the data; everything else fails with "command not
/// supported". Card removal and insertion send NotifySlotChange.
pub struct OneSlotReader {
    info: UsbInfo,
    state: Mutex<ReaderState>,
    cv: Condvar,
}

impl OneSlotReader {
    pub fn new() -> Arc<OneSlotReader> {
        Arc::new(OneSlotReader {
            info: UsbInfo {
                vendor_id: 0x1209,
                product_id: 0x2702,
                interface_class: 0x0B,
                has_interrupt: true,
                interface_name: Some("CCID Interface".into()),
                num_endpoints: 3,
                ccid_descriptor: ccid::proto::descriptor::CcidDescriptor::example()
                    .to_bytes()
                    .to_vec(),
                ..UsbInfo::default()
            },
            state: Mutex::new(ReaderState {
                present: true,
                ..ReaderState::default()
            }),
            cv: Condvar::new(),
        })
    }

    fn status(&self, st: &ReaderState, failed: bool) -> u8 {
        let icc = if !st.present {
            2
        } else if st.powered {
            0
        } else {
            1
        };
        icc | if failed { 0x40 } else { 0 }
    }

    fn answer(&self, msg: &[u8]) -> Vec<u8> {
        let mut st = self.state.lock().unwrap();
        let kind = msg.first().copied().unwrap_or(0);
        let (slot, seq) = (
            msg.get(5).copied().unwrap_or(0),
            msg.get(6).copied().unwrap_or(0),
        );
        let data = msg.get(HEADER_LEN..).unwrap_or(&[]).to_vec();
        let (message_type, ok, data) = match kind {
            0x65 => (0x81, true, vec![]),
            0x62 if st.present => {
                st.powered = true;
                (0x80, true, ATR.to_vec())
            }
            0x62 => (0x80, false, vec![]),
            0x63 => {
                st.powered = false;
                (0x81, true, vec![])
            }
            0x6F if st.powered => (0x80, true, data),
            0x6F => (0x80, false, vec![]),
            _ => (0x81, false, vec![]),
        };
        let error = match (ok, kind) {
            (true, _) => 0,
            (false, 0x62) | (false, 0x6F) => 0xFE, // ICC_MUTE
            _ => 0,
        };
        Response {
            message_type: ccid::proto::message::MessageType(message_type),
            slot,
            seq,
            status: ccid::proto::message::Status(self.status(&st, !ok)),
            error: ccid::proto::message::SlotError(error),
            specific: 0,
            data,
        }
        .encode()
    }

    fn wait_pop(
        &self,
        which: fn(&mut ReaderState) -> &mut VecDeque<Vec<u8>>,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(m) = which(&mut st).pop_front() {
                if m.len() > buf.len() {
                    return Err(TransportError::Overflow);
                }
                buf[..m.len()].copy_from_slice(&m);
                return Ok(m.len());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout);
            }
            st = self.cv.wait_timeout(st, left).unwrap().0;
        }
    }
}

impl Transport for OneSlotReader {
    fn info(&self) -> &UsbInfo {
        &self.info
    }
    fn bulk_out(&self, data: &[u8], _: Duration) -> Result<(), TransportError> {
        let r = self.answer(data);
        self.state.lock().unwrap().responses.push_back(r);
        self.cv.notify_all();
        Ok(())
    }
    fn bulk_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.wait_pop(|s| &mut s.responses, buf, timeout)
    }
    fn interrupt_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.wait_pop(|s| &mut s.notifications, buf, timeout)
    }
    fn control_in(
        &self,
        setup: ControlSetup,
        buf: &mut [u8],
        _: Duration,
    ) -> Result<usize, TransportError> {
        if setup.request_type != 0xA1 || setup.request != 0x03 {
            return Err(TransportError::Pipe);
        }
        let rates: Vec<u8> = [10752u32, 21505, 43010]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        let n = rates.len().min(buf.len());
        buf[..n].copy_from_slice(&rates[..n]);
        Ok(n)
    }
    fn control_out(&self, _: ControlSetup, _: &[u8], _: Duration) -> Result<usize, TransportError> {
        Err(TransportError::Pipe)
    }
}

impl OneSlotReader {
    /// Inserts or removes the card, and queues the NotifySlotChange.
    pub fn set_card(&self, slot: u8, present: bool) -> Result<(), String> {
        if slot != 0 {
            return Err(format!("no slot {slot}"));
        }
        let mut st = self.state.lock().unwrap();
        st.present = present;
        st.powered = false;
        let n = Notification::encode_slot_change(&[(present, true)]);
        st.notifications.push_back(n);
        self.cv.notify_all();
        Ok(())
    }
}
