//! A card-side T=0 responder at character level (ISO/IEC 7816-3:2006
//! §10.3 from the card's side), pure, for the simulator and for tests.
//!
//! The host writes bytes with [`T0Card::on_bytes`] and reads what the card
//! emitted with [`T0Card::read`]. The card receives a 5-byte header,
//! decides the direction of the command with [`T0CardConfig::outgoing`],
//! exchanges data with procedure bytes, and asks the caller's closure for
//! the response data and status. Response data to an incoming command
//! (case 4) are announced with `61XX` and fetched with GET RESPONSE.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use super::NULL;
use std::collections::VecDeque;

/// How the card behaves.
#[derive(Debug, Clone, Copy)]
pub struct T0CardConfig {
    /// True when the command with this header sends data to the host
    /// (case 2); otherwise P3 is the length of the data it receives.
    pub outgoing: fn(&[u8; 5]) -> bool,
    /// NULL bytes sent before each procedure byte.
    pub nulls: u8,
    /// Acknowledge byte by byte with INS ⊕ FF instead of INS.
    pub single_byte_acks: bool,
    /// Use the INS ⊕ 01 (and INS ⊕ FE) forms of the acknowledgements.
    pub xor01_acks: bool,
    /// Answer `6CXX` also when P3 is shorter than the data to send (a P3
    /// longer than the data always gets `6CXX`).
    pub exact_le: bool,
    /// Largest data sent in one GET RESPONSE before announcing the rest
    /// with `61XX` (1..=256).
    pub get_response_chunk: usize,
}

/// The default direction rule: the usual outgoing INS values of
/// ISO/IEC 7816-4 (READ BINARY, READ RECORD, GET CHALLENGE, GET DATA,
/// GET RESPONSE).
pub fn default_outgoing(header: &[u8; 5]) -> bool {
    matches!(
        header[1],
        0xB0 | 0xB1 | 0xB2 | 0xB3 | 0x84 | 0xCA | 0xCB | 0xC0
    )
}

impl Default for T0CardConfig {
    fn default() -> Self {
        T0CardConfig {
            outgoing: default_outgoing,
            nulls: 0,
            single_byte_acks: false,
            xor01_acks: false,
            exact_le: false,
            get_response_chunk: 256,
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    /// Collecting the 5-byte header.
    Header(Vec<u8>),
    /// Receiving `want` data bytes for `header`.
    Data {
        header: [u8; 5],
        data: Vec<u8>,
        want: usize,
    },
}

/// The card. See the module documentation.
#[derive(Debug, Clone)]
pub struct T0Card {
    cfg: T0CardConfig,
    state: State,
    out: VecDeque<u8>,
    pending: Vec<u8>,
    pending_sw: [u8; 2],
    commands: u64,
}

/// What the application answers: response data and SW1 SW2.
pub type T0App<'a> = dyn FnMut(&[u8; 5], &[u8]) -> (Vec<u8>, [u8; 2]) + 'a;

impl T0Card {
    /// A card ready for a command.
    pub fn new(cfg: T0CardConfig) -> Self {
        T0Card {
            cfg,
            state: State::Header(Vec::new()),
            out: VecDeque::new(),
            pending: Vec::new(),
            pending_sw: [0x90, 0x00],
            commands: 0,
        }
    }

    /// Commands handed to the application.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Bytes emitted and not read yet.
    pub fn available(&self) -> usize {
        self.out.len()
    }

    /// Takes up to `n` emitted bytes.
    pub fn read(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.out.len());
        self.out.drain(..n).collect()
    }

    fn emit_proc(&mut self, b: u8) {
        for _ in 0..self.cfg.nulls {
            self.out.push_back(NULL);
        }
        self.out.push_back(b);
    }

    fn emit_sw(&mut self, sw: [u8; 2]) {
        self.emit_proc(sw[0]);
        self.out.push_back(sw[1]);
    }

    fn ack(&self, ins: u8, single: bool) -> u8 {
        match (single, self.cfg.xor01_acks) {
            (false, false) => ins,
            (false, true) => ins ^ 0x01,
            (true, false) => ins ^ 0xFF,
            (true, true) => ins ^ 0xFE,
        }
    }

    /// Bytes written by the host.
    pub fn on_bytes(&mut self, bytes: &[u8], app: &mut T0App<'_>) {
        for &b in bytes {
            self.on_byte(b, app);
        }
    }

    fn on_byte(&mut self, b: u8, app: &mut T0App<'_>) {
        match std::mem::replace(&mut self.state, State::Header(Vec::new())) {
            State::Header(mut h) => {
                h.push(b);
                match <[u8; 5]>::try_from(h.as_slice()) {
                    Ok(header) => self.on_header(header, app),
                    Err(_) => self.state = State::Header(h),
                }
            }
            State::Data {
                header,
                mut data,
                want,
            } => {
                data.push(b);
                if data.len() < want {
                    if self.cfg.single_byte_acks {
                        let a = self.ack(header[1], true);
                        self.emit_proc(a);
                    }
                    self.state = State::Data { header, data, want };
                } else {
                    self.finish_incoming(header, &data, app);
                }
            }
        }
    }

    fn on_header(&mut self, header: [u8; 5], app: &mut T0App<'_>) {
        let ins = header[1];
        if matches!(ins & 0xF0, 0x60 | 0x90) {
            self.emit_sw([0x6D, 0x00]);
            return;
        }
        let p3 = usize::from(header[4]);
        if (self.cfg.outgoing)(&header) {
            let ne = if p3 == 0 { 256 } else { p3 };
            let (data, sw) = if ins == 0xC0 {
                // GET RESPONSE: at most one chunk; a P3 larger than what is
                // available gets `6CXX` with the exact length.
                let avail = self
                    .pending
                    .len()
                    .min(self.cfg.get_response_chunk.clamp(1, 256));
                if avail == 0 {
                    self.emit_sw([0x6F, 0x00]);
                    return;
                }
                if ne > avail {
                    self.emit_sw([0x6C, (avail % 256) as u8]);
                    return;
                }
                let chunk: Vec<u8> = self.pending.drain(..ne).collect();
                let sw = match self.pending.len() {
                    0 => self.pending_sw,
                    r => [0x61, (r.min(256) % 256) as u8],
                };
                (chunk, sw)
            } else {
                self.commands += 1;
                app(&header, &[])
            };
            let len = data.len().min(256);
            // Fewer bytes than P3 cannot be sent (§10.3.3): `6CXX` with the
            // exact length; more are cut to P3 unless `exact_le`.
            if len != 0 && (len < ne || (self.cfg.exact_le && len != ne)) {
                self.emit_sw([0x6C, (len % 256) as u8]);
                return;
            }
            let n = data.len().min(ne);
            let data = data.get(..n).unwrap_or_default();
            if !data.is_empty() {
                if self.cfg.single_byte_acks {
                    for &d in data {
                        let a = self.ack(ins, true);
                        self.emit_proc(a);
                        self.out.push_back(d);
                    }
                } else {
                    let a = self.ack(ins, false);
                    self.emit_proc(a);
                    self.out.extend(data.iter().copied());
                }
            }
            self.emit_sw(sw);
        } else if p3 == 0 {
            self.finish_incoming(header, &[], app);
        } else {
            let a = self.ack(ins, self.cfg.single_byte_acks);
            self.emit_proc(a);
            self.state = State::Data {
                header,
                data: Vec::new(),
                want: p3,
            };
        }
    }

    fn finish_incoming(&mut self, header: [u8; 5], data: &[u8], app: &mut T0App<'_>) {
        self.commands += 1;
        let (resp, sw) = app(&header, data);
        if resp.is_empty() {
            self.emit_sw(sw);
        } else {
            // §12.2.5: response data to case 4 wait for GET RESPONSE.
            let n = resp.len();
            self.pending = resp;
            self.pending_sw = sw;
            self.emit_sw([0x61, (n.min(256) % 256) as u8]);
        }
    }
}
