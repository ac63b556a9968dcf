//! What the display shows in each state, and how it is drawn at each screen size.
//!
//! [`screen`] turns the state into a plain [`Screen`] value; [`draw`] paints it. The
//! runner redraws only when the value changes, which keeps slow SPI/I2C buses quiet.

use std::time::{Duration, Instant};

use embedded_graphics::mono_font::iso_8859_1::{
    FONT_10X20, FONT_6X10, FONT_7X13_BOLD, FONT_9X15, FONT_9X15_BOLD,
};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use zeroize::Zeroizing;

use super::digits::draw_digits;
use super::machine::{App, EndReason, Fault, Notice, OnlineCode, RoomChoice, State, Unreachable};
use super::qr;
use crate::hw::ScreenColor;
use crate::pairing::{Invite, Pin, PIN_DIGITS};

/// Everything one frame of the display shows.
#[derive(Clone, PartialEq)]
pub enum Screen {
    /// Waiting for a key.
    Idle {
        /// Device name.
        name: String,
    },
    /// Something is under way.
    Working {
        /// What.
        title: &'static str,
        /// Which room, when known: its name and tag.
        detail: String,
        /// Which key cancels.
        hint: &'static str,
    },
    /// Our room: PIN, QR code, countdown.
    RoomOpen {
        /// The PIN.
        pin: Pin,
        /// The invitation behind the QR code.
        invite: Invite,
        /// Seconds until it expires.
        remaining_secs: u64,
        /// Wrong PINs so far.
        failed_attempts: u8,
        /// Where the room stands online.
        online: OnlineCode,
    },
    /// PIN being typed.
    PinEntry {
        /// Digits so far.
        digits: Zeroizing<String>,
    },
    /// Several rooms to choose from.
    PickRoom {
        /// Device names with their tags, numbered from 1 on screen.
        rooms: Vec<String>,
    },
    /// Talking.
    InCall {
        /// Seconds since connecting.
        elapsed_secs: u64,
        /// The last text received.
        last_text: Option<String>,
        /// The media goes through a relay server.
        relayed: bool,
    },
    /// A message for the user.
    Notice {
        /// Headline.
        title: &'static str,
        /// Detail.
        detail: String,
        /// Shown as a warning.
        warn: bool,
    },
}

/// The screen for the app's state at `now`.
pub fn screen(app: &App, now: Instant) -> Screen {
    match app.state() {
        State::Idle => Screen::Idle {
            name: app.device_name().to_string(),
        },
        State::OpeningRoom => Screen::Working {
            title: "Opening room",
            detail: String::new(),
            hint: "",
        },
        State::RoomOpen {
            room,
            failed_attempts,
        } => Screen::RoomOpen {
            pin: room.pin.clone(),
            invite: room.invite.clone(),
            // Rounded up: the countdown shows 0:00 only when the room is gone.
            remaining_secs: room
                .expires_at
                .saturating_duration_since(now)
                .as_millis()
                .div_ceil(1000) as u64,
            failed_attempts: *failed_attempts,
            online: room.online.clone(),
        },
        State::PinEntry { digits } => Screen::PinEntry {
            digits: digits.clone(),
        },
        State::PickRoom { rooms } => Screen::PickRoom {
            rooms: rooms.iter().map(room_label).collect(),
        },
        State::Connecting { room, .. } => Screen::Working {
            title: "Connecting",
            detail: room.as_ref().map(room_label).unwrap_or_default(),
            hint: "* cancel",
        },
        State::InCall {
            since,
            last_text,
            relayed,
            ..
        } => Screen::InCall {
            elapsed_secs: now.saturating_duration_since(*since).as_secs(),
            last_text: last_text.clone(),
            relayed: *relayed,
        },
        State::Notice { notice, .. } => notice_screen(notice),
    }
}

/// The first instant at or after `now` at which the app's screen or its timeouts can
/// change by time alone (a countdown or call clock turning a second, a notice running
/// out); `None` when nothing on screen moves with time. The runner sleeps until then
/// instead of polling.
pub fn next_change(app: &App, now: Instant) -> Option<Instant> {
    const SECOND: Duration = Duration::from_secs(1);
    match app.state() {
        State::RoomOpen { room, .. } => {
            // The countdown shows whole seconds rounded up: it turns when what is left
            // reaches the next lower whole second.
            let left = room.expires_at.saturating_duration_since(now);
            let whole = left.as_millis().div_ceil(1000) as u32;
            (whole > 0).then(|| room.expires_at - SECOND * (whole - 1))
        }
        State::InCall { since, .. } => {
            let whole = now.saturating_duration_since(*since).as_secs() as u32;
            Some(*since + SECOND * (whole + 1))
        }
        State::Notice { until, .. } => Some((*until).max(now)),
        _ => None,
    }
}

/// A found room as the guest sees it: its name and, apart, the tag to compare with the
/// host's screen.
fn room_label(room: &RoomChoice) -> String {
    format!("{} [{}]", room.name, room.tag)
}

fn notice_screen(notice: &Notice) -> Screen {
    let (title, detail, warn) = match notice {
        // Nothing authenticates a refusal: a box pretending to be the room says the
        // same. So the words cover both, and the count is this box's own.
        Notice::WrongPin { tries_left } => (
            "Could not join",
            match tries_left {
                Some(0) => "Wrong PIN or wrong room. No tries left for this room.".to_string(),
                Some(1) => "Wrong PIN or wrong room. 1 try left.".to_string(),
                Some(n) => format!("Wrong PIN or wrong room. {n} tries left."),
                None => "Wrong PIN or wrong room. Try again.".to_string(),
            },
            true,
        ),
        Notice::RoomSpent => (
            "Could not join",
            "3 tries used on this room. Ask for a new room.".into(),
            true,
        ),
        Notice::RoomLocked => (
            "Room locked",
            "Too many wrong PINs. Open a new room with *.".into(),
            true,
        ),
        Notice::RoomExpired => (
            "Room expired",
            "Nobody joined in time. Press * for a new room.".into(),
            false,
        ),
        Notice::RoomBusy => (
            "Room busy",
            "Someone else is joining. Try again shortly.".into(),
            true,
        ),
        Notice::NoRoom => ("No such room", "It was closed or has expired.".into(), true),
        Notice::NoRoomFound => (
            "No room found",
            "Ask the other box to press * first.".into(),
            true,
        ),
        Notice::Unreachable(why) => (
            "Cannot connect",
            match why {
                Unreachable::NoDiscovery => "This box cannot look for rooms on the network.",
                Unreachable::NoAnswer => "The other box cannot be reached.",
                Unreachable::TimedOut => "The other box did not answer in time.",
                Unreachable::OtherVersion => "The other box runs another version.",
                Unreachable::BrokeProtocol => "The other box did not follow the protocol.",
                Unreachable::NoRendezvous => "The rendezvous server cannot be reached.",
                Unreachable::NoRoomAtCode => "Nobody is waiting at that code.",
                Unreachable::CodeInUse => "That code is already in use.",
            }
            .into(),
            true,
        ),
        Notice::CallEnded { reason, duration } => {
            let secs = duration.as_secs();
            let why = match reason {
                EndReason::Local => "You hung up.".to_string(),
                EndReason::Remote => "The other side hung up.".to_string(),
                EndReason::PeerLost => "The connection was lost.".to_string(),
                EndReason::NoMediaPath => "No direct path: a strict NAT or firewall.".to_string(),
                EndReason::Failed => "The call failed.".to_string(),
            };
            (
                "Call ended",
                format!("{}:{:02}  {why}", secs / 60, secs % 60),
                !matches!(reason, EndReason::Local | EndReason::Remote),
            )
        }
        Notice::Fault(Fault::CannotListen { port }) => (
            "Error",
            format!("Cannot open a room: TCP port {port} is not free."),
            true,
        ),
    };
    Screen::Notice {
        title,
        detail,
        warn,
    }
}

struct Layout {
    w: i32,
    h: i32,
    small: bool,
    title: &'static MonoFont<'static>,
    body: &'static MonoFont<'static>,
}

impl Layout {
    fn for_size(size: Size) -> Layout {
        let small = size.height < 128;
        Layout {
            w: size.width as i32,
            h: size.height as i32,
            small,
            title: if small { &FONT_7X13_BOLD } else { &FONT_10X20 },
            body: if small { &FONT_6X10 } else { &FONT_9X15 },
        }
    }

    fn line_height(&self, font: &MonoFont) -> i32 {
        font.character_size.height as i32 + if self.small { 1 } else { 3 }
    }

    fn columns(&self, font: &MonoFont) -> usize {
        (self.w as u32 / font.character_size.width) as usize
    }
}

fn text<D: DrawTarget>(
    target: &mut D,
    s: &str,
    at: Point,
    font: &MonoFont,
    color: D::Color,
    align: Alignment,
) -> Result<(), D::Error> {
    let style = MonoTextStyle::new(font, color);
    let layout = TextStyleBuilder::new()
        .baseline(Baseline::Top)
        .alignment(align)
        .build();
    Text::with_text_style(s, at, style, layout).draw(target)?;
    Ok(())
}

/// Splits `s` into at most `max_lines` lines of `cols` characters, breaking at spaces
/// where it can; a cut-off last line ends in "...".
pub fn wrap(s: &str, cols: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in s.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = current.chars().count();
            let need = if used == 0 {
                word.len()
            } else {
                used + 1 + word.len()
            };
            if need <= cols {
                if used > 0 {
                    current.push(' ');
                }
                current.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut current));
                continue;
            }
            // A word longer than a line is cut.
            let rest = word.split_off(cols.min(word.len()));
            lines.push(word.iter().collect());
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            let keep = cols.saturating_sub(3);
            *last = last.chars().take(keep).collect::<String>() + "...";
        }
    }
    lines
}

fn clock(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// Paints `screen` onto `target` (the caller flushes).
pub fn draw<D>(target: &mut D, screen: &Screen) -> Result<(), D::Error>
where
    D: DrawTarget + OriginDimensions,
    D::Color: ScreenColor,
{
    let l = Layout::for_size(target.size());
    target.clear(D::Color::BG)?;
    let (fg, accent, warn) = (D::Color::FG, D::Color::ACCENT, D::Color::WARN);
    let centre = l.w / 2;
    match screen {
        Screen::Idle { name } => {
            let name_line = wrap(name, l.columns(l.title), 1).concat();
            text(
                target,
                &name_line,
                Point::new(centre, 2),
                l.title,
                accent,
                Alignment::Center,
            )?;
            let y = l.h / 2 - l.line_height(l.body);
            text(
                target,
                "* open a room",
                Point::new(4, y),
                l.body,
                fg,
                Alignment::Left,
            )?;
            let y2 = y + l.line_height(l.body) + if l.small { 2 } else { 8 };
            text(
                target,
                "# join a room",
                Point::new(4, y2),
                l.body,
                fg,
                Alignment::Left,
            )?;
        }
        Screen::Working {
            title,
            detail,
            hint,
        } => {
            let y = l.h / 2 - l.line_height(l.title);
            if !detail.is_empty() {
                let line = wrap(detail, l.columns(l.body), 1).concat();
                text(
                    target,
                    &line,
                    Point::new(centre, y - l.line_height(l.body) - 2),
                    l.body,
                    fg,
                    Alignment::Center,
                )?;
            }
            text(
                target,
                title,
                Point::new(centre, y),
                l.title,
                accent,
                Alignment::Center,
            )?;
            text(
                target,
                "...",
                Point::new(centre, y + l.line_height(l.title)),
                l.title,
                accent,
                Alignment::Center,
            )?;
            text(
                target,
                hint,
                Point::new(centre, l.h - l.line_height(l.body)),
                l.body,
                fg,
                Alignment::Center,
            )?;
        }
        Screen::RoomOpen {
            pin,
            invite,
            remaining_secs,
            failed_attempts,
            online,
        } => draw_room(
            target,
            &l,
            pin,
            invite,
            *remaining_secs,
            *failed_attempts,
            online,
        )?,
        Screen::PinEntry { digits } => {
            text(
                target,
                if digits.len() > PIN_DIGITS {
                    "Enter code"
                } else {
                    "Enter PIN"
                },
                Point::new(centre, 2),
                l.title,
                accent,
                Alignment::Center,
            )?;
            // The typed digits are a secret: the padded copy is wiped too. More than a
            // PIN's digits are an online code: the nameplate, a dash, the PIN.
            let shown: Zeroizing<String> = Zeroizing::new(if digits.len() > PIN_DIGITS {
                let (nameplate, pin) = digits.split_at(digits.len() - PIN_DIGITS);
                format!("{nameplate}-{pin}")
            } else {
                (0..PIN_DIGITS)
                    .map(|i| digits.chars().nth(i).unwrap_or('_'))
                    .collect()
            });
            let n = shown.chars().count() as i32;
            let (dw, dh, gap) = if l.small { (16, 28, 6) } else { (40, 72, 14) };
            // Shrunk to fit a long code across the screen.
            let dw = dw.min((l.w - 4 - (n - 1) * gap / 2) / n).max(4);
            let gap = if n > PIN_DIGITS as i32 { gap / 2 } else { gap };
            let total = n * (dw + gap) - gap;
            let y = l.line_height(l.title) + if l.small { 4 } else { 30 };
            draw_digits(
                target,
                &shown,
                Point::new(centre - total / 2, y),
                Size::new(dw as u32, dh as u32),
                gap as u32,
                fg,
            )?;
            text(
                target,
                "* delete  # OK",
                Point::new(centre, l.h - l.line_height(l.body)),
                l.body,
                fg,
                Alignment::Center,
            )?;
        }
        Screen::PickRoom { rooms } => {
            text(
                target,
                "Which room?",
                Point::new(centre, 2),
                l.title,
                accent,
                Alignment::Center,
            )?;
            let lh = l.line_height(l.body);
            let first = l.line_height(l.title) + 4;
            let fit = ((l.h - first - lh) / lh).max(1) as usize;
            for (i, name) in rooms.iter().take(fit.min(9)).enumerate() {
                let line = wrap(&format!("{} {name}", i + 1), l.columns(l.body), 1).concat();
                text(
                    target,
                    &line,
                    Point::new(4, first + i as i32 * lh),
                    l.body,
                    fg,
                    Alignment::Left,
                )?;
            }
            text(
                target,
                "* back",
                Point::new(centre, l.h - lh),
                l.body,
                fg,
                Alignment::Center,
            )?;
        }
        Screen::InCall {
            elapsed_secs,
            last_text,
            relayed,
        } => {
            text(
                target,
                "In call",
                Point::new(4, 2),
                l.title,
                accent,
                Alignment::Left,
            )?;
            text(
                target,
                &clock(*elapsed_secs),
                Point::new(l.w - 4, 2),
                l.title,
                accent,
                Alignment::Right,
            )?;
            let lh = l.line_height(l.body);
            let mut first = l.line_height(l.title) + if l.small { 2 } else { 10 };
            if *relayed {
                // Said plainly: the call is still encrypted end to end, but a server
                // sees that it happens and carries its packets.
                text(
                    target,
                    "via relay server",
                    Point::new(2, first),
                    l.body,
                    accent,
                    Alignment::Left,
                )?;
                first += lh;
            }
            let lines = ((l.h - first - lh) / lh).max(1) as usize;
            if let Some(msg) = last_text {
                for (i, line) in wrap(msg, l.columns(l.body), lines).iter().enumerate() {
                    text(
                        target,
                        line,
                        Point::new(2, first + i as i32 * lh),
                        l.body,
                        fg,
                        Alignment::Left,
                    )?;
                }
            }
            text(
                target,
                "## hang up",
                Point::new(centre, l.h - lh),
                l.body,
                fg,
                Alignment::Center,
            )?;
        }
        Screen::Notice {
            title,
            detail,
            warn: is_warning,
        } => {
            let colour = if *is_warning { warn } else { accent };
            let title_font = if l.small { l.title } else { &FONT_9X15_BOLD };
            let y0 = if l.small { 2 } else { l.h / 4 };
            text(
                target,
                title,
                Point::new(centre, y0),
                title_font,
                colour,
                Alignment::Center,
            )?;
            if !l.small {
                Rectangle::new(Point::new(20, y0 + 22), Size::new((l.w - 40) as u32, 2))
                    .into_styled(PrimitiveStyle::with_fill(colour))
                    .draw(target)?;
            }
            let lh = l.line_height(l.body);
            let first = y0 + l.line_height(title_font) + if l.small { 2 } else { 14 };
            let lines = ((l.h - first) / lh).max(1) as usize;
            for (i, line) in wrap(detail, l.columns(l.body), lines).iter().enumerate() {
                text(
                    target,
                    line,
                    Point::new(centre, first + i as i32 * lh),
                    l.body,
                    fg,
                    Alignment::Center,
                )?;
            }
        }
    }
    Ok(())
}

fn draw_room<D>(
    target: &mut D,
    l: &Layout,
    pin: &Pin,
    invite: &Invite,
    remaining_secs: u64,
    failed_attempts: u8,
    online: &OnlineCode,
) -> Result<(), D::Error>
where
    D: DrawTarget + OriginDimensions,
    D::Color: ScreenColor,
{
    let (fg, accent, warn) = (D::Color::FG, D::Color::ACCENT, D::Color::WARN);
    let status = if failed_attempts > 0 {
        let left = 3u8.saturating_sub(failed_attempts);
        (
            format!("{left} {} left", if left == 1 { "try" } else { "tries" }),
            warn,
        )
    } else if *online == OnlineCode::Unavailable {
        ("LAN only: no rendezvous".to_string(), warn)
    } else {
        ("# close".to_string(), fg)
    };
    // With an online code the box shows the whole code, the PIN its last four digits.
    let code: Zeroizing<String> = Zeroizing::new(match online {
        OnlineCode::Nameplate(n) => format!("{n}-{}", pin.as_str()),
        _ => pin.as_str().to_string(),
    });
    let n = code.chars().count() as i32;
    let label = if n > 4 { "Code" } else { "PIN" };
    if l.small {
        // PIN and countdown on the left half, QR code on the right.
        let side = l.h as u32;
        let qr_area = Rectangle::new(Point::new(l.w - side as i32, 0), Size::new(side, side));
        if let Some(code) = qr::fit(invite, side) {
            qr::draw(target, &code, qr_area)?;
        }
        let left_w = l.w - side as i32;
        text(
            target,
            &format!("{label} [{}]", invite.room.tag()),
            Point::new(0, 0),
            &FONT_6X10,
            fg,
            Alignment::Left,
        )?;
        // A narrow (turned) panel leaves little beside the QR code: never below 4 px.
        let dw = 13.min((left_w - 2 - (n - 1) * 2) / n).max(4);
        draw_digits(
            target,
            &code,
            Point::new(0, 12),
            Size::new(dw as u32, 24),
            if n > 4 { 2 } else { 3 },
            accent,
        )?;
        text(
            target,
            &clock(remaining_secs),
            Point::new(0, 40),
            &FONT_6X10,
            fg,
            Alignment::Left,
        )?;
        let line = wrap(&status.0, (left_w / 6) as usize, 1).concat();
        text(
            target,
            &line,
            Point::new(0, 52),
            &FONT_6X10,
            status.1,
            Alignment::Left,
        )?;
    } else {
        text(
            target,
            label,
            Point::new(6, 4),
            l.title,
            fg,
            Alignment::Left,
        )?;
        // The room's tag, which a joining guest shows: the same letters on both screens
        // mean the same room.
        text(
            target,
            &format!("[{}]", invite.room.tag()),
            Point::new(l.w / 2, 4),
            l.title,
            fg,
            Alignment::Center,
        )?;
        text(
            target,
            &clock(remaining_secs),
            Point::new(l.w - 6, 4),
            l.title,
            fg,
            Alignment::Right,
        )?;
        let (dw, dh, gap) = (l.w / 8, l.h / 5, l.w / 24);
        let gap = if n > 4 { gap / 2 } else { gap };
        let dw = dw.min((l.w - 8 - (n - 1) * gap) / n).max(4);
        let total = n * dw + (n - 1) * gap;
        let y = 30;
        draw_digits(
            target,
            &code,
            Point::new(l.w / 2 - total / 2, y),
            Size::new(dw as u32, dh as u32),
            gap as u32,
            accent,
        )?;
        let qr_top = y + dh + 6;
        let bottom = l.line_height(l.body);
        let side = (l.h - qr_top - bottom - 2).min(l.w) as u32;
        let qr_area = Rectangle::new(
            Point::new(l.w / 2 - side as i32 / 2, qr_top),
            Size::new(side, side),
        );
        if let Some(code) = qr::fit(invite, side) {
            qr::draw(target, &code, qr_area)?;
        }
        text(
            target,
            &status.0,
            Point::new(l.w / 2, l.h - bottom),
            l.body,
            status.1,
            Alignment::Center,
        )?;
    }
    Ok(())
}

/// One sample of every screen, for documentation pictures and tests.
pub fn gallery() -> Vec<(&'static str, Screen)> {
    let pin = Pin::parse("4821").expect("valid literal");
    let invite = Invite {
        room: crate::pairing::RoomId::parse("0f1e2d3c4b5a6978").expect("valid literal"),
        name: Some("Front door".into()),
        tcp: vec![std::net::SocketAddr::from(([192, 168, 178, 42], 7300))],
        bt: None,
        online: None,
        pin: Some(pin.clone()),
        web: None,
    };
    let online_invite = invite.clone();
    vec![
        (
            "idle",
            Screen::Idle {
                name: "Front door".into(),
            },
        ),
        (
            "room",
            Screen::RoomOpen {
                pin,
                invite,
                remaining_secs: 287,
                failed_attempts: 0,
                online: OnlineCode::Off,
            },
        ),
        (
            "pin-entry",
            Screen::PinEntry {
                digits: Zeroizing::new("48".into()),
            },
        ),
        (
            "room-online",
            Screen::RoomOpen {
                pin: Pin::parse("4821").expect("valid literal"),
                invite: Invite {
                    online: Some(crate::pairing::Online {
                        nameplate: "17".into(),
                        rendezvous: "wss://rendezvous.example.org:4000/v1".into(),
                    }),
                    ..online_invite
                },
                remaining_secs: 287,
                failed_attempts: 0,
                online: OnlineCode::Nameplate("17".into()),
            },
        ),
        (
            "code-entry",
            Screen::PinEntry {
                digits: Zeroizing::new("174821".into()),
            },
        ),
        (
            "pick-room",
            Screen::PickRoom {
                rooms: vec!["Front door [KTR]".into(), "Garden gate [MXA]".into()],
            },
        ),
        (
            "connecting",
            Screen::Working {
                title: "Connecting",
                detail: "Front door [KTR]".into(),
                hint: "* cancel",
            },
        ),
        (
            "in-call",
            Screen::InCall {
                elapsed_secs: 83,
                last_text: Some("Parcel for you, shall I leave it at the door?".into()),
                relayed: false,
            },
        ),
        (
            "in-call-relayed",
            Screen::InCall {
                elapsed_secs: 83,
                last_text: Some("Parcel for you, shall I leave it at the door?".into()),
                relayed: true,
            },
        ),
        (
            "wrong-pin",
            notice_screen(&Notice::WrongPin {
                tries_left: Some(2),
            }),
        ),
        (
            "call-ended",
            notice_screen(&Notice::CallEnded {
                reason: EndReason::Remote,
                duration: std::time::Duration::from_secs(65),
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Event, JoinFailure, OpenRoom};
    use crate::hw::{Key, KeyEvent};
    use crate::pairing::Invite;

    #[test]
    fn a_refused_join_does_not_claim_to_know_why() {
        // Nothing authenticates a refusal: the words cover a fake room too.
        for tries_left in [None, Some(2), Some(1), Some(0)] {
            let Screen::Notice { title, detail, .. } =
                notice_screen(&Notice::WrongPin { tries_left })
            else {
                panic!("not a notice");
            };
            assert_eq!(title, "Could not join");
            assert!(detail.starts_with("Wrong PIN or wrong room."), "{detail}");
        }
    }

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_long_words() {
        assert_eq!(
            wrap("hello there world", 11, 3),
            vec!["hello there", "world"]
        );
        assert_eq!(wrap("abcdefghij", 4, 3), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one two three four", 7, 2), vec!["one two", "thre..."]);
        assert!(wrap("", 10, 2).is_empty());
    }

    fn key(c: char) -> Event {
        Event::Key(KeyEvent {
            key: Key::from_char(c).unwrap(),
            held: false,
        })
    }

    /// Every instant `next_change` names is one where the screen really changes, and
    /// the screen holds still in between.
    fn assert_changes_exactly_then(app: &App, from: Instant, span: Duration) {
        let mut now = from;
        while now < from + span {
            let Some(at) = next_change(app, now) else {
                panic!("no next change at {:?}", now - from)
            };
            assert!(at > now, "next change not after now");
            let ms = Duration::from_millis(1);
            assert!(screen(app, at - ms) == screen(app, now), "changed early");
            assert!(
                screen(app, at) != screen(app, now),
                "no change at {:?}",
                at - from
            );
            now = at;
        }
    }

    #[test]
    fn next_change_is_when_the_countdown_or_call_clock_turns() {
        let t0 = Instant::now();
        let mut app = App::new("door");
        assert_eq!(next_change(&app, t0), None, "idle never changes by itself");
        app.handle(key('*'), t0);
        let expires_at = t0 + Duration::from_millis(3_500);
        app.handle(
            Event::RoomOpened(OpenRoom {
                pin: Pin::parse("4821").unwrap(),
                invite: Invite::parse("intercom:?v=1&room=0f1e2d3c4b5a6978").unwrap(),
                expires_at,
                online: OnlineCode::Off,
            }),
            t0,
        );
        // 3.5 s left shows 4; it turns to 3 at 3.0 s left, and so on to 0.
        assert_eq!(next_change(&app, t0), Some(t0 + Duration::from_millis(500)));
        assert_changes_exactly_then(&app, t0, Duration::from_millis(3_400));
        assert_eq!(next_change(&app, expires_at), None);

        let call = t0 + Duration::from_millis(250);
        app.handle(Event::Connected, call);
        assert_eq!(
            next_change(&app, call + Duration::from_millis(10)),
            Some(call + Duration::from_secs(1))
        );
        assert_changes_exactly_then(&app, call, Duration::from_secs(5));
    }

    #[test]
    fn next_change_of_a_notice_is_its_end() {
        let t0 = Instant::now();
        let mut app = App::new("door");
        for c in "#1234#".chars() {
            app.handle(key(c), t0);
        }
        app.handle(
            Event::JoinFailed(JoinFailure::WrongPin { tries_left: None }),
            t0,
        );
        let State::Notice { until, .. } = app.state() else {
            panic!("no notice")
        };
        let until = *until;
        assert_eq!(next_change(&app, t0), Some(until));
        // Past due: at once, so the tick that ends it comes now.
        let late = until + Duration::from_millis(300);
        assert_eq!(next_change(&app, late), Some(late));
        app.handle(Event::Tick, late);
        assert_eq!(next_change(&app, late), None);
    }

    #[test]
    fn clock_shows_minutes_and_seconds() {
        assert_eq!(clock(0), "0:00");
        assert_eq!(clock(299), "4:59");
        assert_eq!(clock(3600), "60:00");
    }
}
