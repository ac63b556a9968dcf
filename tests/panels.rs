//! The hardware display drivers show the simulator's screens pixel for pixel.
//!
//! Each screen is drawn through the real driver (`ssd1306`, `mipidsi`) into a recording
//! fake bus. A model of the controller (its commands, address window, memory layout and
//! scan direction) turns the recorded bytes into what the glass shows, and that is compared
//! with the simulator's frame of the same screen.
//!
//! Boundary: the bytes on the bus. What the real chip does with them is the datasheet's
//! behaviour as modelled here; the wire timing is not tested.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};
use embedded_graphics::prelude::*;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::i2c::{ErrorType as I2cErrorType, I2c, Operation as I2cOp, SevenBitAddress};
use embedded_hal::spi::{ErrorType as SpiErrorType, Operation as SpiOp, SpiDevice};
use intercom::app::draw;
use intercom::app::screens::gallery;
use intercom::hw::sim::SimDisplay;
use intercom::hw::ssd1306::Ssd1306Display;
use intercom::hw::st7789::St7789Display;
use intercom::hw::Display;

// ---------- SSD1306 over I2C ----------

/// Records every I2C write as (address, bytes).
#[derive(Default)]
struct RecordingI2c {
    writes: Vec<(u8, Vec<u8>)>,
}

impl I2cErrorType for RecordingI2c {
    type Error = Infallible;
}

impl I2c<SevenBitAddress> for RecordingI2c {
    fn transaction(&mut self, address: u8, ops: &mut [I2cOp<'_>]) -> Result<(), Infallible> {
        for op in ops {
            match op {
                I2cOp::Write(bytes) => self.writes.push((address, bytes.to_vec())),
                I2cOp::Read(buf) => buf.fill(0),
            }
        }
        Ok(())
    }
}

/// The SSD1306's graphics RAM (8 pages of 128 columns) and the registers that place it.
struct Ssd1306Model {
    ram: [[u8; 128]; 8],
    columns: (usize, usize),
    pages: (usize, usize),
    column: usize,
    page: usize,
    segment_remap: bool,
    com_reversed: bool,
    on: bool,
}

impl Ssd1306Model {
    fn new() -> Self {
        Ssd1306Model {
            ram: [[0; 128]; 8],
            columns: (0, 127),
            pages: (0, 7),
            column: 0,
            page: 0,
            segment_remap: false,
            com_reversed: false,
            on: false,
        }
    }

    /// Arguments each command takes (the commands the driver uses; others fail the test).
    fn argument_count(cmd: u8) -> usize {
        match cmd {
            0x20 | 0x81 | 0x8d | 0xa8 | 0xd3 | 0xd5 | 0xd9 | 0xda | 0xdb | 0xad => 1,
            0x21 | 0x22 | 0xa3 => 2,
            0x29 | 0x2a => 5,
            0x26 | 0x27 => 6,
            0x00..=0x1f | 0x2e | 0x2f | 0x40..=0x7f | 0xa0 | 0xa1 | 0xa4..=0xa7 | 0xae | 0xaf => 0,
            0xb0..=0xb7 | 0xc0 | 0xc8 | 0xe3 => 0,
            _ => panic!("the driver sent command {cmd:#04x}, which this model does not know"),
        }
    }

    fn command(&mut self, cmd: u8, args: &[u8]) {
        match cmd {
            0x20 => assert_eq!(args[0], 0, "the model only knows horizontal addressing"),
            0x21 => {
                self.columns = (args[0] as usize, args[1] as usize);
                self.column = self.columns.0;
            }
            0x22 => {
                self.pages = (args[0] as usize & 7, args[1] as usize & 7);
                self.page = self.pages.0;
            }
            0xa0 | 0xa1 => self.segment_remap = cmd == 0xa1,
            0xc0 | 0xc8 => self.com_reversed = cmd == 0xc8,
            0xae | 0xaf => self.on = cmd == 0xaf,
            _ => {}
        }
    }

    fn data(&mut self, byte: u8) {
        self.ram[self.page][self.column] = byte;
        self.column += 1;
        if self.column > self.columns.1 {
            self.column = self.columns.0;
            self.page = if self.page >= self.pages.1 {
                self.pages.0
            } else {
                self.page + 1
            };
        }
    }

    fn feed(&mut self, writes: &[(u8, Vec<u8>)], address: u8) {
        let mut pending: Vec<u8> = Vec::new();
        for (addr, bytes) in writes {
            assert_eq!(*addr, address, "a write to another I2C address");
            let (control, payload) = bytes.split_first().expect("an empty I2C write");
            match control {
                0x00 => {
                    pending.extend_from_slice(payload);
                    while let Some(&cmd) = pending.first() {
                        let n = Self::argument_count(cmd);
                        if pending.len() < n + 1 {
                            break;
                        }
                        let args: Vec<u8> = pending.drain(..=n).skip(1).collect();
                        self.command(cmd, &args);
                    }
                }
                0x40 => payload.iter().for_each(|&b| self.data(b)),
                other => panic!("unknown I2C control byte {other:#04x}"),
            }
        }
        assert!(pending.is_empty(), "a command was cut short: {pending:x?}");
    }

    /// What the glass shows: pixel (x, y) lit. The module is wired so that remapped
    /// segments and a reversed COM scan show the RAM upright.
    fn lit(&self, x: usize, y: usize) -> bool {
        let column = if self.segment_remap { x } else { 127 - x };
        let row = if self.com_reversed { y } else { 63 - y };
        self.ram[row / 8][column] >> (row % 8) & 1 == 1
    }
}

#[test]
fn ssd1306_shows_every_screen_as_the_simulator_does_in_every_rotation() {
    for rotation in [0u16, 90, 180, 270] {
        let upright = rotation % 180 == 0;
        let (w, h) = if upright { (128, 64) } else { (64, 128) };
        for (screen_name, screen) in gallery() {
            let mut sim = SimDisplay::<BinaryColor>::new(Size::new(w, h), None, false);
            draw(&mut sim, &screen).unwrap();

            let mut oled = Ssd1306Display::open(RecordingI2c::default(), 0x3c, rotation).unwrap();
            assert_eq!(oled.size(), Size::new(w, h));
            draw(&mut oled, &screen).unwrap();
            oled.flush().unwrap();
            let bus = oled.release();
            let mut model = Ssd1306Model::new();
            model.feed(&bus.writes, 0x3c);
            assert!(model.on, "the driver never switched the panel on");

            let mut differ = 0;
            let mut lit = 0;
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let want = sim
                        .frame()
                        .pixel(Point::new(x as i32, y as i32))
                        .unwrap()
                        .is_on();
                    // The glass (128x64) turned clockwise by `rotation`.
                    let (gx, gy) = match rotation {
                        90 => (127 - y, x),
                        180 => (127 - x, 63 - y),
                        270 => (y, 63 - x),
                        _ => (x, y),
                    };
                    differ += usize::from(model.lit(gx, gy) != want);
                    lit += usize::from(want);
                }
            }
            assert!(lit > 0, "{screen_name}: the simulator drew nothing");
            assert_eq!(
                differ, 0,
                "{screen_name} at {rotation}°: {differ} pixels differ"
            );
        }
    }
}

// ---------- ST7789 over SPI ----------

/// What went over the SPI bus: each write with the level of the D/C pin.
#[derive(Default)]
struct SpiLog {
    dc_high: bool,
    writes: Vec<(bool, Vec<u8>)>,
    resets: usize,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<SpiLog>>);

struct FakeSpi(Recorder);
struct FakeDc(Recorder);
struct FakeReset(Recorder);

impl SpiErrorType for FakeSpi {
    type Error = Infallible;
}
impl SpiDevice for FakeSpi {
    fn transaction(&mut self, ops: &mut [SpiOp<'_, u8>]) -> Result<(), Infallible> {
        let mut log = self.0 .0.lock().unwrap();
        for op in ops {
            match op {
                SpiOp::Write(bytes) => {
                    let dc = log.dc_high;
                    log.writes.push((dc, bytes.to_vec()));
                }
                SpiOp::Transfer(read, write) => {
                    let dc = log.dc_high;
                    log.writes.push((dc, write.to_vec()));
                    read.fill(0);
                }
                SpiOp::TransferInPlace(buf) | SpiOp::Read(buf) => buf.fill(0),
                SpiOp::DelayNs(_) => {}
            }
        }
        Ok(())
    }
}
impl PinErrorType for FakeDc {
    type Error = Infallible;
}
impl OutputPin for FakeDc {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0 .0.lock().unwrap().dc_high = false;
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0 .0.lock().unwrap().dc_high = true;
        Ok(())
    }
}
impl PinErrorType for FakeReset {
    type Error = Infallible;
}
impl OutputPin for FakeReset {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0 .0.lock().unwrap().resets += 1;
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct NoDelay;
impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

/// The ST7789's 240×320 frame memory, its address window and MADCTL.
struct St7789Model {
    ram: Vec<u16>,
    window: (usize, usize, usize, usize),
    at: (usize, usize),
    madctl: u8,
    inverted: bool,
    on: bool,
    awake: bool,
}

impl St7789Model {
    const W: usize = 240;
    const H: usize = 320;

    fn new() -> Self {
        St7789Model {
            ram: vec![0; Self::W * Self::H],
            window: (0, Self::W - 1, 0, Self::H - 1),
            at: (0, 0),
            madctl: 0,
            inverted: false,
            on: false,
            awake: false,
        }
    }

    fn write_pixel(&mut self, value: u16) {
        let (c, r) = self.at;
        // MV exchanges rows and columns; then MX and MY mirror the physical address.
        let (mut x, mut y) = if self.madctl & 0x20 != 0 {
            (r, c)
        } else {
            (c, r)
        };
        if self.madctl & 0x40 != 0 {
            x = Self::W - 1 - x;
        }
        if self.madctl & 0x80 != 0 {
            y = Self::H - 1 - y;
        }
        assert!(x < Self::W && y < Self::H, "a pixel outside frame memory");
        self.ram[y * Self::W + x] = value;
        let (xs, xe, ys, ye) = self.window;
        self.at.0 += 1;
        if self.at.0 > xe {
            self.at.0 = xs;
            self.at.1 = if self.at.1 >= ye { ys } else { self.at.1 + 1 };
        }
    }

    fn feed(&mut self, log: &SpiLog) {
        let mut command = None;
        let mut args: Vec<u8> = Vec::new();
        let mut pixel_byte: Option<u8> = None;
        for (dc, bytes) in &log.writes {
            if !dc {
                for &cmd in bytes {
                    self.finish(command, &args);
                    command = Some(cmd);
                    args.clear();
                    pixel_byte = None;
                    match cmd {
                        0x11 => self.awake = true,
                        0x20 | 0x21 => self.inverted = cmd == 0x21,
                        0x29 => self.on = true,
                        0x2c => self.at = (self.window.0, self.window.2),
                        _ => {}
                    }
                }
                continue;
            }
            match command {
                Some(0x2c) => {
                    for &b in bytes {
                        match pixel_byte.take() {
                            None => pixel_byte = Some(b),
                            Some(hi) => self.write_pixel(u16::from_be_bytes([hi, b])),
                        }
                    }
                }
                Some(_) => args.extend_from_slice(bytes),
                None => panic!("data before any command"),
            }
        }
        self.finish(command, &args);
    }

    fn finish(&mut self, command: Option<u8>, args: &[u8]) {
        let word = |i: usize| usize::from(u16::from_be_bytes([args[i], args[i + 1]]));
        match command {
            Some(0x2a) => {
                self.window.0 = word(0);
                self.window.1 = word(2);
            }
            Some(0x2b) => {
                self.window.2 = word(0);
                self.window.3 = word(2);
            }
            Some(0x36) => self.madctl = args[0],
            Some(0x3a) => assert_eq!(args[0] & 0x07, 0x05, "not 16 bits per pixel"),
            _ => {}
        }
    }

    /// The colour the glass shows at (x, y): these IPS modules show true colours with
    /// inversion on, and the glass covers the first 240 rows of frame memory.
    fn glass(&self, x: usize, y: usize) -> Rgb565 {
        let raw = self.ram[y * Self::W + x];
        let shown = if self.inverted { raw } else { !raw };
        Rgb565::from(embedded_graphics::pixelcolor::raw::RawU16::new(shown))
    }
}

#[test]
fn st7789_shows_every_screen_as_the_simulator_does_in_every_rotation() {
    for rotation in [0u16, 90, 180, 270] {
        for (screen_name, screen) in gallery() {
            let mut sim = SimDisplay::<Rgb565>::new(Size::new(240, 240), None, false);
            draw(&mut sim, &screen).unwrap();

            let rec = Recorder::default();
            let mut tft = St7789Display::open(
                FakeSpi(rec.clone()),
                FakeDc(rec.clone()),
                FakeReset(rec.clone()),
                &mut NoDelay,
                Size::new(240, 240),
                rotation,
            )
            .unwrap();
            draw(&mut tft, &screen).unwrap();
            tft.flush().unwrap();
            drop(tft);
            let log = rec.0.lock().unwrap();
            assert!(log.resets > 0, "the panel was never reset");
            let mut model = St7789Model::new();
            model.feed(&log);
            assert!(model.on && model.awake, "the panel is asleep or off");

            let mut differ = 0;
            for y in 0..240usize {
                for x in 0..240usize {
                    let want = sim.frame().pixel(Point::new(x as i32, y as i32)).unwrap();
                    // The glass turned clockwise by `rotation`.
                    let (gx, gy) = match rotation {
                        90 => (239 - y, x),
                        180 => (239 - x, 239 - y),
                        270 => (y, 239 - x),
                        _ => (x, y),
                    };
                    differ += usize::from(model.glass(gx, gy) != want);
                }
            }
            assert_eq!(
                differ, 0,
                "{screen_name} at {rotation}°: {differ} pixels differ"
            );
        }
    }
}

#[test]
fn st7789_flush_sends_only_the_rows_that_changed() {
    let rec = Recorder::default();
    let mut tft = St7789Display::open(
        FakeSpi(rec.clone()),
        FakeDc(rec.clone()),
        FakeReset(rec.clone()),
        &mut NoDelay,
        Size::new(240, 240),
        0,
    )
    .unwrap();
    let bytes = |rec: &Recorder| -> usize {
        let log = rec.0.lock().unwrap();
        log.writes
            .iter()
            .filter(|(dc, _)| *dc)
            .map(|(_, b)| b.len())
            .sum()
    };
    let before = bytes(&rec);
    tft.flush().unwrap();
    assert_eq!(bytes(&rec), before, "an unchanged frame was sent again");
    Pixel(Point::new(10, 100), Rgb565::RED)
        .draw(&mut tft)
        .unwrap();
    tft.flush().unwrap();
    let sent = bytes(&rec) - before;
    assert!(sent <= 240 * 2 + 16, "one changed pixel sent {sent} bytes");
}
