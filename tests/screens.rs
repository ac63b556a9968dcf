//! Every board's screens render; the room-open QR code decodes back from the pixels.

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};
use embedded_graphics::prelude::*;
use intercom::app::screens::gallery;
use intercom::app::{draw, OnlineCode, Screen};
use intercom::board::{Board, ColorDepth, BUILT_IN};
use intercom::hw::sim::SimDisplay;
use intercom::hw::{Display, ScreenColor};
use intercom::pairing::{Invite, Online, Pin, RoomId};
use std::path::{Path, PathBuf};

fn invite(name: &str, pin: bool) -> Invite {
    Invite {
        room: RoomId::parse("0f1e2d3c4b5a6978").unwrap(),
        name: Some(name.into()),
        tcp: vec!["192.168.178.42:7300".parse().unwrap()],
        bt: None,
        online: None,
        pin: pin.then(|| Pin::parse("4821").unwrap()),
        web: None,
    }
}

fn room_screen(invite: Invite) -> Screen {
    let online = match &invite.online {
        Some(o) => OnlineCode::Nameplate(o.nameplate.clone()),
        None => OnlineCode::Off,
    };
    Screen::RoomOpen {
        pin: Pin::parse("4821").unwrap(),
        invite,
        remaining_secs: 287,
        failed_attempts: 0,
        online,
    }
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Renders `screen` at the board's size and depth, flushes it to `png`, returns grey pixels.
fn render_to_png(board: &Board, screen: &Screen, png: &Path) -> (u32, u32, Vec<u8>) {
    fn go<C: ScreenColor>(board: &Board, screen: &Screen, png: &Path) {
        let size = Size::new(board.display.width, board.display.height);
        let mut display = SimDisplay::<C>::new(size, Some(png.to_path_buf()), false);
        draw(&mut display, screen).unwrap();
        display.flush().unwrap();
    }
    match board.display.color {
        ColorDepth::Mono => go::<BinaryColor>(board, screen, png),
        ColorDepth::Rgb565 => go::<Rgb565>(board, screen, png),
    }
    let img = image::open(png).unwrap().to_luma8();
    let (w, h) = img.dimensions();
    (w, h, img.into_raw())
}

fn decode_qr(w: u32, h: u32, luma: &[u8]) -> Vec<String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
        luma[y * w as usize + x]
    });
    img.detect_grids()
        .iter()
        .filter_map(|g| g.decode().ok().map(|(_, content)| content))
        .collect()
}

#[test]
fn room_qr_decodes_from_the_pixels_of_every_board() {
    for (name, _) in BUILT_IN {
        let board = Board::load(name).unwrap();
        for (with_pin, online) in [(true, false), (false, false), (true, true)] {
            let mut invite = invite("Front door", with_pin);
            if online {
                // An online code: nameplate and rendezvous ride beside today's fields.
                invite.online = Some(Online {
                    nameplate: "17".into(),
                    rendezvous: "wss://rendezvous.example.org:4000/v1".into(),
                });
            }
            let png = out_dir().join(format!("room-{name}-{with_pin}-{online}.png"));
            let (w, h, luma) = render_to_png(&board, &room_screen(invite.clone()), &png);
            assert_eq!(
                (w, h),
                (board.display.width, board.display.height),
                "{name}"
            );
            let decoded = decode_qr(w, h, &luma);
            assert_eq!(
                decoded.len(),
                1,
                "{name}: no QR code found in {}",
                png.display()
            );
            let back = Invite::parse(&decoded[0]).unwrap();
            assert_eq!(back.room, invite.room, "{name}");
            assert_eq!(back.tcp, invite.tcp, "{name}");
            assert_eq!(back.pin, invite.pin, "{name}");
            assert_eq!(back.online, invite.online, "{name}");
            // The name may be left out on small screens, but never garbled.
            if let Some(n) = back.name {
                assert_eq!(n, "Front door");
            }
        }
    }
}

#[test]
fn long_names_and_several_addresses_still_decode_on_the_oled() {
    let board = Board::load("rpi4-ssd1306").unwrap();
    let mut invite = invite("Meeting room 4, second floor", true);
    invite.tcp.push("10.200.100.250:7300".parse().unwrap());
    let png = out_dir().join("room-oled-long.png");
    let (w, h, luma) = render_to_png(&board, &room_screen(invite.clone()), &png);
    let decoded = decode_qr(w, h, &luma);
    assert_eq!(decoded.len(), 1);
    let back = Invite::parse(&decoded[0]).unwrap();
    assert_eq!(
        (back.room, back.tcp, back.pin),
        (invite.room, invite.tcp, invite.pin)
    );
}

#[test]
fn every_screen_draws_something_on_every_board() {
    for (name, _) in BUILT_IN {
        let board = Board::load(name).unwrap();
        let mut seen = Vec::new();
        for (screen_name, screen) in gallery() {
            let png = out_dir().join(format!("{name}-{screen_name}.png"));
            let (_, _, luma) = render_to_png(&board, &screen, &png);
            let lit = luma.iter().filter(|&&l| l > 128).count();
            assert!(lit > 50, "{name}/{screen_name}: only {lit} lit pixels");
            assert!(
                !seen.contains(&luma),
                "{name}/{screen_name} looks like another screen"
            );
            seen.push(luma);
        }
    }
}
