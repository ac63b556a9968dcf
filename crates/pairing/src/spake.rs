//! SPAKE2 in its symmetric form over Ed25519 (PROTOCOL §3), our own so that every secret
//! it holds is wiped: the password, its scalar, our random scalar and the shared element
//! live in [`Zeroize`] types and are cleared on drop. It speaks the same bytes as
//! python-spake2's `SPAKE2_Symmetric` and the `spake2` crate's `start_symmetric` (the
//! tests check both), so the wire protocol is unchanged.
//!
//! - password scalar `w` = HKDF-SHA256(salt = "", ikm = password, info = "SPAKE2 pw"),
//!   48 bytes read as a big-endian integer, mod the group order;
//! - our message = `'S'` || compress(x·B + w·S) for a random scalar `x`, with `S` the
//!   symmetric mode's fixed element;
//! - key = SHA-256(SHA-256(password) || SHA-256(identity) || the two 32-byte points in
//!   byte order || compress(x·(Y − w·S))).

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The side byte of a symmetric-mode message.
const SIDE_SYMMETRIC: u8 = b'S';
/// Length of a message: side byte and compressed point.
pub const MESSAGE_LEN: usize = 33;

/// The symmetric mode's element `S`: python-spake2's `ParamsEd25519` symmetric element
/// (derived there from the seed "symmetric"), compressed. A protocol constant.
const S_COMPRESSED: [u8; 32] = [
    0x6f, 0x00, 0xda, 0xe8, 0x7c, 0x1b, 0xe1, 0xa7, 0x3b, 0x59, 0x22, 0xef, 0x43, 0x1c, 0xd8, 0xf5,
    0x78, 0x79, 0x56, 0x9c, 0x22, 0x2d, 0x22, 0xb1, 0xcd, 0x71, 0xe8, 0x54, 0x6a, 0xb8, 0xe6, 0xf1,
];

/// Why the peer's message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpakeError {
    /// Not 33 bytes.
    #[error("the SPAKE2 message is not {MESSAGE_LEN} bytes")]
    WrongLength,
    /// Not a symmetric-mode message.
    #[error("the SPAKE2 message is not from the symmetric mode")]
    BadSide,
    /// Not a point of the group, or one of small order.
    #[error("the SPAKE2 message is not a valid point")]
    BadPoint,
}

fn element_s() -> EdwardsPoint {
    // A fixed, valid encoding: decompression cannot fail (a test checks it).
    CompressedEdwardsY(S_COMPRESSED)
        .decompress()
        .unwrap_or_default()
}

/// The password's scalar.
fn password_scalar(password: &[u8]) -> Scalar {
    let mut okm = Zeroizing::new([0u8; 48]);
    // 48 bytes is far below HKDF's limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(b""), password).expand(b"SPAKE2 pw", &mut okm[..]);
    // Big-endian as read, little-endian for the reduction.
    let mut wide = Zeroizing::new([0u8; 64]);
    for (i, b) in okm.iter().enumerate() {
        wide[47 - i] = *b;
    }
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// One side's SPAKE2 state between its message and the peer's.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Spake2 {
    password: Vec<u8>,
    identity: Vec<u8>,
    password_scalar: Scalar,
    secret: Scalar,
    /// Our point, compressed (public; kept for the transcript).
    #[zeroize(skip)]
    ours: [u8; 32],
}

impl std::fmt::Debug for Spake2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spake2(****)")
    }
}

impl Spake2 {
    /// Starts with `password` and `identity`; returns the state and our message.
    pub fn start(password: &[u8], identity: &[u8]) -> (Spake2, [u8; MESSAGE_LEN]) {
        Spake2::start_with(password, identity, Scalar::random(&mut OsRng))
    }

    /// As [`Spake2::start`] with a given secret scalar (tests, vectors).
    fn start_with(password: &[u8], identity: &[u8], secret: Scalar) -> (Spake2, [u8; 33]) {
        let password_scalar = password_scalar(password);
        let point = ED25519_BASEPOINT_TABLE * &secret + element_s() * password_scalar;
        let ours = point.compress().to_bytes();
        let mut msg = [0u8; MESSAGE_LEN];
        msg[0] = SIDE_SYMMETRIC;
        msg[1..].copy_from_slice(&ours);
        let state = Spake2 {
            password: password.to_vec(),
            identity: identity.to_vec(),
            password_scalar,
            secret,
            ours,
        };
        (state, msg)
    }

    /// The shared key from the peer's message. It comes out whatever the peer's PIN was
    /// (the keys then differ): the confirm step is what tells a wrong PIN.
    pub fn finish(self, theirs: &[u8]) -> Result<Zeroizing<[u8; 32]>, SpakeError> {
        if theirs.len() != MESSAGE_LEN {
            return Err(SpakeError::WrongLength);
        }
        if theirs[0] != SIDE_SYMMETRIC {
            return Err(SpakeError::BadSide);
        }
        let mut their_point = [0u8; 32];
        their_point.copy_from_slice(&theirs[1..]);
        let y = CompressedEdwardsY(their_point)
            .decompress()
            .filter(|p| !p.is_small_order())
            .ok_or(SpakeError::BadPoint)?;
        let mut shared = (y - element_s() * self.password_scalar) * self.secret;
        let mut shared_bytes = Zeroizing::new(shared.compress().to_bytes());
        shared.zeroize();

        let (first, second) = if self.ours < their_point {
            (self.ours, their_point)
        } else {
            (their_point, self.ours)
        };
        let mut transcript = Sha256::new();
        transcript.update(Zeroizing::new(<[u8; 32]>::from(Sha256::digest(
            &self.password,
        ))));
        transcript.update(Sha256::digest(&self.identity));
        transcript.update(first);
        transcript.update(second);
        transcript.update(&shared_bytes[..]);
        shared_bytes.zeroize();
        Ok(Zeroizing::new(transcript.finalize().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symmetric_element_is_a_point_of_the_prime_order_group() {
        let s = CompressedEdwardsY(S_COMPRESSED).decompress().unwrap();
        assert!(s.is_torsion_free());
        assert!(!s.is_small_order());
    }

    #[test]
    fn same_password_same_key_other_password_other_key() {
        let (a, ma) = Spake2::start(b"4821", b"intercom/v1/0f1e2d3c4b5a6978");
        let (b, mb) = Spake2::start(b"4821", b"intercom/v1/0f1e2d3c4b5a6978");
        assert_eq!(*a.finish(&mb).unwrap(), *b.finish(&ma).unwrap());
        let (a, ma) = Spake2::start(b"4821", b"intercom/v1/0f1e2d3c4b5a6978");
        let (b, mb) = Spake2::start(b"0000", b"intercom/v1/0f1e2d3c4b5a6978");
        assert_ne!(*a.finish(&mb).unwrap(), *b.finish(&ma).unwrap());
    }

    /// The `spake2` crate (a dev-dependency only) and this module agree byte for byte:
    /// each finishes the other's message to the same key.
    #[test]
    fn interoperates_with_the_spake2_crate() {
        use spake2::{Ed25519Group, Identity, Password, Spake2 as Theirs};
        for pin in ["0000", "4821", "9999"] {
            let id = b"intercom/v1/0f1e2d3c4b5a6978";
            let (ours, our_msg) = Spake2::start(pin.as_bytes(), id);
            let (theirs, their_msg) = Theirs::<Ed25519Group>::start_symmetric(
                &Password::new(pin.as_bytes()),
                &Identity::new(id),
            );
            assert_eq!(their_msg.len(), MESSAGE_LEN);
            let k_ours = ours.finish(&their_msg).unwrap();
            let k_theirs = theirs.finish(&our_msg).unwrap();
            assert_eq!(&k_ours[..], &k_theirs[..]);
        }
    }

    #[test]
    fn bad_messages_are_refused() {
        let id = b"intercom/v1/0f1e2d3c4b5a6978";
        let (_, good) = Spake2::start(b"4821", id);
        let start = || Spake2::start(b"4821", id).0;
        assert_eq!(start().finish(&good[..32]), Err(SpakeError::WrongLength));
        let mut side = good;
        side[0] = b'A';
        assert_eq!(start().finish(&side), Err(SpakeError::BadSide));
        // The identity point and a point that does not decompress.
        let mut identity = [0u8; 33];
        identity[0] = b'S';
        identity[1] = 1;
        assert_eq!(start().finish(&identity), Err(SpakeError::BadPoint));
    }

    #[test]
    fn a_fixed_secret_gives_a_fixed_message() {
        let (_, a) = Spake2::start_with(b"4821", b"id", Scalar::from(7u64));
        let (_, b) = Spake2::start_with(b"4821", b"id", Scalar::from(7u64));
        assert_eq!(a, b);
        assert_eq!(
            format!("{:?}", Spake2::start(b"4821", b"id").0),
            "Spake2(****)"
        );
    }
}
