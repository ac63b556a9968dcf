//! The key schedule (transcript, HKDF labels), key confirmation and sealed frames.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::frame::Message;
use super::pin::RoomId;

/// Domain separator used in the transcript and as AEAD associated data.
pub const PROTOCOL_LABEL: &[u8] = b"intercom/v1";
const CONFIRM_TEXT: &[u8] = b"confirm";

/// A 32-byte secret, wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret(pub(crate) [u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The raw bytes (for tests against the protocol vectors).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The four keys derived from the SPAKE2 key.
#[derive(Debug, Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeySchedule {
    /// Guest's confirm MAC key.
    pub confirm_guest: Secret,
    /// Host's confirm MAC key.
    pub confirm_host: Secret,
    /// Seals guest → host.
    pub seal_guest_to_host: Secret,
    /// Seals host → guest.
    pub seal_host_to_guest: Secret,
}

/// `T = SHA-256("intercom/v1" || room id || host pake msg || guest pake msg)`.
pub fn transcript(room: RoomId, host_msg: &[u8], guest_msg: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PROTOCOL_LABEL);
    h.update(room.to_hex().as_bytes());
    h.update(host_msg);
    h.update(guest_msg);
    h.finalize().into()
}

impl KeySchedule {
    /// Derives every key from the SPAKE2 key `k` and the transcript hash `t`.
    pub fn derive(k: &[u8], t: &[u8; 32]) -> KeySchedule {
        let hk = Hkdf::<Sha256>::new(Some(t), k);
        let key = |label: &str| {
            let mut out = [0u8; 32];
            hk.expand(label.as_bytes(), &mut out)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            Secret(out)
        };
        KeySchedule {
            confirm_guest: key("confirm guest"),
            confirm_host: key("confirm host"),
            seal_guest_to_host: key("seal guest->host"),
            seal_host_to_guest: key("seal host->guest"),
        }
    }
}

/// `HMAC-SHA256(key, "confirm")`.
pub fn confirm_mac(key: &Secret) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(CONFIRM_TEXT);
    mac.finalize().into_bytes().into()
}

/// Checks a confirm MAC in constant time.
pub fn verify_confirm(key: &Secret, mac: &[u8]) -> bool {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(CONFIRM_TEXT);
    m.verify_slice(mac).is_ok()
}

/// Why a sealed frame was refused. Any of these ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Replayed, reordered or skipped frame.
    #[error("sealed frame out of sequence (expected {expected}, got {got})")]
    Sequence {
        /// The number due.
        expected: u64,
        /// The number received.
        got: u64,
    },
    /// The tag did not verify: tampered or wrong key.
    #[error("sealed frame failed authentication")]
    Tag,
    /// Not a sealed frame.
    #[error("expected a sealed frame")]
    NotSealed,
    /// Sequence numbers ran out (never in practice).
    #[error("sequence numbers exhausted")]
    Exhausted,
}

/// One direction of the sealed channel.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SealDirection {
    key: Secret,
    next_seq: u64,
}

impl std::fmt::Debug for SealDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealDirection(seq {})", self.next_seq)
    }
}

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::from(n)
}

impl SealDirection {
    /// A direction starting at sequence number 0.
    pub fn new(key: Secret) -> SealDirection {
        SealDirection { key, next_seq: 0 }
    }

    /// Seals `inner` as the next frame.
    pub fn seal(&mut self, inner: &[u8]) -> Result<Message, SealError> {
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(SealError::Exhausted)?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key.0));
        let ct = cipher
            .encrypt(
                &nonce(seq),
                Payload {
                    msg: inner,
                    aad: PROTOCOL_LABEL,
                },
            )
            .map_err(|_| SealError::Tag)?;
        Ok(Message::Sealed { seq, ct })
    }

    /// Opens the next frame; anything but the exact next sequence number is refused.
    pub fn open(&mut self, frame: &Message) -> Result<Vec<u8>, SealError> {
        let Message::Sealed { seq, ct } = frame else {
            return Err(SealError::NotSealed);
        };
        if *seq != self.next_seq {
            return Err(SealError::Sequence {
                expected: self.next_seq,
                got: *seq,
            });
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key.0));
        let inner = cipher
            .decrypt(
                &nonce(*seq),
                Payload {
                    msg: ct,
                    aad: PROTOCOL_LABEL,
                },
            )
            .map_err(|_| SealError::Tag)?;
        self.next_seq = seq.checked_add(1).ok_or(SealError::Exhausted)?;
        Ok(inner)
    }
}
