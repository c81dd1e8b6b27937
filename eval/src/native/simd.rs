//! The packed-weight and attention kernels with SIMD, chosen at run time: AVX512-VNNI, else
//! AVX2 (with FMA and F16C), else none (`available()` is false and the model runs on candle).
//!
//! This is the only module of phasegate with `unsafe` code, for two reasons that safe Rust
//! cannot express yet: calling a `#[target_feature]` function after checking the CPU at run
//! time, and unaligned SIMD loads and stores. Every load and store goes through helpers that
//! take fixed-size array references, so bounds are checked by the slicing that produces them.
#![allow(unsafe_code)]

use super::packed::{GROUP, Kind, QuantRow};
use half::f16;

/// The instruction sets a kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Avx512Vnni,
    Avx2,
    Portable,
}

impl Level {
    /// Whether this CPU has every feature of the level.
    pub(crate) fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Level::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
                Level::Avx2 => {
                    is_x86_feature_detected!("avx2")
                        && is_x86_feature_detected!("fma")
                        && is_x86_feature_detected!("f16c")
                }
                Level::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Level::Portable
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Avx512Vnni => "AVX512-VNNI",
            Level::Avx2 => "AVX2",
            Level::Portable => "portable",
        }
    }
}

/// The best level this CPU supports, at most the one `PHASEGATE_SIMD` names (`avx2`, or `none`
/// for candle's kernels: to measure what a smaller CPU gets); checked once.
pub(crate) fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let skip = match std::env::var("PHASEGATE_SIMD").as_deref() {
            Ok("avx2") => 1,
            Ok("none") => 2,
            _ => 0,
        };
        [Level::Avx512Vnni, Level::Avx2].into_iter().skip(skip).find(|l| l.supported()).unwrap_or(Level::Portable)
    })
}

/// Whether this CPU runs SIMD kernels; without them the portable ones are too slow to use
/// outside tests.
pub(crate) fn available() -> bool {
    level() != Level::Portable
}

/// `out[r]` = row `r` of a packed group times one activation row (`packed::group_dot_portable`).
pub(crate) fn group_dot(kind: Kind, data: &[u8], d: &[f32], m: &[f32], x: QuantRow<'_>, out: &mut [f32; GROUP]) {
    group_dot_at(level(), kind, data, d, m, x, out);
}

/// `group_dot` with the kernels of `level`, which this CPU must support.
pub(crate) fn group_dot_at(
    level: Level,
    kind: Kind,
    data: &[u8],
    d: &[f32],
    m: &[f32],
    x: QuantRow<'_>,
    out: &mut [f32; GROUP],
) {
    let blocks = d.len() / GROUP;
    assert!(data.len() == blocks * kind.block_bytes() && m.len() == d.len());
    assert!(x.words.len() == blocks * 8 && x.d.len() == blocks && x.s.len() == blocks);
    assert!(level.supported(), "this CPU lacks {}", level.name());
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level.supported()` checked that the CPU has every feature these enable.
        Level::Avx512Vnni => unsafe {
            match kind {
                Kind::Nib => avx512::nib(data, d, m, x, out),
                Kind::Byte => avx512::byte(data, d, m, x, out),
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx2 => unsafe {
            match kind {
                Kind::Nib => avx2::nib(data, d, m, x, out),
                Kind::Byte => avx2::byte(data, d, x, out),
            }
        },
        _ => super::packed::group_dot_portable(kind, data, d, m, x, out),
    }
}

/// Head widths the attention kernels of `level` take in registers.
fn attention_fits(level: Level, hd: usize) -> bool {
    match level {
        Level::Avx512Vnni => hd.is_multiple_of(16) && hd <= 128,
        Level::Avx2 => hd.is_multiple_of(8) && hd <= 128,
        Level::Portable => true,
    }
}

/// `scores[t] = scale·(q·k_t) + mask[t]`, where `k_t = keys[t·stride..t·stride + q.len()]`.
pub(crate) fn attend_scores(q: &[f32], keys: &[f16], stride: usize, scale: f32, mask: &[f32], scores: &mut [f32]) {
    attend_scores_at(level(), q, keys, stride, scale, mask, scores);
}

/// `attend_scores` with the kernels of `level`, which this CPU must support.
pub(crate) fn attend_scores_at(
    level: Level,
    q: &[f32],
    keys: &[f16],
    stride: usize,
    scale: f32,
    mask: &[f32],
    scores: &mut [f32],
) {
    let (hd, n) = (q.len(), scores.len());
    assert!(mask.len() == n && (n == 0 || keys.len() >= (n - 1) * stride + hd));
    assert!(level.supported(), "this CPU lacks {}", level.name());
    let level = if attention_fits(level, hd) { level } else { Level::Portable };
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level.supported()` checked that the CPU has every feature these enable.
        Level::Avx512Vnni => unsafe { avx512::scores(q, keys, stride, scale, mask, scores) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx2 => unsafe { avx2::scores(q, keys, stride, scale, mask, scores) },
        _ => {
            for (t, score) in scores.iter_mut().enumerate() {
                let k = &keys[t * stride..t * stride + hd];
                *score = scale * q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum::<f32>() + mask[t];
            }
        }
    }
}

/// `out = Σ_t p[t]·v_t`, where `v_t = values[t·stride..t·stride + out.len()]`; zero weights
/// (masked positions) are skipped.
pub(crate) fn attend_values(p: &[f32], values: &[f16], stride: usize, out: &mut [f32]) {
    attend_values_at(level(), p, values, stride, out);
}

/// `attend_values` with the kernels of `level`, which this CPU must support.
pub(crate) fn attend_values_at(level: Level, p: &[f32], values: &[f16], stride: usize, out: &mut [f32]) {
    let (hd, n) = (out.len(), p.len());
    assert!(n == 0 || values.len() >= (n - 1) * stride + hd);
    assert!(level.supported(), "this CPU lacks {}", level.name());
    let level = if attention_fits(level, hd) { level } else { Level::Portable };
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level.supported()` checked that the CPU has every feature these enable.
        Level::Avx512Vnni => unsafe { avx512::values(p, values, stride, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx2 => unsafe { avx2::values(p, values, stride, out) },
        _ => {
            out.fill(0.0);
            for (t, &w) in p.iter().enumerate() {
                if w != 0.0 {
                    for (o, v) in out.iter_mut().zip(&values[t * stride..t * stride + hd]) {
                        *o += w * v.to_f32();
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{GROUP, QuantRow};
    use half::f16;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_f16(values: &[f16; GROUP]) -> __m512 {
        // SAFETY: `values` is 16 readable f16 (32 bytes); the load is unaligned.
        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(values.as_ptr().cast()) })
    }

    fn halves(values: &[f16], at: usize) -> &[f16; GROUP] {
        values[at..at + GROUP].try_into().expect("16 values")
    }

    /// Up to 8 registers of 16 lanes: one head of up to 128 values.
    const LANES: usize = 8;

    #[target_feature(enable = "avx512f")]
    pub(super) fn scores(q: &[f32], keys: &[f16], stride: usize, scale: f32, mask: &[f32], scores: &mut [f32]) {
        let chunks = q.len() / GROUP;
        let mut qv = [_mm512_setzero_ps(); LANES];
        for (c, v) in qv.iter_mut().enumerate().take(chunks) {
            *v = _mm512_mul_ps(load_f32(lanes(q, c * GROUP)), _mm512_set1_ps(scale));
        }
        for (t, score) in scores.iter_mut().enumerate() {
            let base = t * stride;
            let mut acc = _mm512_mul_ps(qv[0], load_f16(halves(keys, base)));
            for (c, v) in qv.iter().enumerate().take(chunks).skip(1) {
                acc = _mm512_fmadd_ps(*v, load_f16(halves(keys, base + c * GROUP)), acc);
            }
            *score = _mm512_reduce_add_ps(acc) + mask[t];
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn values(p: &[f32], values: &[f16], stride: usize, out: &mut [f32]) {
        let chunks = out.len() / GROUP;
        let mut acc = [_mm512_setzero_ps(); LANES];
        for (t, &w) in p.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let (base, w) = (t * stride, _mm512_set1_ps(w));
            for (c, a) in acc.iter_mut().enumerate().take(chunks) {
                *a = _mm512_fmadd_ps(w, load_f16(halves(values, base + c * GROUP)), *a);
            }
        }
        for (c, a) in acc.iter().enumerate().take(chunks) {
            let dest: &mut [f32; GROUP] = (&mut out[c * GROUP..(c + 1) * GROUP]).try_into().expect("16 lanes");
            store_f32(dest, *a);
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_bytes(bytes: &[u8; 64]) -> __m512i {
        // SAFETY: `bytes` is 64 readable bytes; the load is unaligned.
        unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_f32(values: &[f32; GROUP]) -> __m512 {
        // SAFETY: `values` is 16 readable f32; the load is unaligned.
        unsafe { _mm512_loadu_ps(values.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store_f32(out: &mut [f32; GROUP], v: __m512) {
        // SAFETY: `out` is 16 writable f32; the store is unaligned.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) }
    }

    fn chunk(data: &[u8], at: usize) -> &[u8; 64] {
        data[at..at + 64].try_into().expect("64 bytes")
    }

    fn lanes(values: &[f32], at: usize) -> &[f32; GROUP] {
        values[at..at + GROUP].try_into().expect("16 values")
    }

    /// 16 rows of 4-bit weights (unsigned) by one row of i8 activations.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn nib(data: &[u8], d: &[f32], m: &[f32], x: QuantRow<'_>, out: &mut [f32; GROUP]) {
        let low = _mm512_set1_epi8(0x0F);
        let mut acc = _mm512_setzero_ps();
        let mut acc_m = _mm512_setzero_ps();
        for b in 0..d.len() / GROUP {
            let base = b * 256;
            let w = &x.words[b * 8..b * 8 + 8];
            let mut sums = [_mm512_setzero_si512(); 4];
            for c in 0..4 {
                let v = load_bytes(chunk(data, base + c * 64));
                let lo = _mm512_and_si512(v, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                sums[c] = _mm512_dpbusd_epi32(sums[c], lo, _mm512_set1_epi32(w[c]));
                sums[c] = _mm512_dpbusd_epi32(sums[c], hi, _mm512_set1_epi32(w[c + 4]));
            }
            let sum = _mm512_add_epi32(_mm512_add_epi32(sums[0], sums[1]), _mm512_add_epi32(sums[2], sums[3]));
            let scale = _mm512_mul_ps(load_f32(lanes(d, b * GROUP)), _mm512_set1_ps(x.d[b]));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
            acc_m = _mm512_fmadd_ps(load_f32(lanes(m, b * GROUP)), _mm512_set1_ps(x.s[b]), acc_m);
        }
        store_f32(out, _mm512_add_ps(acc, acc_m));
    }

    /// 16 rows of 8-bit weights (signed) by one row of activations made unsigned (+128).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn byte(data: &[u8], d: &[f32], m: &[f32], x: QuantRow<'_>, out: &mut [f32; GROUP]) {
        let flip = 0x8080_8080_u32 as i32;
        let mut acc = _mm512_setzero_ps();
        let mut acc_m = _mm512_setzero_ps();
        for b in 0..d.len() / GROUP {
            let base = b * 512;
            let w = &x.words[b * 8..b * 8 + 8];
            let mut sums = [_mm512_setzero_si512(); 4];
            for c in 0..8 {
                let v = load_bytes(chunk(data, base + c * 64));
                sums[c % 4] = _mm512_dpbusd_epi32(sums[c % 4], _mm512_set1_epi32(w[c] ^ flip), v);
            }
            let sum = _mm512_add_epi32(_mm512_add_epi32(sums[0], sums[1]), _mm512_add_epi32(sums[2], sums[3]));
            let scale = _mm512_mul_ps(load_f32(lanes(d, b * GROUP)), _mm512_set1_ps(x.d[b]));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
            acc_m = _mm512_fmadd_ps(load_f32(lanes(m, b * GROUP)), _mm512_set1_ps(x.d[b]), acc_m);
        }
        store_f32(out, _mm512_add_ps(acc, acc_m));
    }
}

/// The same kernels on 256-bit registers: 8 of a group's 16 rows per register, and
/// `vpmaddubsw` + `vpmaddwd` instead of `vpdpbusd`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{GROUP, QuantRow};
    use half::f16;
    use std::arch::x86_64::*;

    const HALF: usize = GROUP / 2;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_bytes(bytes: &[u8; 32]) -> __m256i {
        // SAFETY: `bytes` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_f32(values: &[f32; HALF]) -> __m256 {
        // SAFETY: `values` is 8 readable f32; the load is unaligned.
        unsafe { _mm256_loadu_ps(values.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn load_f16(values: &[f16; HALF]) -> __m256 {
        // SAFETY: `values` is 8 readable f16 (16 bytes); the load is unaligned.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(values.as_ptr().cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store_f32(out: &mut [f32], v: __m256) {
        let out: &mut [f32; HALF] = out.try_into().expect("8 lanes");
        // SAFETY: `out` is 8 writable f32; the store is unaligned.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) }
    }

    fn chunk(data: &[u8], at: usize) -> &[u8; 32] {
        data[at..at + 32].try_into().expect("32 bytes")
    }

    fn lanes(values: &[f32], at: usize) -> &[f32; HALF] {
        values[at..at + HALF].try_into().expect("8 values")
    }

    fn halves(values: &[f16], at: usize) -> &[f16; HALF] {
        values[at..at + HALF].try_into().expect("8 values")
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// 16 rows of 4-bit weights by one row of i8 activations. Products of a 4-bit weight and an
    /// 8-bit activation fit i16 eight at a time (8 · 2 · 15 · 127 < 2¹⁵), so a block's eight
    /// `vpmaddubsw` results add up in i16 before one `vpmaddwd`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn nib(data: &[u8], d: &[f32], m: &[f32], x: QuantRow<'_>, out: &mut [f32; GROUP]) {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..d.len() / GROUP {
            let w = &x.words[b * 8..b * 8 + 8];
            let mut sums = [_mm256_setzero_si256(); 2];
            for c in 0..4 {
                let (a_lo, a_hi) = (_mm256_set1_epi32(w[c]), _mm256_set1_epi32(w[c + 4]));
                for (h, s) in sums.iter_mut().enumerate() {
                    let v = load_bytes(chunk(data, b * 256 + c * 64 + h * 32));
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                    *s = _mm256_add_epi16(*s, _mm256_maddubs_epi16(lo, a_lo));
                    *s = _mm256_add_epi16(*s, _mm256_maddubs_epi16(hi, a_hi));
                }
            }
            let (xd, xs) = (_mm256_set1_ps(x.d[b]), _mm256_set1_ps(x.s[b]));
            for (h, a) in acc.iter_mut().enumerate() {
                let at = b * GROUP + h * HALF;
                let isum = _mm256_cvtepi32_ps(_mm256_madd_epi16(sums[h], ones));
                *a = _mm256_fmadd_ps(isum, _mm256_mul_ps(load_f32(lanes(d, at)), xd), *a);
                *a = _mm256_fmadd_ps(load_f32(lanes(m, at)), xs, *a);
            }
        }
        store_f32(&mut out[..HALF], acc[0]);
        store_f32(&mut out[HALF..], acc[1]);
    }

    /// 16 rows of 8-bit weights by one row of i8 activations, signed × signed: `vpmaddubsw`
    /// takes |w| and a·sign(w), whose pair sums fit i16 (2 · 128 · 127 < 2¹⁵). The exact signed
    /// sum needs no correction, so the packed `m` is not read.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn byte(data: &[u8], d: &[f32], x: QuantRow<'_>, out: &mut [f32; GROUP]) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..d.len() / GROUP {
            let w = &x.words[b * 8..b * 8 + 8];
            let mut sums = [_mm256_setzero_si256(); 2];
            for (c, &word) in w.iter().enumerate() {
                let a = _mm256_set1_epi32(word);
                for (h, s) in sums.iter_mut().enumerate() {
                    let v = load_bytes(chunk(data, b * 512 + c * 64 + h * 32));
                    let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(a, v));
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
                }
            }
            let xd = _mm256_set1_ps(x.d[b]);
            for (h, a) in acc.iter_mut().enumerate() {
                let scale = _mm256_mul_ps(load_f32(lanes(d, b * GROUP + h * HALF)), xd);
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[h]), scale, *a);
            }
        }
        store_f32(&mut out[..HALF], acc[0]);
        store_f32(&mut out[HALF..], acc[1]);
    }

    /// Up to 16 registers of 8 lanes: one head of up to 128 values.
    const LANES: usize = 16;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn scores(q: &[f32], keys: &[f16], stride: usize, scale: f32, mask: &[f32], scores: &mut [f32]) {
        let chunks = q.len() / HALF;
        let mut qv = [_mm256_setzero_ps(); LANES];
        for (c, v) in qv.iter_mut().enumerate().take(chunks) {
            *v = _mm256_mul_ps(load_f32(lanes(q, c * HALF)), _mm256_set1_ps(scale));
        }
        for (t, score) in scores.iter_mut().enumerate() {
            let base = t * stride;
            let mut acc = _mm256_mul_ps(qv[0], load_f16(halves(keys, base)));
            for (c, v) in qv.iter().enumerate().take(chunks).skip(1) {
                acc = _mm256_fmadd_ps(*v, load_f16(halves(keys, base + c * HALF)), acc);
            }
            *score = sum(acc) + mask[t];
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn values(p: &[f32], values: &[f16], stride: usize, out: &mut [f32]) {
        let chunks = out.len() / HALF;
        let mut acc = [_mm256_setzero_ps(); LANES];
        for (t, &w) in p.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let (base, w) = (t * stride, _mm256_set1_ps(w));
            for (c, a) in acc.iter_mut().enumerate().take(chunks) {
                *a = _mm256_fmadd_ps(w, load_f16(halves(values, base + c * HALF)), *a);
            }
        }
        for (c, a) in acc.iter().enumerate().take(chunks) {
            store_f32(&mut out[c * HALF..(c + 1) * HALF], *a);
        }
    }
}
