//! The gadget through a real kernel: configfs, FunctionFS and dummy_hcd,
//! driven from the host side of the same kernel with libusb.
//!
//! Needs root, the modules dummy_hcd, libcomposite and usb_f_fs, configfs
//! mounted, and a free UDC named by `CCID_SIM_GADGET_UDC` (for example
//! `dummy_udc.3`); skipped with a printed reason otherwise. The e2e guest
//! runs it (tests/e2e/guest/scenarios/gadget.sh).

#[path = "support/one_slot_reader.rs"]
mod one_slot_reader;

use ccid::proto::message::Response;
use ccid::transport::Transport;
use ccid_sim::gadget::{CardControl, Gadget, GadgetOptions, VirtualReader};
use one_slot_reader::{OneSlotReader, ATR};
use rusb::{Direction, TransferType, UsbContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERIAL: &str = "ccid-sim-kernel-test";
const NAME: &str = "ccidsimtest";
const IO: Duration = Duration::from_secs(3);

struct Cards(Arc<OneSlotReader>);

impl CardControl for Cards {
    fn set_card_present(&self, slot: u8, present: bool) -> Result<(), String> {
        self.0.set_card(slot, present)
    }
}

/// VID, PID and serial of the device a test looks for.
type Id = (u16, u16, &'static str);

const DOUBLE: Id = (0x1209, 0x2702, SERIAL);

fn find(ctx: &rusb::Context, id: Id) -> Option<rusb::Device<rusb::Context>> {
    for d in ctx.devices().ok()?.iter() {
        let Ok(desc) = d.device_descriptor() else {
            continue;
        };
        if (desc.vendor_id(), desc.product_id()) != (id.0, id.1) {
            continue;
        }
        let Ok(h) = d.open() else { continue };
        if h.read_serial_number_string_ascii(&desc).ok().as_deref() == Some(id.2) {
            return Some(d);
        }
    }
    None
}

fn wait_for(
    ctx: &rusb::Context,
    id: Id,
    present: bool,
    limit: Duration,
) -> Option<rusb::Device<rusb::Context>> {
    let deadline = Instant::now() + limit;
    loop {
        let d = find(ctx, id);
        if d.is_some() == present {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "the device did not {} within {limit:?}",
            if present { "appear" } else { "go away" }
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Host {
    h: rusb::DeviceHandle<rusb::Context>,
    out: u8,
    inp: u8,
    int: u8,
    seq: u8,
}

impl Host {
    fn open(dev: &rusb::Device<rusb::Context>) -> Host {
        let cfg = dev.active_config_descriptor().expect("config descriptor");
        let iface = cfg.interfaces().next().expect("one interface");
        let alt = iface.descriptors().next().expect("alternate setting 0");
        let (mut out, mut inp, mut int) = (0, 0, 0);
        for ep in alt.endpoint_descriptors() {
            match (ep.transfer_type(), ep.direction()) {
                (TransferType::Bulk, Direction::Out) => out = ep.address(),
                (TransferType::Bulk, Direction::In) => inp = ep.address(),
                (TransferType::Interrupt, Direction::In) => int = ep.address(),
                _ => panic!("unexpected endpoint {ep:?}"),
            }
        }
        let h = dev.open().expect("open");
        h.claim_interface(alt.interface_number()).expect("claim");
        Host {
            h,
            out,
            inp,
            int,
            seq: 0,
        }
    }

    fn exchange(&mut self, kind: u8, data: &[u8]) -> Response {
        self.seq = self.seq.wrapping_add(1);
        let mut m = vec![kind];
        m.extend_from_slice(&(data.len() as u32).to_le_bytes());
        m.extend_from_slice(&[0, self.seq, 0, 0, 0]);
        m.extend_from_slice(data);
        let n = self.h.write_bulk(self.out, &m, IO).expect("bulk-OUT");
        assert_eq!(n, m.len());
        let mut buf = vec![0u8; 70_000];
        let n = self.h.read_bulk(self.inp, &mut buf, IO).expect("bulk-IN");
        // one transfer must hold exactly one response: a missing ZLP would
        // run two together, a stray one would give 0 bytes
        let r = Response::parse(&buf[..n]).expect("one whole response per transfer");
        assert_eq!(r.seq, self.seq, "answer to another command");
        r
    }

    fn notification(&self) -> Vec<u8> {
        let mut buf = [0u8; 8];
        let n = self
            .h
            .read_interrupt(self.int, &mut buf, IO)
            .expect("interrupt-IN");
        buf[..n].to_vec()
    }
}

/// Gadget settings on the UDC named by `CCID_SIM_GADGET_UDC`; `None` (and
/// a printed reason) when it is not set.
fn options(name: &str, serial: &str) -> Option<GadgetOptions> {
    let Ok(udc) = std::env::var("CCID_SIM_GADGET_UDC") else {
        println!(
            "SKIP: set CCID_SIM_GADGET_UDC=dummy_udc.N (root; dummy_hcd, libcomposite and \
             usb_f_fs loaded; configfs mounted) to run the kernel test"
        );
        return None;
    };
    let mount = std::env::var("CCID_SIM_GADGET_MOUNT_DIR").unwrap_or_else(|_| "/dev".into());
    Some(GadgetOptions {
        name: name.into(),
        udc,
        serial: serial.into(),
        mount_base: PathBuf::from(mount),
        interrupt_packet_size: None,
        verbose: false,
    })
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn one_slot_reader_through_configfs_functionfs_and_dummy_hcd() {
    let Some(opts) = options(NAME, SERIAL) else {
        return;
    };
    let reader = OneSlotReader::new();
    let t = Instant::now();
    let mut g = Gadget::create(
        VirtualReader {
            transport: reader.clone(),
            cards: Some(Arc::new(Cards(reader.clone()))),
        },
        &opts,
    )
    .expect("gadget set up");
    println!("set up in {} ms", t.elapsed().as_millis());
    let ctx = rusb::Context::new().expect("libusb");
    assert!(
        find(&ctx, DOUBLE).is_none(),
        "a device with the test serial is already there"
    );

    // --- plug: enumeration and descriptors ------------------------------------------
    let t = Instant::now();
    g.plug().expect("bind");
    let dev = wait_for(&ctx, DOUBLE, true, Duration::from_secs(10)).unwrap();
    println!("TIMING plug_to_libusb {} ms", t.elapsed().as_millis());
    let desc = dev.device_descriptor().unwrap();
    assert_eq!(desc.device_version(), rusb::Version(0, 0, 0));
    let cfg = dev.active_config_descriptor().unwrap();
    let iface = cfg.interfaces().next().unwrap();
    let alt = iface.descriptors().next().unwrap();
    assert_eq!(alt.class_code(), 0x0B);
    assert_eq!(alt.extra(), reader.info().ccid_descriptor.as_slice());
    let speed = dev.speed();
    let bulk_mps = if speed == rusb::Speed::High { 512 } else { 64 };
    for ep in alt.endpoint_descriptors() {
        let want = if ep.transfer_type() == TransferType::Interrupt {
            8
        } else {
            bulk_mps
        };
        assert_eq!(ep.max_packet_size(), want, "{ep:?}");
    }
    let h = dev.open().unwrap();
    assert_eq!(
        h.read_string_descriptor_ascii(alt.description_string_index().unwrap())
            .unwrap(),
        "CCID Interface"
    );
    drop(h);

    // --- messages ------------------------------------------------------------------------
    let mut host = Host::open(&dev);
    let t = Instant::now();
    while !g.is_configured() {
        assert!(t.elapsed() < IO, "no ENABLE seen by the gadget");
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "ENABLE {} ms after the bind, speed {speed:?}",
        g.enabled_after().map(|d| d.as_millis()).unwrap_or(0)
    );
    assert_eq!(host.exchange(0x65, &[]).status.0, 0x01);
    assert_eq!(host.exchange(0x62, &[]).data, ATR);
    // responses of whole packets (ZLP), one byte over, several packets,
    // and commands of whole packets (no ZLP from the host)
    for len in [
        1,
        bulk_mps - 10,
        bulk_mps - 9,
        2 * bulk_mps - 10,
        2 * bulk_mps + 7,
        4000,
        30_000,
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        assert_eq!(host.exchange(0x6F, &data).data, data, "echo of {len}");
        assert_eq!(host.exchange(0x65, &[]).message_type.0, 0x81);
    }
    let mut rtt = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        host.exchange(0x6F, &[0x00, 0xA4, 0x04, 0x00]);
        rtt.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("TIMING bulk_rtt_median {:.2} ms", median_ms(rtt));

    // --- class requests on ep0 ------------------------------------------------------------
    let mut rates = [0u8; 0x12];
    let n = host
        .h
        .read_control(0xA1, 0x03, 0, 0, &mut rates, IO)
        .expect("GET_DATA_RATES");
    assert_eq!(
        &rates[..n],
        &[0x00, 0x2a, 0, 0, 0x01, 0x54, 0, 0, 0x02, 0xa8, 0, 0]
    );
    let mut clocks = [0u8; 4];
    assert_eq!(
        host.h.read_control(0xA1, 0x02, 0, 0, &mut clocks, IO),
        Err(rusb::Error::Pipe),
        "GET_CLOCK_FREQUENCIES must stall"
    );
    assert_eq!(
        host.h.write_control(0x21, 0x01, 0x0100, 0, &[], IO),
        Err(rusb::Error::Pipe),
        "ABORT refused by the reader must stall"
    );
    // the pipe works after the stalls
    assert_eq!(host.exchange(0x65, &[]).message_type.0, 0x81);

    // --- card events on the interrupt endpoint ------------------------------------------
    g.set_card_present(0, false).unwrap();
    assert_eq!(host.notification(), [0x50, 0x02]);
    assert_eq!(host.exchange(0x65, &[]).status.0, 0x02);
    g.set_card_present(0, true).unwrap();
    assert_eq!(host.notification(), [0x50, 0x03]);
    assert_eq!(host.exchange(0x62, &[]).data, ATR);
    assert!(g.set_card_present(1, true).is_err());
    drop(host);

    // --- unplug and replug ------------------------------------------------------------------
    for cycle in 0..3 {
        let t = Instant::now();
        g.unplug().expect("unbind");
        wait_for(&ctx, DOUBLE, false, Duration::from_secs(10));
        let gone = t.elapsed();
        let t = Instant::now();
        g.plug().expect("bind again");
        let dev = wait_for(&ctx, DOUBLE, true, Duration::from_secs(10)).unwrap();
        let back = t.elapsed();
        let mut host = Host::open(&dev);
        assert_eq!(host.exchange(0x62, &[]).data, ATR, "cycle {cycle}");
        assert_eq!(host.exchange(0x6F, &[1, 2, 3]).data, [1, 2, 3]);
        println!(
            "cycle {cycle}: unplug -> gone {} ms, replug -> back {} ms",
            gone.as_millis(),
            back.as_millis()
        );
    }

    // --- teardown -----------------------------------------------------------------------------
    println!("{}", g.stats());
    g.close().expect("clean teardown");
    wait_for(&ctx, DOUBLE, false, Duration::from_secs(10));
    assert!(!Path::new("/sys/kernel/config/usb_gadget")
        .join(NAME)
        .exists());
    assert!(!opts.mount_base.join(format!("ffs-{NAME}")).exists());
}

/// The simulator's reader model behind the gadget, built from a real
/// reader's dump (Alcor AU9520: one clock frequency, 53 data rates): the
/// class requests the driver sends at open reach the model through ep0,
/// and its answers are the dump's lists.
#[test]
fn dump_reader_answers_class_requests_through_the_kernel() {
    const SERIAL2: &str = "ccid-sim-kernel-test-au9520";
    let Some(opts) = options("ccidsimtest2", SERIAL2) else {
        return;
    };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/ccid-data/readers");
    let dump = data.join("AU9520.txt");
    let Ok(text) = std::fs::read_to_string(&dump) else {
        println!("SKIP: {} not found", dump.display());
        return;
    };
    let parsed = ccid::dump::parse(&text, "AU9520.txt").expect("the dump parses");
    let (dev, iface) = ccid::dump::ccid_interfaces(&parsed)
        .into_iter()
        .next()
        .expect("a CCID interface");
    let id: Id = (dev.vendor_id, dev.product_id, SERIAL2);
    let spec = ccid_sim::gadget::cli::ReaderSpec {
        descriptor: dump.clone(),
        interface: 0,
        atr: None,
        index: 0,
        serial: SERIAL2.into(),
    };
    let reader = ccid_sim::cli::gadget_reader(&spec).expect("reader built from the dump");
    let mut g = Gadget::create(reader, &opts).expect("gadget set up");
    let ctx = rusb::Context::new().expect("libusb");
    g.plug().expect("bind");
    let usb = wait_for(&ctx, id, true, Duration::from_secs(10)).unwrap();
    let desc = usb.device_descriptor().unwrap();
    assert_eq!(desc.device_version().0, (dev.bcd_device >> 8) as u8);
    let mut host = Host::open(&usb);

    let mut buf = vec![0u8; 4 * 64];
    let n = host
        .h
        .read_control(
            0xA1,
            0x02,
            0,
            0,
            &mut buf[..4 * iface.clock_frequencies.len()],
            IO,
        )
        .expect("GET_CLOCK_FREQUENCIES");
    let clocks: Vec<u32> = buf[..n]
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(clocks, iface.clock_frequencies);
    let n = host
        .h
        .read_control(0xA1, 0x03, 0, 0, &mut buf[..4 * iface.data_rates.len()], IO)
        .expect("GET_DATA_RATES");
    let rates: Vec<u32> = buf[..n]
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(rates, iface.data_rates);
    println!(
        "{} clock frequencies and {} data rates over ep0",
        clocks.len(),
        rates.len()
    );
    // and the bulk pipe reaches the model's slot
    let r = host.exchange(0x65, &[]);
    assert_eq!(r.message_type.0, 0x81);
    let r = host.exchange(0x62, &[]);
    assert_eq!(r.message_type.0, 0x80);
    assert_eq!(r.data.first(), Some(&0x3B), "an ATR");
    drop(host);
    g.close().expect("clean teardown");
    wait_for(&ctx, id, false, Duration::from_secs(10));
}
