//! The Bluetooth bridge's rule without BlueZ: which phone the pairing byte stream belongs
//! to, and how large its notifications are. Pure, so it is tested and fuzzed anywhere.

/// The smallest ATT MTU (23): 20 bytes of value per notification.
const MIN_MTU: u16 = 23;
/// Bytes of ATT header in a notification.
const ATT_HEADER: usize = 3;
/// The largest attribute value ATT allows (and so the largest notification).
pub const MAX_NOTIFICATION: usize = 512;

/// The bridge's rule without BlueZ: which phone the byte stream belongs to, and how
/// large its notifications are. The first phone to write is bound until the room server
/// closes that connection; meanwhile any other phone is refused.
#[derive(Debug, Default)]
pub struct PhoneBinder {
    bound: Option<Bound>,
    next: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    phone: [u8; 6],
    number: u64,
    mtu: u16,
}

/// Where a phone's write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTo {
    /// A new connection, with this number: the phone is bound now.
    New(u64),
    /// The bound phone's connection, with this number.
    Existing(u64),
    /// Another phone holds the stream: a GATT error.
    Refused,
}

impl PhoneBinder {
    /// A write of `phone` with its ATT `mtu`.
    pub fn write(&mut self, phone: [u8; 6], mtu: u16) -> WriteTo {
        match &mut self.bound {
            Some(b) if b.phone != phone => WriteTo::Refused,
            Some(b) => {
                b.mtu = mtu.max(MIN_MTU);
                WriteTo::Existing(b.number)
            }
            None => {
                let number = self.next;
                self.next += 1;
                self.bound = Some(Bound {
                    phone,
                    number,
                    mtu: mtu.max(MIN_MTU),
                });
                WriteTo::New(number)
            }
        }
    }

    /// The room server closed connection `number`: the stream is free if it was the
    /// bound one. True if it was.
    pub fn release(&mut self, number: u64) -> bool {
        if self.bound.is_some_and(|b| b.number == number) {
            self.bound = None;
            return true;
        }
        false
    }

    /// The phone bound now, if any.
    pub fn bound(&self) -> Option<[u8; 6]> {
        self.bound.map(|b| b.phone)
    }

    /// Bytes of value in each notification for connection `number`: its phone's MTU less
    /// the ATT header, at most [`MAX_NOTIFICATION`]; the smallest MTU's once it is gone.
    pub fn notification_size(&self, number: u64) -> usize {
        let mtu = match self.bound {
            Some(b) if b.number == number => b.mtu,
            _ => MIN_MTU,
        };
        (usize::from(mtu) - ATT_HEADER).min(MAX_NOTIFICATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: [u8; 6] = [0x5c, 0xf3, 0x70, 0x12, 0x34, 0x56];
    const OTHER: [u8; 6] = [0x66; 6];

    #[test]
    fn one_phone_at_a_time_until_its_connection_closes() {
        let mut b = PhoneBinder::default();
        assert_eq!(b.write(PHONE, 185), WriteTo::New(0));
        assert_eq!(b.write(OTHER, 23), WriteTo::Refused);
        assert_eq!(b.write(PHONE, 185), WriteTo::Existing(0));
        // Notifications follow the bound phone's MTU, never the refused one's.
        assert_eq!(b.notification_size(0), 182);
        assert!(!b.release(7));
        assert_eq!(b.bound(), Some(PHONE));
        assert!(b.release(0));
        assert_eq!(b.notification_size(0), 20);
        assert_eq!(b.write(OTHER, 23), WriteTo::New(1));
    }

    #[test]
    fn notification_sizes_stay_within_att() {
        let mut b = PhoneBinder::default();
        assert_eq!(b.write(PHONE, 0), WriteTo::New(0));
        assert_eq!(b.notification_size(0), 20);
        b.write(PHONE, u16::MAX);
        assert_eq!(b.notification_size(0), MAX_NOTIFICATION);
    }
}
