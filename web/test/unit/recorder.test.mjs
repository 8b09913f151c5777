// The Recorder end to end against fakes: the format choice, the REST calls of each upload mode,
// stop with the final count, the events, and errors a person can act on.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Api, MIME_TYPES, ScreenrecError, createRecorder, mediaError, pickMimeType } from '../../screenrec.js';
import { FakeClock, fakeMediaRecorders, fakeStream, fakeWebSockets, flush, jsonResponse } from './fakes.mjs';

const ID = '01JABCDEFGHJKMNPQRSTVWXYZ0';

/** A fake server over fetch: records each request, answers from `routes`. */
function fakeServer(routes = {}) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    const key = `${init.method || 'GET'} ${u.pathname}`;
    requests.push({ key, url, init, body: typeof init.body === 'string' ? JSON.parse(init.body) : init.body });
    for (const [pattern, handler] of Object.entries(routes)) {
      if (new RegExp(`^${pattern}$`).test(key)) return handler({ url, init, key });
    }
    if (key === 'POST /recordings') return jsonResponse(201, { recordingId: ID, uploadToken: 'tok' });
    if (/^PUT \/recordings\/\w+\/chunks\/\d+$/.test(key)) return jsonResponse(200, { index: Number(key.split('/').at(-1)), duplicate: false });
    if (/^POST \/recordings\/\w+\/stop$/.test(key)) return jsonResponse(202, { status: 'stopping' });
    return jsonResponse(404, { error: { code: 'not_found', message: 'no route' } });
  };
  return { fetch, requests, keys: () => requests.map((r) => r.key) };
}

function setup({ mode = 'server', routes, supported, ...opts } = {}) {
  const clock = new FakeClock();
  const server = fakeServer(routes);
  const ws = fakeWebSockets();
  const mr = fakeMediaRecorders(supported);
  const events = [];
  const recorder = createRecorder(fakeStream(), {
    baseUrl: 'http://rec.test',
    mode,
    fetch: server.fetch,
    WebSocket: ws.WebSocket,
    MediaRecorder: mr.MediaRecorder,
    timers: clock,
    random: () => 0.5,
    onlineTarget: null,
    minChunkBytes: 1,
    ...opts,
  });
  for (const type of ['progress', 'chunkSaved', 'mergeProgress', 'ready', 'error', 'state']) {
    recorder.on(type, (detail) => events.push({ type, detail }));
  }
  return { recorder, server, ws, mr, clock, events, of: (type) => events.filter((e) => e.type === type).map((e) => e.detail) };
}

/** Play the server's side of the event socket. */
function subscribe(ws) {
  const sock = ws.sockets.find((s) => s.url === 'ws://rec.test/ws');
  sock.open();
  sock.reply({ type: 'subscribed', recordingId: ID, version: 0 });
  return sock;
}

describe('format choice', () => {
  test('the first supported type of the preference list, or the one asked for', () => {
    const only = (ok) => ({ isTypeSupported: (t) => ok.includes(t) });
    assert.equal(pickMimeType(undefined, only(MIME_TYPES)), 'video/webm;codecs=vp9,opus');
    assert.equal(pickMimeType(undefined, only(['video/mp4'])), 'video/mp4');
    assert.equal(pickMimeType('video/webm;codecs=vp8,opus', only(MIME_TYPES)), 'video/webm;codecs=vp8,opus');
    assert.throws(() => pickMimeType('video/webm;codecs=hevc', only(MIME_TYPES)), (e) => e.code === 'unsupported_format');
    assert.throws(() => pickMimeType(undefined, only([])), (e) => e.code === 'unsupported_format');
    assert.throws(() => pickMimeType(undefined, undefined), (e) => e.code === 'unsupported_browser' && /MediaRecorder/.test(e.message));
  });

  test('capture failures become errors a person can act on', () => {
    const denied = mediaError(Object.assign(new Error('x'), { name: 'NotAllowedError' }), 'screen');
    assert.equal(denied.code, 'permission_denied');
    assert.match(denied.message, /Screen sharing was cancelled or blocked/);
    assert.equal(mediaError({ name: 'NotAllowedError' }, 'camera').code, 'permission_denied');
    assert.equal(mediaError({ name: 'NotFoundError' }, 'camera').code, 'no_device');
    assert.equal(mediaError({ name: 'NotReadableError' }, 'camera').code, 'device_busy');
  });
});

describe('Api', () => {
  test('errors keep the server code; 5xx and network failures are retryable', async () => {
    const api = (respond) => new Api({ baseUrl: 'http://rec.test', fetch: respond, timers: new FakeClock() });
    await assert.rejects(
      api(async () => jsonResponse(413, { error: { code: 'chunk_too_large', message: 'chunk is larger than 1024 bytes' } })).putChunk(ID, 't', 2, new Blob(['x'])),
      (e) => e.code === 'server_refused' && e.serverCode === 'chunk_too_large' && e.status === 413 && !e.retryable && /part 3/.test(e.message),
    );
    await assert.rejects(api(async () => jsonResponse(503, { error: { code: 'storage_unavailable', message: 'down' } })).status(ID, 't'), (e) => e.retryable);
    await assert.rejects(api(async () => jsonResponse(502, undefined)).status(ID, 't'), (e) => e.retryable && e.serverCode === 'http_502');
    await assert.rejects(
      api(async () => {
        throw new TypeError('Failed to fetch');
      }).status(ID, 't'),
      (e) => e.code === 'network' && e.retryable,
    );
  });
});

describe('Recorder', () => {
  test('server mode: creates, uploads every non-empty chunk by seq, stops with the count, resolves on ready', async () => {
    const { recorder, server, ws, mr, clock, of } = setup({ mode: 'server', timeslice: 500 });
    await recorder.start();
    assert.equal(recorder.state, 'recording');
    assert.equal(mr.instances[0].timeslice, 500);
    assert.deepEqual(server.requests[0].body, { mimeType: 'video/webm;codecs=vp9,opus' });
    const sock = subscribe(ws);
    const m = mr.instances[0];
    m.data(100);
    m.data(0); // an empty blob takes no seq
    m.data(200);
    await flush();
    sock.reply({ type: 'chunkSaved', recordingId: ID, version: 1, index: 0, bytesReceived: 100 });
    const stopped = recorder.stop();
    await flush();
    assert.deepEqual(server.keys(), ['POST /recordings', `PUT /recordings/${ID}/chunks/0`, `PUT /recordings/${ID}/chunks/1`, `PUT /recordings/${ID}/chunks/2`, `POST /recordings/${ID}/stop`]);
    assert.deepEqual(server.requests.at(-1).body, { chunkCount: 3 });
    assert.equal(server.requests[1].init.headers.Authorization, 'Bearer tok');
    assert.equal(recorder.state, 'merging');
    sock.reply({ type: 'mergeProgress', recordingId: ID, version: 2, percent: 40 });
    sock.reply({ type: 'recordingReady', recordingId: ID, version: 3, downloadUrl: 'http://rec.test/files/x', expiresAt: 'later', durationS: 8.1, sizeBytes: 1000, container: 'webm' });
    const video = await stopped;
    assert.equal(video.downloadUrl, 'http://rec.test/files/x');
    assert.equal(recorder.state, 'ready');
    assert.deepEqual(of('chunkSaved'), [{ index: 0, bytesReceived: 100 }]);
    assert.deepEqual(of('mergeProgress'), [{ percent: 40 }]);
    assert.equal(of('ready').length, 1);
    assert.deepEqual(of('state').map((s) => s.state), ['starting', 'recording', 'uploading', 'merging', 'ready']);
    const last = of('progress').at(-1);
    assert.equal(last.chunksUploaded, 3);
    assert.equal(last.bytesUploaded, 310);
    assert.equal(sock.closedByClient, true, 'the event socket is closed when done');
    assert.equal(clock.pending.length, 0, 'no timers left behind');
  });

  test('eventsUrl: the serverless WebSocket API, with the recording and token in the query', async () => {
    const { recorder, ws } = setup({ mode: 'presigned', eventsUrl: 'wss://api.example/prod' });
    await recorder.start();
    await flush();
    const urls = ws.sockets.map((s) => s.url);
    assert.deepEqual(urls, [`wss://api.example/prod?recordingId=${ID}&token=tok`]);
    recorder.cancel();
  });

  test('presigned mode: grant, PUT to storage, confirm; an already stored chunk is skipped', async () => {
    const { recorder, server, ws, mr } = setup({
      mode: 'presigned',
      routes: {
        'POST /recordings/\\w+/chunks': ({ init }) => {
          const { seq } = JSON.parse(init.body);
          return jsonResponse(200, seq === 1 ? { index: 1, alreadyStored: true } : { index: seq, uploadUrl: `http://store.test/b/${seq}?sig`, method: 'PUT', alreadyStored: false });
        },
        'PUT /b/\\d+': () => jsonResponse(200, undefined),
        'POST /recordings/\\w+/chunks/\\d+/complete': ({ url }) => jsonResponse(200, { index: Number(url.split('/').at(-2)), duplicate: false }),
      },
    });
    await recorder.start();
    const sock = subscribe(ws);
    mr.instances[0].data(50);
    mr.instances[0].data(60);
    const stopped = recorder.stop();
    await flush();
    assert.deepEqual(
      server.keys().filter((k) => !k.endsWith('/stop') && k !== 'POST /recordings'),
      [`POST /recordings/${ID}/chunks`, `PUT /b/0`, `POST /recordings/${ID}/chunks/0/complete`, `POST /recordings/${ID}/chunks`, `POST /recordings/${ID}/chunks`, 'PUT /b/2', `POST /recordings/${ID}/chunks/2/complete`].sort((a, b) => server.keys().indexOf(a) - server.keys().indexOf(b)),
    );
    assert.equal(server.requests.find((r) => r.key === 'PUT /b/0').init.headers, undefined, 'no Authorization header goes to storage');
    assert.deepEqual(server.requests.at(-1).body, { chunkCount: 3 });
    sock.reply({ type: 'recordingReady', recordingId: ID, version: 1, downloadUrl: 'u', durationS: 1, sizeBytes: 1, container: 'webm' });
    assert.equal((await stopped).downloadUrl, 'u');
  });

  test('websocket mode: chunks go as frames on an authorised socket', async () => {
    const { recorder, ws, mr, server } = setup({ mode: 'websocket' });
    await recorder.start();
    const events = subscribe(ws);
    mr.instances[0].data(10);
    await flush();
    const upload = ws.sockets.find((s) => s !== events);
    upload.open();
    upload.reply({ type: 'authorized', recordingId: ID, requestId: 'auth' });
    await flush();
    assert.equal(upload.frames.length, 1);
    upload.reply({ type: 'chunkAck', recordingId: ID, seq: 0, index: 0, duplicate: false });
    const stopped = recorder.stop();
    await flush();
    upload.reply({ type: 'chunkAck', recordingId: ID, seq: 1, index: 1, duplicate: false });
    await flush();
    assert.deepEqual(server.requests.at(-1).body, { chunkCount: 2 });
    events.reply({ type: 'recordingReady', recordingId: ID, version: 1, downloadUrl: 'u', durationS: 1, sizeBytes: 1, container: 'webm' });
    await stopped;
    assert.equal(upload.closedByClient, true);
  });

  test('blobs under minChunkBytes wait for the next one (a first blob may be one byte of the header)', async () => {
    const { recorder, server, ws, mr } = setup({ minChunkBytes: 100 });
    const chunks = [];
    recorder.on('chunk', (c) => chunks.push([c.seq, c.size]));
    await recorder.start();
    const sock = subscribe(ws);
    mr.instances[0].data(1);
    await flush();
    assert.deepEqual(chunks, []);
    assert.equal(recorder.progress.bytesRecorded, 1);
    mr.instances[0].data(150);
    mr.instances[0].data(20);
    const stopped = recorder.stop(); // the fake's final blob is 10 bytes
    await flush();
    assert.deepEqual(chunks, [[0, 151], [1, 30]]);
    assert.deepEqual(server.requests.at(-1).body, { chunkCount: 2 });
    sock.reply({ type: 'recordingReady', recordingId: ID, version: 1, downloadUrl: 'u', durationS: 1, sizeBytes: 1, container: 'webm' });
    await stopped;
  });

  test('a refused chunk: an error event that names the part, recording stops, stop() rejects instead of hanging', async () => {
    const { recorder, mr, of } = setup({
      routes: { 'PUT /recordings/\\w+/chunks/1': () => jsonResponse(413, { error: { code: 'chunk_too_large', message: 'chunk is larger than 1024 bytes' } }) },
    });
    await recorder.start();
    mr.instances[0].data(10);
    mr.instances[0].data(5000);
    await flush();
    assert.equal(recorder.state, 'failed');
    assert.equal(mr.instances[0].state, 'inactive', 'the browser recorder is stopped');
    const [err] = of('error');
    assert.equal(err.code, 'chunk_refused');
    assert.match(err.message, /refused part 2 of the recording because it is too large/);
    await assert.rejects(recorder.stop(), (e) => e === err);
    await assert.rejects(recorder.ready, (e) => e === err);
  });

  test('a merge failure from the server is an error event', async () => {
    const { recorder, ws, mr, of } = setup();
    await recorder.start();
    const sock = subscribe(ws);
    mr.instances[0].data(10);
    const stopped = recorder.stop();
    await flush();
    sock.reply({ type: 'recordingError', recordingId: ID, version: 1, code: 'missing_header', message: 'chunk 0 has no header' });
    await assert.rejects(stopped, (e) => e.code === 'merge_failed' && e.serverCode === 'missing_header');
    assert.equal(of('error').length, 1);
  });

  test('without a working socket it polls the status and takes the download URL from the redirect', async () => {
    let status = 'merging';
    const { recorder, ws, mr, clock, of } = setup({
      fallbackAfter: 2,
      routes: {
        'GET /recordings/\\w+': () => jsonResponse(200, { status, chunksReceived: 1, bytesReceived: 10, output: status === 'ready' ? { durationS: 2, sizeBytes: 5, container: 'webm' } : undefined }),
        'GET /recordings/\\w+/download': () => jsonResponse(200, undefined, 'http://store.test/out.webm?sig'),
      },
    });
    await recorder.start();
    ws.last().drop();
    await clock.advance(5000);
    ws.last().drop();
    await flush();
    assert.equal(recorder.eventsMode, 'polling');
    mr.instances[0].data(10);
    const stopped = recorder.stop();
    await clock.advance(2000);
    status = 'ready';
    await clock.advance(2000);
    const video = await stopped;
    assert.deepEqual(video, { downloadUrl: 'http://store.test/out.webm?sig', durationS: 2, sizeBytes: 5, container: 'webm', recordingId: ID });
    assert.ok(of('chunkSaved').length >= 1);
  });

  test('a server that cannot be reached at start is a clear error', async () => {
    const { recorder, clock } = setup({
      routes: {
        'POST /recordings': () => {
          throw new TypeError('Failed to fetch');
        },
      },
    });
    const started = recorder.start();
    started.catch(() => {});
    await clock.advance(60_000);
    await assert.rejects(started, (e) => e instanceof ScreenrecError && e.code === 'network' && /recording server/.test(e.message));
    assert.equal(recorder.state, 'failed');
  });

  test('pause and resume leave the paused time out of the duration', async () => {
    const { recorder, clock } = setup();
    await recorder.start();
    await clock.advance(1000);
    recorder.pause();
    await clock.advance(5000);
    recorder.resume();
    await clock.advance(500);
    assert.equal(recorder.durationMs, 1500);
    recorder.cancel();
  });
});
