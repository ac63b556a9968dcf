//! Simulated audio: a WAV file played as the microphone, paced in real time, and a WAV
//! file recording the speaker.

use super::echo::SharedEchoPath;
use crate::hw::{AudioFrame, AudioIn, AudioOut, FrameClock, HwError, FRAME_SAMPLES, SAMPLE_RATE};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// A microphone that plays a WAV file once, then silence; all silence without a file.
pub struct WavIn {
    samples: Vec<i16>,
    pos: usize,
    /// Made at the first read: a clock needs the running runtime.
    clock: Option<FrameClock>,
    /// The speaker's sound coming back, if the simulator has an echo path.
    echo: Option<SharedEchoPath>,
    /// The tick the last frame was read at.
    tick: Option<std::time::Instant>,
}

impl WavIn {
    /// Silence forever.
    pub fn silent() -> WavIn {
        WavIn {
            samples: Vec::new(),
            pos: 0,
            clock: None,
            echo: None,
            tick: None,
        }
    }

    /// Loads a 48 kHz, 16-bit PCM WAV file (stereo is mixed down to mono).
    pub fn open(path: &Path) -> Result<WavIn, HwError> {
        let file = std::fs::File::open(path).map_err(|e| HwError::Open {
            what: "audio input WAV",
            path: path.display().to_string(),
            source: e.into(),
        })?;
        Self::read(std::io::BufReader::new(file), &path.display().to_string())
    }

    /// Loads WAV data held in memory (a bundled clip), as [`WavIn::open`] does a file.
    pub fn from_wav_bytes(bytes: &[u8], name: &str) -> Result<WavIn, HwError> {
        Self::read(std::io::Cursor::new(bytes), name)
    }

    fn read<R: std::io::Read>(source: R, name: &str) -> Result<WavIn, HwError> {
        let err = |reason: String| HwError::Open {
            what: "audio input WAV",
            path: name.to_string(),
            source: reason.into(),
        };
        let reader = hound::WavReader::new(source).map_err(|e| err(e.to_string()))?;
        let spec = reader.spec();
        if spec.sample_rate != SAMPLE_RATE
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
            || !(1..=2).contains(&spec.channels)
        {
            return Err(err(format!(
                "need 48000 Hz 16-bit PCM mono or stereo, got {} Hz {}-bit {:?} with {} channels \
                 (convert with: sox in.wav -r 48000 -b 16 -c 1 out.wav)",
                spec.sample_rate, spec.bits_per_sample, spec.sample_format, spec.channels
            )));
        }
        let raw: Vec<i16> = reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        let samples = if spec.channels == 2 {
            raw.chunks_exact(2)
                .map(|p| ((i32::from(p[0]) + i32::from(p[1])) / 2) as i16)
                .collect()
        } else {
            raw
        };
        Ok(WavIn {
            samples,
            pos: 0,
            clock: None,
            echo: None,
            tick: None,
        })
    }

    /// The whole clip.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// The next frame without waiting: the file's samples, then silence.
    pub fn take_frame(&mut self) -> AudioFrame {
        let mut frame = [0i16; FRAME_SAMPLES];
        let end = (self.pos + FRAME_SAMPLES).min(self.samples.len());
        if self.pos < end {
            frame[..end - self.pos].copy_from_slice(&self.samples[self.pos..end]);
            self.pos = end;
        }
        frame
    }

    /// Hears the speaker through `path` (the simulator's echo path).
    pub fn with_echo(mut self, path: SharedEchoPath) -> WavIn {
        self.echo = Some(path);
        self
    }

    /// Seconds of audio in the file.
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(SAMPLE_RATE)
    }
}

impl AudioIn for WavIn {
    fn captured_at(&self) -> Option<std::time::Instant> {
        self.tick
    }

    /// With an echo path, the microphone's buffer (a frame).
    fn latency(&self) -> Option<std::time::Duration> {
        self.echo
            .as_ref()
            .map(|_| super::echo::EchoPath::CAPTURE_LATENCY)
    }

    async fn read_frame(&mut self) -> Result<AudioFrame, HwError> {
        // Frames leave on the box's 20 ms audio clock, as a sound card would deliver them;
        // after a pause (between calls) the clock carries on from now.
        let tick = self
            .clock
            .get_or_insert_with(FrameClock::new)
            .tick()
            .await
            .into_std();
        self.tick = Some(tick);
        let mut frame = self.take_frame();
        if let Some(echo) = &self.echo {
            echo.lock()
                .unwrap_or_else(|e| e.into_inner())
                .add_echo(&mut frame, tick);
        }
        Ok(frame)
    }
}

/// A speaker that records to a WAV file (48 kHz mono 16-bit), or discards without one.
pub struct WavOut {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    frames: u64,
    echo: Option<SharedEchoPath>,
}

impl WavOut {
    /// A speaker nobody hears.
    pub fn discard() -> WavOut {
        WavOut {
            writer: None,
            frames: 0,
            echo: None,
        }
    }

    /// Creates (or replaces) the WAV file at `path`.
    pub fn create(path: &Path) -> Result<WavOut, HwError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| HwError::Open {
            what: "audio output WAV",
            path: path.display().to_string(),
            source: e.into(),
        })?;
        Ok(WavOut {
            writer: Some(writer),
            frames: 0,
            echo: None,
        })
    }

    /// Plays into `path` too (the simulator's echo path).
    pub fn with_echo(mut self, path: SharedEchoPath) -> WavOut {
        self.echo = Some(path);
        self
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl AudioOut for WavOut {
    fn write_frame(&mut self, frame: &AudioFrame) -> Result<(), HwError> {
        self.write_frame_at(frame, None)
    }

    fn write_frame_at(
        &mut self,
        frame: &AudioFrame,
        tick: Option<std::time::Instant>,
    ) -> Result<(), HwError> {
        self.frames += 1;
        if let Some(echo) = &self.echo {
            echo.lock()
                .unwrap_or_else(|e| e.into_inner())
                .played(frame, tick);
        }
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut w = writer.get_i16_writer(FRAME_SAMPLES as u32);
        for &s in frame {
            w.write_sample(s);
        }
        w.flush().map_err(|e| HwError::Io {
            what: "audio output WAV",
            source: e.into(),
        })
    }

    /// With an echo path, the speaker's buffer (a frame) before the path hears it.
    fn latency(&self) -> Option<std::time::Duration> {
        self.echo
            .as_ref()
            .map(|_| super::echo::EchoPath::PLAYBACK_LATENCY)
    }

    fn finish(&mut self) -> Result<(), HwError> {
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| HwError::Io {
                what: "audio output WAV",
                source: e.into(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for WavOut {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = &e as &dyn std::error::Error, "speaker WAV");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[tokio::test]
    async fn wav_in_plays_file_then_silence_at_real_time_pace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        let samples: Vec<i16> = (0..1500).map(|i| i as i16).collect();
        write_wav(&path, 48_000, 1, &samples);
        let mut mic = WavIn::open(&path).unwrap();
        // The first frame comes at the box's next frame boundary, then one every 20 ms
        // (real time: the audio clock is a kernel timer).
        let start = tokio::time::Instant::now();
        let a = mic.read_frame().await.unwrap();
        let b = mic.read_frame().await.unwrap();
        let c = mic.read_frame().await.unwrap();
        assert_eq!(&a[..], &samples[..960]);
        assert_eq!(&b[..540], &samples[960..]);
        assert!(b[540..].iter().all(|&s| s == 0));
        assert!(c.iter().all(|&s| s == 0));
        assert!(
            start.elapsed() >= Duration::from_millis(40),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn wav_in_mixes_stereo_and_rejects_other_rates() {
        let dir = tempfile::tempdir().unwrap();
        let stereo = dir.path().join("stereo.wav");
        write_wav(&stereo, 48_000, 2, &[100, 300, -50, -150]);
        let mut mic = WavIn::open(&stereo).unwrap();
        assert_eq!(&mic.take_frame()[..3], &[200, -100, 0]);
        let slow = dir.path().join("slow.wav");
        write_wav(&slow, 22_050, 1, &[0; 10]);
        let err = crate::errors::chain(&WavIn::open(&slow).err().unwrap());
        assert!(err.contains("22050 Hz") && err.contains("sox"), "{err}");
    }

    #[test]
    fn wav_out_is_a_valid_file_after_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut spk = WavOut::create(&path).unwrap();
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[0] = 1234;
        spk.write_frame(&frame).unwrap();
        spk.write_frame(&frame).unwrap();
        spk.finish().unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().sample_rate, 48_000);
        assert_eq!(reader.len(), 2 * FRAME_SAMPLES as u32);
    }
}
