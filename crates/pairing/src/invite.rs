//! The room invitation carried by the QR code:
//! `intercom:?v=1&room=…&tcp=…[&bt=…][&n=…&rv=…][&pin=…]`, or, when the box names a web
//! client, the same fields as a link's fragment, `https://…/#v=1&room=…`, which a
//! phone's camera opens (the fragment never reaches the web server).

use std::fmt;
use std::net::SocketAddr;

use zeroize::Zeroizing;

use super::pin::{Pin, RoomId};

/// What a guest needs to join a room, as the QR code carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The room.
    pub room: RoomId,
    /// The host's device name, if given.
    pub name: Option<String>,
    /// Addresses of the host's TCP signaling port.
    pub tcp: Vec<SocketAddr>,
    /// The host's Bluetooth address, if given.
    pub bt: Option<String>,
    /// The rendezvous nameplate of the room's online code (`n=`), with the server it is
    /// on (`rv=`): both or neither.
    pub online: Option<Online>,
    /// The PIN, unless the owner keeps it off the QR code.
    pub pin: Option<Pin>,
    /// The web client the invitation is a link into (`https://…`, no fragment); `None`:
    /// the `intercom:` form.
    pub web: Option<String>,
}

/// Where a room waits online: a nameplate on a rendezvous server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Online {
    /// The nameplate: 1–6 digits, the code's part before the PIN.
    pub nameplate: String,
    /// The rendezvous server's WebSocket URL (`ws://` or `wss://`).
    pub rendezvous: String,
}

/// True for a web client URL an invitation can link into: `https://`, a host, no
/// fragment, no spaces or control characters.
pub fn valid_web_client(url: &str) -> bool {
    url.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && !url.contains('#')
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// True for a nameplate a keypad can type: 1–6 digits.
pub fn valid_nameplate(text: &str) -> bool {
    (1..=6).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("room", &self.room)
            .field("name", &self.name)
            .field("tcp", &self.tcp.len())
            .field("online", &self.online)
            .field("pin", &self.pin.as_ref().map(|_| "****"))
            .field("web", &self.web)
            .finish()
    }
}

/// Why a URI is not an invitation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// Neither `intercom:?…` nor an `https://` link with the fields after `#`.
    #[error("not an intercom invitation (it must start with \"intercom:?\" or be an https:// link with #v=1…)")]
    Scheme,
    /// `v` is missing or not 1.
    #[error("unsupported invitation version (this box speaks v=1)")]
    Version,
    /// A field is missing or malformed.
    #[error("invitation field `{0}` is missing or malformed")]
    Field(&'static str),
}

impl Invite {
    /// The URI, fields in the order of the protocol: the web client's link when the
    /// invitation has one, else the `intercom:` form.
    pub fn to_uri(&self) -> Zeroizing<String> {
        let mut uri = match &self.web {
            Some(web) => format!("{web}#v=1&room={}", self.room.to_hex()),
            None => format!("intercom:?v=1&room={}", self.room.to_hex()),
        };
        if let Some(name) = &self.name {
            uri.push_str("&name=");
            uri.push_str(&percent_encode(name));
        }
        for addr in &self.tcp {
            uri.push_str(&format!("&tcp={addr}"));
        }
        if let Some(bt) = &self.bt {
            uri.push_str("&bt=");
            uri.push_str(bt);
        }
        if let Some(online) = &self.online {
            uri.push_str("&n=");
            uri.push_str(&online.nameplate);
            uri.push_str("&rv=");
            uri.push_str(&percent_encode(&online.rendezvous));
        }
        if let Some(pin) = &self.pin {
            uri.push_str("&pin=");
            uri.push_str(pin.as_str());
        }
        Zeroizing::new(uri)
    }

    /// Parses an invitation URI, either form; unknown parameters are ignored.
    pub fn parse(uri: &str) -> Result<Invite, InviteError> {
        let (web, query) = match uri.strip_prefix("intercom:?") {
            Some(query) => (None, query),
            None => {
                let (web, fragment) = uri.split_once('#').ok_or(InviteError::Scheme)?;
                if !valid_web_client(web) {
                    return Err(InviteError::Scheme);
                }
                (Some(web.to_string()), fragment)
            }
        };
        let mut version = None;
        let mut invite = Invite {
            room: RoomId::parse("0000000000000000").expect("valid literal"),
            name: None,
            tcp: Vec::new(),
            bt: None,
            online: None,
            pin: None,
            web,
        };
        let mut room = None;
        let (mut nameplate, mut rendezvous) = (None, None);
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "v" => version = Some(value),
                "room" => room = Some(RoomId::parse(value).ok_or(InviteError::Field("room"))?),
                "name" => {
                    invite.name = Some(percent_decode(value).ok_or(InviteError::Field("name"))?)
                }
                "tcp" => invite
                    .tcp
                    .push(value.parse().map_err(|_| InviteError::Field("tcp"))?),
                "bt" => invite.bt = Some(value.to_string()),
                "n" if valid_nameplate(value) => nameplate = Some(value.to_string()),
                "n" => return Err(InviteError::Field("n")),
                "rv" => {
                    let url = percent_decode(value).ok_or(InviteError::Field("rv"))?;
                    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                        return Err(InviteError::Field("rv"));
                    }
                    rendezvous = Some(url);
                }
                "pin" => invite.pin = Some(Pin::parse(value).ok_or(InviteError::Field("pin"))?),
                _ => {}
            }
        }
        if version != Some("1") {
            return Err(InviteError::Version);
        }
        invite.room = room.ok_or(InviteError::Field("room"))?;
        invite.online = match (nameplate, rendezvous) {
            (Some(nameplate), Some(rendezvous)) => Some(Online {
                nameplate,
                rendezvous,
            }),
            (None, None) => None,
            (None, Some(_)) => return Err(InviteError::Field("n")),
            (Some(_), None) => return Err(InviteError::Field("rv")),
        };
        Ok(invite)
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Invite {
        Invite {
            room: RoomId::parse("0f1e2d3c4b5a6978").unwrap(),
            name: Some("Front door & hall".into()),
            tcp: vec![
                "192.168.1.20:7300".parse().unwrap(),
                "[fe80::1]:7300".parse().unwrap(),
            ],
            bt: None,
            online: None,
            pin: Pin::parse("4821"),
            web: None,
        }
    }

    #[test]
    fn a_link_into_the_web_client_carries_the_same_fields_after_the_hash() {
        let mut invite = sample();
        invite.web = Some("https://intercom.example.org/app/".into());
        let link = invite.to_uri();
        assert!(
            link.starts_with("https://intercom.example.org/app/#v=1&room=0f1e2d3c4b5a6978&name="),
            "{}",
            link.as_str()
        );
        assert_eq!(Invite::parse(&link).unwrap(), invite);
        // The same room in the old form still reads, without the link.
        let mut plain = invite.clone();
        plain.web = None;
        assert_eq!(Invite::parse(&plain.to_uri()).unwrap(), plain);
        for bad in [
            "http://intercom.example.org/#v=1&room=0f1e2d3c4b5a6978",
            "https:///#v=1&room=0f1e2d3c4b5a6978",
            "https://intercom.example.org/",
            "https://a b/#v=1&room=0f1e2d3c4b5a6978",
        ] {
            assert_eq!(Invite::parse(bad), Err(InviteError::Scheme), "{bad}");
        }
    }

    #[test]
    fn an_online_code_travels_as_nameplate_and_rendezvous() {
        let mut invite = sample();
        invite.online = Some(Online {
            nameplate: "17".into(),
            rendezvous: "wss://rv.example.org:4000/v1".into(),
        });
        let uri = invite.to_uri();
        assert!(
            uri.ends_with("&n=17&rv=wss%3A%2F%2Frv.example.org%3A4000%2Fv1&pin=4821"),
            "{}",
            uri.as_str()
        );
        assert_eq!(Invite::parse(&uri).unwrap(), invite);
        let base = "intercom:?v=1&room=0f1e2d3c4b5a6978";
        for (bad, field) in [
            ("&n=17", "rv"),
            ("&rv=ws%3A%2F%2Fx", "n"),
            ("&n=1234567&rv=ws%3A%2F%2Fx", "n"),
            ("&n=1a&rv=ws%3A%2F%2Fx", "n"),
            ("&n=17&rv=http%3A%2F%2Fx", "rv"),
        ] {
            assert_eq!(
                Invite::parse(&format!("{base}{bad}")),
                Err(InviteError::Field(field)),
                "{bad}"
            );
        }
    }

    #[test]
    fn uri_matches_the_protocol_form() {
        assert_eq!(
            sample().to_uri().as_str(),
            "intercom:?v=1&room=0f1e2d3c4b5a6978&name=Front%20door%20%26%20hall\
             &tcp=192.168.1.20:7300&tcp=[fe80::1]:7300&pin=4821"
        );
    }

    #[test]
    fn uri_round_trips_and_ignores_unknown_fields() {
        let invite = sample();
        assert_eq!(Invite::parse(&invite.to_uri()).unwrap(), invite);
        let with_extra = format!("{}&future=yes", invite.to_uri().as_str());
        assert_eq!(Invite::parse(&with_extra).unwrap(), invite);
    }

    #[test]
    fn bad_uris_are_named_errors() {
        assert_eq!(Invite::parse("http://x").unwrap_err(), InviteError::Scheme);
        assert_eq!(
            Invite::parse("intercom:?v=2&room=0f1e2d3c4b5a6978").unwrap_err(),
            InviteError::Version
        );
        assert_eq!(
            Invite::parse("intercom:?v=1&room=zz").unwrap_err(),
            InviteError::Field("room")
        );
        assert_eq!(
            Invite::parse("intercom:?v=1&room=0f1e2d3c4b5a6978&pin=12").unwrap_err(),
            InviteError::Field("pin")
        );
        assert!(!format!("{:?}", sample()).contains("4821"));
    }

    proptest! {
        #[test]
        fn names_round_trip(name in "\\PC{1,32}") {
            let mut invite = sample();
            invite.name = Some(name);
            prop_assert_eq!(Invite::parse(&invite.to_uri()).unwrap(), invite);
        }

        #[test]
        fn parse_never_panics(uri in "intercom:\\?[ -~]{0,120}") {
            let _ = Invite::parse(&uri);
        }
    }
}
