// The Recorder end to end against fakes: the format choice, the REST calls of each upload mode,
// each chunk's checksum and the retry of a damaged one, stop with the final count, the events,
// and errors a person can act on.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { Api, MIME_TYPES, ScreenrecError, createRecorder, mediaError, pickMimeType } from '../../screenrec.js';
import { FakeClock, fakeCrypto, fakeMediaRecorders, fakeStream, fakeWebSockets, flush, jsonResponse, sha256Base64 } from './fakes.mjs';

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
    crypto: fakeCrypto(),
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


/** Start, lose the socket `drops` times (5 s apart) so that the recorder polls, record a chunk,
 *  stop, and let the status turn ready (`ready()`): the ready result. */
async function stopWhilePolling({ recorder, ws, mr, clock }, ready, drops = 1) {
  await recorder.start();
  for (let i = 0; i < drops; i++) {
    if (i > 0) await clock.advance(5000);
    ws.last().drop();
  }
  await flush();
  assert.equal(recorder.eventsMode, 'polling');
  mr.instances[0].data(10);
  const stopped = recorder.stop();
  await clock.advance(2000);
  ready();
  await clock.advance(2000);
  return stopped;
}

describe('format choice', () => {
  test('the first supported type of the preference list, or the one asked for', () => {
    const only = (ok) => ({ isTypeSupported: (t) => ok.includes(t) });
    assert.equal(pickMimeType(undefined, only(MIME_TYPES)), 'video/webm;codecs=vp9,opus');
    assert.equal(pickMimeType(undefined, only(['video/mp4'])), 'video/mp4');
    // An MP4 without transcoding: H.264 first, then anything (the server says if it cannot).
    assert.equal(pickMimeType(undefined, only(MIME_TYPES), { h264First: true }), 'video/webm;codecs=h264,opus');
    assert.equal(pickMimeType(undefined, only(['video/webm;codecs=vp8,opus']), { h264First: true }), 'video/webm;codecs=vp8,opus');
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

  test('a recording made by the app backend: no create, its token and its format', async () => {
    const routes = { [`GET /recordings/${ID}`]: () => jsonResponse(200, { recordingId: ID, status: 'recording', mimeType: 'video/webm;codecs=vp8,opus' }) };
    const { recorder, server, mr } = setup({ mode: 'server', routes, recording: { recordingId: ID, uploadToken: 'from-backend' } });
    await recorder.start();
    assert.equal(recorder.recordingId, ID);
    assert.equal(recorder.mimeType, 'video/webm;codecs=vp8,opus');
    assert.equal(mr.instances[0].mimeType, 'video/webm;codecs=vp8,opus');
    mr.instances[0].data(100);
    await flush();
    assert.deepEqual(server.keys(), [`GET /recordings/${ID}`, `PUT /recordings/${ID}/chunks/0`]);
    assert.equal(server.requests[1].init.headers.Authorization, 'Bearer from-backend');
    assert.throws(() => setup({ recording: { recordingId: ID } }), TypeError);
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
    const video = await stopWhilePolling({ recorder, ws, mr, clock }, () => (status = 'ready'), 2);
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

describe('output format and poster', () => {
  const VP8 = 'video/webm;codecs=vp8,opus';
  const H264 = 'video/x-matroska;codecs=avc1,opus';
  const creates = (server) => server.requests.filter((r) => r.key === 'POST /recordings').map((r) => r.body);

  test('the create body carries output, transcode and audio when given, and only those', async () => {
    const cases = [
      [{}, { mimeType: VP8 }],
      [{ output: 'mp4', transcode: true }, { mimeType: VP8, output: 'mp4', transcode: true }],
      [{ output: 'mp4', audio: 'aac' }, { mimeType: VP8, output: 'mp4', audio: 'aac' }],
      [{ output: 'native' }, { mimeType: VP8, output: 'native' }],
      [{ output: 'mp4', transcode: false, audio: 'copy' }, { mimeType: VP8, output: 'mp4', transcode: false, audio: 'copy' }],
    ];
    for (const [options, body] of cases) {
      const { recorder, server } = setup({ mimeType: VP8, ...options });
      await recorder.start();
      assert.deepEqual(creates(server), [body], JSON.stringify(options));
      recorder.cancel();
    }
  });

  test('a create retried after a 503 sends the same options again', async () => {
    let unavailable = 1;
    const { recorder, server, clock } = setup({
      mimeType: H264,
      output: 'mp4',
      audio: 'aac',
      routes: {
        'POST /recordings': () =>
          unavailable-- > 0 ? jsonResponse(503, { error: { code: 'storage_unavailable', message: 'down' } }) : jsonResponse(201, { recordingId: ID, uploadToken: 'tok' }),
      },
    });
    const started = recorder.start();
    await clock.advance(10_000);
    await started;
    assert.deepEqual(creates(server), [
      { mimeType: H264, output: 'mp4', audio: 'aac' },
      { mimeType: H264, output: 'mp4', audio: 'aac' },
    ]);
    assert.equal(recorder.state, 'recording');
    recorder.cancel();
  });

  test('Api.create leaves out the options not given', async () => {
    const bodies = [];
    const api = new Api({
      baseUrl: 'http://rec.test',
      timers: new FakeClock(),
      fetch: async (url, init) => {
        bodies.push(JSON.parse(init.body));
        return jsonResponse(201, { recordingId: ID, uploadToken: 'tok' });
      },
    });
    await api.create(VP8);
    await api.create(VP8, { output: 'mp4', transcode: true });
    assert.deepEqual(bodies, [{ mimeType: VP8 }, { mimeType: VP8, output: 'mp4', transcode: true }]);
  });

  test('with a recording the app backend created, output options are a TypeError', () => {
    for (const option of [{ output: 'mp4' }, { transcode: true }, { audio: 'aac' }]) {
      assert.throws(() => setup({ recording: { recordingId: ID, uploadToken: 'from-backend' }, ...option }), TypeError, JSON.stringify(option));
    }
  });

  test('a 400 transcode_required at create: a clear error with that code, no retry, recording failed', async () => {
    const { recorder, server, mr, of } = setup({
      mimeType: VP8,
      output: 'mp4',
      routes: {
        'POST /recordings': () => jsonResponse(400, { error: { code: 'transcode_required', message: 'an MP4 of vp8 video needs "transcode": true (it is re-encoded to H.264)' } }),
      },
    });
    let error;
    await assert.rejects(recorder.start(), (e) => {
      error = e;
      return e instanceof ScreenrecError;
    });
    assert.equal(error.code, 'server_refused');
    assert.equal(error.serverCode, 'transcode_required');
    assert.equal(error.status, 400);
    assert.equal(error.retryable, false);
    assert.equal(error.details.code, 'transcode_required');
    assert.match(error.message, /an MP4 of video\/webm;codecs=vp8,opus needs its video re-encoded to H\.264/);
    assert.match(error.message, /transcode: true/);
    assert.equal(creates(server).length, 1, 'a refusal is not retried');
    assert.equal(recorder.state, 'failed');
    assert.deepEqual(of('error'), [error]);
    assert.equal(mr.instances.length, 0, 'nothing was recorded');
    await assert.rejects(recorder.ready, (e) => e === error);
  });

  test('a 400 invalid_output at create says which options go together', async () => {
    const { recorder } = setup({
      transcode: true,
      routes: { 'POST /recordings': () => jsonResponse(400, { error: { code: 'invalid_output', message: 'invalid output: transcode and audio apply to "output": "mp4" only' } }) },
    });
    await assert.rejects(
      recorder.start(),
      (e) =>
        e.code === 'server_refused' &&
        e.serverCode === 'invalid_output' &&
        e.status === 400 &&
        /transcode and audio apply to "output": "mp4" only/.test(e.message) &&
        /'native' or 'mp4'/.test(e.message),
    );
  });

  test('a merge that fails with transcode_required (only the chunks named the codec) says so', async () => {
    const { recorder, ws, mr } = setup({ mimeType: 'video/webm', output: 'mp4' });
    await recorder.start();
    const sock = subscribe(ws);
    mr.instances[0].data(10);
    const stopped = recorder.stop();
    await flush();
    sock.reply({ type: 'recordingError', recordingId: ID, version: 1, code: 'transcode_required', message: 'an MP4 of vp9 video needs "transcode": true (it is re-encoded to H.264)' });
    await assert.rejects(stopped, (e) => e.code === 'merge_failed' && e.serverCode === 'transcode_required' && /could not make an MP4 of this recording/.test(e.message));
  });

  test('the recordingReady event’s posterUrl is in the ready result; absent when the server sends none', async () => {
    for (const posterUrl of ['http://store.test/poster.jpg?sig', undefined]) {
      const { recorder, ws, mr, of } = setup({ output: 'mp4', transcode: true });
      await recorder.start();
      const sock = subscribe(ws);
      mr.instances[0].data(10);
      const stopped = recorder.stop();
      await flush();
      sock.reply({ type: 'recordingReady', recordingId: ID, version: 1, downloadUrl: 'http://store.test/out.mp4?sig', posterUrl, expiresAt: 'later', durationS: 3, sizeBytes: 99, container: 'mp4' });
      const video = await stopped;
      const expected = { recordingId: ID, downloadUrl: 'http://store.test/out.mp4?sig', expiresAt: 'later', durationS: 3, sizeBytes: 99, container: 'mp4' };
      assert.deepEqual(video, posterUrl ? { ...expected, posterUrl } : expected);
      assert.equal('posterUrl' in video, Boolean(posterUrl));
      assert.deepEqual(of('ready'), [video]);
      assert.equal(recorder.result, video);
    }
  });

  test('polling: the ready status’s posterUrl is in the ready result', async () => {
    let status = 'merging';
    const { recorder, ws, mr, clock } = setup({
      fallbackAfter: 1,
      routes: {
        'GET /recordings/\\w+': () =>
          jsonResponse(
            200,
            status === 'ready'
              ? { status, chunksReceived: 1, bytesReceived: 10, format: { output: 'mp4' }, output: { durationS: 2, sizeBytes: 5, container: 'mp4' }, downloadUrl: 'http://store.test/out.mp4?sig', posterUrl: 'http://store.test/poster.jpg?sig' }
              : { status, chunksReceived: 1, bytesReceived: 10 },
          ),
        'GET /recordings/\\w+/download': () => jsonResponse(200, undefined, 'http://store.test/out.mp4?sig'),
      },
    });
    assert.deepEqual(await stopWhilePolling({ recorder, ws, mr, clock }, () => (status = 'ready')), { downloadUrl: 'http://store.test/out.mp4?sig', posterUrl: 'http://store.test/poster.jpg?sig', durationS: 2, sizeBytes: 5, container: 'mp4', recordingId: ID });
  });
});

describe('chunk checksums', () => {
  const CHECKSUM = 'x-amz-checksum-sha256';
  const damaged = () => jsonResponse(400, { error: { code: 'checksum_mismatch', message: 'the body’s SHA-256 is AAAA, BBBB was declared' } });
  const xml = (status, code) => ({ ...jsonResponse(status), text: async () => `<?xml version="1.0"?><Error><Code>${code}</Code></Error>` });

  /**
   * Presigned routes: a grant signs the declared checksum (and one more header) into the URL;
   * `storage(seq)` and `confirm(seq)` may answer something other than success.
   */
  function presignedRoutes({ storage = () => null, confirm = () => null } = {}) {
    return {
      'POST /recordings/\\w+/chunks': ({ init }) => {
        const { seq, sha256 } = JSON.parse(init.body);
        const headers = sha256 ? { [CHECKSUM]: sha256, 'x-amz-sdk-checksum-algorithm': 'SHA256' } : undefined;
        return jsonResponse(200, { index: seq, uploadUrl: `http://store.test/b/${seq}?sig`, method: 'PUT', headers, alreadyStored: false });
      },
      'PUT /b/\\d+': ({ url }) => storage(Number(new URL(url).pathname.split('/').at(-1))) || jsonResponse(200, undefined),
      'POST /recordings/\\w+/chunks/\\d+/complete': ({ url }) => {
        const seq = Number(url.split('/').at(-2));
        return confirm(seq) || jsonResponse(200, { index: seq, duplicate: false });
      },
    };
  }

  /** Stop, let the uploads and their retries run, and finish with the server's ready event. */
  async function finish({ recorder, ws, clock }) {
    const sock = subscribe(ws);
    const stopped = recorder.stop();
    await clock.advance(60_000);
    sock.reply({ type: 'recordingReady', recordingId: ID, version: 1, downloadUrl: 'u', durationS: 1, sizeBytes: 1, container: 'webm' });
    return stopped;
  }

  test('server mode: each PUT carries the base64 SHA-256 of its bytes', async () => {
    const t = setup({ mode: 'server' });
    const parts = [randomBytes(1000), randomBytes(3000)];
    await t.recorder.start();
    for (const bytes of parts) t.mr.instances[0].data(bytes);
    await flush();
    const puts = t.server.requests.filter((r) => r.key.startsWith('PUT '));
    assert.deepEqual(
      puts.map((r) => r.init.headers[CHECKSUM]),
      parts.map((bytes) => sha256Base64(bytes)),
    );
    assert.equal(puts[0].init.headers['Content-Type'], 'application/octet-stream');
    t.recorder.cancel();
  });

  test('node’s WebCrypto gives the same checksum, once per chunk', async () => {
    const api = new Api({ baseUrl: 'http://rec.test', fetch: async () => jsonResponse(200, {}), timers: new FakeClock() });
    const bytes = randomBytes(5000);
    const blob = new Blob([bytes]);
    assert.equal(await api.checksum(blob), sha256Base64(bytes));
    assert.equal(api.checksum(blob), api.checksum(blob), 'the same promise for the same chunk');
  });

  test('presigned mode: the grant declares size and checksum, and its headers go with the PUT to storage', async () => {
    const t = setup({ mode: 'presigned', routes: presignedRoutes() });
    const bytes = randomBytes(2000);
    await t.recorder.start();
    t.mr.instances[0].data(bytes);
    await flush();
    const grant = t.server.requests.find((r) => r.key === `POST /recordings/${ID}/chunks`);
    assert.deepEqual(grant.body, { seq: 0, size: 2000, sha256: sha256Base64(bytes) });
    const put = t.server.requests.find((r) => r.key === 'PUT /b/0');
    assert.deepEqual(put.init.headers, { [CHECKSUM]: sha256Base64(bytes), 'x-amz-sdk-checksum-algorithm': 'SHA256' }, 'every signed header, and no Authorization');
    assert.ok(t.server.keys().includes(`POST /recordings/${ID}/chunks/0/complete`));
    t.recorder.cancel();
  });

  test('server mode: a chunk that arrived damaged is sent again after a backoff, with the same checksum', async () => {
    let damage = 1;
    const crypto = fakeCrypto();
    const t = setup({ mode: 'server', crypto, routes: { 'PUT /recordings/\\w+/chunks/0': () => (damage-- > 0 ? damaged() : jsonResponse(200, { index: 0, duplicate: false })) } });
    const bytes = randomBytes(1500);
    await t.recorder.start();
    t.mr.instances[0].data(bytes);
    await flush();
    assert.equal(t.recorder.progress.lastError, 'Uploading part 1: the part arrived damaged (the body’s SHA-256 is AAAA, BBBB was declared)');
    assert.ok(t.clock.pending.length > 0, 'backing off');
    const video = await finish(t);
    assert.equal(video.downloadUrl, 'u');
    const puts = t.server.requests.filter((r) => r.key === `PUT /recordings/${ID}/chunks/0`);
    assert.equal(puts.length, 2);
    assert.deepEqual(puts.map((r) => r.init.headers[CHECKSUM]), [sha256Base64(bytes), sha256Base64(bytes)]);
    assert.equal(crypto.digests, 2, 'one digest per chunk (the 10-byte final one too), none per retry');
    assert.deepEqual(t.of('error'), []);
  });

  const presignedDamage = {
    'the file store refuses the body (400 checksum_mismatch)': { storage: damaged },
    'the file store refuses a body it did not sign (403 invalid_signature)': {
      storage: () => jsonResponse(403, { error: { code: 'invalid_signature', message: 'signed URL is not valid' } }),
    },
    'S3 refuses the body (400 BadDigest)': { storage: () => xml(400, 'BadDigest') },
    'S3 refuses a body it did not sign (403 SignatureDoesNotMatch)': { storage: () => xml(403, 'SignatureDoesNotMatch') },
    'the confirmation finds another object (400 checksum_mismatch)': { confirm: damaged },
  };
  for (const [name, answer] of Object.entries(presignedDamage)) {
    test(`presigned mode: ${name}: grant, PUT and confirm again`, async () => {
      let damage = 1;
      const once = (respond) => respond && ((seq) => (seq === 0 && damage-- > 0 ? respond() : null));
      const t = setup({ mode: 'presigned', routes: presignedRoutes({ storage: once(answer.storage), confirm: once(answer.confirm) }) });
      await t.recorder.start();
      t.mr.instances[0].data(randomBytes(800));
      await finish(t);
      const chunk0 = t.server.requests.map((r) => {
        if (r.key === `POST /recordings/${ID}/chunks` && JSON.parse(r.init.body).seq === 0) return 'grant';
        if (r.key === 'PUT /b/0') return 'put';
        if (r.key === `POST /recordings/${ID}/chunks/0/complete`) return 'confirm';
        return null;
      });
      const first = answer.confirm ? ['grant', 'put', 'confirm'] : ['grant', 'put'];
      assert.deepEqual(chunk0.filter(Boolean), [...first, 'grant', 'put', 'confirm']);
      assert.deepEqual(t.of('error'), []);
      assert.equal(t.recorder.state, 'ready');
    });
  }

  test('a chunk damaged on every attempt fails the recording once the retries run out', async () => {
    const t = setup({ mode: 'server', retry: { maxAttempts: 3 }, routes: { 'PUT /recordings/\\w+/chunks/0': damaged } });
    await t.recorder.start();
    t.mr.instances[0].data(100);
    await t.clock.advance(60_000);
    assert.equal(t.server.requests.filter((r) => r.key === `PUT /recordings/${ID}/chunks/0`).length, 3);
    assert.equal(t.recorder.state, 'failed');
    const [err] = t.of('error');
    assert.equal(err.serverCode, 'checksum_mismatch');
    assert.equal(err.status, 400);
    assert.equal(err.retryable, true);
    assert.match(err.message, /part 1: the part arrived damaged/);
  });

  for (const [name, crypto] of Object.entries({ 'no crypto.subtle (an insecure context)': {}, 'no crypto at all': null })) {
    test(`${name}: chunks go without a checksum, and the recording works`, async () => {
      for (const mode of ['server', 'presigned']) {
        const t = setup({ mode, crypto, routes: presignedRoutes() });
        await t.recorder.start();
        t.mr.instances[0].data(700);
        const video = await finish(t);
        assert.equal(video.downloadUrl, 'u');
        for (const r of t.server.requests) assert.equal(r.init.headers?.[CHECKSUM], undefined, `${mode}: ${r.key}`);
        if (mode === 'presigned') {
          const grants = t.server.requests.filter((r) => r.key === `POST /recordings/${ID}/chunks`);
          assert.deepEqual(grants.map((r) => r.body), [{ seq: 0, size: 700 }, { seq: 1, size: 10 }]);
        }
      }
    });
  }
});
