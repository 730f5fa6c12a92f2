//! Buffers of template-derived values (decrypted rows, probes, codes, lookup tables) that are
//! wiped when dropped.
//!
//! `Zeroizing<Vec<T>>` wipes too, but zeroize's `Vec` impl goes element by element, one volatile
//! store each: 512 stores for a probe on every lookup, and half a billion when a 1M gallery is
//! dropped. [`WipedVec`] wipes the elements as one slice, which zeroize fills in bulk behind an
//! optimisation barrier, and its spare capacity the same way.

use std::ops::{Deref, DerefMut};

use zeroize::{DefaultIsZeroes, Zeroize};

/// A buffer whose whole allocation, spare capacity included, is zeroed when it is dropped.
///
/// It reaches its values only as a slice: `Vec`'s own `push` or `extend` would move the values
/// to a larger allocation and free the old one unwiped. Every way it grows here
/// ([`WipedVec::reserve`], [`WipedVec::extend_from_slice`], [`WipedVec::extend_mapped`],
/// [`WipedVec::push`]) moves the values itself and wipes the allocation it leaves.
pub(crate) struct WipedVec<T: DefaultIsZeroes>(Vec<T>);

impl<T: DefaultIsZeroes> WipedVec<T> {
    pub(crate) fn new(values: Vec<T>) -> Self {
        Self(values)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// Makes room for at least `additional` more values. When the allocation must grow, the
    /// values move to a new one of exactly the room asked for, and the old one is wiped.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.0.len().saturating_add(additional);
        if needed <= self.0.capacity() {
            return;
        }
        let mut larger = Vec::with_capacity(needed);
        larger.extend_from_slice(&self.0);
        // The old allocation is dropped as a `WipedVec`: wiped, then freed.
        drop(std::mem::replace(self, Self(larger)));
    }

    /// Appends `values`, growing the allocation (see [`WipedVec::reserve`]) when needed.
    pub(crate) fn extend_from_slice(&mut self, values: &[T]) {
        self.reserve(values.len());
        self.0.extend_from_slice(values);
    }

    /// Appends `value`, doubling the allocation (see [`WipedVec::reserve`]) when full.
    pub(crate) fn push(&mut self, value: T) {
        if self.0.len() == self.0.capacity() {
            self.reserve(self.0.capacity().max(4));
        }
        self.0.push(value);
    }

    /// Appends `map` of each of `values`. Room for them all is made first (see
    /// [`WipedVec::reserve`]), so the copy never reallocates; a slice's exact length lets it
    /// vectorise.
    #[inline(always)]
    pub(crate) fn extend_mapped<S>(&mut self, values: &[S], map: impl FnMut(&S) -> T) {
        self.reserve(values.len());
        self.0.extend(values.iter().map(map));
    }

    /// Sets the length to `len`, new values being `value` (see [`WipedVec::reserve`] for growth).
    pub(crate) fn resize(&mut self, len: usize, value: T) {
        if len <= self.0.len() {
            self.truncate(len);
        } else {
            self.reserve(len - self.0.len());
            self.0.resize(len, value);
        }
    }

    /// Shortens to `len` values, wiping those removed.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.0.len() {
            self.0[len..].zeroize();
            self.0.truncate(len);
        }
    }

    /// Empties the buffer, wiping its values; the allocation stays for reuse.
    pub(crate) fn clear(&mut self) {
        self.wipe_and_clear();
    }

    /// Replaces the buffer with an empty one of `capacity`, wiping the old.
    pub(crate) fn reset_with_capacity(&mut self, capacity: usize) {
        drop(std::mem::replace(self, Self::with_capacity(capacity)));
    }

    /// Zeroes every element and the spare capacity, and empties the buffer, keeping the
    /// allocation for reuse.
    pub(crate) fn wipe_and_clear(&mut self) {
        self.wipe();
        self.0.clear();
    }

    /// Zeroes every element and the spare capacity; the length stays.
    pub(crate) fn wipe(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.spare_capacity_mut().zeroize();
    }

    /// The spare capacity, for a caller that fills it in place (see [`WipedVec::fill_spare`]).
    pub(crate) fn spare_capacity_mut(&mut self) -> &mut [std::mem::MaybeUninit<T>] {
        self.0.spare_capacity_mut()
    }
}

impl<T: DefaultIsZeroes> Default for WipedVec<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: DefaultIsZeroes> Deref for WipedVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: DefaultIsZeroes> DerefMut for WipedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T: DefaultIsZeroes> Drop for WipedVec<T> {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Writes bytes into a [`WipedVec`] without ever growing it: a write past its capacity fails
/// instead. For serialisers whose output size is worked out first (see [`json`]).
pub(crate) struct FixedWriter<'a>(&'a mut WipedVec<u8>);

impl std::io::Write for FixedWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = self.0 .0.capacity() - self.0 .0.len();
        if bytes.len() > room {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "the output is larger than its buffer was sized for",
            ));
        }
        self.0 .0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts the bytes written to it and keeps none.
struct CountingWriter(usize);

impl std::io::Write for CountingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON in a buffer of exactly its size, zeroed on drop: it is serialised once to
/// count its bytes and once into the buffer, which never grows, so no copy is left behind.
/// `limit` bounds the size: a larger value is refused before anything is allocated.
pub(crate) fn json<T: serde::Serialize>(value: &T, limit: usize) -> Result<WipedVec<u8>, JsonTooLarge> {
    let mut counter = CountingWriter(0);
    serde_json::to_writer(&mut counter, value).map_err(|_| JsonTooLarge(0))?;
    if counter.0 > limit {
        return Err(JsonTooLarge(counter.0));
    }
    let mut buffer = WipedVec::with_capacity(counter.0);
    serde_json::to_writer(FixedWriter(&mut buffer), value).map_err(|_| JsonTooLarge(counter.0))?;
    Ok(buffer)
}

/// [`json`]'s value did not fit its limit (or, with 0, could not be serialised): the size it
/// would have had.
#[derive(Debug)]
pub(crate) struct JsonTooLarge(pub usize);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Regression (review item 5): the export sized its plaintext buffer from an estimate that
    /// left out the guardian text, so a long, escaped guardian made it reallocate and leave an
    /// unwiped copy. The buffer is now exactly the JSON's size, and filling it never grows it.
    #[test]
    fn json_fills_a_buffer_of_exactly_its_size() {
        // Quotes, backslashes and non-ASCII escape to several bytes each.
        let guardian = "\"Wang\\Fang\" \u{4e00}, mother".repeat(150);
        let value = serde_json::json!({"guardian": guardian, "method": "signed form", "n": [1, 2, 3]});
        let buffer = json(&value, 1 << 20).unwrap();
        assert_eq!(buffer.len(), buffer.capacity());
        assert_eq!(buffer.as_slice(), serde_json::to_vec(&value).unwrap().as_slice());
        let Err(too_large) = json(&value, buffer.len() - 1) else {
            panic!("a value over its limit was serialised");
        };
        assert_eq!(too_large.0, buffer.len());
    }

    /// Regression (review item 6): `WipedVec` dereferenced to `Vec`, whose growth frees the old
    /// allocation unwiped. Growth here moves the values itself; they arrive whole.
    #[test]
    fn growing_keeps_every_value() {
        let mut values = WipedVec::with_capacity(2);
        values.extend_from_slice(&[1u32, 2]);
        values.push(3);
        values.extend_mapped(&[4u8, 5, 6], |value| u32::from(*value));
        values.extend_from_slice(&[7; 100]);
        assert_eq!(&values[..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(values.len(), 106);
        values.truncate(3);
        values.resize(5, 9);
        assert_eq!(values.as_slice(), &[1, 2, 3, 9, 9]);
        let mut fixed = WipedVec::with_capacity(4);
        let mut writer = FixedWriter(&mut fixed);
        assert!(std::io::Write::write_all(&mut writer, b"abcd").is_ok());
        assert!(std::io::Write::write_all(&mut writer, b"e").is_err());
        assert_eq!(fixed.capacity(), 4);
    }

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
