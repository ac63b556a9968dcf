//! What the sealed frames of a session mean: the pairing core seals opaque bytes, and
//! these are the messages signaling puts in them (PROTOCOL.md, "inner messages").

use serde::{Deserialize, Serialize};

/// A message inside the sealed channel, as JSON: `{"t":"offer","sdp":…}`,
/// `{"t":"answer","sdp":…}` or `{"t":"bye"}`; over a rendezvous mailbox also
/// `{"t":"candidate","candidate":…,"mid":…}` and `{"t":"end-of-candidates"}` (trickle
/// ICE: the SDP goes at once, the candidates follow as they are found). LAN and
/// Bluetooth sessions never carry the last two: their peers expect complete SDP.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase", deny_unknown_fields)]
pub enum Inner {
    /// Guest's SDP offer.
    Offer {
        /// Complete SDP.
        sdp: String,
    },
    /// Host's SDP answer.
    Answer {
        /// Complete SDP.
        sdp: String,
    },
    /// The call ends.
    Bye,
    /// One more ICE candidate of the sender's (trickle ICE).
    Candidate {
        /// The candidate attribute (`candidate:…`, RFC 8839).
        candidate: String,
        /// The media section it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<String>,
    },
    /// The sender found all its candidates.
    #[serde(rename = "end-of-candidates")]
    EndOfCandidates,
}

/// A sealed payload that is not one of the [`Inner`] messages.
#[derive(Debug, thiserror::Error)]
#[error("sealed message is not a valid inner message")]
pub struct NotInner(#[source] serde_json::Error);

impl Inner {
    /// The JSON bytes to seal.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing an enum of strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an opened payload.
    pub fn decode(payload: &[u8]) -> Result<Inner, NotInner> {
        serde_json::from_slice(payload).map_err(NotInner)
    }
}

impl std::fmt::Debug for Inner {
    // SDP carries addresses and fingerprints: not for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inner::Offer { sdp } => write!(f, "Offer({} bytes)", sdp.len()),
            Inner::Answer { sdp } => write!(f, "Answer({} bytes)", sdp.len()),
            Inner::Bye => f.write_str("Bye"),
            Inner::Candidate { .. } => f.write_str("Candidate"),
            Inner::EndOfCandidates => f.write_str("EndOfCandidates"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_messages_round_trip_as_the_protocol_writes_them() {
        let offer = Inner::Offer {
            sdp: "v=0\r\n".into(),
        };
        assert_eq!(Inner::decode(&offer.encode()).unwrap(), offer);
        assert_eq!(Inner::Bye.encode(), br#"{"t":"bye"}"#);
        assert!(Inner::decode(br#"{"t":"offer","sdp":"v=0","x":1}"#).is_err());
        assert!(Inner::decode(br#"{"t":"answer"}"#).is_err());
        assert!(Inner::decode(b"\xff").is_err());
        let cand = Inner::Candidate {
            candidate: "candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host".into(),
            mid: Some("0".into()),
        };
        assert_eq!(
            cand.encode(),
            br#"{"t":"candidate","candidate":"candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host","mid":"0"}"#
        );
        assert_eq!(Inner::decode(&cand.encode()).unwrap(), cand);
        assert_eq!(
            Inner::EndOfCandidates.encode(),
            br#"{"t":"end-of-candidates"}"#
        );
        assert!(Inner::decode(br#"{"t":"candidate"}"#).is_err());
    }

    #[test]
    fn inner_messages_are_not_printed() {
        let s = format!(
            "{:?}",
            Inner::Offer {
                sdp: "c=IN IP4 10.0.0.1".into()
            }
        );
        assert!(!s.contains("10.0.0.1"));
        let s = format!(
            "{:?}",
            Inner::Candidate {
                candidate: "candidate:1 1 udp 1 10.0.0.1 5 typ host".into(),
                mid: None
            }
        );
        assert!(!s.contains("10.0.0.1"));
    }
}
