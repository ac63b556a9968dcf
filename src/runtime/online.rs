//! The online mode's two tasks: offering our open room at a fresh nameplate of the
//! rendezvous, and joining a room at a nameplate someone typed. Both report to the room
//! logic (`lan.rs`) through its results channel, like a LAN join.

use tokio::sync::mpsc;

use super::lan::Outcome;
use crate::app::{Event, JoinFailure, OnlineUpdate, Unreachable};
use crate::pairing::{Online, Pin, RoomId, Source};
use crate::signaling::rendezvous::{Rendezvous, RendezvousError, Trust};
use crate::signaling::{join_in, Attacher};

/// Where the rendezvous is and which certificates it may show.
#[derive(Debug, Clone)]
pub(super) struct RendezvousConfig {
    pub(super) url: String,
    pub(super) trust: Trust,
}

fn log(e: &RendezvousError, what: &str) {
    tracing::warn!(error = e as &dyn std::error::Error, "{what}");
}

/// Offers `room` at a fresh nameplate: reports the code, then hands the room server the
/// guest that comes through the mailbox, and the mailbox to the room logic.
pub(super) async fn offer(
    rv: RendezvousConfig,
    room: RoomId,
    attacher: Attacher,
    results: mpsc::Sender<Outcome>,
) {
    let opened = async {
        let mut client = Rendezvous::connect(&rv.url, &rv.trust).await?;
        let (nameplate, mailbox) = client.allocate().await?;
        let code = Online {
            nameplate: nameplate.clone(),
            rendezvous: rv.url.clone(),
        };
        let _ = results
            .send(Outcome::Event(Event::OnlineCode(OnlineUpdate::Code(code))))
            .await;
        client.host_open(nameplate, mailbox, room).await
    };
    match opened.await {
        Ok((stream, binding, mailbox)) => {
            let _ = results.send(Outcome::Mailbox(mailbox)).await;
            attacher.attach_in(stream, Source::Unknown, binding).await;
        }
        Err(e) => {
            log(&e, "the room is open on the LAN only");
            let _ = results
                .send(Outcome::Event(Event::OnlineCode(OnlineUpdate::Unavailable)))
                .await;
        }
    }
}

/// Joins the room waiting at `nameplate` with `pin`.
pub(super) async fn join(
    rv: RendezvousConfig,
    nameplate: String,
    pin: Pin,
    spent: Vec<RoomId>,
) -> Outcome {
    let opened = async {
        let mut client = Rendezvous::connect(&rv.url, &rv.trust).await?;
        let mailbox = client.claim(&nameplate).await?;
        client.guest_open(nameplate, mailbox).await
    };
    let (stream, room, binding, mailbox) = match opened.await {
        Ok(o) => o,
        Err(e) => {
            log(&e, "could not reach the room through the rendezvous");
            let why = match e {
                RendezvousError::Refused(_) => Unreachable::CodeInUse,
                RendezvousError::Timeout => Unreachable::NoRoomAtCode,
                _ => Unreachable::NoRendezvous,
            };
            return Outcome::Event(Event::JoinFailed(JoinFailure::Unreachable(why)));
        }
    };
    if spent.contains(&room) {
        return Outcome::Failed(room, JoinFailure::RoomSpent);
    }
    match join_in(stream, room, &pin, &binding).await {
        Ok(session) => Outcome::JoinedOnline(session, mailbox),
        Err(e) => Outcome::Failed(room, super::lan::join_failure(e)),
    }
}
