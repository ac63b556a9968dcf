//! The `webrtc` crate behind a small surface: build a peer connection for one call, with
//! one Opus track and the `chat` channel; exchange SDP, complete (LAN) or trickled
//! (online); report the path media took. Nothing outside `call/` names a `webrtc` type.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    configure_rtcp_reports, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, RTCStatsReportEntry, Registry, SettingEngineBuilder, StatsSelector,
};

use super::pacing::{PacedRuntime, ReceivePacing};
use super::remote_loss::{RemoteLoss, ReportReader};
use super::{media, CallError};
use intercom_media::stamps::ReceiveStamps;

/// What the peer connection reports.
pub(super) enum PeerEvent {
    /// ICE gathering finished: the local description is complete.
    GatheringComplete,
    /// Connection state changed.
    State(RTCPeerConnectionState),
    /// The other side opened a data channel.
    DataChannel(Arc<dyn DataChannel>),
    /// The other side's audio track.
    Track(Arc<dyn TrackRemote>),
    /// One of our candidates, found after the SDP went out (trickle ICE).
    LocalCandidate(String),
}

struct Handler {
    tx: mpsc::UnboundedSender<PeerEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.tx.send(PeerEvent::GatheringComplete);
        }
    }

    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.tx.send(PeerEvent::LocalCandidate(init.candidate));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.send(PeerEvent::State(state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.tx.send(PeerEvent::DataChannel(channel));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PeerEvent::Track(track));
    }
}

/// Where and how the call's media may flow.
#[derive(Debug, Clone)]
pub struct NetworkSetup {
    /// Local addresses to bind UDP on (host candidates).
    pub addrs: Vec<SocketAddr>,
    /// STUN servers for server-reflexive candidates (none: LAN only).
    pub stun_servers: Vec<String>,
    /// TURN servers that may relay the call's media when no direct path exists (none by
    /// default: media never goes through a server).
    pub turn_servers: Vec<TurnServer>,
}

/// A TURN server and the credentials it takes.
#[derive(Clone)]
pub struct TurnServer {
    /// `turn:host:port?transport=udp` URLs of one server.
    pub urls: Vec<String>,
    /// The user name.
    pub username: String,
    /// The password.
    pub credential: String,
}

impl std::fmt::Debug for TurnServer {
    // The credential is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// The kind of path the call's media took: the type of our candidate in the selected
/// pair (RFC 8445).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Straight between the two boxes' own addresses (one LAN).
    Host,
    /// Through NATs, on the public address STUN showed.
    ServerReflexive,
    /// Through NATs, on an address the other box's checks revealed.
    PeerReflexive,
    /// Relayed by a TURN server.
    Relay,
}

/// The path the call's media took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPath {
    /// Its kind.
    pub kind: PathKind,
    /// Whether it runs over IPv6.
    pub ipv6: bool,
}

impl MediaPath {
    /// A short machine-readable name: `host`, `srflx`, `prflx` or `relay`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            PathKind::Host => "host",
            PathKind::ServerReflexive => "srflx",
            PathKind::PeerReflexive => "prflx",
            PathKind::Relay => "relay",
        }
    }
}

/// A peer connection with its audio sender.
pub(super) struct Peer {
    /// The connection.
    pub pc: Arc<dyn PeerConnection>,
    /// Events from it.
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    /// Our outgoing audio.
    pub track: Arc<TrackLocalStaticRTP>,
    /// Its SSRC.
    pub ssrc: u32,
    /// What the other side's RTCP reports say of our audio.
    remote_loss: Arc<RemoteLoss>,
}

/// The payload type `sdp` maps to `encoding` (`a=rtpmap:N <encoding>`), if any.
fn payload_type_of(sdp: &str, encoding: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let (pt, name) = l.trim_end().strip_prefix("a=rtpmap:")?.split_once(' ')?;
        if name.eq_ignore_ascii_case(encoding) {
            pt.parse().ok()
        } else {
            None
        }
    })
}

/// RED's payload type in `sdp`, if it is there.
fn red_payload_type(sdp: &str) -> Option<u8> {
    payload_type_of(sdp, "red/48000/2")
}

/// The answer as sent: RED first ([`red_first`]) and Opus asked for at
/// [`OPUS_ASKED_BITRATE`] ([`ask_bitrate`]). Only the text sent changes; the stack keeps
/// the description it made.
fn as_sent(sdp: &str) -> String {
    ask_bitrate(&red_first(sdp), OPUS_ASKED_BITRATE)
}

/// The Opus bitrate the box asks a sender for (`maxaveragebitrate`, RFC 7587: what the
/// receiver takes at most, which Chromium uses as its bitrate; its own default is 32
/// kbit/s, and under loss its FEC takes part of that).
const OPUS_ASKED_BITRATE: u32 = 64_000;

/// `sdp` with `maxaveragebitrate=bits` added to Opus's `a=fmtp` line, unless one is
/// there.
fn ask_bitrate(sdp: &str, bits: u32) -> String {
    let Some(opus) = payload_type_of(sdp, "opus/48000/2") else {
        return sdp.to_owned();
    };
    let prefix = format!("a=fmtp:{opus} ");
    rewrite_lines(sdp, |line| {
        (line.starts_with(&prefix) && !line.contains("maxaveragebitrate="))
            .then(|| format!("{line};maxaveragebitrate={bits}"))
    })
}

/// `sdp` with RED listed first in its audio section, when RED is there: a browser sends
/// with the first codec of the answer it gets, and RED (RFC 2198) carries each frame
/// again in the next packet (Chromium's own answers list it after Opus, so browsers
/// calling browsers do not use it).
fn red_first(sdp: &str) -> String {
    let Some(red) = red_payload_type(sdp).map(|pt| pt.to_string()) else {
        return sdp.to_owned();
    };
    rewrite_lines(sdp, |line| {
        let mut words: Vec<&str> = line.strip_prefix("m=audio ")?.split(' ').collect();
        // port, protocol, then the payload types.
        if let Some(i) = words.iter().skip(2).position(|w| *w == red) {
            let pt = words.remove(i + 2);
            words.insert(2, pt);
        }
        Some(format!("m=audio {}", words.join(" ")))
    })
}

/// `sdp` with the lines `f` rewrites (it gets and gives a line without its ending, which
/// is kept) replaced, the others as they were.
fn rewrite_lines(sdp: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(sdp.len() + 32);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        match f(body) {
            Some(new) => {
                out.push_str(&new);
                out.push_str(&line[body.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// RED's MIME type (RFC 2198; the stack names no constant for it).
const MIME_TYPE_RED: &str = "audio/red";

fn rtc_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> CallError {
    CallError::WebRtc(Box::new(e))
}

/// Builds a peer connection with a fresh DTLS certificate and our Opus track; its sockets
/// follow `pacing` and note RTP arrivals in `stamps`.
/// On the internet (`internet`) candidates trickle in over a round trip or two of a
/// distant rendezvous and a hole opens only once both sides have sent: each pair is
/// checked for longer.
pub(super) async fn build(
    net: &NetworkSetup,
    internet: bool,
    pacing: Arc<ReceivePacing>,
    stamps: Arc<ReceiveStamps>,
) -> Result<Peer, CallError> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(rtc_err)?;
    // RED around Opus (pt 111, the stack's), which a browser sends when the answer
    // lists it first: each packet carries the frame before it too. The box never sends
    // it.
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_RED.to_owned(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "111/111".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 63,
            },
            RtpCodecKind::Audio,
        )
        .map_err(rtc_err)?;
    let remote_loss = RemoteLoss::new();
    // Sender and receiver reports only. The stack's defaults add NACK (the receive
    // loop asks for lost audio itself, from the jitter buffer's view: media::receive)
    // and TWCC (feedback for a bandwidth estimator; the voice bitrate here is set from
    // loss, not estimated), both run on every packet.
    let registry = configure_rtcp_reports(Registry::new())
        // Next to the wire, so it reads every report before anything else acts on it.
        .with(
            rtc::interceptor::Slot::Custom(500),
            ReportReader::new(Arc::clone(&remote_loss)),
        );
    let loopback = net.addrs.iter().any(|a| a.ip().is_loopback());
    // On a LAN: a check every 25 ms instead of 200 ms connects in a few round trips; 40
    // checks give a pair 1 s. On the internet: every 50 ms for 4 s, enough for a pair
    // whose other half arrives late or whose hole opens a few hundred ms after the first
    // check, and still short enough that a call with no path ends well within 15 s.
    let (check_every, checks) = if internet {
        (Duration::from_millis(50), 80)
    } else {
        (Duration::from_millis(25), 40)
    };
    let settings = SettingEngineBuilder::new()
        .with_ice_connection_attempts(Some(check_every), Some(checks))
        // A working pair through NATs is taken after 100 ms (not the stack's 500 ms and,
        // for an address learnt from the checks, 1 s): a host pair, the better one when
        // both boxes share a LAN, answers within a few ms if it exists at all. A relay
        // keeps the stack's 2 s, so a direct path found meanwhile wins.
        .with_srflx_acceptance_min_wait(Some(Duration::from_millis(100)))
        .with_prflx_acceptance_min_wait(Some(Duration::from_millis(100)))
        // Consent lost for 4 s: disconnected; 8 s: failed, and the call ends.
        .with_ice_timeouts(
            Some(Duration::from_secs(4)),
            Some(Duration::from_secs(8)),
            Some(Duration::from_secs(1)),
        )
        .with_include_loopback_candidate(loopback)
        // Candidates carry plain addresses on the LAN; no mDNS socket per call.
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut servers = Vec::new();
    if !net.stun_servers.is_empty() {
        servers.push(RTCIceServer {
            urls: net.stun_servers.clone(),
            ..Default::default()
        });
    }
    servers.extend(net.turn_servers.iter().map(|t| RTCIceServer {
        urls: t.urls.clone(),
        username: t.username.clone(),
        credential: t.credential.clone(),
    }));
    let mut config = RTCConfigurationBuilder::new();
    if !servers.is_empty() {
        config = config.with_ice_servers(servers);
    }
    let (tx, events) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_runtime(Arc::new(PacedRuntime::new(pacing, stamps)))
        .with_configuration(config.build())
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { tx }))
        .with_udp_addrs(
            net.addrs
                .iter()
                .map(|a| SocketAddr::new(a.ip(), 0))
                .collect(),
        )
        .build()
        .await
        .map_err(rtc_err)?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let ssrc: u32 = rand::random();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "intercom".to_owned(),
        "voice".to_owned(),
        "voice".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )));
    pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .map_err(rtc_err)?;
    Ok(Peer {
        pc,
        events,
        track,
        ssrc,
        remote_loss,
    })
}

impl Peer {
    /// Waits for ICE gathering; returns the complete local SDP. Other events that
    /// arrive meanwhile are kept for later.
    async fn complete_local_sdp(
        &mut self,
        early: &mut Vec<PeerEvent>,
    ) -> Result<String, CallError> {
        let wait = async {
            while let Some(ev) = self.events.recv().await {
                match ev {
                    PeerEvent::GatheringComplete => return Ok(()),
                    other => early.push(other),
                }
            }
            Err(CallError::Setup(
                "the peer connection closed while gathering",
            ))
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .map_err(|_| CallError::Setup("ICE gathering took over 5 s"))??;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or(CallError::Setup("no local description"))
    }

    /// The local SDP: complete (after gathering), or at once when the candidates will
    /// trickle after it.
    async fn local_sdp(
        &mut self,
        trickle: bool,
        early: &mut Vec<PeerEvent>,
    ) -> Result<String, CallError> {
        if !trickle {
            return self.complete_local_sdp(early).await;
        }
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or(CallError::Setup("no local description"))
    }

    /// Guest: the `chat` channel, then the offer (complete unless `trickle`).
    pub(super) async fn offer(
        &mut self,
        trickle: bool,
        early: &mut Vec<PeerEvent>,
    ) -> Result<(Arc<dyn DataChannel>, String), CallError> {
        let chat = self
            .pc
            .create_data_channel("chat", None)
            .await
            .map_err(rtc_err)?;
        let offer = self.pc.create_offer(None).await.map_err(rtc_err)?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(rtc_err)?;
        Ok((chat, self.local_sdp(trickle, early).await?))
    }

    /// Guest: the host's answer.
    pub(super) async fn accept_answer(&self, sdp: String) -> Result<(), CallError> {
        let answer = RTCSessionDescription::answer(sdp).map_err(rtc_err)?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(rtc_err)
    }

    /// Host: the guest's offer in, the answer out (complete unless `trickle`).
    pub(super) async fn answer(
        &mut self,
        offer_sdp: String,
        trickle: bool,
        early: &mut Vec<PeerEvent>,
    ) -> Result<String, CallError> {
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(rtc_err)?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(rtc_err)?;
        let answer = self.pc.create_answer(None).await.map_err(rtc_err)?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(rtc_err)?;
        Ok(as_sent(&self.local_sdp(trickle, early).await?))
    }

    /// One of the other side's candidates, trickled after its SDP.
    pub(super) async fn add_remote_candidate(&self, candidate: String) -> Result<(), CallError> {
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate,
                sdp_mline_index: Some(0),
                ..Default::default()
            })
            .await
            .map_err(rtc_err)
    }

    /// The path media took, from the selected pair's two candidates: relayed when
    /// either is a relay's, host when both are, peer-reflexive when the other side's
    /// address was learnt from its checks (the stack does not list those), else
    /// server-reflexive. `None` before ICE chose a pair.
    pub(super) async fn path(&self) -> Option<MediaPath> {
        let report = self
            .pc
            .get_stats(std::time::Instant::now(), StatsSelector::None)
            .await;
        let pair_id = &report.transport()?.selected_candidate_pair_id;
        let pair = report.candidate_pairs().find(|p| &p.stats.id == pair_id)?;
        let local = match report.get(&format!("RTCLocalIceCandidate_{}", pair.local_candidate_id)) {
            Some(RTCStatsReportEntry::LocalCandidate(c)) => Some(c),
            _ => None,
        };
        let remote = match report.get(&format!(
            "RTCRemoteIceCandidate_{}",
            pair.remote_candidate_id
        )) {
            Some(RTCStatsReportEntry::RemoteCandidate(c)) => Some(c),
            _ => None,
        };
        let typ = |c: Option<&&rtc::statistics::stats::ice_candidate::RTCIceCandidateStats>| {
            c.map_or(RTCIceCandidateType::Prflx, |c| c.candidate_type)
        };
        let (ours, theirs) = (typ(local.as_ref()), typ(remote.as_ref()));
        let kind = match (ours, theirs) {
            (RTCIceCandidateType::Relay, _) | (_, RTCIceCandidateType::Relay) => PathKind::Relay,
            (RTCIceCandidateType::Host, RTCIceCandidateType::Host) => PathKind::Host,
            (_, RTCIceCandidateType::Prflx) | (RTCIceCandidateType::Prflx, _) => {
                PathKind::PeerReflexive
            }
            _ => PathKind::ServerReflexive,
        };
        let ipv6 = local
            .and_then(|c| c.address.as_deref())
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_ipv6());
        Some(MediaPath { kind, ipv6 })
    }

    /// The negotiated Opus payload type, whichever codec the answer lists first: the box
    /// sends plain Opus (its copies under loss are packets of their own; see
    /// docs/decisions/red-from-browsers.md).
    pub(super) async fn payload_type(&self) -> Result<u8, CallError> {
        for sender in self.pc.get_senders().await {
            let params = sender.get_parameters().await.map_err(rtc_err)?;
            if let Some(codec) = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
            {
                return Ok(codec.payload_type);
            }
        }
        Err(CallError::Setup("no negotiated audio codec"))
    }

    /// What the other side's audio packets may carry: Opus, and RED around it when
    /// this side offered or accepted it.
    pub(super) async fn incoming_formats(&self) -> Result<media::Formats, CallError> {
        let opus = self.payload_type().await?;
        let red = self
            .pc
            .local_description()
            .await
            .and_then(|d| red_payload_type(&d.sdp));
        Ok(media::Formats { opus, red })
    }

    /// The worst loss (0.0–1.0) the other side reported for our audio since the last
    /// call (RTCP reception reports); `None` when no report came.
    pub(super) fn remote_loss(&self) -> Option<f32> {
        self.remote_loss.take()
    }

    /// The packets of our audio the other side asked for a second time (it lost them)
    /// since the last call.
    pub(super) fn remote_missing(&self) -> Vec<u16> {
        self.remote_loss.take_missing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

    #[test]
    fn red_moves_to_the_front_of_the_audio_section_only() {
        let out = red_first(ANSWER);
        assert!(
            out.contains("\r\nm=audio 9 UDP/TLS/RTP/SAVPF 63 111 9 0 8\r\n"),
            "{out}"
        );
        // Everything else is as it was, line endings included.
        assert_eq!(out.replace("SAVPF 63 111 9", "SAVPF 111 63 9"), ANSWER);
        assert_eq!(red_payload_type(ANSWER), Some(63));
    }

    #[test]
    fn the_answer_asks_for_a_bitrate_once() {
        let out = as_sent(ANSWER);
        assert!(
            out.contains("\r\na=fmtp:111 minptime=10;useinbandfec=1;maxaveragebitrate=64000\r\n"),
            "{out}"
        );
        // RED's fmtp line and everything else stay as they were.
        assert!(out.contains("\r\na=fmtp:63 111/111\r\n"));
        assert_eq!(ask_bitrate(&out, 64_000), out);
        assert_eq!(out.len(), ANSWER.len() + ";maxaveragebitrate=64000".len());
    }

    #[test]
    fn an_answer_without_red_is_left_alone() {
        let plain = ANSWER
            .replace(" 63 9", " 9")
            .replace("a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n", "");
        assert_eq!(red_payload_type(&plain), None);
        assert_eq!(red_first(&plain), plain);
        // Already first: unchanged.
        let first = red_first(ANSWER);
        assert_eq!(red_first(&first), first);
    }
}
