//! Quantised weights packed for our CPU matmul kernels, and those kernels' portable form.
//!
//! Rows are packed in groups of 16 and columns in blocks of 32, so that one kernel step
//! multiplies 16 output rows by 4 input values with one integer dot-product instruction
//! (AVX512-VNNI `vpdpbusd`, see `simd.rs`) and no horizontal sums:
//!
//! - `Nib` (from Q4_0 / Q4_1, exact): per (group, block) 256 bytes in 4 chunks of 64; byte
//!   `j*4 + t` of chunk `c` holds row `j`'s 4-bit value of column `c*4 + t` in its low nibble
//!   and of column `16 + c*4 + t` in its high nibble — the byte order of a ggml Q4 block, so
//!   packing only moves bytes. Value = `d·q + m`.
//! - `Byte` (from Q8_0, exact; or any weight re-quantised to 8 bits): per (group, block) 512
//!   bytes in 8 chunks of 64; byte `j*4 + t` of chunk `c` is row `j`'s signed value of column
//!   `c*4 + t`. Value = `d·q`. The kernel multiplies unsigned activations (`a + 128`), so `m`
//!   holds the correction `-128·d·Σq` of each block.
//!
//! Activations are quantised per block of 32 to i8 with a scale (`QuantRows`), as ggml's Q8
//! activations are; a block's contribution to a row is `d·d_a·Σ q·q_a + m·x`, where `x` is
//! `d_a·Σ q_a` for `Nib` and `d_a` for `Byte`.

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

/// Output rows per packed group.
pub(crate) const GROUP: usize = 16;
/// Input columns per block.
pub(crate) const BLOCK: usize = 32;

/// The packed value format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Nib,
    Byte,
}

impl Kind {
    /// Packed bytes per (group, block).
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Kind::Nib => GROUP * BLOCK / 2,
            Kind::Byte => GROUP * BLOCK,
        }
    }
}

/// A `rows × cols` weight matrix packed for `matmul`.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub(crate) kind: Kind,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Per (group, block): `kind.block_bytes()` bytes.
    pub(crate) data: Vec<u8>,
    /// Per (group, block): 16 scales, one per row.
    pub(crate) d: Vec<f32>,
    /// Per (group, block): 16 offsets (`Nib`) or corrections (`Byte`), one per row.
    pub(crate) m: Vec<f32>,
}

/// Why a weight cannot be packed (the caller falls back to candle's kernels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unpackable(pub(crate) String);

impl Packed {
    /// Blocks per row.
    pub(crate) fn blocks(&self) -> usize {
        self.cols / BLOCK
    }

    pub(crate) fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }

    /// Rows are padded with zero rows to whole groups; `matmul` drops their outputs.
    fn empty(kind: Kind, rows: usize, cols: usize) -> Result<Self, Unpackable> {
        if !cols.is_multiple_of(BLOCK) {
            return Err(Unpackable(format!("width {cols} is not a multiple of {BLOCK}")));
        }
        let units = rows.div_ceil(GROUP) * (cols / BLOCK);
        Ok(Self {
            kind,
            rows,
            cols,
            data: vec![0; units * kind.block_bytes()],
            d: vec![0.0; units * GROUP],
            m: vec![0.0; units * GROUP],
        })
    }

    /// Packs the rows of several quantised matrices of one width into one matrix (stacked in
    /// order), exactly: Q4_0 and Q4_1 as `Nib`, Q8_0 as `Byte`. With `to_byte`, Q4 weights are
    /// re-quantised to 8 bits instead (as `cpu_requantize = "q8_0"` asks).
    pub(crate) fn from_qtensors(parts: &[&QTensor], to_byte: bool) -> Result<Self, Unpackable> {
        let first = parts.first().ok_or_else(|| Unpackable("no tensors".into()))?;
        let dtype = first.dtype();
        let cols = dims2(first)?.1;
        let mut rows = 0;
        for t in parts {
            let (r, c) = dims2(t)?;
            if t.dtype() != dtype || c != cols {
                return Err(Unpackable("stacked tensors differ in type or width".into()));
            }
            rows += r;
        }
        let kind = match (dtype, to_byte) {
            (GgmlDType::Q4_0 | GgmlDType::Q4_1, false) => Kind::Nib,
            (GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q8_0, _) => Kind::Byte,
            (other, _) => return Err(Unpackable(format!("{other:?} weights"))),
        };
        let mut packed = Self::empty(kind, rows, cols)?;
        let source = SourceBlocks::new(dtype);
        let mut row = 0;
        for t in parts {
            let data = t.data().map_err(|e| Unpackable(e.to_string()))?;
            for src_row in data.chunks_exact(cols / BLOCK * source.bytes) {
                for (b, block) in src_row.chunks_exact(source.bytes).enumerate() {
                    packed.put(row, b, source, block);
                }
                row += 1;
            }
        }
        Ok(packed)
    }

    /// Stores ggml block `block` (of type `source`) as row `row`, block `b`.
    fn put(&mut self, row: usize, b: usize, source: SourceBlocks, block: &[u8]) {
        let (g, j) = (row / GROUP, row % GROUP);
        let unit = g * self.blocks() + b;
        let scale = |i: usize| f16::from_le_bytes([block[i], block[i + 1]]).to_f32();
        let d = scale(0);
        let bytes = &mut self.data[unit * self.kind.block_bytes()..(unit + 1) * self.kind.block_bytes()];
        match (source.dtype, self.kind) {
            (GgmlDType::Q4_0 | GgmlDType::Q4_1, Kind::Nib) => {
                let (m, qs) = match source.dtype {
                    GgmlDType::Q4_0 => (-8.0 * d, &block[2..18]),
                    _ => (scale(2), &block[4..20]),
                };
                for (k, &q) in qs.iter().enumerate() {
                    bytes[(k / 4) * 64 + j * 4 + k % 4] = q;
                }
                self.d[unit * GROUP + j] = d;
                self.m[unit * GROUP + j] = m;
            }
            (GgmlDType::Q8_0, Kind::Byte) => {
                let qs: Vec<i8> = block[2..34].iter().map(|&q| q as i8).collect();
                self.put_bytes(unit, j, d, &qs);
            }
            (_, Kind::Byte) => {
                // Re-quantise a Q4 block to 8 bits: values d·q + m with q in 0..16.
                let (m, qs) = match source.dtype {
                    GgmlDType::Q4_0 => (-8.0 * d, &block[2..18]),
                    _ => (scale(2), &block[4..20]),
                };
                let mut values = [0f32; BLOCK];
                for (k, &q) in qs.iter().enumerate() {
                    values[k] = d * f32::from(q & 0x0F) + m;
                    values[k + 16] = d * f32::from(q >> 4) + m;
                }
                let (d8, q8) = quantize_block(&values);
                self.put_bytes(unit, j, d8, &q8);
            }
            (_, Kind::Nib) => unreachable!("only Q4 sources pack as Nib"),
        }
    }

    fn put_bytes(&mut self, unit: usize, j: usize, d: f32, qs: &[i8]) {
        let bytes = &mut self.data[unit * Kind::Byte.block_bytes()..(unit + 1) * Kind::Byte.block_bytes()];
        for (k, &q) in qs.iter().enumerate() {
            bytes[(k / 4) * 64 + j * 4 + k % 4] = q as u8;
        }
        let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
        self.d[unit * GROUP + j] = d;
        self.m[unit * GROUP + j] = -128.0 * d * sum as f32;
    }

    /// Row `row` as f32 (the embedding lookup of a tied table).
    pub(crate) fn row(&self, row: usize, out: &mut [f32]) {
        let (g, j) = (row / GROUP, row % GROUP);
        for b in 0..self.blocks() {
            let unit = g * self.blocks() + b;
            let bytes = &self.data[unit * self.kind.block_bytes()..(unit + 1) * self.kind.block_bytes()];
            let (d, m) = (self.d[unit * GROUP + j], self.m[unit * GROUP + j]);
            let out = &mut out[b * BLOCK..(b + 1) * BLOCK];
            for k in 0..BLOCK {
                out[k] = match self.kind {
                    Kind::Nib => {
                        let byte = bytes[((k % 16) / 4) * 64 + j * 4 + k % 4];
                        let q = if k < 16 { byte & 0x0F } else { byte >> 4 };
                        d * f32::from(q) + m
                    }
                    Kind::Byte => d * f32::from(bytes[(k / 4) * 64 + j * 4 + k % 4] as i8),
                };
            }
        }
    }

    /// `out[r] = Σ_k W[g·16 + r][k]·x[k]` for the 16 rows of group `g` and one quantised
    /// activation row.
    pub(crate) fn group_dot(&self, g: usize, x: QuantRow<'_>, out: &mut [f32; GROUP]) {
        let blocks = self.blocks();
        let units = g * blocks..(g + 1) * blocks;
        let data = &self.data[units.start * self.kind.block_bytes()..units.end * self.kind.block_bytes()];
        let d = &self.d[units.start * GROUP..units.end * GROUP];
        let m = &self.m[units.start * GROUP..units.end * GROUP];
        super::simd::group_dot(self.kind, data, d, m, x, out);
    }
}

fn dims2(t: &QTensor) -> Result<(usize, usize), Unpackable> {
    t.shape().dims2().map_err(|e| Unpackable(e.to_string()))
}

#[derive(Debug, Clone, Copy)]
struct SourceBlocks {
    dtype: GgmlDType,
    bytes: usize,
}

impl SourceBlocks {
    fn new(dtype: GgmlDType) -> Self {
        Self { dtype, bytes: dtype.type_size() }
    }
}

/// Symmetric 8-bit quantisation of one block: scale and values, as ggml's Q8_0.
fn quantize_block(values: &[f32]) -> (f32, [i8; BLOCK]) {
    let amax = values.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; BLOCK];
    for (q, v) in q.iter_mut().zip(values) {
        *q = (v * inv).round() as i8;
    }
    (d, q)
}

/// Activation rows quantised per block of 32 for the kernels.
#[derive(Debug, Default)]
pub(crate) struct QuantRows {
    cols: usize,
    /// The i8 values, 4 to a little-endian word.
    words: Vec<i32>,
    /// Per block: scale.
    d: Vec<f32>,
    /// Per block: scale × sum of the values.
    s: Vec<f32>,
}

/// One row of `QuantRows`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuantRow<'a> {
    pub(crate) words: &'a [i32],
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
}

impl QuantRows {
    /// Quantises `x` (rows of `cols` values), reusing this buffer's memory.
    pub(crate) fn quantize(&mut self, x: &[f32], cols: usize) {
        let blocks = x.len() / BLOCK;
        self.cols = cols;
        self.words.clear();
        self.d.clear();
        self.s.clear();
        for block in x.chunks_exact(BLOCK) {
            let (d, q) = quantize_block(block);
            let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
            self.d.push(d);
            self.s.push(d * sum as f32);
            self.words.extend(
                q.chunks_exact(4).map(|w| i32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8])),
            );
        }
        debug_assert_eq!(self.d.len(), blocks);
    }

    pub(crate) fn rows(&self) -> usize {
        (self.d.len() * BLOCK).checked_div(self.cols).unwrap_or(0)
    }

    pub(crate) fn row(&self, i: usize) -> QuantRow<'_> {
        let blocks = self.cols / BLOCK;
        QuantRow {
            words: &self.words[i * blocks * 8..(i + 1) * blocks * 8],
            d: &self.d[i * blocks..(i + 1) * blocks],
            s: &self.s[i * blocks..(i + 1) * blocks],
        }
    }
}

/// The kernel in portable Rust: the same integer sums and the same formula as `simd.rs`.
pub(crate) fn group_dot_portable(
    kind: Kind,
    data: &[u8],
    d: &[f32],
    m: &[f32],
    x: QuantRow<'_>,
    out: &mut [f32; GROUP],
) {
    let mut acc = [0f32; GROUP];
    let block_bytes = kind.block_bytes();
    for (b, bytes) in data.chunks_exact(block_bytes).enumerate() {
        let mut isum = [0i32; GROUP];
        let words = &x.words[b * 8..(b + 1) * 8];
        for (c, chunk) in bytes.chunks_exact(64).enumerate() {
            for (j, sum) in isum.iter_mut().enumerate() {
                let w = &chunk[j * 4..j * 4 + 4];
                match kind {
                    Kind::Nib => {
                        let (lo, hi) = (words[c].to_le_bytes(), words[c + 4].to_le_bytes());
                        for t in 0..4 {
                            *sum += i32::from(w[t] & 0x0F) * i32::from(lo[t] as i8)
                                + i32::from(w[t] >> 4) * i32::from(hi[t] as i8);
                        }
                    }
                    Kind::Byte => {
                        let a = words[c].to_le_bytes();
                        for t in 0..4 {
                            *sum += i32::from(a[t] ^ 0x80) * i32::from(w[t] as i8);
                        }
                    }
                }
            }
        }
        let x2 = match kind {
            Kind::Nib => x.s[b],
            Kind::Byte => x.d[b],
        };
        for j in 0..GROUP {
            acc[j] += isum[j] as f32 * (d[b * GROUP + j] * x.d[b]) + m[b * GROUP + j] * x2;
        }
    }
    *out = acc;
}
