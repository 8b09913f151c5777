// Salvage in a real browser: a real recording with a middle chunk missing, and one with a chunk
// cut to half, are salvaged on request. Each becomes ready with `salvaged: true` and a lost
// range over the damage; the video plays and seeks in Chromium; and it has every video frame of
// the whole recording except those strictly inside its lost ranges.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { ARTIFACTS, call, fixture, log, sleep, useServerAndBrowser } from './helpers.mjs';

const run = promisify(execFile);


/** The presentation times of a file's video packets, sorted. */
async function videoTimes(file) {
  const args = ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file];
  const { stdout } = await run('ffprobe', args, { maxBuffer: 16 << 20 });
  return stdout.split('\n').filter(Boolean).map((l) => parseFloat(l)).sort((a, b) => a - b);
}


async function until(base, rec, states) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { body } = await call(base, 'GET', `/recordings/${rec.recordingId}`, { token: rec.uploadToken });
    if (states.includes(body.status)) return body;
    if (Date.now() > deadline) throw new Error(`still ${body.status}: ${JSON.stringify(body)}`);
    await sleep(100);
  }
}

/** Play the video, then seek before, inside and after the first lost range: each seek lands
 *  on a frame, and the element never errs. */
async function playAndSeek(page, url, lost) {
  return page.evaluate(
    async ({ url, lost }) => {
      const v = document.createElement('video');
      v.muted = true;
      v.src = url;
      document.body.append(v);
      const failed = new Promise((_, reject) => v.addEventListener('error', () => reject(new Error(`video error ${v.error && v.error.code}`))));
      const on = (event) => Promise.race([new Promise((r) => v.addEventListener(event, r, { once: true })), failed]);
      if (v.readyState < 1) await on('loadedmetadata');
      await Promise.race([v.play(), failed]);
      await Promise.race([new Promise((r) => v.requestVideoFrameCallback(() => r())), failed]);
      v.pause();
      const end = lost.toS ?? v.duration;
      const targets = [lost.fromS / 2, (lost.fromS + end) / 2, Math.min(end + (v.duration - end) / 2, v.duration - 0.05)];
      const seeks = [];
      for (const target of targets) {
        const seeked = on('seeked');
        v.currentTime = target;
        await seeked;
        if (v.readyState < 2) await on('canplay');
        seeks.push({ target, at: v.currentTime, readyState: v.readyState });
      }
      return { duration: v.duration, seeks };
    },
    { url, lost },
  );
}

const CASES = [
  { name: 'vp8-opus-ts1000', damage: 'missing', chunk: 5 },
  { name: 'h264-mkv-ts500', damage: 'cut', chunk: 4 },
];

describe('salvage of a damaged recording', { timeout: 300_000 }, () => {
  const env = useServerAndBrowser();

  for (const c of CASES) {
    test(`${c.name}, chunk ${c.chunk} ${c.damage}`, { timeout: 120_000 }, async () => {
      const base = env.server.base;
      const f = fixture(c.name);
      const ext = c.name.startsWith('h264') ? 'mkv' : 'webm';
      const whole = path.join(ARTIFACTS, `salvage-${c.name}-whole.${ext}`);
      writeFileSync(whole, Buffer.concat(f.chunks));

      const rec = (await call(base, 'POST', '/recordings', { json: { mimeType: f.mimeType } })).body;
      for (const [i, chunk] of f.chunks.entries()) {
        if (i === c.chunk && c.damage === 'missing') continue;
        const body = i === c.chunk ? chunk.subarray(0, chunk.length >> 1) : chunk;
        const put = await call(base, 'PUT', `/recordings/${rec.recordingId}/chunks/${i}`, { token: rec.uploadToken, body });
        assert.equal(put.status, 200, JSON.stringify(put.body));
      }
      const count = f.chunks.length;
      const stop = await call(base, 'POST', `/recordings/${rec.recordingId}/stop`, { token: rec.uploadToken, json: { chunkCount: count } });
      if (c.damage === 'missing') {
        assert.equal(stop.status, 409);
        assert.equal(stop.body.error.code, 'missing_chunks');
      } else {
        assert.equal(stop.status, 202);
        const failed = await until(base, rec, ['failed', 'ready']);
        assert.equal(failed.status, 'failed', 'a normal merge never salvages silently');
        assert.equal(failed.error.code, 'frames_lost');
      }

      const asked = await call(base, 'POST', `/recordings/${rec.recordingId}/merge`, { token: rec.uploadToken, json: { salvage: true, chunkCount: count } });
      assert.equal(asked.status, 202, JSON.stringify(asked.body));
      const ready = await until(base, rec, ['ready', 'failed']);
      assert.equal(ready.status, 'ready', JSON.stringify(ready));
      assert.equal(ready.salvaged, true);
      assert.ok(ready.lost.length >= 1, JSON.stringify(ready.lost));
      const lost = ready.lost[0];
      assert.ok(lost.chunks.includes(c.chunk), `the lost range names chunk ${c.chunk}: ${JSON.stringify(lost)}`);

      const file = path.join(ARTIFACTS, `salvage-${c.name}.${ext}`);
      const res = await fetch(ready.downloadUrl);
      assert.equal(res.status, 200);
      writeFileSync(file, Buffer.from(await res.arrayBuffer()));
      const [got, all] = [await videoTimes(file), await videoTimes(whole)];
      const inside = (t) => ready.lost.some((l) => t > l.fromS + 1e-6 && t < (l.toS ?? Infinity) - 1e-6);
      const lostFrames = all.filter(inside).length;
      log(`salvage ${c.name}: lost ${JSON.stringify(ready.lost)}; ${got.length} of ${all.length} video frames (${lostFrames} in the lost range)`);
      assert.ok(lostFrames > 0, 'the damage cost frames');
      assert.equal(got.length, all.length - lostFrames, 'every frame outside the lost range is there');
      assert.deepEqual(got.filter(inside), [], 'no frame inside the lost range');

      const { context, page } = await (async () => {
        const context = await env.browser.newContext();
        return { context, page: await context.newPage() };
      })();
      try {
        await page.goto(`${base}/`);
        const played = await playAndSeek(page, ready.downloadUrl, lost);
        log(`salvage ${c.name}: <video> ${played.duration.toFixed(3)} s, seeks ${JSON.stringify(played.seeks)}`);
        assert.ok(Number.isFinite(played.duration) && played.duration > 0);
        for (const s of played.seeks) {
          assert.ok(s.readyState >= 2, `no frame after seeking to ${s.target}: ${JSON.stringify(s)}`);
        }
        const [before, , after] = played.seeks;
        assert.ok(Math.abs(before.at - before.target) < 0.5 && Math.abs(after.at - after.target) < 0.5, JSON.stringify(played.seeks));
      } finally {
        await context.close();
      }
    });
  }
});
