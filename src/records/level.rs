//! Audio level of the caller's frames, so the call side can decide "silent
//! throughout" (discard the message) and "a stretch of silence" (stop
//! recording) with thresholds of its own.

/// Level reported for digital silence (all-zero frames).
pub const FLOOR_DBFS: f32 = -120.0;

/// RMS level of one frame in dBFS: 0 for a full-scale square wave, about -3
/// for a full-scale sine, [`FLOOR_DBFS`] for digital silence.
pub fn frame_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return FLOOR_DBFS;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return FLOOR_DBFS;
    }
    ((20.0 * rms.log10()) as f32).max(FLOOR_DBFS)
}

/// Running summary of a recording's levels, one frame at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelMeter {
    /// Frames at or below this level count as silence.
    pub silence_below_dbfs: f32,
    frame_ms: u32,
    voiced_ms: u64,
    total_ms: u64,
    current_silence_ms: u64,
    longest_silence_ms: u64,
    peak_dbfs: f32,
}

impl LevelMeter {
    /// `frame_ms` is the duration of one frame (20 for 160 samples at 8 kHz).
    /// A telephone line's noise floor sits around -60 to -50 dBFS; -45 is a
    /// reasonable `silence_below_dbfs` for "nobody speaks".
    pub fn new(silence_below_dbfs: f32, frame_ms: u32) -> Self {
        Self {
            silence_below_dbfs,
            frame_ms,
            voiced_ms: 0,
            total_ms: 0,
            current_silence_ms: 0,
            longest_silence_ms: 0,
            peak_dbfs: FLOOR_DBFS,
        }
    }

    /// Measures one frame; returns its level.
    pub fn push(&mut self, samples: &[i16]) -> f32 {
        let level = frame_dbfs(samples);
        self.push_level(level);
        level
    }

    /// Counts a frame whose level is already known (or a lost frame as
    /// [`FLOOR_DBFS`]).
    pub fn push_level(&mut self, dbfs: f32) {
        let ms = u64::from(self.frame_ms);
        self.total_ms += ms;
        self.peak_dbfs = self.peak_dbfs.max(dbfs);
        if dbfs <= self.silence_below_dbfs {
            self.current_silence_ms += ms;
            self.longest_silence_ms = self.longest_silence_ms.max(self.current_silence_ms);
        } else {
            self.voiced_ms += ms;
            self.current_silence_ms = 0;
        }
    }

    /// Nothing above the threshold so far.
    pub fn silent_throughout(&self) -> bool {
        self.voiced_ms == 0
    }

    /// Silence since the last voiced frame (the caller stopped talking).
    pub fn current_silence_ms(&self) -> u64 {
        self.current_silence_ms
    }

    pub fn longest_silence_ms(&self) -> u64 {
        self.longest_silence_ms
    }

    pub fn voiced_ms(&self) -> u64 {
        self.voiced_ms
    }

    pub fn total_ms(&self) -> u64 {
        self.total_ms
    }

    pub fn peak_dbfs(&self) -> f32 {
        self.peak_dbfs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amplitude * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn levels_of_known_signals() {
        assert_eq!(frame_dbfs(&[0; 160]), FLOOR_DBFS);
        assert_eq!(frame_dbfs(&[]), FLOOR_DBFS);
        let square: Vec<i16> = (0..160).map(|i| if i % 2 == 0 { 32767 } else { -32768 }).collect();
        assert!(frame_dbfs(&square).abs() < 0.01);
        let full_sine = frame_dbfs(&sine(32767.0, 160));
        assert!((full_sine + 3.01).abs() < 0.05, "{full_sine}");
        // A tenth of the amplitude is 20 dB lower.
        let tenth = frame_dbfs(&sine(3276.7, 160));
        assert!((tenth - (full_sine - 20.0)).abs() < 0.1, "{tenth}");
    }

    #[test]
    fn meter_tracks_silence_stretches() {
        let mut meter = LevelMeter::new(-45.0, 20);
        for _ in 0..10 {
            meter.push(&[3; 160]); // about -80 dBFS: line noise
        }
        assert!(meter.silent_throughout());
        assert_eq!(meter.current_silence_ms(), 200);
        meter.push(&sine(8000.0, 160));
        assert!(!meter.silent_throughout());
        assert_eq!(meter.current_silence_ms(), 0);
        for _ in 0..50 {
            meter.push_level(FLOOR_DBFS);
        }
        assert_eq!(meter.current_silence_ms(), 1000);
        assert_eq!(meter.longest_silence_ms(), 1000);
        assert_eq!(meter.voiced_ms(), 20);
        assert_eq!(meter.total_ms(), 1220);
        assert!(meter.peak_dbfs() > -20.0);
    }
}
