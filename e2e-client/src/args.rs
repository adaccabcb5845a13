//! Command-line parsing (no I/O): turns the argument list into a
//! [`Invocation`] or a usage error.
#![forbid(unsafe_code)]

use crate::apdu::Expectation;
use std::time::Duration;

/// Usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: e2e-client COMMAND [OPTIONS] [ARGS]

commands:
  list                       list the readers (one READER line each)
  wait-reader [--card]       wait until a matching reader is listed (and holds a card)
  wait-gone                  wait until no matching reader is listed
  wait-card present|absent   wait for a card event with SCardGetStatusChange
  status                     print the reader's state, ATR and negotiated protocol
  apdu APDU[=SW]...          connect and send each APDU (61xx/6Cxx handled);
                             SW = 2 or 4 hex digits the final status word must start with
  bench [--count N] APDU[=SW]
                             send one APDU N times, print round-trip statistics

options:
  --reader TEXT         use readers whose name contains TEXT (default: any reader)
  --timeout SECONDS     give up after this long (default 30)
  --t0-ms EPOCH_MS      measure wait-reader from this wall-clock time (ms since 1970)
  --trigger-file PATH   after reading the initial state, write --trigger-text and a
  --trigger-text TEXT   newline to PATH and measure the latency from that moment
  --count N             bench: number of round trips (default 200)

output (stdout, one record per line):
  READER <name> | STATE <flags> | ATR <hex> | PROTOCOL <T=0|T=1|RAW>
  APDU <command hex> <response hex> | EVENT <ms> <flags> | TIMING <name> <ms> | COUNT <n>
errors go to stderr; exit status 0 = success, 1 = check failed, 2 = usage error";

/// Where and what to write to cause the event being measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// File (a tty, a FIFO or a regular file) to write to.
    pub path: String,
    /// Line written to it.
    pub text: String,
}

/// The action requested on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// List readers.
    List,
    /// Wait for a reader to appear.
    WaitReader,
    /// Wait for the matching readers to disappear.
    WaitGone,
    /// Wait for a card insertion (`true`) or removal (`false`).
    WaitCard(bool),
    /// Print the reader and card state.
    Status,
    /// Send APDUs.
    Apdu(Vec<Expectation>),
    /// Round-trip benchmark of one APDU.
    Bench(Expectation),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// What to do.
    pub command: Command,
    /// Reader name filter (substring).
    pub reader: String,
    /// Overall time limit.
    pub timeout: Duration,
    /// Wall-clock reference for wait-reader, in ms since the Unix epoch.
    pub t0_ms: Option<u64>,
    /// Event trigger.
    pub trigger: Option<Trigger>,
    /// wait-reader: also wait for a card.
    pub card: bool,
    /// bench: number of round trips.
    pub count: usize,
}

/// Result of parsing: run, or print help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run this invocation.
    Run(Invocation),
    /// `--help` was given.
    Help,
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut it = args.into_iter();
    let mut positional = Vec::new();
    let mut reader = String::new();
    let mut timeout = Duration::from_secs(30);
    let mut t0_ms = None;
    let mut trigger_file = None;
    let mut trigger_text = None;
    let mut card = false;
    let mut count = 200usize;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--reader" => reader = value("--reader")?,
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --timeout {v:?}"))?;
                if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                    return Err(format!("--timeout {v:?} out of range"));
                }
                timeout = Duration::from_secs_f64(secs);
            }
            "--t0-ms" => {
                let v = value("--t0-ms")?;
                t0_ms = Some(v.parse().map_err(|_| format!("bad --t0-ms {v:?}"))?);
            }
            "--trigger-file" => trigger_file = Some(value("--trigger-file")?),
            "--trigger-text" => trigger_text = Some(value("--trigger-text")?),
            "--card" => card = true,
            "--count" => {
                let v = value("--count")?;
                count = v.parse().map_err(|_| format!("bad --count {v:?}"))?;
                if count == 0 || count > 1_000_000 {
                    return Err(format!("--count {v:?} out of range"));
                }
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let trigger = match (trigger_file, trigger_text) {
        (Some(path), Some(text)) => Some(Trigger { path, text }),
        (None, None) => None,
        _ => return Err("--trigger-file and --trigger-text go together".into()),
    };
    let mut pos = positional.into_iter();
    let name = pos.next().ok_or("missing COMMAND")?;
    let rest: Vec<String> = pos.collect();
    let no_args = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(format!("{name}: unexpected argument {:?}", rest[0]))
        }
    };
    let command = match name.as_str() {
        "list" => no_args(Command::List)?,
        "wait-reader" => no_args(Command::WaitReader)?,
        "wait-gone" => no_args(Command::WaitGone)?,
        "status" => no_args(Command::Status)?,
        "wait-card" => match rest.as_slice() {
            [w] if w == "present" => Command::WaitCard(true),
            [w] if w == "absent" => Command::WaitCard(false),
            _ => return Err("wait-card needs exactly one of: present, absent".into()),
        },
        "apdu" => {
            if rest.is_empty() {
                return Err("apdu needs at least one APDU".into());
            }
            Command::Apdu(
                rest.iter()
                    .map(|a| Expectation::parse(a))
                    .collect::<Result<_, _>>()?,
            )
        }
        "bench" => match rest.as_slice() {
            [a] => Command::Bench(Expectation::parse(a)?),
            _ => return Err("bench needs exactly one APDU".into()),
        },
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Parsed::Run(Invocation {
        command,
        reader,
        timeout,
        t0_ms,
        trigger,
        card,
        count,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Invocation, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(i) => Ok(i),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn wait_reader_with_options() {
        let i = run(&[
            "wait-reader",
            "--reader",
            "(1-0000",
            "--card",
            "--t0-ms",
            "1700000000123",
            "--timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(i.command, Command::WaitReader);
        assert_eq!(i.reader, "(1-0000");
        assert!(i.card);
        assert_eq!(i.t0_ms, Some(1_700_000_000_123));
        assert_eq!(i.timeout, Duration::from_millis(2500));
        assert_eq!(i.trigger, None);
    }

    #[test]
    fn trigger_needs_both_parts() {
        let i = run(&[
            "wait-card",
            "absent",
            "--trigger-file",
            "/dev/ttyS1",
            "--trigger-text",
            "E2E REQ 1 card-remove",
        ])
        .unwrap();
        assert_eq!(i.command, Command::WaitCard(false));
        assert_eq!(
            i.trigger,
            Some(Trigger {
                path: "/dev/ttyS1".into(),
                text: "E2E REQ 1 card-remove".into()
            })
        );
        assert!(run(&["wait-card", "absent", "--trigger-file", "/x"])
            .unwrap_err()
            .contains("together"));
    }

    #[test]
    fn apdu_and_bench_arguments() {
        let i = run(&["apdu", "00A4040000=6A82", "00CA9F7F00"]).unwrap();
        match i.command {
            Command::Apdu(list) => assert_eq!(list.len(), 2),
            other => panic!("unexpected {other:?}"),
        }
        let i = run(&["bench", "--count", "50", "00A4040000"]).unwrap();
        assert_eq!(i.count, 50);
        assert!(matches!(i.command, Command::Bench(_)));
        assert!(run(&["bench", "00A4040000", "00A4040000"]).is_err());
        assert!(run(&["bench", "--count", "0", "00A4040000"]).is_err());
        assert!(run(&["apdu"]).is_err());
    }

    #[test]
    fn usage_errors() {
        assert!(run(&[]).unwrap_err().contains("missing COMMAND"));
        assert!(run(&["frobnicate"])
            .unwrap_err()
            .contains("unknown command"));
        assert!(run(&["list", "--bogus"])
            .unwrap_err()
            .contains("unknown option"));
        assert!(run(&["list", "extra"])
            .unwrap_err()
            .contains("unexpected argument"));
        assert!(run(&["list", "--timeout"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(run(&["list", "--timeout", "-1"]).is_err());
        assert!(run(&["wait-card", "maybe"]).is_err());
        assert_eq!(parse(["--help".to_string()]).unwrap(), Parsed::Help);
    }
}
