//! The 4-digit PIN and the room id: drawn from the OS CSPRNG, wiped on drop.

use std::fmt;

use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Number of digits in a PIN.
pub const PIN_DIGITS: usize = 4;

/// A 4-digit PIN. Never printed: `Debug` shows `Pin(****)`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Pin([u8; PIN_DIGITS]);

impl Pin {
    /// A PIN drawn uniformly from `0000`–`9999` with the OS CSPRNG.
    pub fn random() -> Pin {
        let n: u16 = OsRng.gen_range(0..10_000);
        Pin::from_number(n)
    }

    fn from_number(mut n: u16) -> Pin {
        let mut digits = [0u8; PIN_DIGITS];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        Pin(digits)
    }

    /// Parses exactly four ASCII digits.
    pub fn parse(text: &str) -> Option<Pin> {
        let bytes = text.as_bytes();
        if bytes.len() != PIN_DIGITS || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut digits = [0u8; PIN_DIGITS];
        digits.copy_from_slice(bytes);
        Some(Pin(digits))
    }

    /// The four ASCII digits: the SPAKE2 password.
    pub fn as_bytes(&self) -> &[u8; PIN_DIGITS] {
        &self.0
    }

    /// The digits as text, for the display only.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a PIN holds ASCII digits only")
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// A room id: 8 random bytes, written as 16 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId([u8; 8]);

impl RoomId {
    /// A fresh random room id.
    pub fn random() -> RoomId {
        let mut bytes = [0u8; 8];
        OsRng.fill_bytes(&mut bytes);
        RoomId(bytes)
    }

    /// Parses 16 lowercase hex characters.
    pub fn parse(text: &str) -> Option<RoomId> {
        if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut bytes = [0u8; 8];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(RoomId(bytes))
    }

    /// The 16-character hex form used on the wire.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Letters of a room tag: no I or O, which read as 1 and 0.
const TAG_LETTERS: &[u8; 24] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Three letters that name a room to people: the host shows them beside the PIN, the
/// guest shows them before and while it joins, so a guest can see that the room it is
/// joining is the one on the other box's screen (another host on the LAN may announce
/// the same device name). Derived from the room id; not a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RoomTag([u8; 3]);

impl RoomTag {
    /// The three letters.
    pub fn as_str(&self) -> &str {
        // Built from ASCII letters only.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for RoomTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RoomId {
    /// The room's tag: 24³ = 13 824 values from the id's first bytes.
    pub fn tag(&self) -> RoomTag {
        let mut n = u32::from_be_bytes([0, self.0[0], self.0[1], self.0[2]]);
        let mut letters = [0u8; 3];
        for letter in letters.iter_mut() {
            *letter = TAG_LETTERS[(n % 24) as usize];
            n /= 24;
        }
        RoomTag(letters)
    }
}

impl fmt::Debug for RoomId {
    // Room ids stay out of logs above debug level; Debug shows only a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({:02x}…)", self.0[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_is_four_digits_and_hidden_from_debug() {
        for _ in 0..200 {
            let pin = Pin::random();
            assert_eq!(pin.as_str().len(), 4);
            assert!(pin.as_str().bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(format!("{pin:?}"), "Pin(****)");
        }
        assert_eq!(Pin::from_number(7).as_str(), "0007");
        assert_eq!(Pin::from_number(9999).as_str(), "9999");
    }

    #[test]
    fn random_pins_cover_the_range() {
        // 2000 draws from 10 000 values: a fixed or narrow generator would repeat a lot.
        let distinct: std::collections::HashSet<_> = (0..2000)
            .map(|_| Pin::random().as_str().to_string())
            .collect();
        assert!(distinct.len() > 1700, "{}", distinct.len());
    }

    #[test]
    fn pin_parse_rejects_anything_but_four_digits() {
        assert_eq!(Pin::parse("4821").unwrap().as_str(), "4821");
        for bad in ["", "482", "48211", "48a1", "４８２１", " 482"] {
            assert!(Pin::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn room_id_round_trips_hex() {
        let id = RoomId::parse("0f1e2d3c4b5a6978").unwrap();
        assert_eq!(id.to_hex(), "0f1e2d3c4b5a6978");
        assert!(RoomId::parse("0F1E2D3C4B5A6978").is_none());
        assert!(RoomId::parse("0f1e2d3c4b5a697").is_none());
        assert_ne!(RoomId::random(), RoomId::random());
        assert!(!format!("{id:?}").contains("1e2d"));
    }

    #[test]
    fn room_tags_are_three_readable_letters_and_spread() {
        let id = RoomId::parse("0f1e2d3c4b5a6978").unwrap();
        assert_eq!(id.tag(), id.tag());
        // Every one of the 24³ tags is reached, each by one value of the id's first three
        // bytes in 0..24³: the tags spread as evenly as the ids (a count of random ids'
        // distinct tags failed about one run in a thousand).
        let tags: std::collections::HashSet<_> = (0u32..24 * 24 * 24)
            .map(|n| {
                let [_, a, b, c] = n.to_be_bytes();
                RoomId([a, b, c, 0, 0, 0, 0, 0]).tag().to_string()
            })
            .collect();
        assert_eq!(tags.len(), 24 * 24 * 24);
        for t in &tags {
            assert_eq!(t.len(), 3);
            assert!(t.bytes().all(|b| TAG_LETTERS.contains(&b)), "{t}");
        }
    }
}
