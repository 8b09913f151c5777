// MP4 output in a real browser: real Chromium recordings (tests/fixtures/mediarecorder) are
// uploaded over HTTP with `"output": "mp4"`; each becomes ready as an MP4 with `moov` before
// `mdat`, and Chromium's <video> plays it: the dimensions and duration the status names, a seek
// to 60% that lands there, and play() that moves on from it. H.264 is remuxed as it is; VP8 is
// re-encoded to H.264 + AAC when `transcode` is asked for, and fails its merge (transcode_required) when not.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ARTIFACTS, call, fixture, log, sleep, useServerAndBrowser } from './helpers.mjs';

/** Create a recording of fixture `f` with `options`, upload its chunks, stop, and wait (60 s at
 *  most) for it to be ready. */
async function recordAndMerge(base, f, options) {
  const created = await call(base, 'POST', '/recordings', { json: { mimeType: f.mimeType, ...options } });
  assert.equal(created.status, 201, `create: ${created.status} ${JSON.stringify(created.body)}`);
  const rec = created.body;
  for (const [i, chunk] of f.chunks.entries()) {
    const put = await call(base, 'PUT', `/recordings/${rec.recordingId}/chunks/${i}`, { token: rec.uploadToken, body: chunk });
    assert.equal(put.status, 200, `chunk ${i}: ${JSON.stringify(put.body)}`);
  }
  const stop = await call(base, 'POST', `/recordings/${rec.recordingId}/stop`, { token: rec.uploadToken, json: { chunkCount: f.chunks.length } });
  assert.equal(stop.status, 202, `stop: ${JSON.stringify(stop.body)}`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { body } = await call(base, 'GET', `/recordings/${rec.recordingId}`, { token: rec.uploadToken });
    if (body.status === 'ready') return body;
    if (body.status === 'failed') throw new Error(`the merge failed: ${JSON.stringify(body)}`);
    if (Date.now() > deadline) throw new Error(`not ready after 60 s, still ${body.status}: ${JSON.stringify(body)}`);
    await sleep(200);
  }
}

/** The file's top-level MP4 boxes, in order. */
function topLevelBoxes(buf) {
  const boxes = [];
  for (let at = 0; at + 8 <= buf.length; ) {
    let size = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    if (size === 1) size = Number(buf.readBigUInt64BE(at + 8));
    else if (size === 0) size = buf.length - at;
    if (size < 8) throw new Error(`bad box size ${size} for ${type} at ${at}`);
    boxes.push(type);
    at += size;
  }
  return boxes;
}

/** In the page: a <video> of `url`: its metadata, a seek to 60% of its duration, and play()
 *  from there. Any `error` event on the element rejects with its code and message; a wait that
 *  takes over 20 s rejects with the element's state. */
async function playAndSeek(page, url) {
  return page.evaluate(async (url) => {
    const v = document.createElement('video');
    v.muted = true;
    v.preload = 'auto';
    const state = () => `readyState ${v.readyState}, networkState ${v.networkState}, currentTime ${v.currentTime}, duration ${v.duration}`;
    const failed = new Promise((_, reject) =>
      v.addEventListener('error', () => reject(new Error(`<video> error: code ${v.error && v.error.code}, message ${JSON.stringify(v.error && v.error.message)} (${state()})`))),
    );
    failed.catch(() => {});
    const within = (promise, what) =>
      Promise.race([promise, failed, new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within 20 s (${state()})`)), 20_000))]);
    const on = (event) => within(new Promise((r) => v.addEventListener(event, r, { once: true })), `'${event}'`);
    const metadata = on('loadedmetadata');
    const canplay = on('canplay');
    v.src = url;
    document.body.append(v);
    await metadata;
    await canplay;
    const loaded = { width: v.videoWidth, height: v.videoHeight, duration: v.duration };

    const target = v.duration * 0.6;
    const seeked = on('seeked');
    v.currentTime = target;
    await seeked;
    const seek = { target, at: v.currentTime };
    if (v.readyState < 2) await on('canplay');
    seek.readyState = v.readyState;

    await within(v.play(), 'play()');
    const from = v.currentTime;
    const deadline = performance.now() + 10_000;
    while (v.currentTime <= from + 0.1 && !v.ended && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const played = { from, to: v.currentTime, ended: v.ended, frames: v.getVideoPlaybackQuality().totalVideoFrames };
    v.pause();
    return { ...loaded, seek, played };
  }, url);
}

/** What a ready MP4 recording must be, as the status says and as Chromium plays it. */
async function checkMp4(env, name, ready, { videoCodec, audioCodec }) {
  const out = ready.output;
  assert.ok(out, `the ready status has no output: ${JSON.stringify(ready)}`);
  assert.equal(out.container, 'mp4', JSON.stringify(out));
  assert.equal(out.videoCodec, videoCodec, JSON.stringify(out));
  assert.equal(out.audioCodec ?? null, audioCodec, JSON.stringify(out));
  assert.ok(out.width > 0 && out.height > 0 && out.durationS > 0, JSON.stringify(out));
  assert.ok(ready.downloadUrl, `no downloadUrl: ${JSON.stringify(ready)}`);

  const res = await fetch(ready.downloadUrl);
  assert.equal(res.status, 200, `download: ${res.status}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const file = path.join(ARTIFACTS, `mp4-${name}.mp4`);
  writeFileSync(file, bytes);
  const boxes = topLevelBoxes(bytes);
  assert.ok(boxes.includes('moov') && boxes.includes('mdat'), `top-level boxes ${boxes}`);
  assert.ok(boxes.indexOf('moov') < boxes.indexOf('mdat'), `moov after mdat (not faststart): ${boxes}`);

  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${env.server.base}/`);
    const got = await playAndSeek(page, ready.downloadUrl);
    log(`mp4 ${name}: ${out.videoCodec}+${out.audioCodec} ${out.width}x${out.height} ${out.durationS} s (boxes ${boxes.join(' ')}); <video> ${got.width}x${got.height} ${got.duration.toFixed(3)} s, seek to ${got.seek.target.toFixed(3)} at ${got.seek.at.toFixed(3)} (readyState ${got.seek.readyState}), played ${got.played.from.toFixed(3)} -> ${got.played.to.toFixed(3)}`);
    assert.equal(got.width, out.width, 'videoWidth');
    assert.equal(got.height, out.height, 'videoHeight');
    assert.ok(Math.abs(got.duration - out.durationS) <= 0.1, `<video> duration ${got.duration} vs output.durationS ${out.durationS}`);
    assert.ok(Math.abs(got.seek.at - got.seek.target) <= 0.5, `seeked to ${got.seek.at}, wanted ${got.seek.target}`);
    assert.ok(got.seek.readyState >= 2, `no frame to show after the seek (readyState ${got.seek.readyState})`);
    assert.ok(got.played.to > got.played.from + 0.1, `play() did not move on from ${got.played.from}: ${JSON.stringify(got.played)}`);
  } finally {
    await context.close();
  }
}

const H264 = ['h264-mkv-ts500', 'mp4-avc1-kf1000-ts1000', 'mp4-avc1-opus-ts1000'];

describe('MP4 output', { timeout: 600_000 }, () => {
  const env = useServerAndBrowser();

  // Debian's Chromium is built with H.264 and AAC; a build without them fails here, loudly,
  // rather than skipping what follows.
  test('this Chromium plays H.264 and AAC in MP4', async () => {
    const context = await env.browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${env.server.base}/`);
      const support = await page.evaluate(() => {
        const types = ['video/mp4; codecs="avc1.42E01E"', 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"', 'video/mp4; codecs="avc1.42E01E, opus"'];
        const v = document.createElement('video');
        return Object.fromEntries(types.map((t) => [t, { mse: MediaSource.isTypeSupported(t), canPlayType: v.canPlayType(t) }]));
      });
      log(`mp4: ${JSON.stringify(support)}`);
      for (const [type, s] of Object.entries(support)) {
        assert.ok(s.mse && s.canPlayType !== '', `this Chromium (${process.env.CHROMIUM_PATH || '/usr/bin/chromium'}) cannot play ${type}: ${JSON.stringify(s)}`);
      }
    } finally {
      await context.close();
    }
  });

  for (const name of H264) {
    test(`${name}: remuxed to MP4, plays and seeks`, { timeout: 120_000 }, async () => {
      const f = fixture(name);
      const ready = await recordAndMerge(env.server.base, f, { output: 'mp4' });
      await checkMp4(env, name, ready, { videoCodec: 'h264', audioCodec: f.hasAudio ? 'opus' : null });
    });
  }

  test('mp4-avc1-opus-ts1000 with audio "aac": H.264 kept, Opus converted to AAC', { timeout: 120_000 }, async () => {
    const ready = await recordAndMerge(env.server.base, fixture('mp4-avc1-opus-ts1000'), { output: 'mp4', audio: 'aac' });
    await checkMp4(env, 'mp4-avc1-opus-ts1000-aac', ready, { videoCodec: 'h264', audioCodec: 'aac' });
  });

  test('vp8-opus-ts1000 with transcode: H.264 + AAC in MP4, plays and seeks', { timeout: 120_000 }, async () => {
    const ready = await recordAndMerge(env.server.base, fixture('vp8-opus-ts1000'), { output: 'mp4', transcode: true });
    await checkMp4(env, 'vp8-opus-ts1000-transcoded', ready, { videoCodec: 'h264', audioCodec: 'aac' });
  });

  test('vp8-opus-ts1000 as MP4 without transcode: the merge fails with transcode_required', { timeout: 120_000 }, async () => {
    await assert.rejects(
      recordAndMerge(env.server.base, fixture('vp8-opus-ts1000'), { output: 'mp4' }),
      (e) => /"code":"transcode_required"/.test(e.message),
    );
  });
});
