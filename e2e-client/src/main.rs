//! `e2e-client`: a PC/SC client for the end-to-end tests, built on the
//! `pcsc` crate (libpcsclite). It lists readers, connects, sends APDUs,
//! measures APDU round trips and the latency of reader and card events
//! seen through SCardGetStatusChange, and prints one machine-readable
//! record per line (see [`args::USAGE`]).
#![forbid(unsafe_code)]

mod apdu;
mod args;
mod hex;
mod session;
mod stats;

use args::{Command, Invocation, Parsed};
use session::{emit, emit_timing, Deadline, Origin};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let inv = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(inv)) => inv,
        Ok(Parsed::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("e2e-client: {msg}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&inv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("e2e-client: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(inv: &Invocation) -> Result<(), String> {
    let started = Instant::now();
    let deadline = Deadline::after(inv.timeout);
    let ctx = session::establish(deadline)?;
    match &inv.command {
        Command::List => {
            let names = session::matching(&ctx, &inv.reader)?;
            for n in &names {
                emit(&format!("READER {n}"));
            }
            if names.is_empty() {
                return Err(format!("no reader matching {:?}", inv.reader));
            }
            Ok(())
        }
        Command::WaitReader => {
            let origin = match (&inv.trigger, inv.t0_ms) {
                (Some(t), _) => session::fire(t)?,
                (None, Some(ms)) => Origin::EpochMs(ms),
                (None, None) => Origin::Instant(started),
            };
            let reader = session::wait_reader(&ctx, &inv.reader, deadline)?;
            emit_timing("reader_visible", origin.elapsed_ms());
            emit(&format!("READER {reader}"));
            if inv.card {
                let atr = session::wait_card(&ctx, &reader, true, &origin, deadline)?;
                emit_timing("card_present", origin.elapsed_ms());
                emit(&format!("ATR {}", hex::format(&atr)));
            }
            Ok(())
        }
        Command::WaitGone => {
            let present = session::matching(&ctx, &inv.reader)?;
            if present.is_empty() {
                return Err(format!("no reader matching {:?} to wait for", inv.reader));
            }
            for r in &present {
                emit(&format!("READER {r}"));
            }
            let origin = match &inv.trigger {
                Some(t) => session::fire(t)?,
                None => Origin::Instant(Instant::now()),
            };
            session::wait_gone(&ctx, &inv.reader, deadline)?;
            emit_timing("reader_gone", origin.elapsed_ms());
            Ok(())
        }
        Command::WaitCard(present) => {
            let reader = session::wait_reader(&ctx, &inv.reader, deadline)?;
            emit(&format!("READER {reader}"));
            let (state, _) = session::reader_state(&ctx, &reader)?;
            emit(&format!("STATE {}", session::state_flags(state)));
            let already = if *present {
                state.contains(pcsc::State::PRESENT)
            } else {
                state.contains(pcsc::State::EMPTY)
            };
            if already {
                return Err(format!(
                    "the card is already {} before the event",
                    if *present { "present" } else { "absent" }
                ));
            }
            let origin = match &inv.trigger {
                Some(t) => session::fire(t)?,
                None => Origin::Instant(Instant::now()),
            };
            let atr = session::wait_card(&ctx, &reader, *present, &origin, deadline)?;
            emit_timing(
                if *present {
                    "card_inserted"
                } else {
                    "card_removed"
                },
                origin.elapsed_ms(),
            );
            if *present {
                emit(&format!("ATR {}", hex::format(&atr)));
            }
            Ok(())
        }
        Command::Status => {
            let reader = session::wait_reader(&ctx, &inv.reader, deadline)?;
            emit(&format!("READER {reader}"));
            let (state, atr) = session::reader_state(&ctx, &reader)?;
            emit(&format!("STATE {}", session::state_flags(state)));
            if !state.contains(pcsc::State::PRESENT) {
                return Err("no card in the reader".into());
            }
            emit(&format!("ATR {}", hex::format(&atr)));
            let card = session::connect(&ctx, &reader)?;
            emit(&format!("PROTOCOL {}", session::protocol_name(&card)));
            session::disconnect(card)
        }
        Command::Apdu(list) => {
            let reader = session::wait_reader(&ctx, &inv.reader, deadline)?;
            let card = session::connect(&ctx, &reader)?;
            emit(&format!("READER {reader}"));
            emit(&format!("PROTOCOL {}", session::protocol_name(&card)));
            let mut failures = Vec::new();
            for exp in list {
                match session::exchange(&card, &exp.command) {
                    Ok(resp) => {
                        emit(&format!(
                            "APDU {} {}",
                            hex::format(&exp.command),
                            hex::format(&resp.bytes())
                        ));
                        if let Err(e) = session::check_sw(exp, &resp) {
                            failures.push(e);
                        }
                    }
                    Err(e) => failures.push(e),
                }
            }
            session::disconnect(card)?;
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("; "))
            }
        }
        Command::Bench(exp) => bench(&ctx, inv, exp, deadline),
    }
}

fn bench(
    ctx: &pcsc::Context,
    inv: &Invocation,
    exp: &apdu::Expectation,
    deadline: Deadline,
) -> Result<(), String> {
    let reader = session::wait_reader(ctx, &inv.reader, deadline)?;
    emit(&format!("READER {reader}"));
    let t = Instant::now();
    let card = session::connect(ctx, &reader)?;
    emit_timing("connect", t.elapsed().as_secs_f64() * 1000.0);
    emit(&format!("PROTOCOL {}", session::protocol_name(&card)));
    let mut samples = Vec::with_capacity(inv.count);
    let mut first: Option<Vec<u8>> = None;
    for i in 0..inv.count {
        let t = Instant::now();
        let resp =
            session::transmit(&card, &exp.command).map_err(|e| format!("round trip {i}: {e}"))?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        match &first {
            None => {
                let mut a = apdu::Assembled::default();
                a.push(&resp)?;
                session::check_sw(exp, &a)?;
                emit(&format!(
                    "APDU {} {}",
                    hex::format(&exp.command),
                    hex::format(&resp)
                ));
                first = Some(resp);
            }
            Some(f) if *f != resp => {
                return Err(format!(
                    "round trip {i}: response {} differs from the first one {}",
                    hex::format(&resp),
                    hex::format(f)
                ))
            }
            Some(_) => {}
        }
    }
    session::disconnect(card)?;
    let s = stats::summarize(&samples).ok_or("no samples")?;
    emit(&format!("COUNT {}", s.count));
    emit_timing("apdu_rtt_min", s.min);
    emit_timing("apdu_rtt_median", s.median);
    emit_timing("apdu_rtt_mean", s.mean);
    emit_timing("apdu_rtt_p95", s.p95);
    emit_timing("apdu_rtt_max", s.max);
    Ok(())
}
