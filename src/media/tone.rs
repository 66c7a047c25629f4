//! Ringback tones, generated rather than recorded: one cadence period (on
//! and off times) of the country's tone, encoded once in both G.711 laws as
//! a [`Prompt`], so the pacer loops it like any announcement and the packet
//! path only slices shared bytes.

use std::sync::{Arc, OnceLock};

use super::prompt::{Prompt, SAMPLE_RATE};

/// A country's ringback tone: the frequencies sounded together and the
/// cadence, as (on, off) pairs in milliseconds, repeated.
#[derive(Debug)]
pub struct Cadence {
    pub country: &'static str,
    pub frequencies: &'static [f64],
    pub on_off_ms: &'static [(u32, u32)],
}

/// Peak level of the whole tone (about -18 dBFS): a ringback is heard
/// clearly without being louder than speech.
const PEAK: f64 = 4000.0;

/// The tones we know (ITU-T E.180 and the national specifications).
pub const CADENCES: &[Cadence] = &[
    // NTT: 400 Hz, 1 s on, 2 s off.
    Cadence {
        country: "jp",
        frequencies: &[400.0],
        on_off_ms: &[(1000, 2000)],
    },
    // North America (precise tone plan): 440 + 480 Hz, 2 s on, 4 s off.
    Cadence {
        country: "us",
        frequencies: &[440.0, 480.0],
        on_off_ms: &[(2000, 4000)],
    },
    // United Kingdom: 400 + 450 Hz, double ring 0.4 s on, 0.2 off, 0.4 on, 2 s off.
    Cadence {
        country: "uk",
        frequencies: &[400.0, 450.0],
        on_off_ms: &[(400, 200), (400, 2000)],
    },
];

/// The country names `ringback` accepts, for error messages.
pub fn known_countries() -> Vec<&'static str> {
    CADENCES.iter().map(|c| c.country).collect()
}

/// The cadence for a country code ("jp", "us", "uk"; "gb" is the UK).
pub fn cadence(country: &str) -> Option<&'static Cadence> {
    let country = country.to_ascii_lowercase();
    let country = if country == "gb" { "uk" } else { country.as_str() };
    CADENCES.iter().find(|c| c.country == country)
}

impl Cadence {
    /// One period of the tone as 8 kHz linear samples. Each burst starts at
    /// phase zero, so every burst sounds the same and the loop has no click.
    pub fn samples(&self) -> Vec<i16> {
        let per_ms = (SAMPLE_RATE / 1000) as usize;
        let amplitude = PEAK / self.frequencies.len() as f64;
        let mut out = Vec::new();
        for &(on, off) in self.on_off_ms {
            for n in 0..on as usize * per_ms {
                let t = n as f64 / f64::from(SAMPLE_RATE);
                let v: f64 = self
                    .frequencies
                    .iter()
                    .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum();
                out.push((v * amplitude).round() as i16);
            }
            out.resize(out.len() + off as usize * per_ms, 0);
        }
        out
    }
}

/// The country's ringback, one cadence period, encoded once per process.
pub fn ringback(country: &str) -> Option<Arc<Prompt>> {
    static TONES: [OnceLock<Arc<Prompt>>; CADENCES.len()] = [const { OnceLock::new() }; CADENCES.len()];
    let c = cadence(country)?;
    let index = CADENCES.iter().position(|k| std::ptr::eq(k, c))?;
    Some(
        TONES[index]
            .get_or_init(|| Arc::new(Prompt::from_linear(format!("tone:{}", c.country).into(), &c.samples())))
            .clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::media::g711;
    use crate::media::prompt::FRAME_SAMPLES;

    fn decoded(p: &Prompt) -> Vec<i16> {
        p.encoded(Codec::Pcmu)
            .iter()
            .map(|&c| g711::ulaw_to_linear(c))
            .collect()
    }

    /// Sign changes per second: twice the frequency of a pure tone.
    fn crossings_per_second(samples: &[i16]) -> f64 {
        let n = samples.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        n as f64 * f64::from(SAMPLE_RATE) / samples.len() as f64
    }

    #[test]
    fn japan_is_400_hz_one_second_on_two_off() {
        let tone = ringback("jp").unwrap();
        assert_eq!(tone.frame_count(), 150, "one period: 3 s of 20 ms frames");
        let ulaw = tone.encoded(Codec::Pcmu);
        let alaw = tone.encoded(Codec::Pcma);
        assert_eq!((ulaw.len(), alaw.len()), (150 * FRAME_SAMPLES, 150 * FRAME_SAMPLES));
        let samples = decoded(&tone);
        for (n, frame) in samples.chunks(FRAME_SAMPLES).enumerate() {
            let peak = frame.iter().map(|s| s.unsigned_abs()).max().unwrap();
            if n < 50 {
                assert!(peak > 3000, "frame {n} should sound: peak {peak}");
            } else {
                assert_eq!(peak, 0, "frame {n} should be silent");
            }
        }
        let rate = crossings_per_second(&samples[..8000]);
        assert!((rate - 800.0).abs() <= 2.0, "{rate} crossings/s: not 400 Hz");
        let silence = g711::linear_to_alaw(0);
        assert!(alaw[50 * FRAME_SAMPLES..].iter().all(|&b| b == silence));
    }

    #[test]
    fn us_and_uk_cadences() {
        let us = ringback("us").unwrap();
        assert_eq!(us.frame_count(), 300, "6 s period");
        let on: Vec<bool> = decoded(&us)
            .chunks(FRAME_SAMPLES)
            .map(|f| f.iter().any(|&s| s != 0))
            .collect();
        assert!(on[..100].iter().all(|&x| x) && on[100..].iter().all(|&x| !x));

        let uk = ringback("GB").unwrap();
        assert_eq!(uk.frame_count(), 150, "3 s period");
        let on: Vec<bool> = decoded(&uk)
            .chunks(FRAME_SAMPLES)
            .map(|f| f.iter().any(|&s| s != 0))
            .collect();
        let bursts: Vec<(usize, usize)> = [(0, 20), (20, 30), (30, 50), (50, 150)].into();
        for (i, (from, to)) in bursts.into_iter().enumerate() {
            let sounding = i % 2 == 0;
            assert!(on[from..to].iter().all(|&x| x == sounding), "frames {from}..{to}");
        }
    }

    #[test]
    fn unknown_countries_have_no_tone_and_tones_are_shared() {
        assert!(ringback("fr").is_none());
        assert!(cadence("").is_none());
        assert!(Arc::ptr_eq(&ringback("jp").unwrap(), &ringback("JP").unwrap()));
        assert_eq!(known_countries(), ["jp", "us", "uk"]);
    }
}
