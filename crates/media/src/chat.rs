//! The `chat` data channel protocol: `{"t":"msg","id":…,"text":…}` answered by
//! `{"t":"ack","id":…}` once shown. Pure: parsing, numbering, de-duplication.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

/// Longest text a message may carry, in bytes.
pub const MAX_TEXT: usize = 4096;

/// A message on the `chat` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatMessage {
    /// Text for the user.
    Msg {
        /// Sender's id for this message.
        id: u64,
        /// The text.
        text: String,
    },
    /// The receiver showed message `id`.
    Ack {
        /// The message's id.
        id: u64,
    },
    /// The sender hangs up (`{"t":"bye"}`): the call's own goodbye once its signaling
    /// session is gone, as after an online pairing, whose mailbox closes once media is up.
    Bye,
}

/// Why a chat message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Not JSON, unknown `t`, or fields of the wrong type.
    #[error("malformed chat message")]
    Malformed,
    /// Text over 4096 bytes.
    #[error("chat text over 4096 bytes")]
    TooLong,
}

impl ChatMessage {
    /// Parses one data channel message.
    pub fn parse(data: &[u8]) -> Result<ChatMessage, ChatError> {
        let v: Value = serde_json::from_slice(data).map_err(|_| ChatError::Malformed)?;
        if v.get("t").and_then(Value::as_str) == Some("bye") {
            return Ok(ChatMessage::Bye);
        }
        let id = v
            .get("id")
            .and_then(Value::as_u64)
            .ok_or(ChatError::Malformed)?;
        match v.get("t").and_then(Value::as_str) {
            Some("msg") => {
                let text = v
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or(ChatError::Malformed)?;
                if text.len() > MAX_TEXT {
                    return Err(ChatError::TooLong);
                }
                Ok(ChatMessage::Msg {
                    id,
                    text: text.to_string(),
                })
            }
            Some("ack") => Ok(ChatMessage::Ack { id }),
            _ => Err(ChatError::Malformed),
        }
    }

    /// The JSON text to send.
    pub fn to_json(&self) -> String {
        match self {
            ChatMessage::Msg { id, text } => json!({"t": "msg", "id": id, "text": text}),
            ChatMessage::Ack { id } => json!({"t": "ack", "id": id}),
            ChatMessage::Bye => json!({"t": "bye"}),
        }
        .to_string()
    }
}

/// Cuts `text` to at most [`MAX_TEXT`] bytes at a character boundary.
pub fn clip(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One side's bookkeeping: ids for outgoing messages, which are acked, which incoming
/// ids were already shown.
#[derive(Debug, Default)]
pub struct Chat {
    next_id: u64,
    unacked: BTreeMap<u64, String>,
    delivered: u64,
    seen: HashSet<u64>,
}

impl Chat {
    /// Numbers an outgoing text.
    pub fn outgoing(&mut self, text: &str) -> ChatMessage {
        let id = self.next_id;
        self.next_id += 1;
        let text = clip(text).to_string();
        self.unacked.insert(id, text.clone());
        ChatMessage::Msg { id, text }
    }

    /// Handles an incoming message: the text to show, if it is new.
    pub fn incoming(&mut self, msg: ChatMessage) -> Option<(u64, String)> {
        match msg {
            ChatMessage::Msg { id, text } => self.seen.insert(id).then_some((id, text)),
            ChatMessage::Ack { id } => {
                if self.unacked.remove(&id).is_some() {
                    self.delivered += 1;
                }
                None
            }
            ChatMessage::Bye => None,
        }
    }

    /// Messages the other side has acknowledged.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Messages sent and not acknowledged yet.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            ChatMessage::Msg {
                id: 7,
                text: "hello \"door\"".into(),
            },
            ChatMessage::Ack { id: u64::MAX },
        ] {
            assert_eq!(ChatMessage::parse(m.to_json().as_bytes()).unwrap(), m);
        }
    }

    #[test]
    fn bad_messages_are_refused() {
        for bad in [
            &b"nope"[..],
            br#"{"t":"msg","id":-1,"text":"x"}"#,
            br#"{"t":"msg","id":1}"#,
            br#"{"t":"hi","id":1}"#,
        ] {
            assert_eq!(ChatMessage::parse(bad), Err(ChatError::Malformed));
        }
        let long = json!({"t": "msg", "id": 1, "text": "x".repeat(4097)}).to_string();
        assert_eq!(ChatMessage::parse(long.as_bytes()), Err(ChatError::TooLong));
    }

    #[test]
    fn each_message_is_shown_once_and_acks_count_once() {
        let (mut a, mut b) = (Chat::default(), Chat::default());
        let m = a.outgoing("hi");
        assert_eq!(b.incoming(m.clone()), Some((0, "hi".into())));
        assert_eq!(b.incoming(m), None);
        a.incoming(ChatMessage::Ack { id: 0 });
        a.incoming(ChatMessage::Ack { id: 0 });
        a.incoming(ChatMessage::Ack { id: 99 });
        assert_eq!((a.delivered(), a.unacked()), (1, 0));
    }

    #[test]
    fn long_texts_are_clipped_at_a_character_boundary() {
        let text = "é".repeat(3000);
        let clipped = clip(&text);
        assert!(clipped.len() <= MAX_TEXT);
        assert!(clipped.chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = ChatMessage::parse(&data);
        }
    }
}
