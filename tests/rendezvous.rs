//! Pairing through a real magic-wormhole mailbox server (`twist wormhole-mailbox` on
//! loopback): the host allocates a nameplate, the guest claims it, and the same SPAKE2
//! handshake and sealed session run over mailbox messages, bound to the mailbox.
//!
//! Needs `pip install magic-wormhole-mailbox-server`; skipped with a message when `twist`
//! is missing, a failure under CI (`INTERCOM_CI`).

use std::time::{Duration, Instant};

use intercom::pairing::{HostRoom, JoinError, Pin, RoomId, Source};
use intercom::signaling::rendezvous::{Rendezvous, RendezvousError, Trust};
use intercom::signaling::{
    join_in, spawn_host, GuestError, HostEvent, HostHandle, Inner, Session, SessionEvent,
};
use intercom_test_support::mailbox::MailboxServer;

const PIN: &str = "4821";

fn server() -> Option<MailboxServer> {
    let s = MailboxServer::start();
    assert!(
        s.is_some() || std::env::var_os("INTERCOM_CI").is_none(),
        "CI must run the rendezvous tests"
    );
    s
}

/// A room served through a fresh nameplate: the nameplate, the room server and its id.
async fn host(url: &str) -> (String, HostHandle, RoomId) {
    let id = RoomId::random();
    let room = HostRoom::open(
        id,
        Pin::parse(PIN).unwrap(),
        Instant::now(),
        Duration::from_secs(300),
    );
    let handle = spawn_host(room);
    let attacher = handle.attacher();
    let mut rv = Rendezvous::connect(url, &Trust::System).await.unwrap();
    let (nameplate, mailbox) = rv.allocate().await.unwrap();
    let np = nameplate.clone();
    tokio::spawn(async move {
        let (stream, binding, mailbox) = rv.host_open(np, mailbox, id).await.unwrap();
        attacher.attach_in(stream, Source::Unknown, binding).await;
        // The session lives in the mailbox until the test ends (a box closes it once
        // the call's media is up).
        std::mem::forget(mailbox);
    });
    (nameplate, handle, id)
}

async fn guest(url: &str, nameplate: &str, pin: &str) -> Result<(Session, RoomId), GuestError> {
    let mut rv = Rendezvous::connect(url, &Trust::System).await.unwrap();
    let mailbox = rv.claim(nameplate).await.unwrap();
    let (stream, room, binding, handle) = rv.guest_open(nameplate.into(), mailbox).await.unwrap();
    let session = join_in(stream, room, &Pin::parse(pin).unwrap(), &binding).await?;
    std::mem::forget(handle);
    Ok((session, room))
}

#[tokio::test]
async fn a_code_pairs_two_sides_through_the_mailbox_server() {
    let Some(server) = server() else { return };
    let (nameplate, mut h, id) = host(&server.url).await;
    assert!(nameplate.bytes().all(|b| b.is_ascii_digit()), "{nameplate}");
    let (mut guest_session, room) = guest(&server.url, &nameplate, PIN).await.unwrap();
    assert_eq!(
        room, id,
        "the guest learnt the host's room from the mailbox"
    );
    let mut host_session = loop {
        match tokio::time::timeout(Duration::from_secs(15), h.next_event()).await {
            Ok(Some(HostEvent::Joined(s))) => break s,
            Ok(Some(_)) => continue,
            other => panic!("no join: {other:?}"),
        }
    };
    // A 3 kB offer and the answer, sealed, through the server.
    let offer = format!(
        "v=0\r\n{}",
        "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n".repeat(70)
    );
    guest_session
        .send(Inner::Offer { sdp: offer.clone() })
        .await
        .unwrap();
    assert_eq!(
        host_session.recv().await,
        SessionEvent::Received(Inner::Offer { sdp: offer })
    );
    host_session
        .send(Inner::Answer {
            sdp: "v=0\r\nanswer".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        guest_session.recv().await,
        SessionEvent::Received(Inner::Answer {
            sdp: "v=0\r\nanswer".into()
        })
    );
}

#[tokio::test]
async fn a_wrong_pin_through_the_mailbox_counts_against_the_room() {
    let Some(server) = server() else { return };
    let (nameplate, mut h, _) = host(&server.url).await;
    let err = guest(&server.url, &nameplate, "0000").await.unwrap_err();
    assert!(
        matches!(
            err,
            GuestError::Join(JoinError::BadPin {
                tries_left: Some(2)
            })
        ),
        "{err:?}"
    );
    match tokio::time::timeout(Duration::from_secs(5), h.next_event()).await {
        Ok(Some(HostEvent::AttemptFailed { tries_left: 2 })) => {}
        other => panic!("the room did not count it: {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_rendezvous_is_one_clear_error() {
    // Nothing listens on port 9 of loopback.
    let err = Rendezvous::connect("ws://127.0.0.1:9/v1", &Trust::System)
        .await
        .unwrap_err();
    assert!(matches!(err, RendezvousError::Connect(_)), "{err:?}");
    let err = Rendezvous::connect("http://127.0.0.1:9/v1", &Trust::System)
        .await
        .unwrap_err();
    assert!(matches!(err, RendezvousError::Url), "{err:?}");
}

#[tokio::test]
async fn a_third_client_is_refused_and_the_pair_talks_on() {
    let Some(server) = server() else { return };
    let (nameplate, mut h, _) = host(&server.url).await;
    let mut rv = Rendezvous::connect(&server.url, &Trust::System)
        .await
        .unwrap();
    let mailbox = rv.claim(&nameplate).await.unwrap();
    let (stream, room, binding, _mb) = rv
        .guest_open(nameplate.clone(), mailbox.clone())
        .await
        .unwrap();
    let guest_session = join_in(stream, room, &Pin::parse(PIN).unwrap(), &binding)
        .await
        .unwrap();
    let mut host_session = loop {
        match tokio::time::timeout(Duration::from_secs(15), h.next_event()).await {
            Ok(Some(HostEvent::Joined(s))) => break s,
            Ok(Some(_)) => continue,
            other => panic!("no join: {other:?}"),
        }
    };
    // Someone who saw the mailbox's id opens it too: the server refuses a third side.
    let third = Rendezvous::connect(&server.url, &Trust::System)
        .await
        .unwrap();
    let Err(err) = third.guest_open(nameplate.clone(), mailbox.clone()).await else {
        panic!("a third side got into the mailbox");
    };
    match &err {
        RendezvousError::Refused(why) => assert!(why.contains("crowded"), "{why}"),
        other => panic!("not refused: {other:?}"),
    }
    // The code itself was released once both sides were in: claiming it again finds
    // no room behind it.
    let mut late = Rendezvous::connect(&server.url, &Trust::System)
        .await
        .unwrap();
    let fresh = late.claim(&nameplate).await.unwrap();
    assert_ne!(
        fresh, mailbox,
        "a released nameplate leads to a new mailbox"
    );
    // The honest pair is untouched.
    guest_session
        .send(Inner::Offer { sdp: "v=0".into() })
        .await
        .unwrap();
    assert_eq!(
        host_session.recv().await,
        SessionEvent::Received(Inner::Offer { sdp: "v=0".into() })
    );
}
