//! Protocol selection (IFDHSetProtocolParameters) and the card-protocol
//! engines driven over XfrBlock for TPDU and character-level readers.

use super::slot::Slot;
use crate::error::{Error, Result};
use crate::ifd::protocol::{SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1};
use crate::proto::descriptor::Protocols;
use std::time::Duration;

/// Selects `protocol` for the card in `slot`.
pub fn set_protocol(slot: &Slot, protocol: u32, _flags: u8, _pts: [u8; 3]) -> Result<()> {
    let protocols = slot.device.caps().descriptor.protocols();
    let wanted = match protocol {
        SCARD_PROTOCOL_T0 => Protocols::T0,
        SCARD_PROTOCOL_T1 => Protocols::T1,
        p => return Err(Error::ProtocolNotSupported(format!("protocol {p:#x}"))),
    };
    if !protocols.contains(wanted) {
        return Err(Error::NotSupported(format!(
            "reader does not offer protocol {protocol:#x}"
        )));
    }
    let mut st = slot.lock();
    if st.atr.is_empty() {
        return Err(Error::IccAbsent);
    }
    st.protocol = Some(protocol);
    Ok(())
}

/// Exchanges through the driver's own T=0 / T=1 engine.
pub fn transmit_engine(
    _slot: &Slot,
    protocol: u32,
    _tx: &[u8],
    _timeout: Duration,
) -> Result<Vec<u8>> {
    Err(Error::ProtocolNotSupported(format!(
        "protocol {protocol:#x} at this exchange level"
    )))
}

/// Secure PIN entry on a TPDU reader with a T=1 card: the CCID command
/// must carry a T=1 block (prologue in bTeoPrologue), and the answer is a
/// T=1 block to check and unwrap.
pub fn secure_t1(_slot: &Slot, _data: &[u8], _timeout: Duration) -> Result<Vec<u8>> {
    Err(Error::ProtocolNotSupported(
        "secure PIN entry over T=1 at TPDU level".into(),
    ))
}
