//! Signaling frames: `length: u32 BE || JSON object`, and the messages they carry.
//!
//! Everything here comes off the network: every input is checked, nothing panics.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

/// Largest payload a peer may send.
pub const MAX_PAYLOAD: usize = 65_536;

/// Error codes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Wrong PIN (failed confirm).
    BadPin,
    /// Another guest is joining.
    RoomBusy,
    /// Room closed, expired or unknown.
    NoRoom,
    /// Room burned after too many wrong PINs.
    Locked,
    /// Unsupported protocol version.
    Version,
    /// A frame broke the protocol.
    Malformed,
    /// The peer failed inside.
    Internal,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadPin => "bad-pin",
            ErrorCode::RoomBusy => "room-busy",
            ErrorCode::NoRoom => "no-room",
            ErrorCode::Locked => "locked",
            ErrorCode::Version => "version",
            ErrorCode::Malformed => "malformed",
            ErrorCode::Internal => "internal",
        }
    }

    fn parse(s: &str) -> Option<ErrorCode> {
        Some(match s {
            "bad-pin" => ErrorCode::BadPin,
            "room-busy" => ErrorCode::RoomBusy,
            "no-room" => ErrorCode::NoRoom,
            "locked" => ErrorCode::Locked,
            "version" => ErrorCode::Version,
            "malformed" => ErrorCode::Malformed,
            "internal" => ErrorCode::Internal,
            _ => return None,
        })
    }
}

/// A message of the signaling channel (outside the sealed layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// SPAKE2 message.
    Pake {
        /// Protocol version.
        v: u64,
        /// Room id (16 hex characters).
        room: String,
        /// The 33-byte SPAKE2 message.
        msg: Vec<u8>,
    },
    /// Key confirmation MAC.
    Confirm {
        /// HMAC-SHA256, 32 bytes.
        mac: Vec<u8>,
    },
    /// A sealed inner message.
    Sealed {
        /// Sequence number.
        seq: u64,
        /// Ciphertext and tag.
        ct: Vec<u8>,
    },
    /// An error; the sender closes after it.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        msg: Option<String>,
    },
}

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Length prefix over [`MAX_PAYLOAD`].
    #[error("frame of {0} bytes is over the 65536-byte limit")]
    TooLong(usize),
    /// Not a JSON object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// Unknown `t`.
    #[error("unknown frame type")]
    UnknownType,
    /// A field is missing or of the wrong type.
    #[error("frame field `{0}` is missing or malformed")]
    Field(&'static str),
}

impl Message {
    /// Parses one payload (without the length prefix).
    pub fn parse(payload: &[u8]) -> Result<Message, FrameError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLong(payload.len()));
        }
        let value: Value = serde_json::from_slice(payload).map_err(|_| FrameError::NotObject)?;
        let obj = value.as_object().ok_or(FrameError::NotObject)?;
        let t = obj
            .get("t")
            .and_then(Value::as_str)
            .ok_or(FrameError::Field("t"))?;
        Ok(match t {
            "pake" => Message::Pake {
                v: get_u64(obj, "v")?,
                room: get_str(obj, "room")?.to_string(),
                msg: get_b64(obj, "msg")?,
            },
            "confirm" => Message::Confirm {
                mac: get_b64(obj, "mac")?,
            },
            "sealed" => Message::Sealed {
                seq: get_u64(obj, "seq")?,
                ct: get_b64(obj, "ct")?,
            },
            "error" => Message::Error {
                code: ErrorCode::parse(get_str(obj, "code")?).ok_or(FrameError::Field("code"))?,
                msg: match obj.get("msg") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(FrameError::Field("msg")),
                },
            },
            _ => return Err(FrameError::UnknownType),
        })
    }

    /// The JSON payload.
    pub fn to_json(&self) -> Vec<u8> {
        let value = match self {
            Message::Pake { v, room, msg } => {
                json!({"t": "pake", "v": v, "room": room, "msg": B64.encode(msg)})
            }
            Message::Confirm { mac } => json!({"t": "confirm", "mac": B64.encode(mac)}),
            Message::Sealed { seq, ct } => json!({"t": "sealed", "seq": seq, "ct": B64.encode(ct)}),
            Message::Error { code, msg } => match msg {
                Some(m) => json!({"t": "error", "code": code.as_str(), "msg": m}),
                None => json!({"t": "error", "code": code.as_str()}),
            },
        };
        serde_json::to_vec(&value).expect("JSON values always serialize")
    }

    /// The frame on the wire: length prefix and payload.
    pub fn encode(&self) -> Vec<u8> {
        let payload = self.to_json();
        let mut out = Vec::with_capacity(4 + payload.len());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// An error frame.
    pub fn error(code: ErrorCode, msg: impl Into<String>) -> Message {
        Message::Error {
            code,
            msg: Some(msg.into()),
        }
    }
}

fn get_str<'a>(obj: &'a Map<String, Value>, key: &'static str) -> Result<&'a str, FrameError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or(FrameError::Field(key))
}

fn get_u64(obj: &Map<String, Value>, key: &'static str) -> Result<u64, FrameError> {
    obj.get(key)
        .and_then(Value::as_u64)
        .ok_or(FrameError::Field(key))
}

fn get_b64(obj: &Map<String, Value>, key: &'static str) -> Result<Vec<u8>, FrameError> {
    B64.decode(get_str(obj, key)?)
        .map_err(|_| FrameError::Field(key))
}

/// Splits a byte stream into frame payloads.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole payload, `Ok(None)` if more bytes are needed. An oversized length
    /// is an error as soon as the prefix arrives, before any payload is buffered.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let payload = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(payload))
    }

    /// The next whole message.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        match self.next_payload()? {
            Some(p) => Message::parse(&p).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        let msgs = [
            Message::Pake {
                v: 1,
                room: "0f1e2d3c4b5a6978".into(),
                msg: vec![7; 33],
            },
            Message::Confirm { mac: vec![1; 32] },
            Message::Sealed {
                seq: 5,
                ct: vec![9; 40],
            },
            Message::error(ErrorCode::BadPin, "wrong PIN"),
            Message::Error {
                code: ErrorCode::Locked,
                msg: None,
            },
        ];
        let mut dec = FrameDecoder::new();
        for m in &msgs {
            dec.push(&m.encode());
        }
        for m in &msgs {
            assert_eq!(dec.next_message().unwrap().as_ref(), Some(m));
        }
        assert_eq!(dec.next_message().unwrap(), None);
    }

    #[test]
    fn bad_payloads_are_named() {
        assert_eq!(Message::parse(b"[1,2]"), Err(FrameError::NotObject));
        assert_eq!(Message::parse(b"\xff"), Err(FrameError::NotObject));
        assert_eq!(
            Message::parse(br#"{"t":"hello"}"#),
            Err(FrameError::UnknownType)
        );
        assert_eq!(Message::parse(br#"{"t":5}"#), Err(FrameError::Field("t")));
        assert_eq!(
            Message::parse(br#"{"t":"pake","v":"1","room":"x","msg":""}"#),
            Err(FrameError::Field("v"))
        );
        assert_eq!(
            Message::parse(br#"{"t":"confirm","mac":"not base64!"}"#),
            Err(FrameError::Field("mac"))
        );
        assert_eq!(
            Message::parse(br#"{"t":"sealed","seq":-1,"ct":""}"#),
            Err(FrameError::Field("seq"))
        );
        assert_eq!(
            Message::parse(br#"{"t":"error","code":"teapot"}"#),
            Err(FrameError::Field("code"))
        );
    }

    #[test]
    fn oversized_length_fails_before_the_payload_arrives() {
        let mut dec = FrameDecoder::new();
        dec.push(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert_eq!(
            dec.next_payload(),
            Err(FrameError::TooLong(MAX_PAYLOAD + 1))
        );
        let mut dec = FrameDecoder::new();
        dec.push(&(MAX_PAYLOAD as u32).to_be_bytes());
        assert_eq!(dec.next_payload(), Ok(None));
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let m = Message::Confirm { mac: vec![3; 32] };
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            let mut dec = FrameDecoder::new();
            dec.push(&bytes[..cut]);
            assert_eq!(dec.next_message().unwrap(), None);
            dec.push(&bytes[cut..]);
            assert_eq!(dec.next_message().unwrap(), Some(m.clone()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoder_never_panics_on_random_bytes(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut dec = FrameDecoder::new();
            for c in &chunks {
                dec.push(c);
                while let Ok(Some(_)) = dec.next_message() {}
            }
        }

        #[test]
        fn parse_never_panics_on_json_like_input(s in r#"\{"t":"(pake|confirm|sealed|error)"(,"[a-z]{1,4}":("[A-Za-z0-9+/=]{0,12}"|-?[0-9]{1,20}|null|\[\]|\{\}))*\}"#) {
            let _ = Message::parse(s.as_bytes());
        }
    }
}
