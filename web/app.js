// The web client: pairs with a box (PIN → SPAKE2 in the box's own pairing core, built to
// WebAssembly) through the box's rendezvous server, over a WebSocket on the LAN or over
// Bluetooth LE, then calls it with WebRTC.
//
// It opens from the box's invitation (its QR code's text) given after `#` or as
// `?invite=`, or pasted, or scanned with the camera where the browser can read QR codes.
// Nothing is stored: reload the page and everything is gone.

import init, { Pairing, parseInvite } from './pkg/intercom_pairing_wasm.js';
import { openWebSocket, openBluetooth, openMailbox } from './transport.js';
import { Call } from './call.js';

const $ = (id) => document.getElementById(id);

/** What the page shows and does; also read by the end-to-end test. */
const state = {
  phase: 'idle',          // idle, pairing, calling, in-call, ended
  via: null,              // how it paired: 'rendezvous', 'lan' or 'bluetooth'
  invite: null,
  triesLeft: null,
  texts: [],              // { from: 'box'|'me', id, text, delivered }
  received: null,         // the box's audio, when recording was asked for
};
window.intercom = state;

function status(text, warn = false) {
  $('status').textContent = text;
  $('status').classList.toggle('warn', warn);
}

function show(section) {
  $('pair').hidden = section !== 'pair';
  $('call').hidden = section !== 'call';
}

function loadInvite(text) {
  const raw = text.trim();
  if (!raw) return;
  try {
    const invite = JSON.parse(parseInvite(raw.startsWith('intercom:') ? raw : `intercom:?${raw}`));
    state.invite = invite;
    $('invite').value = raw;
    $('box-name').textContent = invite.name || 'intercom';
    if (invite.pin) $('pin').value = invite.pin;
    $('connect-bt').hidden = !(navigator.bluetooth && invite.bt);
    $('connect-ws').disabled = !online(invite) && !(lanAllowed() && invite.tcp.length > 0);
    status(invite.pin ? 'Ready to connect.' : 'Type the PIN the box shows.');
  } catch (e) {
    state.invite = null;
    status(`This is not an intercom invitation: ${e.message || e}`, true);
  }
}

// A link from the box's QR code carries the invitation after `#` (never sent to the web
// server). It is read once and taken out of the address, so the PIN stays in no history.
function fromLocation() {
  const hash = location.hash.slice(1);
  if (hash) {
    history.replaceState(null, '', location.pathname + location.search);
    return hash;
  }
  const q = new URLSearchParams(location.search);
  return q.get('invite') || (q.has('room') ? location.search.slice(1) : '');
}

async function scanQr() {
  const detector = new BarcodeDetector({ formats: ['qr_code'] });
  const video = $('camera');
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  try {
    for (;;) {
      const codes = await detector.detect(video);
      const code = codes.find((c) => c.rawValue.startsWith('intercom:') || c.rawValue.includes('#v=1&'));
      if (code) return code.rawValue.startsWith('intercom:') ? code.rawValue : code.rawValue.split('#')[1];
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    stream.getTracks().forEach((t) => t.stop());
    video.hidden = true;
  }
}

// ---- pairing ----

/** The page's own settings (config.json beside it): the STUN/TURN servers for calls. */
let settings = { iceServers: [] };

const online = (invite) => Boolean(invite.nameplate && invite.rendezvous);

/**
 * Whether this page may open `ws://` to the box: a page served over HTTPS may not (mixed
 * content), one on plain HTTP or on this machine may.
 */
const lanAllowed = () => location.protocol === 'http:'
  || ['localhost', '127.0.0.1', '[::1]'].includes(location.hostname);

/**
 * The way to the box for the network button, in order: the LAN WebSocket where this page
 * may use it (fastest, no server), then the box's rendezvous server (works from any page,
 * at home or on mobile data). Resolves to `{ transport, via, room, mailbox }`.
 */
async function reachBox(invite) {
  let last = new Error('the invitation has no way to reach the box from this page');
  if (lanAllowed() && invite.tcp.length > 0) {
    try {
      return { transport: await firstReachable(invite.tcp), via: 'lan', room: invite.room };
    } catch (e) {
      last = e;
    }
  }
  if (online(invite)) {
    status('Connecting through the rendezvous server…');
    const { transport, room, mailbox } = await openMailbox(invite.rendezvous, invite.nameplate);
    // The box says which room waits there: it must be the one the QR code named.
    if (room !== invite.room) {
      transport.close();
      throw new Error('the code leads to a different box: scan its QR code again');
    }
    return { transport, via: 'rendezvous', room, mailbox };
  }
  throw last;
}

const VIA = { rendezvous: 'the rendezvous server', lan: 'the local network', bluetooth: 'Bluetooth' };

async function connect(kind) {
  const invite = state.invite;
  const pin = $('pin').value.trim();
  if (!invite) return status('Scan or paste the box\'s invitation first.', true);
  if (!/^[0-9]{4}$/.test(pin)) return status('The PIN is 4 digits.', true);
  state.phase = 'pairing';
  $('connect-ws').disabled = $('connect-bt').disabled = true;
  status('Connecting…');
  let reached;
  let pairing;
  try {
    reached = kind === 'bt'
      ? { transport: await openBluetooth(), via: 'bluetooth', room: invite.room }
      : await reachBox(invite);
    pairing = reached.mailbox
      ? Pairing.inMailbox(reached.room, pin, reached.mailbox)
      : new Pairing(reached.room, pin);
  } catch (e) {
    reached?.transport.close();
    state.phase = 'idle';
    $('connect-ws').disabled = $('connect-bt').disabled = false;
    return status(String(e.message || e), true);
  }
  const { transport, via } = reached;
  state.via = via;
  status(`Checking the PIN (through ${VIA[via]})…`);
  let joined = false;
  transport.onpayload = (payload) => {
    if (!joined) {
      const step = JSON.parse(pairing.receive(payload));
      if (step.send) transport.send(step.send);
      else if (step.joined) {
        joined = true;
        forgetPin();
        startCall(pairing, transport, via);
      } else if (step.error) {
        pairing.free();
        failedPairing(step);
        transport.close();
      }
      return;
    }
    let inner;
    try {
      inner = JSON.parse(pairing.open(payload));
    } catch (e) {
      return endCall(`the box's message was not valid: ${e.message || e}`);
    }
    if (inner.t === 'answer') state.call?.accept(inner.sdp).catch((e) => endCall(String(e)));
    if (inner.t === 'candidate') state.call?.addCandidate(inner.candidate, inner.mid);
    if (inner.t === 'bye') endCall('the box hung up');
  };
  transport.onclose = () => {
    if (!joined && state.phase === 'pairing') {
      state.phase = 'idle';
      $('connect-ws').disabled = $('connect-bt').disabled = false;
      status('The box closed the connection.', true);
    } else if (joined) {
      endCall('the signaling connection closed');
    }
  };
  transport.send(pairing.firstMessage());
}

/** The WebSocket of the first of the box's addresses that answers (port + 1). */
async function firstReachable(addresses) {
  let last = new Error('the invitation has no network address');
  for (const addr of addresses) {
    const [host, port] = splitAddress(addr);
    try {
      return await openWebSocket(host, port + 1);
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

function splitAddress(addr) {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
  return [host, Number(addr.slice(i + 1))];
}

/** Once paired, the PIN has done its work: it stays in no field, object or address. */
function forgetPin() {
  if (state.invite) delete state.invite.pin;
  $('pin').value = '';
  $('invite').value = '';
  // The address may carry the invitation: keep everything else it says.
  const q = new URLSearchParams(location.search);
  q.delete('invite');
  q.delete('pin');
  const rest = q.toString();
  history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : ''));
}

function failedPairing(step) {
  state.phase = 'idle';
  $('connect-ws').disabled = $('connect-bt').disabled = false;
  state.triesLeft = step.tries_left;
  const tries = $('tries');
  if (step.error === 'bad-pin') {
    const left = step.tries_left;
    // Nothing authenticates a refusal before a key is shared: say what it may mean.
    tries.textContent = left == null ? 'Could not join: wrong PIN or wrong room.'
      : left === 0 ? 'Could not join: wrong PIN or wrong room. The room is now locked.'
      : `Could not join: wrong PIN or wrong room (${left} ${left === 1 ? 'try' : 'tries'} left).`;
    tries.hidden = false;
    status('Could not join: wrong PIN or wrong room.', true);
    $('pin').value = '';
  } else if (step.error === 'locked') {
    tries.textContent = 'The room is locked after three wrong PINs. Ask for a new room.';
    tries.hidden = false;
    status('The room is locked.', true);
  } else {
    status(step.message, true);
  }
}

// ---- the call ----

/** The sealed channel of the call under way; freed (its keys wiped) when the call ends. */
let paired = null;

async function startCall(pairing, transport, via) {
  paired = pairing;
  state.phase = 'calling';
  show('call');
  status(`Paired through ${VIA[via]}. Calling…`);
  // Through a rendezvous the SDP goes at once and candidates follow (trickle ICE).
  const trickle = via === 'rendezvous';
  $('call-state').textContent = 'Calling…';
  let microphone;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: false, channelCount: 1 },
    });
  } catch (e) {
    transport.send(pairing.sealBye());
    transport.close();
    return endCall(`no microphone: ${e.message || e}`);
  }
  let started = null;
  const call = new Call({
    onconnected() {
      state.phase = 'in-call';
      started = Date.now();
      $('call-state').textContent = 'In call';
      status(`In call with ${state.invite.name || 'the box'} (paired through ${VIA[via]}).`);
      // The mailbox has done its work: closed now, the server learns nothing of how long
      // the call lasts.
      if (trickle) transport.finish('happy');
    },
    oncandidate(candidate, mid) {
      try { transport.send(pairing.sealCandidate(candidate, mid)); } catch { /* call over */ }
    },
    onendofcandidates() {
      try { transport.send(pairing.sealEndOfCandidates()); } catch { /* call over */ }
    },
    onmessage(id, text) {
      state.texts.push({ from: 'box', id, text });
      addMessage(text, false);
    },
    ondelivered(id) {
      const t = state.texts.find((m) => m.from === 'me' && m.id === id);
      if (t && !t.delivered) {
        t.delivered = true;
        t.tick.textContent = '✓';
      }
    },
    onremotestream(stream) {
      $('remote').srcObject = stream;
      if (new URLSearchParams(location.search).has('record')) record(stream);
    },
    onended(reason) {
      endCall(reason);
    },
  }, settings.iceServers);
  state.call = call;
  state.hangUp = () => {
    call.sayBye();
    try { transport.send(pairing.sealBye()); } catch { /* already closed */ }
    endCall('you hung up');
    transport.close();
  };
  state.timer = setInterval(() => {
    if (!started) return;
    const s = Math.floor((Date.now() - started) / 1000);
    $('call-time').textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }, 500);
  const offer = await call.offer(microphone, trickle);
  state.microphone = microphone;
  transport.send(pairing.sealOffer(offer));
}

function addMessage(text, mine) {
  const li = document.createElement('li');
  li.textContent = text;
  li.classList.toggle('mine', mine);
  $('messages').append(li);
  li.scrollIntoView();
  return li;
}

function endCall(reason) {
  if (state.phase === 'ended') return;
  state.phase = 'ended';
  state.endReason = reason;
  clearInterval(state.timer);
  state.microphone?.getTracks().forEach((t) => t.stop());
  state.call?.end(reason);
  paired?.free();
  paired = null;
  $('call-state').textContent = 'Call ended';
  $('send').hidden = true;
  $('hang-up').hidden = true;
  status(`Call ended: ${reason}.`);
}

/** Keeps the box's audio in memory (48 kHz mono floats) for the end-to-end test. */
function record(stream) {
  const ctx = new AudioContext({ sampleRate: 48000 });
  const source = ctx.createMediaStreamSource(stream);
  const tap = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  state.received = { sampleRate: ctx.sampleRate, chunks };
  tap.onaudioprocess = (e) => chunks.push(Array.from(e.inputBuffer.getChannelData(0)));
  source.connect(tap);
  tap.connect(ctx.destination);
}

// ---- wiring ----

await init();
try {
  const r = await fetch('config.json', { cache: 'no-cache' });
  if (r.ok) settings = { ...settings, ...(await r.json()) };
} catch { /* offline or absent: no STUN/TURN servers */ }
$('invite').addEventListener('change', (e) => loadInvite(e.target.value));
$('connect-ws').addEventListener('click', () => connect('ws'));
$('connect-bt').addEventListener('click', () => connect('bt'));
$('hang-up').addEventListener('click', () => state.hangUp?.());
$('send').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !state.call) return;
  const id = state.call.sendText(text);
  const li = addMessage(text, true);
  const tick = document.createElement('span');
  tick.className = 'tick';
  tick.textContent = '…';
  li.append(tick);
  state.texts.push({ from: 'me', id, text, delivered: false, tick });
  $('text').value = '';
});
if ('BarcodeDetector' in window && navigator.mediaDevices) {
  $('scan').hidden = false;
  $('scan').addEventListener('click', async () => {
    try { loadInvite(await scanQr()); } catch (e) { status(String(e.message || e), true); }
  });
}
show('pair');
loadInvite(fromLocation());
// A link opened while the page is open (a fresh QR code scanned) lands here as a new
// fragment: take it, unless a pairing or call is under way.
window.addEventListener('hashchange', () => {
  const invite = fromLocation();
  if (invite && (state.phase === 'idle' || state.phase === 'ended')) {
    state.phase = 'idle';
    show('pair');
    $('tries').hidden = true;
    loadInvite(invite);
  }
});
// Installable and usable offline once visited (secure contexts only: https, localhost).
if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker.register('sw.js').catch((e) => console.warn('service worker:', e));
}
state.ready = true;
