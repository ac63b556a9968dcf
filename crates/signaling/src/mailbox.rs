//! The rendezvous mailbox's messages without the network: the other side's frames put
//! back in phase order, each once, our own echoes dropped (the server merges both sides,
//! echoes and may reorder or repeat), and the code a keypad types. Pure, so it is tested
//! and fuzzed anywhere; `rendezvous` is its client.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::pairing::RoomId;

/// Most frames held out of order from the other side.
pub const MAX_HELD: usize = 64;

/// The server's message was not its protocol, or the other side holds too many frames
/// out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rendezvous mailbox broke its protocol")]
pub struct MailboxFault;

/// What the other side sent, in order, and what else the server said that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next frame payload from the other side.
    Frame(Vec<u8>),
    /// The other side is in the mailbox (its first message arrived).
    PeerArrived,
    /// The host's room id (phase `room`), which the guest's handshake names.
    Room(RoomId),
}

/// The phase of the host's one message that is not a frame: its room id.
pub const ROOM_PHASE: &str = "room";

/// The sans-IO half of a mailbox: our side, and the other side's messages put back in
/// phase order, each once, our own echoes dropped.
#[derive(Debug)]
pub struct Inbox {
    side: String,
    peer: Option<String>,
    next: u64,
    held: BTreeMap<u64, Vec<u8>>,
    sent: u64,
    room_seen: bool,
}

impl Inbox {
    /// A fresh side (random, 10 hex digits).
    pub fn new() -> Inbox {
        let side: [u8; 5] = rand::random();
        Inbox::with_side(side.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// An inbox for `side` (tests and vectors).
    pub fn with_side(side: String) -> Inbox {
        Inbox {
            side,
            peer: None,
            next: 0,
            held: BTreeMap::new(),
            sent: 0,
            room_seen: false,
        }
    }

    /// Our side.
    pub fn side(&self) -> &str {
        &self.side
    }

    /// Frames held out of order now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The phase of the other side's next frame (how many came in order so far).
    pub fn next_phase(&self) -> u64 {
        self.next
    }

    /// The `add` command for our next frame payload.
    pub fn add(&mut self, payload: &[u8]) -> Value {
        let phase = self.sent;
        self.sent += 1;
        json!({"type": "add", "phase": phase.to_string(), "body": hex(payload)})
    }

    /// A `message` from the server: what it delivers, in order. Our echoes, repeats,
    /// a third side's messages and phases that are not ours are dropped; too many held
    /// out of order is a protocol error.
    pub fn on_message(&mut self, msg: &Value) -> Result<Vec<Delivery>, MailboxFault> {
        let (Some(side), Some(phase), Some(body)) = (
            msg["side"].as_str(),
            msg["phase"].as_str(),
            msg["body"].as_str(),
        ) else {
            return Err(MailboxFault);
        };
        if side == self.side {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match &self.peer {
            Some(peer) if peer != side => return Ok(Vec::new()),
            Some(_) => {}
            None => {
                self.peer = Some(side.to_string());
                out.push(Delivery::PeerArrived);
            }
        }
        if phase == ROOM_PHASE && !self.room_seen {
            self.room_seen = true;
            let room = unhex(body).map(|b| hex(&b)).and_then(|h| RoomId::parse(&h));
            out.push(Delivery::Room(room.ok_or(MailboxFault)?));
            return Ok(out);
        }
        let Some(phase) = phase.parse::<u64>().ok().filter(|p| p.to_string() == phase) else {
            return Ok(out);
        };
        if phase < self.next || self.held.contains_key(&phase) {
            return Ok(out);
        }
        let body = unhex(body).ok_or(MailboxFault)?;
        if self.held.len() >= MAX_HELD {
            return Err(MailboxFault);
        }
        self.held.insert(phase, body);
        while let Some(body) = self.held.remove(&self.next) {
            out.push(Delivery::Frame(body));
            self.next += 1;
        }
        Ok(out)
    }
}

impl Default for Inbox {
    fn default() -> Inbox {
        Inbox::new()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(side: &str, phase: &str, body: &[u8]) -> Value {
        json!({"type": "message", "side": side, "phase": phase, "body": hex(body), "id": "x"})
    }

    #[test]
    fn the_other_sides_frames_come_in_order_once_and_our_echoes_never() {
        let mut inbox = Inbox::with_side("aaaa".into());
        let add = inbox.add(b"first");
        assert_eq!(add["phase"], "0");
        assert_eq!(add["body"], "6669727374");
        // Our echo, then the peer's phase 1 before 0, then 0, then a repeat of 1.
        assert!(inbox
            .on_message(&msg("aaaa", "0", b"first"))
            .unwrap()
            .is_empty());
        assert_eq!(
            inbox.on_message(&msg("bbbb", "1", b"two")).unwrap(),
            vec![Delivery::PeerArrived]
        );
        assert_eq!(
            inbox.on_message(&msg("bbbb", "0", b"one")).unwrap(),
            vec![
                Delivery::Frame(b"one".to_vec()),
                Delivery::Frame(b"two".to_vec())
            ]
        );
        assert!(inbox
            .on_message(&msg("bbbb", "1", b"two"))
            .unwrap()
            .is_empty());
        // A third side and phases that are not ours are ignored.
        assert!(inbox
            .on_message(&msg("cccc", "2", b"x"))
            .unwrap()
            .is_empty());
        assert!(inbox
            .on_message(&msg("bbbb", "pake", b"x"))
            .unwrap()
            .is_empty());
        assert!(inbox
            .on_message(&msg("bbbb", "02", b"x"))
            .unwrap()
            .is_empty());
        assert_eq!(
            inbox.on_message(&msg("bbbb", "2", b"three")).unwrap(),
            vec![Delivery::Frame(b"three".to_vec())]
        );
    }

    #[test]
    fn the_guest_learns_the_room_from_the_hosts_announcement() {
        let mut inbox = Inbox::with_side("bbbb".into());
        let announce = json!({"type": "message", "side": "aaaa", "phase": ROOM_PHASE,
            "body": "0f1e2d3c4b5a6978"});
        assert_eq!(
            inbox.on_message(&announce).unwrap(),
            vec![
                Delivery::PeerArrived,
                Delivery::Room(RoomId::parse("0f1e2d3c4b5a6978").unwrap())
            ]
        );
        // Once only; a bad room id is a protocol error.
        assert!(inbox.on_message(&announce).unwrap().is_empty());
        let mut inbox = Inbox::with_side("bbbb".into());
        let bad = json!({"type": "message", "side": "aaaa", "phase": ROOM_PHASE, "body": "00"});
        assert!(inbox.on_message(&bad).is_err());
    }

    #[test]
    fn bad_server_messages_are_errors_and_holding_is_bounded() {
        let mut inbox = Inbox::with_side("aaaa".into());
        assert!(inbox.on_message(&json!({"type": "message"})).is_err());
        assert!(inbox.on_message(&msg("bbbb", "0", b"")).is_ok());
        let odd = json!({"type": "message", "side": "bbbb", "phase": "1", "body": "abc"});
        assert!(inbox.on_message(&odd).is_err());
        for p in 2..2 + MAX_HELD as u64 {
            assert!(inbox.on_message(&msg("bbbb", &p.to_string(), b"x")).is_ok());
        }
        let p = (2 + MAX_HELD).to_string();
        assert!(inbox.on_message(&msg("bbbb", &p, b"x")).is_err());
    }
}
