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
