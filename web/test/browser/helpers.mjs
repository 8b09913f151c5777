// Shared by the browser tests: a `screenrec serve` on a free port (embedded, or Redis +
// LocalStack), headless Chromium with a canvas + oscillator stream standing in for the screen,
// a recording driven through the demo page, and ffprobe.
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const run = promisify(execFile);
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BACKEND = process.env.SCREENREC_WEB_BACKEND || 'embedded';
export const ARTIFACTS = path.join(process.env.SCREENREC_WEB_ARTIFACTS || path.join(ROOT, '.tmp/web-artifacts'), BACKEND);
mkdirSync(ARTIFACTS, { recursive: true });

/** Formats the tests record, with the upload mode each one uses and what ffprobe must see. */
export const FORMATS = {
  vp8: { mimeType: 'video/webm;codecs=vp8,opus', mode: 'presigned', video: 'vp8', audio: 'opus', container: 'webm' },
  vp9: { mimeType: 'video/webm;codecs=vp9,opus', mode: 'server', video: 'vp9', audio: 'opus', container: 'webm' },
  h264: { mimeType: 'video/x-matroska;codecs=avc1,opus', mode: 'websocket', video: 'h264', audio: 'opus', container: 'mkv' },
};

export function log(...args) {
  console.log(`[${BACKEND}]`, ...args);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function unique(prefix) {
  return `${prefix}-${process.pid}-${Date.now() % 1e8}-${randomBytes(2).toString('hex')}`;
}

/** A fresh LocalStack bucket that browsers on any origin may PUT to (presigned uploads). */
async function localstackBucket(endpoint) {
  const bucket = unique('screenrec-web');
  const created = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
  if (!created.ok) throw new Error(`creating bucket ${bucket}: ${created.status} ${await created.text()}`);
  const cors = `<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>`;
  const res = await fetch(`${endpoint}/${bucket}?cors`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/xml', 'Content-MD5': createHash('md5').update(cors).digest('base64') },
    body: cors,
  });
  if (!res.ok) throw new Error(`setting CORS on ${bucket}: ${res.status} ${await res.text()}`);
  return bucket;
}

/** The environment of the chosen backend (embedded: a temp directory; s3: Redis + LocalStack). */
async function backendEnv(dir) {
  if (BACKEND === 'embedded') return { STORAGE: 'fs', STORAGE_DIR: path.join(dir, 'data') };
  const redis = process.env.SCREENREC_TEST_REDIS_URL;
  const localstack = process.env.SCREENREC_TEST_LOCALSTACK;
  if (!redis || !localstack) throw new Error('the s3 backend needs SCREENREC_TEST_REDIS_URL and SCREENREC_TEST_LOCALSTACK (source .tmp/services/env)');
  return {
    STORAGE: 's3',
    S3_BUCKET: await localstackBucket(localstack),
    S3_ENDPOINT: localstack,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID || 'test',
    AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY || 'test',
    AWS_REGION: process.env.AWS_REGION || 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    REDIS_URL: redis,
    REDIS_PREFIX: `${unique('web')}:`,
  };
}

/**
 * For a `describe` block: a server (with `vars`) and a browser started before its tests and
 * stopped after them. Read `.server` and `.browser` inside the tests.
 */
export function useServerAndBrowser(vars = {}) {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer(vars);
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

/** Start `screenrec serve` ($SCREENREC_BIN) on a free port with `vars` on top; wait for /readyz. */
export async function startServer(vars = {}) {
  const bin = process.env.SCREENREC_BIN || path.join(ROOT, 'target/debug/screenrec');
  const dir = mkdtempSync(path.join(tmpdir(), 'screenrec-web-'));
  const port = await freePort();
  const env = {
    ...process.env,
    ...(await backendEnv(dir)),
    BIND_ADDR: `127.0.0.1:${port}`,
    MERGE_WORK_DIR: path.join(dir, 'work'),
    RUST_LOG: process.env.RUST_LOG || 'warn',
    ...vars,
  };
  // Serve the page from the binary unless asked to read web/ from disk (for development).
  if (process.env.SCREENREC_WEB_DIR) env.WEB_DIR = process.env.SCREENREC_WEB_DIR;
  else delete env.WEB_DIR;
  const logFile = path.join(ARTIFACTS, `server-${port}.log`);
  const out = openSync(logFile, 'w');
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', out, out] });
  let exited = null;
  child.on('exit', (code, signal) => (exited = code ?? signal));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited !== null) throw new Error(`screenrec serve exited (${exited}): ${readFileSync(logFile, 'utf8')}`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`screenrec serve not ready: ${readFileSync(logFile, 'utf8')}`);
    await sleep(100);
  }
  return {
    base,
    logFile,
    async stop() {
      if (exited === null) {
        child.kill('SIGTERM');
        await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
        if (exited === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
    ],
  });
}

/**
 * Runs in the page before its scripts: the screen becomes a canvas animation of `size` at
 * 30 fps with a 440 Hz tone, and MediaRecorder is tapped so the test keeps its own copy of every
 * chunk and the recorder's start and stop times.
 */
function fakeScreen([W, H]) {
  const tap = { chunks: [], startedAt: 0, stoppedAt: 0, frames: 0 };
  window.__tap = tap;

  function makeStream() {
    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    const ctx = canvas.getContext('2d');
    const stream = canvas.captureStream(0);
    const [track] = stream.getVideoTracks();
    const t0 = performance.now();
    const bars = Array.from({ length: 12 }, (_, i) => 0.3 + 0.6 * Math.abs(Math.sin(i * 1.7)));
    function draw() {
      const t = (performance.now() - t0) / 1000;
      const g = ctx.createLinearGradient(0, 0, W, H);
      g.addColorStop(0, '#1e1b4b');
      g.addColorStop(1, '#4338ca');
      ctx.fillStyle = g;
      ctx.fillRect(0, 0, W, H);
      // a window with a chart that moves
      ctx.save();
      ctx.scale(W / 960, H / 540);
      ctx.fillStyle = '#ffffff';
      ctx.beginPath();
      ctx.roundRect(80, 60, 800, 420, 14);
      ctx.fill();
      ctx.fillStyle = '#eef0f7';
      ctx.beginPath();
      ctx.roundRect(80, 60, 800, 40, [14, 14, 0, 0]);
      ctx.fill();
      ['#ff5f57', '#febc2e', '#28c840'].forEach((c, i) => {
        ctx.fillStyle = c;
        ctx.beginPath();
        ctx.arc(106 + i * 22, 80, 7, 0, Math.PI * 2);
        ctx.fill();
      });
      ctx.fillStyle = '#171a2b';
      ctx.font = '600 26px system-ui, sans-serif';
      ctx.fillText('Quarterly dashboard', 120, 150);
      ctx.fillStyle = '#5d6380';
      ctx.font = '18px system-ui, sans-serif';
      ctx.fillText(`Live for ${t.toFixed(1)} s`, 120, 180);
      bars.forEach((b, i) => {
        const h = 220 * (0.5 + 0.5 * Math.sin(t * 2 + i * 0.6)) * b + 20;
        ctx.fillStyle = i % 3 === 0 ? '#5046e5' : i % 3 === 1 ? '#8b84ff' : '#c7c3ff';
        ctx.beginPath();
        ctx.roundRect(130 + i * 58, 440 - h, 40, h, 6);
        ctx.fill();
      });
      const x = 130 + ((t * 120) % 660);
      ctx.fillStyle = '#ff6b78';
      ctx.beginPath();
      ctx.arc(x, 220, 10, 0, Math.PI * 2);
      ctx.fill();
      ctx.restore();
      track.requestFrame();
      tap.frames += 1;
    }
    draw();
    const timer = setInterval(draw, 1000 / 30);
    track.addEventListener('ended', () => clearInterval(timer));
    const audio = new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    gain.gain.value = 0.1;
    osc.frequency.value = 440;
    const dest = audio.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    const out = new MediaStream([track, ...dest.stream.getAudioTracks()]);
    const stopAll = MediaStreamTrack.prototype.stop;
    for (const t of out.getTracks()) {
      t.stop = function stop() {
        clearInterval(timer);
        stopAll.call(this);
      };
    }
    return out;
  }

  navigator.mediaDevices.getDisplayMedia = async () => makeStream();

  // The recording time is from the page's start() call to its stop() call, as a person sees it.
  const Native = window.MediaRecorder;
  window.MediaRecorder = class TappedMediaRecorder extends Native {
    constructor(...args) {
      super(...args);
      tap.chunks = [];
      tap.stoppedAt = 0;
      this.addEventListener('dataavailable', (e) => e.data.size && tap.chunks.push(e.data));
    }
    start(...args) {
      tap.startedAt = performance.now();
      return super.start(...args);
    }
    stop() {
      if (this.state !== 'inactive') tap.stoppedAt = performance.now();
      return super.stop();
    }
  };
}

/** A new page on the demo, with a fake screen of `size` pixels (and `init` run before the page). */
export async function openDemo(browser, base, { size = [960, 540], init } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  await context.addInitScript(fakeScreen, size);
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(base);
  await page.waitForSelector('body[data-ready="true"]');
  return { context, page, consoleLines };
}

/** Cut the page off the network (CDP offline emulation) for `ms`. */
export async function cutNetwork(page, ms) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const conditions = { latency: 0, downloadThroughput: -1, uploadThroughput: -1 };
  await cdp.send('Network.emulateNetworkConditions', { ...conditions, offline: true });
  await sleep(ms);
  await cdp.send('Network.emulateNetworkConditions', { ...conditions, offline: false });
  await cdp.detach();
}

/**
 * Record through the demo page's controls: pick the format and upload mode, start, wait
 * `seconds` (running `during(page)` after `duringAt` seconds), stop, and wait for the page to
 * show the finished video or an error.
 */
export async function recordOnDemo(page, { mimeType, mode, seconds = 8, timeslice = 1000, during, duringAt = 2 }) {
  await page.selectOption('#format', mimeType);
  await page.selectOption('#mode', mode);
  await page.selectOption('#timeslice', String(timeslice));
  await page.click('#start');
  await page.waitForSelector('#state-pill[data-state="recording"]', { timeout: 10_000 });
  const started = Date.now();
  if (during) {
    await sleep(duringAt * 1000);
    await during(page);
  }
  await sleep(Math.max(0, seconds * 1000 - (Date.now() - started)));
  await page.click('#stop');
  await page.waitForSelector('#result-badge[data-state="ready"], #error:not([hidden])', { timeout: 60_000 });
  const tap = await page.evaluate(() => ({
    recordedS: (window.__tap.stoppedAt - window.__tap.startedAt) / 1000,
    chunks: window.__tap.chunks.length,
    chunkSizes: window.__tap.chunks.map((c) => c.size),
    framesDrawn: window.__tap.frames,
  }));
  const error = await page.evaluate(() => (document.getElementById('error').hidden ? null : document.getElementById('error-message').textContent));
  return { ...tap, error };
}

/** The page's `<video>`: its duration, and whether seeking to the middle lands there. */
export async function checkPlayer(page) {
  return page.evaluate(async () => {
    const v = document.getElementById('player');
    if (v.readyState < 1) await new Promise((resolve, reject) => {
      v.addEventListener('loadedmetadata', resolve, { once: true });
      v.addEventListener('error', () => reject(new Error(`video error ${v.error && v.error.code}`)), { once: true });
    });
    const duration = v.duration;
    const target = duration / 2;
    const seeked = new Promise((resolve) => v.addEventListener('seeked', resolve, { once: true }));
    v.currentTime = target;
    await seeked;
    if (v.readyState < 2) await new Promise((resolve) => v.addEventListener('canplay', resolve, { once: true }));
    return { duration, target, currentTime: v.currentTime, readyState: v.readyState, seekable: v.seekable.length ? v.seekable.end(0) : 0 };
  });
}

/** Click the page's Download button and keep the file. */
export async function download(page, name) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const file = path.join(ARTIFACTS, name);
  await dl.saveAs(file);
  return file;
}

/** The test's own copy of what the recorder produced, joined into one file. */
export async function savePageChunks(page, name) {
  const b64 = await page.evaluate(async () => {
    const bytes = new Uint8Array(await new Blob(window.__tap.chunks).arrayBuffer());
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  });
  const file = path.join(ARTIFACTS, name);
  writeFileSync(file, Buffer.from(b64, 'base64'));
  return file;
}

/** ffprobe's streams: codec, type and packet count (a packet is a frame in these files). */
export async function probe(file) {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-count_packets', '-show_streams', '-show_format', '-of', 'json', file], { maxBuffer: 16 << 20 });
  const info = JSON.parse(stdout);
  const stream = (type) => info.streams.find((s) => s.codec_type === type);
  return {
    format: info.format.format_name,
    durationS: Number(info.format.duration),
    video: stream('video') && { codec: stream('video').codec_name, packets: Number(stream('video').nb_read_packets), width: stream('video').width, height: stream('video').height },
    audio: stream('audio') && { codec: stream('audio').codec_name, packets: Number(stream('audio').nb_read_packets) },
  };
}

/** A real Chromium recording from tests/fixtures/mediarecorder: its media type, whether it has
 * audio, and its chunks' bytes. */
export function fixture(name) {
  const dir = path.join(ROOT, 'tests/fixtures/mediarecorder', name);
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  return {
    mimeType: manifest.mimeType,
    hasAudio: manifest.hasAudio,
    chunks: manifest.chunks.map((c) => readFileSync(path.join(dir, c.file))),
  };
}

/** One API call from Node: its status and JSON body. Over the per-recording rate limit it waits
 * as told and sends again, as a client does. */
export async function call(base, method, route, { token, json, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (json) headers['content-type'] = 'application/json';
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`${base}${route}`, { method, headers, body: json ? JSON.stringify(json) : body });
    const text = await res.text();
    const answer = { status: res.status, body: text ? JSON.parse(text) : null };
    if (res.status !== 429 || attempt >= 50) return answer;
    await sleep(answer.body?.error?.retryAfterMs ?? 100);
  }
}
