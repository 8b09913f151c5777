// Cut the page off the network for 3 s in the middle of a recording: the upload holds the
// chunks, resumes, and the final video has every frame. A recording of the same length with no
// cut is the reference.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FORMATS, checkPlayer, cutNetwork, download, log, openDemo, probe, recordOnDemo, savePageChunks, useServerAndBrowser } from './helpers.mjs';

const SECONDS = 8;
const CUT_MS = 3000;

describe('network loss during a recording', { timeout: 300_000 }, () => {
  const env = useServerAndBrowser();

  /** Record, check the page and the file; returns the frame counts. */
  async function recordAndProbe(name, format, during) {
    // A small screen keeps the encoder from dropping frames when the machine is busy, so the
    // frame counts of two recordings compare.
    const { context, page, consoleLines } = await openDemo(env.browser, env.server.base, { size: [640, 360] });
    try {
      let sawOffline = false;
      const rec = await recordOnDemo(page, {
        ...format,
        seconds: SECONDS,
        duringAt: 2,
        during:
          during &&
          (async (p) => {
            const cut = cutNetwork(p, CUT_MS);
            // The page tells the user while the connection is down.
            await p.waitForFunction(() => /Offline|Retrying/.test(document.getElementById('connection-text').textContent), null, { timeout: CUT_MS });
            sawOffline = true;
            await cut;
          }),
      });
      assert.equal(rec.error, null, `the page shows an error: ${rec.error}\n${consoleLines.join('\n')}`);
      if (during) assert.ok(sawOffline, 'the page showed the connection as down');
      const player = await checkPlayer(page);
      assert.ok(Math.abs(player.duration - rec.recordedS) <= 0.5, `<video> duration ${player.duration} vs recorded ${rec.recordedS}`);
      const got = await probe(await download(page, `${name}.${format.container}`));
      const local = await probe(await savePageChunks(page, `${name}-local.${format.container}`));
      log(`${name}: recorded ${rec.recordedS.toFixed(3)} s (${rec.framesDrawn} frames drawn) in ${rec.chunks} chunks, <video> ${player.duration.toFixed(3)} s; download ${got.video.packets} video + ${got.audio.packets} audio frames, ${got.durationS.toFixed(3)} s; recorder produced ${local.video.packets} + ${local.audio.packets}`);
      assert.equal(got.video.codec, format.video);
      assert.equal(got.video.packets, local.video.packets, 'every video frame the recorder produced arrived');
      assert.equal(got.audio.packets, local.audio.packets, 'every audio frame the recorder produced arrived');
      return got;
    } finally {
      await context.close();
    }
  }

  test('no WebSocket at all: the page polls the status and still gets the video', { timeout: 90_000 }, async () => {
    const { context, page, consoleLines } = await openDemo(env.browser, env.server.base, {
      size: [640, 360],
      // Every WebSocket fails to connect, as behind a proxy that drops upgrades.
      init: () => {
        window.WebSocket = class BlockedWebSocket {
          constructor() {
            setTimeout(() => this.onclose?.({ code: 1006 }), 10);
          }
          send() {
            throw new Error('not connected');
          }
          close() {}
        };
      },
    });
    try {
      const rec = await recordOnDemo(page, { ...FORMATS.vp8, seconds: 4 });
      assert.equal(rec.error, null, `the page shows an error: ${rec.error}\n${consoleLines.join('\n')}`);
      const player = await checkPlayer(page);
      log(`polling: recorded ${rec.recordedS.toFixed(3)} s, <video> ${player.duration.toFixed(3)} s`);
      assert.ok(Math.abs(player.duration - rec.recordedS) <= 0.5, `<video> duration ${player.duration} vs recorded ${rec.recordedS}`);
      assert.equal(await page.textContent('#meta-format'), 'WebM · VP8 + Opus');
    } finally {
      await context.close();
    }
  });

  for (const name of ['vp8', 'h264']) {
    const format = FORMATS[name];
    test(`${name} over ${format.mode}: 3 s offline, every chunk arrives`, { timeout: 150_000 }, async () => {
      const reference = await recordAndProbe(`${name}-nocut`, format, false);
      const cut = await recordAndProbe(`${name}-cut`, format, true);
      const ratio = cut.video.packets / reference.video.packets;
      log(`${name}: video frames with the cut ${cut.video.packets}, without ${reference.video.packets} (${((ratio - 1) * 100).toFixed(2)}%)`);
      assert.ok(Math.abs(ratio - 1) <= 0.02, `frames with the cut ${cut.video.packets} vs without ${reference.video.packets}`);
    });
  }
});
