//! The packed-weight kernel with AVX512-VNNI, chosen at run time.
//!
//! This is the only module of phasegate with `unsafe` code, for two reasons that safe Rust
//! cannot express yet: calling a `#[target_feature]` function after checking the CPU at run
//! time, and unaligned SIMD loads and stores. Every load and store goes through the helpers
//! below, which take fixed-size array references, so bounds are checked by the slicing that
//! produces them.
#![allow(unsafe_code)]

use super::packed::{GROUP, Kind, QuantRow};
use half::f16;

/// Whether this CPU runs the AVX512-VNNI kernel (checked once).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `packed::group_dot_portable` with AVX512-VNNI. Callers check `available()` first.
#[cfg(target_arch = "x86_64")]
pub(crate) fn group_dot(kind: Kind, data: &[u8], d: &[f32], m: &[f32], x: QuantRow<'_>, out: &mut [f32; GROUP]) {
    assert!(available(), "the AVX512-VNNI kernel needs a CPU with AVX512-VNNI");
    let blocks = d.len() / GROUP;
    assert!(data.len() == blocks * kind.block_bytes() && m.len() == d.len());
    assert!(x.words.len() == blocks * 8 && x.d.len() == blocks && x.s.len() == blocks);
    // SAFETY: `available()` checked that the CPU has every feature the function enables.
    unsafe {
        match kind {
            Kind::Nib => x86::nib(data, d, m, x, out),
            Kind::Byte => x86::byte(data, d, m, x, out),
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn group_dot(kind: Kind, data: &[u8], d: &[f32], m: &[f32], x: QuantRow<'_>, out: &mut [f32; GROUP]) {
    super::packed::group_dot_portable(kind, data, d, m, x, out);
}

/// Head widths the attention kernels take in registers: multiples of 16 up to 128.
fn attention_fits(hd: usize) -> bool {
    hd.is_multiple_of(16) && hd <= 128
}

/// `scores[t] = scale·(q·k_t) + mask[t]`, where `k_t = keys[t·stride..t·stride + q.len()]`.
pub(crate) fn attend_scores(q: &[f32], keys: &[f16], stride: usize, scale: f32, mask: &[f32], scores: &mut [f32]) {
    let (hd, n) = (q.len(), scores.len());
    assert!(mask.len() == n && (n == 0 || keys.len() >= (n - 1) * stride + hd));
    #[cfg(target_arch = "x86_64")]
    if available() && attention_fits(hd) {
        // SAFETY: `available()` checked that the CPU has every feature the function enables.
        unsafe { x86::scores(q, keys, stride, scale, mask, scores) };
        return;
    }
    for (t, score) in scores.iter_mut().enumerate() {
        let k = &keys[t * stride..t * stride + hd];
        *score = scale * q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum::<f32>() + mask[t];
    }
}

/// `out = Σ_t p[t]·v_t`, where `v_t = values[t·stride..t·stride + out.len()]`; zero weights
/// (masked positions) are skipped.
pub(crate) fn attend_values(p: &[f32], values: &[f16], stride: usize, out: &mut [f32]) {
    let (hd, n) = (out.len(), p.len());
    assert!(n == 0 || values.len() >= (n - 1) * stride + hd);
    #[cfg(target_arch = "x86_64")]
    if available() && attention_fits(hd) {
        // SAFETY: `available()` checked that the CPU has every feature the function enables.
        unsafe { x86::values(p, values, stride, out) };
        return;
    }
    out.fill(0.0);
    for (t, &w) in p.iter().enumerate() {
        if w != 0.0 {
            for (o, v) in out.iter_mut().zip(&values[t * stride..t * stride + hd]) {
                *o += w * v.to_f32();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
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

    pub(super) fn lanes(values: &[f32], at: usize) -> &[f32; GROUP] {
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
