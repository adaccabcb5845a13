//! Luns to slots. pcscd numbers a reader's slots `Lun = reader << 16 |
//! slot` and opens each slot with the same device name; the slots of one
//! reader share one [`Device`]. There is no fixed limit on readers or slots.

use super::device::{Device, OpenOptions};
use super::slot::Slot;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::transport::Transport;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Opens a transport for a device name. The default opens USB devices
/// through rusb; tests and benchmarks install virtual readers instead.
pub type TransportFactory = dyn Fn(&str, &Config) -> Result<Arc<dyn Transport>> + Send + Sync;

static FACTORY: RwLock<Option<Arc<TransportFactory>>> = RwLock::new(None);

static SLOTS: Mutex<Option<HashMap<u64, Arc<Slot>>>> = Mutex::new(None);

/// Replaces how device names are opened (`None` restores USB).
pub fn set_transport_factory(f: Option<Arc<TransportFactory>>) {
    *FACTORY.write().unwrap_or_else(|p| p.into_inner()) = f;
}

fn slots() -> MutexGuard<'static, Option<HashMap<u64, Arc<Slot>>>> {
    SLOTS.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_transport(name: &str, cfg: &Config) -> Result<Arc<dyn Transport>> {
    let f = FACTORY.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(f) = f {
        return f(name, cfg);
    }
    default_transport(name, cfg)
}

#[cfg(feature = "usb")]
fn default_transport(name: &str, cfg: &Config) -> Result<Arc<dyn Transport>> {
    crate::transport::usb::open_by_name(name, cfg)
}

#[cfg(not(feature = "usb"))]
fn default_transport(name: &str, _cfg: &Config) -> Result<Arc<dyn Transport>> {
    Err(Error::NoReader(format!(
        "{name}: built without USB support"
    )))
}

/// Opens the channel for `lun` on the device called `name`.
pub fn create_channel(lun: u64, name: &str) -> Result<Arc<Slot>> {
    let cfg = config::global().clone();
    let reader = lun >> 16;
    let index = lun & 0xFFFF;
    // A further slot of a reader already open.
    if index > 0 {
        let g = slots();
        let existing = g
            .as_ref()
            .and_then(|m| {
                m.values()
                    .find(|s| s.lun >> 16 == reader && s.device.name == name)
            })
            .map(|s| s.device.clone());
        drop(g);
        let Some(device) = existing else {
            return Err(Error::NoReader(format!(
                "{name}: slot {index} of a reader not opened"
            )));
        };
        if index as usize >= device.slot_count() {
            return Err(Error::NoReader(format!(
                "{name}: slot {index} but the reader has {} slot(s)",
                device.slot_count()
            )));
        }
        return insert(lun, Slot::new(device, index as u8, lun, cfg));
    }
    if slots().as_ref().is_some_and(|m| m.contains_key(&lun)) {
        return Err(Error::InvalidArgument("Lun already in use"));
    }
    let transport = open_transport(name, &cfg)?;
    let opts = OpenOptions {
        timeout_cap: Duration::from_millis(cfg.timeout_cap_ms()),
        card_events: true,
        driver_options: cfg.driver_options,
        lang: std::env::var("LANG").ok(),
    };
    let device = Device::open(transport, name, lun, &opts)?;
    insert(lun, Slot::new(device, 0, lun, cfg))
}

fn insert(lun: u64, slot: Slot) -> Result<Arc<Slot>> {
    let slot = Arc::new(slot);
    let mut g = slots();
    let m = g.get_or_insert_with(HashMap::new);
    if m.contains_key(&lun) {
        return Err(Error::InvalidArgument("Lun already in use"));
    }
    m.insert(lun, slot.clone());
    Ok(slot)
}

/// The slot of `lun`.
pub fn get(lun: u64) -> Result<Arc<Slot>> {
    slots()
        .as_ref()
        .and_then(|m| m.get(&lun).cloned())
        .ok_or(Error::UnknownLun(lun))
}

/// Closes the channel of `lun`: the card is powered down (result ignored)
/// and the device is released with its last slot.
pub fn close_channel(lun: u64) -> Result<()> {
    let slot = {
        let mut g = slots();
        g.as_mut()
            .and_then(|m| m.remove(&lun))
            .ok_or(Error::UnknownLun(lun))?
    };
    if !slot.device.is_gone() {
        if let Err(e) = slot.power_down() {
            log::debug!("power down at close: {e}");
        }
    }
    let still_used = slots()
        .as_ref()
        .is_some_and(|m| m.values().any(|s| Arc::ptr_eq(&s.device, &slot.device)));
    if !still_used {
        slot.device.shutdown();
    }
    Ok(())
}

/// Number of open channels.
pub fn open_count() -> usize {
    slots().as_ref().map_or(0, |m| m.len())
}
