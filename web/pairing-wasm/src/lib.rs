//! The pairing core for the browser: the guest's side of the handshake, the sealed
//! channel and the QR invitation parser, exported with wasm-bindgen. The code is the
//! box's own security core, the `intercom-pairing` crate, as an ordinary dependency.
//! The sealed channel carries opaque bytes; the inner messages in them (offer, answer,
//! bye: PROTOCOL.md) are this page's signaling, written and checked here.

use intercom_pairing::{
    Binding, GuestHandshake, GuestStep, Invite, JoinError, Message, Pin, RoomId, SecureChannel,
};
use serde_json::json;
use wasm_bindgen::prelude::*;

/// The guest's pairing with one room: the handshake, then the sealed channel.
#[wasm_bindgen]
pub struct Pairing {
    handshake: Option<GuestHandshake>,
    first: Option<String>,
    channel: Option<SecureChannel>,
}

fn text(message: &Message) -> String {
    String::from_utf8(message.to_json()).expect("frames are JSON text")
}

#[wasm_bindgen]
impl Pairing {
    /// Starts the handshake for room `room` (16 hex characters) with a 4-digit `pin`, on
    /// the spot (WebSocket or Bluetooth: PROTOCOL v1).
    #[wasm_bindgen(constructor)]
    pub fn new(room: &str, pin: &str) -> Result<Pairing, JsError> {
        Self::start(room, pin, &Binding::Lan)
    }

    /// Starts the handshake through a rendezvous mailbox (its id, as the server named
    /// it): the keys are bound to that mailbox (docs/protocol.md, the rendezvous
    /// transport).
    #[wasm_bindgen(js_name = inMailbox)]
    pub fn in_mailbox(room: &str, pin: &str, mailbox: &str) -> Result<Pairing, JsError> {
        if mailbox.is_empty() || mailbox.len() > 128 {
            return Err(JsError::new("the mailbox id is empty or too long"));
        }
        Self::start(room, pin, &Binding::Mailbox(mailbox.to_string()))
    }

    fn start(room: &str, pin: &str, binding: &Binding) -> Result<Pairing, JsError> {
        let room =
            RoomId::parse(room).ok_or_else(|| JsError::new("the room id is not 16 hex digits"))?;
        let pin = Pin::parse(pin).ok_or_else(|| JsError::new("the PIN is not 4 digits"))?;
        let (handshake, first) = GuestHandshake::start_in(room, &pin, binding);
        Ok(Pairing {
            handshake: Some(handshake),
            first: Some(text(&first)),
            channel: None,
        })
    }

    /// The first frame's payload to send (once).
    #[wasm_bindgen(js_name = firstMessage)]
    pub fn first_message(&mut self) -> Option<String> {
        self.first.take()
    }

    /// Handles a frame payload from the box during the handshake. Returns JSON:
    /// `{"send": "<payload>"}`, `{"joined": true}`, or
    /// `{"error": "<code>", "message": "…", "tries_left": n|null}`.
    pub fn receive(&mut self, payload: &str) -> String {
        let Some(handshake) = self.handshake.as_mut() else {
            return json!({"error": "protocol", "message": "the handshake is over"}).to_string();
        };
        let step = Message::parse(payload.as_bytes())
            .map_err(JoinError::Frame)
            .and_then(|m| handshake.on_message(m));
        match step {
            Ok(GuestStep::Send(m)) => json!({"send": text(&m)}).to_string(),
            Ok(GuestStep::Joined(channel)) => {
                self.handshake = None;
                self.channel = Some(channel);
                json!({"joined": true}).to_string()
            }
            Err(e) => {
                self.handshake = None;
                let (code, tries_left) = match &e {
                    JoinError::BadPin { tries_left } => ("bad-pin", *tries_left),
                    JoinError::Locked => ("locked", Some(0)),
                    JoinError::NoRoom => ("no-room", None),
                    JoinError::Busy => ("room-busy", None),
                    JoinError::Version => ("version", None),
                    JoinError::Protocol(_) | JoinError::Frame(_) => ("protocol", None),
                };
                json!({"error": code, "message": e.to_string(), "tries_left": tries_left})
                    .to_string()
            }
        }
    }

    /// Seals the SDP offer; returns the frame payload.
    #[wasm_bindgen(js_name = sealOffer)]
    pub fn seal_offer(&mut self, sdp: &str) -> Result<String, JsError> {
        self.seal(json!({"t": "offer", "sdp": sdp}).to_string().as_bytes())
    }

    /// Seals a trickled ICE candidate (RFC 8839's attribute value, `candidate:…`) for the
    /// media section `mid` (empty: the first); returns the frame payload.
    #[wasm_bindgen(js_name = sealCandidate)]
    pub fn seal_candidate(&mut self, candidate: &str, mid: &str) -> Result<String, JsError> {
        let mut inner = json!({"t": "candidate", "candidate": candidate});
        if !mid.is_empty() {
            inner["mid"] = json!(mid);
        }
        self.seal(inner.to_string().as_bytes())
    }

    /// Seals the end of the candidates; returns the frame payload.
    #[wasm_bindgen(js_name = sealEndOfCandidates)]
    pub fn seal_end_of_candidates(&mut self) -> Result<String, JsError> {
        self.seal(json!({"t": "end-of-candidates"}).to_string().as_bytes())
    }

    /// Seals `bye`; returns the frame payload.
    #[wasm_bindgen(js_name = sealBye)]
    pub fn seal_bye(&mut self) -> Result<String, JsError> {
        self.seal(json!({"t": "bye"}).to_string().as_bytes())
    }

    fn seal(&mut self, inner: &[u8]) -> Result<String, JsError> {
        let channel = self
            .channel
            .as_mut()
            .ok_or_else(|| JsError::new("not paired yet"))?;
        let frame = channel
            .seal(inner)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(text(&frame))
    }

    /// Opens a sealed frame payload from the box: `{"t":"answer","sdp":…}`,
    /// `{"t":"bye"}`, and through a mailbox `{"t":"candidate","candidate":…,"mid"?}` and
    /// `{"t":"end-of-candidates"}`. An error frame, a bad tag or a sequence gap is an
    /// error.
    pub fn open(&mut self, payload: &str) -> Result<String, JsError> {
        let channel = self
            .channel
            .as_mut()
            .ok_or_else(|| JsError::new("not paired yet"))?;
        let frame = Message::parse(payload.as_bytes()).map_err(|e| JsError::new(&e.to_string()))?;
        let payload = channel
            .open(&frame)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let inner: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&payload)
            .map_err(|_| JsError::new("sealed message is not a valid inner message"))?;
        // The protocol's three messages, read as the box reads them: an offer or answer
        // is its SDP and nothing else; a bye is a bye.
        let sdp = inner.get("sdp").and_then(|v| v.as_str());
        let candidate = inner.get("candidate").and_then(|v| v.as_str());
        let mid_ok = inner.get("mid").is_none_or(|v| v.is_string());
        let valid = match inner.get("t").and_then(|v| v.as_str()) {
            Some("answer" | "offer") => sdp.is_some() && inner.len() == 2,
            Some("candidate") => {
                candidate.is_some_and(|c| c.starts_with("candidate:")) && mid_ok && inner.len() <= 3
            }
            Some("bye" | "end-of-candidates") => true,
            _ => false,
        };
        if !valid {
            return Err(JsError::new("sealed message is not a valid inner message"));
        }
        Ok(serde_json::Value::Object(inner).to_string())
    }
}

/// Parses an invitation (the box's QR code): `intercom:?v=1&room=…`, or a link into this
/// web client with the same fields after `#`. Returns JSON `{"room", "name", "tcp":
/// ["ip:port"…], "bt", "pin", "nameplate", "rendezvous"}`.
#[wasm_bindgen(js_name = parseInvite)]
pub fn parse_invite(uri: &str) -> Result<String, JsError> {
    let invite = Invite::parse(uri).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(json!({
        "room": invite.room.to_hex(),
        "name": invite.name,
        "tcp": invite.tcp.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "bt": invite.bt,
        "pin": invite.pin.as_ref().map(|p| p.as_str().to_string()),
        "nameplate": invite.online.as_ref().map(|o| o.nameplate.clone()),
        "rendezvous": invite.online.as_ref().map(|o| o.rendezvous.clone()),
    })
    .to_string())
}
