//! Subject identifiers: opaque random 128-bit values. The vault never holds names or identity
//! numbers (Art. 11); the host keeps the mapping from its own people to these IDs elsewhere.

use std::fmt;
use std::str::FromStr;

use crate::crypto;
use crate::error::Error;

/// An enrolled person's opaque identifier, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId([u8; 16]);

impl SubjectId {
    /// A fresh random identifier.
    pub(crate) fn random() -> Result<Self, Error> {
        Ok(Self(crypto::random_array()?))
    }

    /// The identifier's 16 bytes, as stored and as bound into associated data.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl SubjectId {
    /// The 32 lowercase hex digits, without the formatting machinery (this runs on every lookup's
    /// audit record).
    pub(crate) fn hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 15)];
        }
        out
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        // Only ASCII hex digits were written, so this cannot fail.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({self})")
    }
}

impl FromStr for SubjectId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidArgument {
            what: "subject id",
            reason: "expected 32 hexadecimal digits".into(),
        };
        // from_str_radix alone would also take a sign ("+a"); only hex digits make an ID.
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(Self(bytes))
    }
}

impl serde::Serialize for SubjectId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = SubjectId([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(16));
        assert_eq!(text.parse::<SubjectId>().ok(), Some(id));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "abc",
            &"zz".repeat(16),
            &"ab".repeat(17),
            "é".repeat(16).as_str(),
            &"+a".repeat(16),
        ] {
            assert!(bad.parse::<SubjectId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn random_ids_differ() {
        let a = SubjectId::random().ok();
        let b = SubjectId::random().ok();
        assert!(a.is_some() && a != b);
    }
}
