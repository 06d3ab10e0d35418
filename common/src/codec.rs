//! What every transport carries for a request, with no I/O: the correlation that identifies one
//! request. How it travels is each transport's codec's business (MQTT 5: the Correlation Data
//! property, MQTT 3.1.1: a payload header, see `mqtt::codec`; NATS: a header).
//!
//! # Correlation (12 bytes, big endian)
//! `run: u32` (random per loadgen process, so replies to an earlier run are rejected),
//! `client: u32` (virtual client index), `seq: u32` (per-client request sequence).

use thiserror::Error;

/// Length of the correlation bytes produced by [`Correlation::to_bytes`].
pub const CORRELATION_LEN: usize = 12;

/// Identifies one request: the run, the virtual client and its sequence number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Correlation {
    pub run: u32,
    pub client: u32,
    pub seq: u32,
}

/// Correlation bytes of the wrong length.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Error)]
#[error("correlation has the wrong length")]
pub struct BadCorrelation;

impl Correlation {
    pub fn to_bytes(self) -> [u8; CORRELATION_LEN] {
        let mut out = [0u8; CORRELATION_LEN];
        out[0..4].copy_from_slice(&self.run.to_be_bytes());
        out[4..8].copy_from_slice(&self.client.to_be_bytes());
        out[8..12].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, BadCorrelation> {
        if b.len() != CORRELATION_LEN {
            return Err(BadCorrelation);
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(Correlation {
            run: word(0),
            client: word(4),
            seq: word(8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_bytes_are_big_endian() {
        let c = Correlation {
            run: 0x01020304,
            client: 7,
            seq: 0x0a0b0c0d,
        };
        assert_eq!(
            c.to_bytes(),
            [1, 2, 3, 4, 0, 0, 0, 7, 0x0a, 0x0b, 0x0c, 0x0d]
        );
        assert_eq!(Correlation::from_bytes(&c.to_bytes()).unwrap(), c);
        assert_eq!(Correlation::from_bytes(&[1, 2, 3]), Err(BadCorrelation));
    }
}
