// Record about 8 s in each format through the demo page and check the result end to end: the
// page gets `ready`, its player has the right duration and seeks, the download is the codecs
// asked for, nothing recorded was lost, and each chunk went up with its SHA-256 (which the
// server or the storage checked, or the upload would have failed).
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ARTIFACTS, FORMATS, checkPlayer, download, log, openDemo, probe, recordOnDemo, savePageChunks, useServerAndBrowser } from './helpers.mjs';

const SECONDS = 8;

describe('recording through the demo page', { timeout: 300_000 }, () => {
  const env = useServerAndBrowser();

  test('camera (Chromium\'s fake device), automatic format, driven from the keyboard', { timeout: 60_000 }, async () => {
    const { context, page, consoleLines } = await openDemo(env.browser, env.server.base);
    try {
      // Source radio: Tab into the group, arrow to Camera; then Tab on to Start and press Enter.
      await page.focus('#source-screen');
      await page.keyboard.press('ArrowRight');
      assert.equal(await page.isChecked('#source-camera'), true);
      await page.focus('#start');
      await page.keyboard.press('Enter');
      await page.waitForSelector('#state-pill[data-state="recording"]');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'stop', 'focus moves to Stop');
      await page.waitForTimeout(3000);
      await page.keyboard.press('Enter');
      await page.waitForSelector('#result-badge[data-state="ready"], #error:not([hidden])', { timeout: 60_000 });
      assert.equal(await page.isHidden('#error'), true, `${await page.textContent('#error-message')}\n${consoleLines.join('\n')}`);
      const player = await checkPlayer(page);
      const recordedS = await page.evaluate(() => (window.__tap.stoppedAt - window.__tap.startedAt) / 1000);
      log(`camera: recorded ${recordedS.toFixed(3)} s as ${await page.textContent('#meta-format')}; <video> ${player.duration.toFixed(3)} s`);
      assert.ok(Math.abs(player.duration - recordedS) <= 0.5);
      assert.match(await page.textContent('#status'), /ready/);
    } finally {
      await context.close();
    }
  });

  for (const [name, format] of Object.entries(FORMATS)) {
    test(`${name} (${format.mimeType}, ${format.mode} upload)`, { timeout: 120_000 }, async () => {
      const { context, page, consoleLines } = await openDemo(env.browser, env.server.base);
      try {
        const supported = await page.evaluate((t) => MediaRecorder.isTypeSupported(t), format.mimeType);
        assert.ok(supported, `this Chromium cannot record ${format.mimeType}`);
        const checksums = [];
        page.on('request', (r) => r.method() === 'PUT' && checksums.push(r.headers()['x-amz-checksum-sha256']));
        const rec = await recordOnDemo(page, { ...format, seconds: SECONDS });
        assert.equal(rec.error, null, `the page shows an error: ${rec.error}\nchunk sizes ${rec.chunkSizes}\n${consoleLines.join('\n')}`);
        if (format.mode !== 'websocket') {
          assert.ok(checksums.length > 0, 'chunks went up by PUT');
          for (const c of checksums) assert.match(String(c), /^[A-Za-z0-9+/]{43}=$/, 'every chunk PUT carries its SHA-256');
        }

        const player = await checkPlayer(page);
        log(`${name}: recorded ${rec.recordedS.toFixed(3)} s in ${rec.chunks} chunks; <video> duration ${player.duration.toFixed(3)} s; seek to ${player.target.toFixed(2)} landed at ${player.currentTime.toFixed(2)}`);
        assert.ok(Number.isFinite(player.duration), `the <video> duration is ${player.duration}`);
        assert.ok(Math.abs(player.duration - rec.recordedS) <= 0.5, `<video> duration ${player.duration} vs recorded ${rec.recordedS}`);
        assert.ok(Math.abs(player.currentTime - player.target) < 0.5, `seeked to ${player.currentTime}, wanted ${player.target}`);
        assert.ok(player.readyState >= 2, `no frame to show after the seek (readyState ${player.readyState})`);

        if (name === 'vp8') {
          // What a person sees after a recording: let the player settle after the seek first.
          await page.waitForFunction(() => document.getElementById('player').readyState >= 3);
          await page.waitForTimeout(3000);
          await page.screenshot({ path: path.join(ARTIFACTS, 'demo.png'), fullPage: true });
        }

        const file = await download(page, `${name}.${format.container}`);
        const local = await probe(await savePageChunks(page, `${name}-local.${format.container}`));
        const got = await probe(file);
        log(`${name}: download ${got.format}, ${got.video.codec} ${got.video.width}x${got.video.height} ${got.video.packets} frames + ${got.audio.codec} ${got.audio.packets} frames, ${got.durationS.toFixed(3)} s (recorder produced ${local.video.packets} + ${local.audio.packets})`);
        assert.equal(got.video.codec, format.video);
        assert.equal(got.audio.codec, format.audio);
        assert.equal(got.video.packets, local.video.packets, 'every video frame the recorder produced is in the download');
        assert.equal(got.audio.packets, local.audio.packets, 'every audio frame the recorder produced is in the download');
        assert.ok(Math.abs(got.durationS - rec.recordedS) <= 0.5, `file duration ${got.durationS} vs recorded ${rec.recordedS}`);
        // Nothing went wrong on the way (a CSP violation or a script error would show here).
        assert.deepEqual(consoleLines.filter((l) => /^(error|pageerror)/.test(l)), []);
      } finally {
        await context.close();
      }
    });
  }
});
