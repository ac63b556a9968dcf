//! NXP NTAG I2C plus (NT3H2111/NT3H2211): an NFC Forum Type 2 tag whose memory the box
//! writes over I2C, so a phone that taps the box reads the room's link.
//!
//! Over I2C the memory is 16-byte blocks: block 0 holds the serial number and, in its
//! last four bytes, the capability container (`E1 10 6D 00`: NDEF, version 1.0, 872
//! bytes, read and write); user memory is blocks 0x01–0x37. A block is written whole
//! (`[block, 16 bytes]`) and the EEPROM then stays busy for about 4 ms, which the session
//! register NS_REG (block 0xFE, register 6) shows in its bit 1. The message is one NDEF
//! TLV (`03`, length, message, then `FE`) holding one URI record. Nothing above this
//! module knows any of that: it gets [`NfcTag`]'s two calls.

use std::time::{Duration, Instant};

use embedded_hal::i2c::I2c;
use zeroize::Zeroizing;

use super::{HwError, NfcTag};

/// The tag's default 7-bit I2C address.
pub const DEFAULT_ADDRESS: u8 = 0x55;
/// Bytes in one block.
pub const BLOCK: usize = 16;
/// The first and last block of user memory (NT3H2111; the 2 kB part has more, behind a
/// sector select this driver does not use).
pub const USER_FIRST: u8 = 0x01;
/// See [`USER_FIRST`].
pub const USER_LAST: u8 = 0x37;
/// The session registers' block and NS_REG's place in it.
pub const SESSION_BLOCK: u8 = 0xFE;
/// NS_REG, the status register.
pub const NS_REG: u8 = 0x06;
/// NS_REG: the EEPROM is still writing.
pub const EEPROM_WR_BUSY: u8 = 1 << 1;
/// NS_REG: the last EEPROM write failed.
pub const EEPROM_WR_ERR: u8 = 1 << 2;
/// NS_REG: a phone holds the memory over RF now.
pub const RF_LOCKED: u8 = 1 << 5;
/// How long one EEPROM write may take before it counts as failed (datasheet: 4.1 ms).
const WRITE_TIMEOUT: Duration = Duration::from_millis(50);
/// How long the box waits for a phone to let go of the memory.
const RF_TIMEOUT: Duration = Duration::from_secs(2);

/// The URI prefixes NDEF abbreviates to one byte (NFC Forum URI RTD), the ones a box
/// writes.
const PREFIXES: [(&str, u8); 2] = [("https://", 0x04), ("http://", 0x03)];

/// One NDEF message with one URI record, as the TLV user memory holds: `03 len … FE`.
/// `None` when it does not fit user memory.
pub fn uri_tlv(uri: &str) -> Option<Zeroizing<Vec<u8>>> {
    let (code, rest) = PREFIXES
        .iter()
        .find_map(|(p, code)| uri.strip_prefix(p).map(|rest| (*code, rest)))
        .unwrap_or((0x00, uri));
    let payload_len = 1 + rest.len();
    let mut record = Zeroizing::new(Vec::with_capacity(payload_len + 8));
    if payload_len < 256 {
        // MB, ME, SR, TNF = well-known; type "U".
        record.extend_from_slice(&[0xD1, 0x01, payload_len as u8, b'U']);
    } else {
        record.push(0xC1);
        record.push(0x01);
        record.extend_from_slice(&(payload_len as u32).to_be_bytes());
        record.push(b'U');
    }
    record.push(code);
    record.extend_from_slice(rest.as_bytes());
    let mut tlv = Zeroizing::new(Vec::with_capacity(record.len() + 5));
    tlv.push(0x03);
    if record.len() < 0xFF {
        tlv.push(record.len() as u8);
    } else {
        tlv.push(0xFF);
        tlv.extend_from_slice(&(u16::try_from(record.len()).ok()?).to_be_bytes());
    }
    tlv.extend_from_slice(&record);
    tlv.push(0xFE);
    let capacity = usize::from(USER_LAST - USER_FIRST + 1) * BLOCK;
    (tlv.len() <= capacity).then_some(tlv)
}

/// The empty NDEF message: what an erased tag holds at the start of user memory.
pub const EMPTY_TLV: [u8; 3] = [0x03, 0x00, 0xFE];

/// What [`NtagI2cPlus::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// Bytes of NDEF memory the capability container announces.
    pub ndef_bytes: usize,
}

/// The tag on an I2C bus.
pub struct NtagI2cPlus<I: I2c> {
    i2c: I,
    address: u8,
    /// Blocks the last message reached (from [`USER_FIRST`]): what an erase must clear.
    written_to: u8,
}

fn io(e: impl std::fmt::Debug) -> HwError {
    // embedded-hal errors carry only a Debug form.
    HwError::Io {
        what: "NFC tag",
        source: format!("I2C: {e:?}").into(),
    }
}

fn tag_error(why: &str) -> HwError {
    HwError::Io {
        what: "NFC tag",
        source: why.to_string().into(),
    }
}

impl<I: I2c> NtagI2cPlus<I> {
    /// The tag at `address`; checks it answers and is NDEF-formatted. Whatever a
    /// previous run left in user memory is erased.
    pub fn open(i2c: I, address: u8) -> Result<Self, HwError> {
        let mut tag = NtagI2cPlus {
            i2c,
            address,
            written_to: USER_LAST,
        };
        tag.check()?;
        tag.clear()?;
        Ok(tag)
    }

    /// Reads the capability container: the tag answers and holds NDEF.
    pub fn check(&mut self) -> Result<TagInfo, HwError> {
        let block = self.read_block(0)?;
        let cc = &block[12..16];
        if cc[0] != 0xE1 {
            return Err(tag_error(
                "no NDEF capability container (block 0 must end E1 10 6D 00)",
            ));
        }
        if cc[3] & 0xF0 != 0 {
            return Err(tag_error("the tag's NDEF memory is locked against writing"));
        }
        Ok(TagInfo {
            ndef_bytes: usize::from(cc[2]) * 8,
        })
    }

    fn read_block(&mut self, block: u8) -> Result<[u8; BLOCK], HwError> {
        let mut out = [0u8; BLOCK];
        self.i2c
            .write_read(self.address, &[block], &mut out)
            .map_err(io)?;
        Ok(out)
    }

    fn status(&mut self) -> Result<u8, HwError> {
        let mut out = [0u8; 1];
        self.i2c
            .write_read(self.address, &[SESSION_BLOCK, NS_REG], &mut out)
            .map_err(io)?;
        Ok(out[0])
    }

    /// Waits until NS_REG has none of `bits`, up to `timeout`.
    fn wait_clear(&mut self, bits: u8, timeout: Duration, what: &str) -> Result<u8, HwError> {
        let until = Instant::now() + timeout;
        loop {
            let ns = self.status()?;
            if ns & bits == 0 {
                return Ok(ns);
            }
            if Instant::now() > until {
                return Err(tag_error(what));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn write_block(&mut self, block: u8, data: &[u8; BLOCK]) -> Result<(), HwError> {
        let mut frame = Zeroizing::new([0u8; BLOCK + 1]);
        frame[0] = block;
        frame[1..].copy_from_slice(data);
        self.i2c.write(self.address, &frame[..]).map_err(io)?;
        let ns = self.wait_clear(
            EEPROM_WR_BUSY,
            WRITE_TIMEOUT,
            "an EEPROM write never finished",
        )?;
        if ns & EEPROM_WR_ERR != 0 {
            return Err(tag_error("an EEPROM write failed"));
        }
        Ok(())
    }

    /// Writes `bytes` from the start of user memory, padded with zeroes to the block,
    /// and zeroes the blocks after it up to `clear_to`.
    fn write_user(&mut self, bytes: &[u8], clear_to: u8) -> Result<(), HwError> {
        // A phone reading now holds the memory; the box waits for it to let go.
        self.wait_clear(RF_LOCKED, RF_TIMEOUT, "a phone kept the tag busy")?;
        let blocks = bytes.len().div_ceil(BLOCK).max(1);
        let last = USER_FIRST + blocks as u8 - 1;
        for (i, chunk) in bytes.chunks(BLOCK).enumerate() {
            let mut data = Zeroizing::new([0u8; BLOCK]);
            data[..chunk.len()].copy_from_slice(chunk);
            self.write_block(USER_FIRST + i as u8, &data)?;
        }
        for block in last + 1..=clear_to {
            self.write_block(block, &[0u8; BLOCK])?;
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<(), HwError> {
        let to = self.written_to;
        self.write_user(&EMPTY_TLV, to)?;
        self.written_to = USER_FIRST;
        Ok(())
    }
}

impl<I: I2c + Send + 'static> NfcTag for NtagI2cPlus<I> {
    fn write_uri(&mut self, uri: &str) -> Result<(), HwError> {
        let tlv = uri_tlv(uri).ok_or_else(|| tag_error("the link does not fit the tag"))?;
        let last = USER_FIRST + tlv.len().div_ceil(BLOCK) as u8 - 1;
        // A shorter message than the last: the blocks only the last one reached go too.
        let clear_to = self.written_to.max(last);
        self.write_user(&tlv, clear_to)?;
        self.written_to = last;
        Ok(())
    }

    fn erase(&mut self) -> Result<(), HwError> {
        self.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_becomes_one_short_uri_record_in_one_tlv() {
        let tlv = uri_tlv("https://a.example/#v=1").unwrap();
        let rest = b"a.example/#v=1";
        let mut want = vec![
            0x03,
            (5 + rest.len()) as u8,
            0xD1,
            0x01,
            (1 + rest.len()) as u8,
            b'U',
            0x04,
        ];
        want.extend_from_slice(rest);
        want.push(0xFE);
        assert_eq!(&tlv[..], &want[..]);
    }

    #[test]
    fn a_long_link_takes_the_long_forms_and_too_long_is_refused() {
        let uri = format!("https://a.example/#{}", "x".repeat(300));
        let tlv = uri_tlv(&uri).unwrap();
        assert_eq!(&tlv[..2], &[0x03, 0xFF]);
        let record_len = usize::from(u16::from_be_bytes([tlv[2], tlv[3]]));
        assert_eq!(record_len, tlv.len() - 5);
        assert_eq!(tlv[4], 0xC1, "not a short record");
        assert!(uri_tlv(&format!("https://a.example/#{}", "x".repeat(900))).is_none());
    }
}
