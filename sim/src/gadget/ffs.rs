//! A mounted FunctionFS instance: `ep0` and the endpoint files.
#![forbid(unsafe_code)]

use super::ep0::{ControlEndpoint, Event, EVENT_LEN};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `ep0` of a FunctionFS mount.
pub struct Ep0File {
    file: File,
}

/// Opens an endpoint file non-blocking: in FunctionFS this makes I/O on a
/// disabled endpoint fail with EAGAIN instead of waiting for ENABLE.
pub fn open_endpoint(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

impl Ep0File {
    /// Opens `dir/ep0`, writes the descriptor and string blobs, and checks
    /// that the endpoint files appeared.
    pub fn open(
        dir: &Path,
        descriptors: &[u8],
        strings: &[u8],
        endpoints: usize,
    ) -> io::Result<Ep0File> {
        let path = dir.join("ep0");
        let mut file = open_endpoint(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        file.write_all(descriptors).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "writing the descriptors to {}: {e} (the kernel refused them)",
                    path.display()
                ),
            )
        })?;
        file.write_all(strings).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing the strings to {}: {e}", path.display()),
            )
        })?;
        for i in 1..=endpoints {
            let p = endpoint_path(dir, i);
            if !p.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} did not appear after the descriptors were written",
                        p.display()
                    ),
                ));
            }
        }
        Ok(Ep0File { file })
    }

    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// Path of endpoint file `epN`.
pub fn endpoint_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("ep{n}"))
}

/// Whether an error is FunctionFS's answer to a deliberate stall.
fn is_stall_result(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EL2HLT)
}

impl ControlEndpoint for Ep0File {
    fn next_event(&self, timeout: Duration) -> io::Result<Option<Event>> {
        if !self.wait_readable(timeout)? {
            return Ok(None);
        }
        // one record per read: the kernel marks a SETUP pending only when it
        // is the last record returned
        let mut rec = [0u8; EVENT_LEN];
        match (&self.file).read(&mut rec) {
            Ok(n) if n == EVENT_LEN => Event::parse(&rec)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ep0 returned {n} bytes, not a {EVENT_LEN}-byte event"),
            )),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&self, data: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(data)?;
        if n != data.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("ep0 took {n} of {} bytes", data.len()),
            ));
        }
        Ok(())
    }

    fn receive(&self, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = (&self.file).read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn stall(&self, is_in: bool) -> io::Result<()> {
        // the call in the wrong direction halts ep0 and fails with EL2HLT
        let r = if is_in {
            (&self.file).read(&mut []).map(|_| ())
        } else {
            (&self.file).write(&[]).map(|_| ())
        };
        match r {
            Err(e) if is_stall_result(&e) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(io::Error::other("ep0 accepted a call meant to stall")),
        }
    }
}
