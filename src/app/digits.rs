//! Large seven-segment digits, drawn from rectangles so they scale to any screen.

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

// Segments a..g, bit 0 = a (top), clockwise, g = middle.
const SEGMENTS: [u8; 10] = [
    0b011_1111, // 0
    0b000_0110, // 1
    0b101_1011, // 2
    0b100_1111, // 3
    0b110_0110, // 4
    0b110_1101, // 5
    0b111_1101, // 6
    0b000_0111, // 7
    0b111_1111, // 8
    0b110_1111, // 9
];

/// Draws one digit (`'0'`–`'9'`; `'_'` draws the bottom bar only, as a blank slot) in a
/// `size` box at `top_left`.
pub(super) fn draw_digit<D: DrawTarget>(
    target: &mut D,
    digit: char,
    top_left: Point,
    size: Size,
    color: D::Color,
) -> Result<(), D::Error> {
    let bits = match digit {
        '0'..='9' => SEGMENTS[digit as usize - '0' as usize],
        '_' => 0b000_1000,
        '-' => 0b100_0000,
        _ => 0,
    };
    let (w, h) = (size.width as i32, size.height as i32);
    let t = (size.width / 5).max(2) as i32;
    let mid = (h - t) / 2;
    let horizontal =
        |y: i32| Rectangle::new(Point::new(t, y), Size::new((w - 2 * t) as u32, t as u32));
    let vertical = |x: i32, y: i32, len: i32| {
        Rectangle::new(Point::new(x, y), Size::new(t as u32, len as u32))
    };
    let half = mid + t / 2;
    let rects = [
        horizontal(0),                           // a
        vertical(w - t, t / 2, half - t / 2),    // b
        vertical(w - t, half, h - half - t / 2), // c
        horizontal(h - t),                       // d
        vertical(0, half, h - half - t / 2),     // e
        vertical(0, t / 2, half - t / 2),        // f
        horizontal(mid),                         // g
    ];
    let style = PrimitiveStyle::with_fill(color);
    for (i, rect) in rects.iter().enumerate() {
        if bits & (1 << i) != 0 {
            Rectangle::new(rect.top_left + top_left, rect.size)
                .into_styled(style)
                .draw(target)?;
        }
    }
    Ok(())
}

/// Draws a row of digits, `gap` pixels apart; returns the width used.
pub(super) fn draw_digits<D: DrawTarget>(
    target: &mut D,
    text: &str,
    top_left: Point,
    size: Size,
    gap: u32,
    color: D::Color,
) -> Result<u32, D::Error> {
    let mut x = top_left.x;
    for c in text.chars() {
        draw_digit(target, c, Point::new(x, top_left.y), size, color)?;
        x += (size.width + gap) as i32;
    }
    Ok((x - top_left.x) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;
    use embedded_graphics::pixelcolor::BinaryColor;

    fn lit(digit: char) -> MockDisplay<BinaryColor> {
        let mut d = MockDisplay::new();
        d.set_allow_overdraw(true);
        draw_digit(
            &mut d,
            digit,
            Point::zero(),
            Size::new(10, 20),
            BinaryColor::On,
        )
        .unwrap();
        d
    }

    #[test]
    fn digits_light_their_segments() {
        // 8 lights everything that 0 lights, plus the middle bar.
        let (eight, zero, one) = (lit('8'), lit('0'), lit('1'));
        let on = |d: &MockDisplay<BinaryColor>, x, y| {
            d.get_pixel(Point::new(x, y)) == Some(BinaryColor::On)
        };
        assert!(on(&eight, 5, 10) && !on(&zero, 5, 10));
        assert!(on(&zero, 5, 0) && !on(&one, 5, 0));
        assert!(on(&one, 9, 5) && on(&one, 9, 15) && !on(&one, 0, 5));
        assert_eq!(lit('x').affected_area(), Rectangle::zero());
    }
}
