//! `ccid-sim`: virtual CCID readers on the command line.
#![forbid(unsafe_code)]

const USAGE: &str = "usage: ccid-sim <command> [args]

commands:
  dump FILE          print what was read from a descriptor dump
  coverage DIR       check the reader model against every dump in DIR
  session ...        open, power, negotiate and exchange APDUs through the driver (session -h)
  replay ...         replay recorded traces through the driver (replay -h)
  gadget ...         present virtual readers as USB devices (gadget -h)
  bench-multislot .. aggregate APDU/s of multi-slot readers through the IFDH functions (bench-multislot -h)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let code = match args.first().map(String::as_str) {
        Some("dump") => ccid_sim::cli::dump(rest),
        Some("coverage") => ccid_sim::cli::coverage(rest),
        // --- replay subcommand (ccid_sim::replay) ---
        Some("replay") => ccid_sim::replay::cli(rest),
        // --- end of replay subcommand ---
        Some("bench-multislot") => ccid_sim::bench::cli(rest),
        Some("session") => ccid_sim::session::cli(rest),
        Some("gadget") => ccid_sim::gadget::cli::run(rest, &ccid_sim::cli::gadget_reader),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            0
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
