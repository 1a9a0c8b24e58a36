//! CRC32C of objects: computed as data flows, stored as metadata, verified on download.

use crate::error::{Error, ErrorKind, Op, Result};
use crate::object::ObjectMeta;

/// The user-metadata entry holding an object's CRC32C (8 lowercase hex digits), written by
/// the transfer engine and verified by its downloads.
pub const CHECKSUM_METADATA: &str = "cloudstore-crc32c";

/// A running CRC32C (Castagnoli), hardware accelerated where the CPU has CRC instructions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crc32c {
    crc: u32,
    len: u64,
}

impl Crc32c {
    /// The CRC of nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A CRC known by its value and the length it covers.
    pub fn from_parts(value: u32, len: u64) -> Self {
        Crc32c { crc: value, len }
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.len += data.len() as u64;
    }

    /// The CRC of this data followed by `next`'s.
    pub fn combine(self, next: Crc32c) -> Crc32c {
        Crc32c {
            crc: crc32c::crc32c_combine(self.crc, next.crc, next.len as usize),
            len: self.len + next.len,
        }
    }

    /// The checksum value.
    pub fn value(&self) -> u32 {
        self.crc
    }

    /// Bytes covered.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no bytes were added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value as stored in [`CHECKSUM_METADATA`].
    pub fn to_hex(&self) -> String {
        format!("{:08x}", self.crc)
    }
}

/// The CRC an object's metadata declares, if any.
pub(crate) fn declared(meta: &ObjectMeta) -> Option<u32> {
    meta.metadata
        .get(CHECKSUM_METADATA)
        .and_then(|v| u32::from_str_radix(v.trim(), 16).ok())
}

/// Compares what was read with what the object declares.
pub(crate) fn verify(backend: &str, meta: &ObjectMeta, got: &Crc32c) -> Result<()> {
    match declared(meta) {
        Some(want) if want != got.value() => Err(Error::new(
            ErrorKind::ChecksumMismatch,
            Op::Get,
            backend,
            format!(
                "CRC32C of the {} bytes read is {:08x}, the object declares {want:08x}",
                got.len(),
                got.value()
            ),
        )
        .with_key(meta.key.as_str())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_and_combination() {
        // The CRC32C check value of "123456789".
        let mut c = Crc32c::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xe306_9283);
        let (mut a, mut b) = (Crc32c::new(), Crc32c::new());
        a.update(b"12345");
        b.update(b"6789");
        assert_eq!(a.combine(b), c);
        assert_eq!(c.to_hex(), "e3069283");
    }
}
