// The WebSocket pieces: chunk frames and acks on the upload socket, and the event stream's
// reconnect with the last version and its fallback to polling.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventStream, ScreenrecError, SocketChannel, chunkFrameHeader, socketTransport } from '../../screenrec.js';
import { FakeClock, blob, fakeWebSockets, flush } from './fakes.mjs';

const ID = '01JABCDEFGHJKMNPQRSTVWXYZ0';

describe('chunk frames', () => {
  test('header: version 1, seq flag, id length, id, big-endian seq', () => {
    const h = chunkFrameHeader(ID, 0x01020304);
    assert.equal(h.length, 3 + 26 + 4);
    assert.deepEqual([...h.subarray(0, 3)], [1, 1, 26]);
    assert.equal(new TextDecoder().decode(h.subarray(3, 29)), ID);
    assert.deepEqual([...h.subarray(29)], [1, 2, 3, 4]);
  });
});

describe('SocketChannel', () => {
  function channel() {
    const clock = new FakeClock();
    const ws = fakeWebSockets();
    const ch = new SocketChannel({ url: 'ws://x/ws', recordingId: ID, token: 'tok', WebSocket: ws.WebSocket, timers: clock, connectTimeoutMs: 1000, ackTimeoutMs: 5000 });
    return { ch, ws, clock };
  }

  async function authorize(sock) {
    sock.open();
    assert.deepEqual(sock.json.at(-1), { type: 'auth', recordingId: ID, token: 'tok', requestId: 'auth' });
    sock.reply({ type: 'authorized', recordingId: ID, requestId: 'auth' });
    await flush();
  }

  test('authorises once, sends a frame per chunk and resolves each on its ack', async () => {
    const { ch, ws } = channel();
    const a = ch.send(0, blob(3));
    const b = ch.send(1, blob(4));
    await authorize(ws.last());
    assert.equal(ws.sockets.length, 1);
    const frames = ws.last().frames;
    assert.equal(frames.length, 2);
    assert.equal(frames[0].size, 33 + 3);
    ws.last().reply({ type: 'chunkAck', recordingId: ID, seq: 1, index: 1, duplicate: false });
    ws.last().reply({ type: 'chunkAck', recordingId: ID, seq: 0, index: 0, duplicate: true });
    assert.deepEqual(await a, { index: 0, duplicate: true });
    assert.deepEqual(await b, { index: 1, duplicate: false });
  });

  test('a dropped socket fails the chunks in flight as retryable, and the next send reconnects', async () => {
    const { ch, ws } = channel();
    const a = ch.send(0, blob(3));
    await authorize(ws.last());
    ws.last().drop(1006);
    await assert.rejects(a, (e) => e.code === 'network' && e.retryable);
    const b = ch.send(0, blob(3));
    assert.equal(ws.sockets.length, 2);
    await authorize(ws.last());
    ws.last().reply({ type: 'chunkAck', recordingId: ID, seq: 0, index: 0, duplicate: false });
    assert.equal((await b).index, 0);
  });

  test('an error frame for a chunk rejects that chunk with the server code', async () => {
    const { ch, ws } = channel();
    const a = ch.send(4, blob(3));
    await authorize(ws.last());
    ws.last().reply({ type: 'error', recordingId: ID, seq: 4, error: { code: 'chunk_conflict', message: 'other bytes' } });
    await assert.rejects(a, (e) => e instanceof ScreenrecError && e.serverCode === 'chunk_conflict' && !e.retryable);
    const b = ch.send(5, blob(3));
    await flush();
    ws.last().reply({ type: 'error', recordingId: ID, seq: 5, error: { code: 'storage_unavailable', message: 'down' } });
    await assert.rejects(b, (e) => e.retryable);
  });

  test('close code 1009 (message too big) is a refusal, not a network error', async () => {
    const { ch, ws } = channel();
    const a = ch.send(0, blob(3));
    await authorize(ws.last());
    ws.last().drop(1009);
    await assert.rejects(a, (e) => e.serverCode === 'chunk_too_large' && !e.retryable);
  });

  test('a refused auth rejects the send; a socket that never opens times out as a network error', async () => {
    const { ch, ws, clock } = channel();
    const a = ch.send(0, blob(3));
    ws.last().open();
    ws.last().reply({ type: 'error', requestId: 'auth', error: { code: 'invalid_token', message: 'bad token' } });
    await assert.rejects(a, (e) => e.serverCode === 'invalid_token');
    const b = ch.send(0, blob(3));
    b.catch(() => {});
    await clock.advance(1000);
    await assert.rejects(b, (e) => e.code === 'network');
  });

  test('a chunk with no ack in time fails as retryable and the socket is replaced', async () => {
    const { ch, ws, clock } = channel();
    const a = ch.send(0, blob(3));
    a.catch(() => {});
    await authorize(ws.last());
    await clock.advance(5000);
    await assert.rejects(a, (e) => e.code === 'network');
    assert.equal(ws.last().closedByClient, true);
  });
});

describe('socketTransport', () => {
  test('a chunk whose socket dropped is resent over HTTP; other chunks stay on the socket', async () => {
    const calls = [];
    const channel = {
      send: async (seq) => {
        calls.push(['ws', seq]);
        if (seq === 1) throw new ScreenrecError('network', 'closed', { retryable: true });
        return { index: seq };
      },
      close() {},
    };
    const http = {
      send: async (seq) => {
        calls.push(['http', seq]);
        return { index: seq };
      },
      close() {},
    };
    const t = socketTransport(channel, http);
    await t.send(0, blob(1));
    await assert.rejects(t.send(1, blob(1)), (e) => e.code === 'network');
    await t.send(1, blob(1));
    await t.send(2, blob(1));
    assert.deepEqual(calls, [['ws', 0], ['ws', 1], ['http', 1], ['ws', 2]]);
  });
});

describe('EventStream', () => {
  function stream(opts = {}) {
    const clock = new FakeClock();
    const ws = fakeWebSockets();
    const events = [];
    const modes = [];
    let polls = 0;
    const es = new EventStream({
      url: 'ws://x/ws',
      recordingId: ID,
      token: 'tok',
      WebSocket: ws.WebSocket,
      timers: clock,
      random: () => 0,
      retry: { baseMs: 100, maxMs: 1000 },
      fallbackAfter: 3,
      pollIntervalMs: 500,
      connectTimeoutMs: 2000,
      probeEveryMs: 5000,
      poll: async () => {
        polls += 1;
        return { status: 'recording', chunksReceived: polls };
      },
      onEvent: (e) => events.push(e),
      onModeChange: (m) => modes.push(m),
      ...opts,
    });
    return { es, ws, clock, events, modes, polls: () => polls };
  }

  const ev = (version, type = 'chunkSaved', extra = { index: version - 1, bytesReceived: 10 * version }) => ({ type, recordingId: ID, version, ...extra });

  test('subscribes, reconnects with the last version it saw, and drops repeats', async () => {
    const { es, ws, clock, events, modes } = stream();
    es.start();
    ws.last().open();
    assert.deepEqual(ws.last().json, [{ type: 'subscribe', recordingId: ID, token: 'tok' }]);
    ws.last().reply({ type: 'subscribed', recordingId: ID, version: 0 });
    ws.last().reply(ev(1));
    ws.last().reply(ev(2));
    ws.last().drop();
    assert.equal(es.mode, 'reconnecting');
    await clock.advance(100);
    assert.equal(ws.sockets.length, 2);
    ws.last().open();
    assert.deepEqual(ws.last().json, [{ type: 'subscribe', recordingId: ID, token: 'tok', lastVersion: 2 }]);
    ws.last().reply({ type: 'subscribed', recordingId: ID, version: 3 });
    ws.last().reply(ev(2)); // a repeat
    ws.last().reply(ev(3, 'mergeProgress', { percent: 5 }));
    ws.last().reply({ type: 'recordingState', recordingId: ID, version: 3, recording: { status: 'merging' } });
    assert.deepEqual(
      events.map((e) => [e.type, e.version]),
      [['chunkSaved', 1], ['chunkSaved', 2], ['mergeProgress', 3], ['recordingState', 3]],
    );
    assert.deepEqual(modes, ['connecting', 'live', 'reconnecting', 'connecting', 'live']);
    es.close();
  });

  test('reconnect attempts back off; after fallbackAfter failures it polls, then returns to the socket', async () => {
    const { es, ws, clock, events, polls } = stream();
    es.start();
    ws.last().drop();
    await clock.advance(50); // base 100, no jitter (random 0): 50, then 100
    ws.last().drop();
    await clock.advance(99);
    assert.equal(ws.sockets.length, 2, 'the second retry waits longer');
    await clock.advance(1);
    assert.equal(ws.sockets.length, 3);
    ws.last().drop();
    await flush();
    assert.equal(es.mode, 'polling');
    assert.equal(polls(), 1);
    await clock.advance(1000);
    assert.equal(polls(), 3);
    assert.ok(events.every((e) => e.type === 'recordingState' && e.polled));
    assert.equal(events.at(-1).recording.chunksReceived, 3);
    // a probe of the socket after probeEveryMs; it fails, polling goes on
    await clock.advance(4000);
    assert.equal(ws.sockets.length, 4);
    ws.last().drop();
    await clock.advance(500);
    assert.equal(es.mode, 'polling');
    const before = polls();
    // the next probe works: back to live, polling stops
    await clock.advance(5000);
    ws.last().open();
    ws.last().reply({ type: 'subscribed', recordingId: ID, version: 0 });
    assert.equal(es.mode, 'live');
    const after = polls();
    assert.ok(after > before);
    await clock.advance(5000);
    assert.equal(polls(), after, 'no more polling');
    es.close();
  });

  test('a socket that opens but never subscribes counts as a failure (connect timeout)', async () => {
    const { es, ws, clock } = stream();
    es.start();
    ws.last().open();
    await clock.advance(2000);
    assert.equal(ws.last().closedByClient, true);
    assert.equal(es.failures, 1);
    es.close();
  });

  test('nudge() reconnects at once instead of waiting out the delay', async () => {
    const { es, ws } = stream({ retry: { baseMs: 10_000, maxMs: 10_000 } });
    es.start();
    ws.last().drop();
    assert.equal(ws.sockets.length, 1);
    es.nudge();
    assert.equal(ws.sockets.length, 2);
    es.close();
  });

  test('a refused subscription is reported', async () => {
    const { es, ws, events } = stream();
    es.start();
    ws.last().open();
    ws.last().reply({ type: 'error', error: { code: 'invalid_token', message: 'bad token' } });
    assert.deepEqual(events, [{ type: 'subscriptionError', error: { code: 'invalid_token', message: 'bad token' } }]);
    es.close();
  });
});
