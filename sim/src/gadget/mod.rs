//! A virtual reader as a real USB device: the kernel's USB gadget framework
//! (configfs + libcomposite) with one FunctionFS function, bound to a UDC
//! such as dummy_hcd's `dummy_udc.N`, whose host side enumerates it like
//! any reader. The unmodified driver, libusb, udev and pcscd then see it.
//!
//! The gadget is a bridge ([`bridge`]): it takes a reader given as a
//! [`Transport`] (the driver's view of a device) plus its [`UsbInfo`], and
//! plays the host's part towards it while presenting the device's part to
//! the real host.
//!
//! Needs root, configfs and the `libcomposite` and `usb_f_fs` modules; see
//! [`configfs::check_available`].
#![forbid(unsafe_code)]

pub mod bridge;
pub mod configfs;
pub mod control;
pub mod descriptors;
pub mod ep0;
pub mod ffs;

use bridge::{Bridge, BridgeOptions, DataEndpoint, Endpoints, Speed};
use ccid::transport::{Transport, UsbInfo};
use configfs::{GadgetPaths, Identity};
use descriptors::{EndpointKind, FunctionLayout};
use ep0::Event;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Card handling of a virtual reader, for the `remove`/`insert` control
/// words.
pub trait CardControl: Send + Sync {
    /// Inserts (`true`) or removes the card of `slot`.
    fn set_card_present(&self, slot: u8, present: bool) -> Result<(), String>;
}

/// A virtual reader to present.
#[derive(Clone)]
pub struct VirtualReader {
    /// The reader, from the driver's point of view.
    pub transport: Arc<dyn Transport>,
    /// Card insertion and removal, when the reader supports it.
    pub cards: Option<Arc<dyn CardControl>>,
}

/// Settings of one gadget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GadgetOptions {
    /// Name of the configfs directory and the FunctionFS instance.
    pub name: String,
    /// The UDC to bind to, e.g. `dummy_udc.0`.
    pub udc: String,
    /// iSerialNumber; pcscd shows it in the reader name, so it should be
    /// unique.
    pub serial: String,
    /// Directory holding the FunctionFS mount point `ffs-<name>`.
    pub mount_base: PathBuf,
    /// Interrupt wMaxPacketSize (default: computed from the slot count).
    pub interrupt_packet_size: Option<u16>,
    /// Log every message.
    pub verbose: bool,
}

/// Why a gadget could not be set up.
#[derive(Debug)]
pub enum GadgetError {
    /// The reader's interface cannot be expressed in FunctionFS.
    Descriptor(descriptors::DescriptorError),
    /// configfs, mount, or endpoint I/O failed.
    Io(io::Error),
}

impl std::fmt::Display for GadgetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GadgetError::Descriptor(e) => write!(f, "{e}"),
            GadgetError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GadgetError {}

impl From<io::Error> for GadgetError {
    fn from(e: io::Error) -> Self {
        GadgetError::Io(e)
    }
}

impl From<descriptors::DescriptorError> for GadgetError {
    fn from(e: descriptors::DescriptorError) -> Self {
        GadgetError::Descriptor(e)
    }
}

/// The USB identity presented for `info`, with `serial`.
pub fn identity(info: &UsbInfo, serial: &str) -> Identity {
    let or = |s: &Option<String>, d: &str| {
        s.clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| d.to_string())
    };
    Identity {
        vendor_id: info.vendor_id,
        product_id: info.product_id,
        bcd_device: info.bcd_device,
        manufacturer: or(&info.manufacturer, "ccid-sim"),
        product: or(&info.product, "Virtual CCID reader"),
        serial: serial.to_string(),
    }
}

/// Plug timing of one gadget: when it was last bound and when the host
/// configured it afterwards.
#[derive(Debug, Default, Clone, Copy)]
struct PlugTiming {
    bound_at: Option<Instant>,
    enabled_after: Option<Duration>,
}

/// One virtual reader presented as a USB device.
pub struct Gadget {
    paths: GadgetPaths,
    udc: String,
    serial: String,
    bridge: Option<Bridge>,
    bound: bool,
    timing: Arc<Mutex<PlugTiming>>,
    reader: VirtualReader,
    slots: usize,
}

impl Gadget {
    /// Creates the configfs tree, mounts FunctionFS, writes the descriptors
    /// and starts the bridge. The gadget is not bound yet ([`Gadget::plug`]).
    pub fn create(reader: VirtualReader, opts: &GadgetOptions) -> Result<Gadget, GadgetError> {
        let info = reader.transport.info().clone();
        let layout = FunctionLayout::from_info(&info, opts.interrupt_packet_size)?;
        if layout.notifications_fill_packets() {
            eprintln!(
                "[ccid-sim gadget {}] warning: interrupt wMaxPacketSize {} is filled by a \
                 notification: a host reading a larger buffer keeps its transfer open until \
                 the next notification",
                opts.name, layout.interrupt_packet_size
            );
        }
        configfs::check_available()?;
        configfs::check_udc(&opts.udc)?;
        let paths = GadgetPaths::new(&opts.name, &opts.mount_base);
        let config_name = layout
            .interface_name
            .clone()
            .unwrap_or_else(|| "CCID".to_string());
        configfs::create(&paths, &identity(&info, &opts.serial), &config_name)?;
        let timing = Arc::new(Mutex::new(PlugTiming::default()));
        let mut gadget = Gadget {
            paths,
            udc: opts.udc.clone(),
            serial: opts.serial.clone(),
            bridge: None,
            bound: false,
            timing: timing.clone(),
            slots: usize::from(layout.class_descriptor.get(4).copied().unwrap_or(0)) + 1,
            reader: reader.clone(),
        };
        // from here on, dropping `gadget` removes what was created
        let ep0 = ffs::Ep0File::open(
            &gadget.paths.mount,
            &layout.descriptors_blob(),
            &layout.strings_blob()?,
            layout.endpoints.len(),
        )?;
        let open = |kind| -> io::Result<Option<Arc<dyn DataEndpoint>>> {
            match layout.file_index(kind) {
                Some(i) => {
                    let f = ffs::open_endpoint(&ffs::endpoint_path(&gadget.paths.mount, i))?;
                    Ok(Some(Arc::new(f) as Arc<dyn DataEndpoint>))
                }
                None => Ok(None),
            }
        };
        let endpoints = Endpoints {
            control: Arc::new(ep0),
            bulk_out: open(EndpointKind::BulkOut)?,
            bulk_in: open(EndpointKind::BulkIn)?,
            interrupt: open(EndpointKind::Interrupt)?,
        };
        let udc = opts.udc.clone();
        let on_event = move |ev: &Event| {
            if *ev == Event::Enable {
                if let Ok(mut t) = timing.lock() {
                    if let (Some(at), None) = (t.bound_at, t.enabled_after) {
                        t.enabled_after = Some(at.elapsed());
                    }
                }
            }
        };
        let bridge = Bridge::start(
            reader.transport,
            endpoints,
            BridgeOptions {
                name: opts.name.clone(),
                verbose: opts.verbose,
                speed: Box::new(move || {
                    Speed::from_sysfs_text(&configfs::udc_speed(&udc).unwrap_or_default())
                }),
                on_event: Some(Box::new(on_event)),
            },
        )?;
        gadget.bridge = Some(bridge);
        Ok(gadget)
    }

    /// The gadget's name.
    pub fn name(&self) -> &str {
        &self.paths.name
    }

    /// The UDC it binds to.
    pub fn udc(&self) -> &str {
        &self.udc
    }

    /// Its serial number string.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Number of slots of the reader.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Whether it is bound (plugged).
    pub fn is_plugged(&self) -> bool {
        self.bound
    }

    /// Time from the last bind to the host's SET_CONFIGURATION (ENABLE).
    pub fn enabled_after(&self) -> Option<Duration> {
        self.timing.lock().ok().and_then(|t| t.enabled_after)
    }

    /// Whether the host has configured the device.
    pub fn is_configured(&self) -> bool {
        self.bridge.as_ref().and_then(|b| b.speed()).is_some()
    }

    /// Counters of the bridge.
    pub fn stats(&self) -> String {
        self.bridge
            .as_ref()
            .map(|b| b.stats().render())
            .unwrap_or_default()
    }

    /// Per-message logging.
    pub fn set_verbose(&self, on: bool) {
        if let Some(b) = &self.bridge {
            b.set_verbose(on);
        }
    }

    /// Binds the gadget to its UDC: the host sees the reader plugged in.
    pub fn plug(&mut self) -> io::Result<()> {
        if self.bound {
            return Ok(());
        }
        if let Ok(mut t) = self.timing.lock() {
            *t = PlugTiming {
                bound_at: Some(Instant::now()),
                enabled_after: None,
            };
        }
        configfs::bind(&self.paths, &self.udc)?;
        self.bound = true;
        Ok(())
    }

    /// Unbinds the gadget: the host sees the reader unplugged.
    pub fn unplug(&mut self) -> io::Result<()> {
        configfs::unbind(&self.paths)?;
        self.bound = false;
        Ok(())
    }

    /// Inserts or removes the card of a slot.
    pub fn set_card_present(&self, slot: u8, present: bool) -> Result<(), String> {
        if usize::from(slot) >= self.slots {
            return Err(format!(
                "slot {slot} does not exist (the reader has {} slot{})",
                self.slots,
                if self.slots == 1 { "" } else { "s" }
            ));
        }
        match &self.reader.cards {
            Some(c) => c.set_card_present(slot, present),
            None => Err("this reader offers no card control".into()),
        }
    }

    /// Unbinds, stops the bridge, closes the endpoint files, unmounts
    /// FunctionFS and removes the configfs tree.
    pub fn close(mut self) -> Result<(), String> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = configfs::unbind(&self.paths) {
            errors.push(e.to_string());
        }
        self.bound = false;
        if let Some(mut b) = self.bridge.take() {
            let stuck = b.stop(Duration::from_secs(3));
            if !stuck.is_empty() {
                errors.push(format!("threads still running: {}", stuck.join(", ")));
            }
        }
        if let Err(e) = configfs::remove(&self.paths) {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", self.paths.name, errors.join("; ")))
        }
    }
}

impl Drop for Gadget {
    fn drop(&mut self) {
        if self.paths.dir.exists() {
            if let Err(e) = self.teardown() {
                eprintln!("[ccid-sim gadget] teardown: {e}");
            }
        }
    }
}

pub mod cli;

#[cfg(test)]
mod tests;
