//! Template input and its validation. Every template and probe passes through [`normalise_rows`]
//! before the vault stores or compares it: the dimension must match, every value must be finite,
//! and each row must have a length to normalise. Rows are L2-normalised so that the inner product
//! is the cosine similarity.

use crate::wiped::WipedVec;

use crate::error::TemplateError;

/// The most rows one call accepts (a batch enrolment of a whole building's staff fits easily).
pub const MAX_ROWS_PER_CALL: usize = 10_000_000;

/// Rows whose length is below this are treated as zero vectors: normalising them would amplify noise.
pub(crate) const MIN_NORM: f64 = 1e-6;

/// Templates or probes handed to the vault: f32 values, or the raw little-endian bytes of a
/// `.f32` file, optionally tagged with the face model that produced them. Nothing is checked until
/// the vault validates it inside its door, so that a malformed input is refused and audited like
/// any other.
#[derive(Clone, Copy)]
pub struct TemplateInput<'a> {
    data: Data<'a>,
    model: Option<&'a str>,
}

#[derive(Clone, Copy)]
enum Data<'a> {
    Values(&'a [f32]),
    LeBytes(&'a [u8]),
}

impl<'a> TemplateInput<'a> {
    /// Values in memory, row after row.
    pub fn values(values: &'a [f32]) -> Self {
        Self {
            data: Data::Values(values),
            model: None,
        }
    }

    /// Raw little-endian f32 bytes, row after row.
    pub fn le_bytes(bytes: &'a [u8]) -> Self {
        Self {
            data: Data::LeBytes(bytes),
            model: None,
        }
    }

    /// Declares the face model these came from: the vault takes them as that model's, and
    /// refuses them if it does not have the model or has retired it. Input that declares none
    /// is taken as the default model's (the oldest the vault has not retired).
    pub fn from_model(self, model: &'a str) -> Self {
        Self {
            model: Some(model),
            ..self
        }
    }
}

impl<'a> TemplateInput<'a> {
    /// The face model the caller says these came from, if it said.
    pub(crate) fn declared_model(&self) -> Option<&'a str> {
        self.model
    }
}

impl std::fmt::Debug for TemplateInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.data {
            Data::Values(v) => write!(f, "TemplateInput([{} values REDACTED])", v.len()),
            Data::LeBytes(b) => write!(f, "TemplateInput([{} bytes REDACTED])", b.len()),
        }
    }
}

impl TemplateInput<'_> {
    /// Starts loading the input into cache, so that a lookup's wait for its probe overlaps its
    /// wait for the gallery.
    pub(crate) fn prefetch(&self) {
        match self.data {
            Data::Values(values) => crate::gallery::kernels::prefetch(values),
            Data::LeBytes(bytes) => crate::gallery::kernels::prefetch(bytes),
        }
    }
}

impl<'a> From<&'a [f32]> for TemplateInput<'a> {
    fn from(values: &'a [f32]) -> Self {
        Self::values(values)
    }
}

impl<'a> From<&'a Vec<f32>> for TemplateInput<'a> {
    fn from(values: &'a Vec<f32>) -> Self {
        Self::values(values)
    }
}

impl<'a, const N: usize> From<&'a [f32; N]> for TemplateInput<'a> {
    fn from(values: &'a [f32; N]) -> Self {
        Self::values(values)
    }
}

/// How many rows the input must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowCount {
    One,
    AtLeastOne,
}

/// Validates `input` as rows of `dim` values and returns them L2-normalised, in a buffer that is
/// zeroed when dropped.
pub(crate) fn normalise_rows(
    input: TemplateInput<'_>,
    dim: usize,
    model: &str,
    count: RowCount,
) -> Result<WipedVec<f32>, TemplateError> {
    let mut out = WipedVec::default();
    normalise_rows_into(input, dim, model, count, &mut out)?;
    Ok(out)
}

/// [`normalise_rows`] into `out`, which is emptied first: a lookup reuses one buffer rather than
/// allocate for every probe. On an error `out` holds nothing.
pub(crate) fn normalise_rows_into(
    input: TemplateInput<'_>,
    dim: usize,
    model: &str,
    count: RowCount,
    out: &mut WipedVec<f32>,
) -> Result<(), TemplateError> {
    out.clear();
    if let Some(declared) = input.model.filter(|declared| *declared != model) {
        return Err(TemplateError::WrongModel {
            expected: model.to_string(),
            got: declared.to_string(),
        });
    }
    let values_len = match input.data {
        Data::Values(v) => v.len(),
        Data::LeBytes(b) => {
            if b.len() % 4 != 0 || (count == RowCount::AtLeastOne && b.len() % (dim * 4) != 0) {
                if b.is_empty() {
                    return Err(TemplateError::Empty);
                }
                return Err(TemplateError::Truncated { bytes: b.len(), dim });
            }
            b.len() / 4
        }
    };
    if values_len == 0 {
        return Err(TemplateError::Empty);
    }
    let rows = match count {
        RowCount::One if values_len != dim => {
            return Err(TemplateError::WrongDimension {
                expected: dim,
                got: values_len,
            })
        }
        RowCount::One => 1,
        RowCount::AtLeastOne if values_len % dim != 0 => {
            return Err(TemplateError::WrongDimension {
                expected: dim,
                got: values_len,
            })
        }
        RowCount::AtLeastOne => values_len / dim,
    };
    if rows > MAX_ROWS_PER_CALL {
        return Err(TemplateError::TooManyRows {
            max: MAX_ROWS_PER_CALL,
        });
    }
    if out.capacity() < values_len {
        // A fresh buffer rather than a grown one, which would free the old unzeroed.
        *out = WipedVec::with_capacity(values_len);
    }
    // Plain loops, so that everything the closure runs is inlined into its AVX2 copy.
    let normalised = crate::gallery::kernels::with_wide_vectors(
        #[inline(always)]
        || -> Result<(), TemplateError> {
            match input.data {
                // Read once for the norm and once to write the scaled copy: no separate copy first.
                Data::Values(values) => {
                    for (row, values) in values.chunks_exact(dim).enumerate() {
                        let inverse = inverse_norm(row, values)?;
                        out.extend_mapped(values, |value| scaled(*value, inverse));
                    }
                }
                Data::LeBytes(bytes) => {
                    extend_le_f32s(out, bytes);
                    for (row, values) in out.chunks_exact_mut(dim).enumerate() {
                        let inverse = inverse_norm(row, values)?;
                        for value in values {
                            *value = scaled(*value, inverse);
                        }
                    }
                }
            }
            Ok(())
        },
    );
    if normalised.is_err() {
        out.wipe_and_clear();
    }
    normalised
}

/// Appends `bytes` read as little-endian f32 to `out`, four bytes a value; a trailing partial
/// value is ignored.
#[inline(always)]
pub(crate) fn extend_le_f32s(out: &mut WipedVec<f32>, bytes: &[u8]) {
    out.extend_mapped(bytes.as_chunks::<4>().0, |value| f32::from_le_bytes(*value));
}

/// `bytes` read as little-endian f32, four bytes a value; a trailing partial value is ignored.
pub(crate) fn le_f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// 1 / ‖values‖, once the row is known to be finite and not zero.
#[inline(always)]
fn inverse_norm(row: usize, values: &[f32]) -> Result<f64, TemplateError> {
    let sum = sum_of_squares(values);
    if !sum.is_finite() {
        // NaN and ∞ poison the sum; only then look for where they are.
        for (index, value) in values.iter().enumerate() {
            if value.is_nan() {
                return Err(TemplateError::NotANumber { row, index });
            }
            if value.is_infinite() {
                return Err(TemplateError::Infinite { row, index });
            }
        }
    }
    let norm = sum.sqrt();
    if !norm.is_finite() || norm < MIN_NORM {
        return Err(TemplateError::ZeroVector { row });
    }
    Ok(1.0 / norm)
}

#[inline(always)]
fn scaled(value: f32, inverse: f64) -> f32 {
    (f64::from(value) * inverse) as f32
}

/// Σ v² in f64, in eight independent lanes (summed in lane order, then the tail) so that it runs
/// in parallel; `docs/format.md` gives the same recipe, since stored templates depend on it.
#[inline(always)]
pub(crate) fn sum_of_squares(values: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum();
    for chunk in chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(*value) * f64::from(*value);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn normalises_to_unit_length() {
        let rows = normalise_rows(TemplateInput::values(&[3.0, 4.0]), 2, "m", RowCount::One).unwrap();
        assert_eq!(rows.as_slice(), &[0.6, 0.8]);
    }

    #[test]
    fn bytes_and_values_agree() {
        let values = [1.0f32, -2.0, 0.5, 7.0];
        let from_values =
            normalise_rows(TemplateInput::values(&values), 2, "m", RowCount::AtLeastOne).unwrap();
        let raw = bytes(&values);
        let from_bytes = normalise_rows(TemplateInput::le_bytes(&raw), 2, "m", RowCount::AtLeastOne).unwrap();
        assert_eq!(from_values.as_slice(), from_bytes.as_slice());
    }

    /// The two input forms take different paths (values are scaled as they are copied, bytes
    /// are copied then scaled in place); both must give the documented recipe bit for bit.
    #[test]
    fn bytes_and_values_agree_bit_for_bit_with_the_recipe() {
        let dim = 515;
        let mut generator = crate::xorshift::XorShift64::new(9);
        let values: Vec<f32> = (0..3 * dim)
            .map(|i| generator.next_signed_unit() * [1e-3f32, 1.0, 3e4][i % 3])
            .collect();
        let from_values =
            normalise_rows(TemplateInput::values(&values), dim, "m", RowCount::AtLeastOne).unwrap();
        let raw = bytes(&values);
        let from_bytes =
            normalise_rows(TemplateInput::le_bytes(&raw), dim, "m", RowCount::AtLeastOne).unwrap();
        let recipe: Vec<f32> = values
            .chunks_exact(dim)
            .flat_map(|row| {
                let inverse = 1.0 / sum_of_squares(row).sqrt();
                row.iter().map(move |v| (f64::from(*v) * inverse) as f32)
            })
            .collect();
        let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&from_values), bits(&recipe));
        assert_eq!(bits(&from_bytes), bits(&recipe));
    }

    #[test]
    fn a_reused_buffer_is_emptied_and_holds_nothing_after_a_refusal() {
        let mut out = WipedVec::default();
        for (row, normalised) in [([3.0, 4.0], [0.6, 0.8]), ([0.0, 1.0], [0.0, 1.0])] {
            normalise_rows_into(TemplateInput::values(&row), 2, "m", RowCount::One, &mut out).unwrap();
            assert_eq!(out.as_slice(), &normalised);
        }
        // The first row is valid and written before the second is found bad.
        let input = TemplateInput::values(&[3.0, 4.0, f32::NAN, 1.0]);
        let refused = normalise_rows_into(input, 2, "m", RowCount::AtLeastOne, &mut out);
        assert_eq!(refused, Err(TemplateError::NotANumber { row: 1, index: 0 }));
        assert!(out.is_empty());
    }

    #[test]
    fn names_each_kind_of_bad_input() {
        let check = |input: TemplateInput<'_>, count, expected: TemplateError| {
            assert_eq!(normalise_rows(input, 4, "m", count).err(), Some(expected));
        };
        check(TemplateInput::le_bytes(&[]), RowCount::One, TemplateError::Empty);
        check(
            TemplateInput::values(&[]),
            RowCount::AtLeastOne,
            TemplateError::Empty,
        );
        check(
            TemplateInput::le_bytes(&[0; 7]),
            RowCount::One,
            TemplateError::Truncated { bytes: 7, dim: 4 },
        );
        check(
            TemplateInput::le_bytes(&[0; 20]),
            RowCount::AtLeastOne,
            TemplateError::Truncated { bytes: 20, dim: 4 },
        );
        check(
            TemplateInput::values(&[1.0; 3]),
            RowCount::One,
            TemplateError::WrongDimension { expected: 4, got: 3 },
        );
        check(
            TemplateInput::values(&[1.0; 8]),
            RowCount::One,
            TemplateError::WrongDimension { expected: 4, got: 8 },
        );
        check(
            TemplateInput::values(&[1.0, f32::NAN, 1.0, 1.0]),
            RowCount::One,
            TemplateError::NotANumber { row: 0, index: 1 },
        );
        check(
            TemplateInput::values(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, f32::NEG_INFINITY, 1.0]),
            RowCount::AtLeastOne,
            TemplateError::Infinite { row: 1, index: 2 },
        );
        check(
            TemplateInput::values(&[0.0; 4]),
            RowCount::One,
            TemplateError::ZeroVector { row: 0 },
        );
        check(
            TemplateInput::values(&[1e-30; 4]),
            RowCount::One,
            TemplateError::ZeroVector { row: 0 },
        );
    }

    // f32::MAX squared overflows f32 but not the f64 accumulator: such a row is valid.
    #[test]
    fn huge_values_normalise_without_overflow() {
        let rows = normalise_rows(TemplateInput::values(&[f32::MAX; 4]), 4, "m", RowCount::One).unwrap();
        assert!(rows.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn templates_of_another_model_are_refused() {
        let input = TemplateInput::values(&[1.0, 0.0]).from_model("other-model");
        assert_eq!(
            normalise_rows(input, 2, "m", RowCount::One).err(),
            Some(TemplateError::WrongModel {
                expected: "m".into(),
                got: "other-model".into()
            })
        );
        assert!(normalise_rows(input.from_model("m"), 2, "m", RowCount::One).is_ok());
    }

    #[test]
    fn debug_hides_values() {
        let shown = format!("{:?}", TemplateInput::values(&[0.123_456]));
        assert!(!shown.contains("0.123"));
    }
}
