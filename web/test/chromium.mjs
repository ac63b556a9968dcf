// What the page drivers share (drive.mjs for the web client, anchor.mjs for the
// benchmark's browser-to-browser anchor): commands from stdin and Chromium's launch.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

/** Reads command lines from stdin; `wait(name)` resolves with the rest of the first line
 * starting with `name`, or throws after `ms`. `close()` stops reading. */
export const commandReader = () => {
  const commands = [];
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (l) => commands.push(l.trim()));
  const wait = async (name, ms = 30000) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const i = commands.findIndex((c) => c === name || c.startsWith(`${name} `));
      if (i >= 0) return commands.splice(i, 1)[0].slice(name.length + 1);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no "${name}" from the test`);
  };
  return { wait, close: () => lines.close() };
};

/** Headless Chromium (Debian's, or $CHROMIUM) with a fake microphone and camera
 * permission granted, sound not muted, and `extra` arguments. */
export const launch = (extra) => chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  ignoreDefaultArgs: ['--mute-audio'],
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
    ...extra,
  ],
});
