//! One card slot of a reader: power, presence, protocol selection, APDU
//! transmission and capabilities, driving the sans-IO engines through the
//! device's exchange path.

use super::device::{Device, DEFAULT_TIMEOUT};
use crate::config::{Config, DriverOptions, PowerVoltage};
use crate::error::{Error, Result};
use crate::ifd::{tag, MAX_ATR_SIZE};
use crate::proto::descriptor::{ExchangeLevel, Features};
use crate::proto::message::{Command, CommandStatus, IccStatus, Response, SlotError};
use crate::quirks::QuirkFlags;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Time allowed for a card to answer to reset (an ATR at 9600 bps and the
/// reader's own activation sequence; libccid allows 60 s).
const POWER_ON_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest response APDU: 65 536 data bytes and SW1 SW2.
pub const MAX_RESPONSE_APDU: usize = 65538;

/// What IFDHICCPresence reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// A card is present.
    Present,
    /// No card (or the card was swapped since it was powered).
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    /// Never powered since the channel was created.
    Never,
    /// Powered up by the driver.
    Up,
    /// Powered down by the driver.
    Down,
}

/// Per-slot state.
#[derive(Debug)]
pub(crate) struct SlotState {
    pub(crate) atr: Vec<u8>,
    power: Power,
    /// The protocol selected by IFDHSetProtocolParameters (SCARD_PROTOCOL_*).
    pub(crate) protocol: Option<u32>,
    /// Timeout of card exchanges.
    pub(crate) card_timeout: Duration,
    /// Timeout of card exchanges before a protocol is selected.
    default_timeout: Duration,
    /// Presence as the last power-on found it (readers whose slot status
    /// always says 'present').
    cached_present: bool,
    /// The card's timing parameters once a protocol is selected.
    pub(crate) timing: Option<crate::iso7816::params::Timing>,
    /// The T=1 engine, when the driver runs T=1 (TPDU and character level).
    pub(crate) t1: Option<crate::iso7816::t1::engine::T1Engine>,
}

impl SlotState {
    /// Forgets everything about the card.
    fn forget_card(&mut self) {
        self.atr.clear();
        self.protocol = None;
        self.card_timeout = self.default_timeout;
        self.timing = None;
        self.t1 = None;
    }
}

/// The value of a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Bytes to copy into the caller's buffer.
    Bytes(Vec<u8>),
    /// A success with nothing to return (`*Length = 0`).
    Empty,
    /// The polling callback (TAG_IFD_POLLING_THREAD_WITH_TIMEOUT).
    PollingFunction,
    /// The sleeping callback for readers without card events (ICCD).
    SleepFunction,
    /// The stop callback (TAG_IFD_STOP_POLLING_THREAD).
    StopPollingFunction,
}

/// A card slot.
#[derive(Debug)]
pub struct Slot {
    /// The reader.
    pub device: Arc<Device>,
    /// Slot index (bSlot).
    pub index: u8,
    /// The Lun pcscd uses for this slot.
    pub lun: u64,
    state: Mutex<SlotState>,
    config: Config,
}

/// Maps a failed command status to an error.
pub fn check_status(resp: &Response) -> Result<()> {
    if resp.status.command() != CommandStatus::Failed {
        return Ok(());
    }
    Err(match resp.error {
        SlotError::ICC_MUTE if resp.status.icc() == IccStatus::Absent => Error::IccAbsent,
        SlotError::ICC_MUTE => Error::IccMute,
        SlotError::XFR_PARITY_ERROR => Error::Parity,
        SlotError::CMD_NOT_SUPPORTED => Error::CommandNotSupported,
        error => Error::Slot {
            error,
            status: resp.status,
        },
    })
}

impl Slot {
    /// A slot of `device`.
    pub fn new(device: Arc<Device>, index: u8, lun: u64, config: Config) -> Slot {
        let card_timeout = device.quirks().default_timeout.unwrap_or(DEFAULT_TIMEOUT);
        Slot {
            device,
            index,
            lun,
            state: Mutex::new(SlotState {
                atr: Vec::new(),
                power: Power::Never,
                protocol: None,
                card_timeout,
                default_timeout: card_timeout,
                cached_present: true,
                timing: None,
                t1: None,
            }),
            config,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exchange(&self, cmd: &Command, timeout: Duration) -> Result<Response> {
        self.device.exchange(self.index, cmd, timeout)
    }

    /// The cached ATR (empty when the card is not powered).
    pub fn atr(&self) -> Vec<u8> {
        self.lock().atr.clone()
    }

    /// The driver configuration this slot was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Voltages to try, in order (CCID §6.1.1 bPowerSelect), from the
    /// configured start voltage and the reader's `bVoltageSupport`.
    pub fn voltage_sequence(&self) -> Vec<u8> {
        let d = &self.device.caps().descriptor;
        let f = Features::from_bits_retain(d.dwFeatures);
        if f.intersects(Features::AUTO_VOLTAGE | Features::AUTO_ACTIVATION)
            || self.config.power_voltage() == PowerVoltage::Auto
        {
            return vec![0];
        }
        let order: [u8; 3] = match self.config.power_voltage() {
            PowerVoltage::V5 | PowerVoltage::Auto => [1, 3, 2],
            PowerVoltage::V3 => [2, 1, 3],
            PowerVoltage::V1_8 => [3, 2, 1],
        };
        let support = d.bVoltageSupport & 0x07;
        if support == 0 {
            // The reader says nothing of its voltages: let it choose.
            return vec![0];
        }
        let bit = |v: u8| match v {
            1 => 0x01,
            2 => 0x02,
            _ => 0x04,
        };
        order
            .iter()
            .copied()
            .filter(|v| support & bit(*v) != 0)
            .collect()
    }

    /// Powers the card up (or resets it) and returns its ATR.
    pub fn power_up(&self) -> Result<Vec<u8>> {
        let mut st = self.lock();
        let quirks = self.device.quirks();
        if quirks.has(QuirkFlags::POWER_OFF_BEFORE_POWER_ON) {
            if let Err(e) = self.exchange(&Command::IccPowerOff, DEFAULT_TIMEOUT) {
                log::debug!("power off before power on: {e}");
            }
        }
        let mut last = Error::PowerAction("no voltage to try".into());
        let mut emv_switched = false;
        let mut voltages = self.voltage_sequence().into_iter();
        let mut next = voltages.next();
        while let Some(v) = next {
            let resp = self.exchange(&Command::IccPowerOn { power_select: v }, POWER_ON_TIMEOUT)?;
            if resp.status.command() == CommandStatus::Failed
                && resp.error == SlotError::EMV_PROTOCOL_ERROR
                && quirks.has(QuirkFlags::EMV_TO_ISO_ON_POWER_ON_ERROR)
                && !emv_switched
            {
                // The reader is in EMV mode: switch it to ISO mode and
                // try the same voltage once more.
                emv_switched = true;
                log::info!("reader in EMV mode: switching to ISO mode");
                if let Err(e) = self.escape(&crate::quirks::EMV_TO_ISO_ESCAPE, DEFAULT_TIMEOUT) {
                    log::info!("EMV to ISO switch failed: {e}");
                }
                continue;
            }
            match check_status(&resp) {
                Ok(()) => {
                    let mut atr = resp.data;
                    atr.truncate(MAX_ATR_SIZE);
                    st.forget_card();
                    st.atr = atr.clone();
                    st.power = Power::Up;
                    st.cached_present = true;
                    return Ok(atr);
                }
                Err(e @ Error::IccAbsent) => {
                    st.forget_card();
                    st.cached_present = false;
                    return Err(e);
                }
                Err(e) => {
                    log::info!("power on at bPowerSelect {v} failed: {e}");
                    last = e;
                }
            }
            next = voltages.next();
        }
        st.forget_card();
        if quirks.has(QuirkFlags::CACHED_PRESENCE) {
            st.cached_present = false;
        }
        Err(match last {
            Error::Timeout { .. } | Error::Transport(_) => last,
            e => Error::PowerAction(e.to_string()),
        })
    }

    /// Powers the card down.
    pub fn power_down(&self) -> Result<()> {
        let mut st = self.lock();
        st.forget_card();
        st.power = Power::Down;
        let r = self.exchange(&Command::IccPowerOff, DEFAULT_TIMEOUT)?;
        check_status(&r).map_err(|e| Error::PowerAction(e.to_string()))
    }

    /// Card presence, as pcscd polls it. A card swapped between two polls
    /// (found inactive after the driver powered it) is reported absent once.
    pub fn presence(&self) -> Result<Presence> {
        let mut st = self.lock();
        if self.device.quirks().has(QuirkFlags::CACHED_PRESENCE) {
            // The slot status of this reader always says 'present': the
            // last power-on tells.
            if self.device.is_gone() {
                return Err(Error::NoDevice);
            }
            return Ok(if st.cached_present {
                Presence::Present
            } else {
                Presence::Absent
            });
        }
        let r = self.exchange(&Command::GetSlotStatus, DEFAULT_TIMEOUT)?;
        if r.status.command() == CommandStatus::Failed && r.error != SlotError::ICC_MUTE {
            check_status(&r)?;
        }
        match r.status.icc() {
            IccStatus::Active => Ok(Presence::Present),
            IccStatus::Inactive => {
                if st.power == Power::Up {
                    st.power = Power::Never;
                    st.forget_card();
                    Ok(Presence::Absent)
                } else {
                    Ok(Presence::Present)
                }
            }
            IccStatus::Absent => {
                st.forget_card();
                if st.power == Power::Up {
                    st.power = Power::Never;
                }
                Ok(Presence::Absent)
            }
            IccStatus::Reserved => Err(Error::Unexpected {
                what: "bmICCStatus",
                expected: 2,
                got: u32::from(r.status.0 & 3),
            }),
        }
    }

    /// Sends one XfrBlock and returns the DataBlock's data, status checked.
    pub(crate) fn xfr_block(
        &self,
        level: u16,
        data: &[u8],
        bwi: u8,
        timeout: Duration,
    ) -> Result<Response> {
        let r = self.exchange(
            &Command::XfrBlock {
                bwi,
                level,
                data: data.to_vec(),
            },
            timeout,
        )?;
        check_status(&r)?;
        Ok(r)
    }

    /// Transmits an APDU (or TPDU) to the card and returns the response.
    pub fn transmit(&self, protocol: u32, tx: &[u8]) -> Result<Vec<u8>> {
        if tx.is_empty() {
            return Err(Error::InvalidArgument("empty command"));
        }
        if let Some(answer) = self.device.quirks().driver_answer(tx) {
            return Ok(answer);
        }
        let st = self.lock();
        if st.atr.is_empty() {
            return Err(Error::IccAbsent);
        }
        let timeout = st.card_timeout;
        drop(st);
        if self.device.info().interface_protocol == 1 {
            // ICCD version A: the token runs T=0 itself (see iccd.rs).
            return Ok(self.xfr_block(0, tx, 0, timeout)?.data);
        }
        let level = self.device.caps().level();
        match (level, protocol) {
            (ExchangeLevel::ExtendedApdu, _) => self.transmit_extended(tx, timeout),
            (ExchangeLevel::ShortApdu, _)
            | (ExchangeLevel::Tpdu, crate::ifd::protocol::SCARD_PROTOCOL_T0) => {
                self.transmit_single(tx, timeout)
            }
            (ExchangeLevel::Tpdu, crate::ifd::protocol::SCARD_PROTOCOL_RAW) => {
                self.transmit_single(tx, timeout)
            }
            (ExchangeLevel::Tpdu, _) | (ExchangeLevel::Character, _) => {
                super::protocol::transmit_engine(self, protocol, tx, timeout)
            }
        }
    }

    /// One XfrBlock carrying the whole command (short APDU, T=0 TPDU).
    fn transmit_single(&self, tx: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let (max, beyond_descriptor) = self.device.quirks().max_single_command(tx.len());
        if beyond_descriptor {
            log::info!(
                "command of {} bytes beyond dwMaxCCIDMessageLength, sent as the reader's firmware allows",
                tx.len()
            );
        }
        if tx.len() > max {
            log::error!(
                "command of {} bytes exceeds the reader's {} bytes",
                tx.len(),
                max
            );
            return Err(Error::NotSupported(format!(
                "command of {} bytes is longer than the reader accepts ({max})",
                tx.len()
            )));
        }
        Ok(self.xfr_block(0, tx, 0, timeout)?.data)
    }

    /// Extended APDU level: command chaining through `wLevelParameter`
    /// and response chaining through `bChainParameter` (CCID §6.1.4).
    fn transmit_extended(&self, tx: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let chunk = self.device.caps().max_data().max(1);
        let mut resp = if tx.len() <= chunk {
            self.xfr_block(0, tx, 0, timeout)?
        } else {
            let parts: Vec<&[u8]> = tx.chunks(chunk).collect();
            let last = parts.len() - 1;
            let mut r = None;
            for (i, p) in parts.iter().enumerate() {
                let level = match i {
                    0 => 0x01,
                    i if i == last => 0x02,
                    _ => 0x03,
                };
                let got = self.xfr_block(level, p, 0, timeout)?;
                if i != last && !got.data.is_empty() {
                    return Err(Error::Protocol(format!(
                        "reader answered {} bytes to a chained command block",
                        got.data.len()
                    )));
                }
                r = Some(got);
            }
            r.ok_or(Error::InvalidArgument("empty command"))?
        };
        let mut out = std::mem::take(&mut resp.data);
        let mut chain = resp.chain_parameter();
        let mut rounds = 0usize;
        while matches!(chain, 0x01 | 0x03 | 0x10) {
            rounds += 1;
            if out.len() > MAX_RESPONSE_APDU || rounds > MAX_RESPONSE_APDU {
                return Err(Error::Protocol(
                    "response chaining exceeds 65538 bytes".into(),
                ));
            }
            let next = self.xfr_block(0x10, &[], 0, timeout)?;
            out.extend_from_slice(&next.data);
            chain = next.chain_parameter();
        }
        if out.len() > MAX_RESPONSE_APDU {
            return Err(Error::Protocol("response longer than 65538 bytes".into()));
        }
        Ok(out)
    }

    /// Secure PIN entry (PC_to_RDR_Secure) with `data` = bPINOperation and
    /// the CCID PIN structure. A cancelled or timed-out entry is returned as
    /// the status word applications expect (64 01 / 64 00).
    pub fn secure(&self, data: &[u8], apdu_offset: usize, timeout: Duration) -> Result<Vec<u8>> {
        let st = self.lock();
        if st.atr.is_empty() {
            return Err(Error::IccAbsent);
        }
        let protocol = st.protocol;
        drop(st);
        if self.device.caps().level() == ExchangeLevel::Tpdu
            && protocol == Some(crate::ifd::protocol::SCARD_PROTOCOL_T1)
        {
            return super::protocol::secure_t1(self, data, apdu_offset, timeout);
        }
        let r = self.exchange(
            &Command::Secure {
                bwi: 0,
                level: 0,
                data: data.to_vec(),
            },
            timeout,
        )?;
        if r.status.command() == CommandStatus::Failed {
            if let Some(sw) = crate::pinpad::pin_error_sw(r.error.0) {
                return Ok(sw.to_vec());
            }
        }
        check_status(&r)?;
        Ok(r.data)
    }

    /// Sends a raw Escape command (PC_to_RDR_Escape) and returns its answer.
    pub fn escape(&self, data: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let r = self.exchange(
            &Command::Escape {
                data: data.to_vec(),
            },
            timeout,
        )?;
        check_status(&r)?;
        Ok(r.data)
    }

    /// The value of a capability tag (IFDHGetCapabilities).
    pub fn capability(&self, t: u32) -> Result<Capability> {
        let dev = &self.device;
        let info = dev.info();
        let iccd = info.interface_protocol == 1 || info.interface_protocol == 2;
        Ok(match t {
            tag::TAG_IFD_ATR | tag::SCARD_ATTR_ATR_STRING => Capability::Bytes(self.atr()),
            tag::SCARD_ATTR_ICC_INTERFACE_STATUS => {
                let present = matches!(self.presence(), Ok(Presence::Present));
                Capability::Bytes(vec![u8::from(present)])
            }
            tag::SCARD_ATTR_ICC_PRESENCE => {
                let present = matches!(self.presence(), Ok(Presence::Present));
                Capability::Bytes(vec![if present { 2 } else { 0 }])
            }
            tag::TAG_IFD_SIMULTANEOUS_ACCESS => Capability::Bytes(vec![255]),
            tag::TAG_IFD_THREAD_SAFE => {
                Capability::Bytes(vec![u8::from(!cfg!(target_os = "macos"))])
            }
            tag::TAG_IFD_SLOTS_NUMBER => {
                Capability::Bytes(vec![u8::try_from(dev.slot_count()).unwrap_or(u8::MAX)])
            }
            // Commands of different slots are routed by (bSlot, bSeq) and
            // limited to bMaxCCIDBusySlots inside the driver, so pcscd need
            // not serialize the slots itself.
            tag::TAG_IFD_SLOT_THREAD_SAFE => Capability::Bytes(vec![1]),
            tag::SCARD_ATTR_VENDOR_IFD_VERSION => {
                Capability::Bytes((u32::from(info.bcd_device) << 16).to_ne_bytes().to_vec())
            }
            tag::SCARD_ATTR_VENDOR_NAME => nul_string(info.manufacturer.as_deref()),
            tag::SCARD_ATTR_VENDOR_IFD_SERIAL_NO => nul_string(info.serial.as_deref()),
            tag::SCARD_ATTR_MAXINPUT => {
                Capability::Bytes((dev.caps().max_data() as u32).to_ne_bytes().to_vec())
            }
            tag::TAG_IFD_POLLING_THREAD_WITH_TIMEOUT => {
                if iccd {
                    Capability::SleepFunction
                } else if dev.has_card_events() {
                    Capability::PollingFunction
                } else {
                    Capability::Empty
                }
            }
            tag::TAG_IFD_POLLING_THREAD_KILLABLE => {
                if iccd {
                    Capability::Bytes(vec![1])
                } else {
                    Capability::Empty
                }
            }
            tag::TAG_IFD_STOP_POLLING_THREAD => {
                if !iccd && dev.has_card_events() {
                    Capability::StopPollingFunction
                } else {
                    Capability::Empty
                }
            }
            tag::TAG_IFD_DEVICE_REMOVED => Capability::Bytes(vec![1]),
            tag::SCARD_ATTR_CHANNEL_ID => {
                let v = (0x0020u32 << 16) | (u32::from(info.bus) << 8) | u32::from(info.address);
                Capability::Bytes(v.to_ne_bytes().to_vec())
            }
            other => return Err(Error::UnknownTag(other)),
        })
    }

    /// Whether raw Escape commands from applications are advertised
    /// (FEATURE_CCID_ESC_COMMAND, bPPDUSupport): only with ifdDriverOptions
    /// bit 0x01.
    pub fn escape_allowed(&self) -> bool {
        self.config
            .driver_options
            .contains(DriverOptions::CCID_EXCHANGE_AUTHORIZED)
    }

    /// Whether an application may send the escape `data`: with bit 0x01, or
    /// as one of the reader's own exceptions.
    pub fn escape_permitted(&self, data: &[u8]) -> bool {
        self.device
            .quirks()
            .escape_allowed(data, self.config.driver_options)
    }
}

fn nul_string(s: Option<&str>) -> Capability {
    match s {
        Some(s) if !s.is_empty() => {
            let mut v = s.as_bytes().to_vec();
            v.push(0);
            Capability::Bytes(v)
        }
        _ => Capability::Empty,
    }
}
