// The web client: pairs with a box (PIN → SPAKE2 in the box's own pairing core, built to
// WebAssembly) over a WebSocket or Bluetooth LE, then calls it with WebRTC.
//
// It opens from the box's invitation (its QR code's text) given after `#` or as
// `?invite=`, or pasted, or scanned with the camera where the browser can read QR codes.
// Nothing is stored: reload the page and everything is gone.

import init, { Pairing, parseInvite } from './pkg/intercom_pairing_wasm.js';
import { openWebSocket, openBluetooth } from './transport.js';
import { Call } from './call.js';

const $ = (id) => document.getElementById(id);

/** What the page shows and does; also read by the end-to-end test. */
const state = {
  phase: 'idle',          // idle, pairing, calling, in-call, ended
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
    $('connect-ws').disabled = invite.tcp.length === 0;
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

async function connect(kind) {
  const invite = state.invite;
  const pin = $('pin').value.trim();
  if (!invite) return status('Scan or paste the box\'s invitation first.', true);
  if (!/^[0-9]{4}$/.test(pin)) return status('The PIN is 4 digits.', true);
  let pairing;
  try {
    pairing = new Pairing(invite.room, pin);
  } catch (e) {
    return status(String(e.message || e), true);
  }
  state.phase = 'pairing';
  $('connect-ws').disabled = $('connect-bt').disabled = true;
  status('Connecting…');
  let transport;
  try {
    if (kind === 'bt') {
      transport = await openBluetooth();
    } else {
      transport = await firstReachable(invite.tcp);
    }
  } catch (e) {
    state.phase = 'idle';
    $('connect-ws').disabled = $('connect-bt').disabled = false;
    return status(String(e.message || e), true);
  }
  status('Checking the PIN…');
  let joined = false;
  transport.onpayload = (payload) => {
    if (!joined) {
      const step = JSON.parse(pairing.receive(payload));
      if (step.send) transport.send(step.send);
      else if (step.joined) {
        joined = true;
        forgetPin();
        startCall(pairing, transport);
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

async function startCall(pairing, transport) {
  paired = pairing;
  state.phase = 'calling';
  show('call');
  status('Paired. Calling…');
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
      status(`In call with ${state.invite.name || 'the box'}.`);
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
  });
  state.call = call;
  state.hangUp = () => {
    try { transport.send(pairing.sealBye()); } catch { /* already closed */ }
    endCall('you hung up');
    transport.close();
  };
  state.timer = setInterval(() => {
    if (!started) return;
    const s = Math.floor((Date.now() - started) / 1000);
    $('call-time').textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }, 500);
  const offer = await call.offer(microphone);
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
// Installable and usable offline once visited (secure contexts only: https, localhost).
if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker.register('sw.js').catch((e) => console.warn('service worker:', e));
}
state.ready = true;
