//! A frame buffer in memory that screens are drawn into before a display shows them: one
//! colour value per pixel, row by row. Filling a rectangle (clearing the screen before each
//! redraw) writes whole row slices instead of going pixel by pixel through a point
//! iterator, which was most of a redraw's time.

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

/// Pixels of `size`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameBuffer<C: PixelColor> {
    size: Size,
    pixels: Vec<C>,
}

impl<C: PixelColor> FrameBuffer<C> {
    /// A frame of `size` filled with `color`.
    pub fn new(size: Size, color: C) -> FrameBuffer<C> {
        FrameBuffer {
            size,
            pixels: vec![color; size.width as usize * size.height as usize],
        }
    }

    /// Every pixel, row by row.
    pub fn pixels(&self) -> &[C] {
        &self.pixels
    }

    /// Row `y` (empty past the bottom).
    pub fn row(&self, y: u32) -> &[C] {
        let w = self.size.width as usize;
        self.pixels
            .get(y as usize * w..(y as usize + 1) * w)
            .unwrap_or(&[])
    }

    /// The pixel at `p`, `None` outside the frame.
    pub fn pixel(&self, p: Point) -> Option<C> {
        self.index(p).map(|i| self.pixels[i])
    }

    fn index(&self, p: Point) -> Option<usize> {
        let (x, y) = (usize::try_from(p.x).ok()?, usize::try_from(p.y).ok()?);
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        (x < w && y < h).then_some(y * w + x)
    }
}

impl<C: PixelColor> OriginDimensions for FrameBuffer<C> {
    fn size(&self) -> Size {
        self.size
    }
}

impl<C: PixelColor> DrawTarget for FrameBuffer<C> {
    type Color = C;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<C>>,
    {
        for Pixel(p, color) in pixels {
            if let Some(i) = self.index(p) {
                self.pixels[i] = color;
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: C) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        let w = self.size.width as usize;
        let (left, right) = (area.top_left.x as usize, bottom_right.x as usize);
        for y in area.top_left.y as usize..=bottom_right.y as usize {
            self.pixels[y * w + left..=y * w + right].fill(color);
        }
        Ok(())
    }

    fn clear(&mut self, color: C) -> Result<(), Self::Error> {
        self.pixels.fill(color);
        Ok(())
    }
}

/// A frame buffer drawn through embedded-graphics' default paths, one pixel at a time:
/// what the fast fills are tested and measured against.
pub struct PixelByPixel<'a, C: PixelColor>(pub &'a mut FrameBuffer<C>);

impl<C: PixelColor> OriginDimensions for PixelByPixel<'_, C> {
    fn size(&self) -> Size {
        self.0.size()
    }
}

impl<C: PixelColor> DrawTarget for PixelByPixel<'_, C> {
    type Color = C;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<C>>,
    {
        self.0.draw_iter(pixels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
    use embedded_graphics::pixelcolor::Rgb565;
    use embedded_graphics::primitives::PrimitiveStyle;
    use embedded_graphics::text::Text;

    fn scene<D: DrawTarget<Color = Rgb565>>(d: &mut D) -> Result<(), D::Error> {
        d.clear(Rgb565::BLUE)?;
        // Partly off each edge, and wholly off.
        for r in [
            Rectangle::new(Point::new(-5, -5), Size::new(12, 9)),
            Rectangle::new(Point::new(30, 20), Size::new(40, 40)),
            Rectangle::new(Point::new(100, 50), Size::new(40, 40)),
            Rectangle::new(Point::new(200, 200), Size::new(4, 4)),
            Rectangle::new(Point::new(10, 10), Size::zero()),
        ] {
            r.into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
                .draw(d)?;
        }
        Text::new(
            "In call 0:42",
            Point::new(2, 12),
            MonoTextStyle::new(&FONT_6X10, Rgb565::WHITE),
        )
        .draw(d)?;
        Ok(())
    }

    #[test]
    fn fast_fills_draw_exactly_what_pixel_by_pixel_drawing_does() {
        let size = Size::new(120, 64);
        let mut fast = FrameBuffer::new(size, Rgb565::BLACK);
        let mut slow = FrameBuffer::new(size, Rgb565::BLACK);
        scene(&mut fast).unwrap();
        scene(&mut PixelByPixel(&mut slow)).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(fast.pixel(Point::new(0, 0)), Some(Rgb565::RED));
        assert_eq!(fast.pixel(Point::new(119, 0)), Some(Rgb565::BLUE));
        assert_eq!(
            fast.pixel(Point::new(119, 63)),
            Some(Rgb565::RED),
            "clipped at the edge"
        );
        assert_eq!(fast.pixel(Point::new(6, 3)), Some(Rgb565::RED));
        assert_eq!(fast.pixel(Point::new(7, 3)), Some(Rgb565::BLUE));
    }

    #[test]
    fn reads_outside_the_frame_are_none() {
        let f = FrameBuffer::new(Size::new(4, 3), Rgb565::GREEN);
        assert_eq!(f.pixel(Point::new(-1, 0)), None);
        assert_eq!(f.pixel(Point::new(4, 0)), None);
        assert_eq!(f.pixel(Point::new(0, 3)), None);
        assert_eq!(f.row(2).len(), 4);
        assert!(f.row(3).is_empty());
        assert_eq!(f.pixels().len(), 12);
    }
}
