//! ITU-T G.711 µ-law and A-law, the classic segment encoders (as in the ITU
//! reference software and Sun's g711.c). Encoding runs once per prompt at load
//! time; decoding uses 256-entry tables built at compile time.

use std::sync::LazyLock;

use crate::codec::Codec;

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// 16-bit linear PCM → µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = sample as i32;
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
    let exponent = (7 - ((pcm as u32) << 17).leading_zeros().min(7)) as i32;
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// 16-bit linear PCM → A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = sample as i32;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let pcm = pcm.min(0x7FFF);
    let code = if pcm < 256 {
        pcm >> 4
    } else {
        let exponent = 31 - (pcm as u32).leading_zeros() as i32 - 7; // 1..=7
        (exponent << 4) | ((pcm >> (exponent + 3)) & 0x0F)
    };
    (code ^ mask) as u8
}

const fn ulaw_to_linear_const(code: u8) -> i16 {
    let code = !code;
    let sign = code & 0x80;
    let exponent = ((code >> 4) & 0x07) as i32;
    let mantissa = (code & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if sign != 0 { -magnitude as i16 } else { magnitude as i16 }
}

const fn alaw_to_linear_const(code: u8) -> i16 {
    let code = code ^ 0x55;
    let sign = code & 0x80;
    let exponent = ((code >> 4) & 0x07) as i32;
    let mantissa = (code & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 { magnitude as i16 } else { -magnitude as i16 }
}

macro_rules! decode_table {
    ($f:ident) => {{
        let mut t = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $f(i as u8);
            i += 1;
        }
        t
    }};
}

static ULAW_TABLE: [i16; 256] = decode_table!(ulaw_to_linear_const);
static ALAW_TABLE: [i16; 256] = decode_table!(alaw_to_linear_const);

pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

/// Decode one G.711 code of either law.
pub fn decode(codec: Codec, code: u8) -> i16 {
    match codec {
        Codec::Pcmu => ulaw_to_linear(code),
        Codec::Pcma => alaw_to_linear(code),
    }
}

static ULAW_TO_ALAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| std::array::from_fn(|c| linear_to_alaw(ulaw_to_linear(c as u8))));
static ALAW_TO_ULAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| std::array::from_fn(|c| linear_to_ulaw(alaw_to_linear(c as u8))));

/// The 256-entry table that converts `from` codes to `to` codes, or `None`
/// when both are the same law (the payload passes unchanged). Built once.
pub fn transcode_table(from: Codec, to: Codec) -> Option<&'static [u8; 256]> {
    match (from, to) {
        (Codec::Pcmu, Codec::Pcma) => Some(&ULAW_TO_ALAW),
        (Codec::Pcma, Codec::Pcmu) => Some(&ALAW_TO_ULAW),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcoding_tables_follow_the_linear_value() {
        assert!(transcode_table(Codec::Pcmu, Codec::Pcmu).is_none());
        let u2a = transcode_table(Codec::Pcmu, Codec::Pcma).unwrap();
        let a2u = transcode_table(Codec::Pcma, Codec::Pcmu).unwrap();
        // Silence stays silence.
        assert_eq!(u2a[0xFF], linear_to_alaw(0));
        for code in 0..=255u8 {
            let u = ulaw_to_linear(code) as i32;
            let via_a = alaw_to_linear(u2a[code as usize]) as i32;
            assert!(
                (u - via_a).abs() <= u.abs() / 16 + 16,
                "µ {code:#x}: {u} became {via_a}"
            );
            let a = alaw_to_linear(code) as i32;
            let via_u = ulaw_to_linear(a2u[code as usize]) as i32;
            assert!(
                (a - via_u).abs() <= a.abs() / 16 + 16,
                "A {code:#x}: {a} became {via_u}"
            );
        }
        assert_eq!(decode(Codec::Pcma, 0xD5), 8);
    }

    #[test]
    fn ulaw_reference_values() {
        // Values from ITU-T G.711 Table 2a / the reference implementation.
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xCE), 988);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(32767), 0xAA);
        assert_eq!(linear_to_alaw(-32768), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xFA), 1008);
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "A-law {code:#x}");
            let back = linear_to_ulaw(ulaw_to_linear(code));
            // µ-law has two codes for zero (0x7F and 0xFF); both decode to 0.
            assert!(back == code || (code == 0x7F && back == 0xFF), "µ-law {code:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_within_segment_step() {
        for s in (-32000i32..32000).step_by(7) {
            let s = s as i16;
            let u = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            let tolerance = (s as i32).abs() / 16 + 16;
            assert!((u - s as i32).abs() <= tolerance, "µ {s} -> {u}");
            assert!((a - s as i32).abs() <= tolerance, "A {s} -> {a}");
        }
    }
}
