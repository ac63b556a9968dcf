// The call with the browser's own WebRTC stack (PROTOCOL §4): the phone's microphone to
// the box, the box's audio to the speaker, and texts on the `chat` data channel, each
// acknowledged once shown.

/** Waits until ICE gathering is complete: on the spot the protocol sends one complete SDP. */
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
}

export class Call {
  /**
   * `events`: onconnected(), onmessage(id, text), ondelivered(id), onended(reason),
   * onremotestream(stream), and for a trickling call oncandidate(candidate, mid) and
   * onendofcandidates(). `iceServers`: the page's STUN (and TURN) servers.
   */
  constructor(events, iceServers = []) {
    this.events = events;
    this.nextId = 1;
    this.outbox = [];
    this.seen = new Set();
    this.pending = [];
    this.pc = new RTCPeerConnection({ iceServers });
    // The guest creates `chat` before its offer.
    this.chat = this.pc.createDataChannel('chat', { ordered: true });
    this.chat.onopen = () => {
      for (const m of this.outbox.splice(0)) this.chat.send(m);
    };
    this.chat.onmessage = (e) => this.onChat(e.data);
    this.pc.ontrack = (e) => events.onremotestream(e.streams[0] || new MediaStream([e.track]));
    this.pc.onconnectionstatechange = () => {
      const s = this.pc.connectionState;
      if (s === 'connected') events.onconnected();
      if (s === 'failed') this.end('the connection was lost');
    };
  }

  /**
   * The SDP offer, with the microphone's track: complete, or with `trickle` (through a
   * rendezvous) at once, its candidates following through `oncandidate`.
   */
  async offer(microphone, trickle = false) {
    for (const track of microphone.getAudioTracks()) this.pc.addTrack(track, microphone);
    if (trickle) {
      this.pc.onicecandidate = (e) => {
        if (e.candidate && e.candidate.candidate) {
          this.events.oncandidate(e.candidate.candidate, e.candidate.sdpMid || '');
        } else if (!e.candidate) {
          this.events.onendofcandidates();
        }
      };
    }
    await this.pc.setLocalDescription(await this.pc.createOffer());
    if (!trickle) await gathered(this.pc);
    return this.pc.localDescription.sdp;
  }

  async accept(answer) {
    await this.pc.setRemoteDescription({ type: 'answer', sdp: answer });
    for (const c of this.pending.splice(0)) await this.addCandidate(c.candidate, c.mid);
  }

  /** A candidate the box trickled (`mid` absent: the first media section). */
  async addCandidate(candidate, mid) {
    if (!this.pc.remoteDescription) {
      this.pending.push({ candidate, mid });
      return;
    }
    const init = mid == null ? { candidate, sdpMLineIndex: 0 } : { candidate, sdpMid: mid };
    await this.pc.addIceCandidate(init).catch(() => { /* one unusable candidate is no failure */ });
  }

  onChat(data) {
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (m.t === 'msg' && Number.isSafeInteger(m.id) && typeof m.text === 'string') {
      if (!this.seen.has(m.id)) {
        this.seen.add(m.id);
        this.events.onmessage(m.id, m.text);
      }
      // Acknowledged once shown (onmessage drew it).
      this.send({ t: 'ack', id: m.id });
    } else if (m.t === 'ack' && Number.isSafeInteger(m.id)) {
      this.events.ondelivered(m.id);
    } else if (m.t === 'bye') {
      this.end('the box hung up');
    }
  }

  /** Says goodbye on the call's own channel (the signaling may be gone by now). */
  sayBye() {
    if (this.chat.readyState === 'open') {
      this.chat.send(JSON.stringify({ t: 'bye' }));
      this.byeSent = true;
    }
  }

  send(obj) {
    const text = JSON.stringify(obj);
    if (this.chat.readyState === 'open') this.chat.send(text);
    else this.outbox.push(text);
  }

  /** Sends a text; returns its id. */
  sendText(text) {
    const id = this.nextId++;
    this.send({ t: 'msg', id, text });
    return id;
  }

  end(reason) {
    if (this.ended) return;
    this.ended = true;
    // A goodbye just written needs a moment on the wire before the connection goes.
    if (this.byeSent) setTimeout(() => this.pc.close(), 300);
    else this.pc.close();
    this.events.onended(reason);
  }
}
