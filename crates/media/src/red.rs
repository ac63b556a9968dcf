//! RED (RFC 2198): an RTP payload that carries earlier frames again beside the current
//! one. A browser sends it when the answer lists RED first (Chromium: the frame before,
//! 20 ms later), so a single lost packet is rebuilt whole from the next one. The box
//! receives it; its own delayed copies go as packets of their own ([`crate::sender`]:
//! inside RED, a burst of lost packets takes a frame and its copy twice as often).
//!
//! Layout: for each redundant block a 4-byte header (F = 1, payload type, 14-bit
//! timestamp offset, 10-bit length), then a 1-byte header for the primary (F = 0,
//! payload type), then the blocks' data in header order, the primary's last.

use crate::codec::packet_samples;

/// A RED payload that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedError {
    /// The headers run past the payload's end.
    #[error("RED headers cut short at byte {0}")]
    Headers(usize),
    /// The blocks' lengths add up to more than the payload holds.
    #[error("RED blocks need {need} bytes, the payload has {have}")]
    Blocks {
        /// Bytes the headers announce.
        need: usize,
        /// Bytes after the headers.
        have: usize,
    },
}

/// One block of a RED payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    /// The block's own payload type.
    pub payload_type: u8,
    /// How many timestamp units before the packet's timestamp it was sent (0: primary).
    pub offset: u32,
    /// The block's payload.
    pub data: &'a [u8],
}

/// A RED payload split into its blocks, oldest first, the primary last.
pub fn split(payload: &[u8]) -> Result<Vec<Block<'_>>, RedError> {
    let mut heads = Vec::new();
    let mut at = 0;
    loop {
        let first = *payload.get(at).ok_or(RedError::Headers(at))?;
        let payload_type = first & 0x7f;
        if first & 0x80 == 0 {
            heads.push((payload_type, 0, None));
            at += 1;
            break;
        }
        let h = payload.get(at..at + 4).ok_or(RedError::Headers(at))?;
        let offset = (u32::from(h[1]) << 6) | (u32::from(h[2]) >> 2);
        let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        heads.push((payload_type, offset, Some(len)));
        at += 4;
    }
    let have = payload.len() - at;
    let need: usize = heads.iter().filter_map(|h| h.2).sum();
    if need > have {
        return Err(RedError::Blocks { need, have });
    }
    Ok(heads
        .into_iter()
        .map(|(payload_type, offset, len)| {
            let n = len.unwrap_or(payload.len() - at);
            let data = &payload[at..at + n];
            at += n;
            Block {
                payload_type,
                offset,
                data,
            }
        })
        .collect())
}

/// An Opus packet taken out of a RED payload, with the RTP numbers it was first sent
/// under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its sequence number.
    pub seq: u16,
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// The Opus packet.
    pub data: Vec<u8>,
}

/// The Opus packets of a RED payload that came as `seq` / `timestamp`: the primary, and
/// the redundant ones oldest first. A redundant block's sequence number is counted back
/// by the primary's length in samples (a sender numbers one packet per frame); blocks of
/// other payload types, empty ones, and ones whose offset is not a whole number of
/// frames (or more than `max_back` frames back) are left out.
pub fn opus_frames(
    seq: u16,
    timestamp: u32,
    payload: &[u8],
    opus: u8,
    max_back: u16,
) -> Result<(Option<Frame>, Vec<Frame>), RedError> {
    let blocks = split(payload)?;
    let Some((primary, older)) = blocks.split_last() else {
        return Ok((None, Vec::new()));
    };
    let usable = |b: &Block<'_>| b.payload_type == opus && !b.data.is_empty();
    let primary = usable(primary).then(|| Frame {
        seq,
        timestamp,
        data: primary.data.to_vec(),
    });
    let step = primary
        .as_ref()
        .map_or(crate::FRAME_SAMPLES, |p| packet_samples(&p.data)) as u32;
    let redundant = older
        .iter()
        .filter(|b| usable(b) && b.offset > 0 && step > 0 && b.offset % step == 0)
        .filter_map(|b| {
            let back = u16::try_from(b.offset / step).ok()?;
            (back <= max_back).then(|| Frame {
                seq: seq.wrapping_sub(back),
                timestamp: timestamp.wrapping_sub(b.offset),
                data: b.data.to_vec(),
            })
        })
        .collect();
    Ok((primary, redundant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tone_frame, VoiceEncoder};

    /// A RED payload: `blocks` as (payload type, offset, data), the last the primary.
    fn red(blocks: &[(u8, u32, &[u8])]) -> Vec<u8> {
        let (last, older) = blocks.split_last().unwrap();
        let mut out = Vec::new();
        for (pt, offset, data) in older {
            out.push(0x80 | pt);
            out.push((offset >> 6) as u8);
            out.push(((offset & 0x3f) << 2) as u8 | (data.len() >> 8) as u8);
            out.push(data.len() as u8);
        }
        out.push(last.0);
        for (_, _, data) in blocks {
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn splits_redundant_blocks_and_the_primary() {
        let p = red(&[
            (111, 1920, b"two back"),
            (111, 960, b"one"),
            (111, 0, b"now!"),
        ]);
        let b = split(&p).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[0].payload_type, b[0].offset, b[0].data),
            (111, 1920, &b"two back"[..])
        );
        assert_eq!((b[1].offset, b[1].data), (960, &b"one"[..]));
        assert_eq!((b[2].offset, b[2].data), (0, &b"now!"[..]));
        // A primary alone: one header byte.
        assert_eq!(split(&[111, 1, 2]).unwrap()[0].data, &[1, 2]);
        // Lengths up to 1023 and offsets up to 16383 survive the bit packing.
        let long = vec![7u8; 1023];
        let p = red(&[(111, 16383, &long), (111, 0, b"x")]);
        let b = split(&p).unwrap();
        assert_eq!(
            (b[0].offset, b[0].data.len(), b[1].data),
            (16383, 1023, &b"x"[..])
        );
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        assert_eq!(split(&[]), Err(RedError::Headers(0)));
        assert_eq!(split(&[0x80 | 111, 0, 0]), Err(RedError::Headers(0)));
        assert_eq!(
            split(&[0x80 | 111, 15, 0, 9, 111, 1, 2]),
            Err(RedError::Blocks { need: 9, have: 2 })
        );
        // Every prefix of a good payload and every byte flipped: no panic.
        let p = red(&[(111, 960, b"one"), (111, 0, b"now!")]);
        for n in 0..p.len() {
            let _ = split(&p[..n]);
        }
        for i in 0..p.len() {
            for bit in 0..8 {
                let mut q = p.clone();
                q[i] ^= 1 << bit;
                let _ = opus_frames(5, 9600, &q, 111, 4);
            }
        }
    }

    #[test]
    fn redundant_opus_frames_get_the_numbers_they_were_sent_with() {
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        let a = enc.encode(&tone_frame(0)).unwrap();
        let b = enc.encode(&tone_frame(1)).unwrap();
        let p = red(&[(111, 960, &a), (111, 0, &b)]);
        let (primary, older) = opus_frames(0, 480, &p, 111, 4).unwrap();
        let primary = primary.unwrap();
        assert_eq!(
            (primary.seq, primary.timestamp, &primary.data),
            (0, 480, &b)
        );
        // Numbers wrap back past zero.
        assert_eq!(older.len(), 1);
        assert_eq!(
            (older[0].seq, older[0].timestamp),
            (u16::MAX, u32::MAX - 479)
        );
        assert_eq!(older[0].data, a);
    }

    #[test]
    fn blocks_that_cannot_be_placed_are_left_out() {
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        let a = enc.encode(&tone_frame(0)).unwrap();
        let b = enc.encode(&tone_frame(1)).unwrap();
        // Not a whole frame back; another codec's; empty; too far back.
        let p = red(&[
            (111, 500, &a),
            (0, 960, &a),
            (111, 1920, b""),
            (111, 960 * 9, &a),
            (111, 0, &b),
        ]);
        let (primary, older) = opus_frames(100, 96_000, &p, 111, 4).unwrap();
        assert!(primary.is_some());
        assert!(older.is_empty(), "{older:?}");
        // A primary of another payload type is not taken for Opus.
        let (primary, _) = opus_frames(100, 96_000, &red(&[(13, 0, b"cn")]), 111, 4).unwrap();
        assert!(primary.is_none());
    }
}
