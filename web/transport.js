// The signaling channel's transports (PROTOCOL §2), each giving frame payloads (JSON text):
// - a WebSocket to the box (its TCP signaling port + 1): one message per frame payload;
// - Bluetooth LE GATT: a byte stream of length-prefixed frames, written in chunks to one
//   characteristic and notified on the other.

export const SERVICE = '6b1d0001-8e5c-4a6e-9a3e-2f4c1e0b7a51';
export const GUEST_TO_HOST = '6b1d0002-8e5c-4a6e-9a3e-2f4c1e0b7a51';
export const HOST_TO_GUEST = '6b1d0003-8e5c-4a6e-9a3e-2f4c1e0b7a51';

// Largest frame payload the protocol allows.
const MAX_PAYLOAD = 65536;
// Bytes per GATT write: the browser splits longer values into a long write if needed.
const GATT_CHUNK = 180;

/** A transport: `send(payload)`, `close()`, and the `onpayload` / `onclose` callbacks. */
class Transport {
  constructor() {
    this.onpayload = () => {};
    this.onclose = () => {};
  }
}

/** Opens a WebSocket to `host:port`; resolves once it is open. */
export function openWebSocket(host, port) {
  return new Promise((resolve, reject) => {
    const url = `ws://${host.includes(':') ? `[${host}]` : host}:${port}/`;
    const ws = new WebSocket(url);
    const t = new Transport();
    let open = false;
    ws.onopen = () => { open = true; resolve(t); };
    ws.onerror = () => { if (!open) reject(new Error(`cannot reach the box at ${url}`)); };
    ws.onclose = () => { if (open) t.onclose(); };
    ws.onmessage = async (e) => {
      const text = typeof e.data === 'string' ? e.data : await e.data.text();
      t.onpayload(text);
    };
    t.send = (payload) => ws.send(payload);
    t.close = () => ws.close();
  });
}

/** Splits a byte stream of length-prefixed frames into payloads. */
export class FrameDecoder {
  constructor() { this.buf = new Uint8Array(0); }
  push(bytes) {
    const joined = new Uint8Array(this.buf.length + bytes.length);
    joined.set(this.buf);
    joined.set(bytes, this.buf.length);
    this.buf = joined;
    const out = [];
    while (this.buf.length >= 4) {
      const len = new DataView(this.buf.buffer, this.buf.byteOffset).getUint32(0);
      if (len > MAX_PAYLOAD) throw new Error('the box sent an oversized frame');
      if (this.buf.length < 4 + len) break;
      out.push(new TextDecoder().decode(this.buf.subarray(4, 4 + len)));
      this.buf = this.buf.slice(4 + len);
    }
    return out;
  }
}

/** A frame on a byte stream: length prefix and UTF-8 payload. */
export function encodeFrame(payload) {
  const body = new TextEncoder().encode(payload);
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}

/** Asks the user to pick the box over Bluetooth and connects to its GATT service. */
export async function openBluetooth() {
  if (!navigator.bluetooth) throw new Error('this browser has no Web Bluetooth');
  const device = await navigator.bluetooth.requestDevice({ filters: [{ services: [SERVICE] }] });
  const server = await device.gatt.connect();
  const service = await server.getPrimaryService(SERVICE);
  const toBox = await service.getCharacteristic(GUEST_TO_HOST);
  const fromBox = await service.getCharacteristic(HOST_TO_GUEST);
  const t = new Transport();
  const decoder = new FrameDecoder();
  fromBox.addEventListener('characteristicvaluechanged', (e) => {
    const v = e.target.value;
    for (const payload of decoder.push(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))) {
      t.onpayload(payload);
    }
  });
  await fromBox.startNotifications();
  device.addEventListener('gattserverdisconnected', () => t.onclose());
  // Writes go out one at a time, in order.
  let queue = Promise.resolve();
  t.send = (payload) => {
    const frame = encodeFrame(payload);
    for (let i = 0; i < frame.length; i += GATT_CHUNK) {
      const chunk = frame.slice(i, i + GATT_CHUNK);
      queue = queue.then(() => toBox.writeValueWithResponse(chunk));
    }
    queue = queue.catch(() => t.onclose());
  };
  t.close = () => device.gatt.disconnect();
  return t;
}

// ---- the rendezvous (online mode, docs/protocol.md): a magic-wormhole mailbox ----

const APP_ID = 'intercom.invalid/pairing/v1';
// The host's room announcement's phase; frames go under "0", "1", … per sender.
const ROOM_PHASE = 'room';
// Frames held out of order before the pairing is given up.
const MAX_HELD = 64;
// How long the server may take to answer a step.
const ANSWER_MS = 10000;

const toHex = (text) => Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, '0')).join('');
function fromHex(hex) {
  if (typeof hex !== 'string' || hex.length % 2 || /[^0-9a-f]/i.test(hex)) throw new Error('bad body');
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/**
 * Joins the box's room at `nameplate` on the mailbox server `url` (ws:// or wss://).
 * Resolves to `{ transport, room, mailbox }` once the box's room announcement arrived:
 * frames sent go out as mailbox messages, the box's come in phase order, once each (the
 * server echoes ours and may repeat or reorder). `transport.finish(mood)` closes the
 * mailbox, so the server learns nothing of how long the call lasts.
 */
export function openMailbox(url, nameplate) {
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      reject(new Error(`the rendezvous address is not valid: ${url}`));
      return;
    }
    const side = Array.from(crypto.getRandomValues(new Uint8Array(5)), (b) => b.toString(16).padStart(2, '0')).join('');
    const t = new Transport();
    let mailbox = null;
    let room = null;
    let peer = null;        // the first other side seen; a third is ignored
    let next = 0;           // the next phase of the box's to deliver
    const held = new Map(); // phase → payload, arrived early
    let sent = 0;
    let settled = false;
    let closed = false;
    const fail = (why) => {
      if (!settled) { settled = true; clearTimeout(timer); reject(new Error(why)); }
      else if (!closed) { closed = true; t.onclose(); }
      ws.close();
    };
    const timer = setTimeout(() => fail('the rendezvous server does not answer'), ANSWER_MS);
    const send = (obj) => ws.send(JSON.stringify(obj));
    ws.onerror = () => fail(`cannot reach the rendezvous server at ${url}`);
    ws.onclose = () => fail('the rendezvous server closed the connection');
    ws.onmessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch { return fail('the rendezvous server sent something unreadable'); }
      switch (m.type) {
        case 'welcome':
          if (m.welcome && m.welcome.error) return fail(`the rendezvous server refused: ${m.welcome.error}`);
          send({ type: 'bind', appid: APP_ID, side });
          send({ type: 'claim', nameplate });
          return;
        case 'claimed':
          mailbox = m.mailbox;
          send({ type: 'open', mailbox });
          // Both sides are in: the nameplate can go back to the server.
          send({ type: 'release', nameplate });
          return;
        case 'error':
          return fail(m.error === 'crowded' ? 'someone else is using this code'
            : `the rendezvous server refused: ${m.error}`);
        case 'message':
          break;
        default:
          return;
      }
      if (m.side === side) return;        // our own, echoed
      if (peer === null) peer = m.side;
      if (m.side !== peer) return;        // a third side
      if (m.phase === ROOM_PHASE) {
        if (room !== null || settled) return;
        if (typeof m.body !== 'string' || !/^[0-9a-f]{16}$/.test(m.body)) return fail('the box announced no valid room');
        room = m.body;
        settled = true;
        clearTimeout(timer);
        resolve({ transport: t, room, mailbox });
        return;
      }
      if (typeof m.phase !== 'string' || !/^(0|[1-9][0-9]{0,8})$/.test(m.phase)) return;
      const phase = Number(m.phase);
      if (phase < next || held.has(phase)) return;
      let payload;
      try { payload = fromHex(m.body); } catch { return fail('the box sent an unreadable frame'); }
      held.set(phase, payload);
      if (held.size > MAX_HELD) return fail('too many frames out of order');
      while (held.has(next)) {
        const p = held.get(next);
        held.delete(next);
        next += 1;
        t.onpayload(p);
      }
    };
    t.send = (payload) => {
      if (closed || ws.readyState !== WebSocket.OPEN) return;
      send({ type: 'add', phase: String(sent), body: toHex(payload) });
      sent += 1;
    };
    t.finish = (mood) => {
      if (closed) return;
      closed = true;
      if (ws.readyState === WebSocket.OPEN && mailbox) send({ type: 'close', mailbox, mood });
      setTimeout(() => ws.close(), 500);
    };
    t.close = () => t.finish('lonely');
  });
}
