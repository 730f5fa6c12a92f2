//! Buffers of template-derived values (decrypted rows, probes, codes, lookup tables) that are
//! wiped when dropped.
//!
//! `Zeroizing<Vec<T>>` wipes too, but zeroize's `Vec` impl goes element by element, one volatile
//! store each: 512 stores for a probe on every lookup, and half a billion when a 1M gallery is
//! dropped. [`WipedVec`] wipes the elements as one slice, which zeroize fills in bulk behind an
//! optimisation barrier, and its spare capacity the same way.

use std::ops::{Deref, DerefMut};

use zeroize::{DefaultIsZeroes, Zeroize};

/// A `Vec` whose whole allocation, spare capacity included, is zeroed when it is dropped.
pub(crate) struct WipedVec<T: DefaultIsZeroes>(Vec<T>);

impl<T: DefaultIsZeroes> WipedVec<T> {
    pub(crate) fn new(values: Vec<T>) -> Self {
        Self(values)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }
}

impl<T: DefaultIsZeroes> Default for WipedVec<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: DefaultIsZeroes> Deref for WipedVec<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: DefaultIsZeroes> DerefMut for WipedVec<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: DefaultIsZeroes> WipedVec<T> {
    /// Zeroes every element and the spare capacity, and empties the buffer, keeping the
    /// allocation for reuse.
    pub(crate) fn wipe_and_clear(&mut self) {
        self.wipe();
        self.0.clear();
    }

    /// Zeroes every element and the spare capacity; the length stays.
    fn wipe(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.spare_capacity_mut().zeroize();
    }
}

impl<T: DefaultIsZeroes> Drop for WipedVec<T> {
    fn drop(&mut self) {
        self.wipe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_zeroes_every_element() {
        let mut floats = WipedVec::new(vec![1.5f32; 515]);
        floats.wipe();
        assert_eq!(floats.len(), 515);
        assert!(floats.iter().all(|value| value.to_bits() == 0));
        let mut bytes = WipedVec::with_capacity(100);
        bytes.extend_from_slice(&[0x5au8; 77]);
        bytes.wipe();
        assert!(bytes.iter().all(|byte| *byte == 0));
    }
}
