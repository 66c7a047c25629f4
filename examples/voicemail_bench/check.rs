//! What the callers say, and what is checked afterwards: each recording
//! against the stream its caller sent, and denwa's fsync times.

use std::path::Path;

use denwa::media::g711::{linear_to_ulaw, ulaw_to_linear};

const PACKET: usize = 160;

/// A speech-like PCMU message for caller `n`: a voiced sound (a pitch with
/// harmonics) and some noise under a syllable envelope, so its level varies
/// from frame to frame but never drops to silence (it stays above -40 dBFS,
/// denwa's silence threshold is -45). The noise is seeded by the caller, so
/// every message is distinct.
pub fn message(n: usize, packets: usize) -> Vec<u8> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (n as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let pitch = 90.0 + (n % 97) as f64 * 1.7;
    let syllables = 3.0 + (n % 5) as f64 * 0.4;
    let tau = 2.0 * std::f64::consts::PI;
    (0..packets * PACKET)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let envelope = 0.2 + 0.8 * (0.5 + 0.5 * (tau * syllables * t).sin()).powi(2);
            let voiced: f64 = (1..=6).map(|h| (tau * pitch * h as f64 * t).sin() / h as f64).sum();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            linear_to_ulaw((7000.0 * envelope * (0.6 * voiced + 0.3 * noise)) as i16)
        })
        .collect()
}

/// One recording compared with what its caller sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Comparison {
    /// Where the recording starts in the sent stream (samples); None when
    /// its start is nowhere in the first seconds of it.
    pub offset: Option<usize>,
    /// Recorded minus sent, in samples.
    pub length_diff: i64,
    /// Samples that differ from the sent stream where the two overlap.
    pub mismatched: usize,
}

impl Comparison {
    pub fn exact(&self) -> bool {
        self.offset == Some(0) && self.length_diff == 0 && self.mismatched == 0
    }

    /// Within `tolerance_ms` in length, starting where the stream does
    /// (or within the tolerance), no sample wrong where they overlap.
    pub fn close(&self, tolerance_ms: i64) -> bool {
        self.offset.is_some_and(|o| o as i64 <= tolerance_ms * 8)
            && self.length_diff.abs() <= tolerance_ms * 8
            && self.mismatched == 0
    }
}

/// `recorded` against the G.711 decoding of `sent`, aligned on a packet
/// boundary of the sent stream (denwa's recording begins with a packet).
pub fn compare(sent: &[u8], recorded: &[i16]) -> Comparison {
    let source: Vec<i16> = sent.iter().map(|&c| ulaw_to_linear(c)).collect();
    let length_diff = recorded.len() as i64 - source.len() as i64;
    let head = &recorded[..recorded.len().min(PACKET)];
    let offset = (0..source.len().min(5 * 8000))
        .step_by(PACKET)
        .find(|&o| source[o..].starts_with(head) && !head.is_empty());
    let mismatched = match offset {
        Some(o) => {
            let overlap = recorded.len().min(source.len() - o);
            (0..overlap).filter(|&i| recorded[i] != source[o + i]).count() + (recorded.len() - overlap)
        }
        None => recorded.len(),
    };
    Comparison {
        offset,
        length_diff,
        mismatched,
    }
}

/// The samples of a WAV file.
pub fn wav_samples(path: &Path) -> Result<Vec<i16>, String> {
    let mut reader = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = reader.spec();
    if (spec.channels, spec.sample_rate, spec.bits_per_sample) != (1, 8000, 16) {
        return Err(format!("{}: not 8 kHz 16-bit mono: {spec:?}", path.display()));
    }
    reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// fsync/fdatasync times (ms) from `strace -T` output.
pub fn fsync_times_ms(trace: &str) -> Vec<f64> {
    trace
        .lines()
        .filter(|l| (l.contains("fsync") || l.contains("fdatasync")) && !l.contains(" <unfinished ...>"))
        .filter_map(|l| l.trim_end().strip_suffix('>')?.rsplit_once('<')?.1.parse::<f64>().ok())
        .map(|s| s * 1000.0)
        .collect()
}

/// count, mean, p99, max of some times (NaN when there are none).
pub fn summary(mut times: Vec<f64>) -> (usize, f64, f64, f64) {
    if times.is_empty() {
        return (0, f64::NAN, f64::NAN, f64::NAN);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let n = times.len();
    let p99 = times[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1];
    (n, times.iter().sum::<f64>() / n as f64, p99, times[n - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_aligned_and_judged() {
        let sent = message(3, 50);
        let decoded: Vec<i16> = sent.iter().map(|&c| ulaw_to_linear(c)).collect();
        assert!(compare(&sent, &decoded).exact());
        let late = compare(&sent, &decoded[320..]);
        assert_eq!((late.offset, late.length_diff, late.mismatched), (Some(320), -320, 0));
        assert!(late.close(40) && !late.close(20));
        let mut lost = decoded.clone();
        lost[4000..4160].fill(0);
        assert_eq!(compare(&sent, &lost).mismatched, 160);
        assert_eq!(compare(&message(4, 50), &decoded).offset, None, "streams are distinct");
    }

    #[test]
    fn messages_are_never_silent() {
        let decoded: Vec<i16> = message(0, 100).iter().map(|&c| ulaw_to_linear(c)).collect();
        for frame in decoded.chunks(PACKET) {
            let rms = (frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / PACKET as f64).sqrt();
            assert!(20.0 * (rms / 32768.0).log10() > -40.0);
        }
    }

    #[test]
    fn strace_lines_are_read() {
        let trace = "12 fsync(5)                = 0 <0.002500>\n13 fdatasync(7 <unfinished ...>\n\
13 <... fdatasync resumed>)     = 0 <0.010000>\n12 +++ exited with 0 +++\n";
        let times = fsync_times_ms(trace);
        assert_eq!(times.len(), 2);
        assert!((times[0] - 2.5).abs() < 1e-9 && (times[1] - 10.0).abs() < 1e-9);
        assert_eq!(summary(vec![1.0, 3.0]), (2, 2.0, 3.0, 3.0));
    }
}
