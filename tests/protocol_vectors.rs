//! Conformance with the protocol's test vectors (tests/data/protocol-vectors.json).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercom::pairing::keys::{confirm_mac, transcript, KeySchedule, SealDirection, Secret};
use intercom::pairing::{Message, RoomId};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/protocol-vectors.json")).unwrap()
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

fn schedule(v: &Value) -> KeySchedule {
    let room = RoomId::parse(v["room"].as_str().unwrap()).unwrap();
    let t = transcript(room, &b64(&v["host_pake_msg"]), &b64(&v["guest_pake_msg"]));
    assert_eq!(t.to_vec(), b64(&v["T"]), "transcript T");
    KeySchedule::derive(&b64(&v["K"]), &t)
}

#[test]
fn identity_matches() {
    let v = vectors();
    let room = RoomId::parse(v["room"].as_str().unwrap()).unwrap();
    assert_eq!(
        intercom::pairing::handshake::identity(room),
        v["identity"].as_str().unwrap().as_bytes()
    );
}

#[test]
fn key_schedule_matches() {
    let v = vectors();
    let keys = schedule(&v);
    for (label, key) in [
        ("confirm guest", &keys.confirm_guest),
        ("confirm host", &keys.confirm_host),
        ("seal guest->host", &keys.seal_guest_to_host),
        ("seal host->guest", &keys.seal_host_to_guest),
    ] {
        assert_eq!(key.expose().to_vec(), b64(&v["keys"][label]), "{label}");
    }
}

#[test]
fn confirm_macs_match() {
    let v = vectors();
    let keys = schedule(&v);
    assert_eq!(
        confirm_mac(&keys.confirm_guest).to_vec(),
        b64(&v["guest_confirm_mac"])
    );
    assert_eq!(
        confirm_mac(&keys.confirm_host).to_vec(),
        b64(&v["host_confirm_mac"])
    );
}

#[test]
fn sealed_frame_matches_and_opens() {
    let v = vectors();
    let keys = schedule(&v);
    let ex = &v["sealed_example"];
    assert_eq!(ex["direction"], "guest->host");
    let inner = ex["inner"].as_str().unwrap();
    let mut sealer = SealDirection::new(keys.seal_guest_to_host.clone());
    let frame = sealer.seal(inner.as_bytes()).unwrap();
    let Message::Sealed { seq, ct } = &frame else {
        panic!("not sealed")
    };
    assert_eq!(*seq, ex["frame"]["seq"].as_u64().unwrap());
    assert_eq!(ct.clone(), b64(&ex["frame"]["ct"]));
    // The frame as JSON parses back to the same message.
    let json = serde_json::to_vec(&ex["frame"]).unwrap();
    assert_eq!(Message::parse(&json).unwrap(), frame);
    let mut opener = SealDirection::new(keys.seal_guest_to_host.clone());
    assert_eq!(opener.open(&frame).unwrap(), inner.as_bytes());
    // And the inner JSON is what our channel would produce for this offer.
    let ours = serde_json::to_string(&intercom::signaling::Inner::Offer {
        sdp: "v=0\r\n".into(),
    })
    .unwrap();
    assert_eq!(ours, inner);
    let _: &Secret = &keys.seal_host_to_guest;
}
