// The network benchmark's anchor: headless Chromium calling headless Chromium, plain
// WebRTC with no box and no web client in between, as two phones' browsers would.
// One JSON line per step on stdout; the benchmark relays the SDP between the two.
//
// usage: node anchor.mjs caller PAGE_URL SPEECH_WAV   (speaks the clip, then silence)
//        node anchor.mjs callee PAGE_URL OUT_WAV      (records what it hears)
// caller: prints {"offer": SDP}, reads "answer <json SDP>", prints {"connected": true},
//         reads "stop".
// callee: reads "offer <json SDP>", prints {"answer": SDP} and {"connected": true}, reads
//         "stop", writes what it heard as a 48 kHz mono 16-bit WAV and prints {"saved": n}.
// PAGE_URL: any page on the namespace's localhost (a secure context for the microphone).

import { writeFileSync } from 'node:fs';
import { commandReader, launch } from './chromium.mjs';

const [role, url, file] = process.argv.slice(2);
const say = (obj) => console.log(JSON.stringify(obj));
const waitCommand = commandReader().wait;

const browser = await launch([
  ...(role === 'caller' ? [`--use-file-for-fake-audio-capture=${file}`] : []),
  // Host candidates as addresses: the namespaces have no mDNS to resolve names.
  '--disable-features=WebRtcHideLocalIpsWithMdns',
]);
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => say({ pageerror: String(e) }));
  await page.goto(url);
  // Both pages: one peer connection, all candidates in the SDP (no trickle).
  await page.evaluate(() => {
    window.pc = new RTCPeerConnection();
    window.gathered = () => new Promise((done) => {
      if (window.pc.iceGatheringState === 'complete') return done();
      window.pc.addEventListener('icegatheringstatechange', () => {
        if (window.pc.iceGatheringState === 'complete') done();
      });
    });
    window.connected = () => new Promise((done) => {
      const check = () => window.pc.connectionState === 'connected' && done();
      window.pc.addEventListener('connectionstatechange', check);
      check();
    });
  });
  if (role === 'caller') {
    const offer = await page.evaluate(async () => {
      // What a phone's page asks for: the browser's own voice processing on.
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      mic.getTracks().forEach((t) => window.pc.addTrack(t, mic));
      await window.pc.setLocalDescription(await window.pc.createOffer());
      await window.gathered();
      return window.pc.localDescription.sdp;
    });
    say({ offer });
    const answer = JSON.parse(await waitCommand('answer'));
    await page.evaluate(async (sdp) => {
      await window.pc.setRemoteDescription({ type: 'answer', sdp });
      await window.connected();
    }, answer);
    say({ connected: true });
    await waitCommand('stop', 180000);
  } else {
    const offer = JSON.parse(await waitCommand('offer'));
    const answer = await page.evaluate(async (sdp) => {
      window.heard = [];
      window.pc.addEventListener('track', (e) => {
        const stream = e.streams[0] || new MediaStream([e.track]);
        // Chromium feeds a remote stream to Web Audio only while an element plays it.
        const el = new Audio();
        el.srcObject = stream;
        el.muted = true;
        el.play().catch(() => {});
        const ctx = new AudioContext({ sampleRate: 48000 });
        const source = ctx.createMediaStreamSource(stream);
        const tap = ctx.createScriptProcessor(4096, 1, 1);
        tap.onaudioprocess = (ev) => window.heard.push(new Float32Array(ev.inputBuffer.getChannelData(0)));
        source.connect(tap);
        tap.connect(ctx.destination);
      });
      await window.pc.setRemoteDescription({ type: 'offer', sdp });
      await window.pc.setLocalDescription(await window.pc.createAnswer());
      await window.gathered();
      return window.pc.localDescription.sdp;
    }, offer);
    say({ answer });
    await page.evaluate(() => window.connected());
    say({ connected: true });
    await waitCommand('stop', 180000);
    const b64 = await page.evaluate(() => {
      const n = window.heard.reduce((a, c) => a + c.length, 0);
      const pcm = new Int16Array(n);
      let at = 0;
      for (const chunk of window.heard) {
        for (const v of chunk) pcm[at++] = Math.max(-32768, Math.min(32767, Math.round(v * 32768)));
      }
      let bin = '';
      const bytes = new Uint8Array(pcm.buffer);
      for (let i = 0; i < bytes.length; i += 0x8000) {
        bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      return btoa(bin);
    });
    const pcm = Buffer.from(b64, 'base64');
    const header = Buffer.alloc(44);
    header.write('RIFF', 0); header.writeUInt32LE(36 + pcm.length, 4); header.write('WAVE', 8);
    header.write('fmt ', 12); header.writeUInt32LE(16, 16); header.writeUInt16LE(1, 20);
    header.writeUInt16LE(1, 22); header.writeUInt32LE(48000, 24); header.writeUInt32LE(96000, 28);
    header.writeUInt16LE(2, 32); header.writeUInt16LE(16, 34);
    header.write('data', 36); header.writeUInt32LE(pcm.length, 40);
    writeFileSync(file, Buffer.concat([header, pcm]));
    say({ saved: pcm.length / 2 });
  }
} catch (e) {
  say({ error: String(e && e.stack || e) });
} finally {
  await browser.close();
  process.exit(0);
}
