//! Fitting the room's QR code into a screen area and drawing it module by module.

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use qrcode::{Color, EcLevel, QrCode};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::hw::ScreenColor;
use crate::pairing::Invite;

/// Smallest quiet zone drawn around a code, in modules (the standard asks for 4; scanners
/// read 2 when the surroundings are plain).
const MIN_QUIET_MODULES: u32 = 2;
const WANT_QUIET_MODULES: u32 = 4;

/// A QR code ready to draw: its modules and pixels per module. The modules encode the
/// PIN (when the invitation carries it), so they are wiped on drop.
#[derive(Debug, Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct FittedQr {
    /// Modules per side.
    pub width: u32,
    /// Dark modules, row by row.
    pub dark: Vec<bool>,
    /// Screen pixels per module.
    pub scale: u32,
}

/// The invitation's URIs from most to least complete: when space is short the device
/// name goes first, then the Bluetooth address (the protocol allows leaving both out).
fn variants(invite: &Invite) -> Vec<Zeroizing<String>> {
    let mut out = vec![invite.to_uri()];
    let mut bare = invite.clone();
    if bare.name.take().is_some() {
        out.push(bare.to_uri());
    }
    if bare.bt.take().is_some() {
        out.push(bare.to_uri());
    }
    out
}

/// Encodes the invitation at the largest module size that fits `side` pixels; `None`
/// when no code fits at all.
pub fn fit(invite: &Invite, side: u32) -> Option<FittedQr> {
    let candidates: Vec<QrCode> = variants(invite)
        .iter()
        .flat_map(|uri| {
            [EcLevel::M, EcLevel::L]
                .into_iter()
                .filter_map(|ec| QrCode::with_error_correction_level(uri.as_bytes(), ec).ok())
        })
        .collect();
    for scale in (1..=8).rev() {
        for code in &candidates {
            let width = code.width() as u32;
            if (width + 2 * MIN_QUIET_MODULES) * scale <= side {
                return Some(FittedQr {
                    width,
                    dark: code.to_colors().iter().map(|c| *c == Color::Dark).collect(),
                    scale,
                });
            }
        }
    }
    None
}

/// Draws a fitted code centred in the square `area`, on a light quiet zone.
pub fn draw<D>(target: &mut D, qr: &FittedQr, area: Rectangle) -> Result<(), D::Error>
where
    D: DrawTarget,
    D::Color: ScreenColor,
{
    let code_px = qr.width * qr.scale;
    let spare_modules = (area.size.width.min(area.size.height) - code_px) / qr.scale / 2;
    let quiet_px = spare_modules.min(WANT_QUIET_MODULES) * qr.scale;
    let total = code_px + 2 * quiet_px;
    let origin = area.top_left
        + Point::new(
            ((area.size.width - total) / 2) as i32,
            ((area.size.height - total) / 2) as i32,
        );
    Rectangle::new(origin, Size::new(total, total))
        .into_styled(PrimitiveStyle::with_fill(D::Color::QR_LIGHT))
        .draw(target)?;
    let code_origin = origin + Point::new(quiet_px as i32, quiet_px as i32);
    let dark = PrimitiveStyle::with_fill(D::Color::QR_DARK);
    for (i, _) in qr.dark.iter().enumerate().filter(|(_, d)| **d) {
        let (x, y) = ((i as u32 % qr.width), (i as u32 / qr.width));
        Rectangle::new(
            code_origin + Point::new((x * qr.scale) as i32, (y * qr.scale) as i32),
            Size::new(qr.scale, qr.scale),
        )
        .into_styled(dark)
        .draw(target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::{Pin, RoomId};

    fn invite(name: &str) -> Invite {
        Invite {
            room: RoomId::parse("0f1e2d3c4b5a6978").unwrap(),
            name: Some(name.into()),
            tcp: vec!["192.168.100.200:7300".parse().unwrap()],
            bt: None,
            online: None,
            pin: Pin::parse("4821"),
            web: None,
        }
    }

    #[test]
    fn larger_area_gives_larger_modules() {
        let small = fit(&invite("door"), 64).unwrap();
        let large = fit(&invite("door"), 150).unwrap();
        assert!(
            large.scale > small.scale,
            "{} vs {}",
            large.scale,
            small.scale
        );
        assert!((small.width + 4) * small.scale <= 64);
    }

    #[test]
    fn long_names_are_dropped_before_the_code_shrinks() {
        let long = "A very long device name here";
        let with_name = fit(&invite(long), 400).unwrap();
        let tight = fit(&invite(long), 64).unwrap();
        assert!(tight.width <= with_name.width);
    }

    #[test]
    fn nothing_fits_in_a_tiny_area() {
        assert!(fit(&invite("door"), 20).is_none());
    }
}
