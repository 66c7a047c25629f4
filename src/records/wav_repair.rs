//! Makes a WAV file's header agree with its length.
//!
//! A recording cut short (SIGKILL, power loss, a full disk) keeps the sizes
//! its header had at the last flush; the audio after that is on disk but
//! players stop early or refuse the file. The fix walks the chunks to the
//! `data` chunk, drops a trailing partial sample, and rewrites the RIFF and
//! `data` sizes from what is really there.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What a repaired file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Samples per channel in the `data` chunk after the repair.
    pub samples: u64,
    /// Bytes of audio in the `data` chunk.
    pub data_bytes: u64,
    pub sample_rate: u32,
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Rewrites the sizes in the header of the WAV file at `path` from its
/// length, truncating a partial trailing sample frame. Fsyncs the file.
pub fn repair_wav(path: &Path) -> io::Result<Repaired> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let file_len = file.metadata()?.len();
    let mut riff = [0u8; 12];
    file.read_exact(&mut riff)
        .map_err(|_| invalid("shorter than a RIFF header"))?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(invalid("not a RIFF/WAVE file"));
    }
    let mut offset = 12u64;
    let mut block_align: Option<u16> = None;
    let mut sample_rate = 0u32;
    loop {
        let mut chunk = [0u8; 8];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut chunk).map_err(|_| invalid("no data chunk"))?;
        let size = u32::from_le_bytes(chunk[4..8].try_into().expect("4 bytes")) as u64;
        let body = offset + 8;
        match &chunk[0..4] {
            b"fmt " => {
                let mut fmt = [0u8; 16];
                file.read_exact(&mut fmt).map_err(|_| invalid("truncated fmt chunk"))?;
                sample_rate = u32::from_le_bytes(fmt[4..8].try_into().expect("4 bytes"));
                block_align = Some(u16::from_le_bytes(fmt[12..14].try_into().expect("2 bytes")));
            }
            b"data" => {
                let align = block_align.ok_or_else(|| invalid("data chunk before fmt chunk"))?;
                let align = u64::from(align.max(1));
                let available = file_len.saturating_sub(body);
                // The data chunk's size field is 32 bits.
                let data_bytes = (available - available % align).min(u64::from(u32::MAX) - align);
                let data_bytes = data_bytes - data_bytes % align;
                let end = body + data_bytes;
                if end < file_len {
                    file.set_len(end)?;
                }
                file.seek(SeekFrom::Start(offset + 4))?;
                file.write_all(&(data_bytes as u32).to_le_bytes())?;
                file.seek(SeekFrom::Start(4))?;
                file.write_all(&((end - 8) as u32).to_le_bytes())?;
                file.sync_all()?;
                return Ok(Repaired {
                    samples: data_bytes / align,
                    data_bytes,
                    sample_rate,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        offset = body + size + (size & 1);
        if offset >= file_len {
            return Err(invalid("no data chunk"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn fixes_stale_sizes_and_drops_a_half_sample() {
        let dir = crate::records::test_dir("wav-repair");
        let path = dir.join("a.wav");
        write_wav(&path, &[1, 2, 3]);
        // Append 5 more samples and one stray byte behind the header's back.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        for s in [4i16, 5, 6, 7, 8] {
            f.write_all(&s.to_le_bytes()).unwrap();
        }
        f.write_all(&[9]).unwrap();
        drop(f);
        let repaired = repair_wav(&path).unwrap();
        assert_eq!(repaired.samples, 8);
        assert_eq!(repaired.sample_rate, 8000);
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.len(), 8);
        let got: Vec<i16> = reader.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn rejects_what_is_not_a_wav() {
        let dir = crate::records::test_dir("wav-repair-bad");
        let path = dir.join("b.wav");
        std::fs::write(&path, b"hello world, not a wav").unwrap();
        assert!(repair_wav(&path).is_err());
        std::fs::write(&path, b"RIF").unwrap();
        assert!(repair_wav(&path).is_err());
    }
}
