//! A simulated NTAG I2C plus: the tag's I2C side as the chip behaves (16-byte blocks,
//! the capability container in block 0, NS_REG with the EEPROM busy after each write
//! and the RF lock while a phone reads), and user memory read back as a phone's reader
//! would. The simulator's NFC backend, and the model the driver is tested against. It
//! refuses (NAKs, and records) what the real chip would not take: a write while the
//! EEPROM is busy, a partial block, a write outside user memory.

use std::sync::{Arc, Mutex};

use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

use crate::hw::ntag::{
    DEFAULT_ADDRESS, EEPROM_WR_BUSY, NS_REG, RF_LOCKED, SESSION_BLOCK, USER_FIRST, USER_LAST,
};

/// The chip's memory and registers.
#[derive(Debug, Default)]
pub struct Chip {
    /// Blocks 0x00–0x3A (user memory, then configuration).
    pub blocks: Vec<[u8; 16]>,
    /// NS_REG's steady bits.
    pub ns_reg: u8,
    /// NS_REG reads left before the current EEPROM write finishes.
    pub busy_reads: u32,
    /// NS_REG reads left while a phone holds the memory.
    pub rf_reads: u32,
    /// Every block written, in order.
    pub writes: Vec<u8>,
    /// What the chip refused.
    pub faults: Vec<String>,
}

impl Chip {
    /// A factory-fresh tag: serial number, capability container (NDEF 1.0, 872 bytes,
    /// read/write), empty user memory.
    pub fn new() -> Chip {
        let mut blocks = vec![[0u8; 16]; 0x3B];
        blocks[0] = [
            0x04, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0x80, 0, 0, 0, 0, 0xE1, 0x10, 0x6D, 0x00,
        ];
        blocks[1][..3].copy_from_slice(&[0x03, 0x00, 0xFE]);
        Chip {
            blocks,
            ..Chip::default()
        }
    }

    fn ns(&mut self) -> u8 {
        let mut ns = self.ns_reg;
        if self.busy_reads > 0 {
            self.busy_reads -= 1;
            ns |= EEPROM_WR_BUSY;
        }
        if self.rf_reads > 0 {
            self.rf_reads -= 1;
            ns |= RF_LOCKED;
        }
        ns
    }

    /// User memory, blocks 0x01–0x37 in a row.
    pub fn user_memory(&self) -> Vec<u8> {
        self.blocks[usize::from(USER_FIRST)..=usize::from(USER_LAST)]
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    /// The NDEF message a phone reads: the first TLV's value. `Err` says what a reader
    /// would choke on.
    pub fn ndef(&self) -> Result<Vec<u8>, String> {
        let user = self.user_memory();
        if user[0] != 0x03 {
            return Err("user memory does not start with an NDEF TLV".into());
        }
        let (len, at) = if user[1] == 0xFF {
            (usize::from(u16::from_be_bytes([user[2], user[3]])), 4)
        } else {
            (usize::from(user[1]), 2)
        };
        if user.get(at + len) != Some(&0xFE) {
            return Err("no terminator TLV after the message".into());
        }
        Ok(user[at..at + len].to_vec())
    }

    /// The URI a phone's tap opens: the message's one URI record; `Ok(None)` for the
    /// empty message.
    pub fn uri(&self) -> Result<Option<String>, String> {
        let msg = self.ndef()?;
        if msg.is_empty() {
            return Ok(None);
        }
        if msg[0] & 0xC7 != 0xC1 || msg[1] != 1 {
            return Err(format!("not one well-known record: header {:02x}", msg[0]));
        }
        let (len, at) = if msg[0] & 0x10 != 0 {
            (usize::from(msg[2]), 3)
        } else {
            (
                u32::from_be_bytes([msg[2], msg[3], msg[4], msg[5]]) as usize,
                6,
            )
        };
        if msg[at] != b'U' || at + 1 + len != msg.len() {
            return Err("not one URI record filling the message".into());
        }
        let payload = &msg[at + 1..];
        let prefix = match payload[0] {
            0x04 => "https://",
            0x03 => "http://",
            0x00 => "",
            other => return Err(format!("URI prefix code {other}")),
        };
        let rest = String::from_utf8(payload[1..].to_vec()).map_err(|e| e.to_string())?;
        Ok(Some(format!("{prefix}{rest}")))
    }
}

/// The chip on an I2C bus; clones share it (the test keeps one to look inside).
#[derive(Debug, Clone, Default)]
pub struct SimNtag(pub Arc<Mutex<Chip>>);

impl SimNtag {
    /// A factory-fresh tag.
    pub fn new() -> SimNtag {
        SimNtag(Arc::new(Mutex::new(Chip::new())))
    }

    /// The chip, to look inside.
    pub fn chip(&self) -> std::sync::MutexGuard<'_, Chip> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The chip did not acknowledge.
#[derive(Debug)]
pub struct Nak;

impl embedded_hal::i2c::Error for Nak {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)
    }
}

impl ErrorType for SimNtag {
    type Error = Nak;
}

impl I2c<SevenBitAddress> for SimNtag {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), Nak> {
        let mut chip = self.chip();
        if address != DEFAULT_ADDRESS {
            return Err(Nak);
        }
        match ops {
            // A block written whole.
            [Operation::Write(frame)] if frame.len() == 17 => {
                let block = frame[0];
                if chip.busy_reads > 0 {
                    chip.faults
                        .push(format!("block {block:#x} written while busy"));
                    return Err(Nak);
                }
                if !(USER_FIRST..=USER_LAST).contains(&block) {
                    chip.faults
                        .push(format!("write outside user memory: {block:#x}"));
                    return Err(Nak);
                }
                let mut data = [0u8; 16];
                data.copy_from_slice(&frame[1..]);
                chip.blocks[usize::from(block)] = data;
                chip.writes.push(block);
                chip.busy_reads = 2;
                Ok(())
            }
            // A block read.
            [Operation::Write(addr), Operation::Read(out)]
                if addr.len() == 1 && out.len() == 16 =>
            {
                let block = usize::from(addr[0]);
                let Some(data) = chip.blocks.get(block) else {
                    return Err(Nak);
                };
                out.copy_from_slice(data);
                Ok(())
            }
            // A session register read.
            [Operation::Write(addr), Operation::Read(out)]
                if addr.len() == 2 && addr[0] == SESSION_BLOCK && out.len() == 1 =>
            {
                if addr[1] != NS_REG {
                    chip.faults
                        .push(format!("session register {:#x} read", addr[1]));
                    return Err(Nak);
                }
                out[0] = chip.ns();
                Ok(())
            }
            other => {
                chip.faults.push(format!(
                    "unexpected transaction of {} operations",
                    other.len()
                ));
                Err(Nak)
            }
        }
    }
}

/// The simulator's NFC tag: the real driver over the chip's model, every write read back
/// as a phone would read it (a write a phone would misread fails).
pub struct SimTag {
    driver: crate::hw::ntag::NtagI2cPlus<SimNtag>,
    chip: SimNtag,
}

impl SimTag {
    /// A fresh simulated tag, opened.
    pub fn open() -> Result<SimTag, crate::hw::HwError> {
        let chip = SimNtag::new();
        let driver = crate::hw::ntag::NtagI2cPlus::open(chip.clone(), DEFAULT_ADDRESS)?;
        Ok(SimTag { driver, chip })
    }

    fn read_back(&self, want: Option<&str>) -> Result<(), crate::hw::HwError> {
        let read = self.chip.chip().uri();
        if read.as_ref().map(Option::as_deref) == Ok(want) {
            return Ok(());
        }
        Err(crate::hw::HwError::Io {
            what: "NFC tag (simulated)",
            source: format!("a phone would read {:?}", read.map(|r| r.is_some())).into(),
        })
    }
}

impl crate::hw::NfcTag for SimTag {
    fn write_uri(&mut self, uri: &str) -> Result<(), crate::hw::HwError> {
        self.driver.write_uri(uri)?;
        self.read_back(Some(uri))
    }

    fn erase(&mut self) -> Result<(), crate::hw::HwError> {
        self.driver.erase()?;
        self.read_back(None)
    }
}
