//! `ccid-sim gadget`: presents N virtual readers as USB devices on
//! consecutive UDCs, and takes control words from a FIFO.
#![forbid(unsafe_code)]

use super::control::{self, ControlWord};
use super::{Gadget, GadgetOptions, VirtualReader};
use nix::sys::signal::{SigSet, Signal};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Usage text of the subcommand.
pub const USAGE: &str = "\
usage: ccid-sim gadget --descriptor FILE [options]

Presents virtual readers as real USB devices through the kernel's USB gadget
framework (configfs + FunctionFS) on dummy_hcd's UDCs, so that the host side
of the same kernel (usbcore, udev, libusb, pcscd and its driver) sees them.
Needs root and the modules dummy_hcd (num >= udc-base + count), libcomposite
and usb_f_fs, with configfs mounted on /sys/kernel/config.

options:
  --descriptor FILE    the reader's descriptor dump (the `parse` tool's output)
  --interface N        which CCID interface of the dump (default 0)
  --count N            readers to present (default 1), on dummy_udc.K .. K+N-1
  --udc-base K         first UDC index (default 0)
  --serial-prefix S    serial numbers are S<udc index> (default ccid-sim-)
  --atr HEX            the ATR of the virtual cards
  --int-mps N          interrupt wMaxPacketSize, 1 to 64 (default: the smallest
                       of 8/16/32/64 larger than every notification; a smaller
                       one reproduces lost notifications on purpose)
  --mount-dir DIR      where the FunctionFS instances are mounted (default /dev)
  --ctl FIFO           read control words from FIFO (created when missing)
  --ready-file F       written once every reader is set up and bound
  --unbound            set up but do not bind: wait for `plug`
  --verbose            log every CCID message
  -h, --help

control words (one per line on the FIFO):
  plug [i] | unplug [i]          bind/unbind reader i (all without i)
  remove <i> <slot> | insert <i> <slot>
                                  take out / put back the card of a slot
  stats | verbose 0|1 | quit

SIGTERM, SIGINT and SIGHUP tear everything down like `quit`.";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The descriptor dump.
    pub descriptor: PathBuf,
    /// CCID interface index within the dump.
    pub interface: usize,
    /// Number of readers.
    pub count: usize,
    /// First UDC index.
    pub udc_base: usize,
    /// Serial number prefix.
    pub serial_prefix: String,
    /// ATR of the cards.
    pub atr: Option<Vec<u8>>,
    /// Interrupt wMaxPacketSize override.
    pub interrupt_packet_size: Option<u16>,
    /// FunctionFS mount base.
    pub mount_dir: PathBuf,
    /// Control FIFO.
    pub ctl: Option<PathBuf>,
    /// Ready file.
    pub ready_file: Option<PathBuf>,
    /// Do not bind at start.
    pub unbound: bool,
    /// Log every message.
    pub verbose: bool,
}

/// What the reader factory is asked to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSpec {
    /// The descriptor dump.
    pub descriptor: PathBuf,
    /// CCID interface index within the dump.
    pub interface: usize,
    /// ATR of the cards, when given.
    pub atr: Option<Vec<u8>>,
    /// Index of this reader among those presented.
    pub index: usize,
    /// Its serial number string.
    pub serial: String,
}

/// The result of parsing the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these options.
    Run(Options),
    /// Print the usage.
    Help,
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!(
            "--atr: {text:?} is not an even number of hex digits"
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("--atr: {text:?} is not hex"))
        })
        .collect()
}

/// Parses the arguments after `gadget`.
pub fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options {
        descriptor: PathBuf::new(),
        interface: 0,
        count: 1,
        udc_base: 0,
        serial_prefix: "ccid-sim-".into(),
        atr: None,
        interrupt_packet_size: None,
        mount_dir: PathBuf::from("/dev"),
        ctl: None,
        ready_file: None,
        unbound: false,
        verbose: false,
    };
    let mut descriptor = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |name: &str, v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--descriptor" => descriptor = Some(PathBuf::from(value(a)?)),
            "--interface" => o.interface = num(a, value(a)?)?,
            "--count" => o.count = num(a, value(a)?)?,
            "--udc-base" => o.udc_base = num(a, value(a)?)?,
            "--serial-prefix" => o.serial_prefix = value(a)?,
            "--atr" => o.atr = Some(parse_hex(&value(a)?)?),
            "--int-mps" => {
                let v = num(a, value(a)?)?;
                o.interrupt_packet_size =
                    Some(u16::try_from(v).map_err(|_| format!("--int-mps {v} is too large"))?);
            }
            "--mount-dir" => o.mount_dir = PathBuf::from(value(a)?),
            "--ctl" => o.ctl = Some(PathBuf::from(value(a)?)),
            "--ready-file" => o.ready_file = Some(PathBuf::from(value(a)?)),
            "--unbound" => o.unbound = true,
            "--verbose" => o.verbose = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    o.descriptor = descriptor.ok_or("--descriptor FILE is required")?;
    if o.count == 0 || o.count > 32 {
        return Err(format!(
            "--count {}: between 1 and 32 (dummy_hcd offers at most 32 UDCs)",
            o.count
        ));
    }
    if o.udc_base + o.count > 32 {
        return Err("--udc-base + --count exceed dummy_hcd's 32 UDCs".into());
    }
    if o.serial_prefix.is_empty() || o.serial_prefix.chars().any(|c| c.is_control()) {
        return Err("--serial-prefix must be non-empty printable text".into());
    }
    Ok(Parsed::Run(o))
}

impl Options {
    /// The gadget settings of reader `i`.
    pub fn gadget(&self, i: usize) -> GadgetOptions {
        let udc = self.udc_base + i;
        GadgetOptions {
            name: format!("ccidsim{udc}"),
            udc: format!("dummy_udc.{udc}"),
            serial: format!("{}{udc}", self.serial_prefix),
            mount_base: self.mount_dir.clone(),
            interrupt_packet_size: self.interrupt_packet_size,
            verbose: self.verbose,
        }
    }

    /// What reader `i` is built from.
    pub fn reader(&self, i: usize) -> ReaderSpec {
        ReaderSpec {
            descriptor: self.descriptor.clone(),
            interface: self.interface,
            atr: self.atr.clone(),
            index: i,
            serial: self.gadget(i).serial,
        }
    }
}

/// Events the main loop waits for.
enum Input {
    Word(ControlWord),
    Bad(String),
    Signal(Signal),
    Closed(String),
}

fn log(text: &str) {
    eprintln!("[ccid-sim gadget] {text}");
}

/// The readers presented, and the control words applied to them.
pub struct Bank {
    gadgets: Vec<Gadget>,
}

impl Bank {
    /// The gadgets.
    pub fn gadgets(&self) -> &[Gadget] {
        &self.gadgets
    }

    fn select(&mut self, index: Option<usize>) -> Result<Vec<&mut Gadget>, String> {
        let n = self.gadgets.len();
        match index {
            None => Ok(self.gadgets.iter_mut().collect()),
            Some(i) => match self.gadgets.get_mut(i) {
                Some(g) => Ok(vec![g]),
                None => Err(format!("no reader {i} (there are {n})")),
            },
        }
    }

    /// Applies one control word; returns what to log. `Quit` is the
    /// caller's business.
    pub fn apply(&mut self, word: &ControlWord) -> Result<String, String> {
        match word {
            ControlWord::Plug(i) => {
                let mut done = Vec::new();
                for g in self.select(*i)? {
                    g.plug().map_err(|e| format!("plug {}: {e}", g.name()))?;
                    done.push(format!("{} on {}", g.name(), g.udc()));
                }
                Ok(format!("plugged {}", done.join(", ")))
            }
            ControlWord::Unplug(i) => {
                let mut done = Vec::new();
                for g in self.select(*i)? {
                    g.unplug()
                        .map_err(|e| format!("unplug {}: {e}", g.name()))?;
                    done.push(g.name().to_string());
                }
                Ok(format!("unplugged {}", done.join(", ")))
            }
            ControlWord::Remove { reader, slot } | ControlWord::Insert { reader, slot } => {
                let present = matches!(word, ControlWord::Insert { .. });
                let g = self.select(Some(*reader))?.pop().ok_or("no reader")?;
                g.set_card_present(*slot, present)?;
                Ok(format!(
                    "card {} slot {slot} of reader {reader} ({})",
                    if present {
                        "inserted in"
                    } else {
                        "removed from"
                    },
                    g.name()
                ))
            }
            ControlWord::Stats => Ok(self
                .gadgets
                .iter()
                .map(|g| {
                    format!(
                        "{} {} {}: {}",
                        g.name(),
                        if g.is_plugged() {
                            "plugged"
                        } else {
                            "unplugged"
                        },
                        g.enabled_after()
                            .map(|d| format!("configured {} ms after bind", d.as_millis()))
                            .unwrap_or_else(|| "not configured".into()),
                        g.stats()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")),
            ControlWord::Verbose(on) => {
                for g in &self.gadgets {
                    g.set_verbose(*on);
                }
                Ok(format!("verbose {}", u8::from(*on)))
            }
            ControlWord::Quit => Ok("quit".into()),
        }
    }

    /// Tears every gadget down; returns the errors.
    pub fn close(self) -> Vec<String> {
        self.gadgets
            .into_iter()
            .filter_map(|g| g.close().err())
            .collect()
    }
}

fn write_ready_file(path: &Path, bank: &Bank, bound: bool) -> std::io::Result<()> {
    let mut text = format!(
        "{} {}\n",
        if bound { "bound" } else { "unbound" },
        bank.gadgets.len()
    );
    for (i, g) in bank.gadgets.iter().enumerate() {
        text.push_str(&format!(
            "reader {i} {} {} {} {}\n",
            g.name(),
            g.udc(),
            g.serial(),
            g.slots()
        ));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn open_fifo(path: &Path) -> Result<std::fs::File, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => {}
        Ok(_) => return Err(format!("--ctl {}: not a FIFO", path.display())),
        Err(_) => nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("mkfifo {}: {e}", path.display()))?,
    }
    // read and write: the FIFO never reports end-of-file when a writer
    // closes it
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// Runs the subcommand; `build` makes the virtual reader for each
/// [`ReaderSpec`]. Returns the exit status.
pub fn run(args: &[String], build: &dyn Fn(&ReaderSpec) -> Result<VirtualReader, String>) -> i32 {
    let opts = match parse_args(args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            // a closed stdout (`| head`) is not an error worth a panic
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("ccid-sim gadget: {e}\n\n{USAGE}");
            return 2;
        }
    };
    // the signals go to one thread waiting for them: block them before any
    // other thread exists, so that every thread inherits the mask
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        log(&format!("cannot block signals: {e}"));
        return 1;
    }
    let (tx, rx) = mpsc::channel::<Input>();
    {
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Ok(sig) = signals.wait() {
                    let _ = tx.send(Input::Signal(sig));
                }
            });
        if let Err(e) = spawned {
            log(&format!("cannot start the signal thread: {e}"));
            return 1;
        }
    }

    let t0 = Instant::now();
    let mut bank = Bank {
        gadgets: Vec::new(),
    };
    for i in 0..opts.count {
        let spec = opts.reader(i);
        let reader = match build(&spec) {
            Ok(r) => r,
            Err(e) => {
                log(&format!("reader {i}: {e}"));
                bank.close();
                return 1;
            }
        };
        match Gadget::create(reader, &opts.gadget(i)) {
            Ok(g) => bank.gadgets.push(g),
            Err(e) => {
                log(&format!("reader {i}: {e}"));
                for e in bank.close() {
                    log(&e);
                }
                return 1;
            }
        }
    }
    let info = bank
        .gadgets
        .first()
        .map(|g| g.reader.transport.info().clone())
        .unwrap_or_default();
    log(&format!(
        "{} reader(s) {:04x}:{:04x} ({} slot(s)) set up in {} ms: {}",
        bank.gadgets.len(),
        info.vendor_id,
        info.product_id,
        bank.gadgets.first().map(|g| g.slots()).unwrap_or(0),
        t0.elapsed().as_millis(),
        bank.gadgets
            .iter()
            .map(|g| format!("{}={}", g.name(), g.serial()))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    if !opts.unbound {
        match bank.apply(&ControlWord::Plug(None)) {
            Ok(m) => log(&m),
            Err(e) => {
                log(&e);
                for e in bank.close() {
                    log(&e);
                }
                return 1;
            }
        }
    }
    if let Some(ctl) = &opts.ctl {
        let file = match open_fifo(ctl) {
            Ok(f) => f,
            Err(e) => {
                log(&e);
                for e in bank.close() {
                    log(&e);
                }
                return 1;
            }
        };
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for line in BufReader::new(file).lines() {
                    let input = match line {
                        Ok(l) => match control::parse(&l) {
                            Ok(Some(w)) => Input::Word(w),
                            Ok(None) => continue,
                            Err(e) => Input::Bad(e),
                        },
                        Err(e) => Input::Closed(format!("control FIFO: {e}")),
                    };
                    let closed = matches!(input, Input::Closed(_));
                    if tx.send(input).is_err() || closed {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            log(&format!("cannot start the control thread: {e}"));
            for e in bank.close() {
                log(&e);
            }
            return 1;
        }
    }
    if let Some(path) = &opts.ready_file {
        if let Err(e) = write_ready_file(path, &bank, !opts.unbound) {
            log(&format!("ready file {}: {e}", path.display()));
        }
    }
    drop(tx);

    loop {
        match rx.recv_timeout(Duration::from_secs(3600)) {
            Ok(Input::Word(ControlWord::Quit)) => {
                log("quit");
                break;
            }
            Ok(Input::Word(w)) => match bank.apply(&w) {
                Ok(m) => log(&m),
                Err(e) => log(&format!("{w:?}: {e}")),
            },
            Ok(Input::Bad(e)) => log(&e),
            Ok(Input::Signal(s)) => {
                log(&format!("{s}: tearing down"));
                break;
            }
            Ok(Input::Closed(e)) => log(&e),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // no control FIFO: wait for a signal only
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    if let Ok(m) = bank.apply(&ControlWord::Stats) {
        for line in m.lines() {
            log(line);
        }
    }
    let errors = bank.close();
    for e in &errors {
        log(&format!("teardown: {e}"));
    }
    if let Some(path) = &opts.ready_file {
        let _ = std::fs::remove_file(path);
    }
    if errors.is_empty() {
        log("torn down cleanly");
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_and_names() {
        let Parsed::Run(o) = parse_args(&args("--descriptor d.txt")).unwrap() else {
            panic!("help")
        };
        assert_eq!(o.count, 1);
        assert_eq!(o.udc_base, 0);
        let g = o.gadget(0);
        assert_eq!(g.name, "ccidsim0");
        assert_eq!(g.udc, "dummy_udc.0");
        assert_eq!(g.serial, "ccid-sim-0");
        assert_eq!(g.mount_base, Path::new("/dev"));
        assert!(!o.unbound);
    }

    #[test]
    fn a_bank_of_twelve() {
        let a = args(
            "--descriptor sysmocom_sysmoOCTSIM.txt --count 12 --udc-base 2 --serial-prefix SIMBANK- \
             --ctl /run/ctl --ready-file /run/ready --atr 3B:02:14:50 --int-mps 16 --unbound --verbose",
        );
        let Parsed::Run(o) = parse_args(&a).unwrap() else {
            panic!("help")
        };
        assert_eq!(o.count, 12);
        assert_eq!(o.atr, Some(vec![0x3B, 0x02, 0x14, 0x50]));
        assert_eq!(o.interrupt_packet_size, Some(16));
        assert!(o.unbound && o.verbose);
        let serials: Vec<String> = (0..12).map(|i| o.gadget(i).serial).collect();
        assert_eq!(serials[0], "SIMBANK-2");
        assert_eq!(serials[11], "SIMBANK-13");
        let mut unique = serials.clone();
        unique.dedup();
        assert_eq!(unique.len(), 12);
        assert_eq!(o.gadget(11).udc, "dummy_udc.13");
        let r = o.reader(5);
        assert_eq!(r.index, 5);
        assert_eq!(r.serial, "SIMBANK-7");
        assert_eq!(r.atr, o.atr);
    }

    #[test]
    fn errors_are_explained() {
        assert_eq!(parse_args(&args("--help")), Ok(Parsed::Help));
        for (a, want) in [
            ("", "--descriptor"),
            ("--descriptor", "needs a value"),
            ("--descriptor d --count 0", "between 1 and 32"),
            ("--descriptor d --count 33", "between 1 and 32"),
            ("--descriptor d --count 4 --udc-base 30", "32 UDCs"),
            ("--descriptor d --atr 3B0", "even number"),
            ("--descriptor d --atr zz", "not hex"),
            ("--descriptor d --int-mps 70000", "too large"),
            ("--descriptor d --count x", "not a number"),
            ("--descriptor d --frobnicate", "unknown option"),
        ] {
            let e = parse_args(&args(a)).unwrap_err();
            assert!(e.contains(want), "{a}: {e}");
        }
    }
}
