//! Reading what a box leaves behind: its output lines, its screen's QR code, and an
//! strace log checked for file writes.

/// Collects the lines of what `open` gives (a child's stderr, a FIFO, opened in the
/// thread since a FIFO's open waits for its writer) in a background thread, keeping those
/// `parse` turns into a value; the list grows as lines come.
pub fn collect_lines<R: std::io::Read, T: Send + 'static>(
    open: impl FnOnce() -> std::io::Result<R> + Send + 'static,
    parse: impl Fn(String) -> Option<T> + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<T>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        let Ok(source) = open() else { return };
        for line in std::io::BufReader::new(source)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(v) = parse(line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    lines
}

/// Lines of an `strace -e trace=…` log that create, change or remove a file outside
/// `/dev`, `/proc`, `/sys` and the paths `allowed` accepts.
pub fn file_writes(trace: &str, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    trace
        .lines()
        // With -f, a call another thread interrupts is split in two lines; the first one,
        // `<unfinished ...>`, carries the path and is the one checked.
        .filter(|l| !l.contains("= -1") && !l.contains("resumed>"))
        .filter(|l| {
            l.contains("O_WRONLY")
                || l.contains("O_RDWR")
                || l.contains("O_CREAT")
                || ["rename", "mkdir", "unlink", "creat("]
                    .iter()
                    .any(|c| l.contains(c))
        })
        .filter(|l| {
            let path = l.split('"').nth(1).unwrap_or("");
            !["/dev/", "/proc/", "/sys/"]
                .iter()
                .any(|p| path.starts_with(p))
                && !allowed(path)
        })
        .map(str::to_string)
        .collect()
}

/// The text of the QR code in a PNG, if one decodes.
///
/// Read as a camera would see it: rqrr misses some codes drawn at a few pixels per
/// module (a random invitation in ~300 failed its sampling at 1x, 2x and 3x), so each
/// screen is also tried smoothly resized to 3/2 and 7/4 of its size.
pub fn qr_in(png: &std::path::Path) -> Option<String> {
    let img = image::open(png).ok()?.to_luma8();
    let (w, h) = img.dimensions();
    std::iter::once(img.clone())
        .chain([(3, 2), (7, 4)].map(|(num, den)| {
            image::imageops::resize(
                &img,
                w * num / den,
                h * num / den,
                image::imageops::FilterType::Triangle,
            )
        }))
        .find_map(|view| qr_of(&view))
}

fn qr_of(img: &image::GrayImage) -> Option<String> {
    let (w, h) = img.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
            img.get_pixel(x as u32, y as u32).0[0]
        });
    prepared
        .detect_grids()
        .iter()
        .find_map(|g| g.decode().ok().map(|(_, s)| s))
}

/// Whether `digits` (a PIN) stands as a number of its own anywhere in `log` after each
/// line's timestamp: a PIN that leaked would (`pin=4821`, `"4821"`), while the digits of
/// the timestamps and of longer numbers hold any four digits by chance (a CI run once
/// failed on a PIN found only inside them).
pub fn log_shows_number(log: &str, digits: &str) -> bool {
    log.lines()
        .map(|line| match line.split_once(' ') {
            Some((stamp, rest)) if stamp.starts_with(|c: char| c.is_ascii_digit()) => rest,
            _ => line,
        })
        .any(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .any(|number| number == digits)
        })
}
