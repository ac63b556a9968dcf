// Drives the web client in headless Chromium (Debian's, through playwright-core) for
// tests/web_client.rs. Prints one JSON line per step on stdout; the Rust test reads them
// and plays the box's side.
//
// usage: node drive.mjs call PAGE_URL SPEECH_WAV OUT_DIR WRONG_PIN
//        node drive.mjs lock PAGE_URL SPEECH_WAV OUT_DIR WRONG_PIN
//        node drive.mjs online PAGE_URL SPEECH_WAV OUT_DIR WRONG_PIN
//        node drive.mjs bench PAGE_URL SPEECH_WAV OUT_DIR -
// (online: a wrong PIN, then the test sends "goto URL" with the box's fresh link.
//  bench: the network benchmark's caller: joins, speaks, hangs up on "hang-up".)

import { writeFileSync } from 'node:fs';
import { commandReader, launch } from './chromium.mjs';

const [mode, url, speech, outDir, wrongPin] = process.argv.slice(2);
const say = (obj) => console.log(JSON.stringify(obj));
const lines = commandReader();
const waitCommand = lines.wait;

const browser = await launch([
  '--disable-quic',
  // The clip loops: however long the call takes to come up, the box hears speech.
  `--use-file-for-fake-audio-capture=${speech}`,
  // The test's private network has only loopback, which Chromium leaves out of ICE.
  '--allow-loopback-in-peer-connection',
  // The NAT bed's HTTPS host and rendezvous have a certificate from the test's own CA.
  ...(mode === 'online' ? ['--ignore-certificate-errors'] : []),
]);
const page = await browser.newPage({ viewport: { width: 420, height: 760 } });
page.on('console', (m) => { if (m.type() === 'error') say({ console: m.text() }); });
page.on('pageerror', (e) => say({ pageerror: String(e) }));
/** Opens `to`, again if the network changed under the navigation (a namespace's IPv6
 * address settling after the test bed came up), as a person would tap reload. */
const open = async (to) => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.goto(to);
    } catch (e) {
      if (attempt >= 3 || !String(e).includes('ERR_NETWORK_CHANGED')) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
};
await open(url);
await page.waitForFunction(() => window.intercom && window.intercom.ready);
const pin = await page.inputValue('#pin');
// The page's Content-Security-Policy is in force: an inline script is refused (the
// violation event says so). (Whether eval is refused cannot be seen from here: the
// driver's own evaluation is exempt from the policy.)
const csp = await page.evaluate(async () => {
  const refused = new Promise((resolve) => {
    document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), { once: true });
    setTimeout(() => resolve(null), 2000);
  });
  const s = document.createElement('script');
  s.textContent = 'window.inlineRan = true';
  document.head.append(s);
  return { inlineRan: Boolean(window.inlineRan), violated: await refused };
});
say({
  loaded: true,
  prefilled_pin: pin.length === 4,
  name: await page.textContent('#box-name'),
  csp,
  link_cleared: !page.url().includes('#'),
});

/** Connected, through whichever way the page picked: texts, speech, hang-up. */
async function talk() {
  await page.waitForFunction(() => window.intercom.phase === 'in-call', null, { timeout: 30000 });
  say({
    in_call: true,
    via: await page.evaluate(() => window.intercom.via),
    status: await page.textContent('#status'),
    pin_kept: await page.evaluate(() => Boolean(window.intercom.invite.pin)
      || document.querySelector('#pin').value !== ''
      || document.querySelector('#invite').value.includes('pin=')
      || location.href.includes('pin=')),
  });
  await page.fill('#text', 'Hello from the phone');
  await page.click('#send button');
  await page.waitForFunction(() => window.intercom.texts.some((t) => t.from === 'me' && t.delivered),
    null, { timeout: 10000 });
  say({ delivered: true });
  await page.waitForFunction(() => window.intercom.texts.some((t) => t.from === 'box'),
    null, { timeout: 20000 });
  say({ box_text: await page.evaluate(() => window.intercom.texts.find((t) => t.from === 'box').text) });
  // Let the speech play both ways.
  await waitCommand('screenshot');
  await page.screenshot({ path: `${outDir}/web-call.png` });
  say({ screenshot: `${outDir}/web-call.png` });
  await waitCommand('hang-up');
  const received = await page.evaluate(() => {
    const r = window.intercom.received;
    return r ? { rate: r.sampleRate, samples: r.chunks.flat() } : null;
  });
  if (received) {
    const pcm = Buffer.alloc(received.samples.length * 2);
    received.samples.forEach((s, i) => pcm.writeInt16LE(Math.max(-1, Math.min(1, s)) * 32767 | 0, i * 2));
    writeFileSync(`${outDir}/page-heard.raw`, pcm);
    say({ received_seconds: received.samples.length / received.rate, rate: received.rate });
  }
  await hangUp();
}

/** Hangs up and waits until the page has closed its connection (its goodbye gets 300 ms
 * on the wire first): closing the browser sooner can take the goodbye with it, and the
 * box then sees a lost peer instead of a hang-up. */
async function hangUp() {
  await page.click('#hang-up');
  await page.waitForFunction(() => window.intercom.call?.pc.signalingState === 'closed', null, { timeout: 5000 });
  say({ hung_up: await page.textContent('#status') });
}

async function tryPin(p) {
  await page.fill('#pin', p);
  await page.click('#connect-ws');
  await page.waitForFunction(() => window.intercom.phase !== 'pairing', null, { timeout: 15000 });
  return page.evaluate(() => ({ phase: window.intercom.phase, tries: document.querySelector('#tries').textContent }));
}

try {
  if (mode === 'lock') {
    for (let i = 0; i < 3; i++) {
      const r = await tryPin(wrongPin);
      say({ wrong_pin: i + 1, tries: r.tries });
    }
    const r = await tryPin(pin);
    say({ after_lock: await page.textContent('#status'), tries: r.tries });
    // Installed once visited: with the network gone, the page still opens (the service
    // worker keeps the app's files).
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.context().setOffline(true);
    await page.reload();
    await page.waitForFunction(() => window.intercom && window.intercom.ready, null, { timeout: 10000 });
    say({ offline_reload: await page.textContent('#status') });
    await page.context().setOffline(false);
  } else if (mode === 'bench') {
    await page.click('#connect-ws');
    await page.waitForFunction(() => window.intercom.phase === 'in-call', null, { timeout: 30000 });
    say({ in_call: true });
    await waitCommand('hang-up', 120000);
    await hangUp();
  } else if (mode === 'online') {
    const r = await tryPin(wrongPin);
    say({ wrong_pin: 1, tries: r.tries, via: await page.evaluate(() => window.intercom.via) });
    // The box offers the room at a fresh code: the phone scans its QR code again.
    await open(await waitCommand('goto'));
    await page.waitForFunction(() => window.intercom && window.intercom.ready);
    say({ reloaded: true, prefilled_pin: (await page.inputValue('#pin')).length === 4 });
    await page.click('#connect-ws');
    await talk();
  } else {
    const r = await tryPin(wrongPin);
    say({ wrong_pin: 1, tries: r.tries });
    await page.fill('#pin', pin);
    await page.click('#connect-ws');
    await talk();
  }
} catch (e) {
  say({ error: String(e && e.stack || e) });
  await page.screenshot({ path: `${outDir}/web-error.png` }).catch(() => {});
} finally {
  await browser.close();
  lines.close();
}
