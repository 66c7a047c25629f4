//! Prompts: WAV files the owner records, decoded once at load time into
//! 8 kHz G.711 in both laws, so the packet path only slices shared bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::g711;
use crate::codec::Codec;

/// G.711 runs at 8 kHz; one RTP packet carries 20 ms = 160 samples.
pub const SAMPLE_RATE: u32 = 8000;
pub const FRAME_SAMPLES: usize = 160;

/// A prompt ready to play: both encodings, padded with silence to whole frames.
#[derive(Debug)]
pub struct Prompt {
    pub path: PathBuf,
    ulaw: Arc<[u8]>,
    alaw: Arc<[u8]>,
}

/// Every prompt a config names, by the name used in its rules, each loaded
/// and encoded once. Built with the policy and swapped with it on reload.
#[derive(Debug, Default)]
pub struct PromptLibrary {
    prompts: HashMap<Arc<str>, Arc<Prompt>>,
}

impl PromptLibrary {
    pub fn insert(&mut self, name: Arc<str>, prompt: Arc<Prompt>) {
        self.prompts.insert(name, prompt);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Prompt>> {
        self.prompts.get(name)
    }
}

impl Prompt {
    pub fn from_linear(path: PathBuf, samples: &[i16]) -> Prompt {
        let frames = samples.len().div_ceil(FRAME_SAMPLES);
        let padded = frames * FRAME_SAMPLES;
        let mut ulaw = Vec::with_capacity(padded);
        let mut alaw = Vec::with_capacity(padded);
        for i in 0..padded {
            let s = samples.get(i).copied().unwrap_or(0);
            ulaw.push(g711::linear_to_ulaw(s));
            alaw.push(g711::linear_to_alaw(s));
        }
        Prompt {
            path,
            ulaw: ulaw.into(),
            alaw: alaw.into(),
        }
    }

    /// The encoded audio for a codec, a whole number of 160-byte frames.
    pub fn encoded(&self, codec: Codec) -> Arc<[u8]> {
        match codec {
            Codec::Pcmu => self.ulaw.clone(),
            Codec::Pcma => self.alaw.clone(),
        }
    }

    pub fn frame_count(&self) -> usize {
        self.ulaw.len() / FRAME_SAMPLES
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.frame_count() as u64 * 20)
    }
}

#[derive(Debug)]
pub enum PromptError {
    Missing(PathBuf, std::io::Error),
    NotWav(PathBuf, String),
    Empty(PathBuf),
    TooLong(PathBuf, Duration, Duration),
}

impl std::fmt::Display for PromptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptError::Missing(p, e) => write!(f, "prompt {}: cannot open ({e})", p.display()),
            PromptError::NotWav(p, why) => {
                write!(f, "prompt {}: not a usable WAV file ({why})", p.display())
            }
            PromptError::Empty(p) => write!(f, "prompt {}: contains no audio", p.display()),
            PromptError::TooLong(p, len, max) => write!(
                f,
                "prompt {}: {:.1} s long, over the {} s limit (shorten it or raise prompts.max_seconds)",
                p.display(),
                len.as_secs_f64(),
                max.as_secs()
            ),
        }
    }
}

impl std::error::Error for PromptError {}

/// Load a WAV file: PCM 8/16/24/32-bit or 32-bit float, any channel count and
/// common sample rate; mixed to mono, resampled to 8 kHz, G.711-encoded.
pub fn load(path: &Path, max: Duration) -> Result<Prompt, PromptError> {
    let file = std::fs::File::open(path).map_err(|e| PromptError::Missing(path.to_owned(), e))?;
    let reader = hound::WavReader::new(std::io::BufReader::new(file)).map_err(|e| not_wav(path, e))?;
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    if spec.sample_rate < 4000 || spec.sample_rate > 192_000 {
        return Err(PromptError::NotWav(
            path.to_owned(),
            format!("unsupported sample rate {} Hz", spec.sample_rate),
        ));
    }
    let frames = reader.duration() as u64;
    let length = Duration::from_secs_f64(frames as f64 / spec.sample_rate as f64);
    if length > max {
        return Err(PromptError::TooLong(path.to_owned(), length, max));
    }

    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| not_wav(path, e))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| not_wav(path, e))?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(PromptError::Empty(path.to_owned()));
    }
    let resampled = resample_to_8k(&mono, spec.sample_rate).map_err(|e| PromptError::NotWav(path.to_owned(), e))?;
    let linear: Vec<i16> = resampled
        .iter()
        .map(|s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    Ok(Prompt::from_linear(path.to_owned(), &linear))
}

fn not_wav(path: &Path, e: hound::Error) -> PromptError {
    let why = match e {
        hound::Error::Unsupported => {
            "unsupported encoding; save it as PCM (8/16/24/32-bit) or 32-bit float WAV".to_string()
        }
        other => other.to_string(),
    };
    PromptError::NotWav(path.to_owned(), why)
}

fn resample_to_8k(mono: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == SAMPLE_RATE {
        return Ok(mono.to_vec());
    }
    let mut resampler = Fft::<f32>::new(rate as usize, SAMPLE_RATE as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| format!("resampler: {e}"))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| format!("resampler input: {e}"))?;
    let out = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| format!("resampling: {e}"))?;
    Ok(out.take_data())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Write a sine tone WAV for tests.
    pub fn write_tone(path: &Path, spec: hound::WavSpec, seconds: f64, freq: f64, amplitude: f64) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let n = (seconds * spec.sample_rate as f64).round() as usize;
        for i in 0..n {
            let v = amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / spec.sample_rate as f64).sin();
            for _ in 0..spec.channels {
                match (spec.sample_format, spec.bits_per_sample) {
                    (hound::SampleFormat::Float, _) => w.write_sample(v as f32).unwrap(),
                    (_, 8) => w.write_sample((v * 127.0) as i8).unwrap(),
                    (_, 16) => w.write_sample((v * 32767.0) as i16).unwrap(),
                    (_, 24) => w.write_sample((v * 8_388_607.0) as i32).unwrap(),
                    _ => w.write_sample((v * 2_147_483_647.0) as i32).unwrap(),
                }
            }
        }
        w.finalize().unwrap();
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    fn decoded(p: &Prompt) -> Vec<i16> {
        p.encoded(Codec::Pcmu)
            .iter()
            .map(|&c| g711::ulaw_to_linear(c))
            .collect()
    }

    #[test]
    fn formats_rates_and_channels_convert_with_duration_and_level() {
        let dir = std::env::temp_dir().join(format!("denwa-prompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (8000, 16, 1, hound::SampleFormat::Int),
            (16000, 16, 1, hound::SampleFormat::Int),
            (22050, 8, 1, hound::SampleFormat::Int),
            (44100, 24, 2, hound::SampleFormat::Int),
            (48000, 32, 2, hound::SampleFormat::Int),
            (48000, 32, 1, hound::SampleFormat::Float),
        ];
        for (rate, bits, channels, format) in cases {
            let path = dir.join(format!("t-{rate}-{bits}-{channels}.wav"));
            let spec = hound::WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: bits,
                sample_format: format,
            };
            write_tone(&path, spec, 2.5, 440.0, 0.5);
            let p = load(&path, Duration::from_secs(60)).unwrap();
            // 2.5 s = 125 frames; the resampler may add or lose a frame at most.
            assert!(
                (p.frame_count() as i64 - 125).abs() <= 1,
                "{rate}/{bits}: {} frames",
                p.frame_count()
            );
            // A 0.5 full-scale sine has RMS 0.354 × 32767 ≈ 11585; G.711 keeps it within a few %.
            let samples = decoded(&p);
            let level = rms(&samples[800..samples.len() - 800]);
            assert!((level - 11585.0).abs() < 600.0, "{rate}/{bits}/{channels}: rms {level}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_prompts_name_the_file() {
        let dir = std::env::temp_dir().join(format!("denwa-badprompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.wav");
        let e = load(&missing, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, PromptError::Missing(..)) && e.to_string().contains("missing.wav"));

        let text = dir.join("text.wav");
        std::fs::write(&text, b"this is not audio").unwrap();
        assert!(matches!(
            load(&text, Duration::from_secs(5)),
            Err(PromptError::NotWav(..))
        ));

        let empty = dir.join("empty.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(&empty, spec).unwrap().finalize().unwrap();
        assert!(matches!(
            load(&empty, Duration::from_secs(5)),
            Err(PromptError::Empty(..))
        ));

        let long = dir.join("long.wav");
        write_tone(&long, spec, 3.0, 440.0, 0.1);
        let e = load(&long, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, PromptError::TooLong(..)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn partial_last_frame_is_padded_with_silence() {
        let p = Prompt::from_linear("x".into(), &[1000; 161]);
        assert_eq!(p.frame_count(), 2);
        assert_eq!(p.encoded(Codec::Pcma).len(), 320);
        assert_eq!(p.encoded(Codec::Pcmu)[319], g711::linear_to_ulaw(0));
    }
}
