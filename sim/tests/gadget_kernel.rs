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

fn find(ctx: &rusb::Context) -> Option<rusb::Device<rusb::Context>> {
    for d in ctx.devices().ok()?.iter() {
        let Ok(desc) = d.device_descriptor() else {
            continue;
        };
        if (desc.vendor_id(), desc.product_id()) != (0x1209, 0x2702) {
            continue;
        }
        let Ok(h) = d.open() else { continue };
        if h.read_serial_number_string_ascii(&desc).ok().as_deref() == Some(SERIAL) {
            return Some(d);
        }
    }
    None
}

fn wait_for(
    ctx: &rusb::Context,
    present: bool,
    limit: Duration,
) -> Option<rusb::Device<rusb::Context>> {
    let deadline = Instant::now() + limit;
    loop {
        let d = find(ctx);
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

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn one_slot_reader_through_configfs_functionfs_and_dummy_hcd() {
    let Ok(udc) = std::env::var("CCID_SIM_GADGET_UDC") else {
        println!(
            "SKIP: set CCID_SIM_GADGET_UDC=dummy_udc.N (root; dummy_hcd, libcomposite and \
             usb_f_fs loaded; configfs mounted) to run the kernel test"
        );
        return;
    };
    let reader = OneSlotReader::new();
    let mount = std::env::var("CCID_SIM_GADGET_MOUNT_DIR").unwrap_or_else(|_| "/dev".into());
    let opts = GadgetOptions {
        name: NAME.into(),
        udc,
        serial: SERIAL.into(),
        mount_base: PathBuf::from(mount),
        interrupt_packet_size: None,
        verbose: false,
    };
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
        find(&ctx).is_none(),
        "a device with the test serial is already there"
    );

    // --- plug: enumeration and descriptors ------------------------------------------
    let t = Instant::now();
    g.plug().expect("bind");
    let dev = wait_for(&ctx, true, Duration::from_secs(10)).unwrap();
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
        wait_for(&ctx, false, Duration::from_secs(10));
        let gone = t.elapsed();
        let t = Instant::now();
        g.plug().expect("bind again");
        let dev = wait_for(&ctx, true, Duration::from_secs(10)).unwrap();
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
    wait_for(&ctx, false, Duration::from_secs(10));
    assert!(!Path::new("/sys/kernel/config/usb_gadget")
        .join(NAME)
        .exists());
    assert!(!opts.mount_base.join(format!("ffs-{NAME}")).exists());
}
