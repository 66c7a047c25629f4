//! The record slot: the media thread decodes what the peer sends into
//! fixed-size 16-bit frames and hands them to a writer thread over a
//! bounded channel. It never blocks and never touches the disk: when the
//! writer falls behind, frames are dropped and counted.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use super::g711;
use super::prompt::FRAME_SAMPLES;
use crate::codec::Codec;

/// Most samples one frame carries (60 ms: the longest ptime we meet).
pub const MAX_FRAME_SAMPLES: usize = 3 * FRAME_SAMPLES;

/// One received packet's audio, decoded.
#[derive(Debug, Clone)]
pub struct RecordFrame {
    /// The sender's SSRC: a new one starts a new stream.
    pub ssrc: u32,
    /// RTP timestamp of the packet (8 kHz units): gaps show lost packets.
    pub timestamp: u32,
    pub len: usize,
    pub samples: [i16; MAX_FRAME_SAMPLES],
}

impl RecordFrame {
    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.len]
    }
}

/// The sending half, given to the media thread in `MediaCommand::Record`.
#[derive(Debug)]
pub struct RecordSink {
    tx: SyncSender<RecordFrame>,
    /// Frames dropped because the writer was behind.
    pub dropped: u64,
}

/// A bounded frame channel: `capacity` frames (50 per second of audio).
pub fn channel(capacity: usize) -> (RecordSink, Receiver<RecordFrame>) {
    let (tx, rx) = sync_channel(capacity);
    (RecordSink { tx, dropped: 0 }, rx)
}

impl RecordSink {
    /// Decode `payload` and pass it on; false when the writer is gone.
    pub fn push(&mut self, codec: Codec, ssrc: u32, timestamp: u32, payload: &[u8]) -> bool {
        let len = payload.len().min(MAX_FRAME_SAMPLES);
        let mut frame = RecordFrame {
            ssrc,
            timestamp,
            len,
            samples: [0; MAX_FRAME_SAMPLES],
        };
        for (s, &code) in frame.samples.iter_mut().zip(&payload[..len]) {
            *s = g711::decode(codec, code);
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_decoded_and_a_slow_writer_loses_frames_not_time() {
        let (mut sink, rx) = channel(2);
        assert!(sink.push(Codec::Pcma, 1, 160, &[0xD5; 160]));
        assert!(sink.push(Codec::Pcmu, 1, 320, &[0xFF, 0x80]));
        assert!(
            sink.push(Codec::Pcmu, 1, 480, &[0xFF; 160]),
            "full: dropped, not blocked"
        );
        assert_eq!(sink.dropped, 1);
        let first = rx.recv().unwrap();
        assert_eq!(
            (first.timestamp, first.samples().len(), first.samples()[0]),
            (160, 160, 8)
        );
        assert_eq!(rx.recv().unwrap().samples(), &[0, 32124]);
        drop(rx);
        assert!(!sink.push(Codec::Pcmu, 1, 640, &[0; 160]), "the writer is gone");
    }
}
