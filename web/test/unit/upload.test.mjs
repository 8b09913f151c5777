// The upload queue: bounded in-flight sends in seq order, retries with backoff and jitter,
// offline hold and resume, the memory limit, and refusals.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ScreenrecError, UploadQueue, backoffDelay, withRetry } from '../../screenrec.js';
import { FakeClock, ManualSend, blob, flush } from './fakes.mjs';

const networkDown = () => new ScreenrecError('network', 'down', { retryable: true });
const serverBusy = () => new ScreenrecError('server_unavailable', 'busy', { retryable: true, status: 503, serverCode: 'storage_unavailable' });
const refused = () =>
  new ScreenrecError('server_refused', 'Uploading part 3: chunk is larger than 1024 bytes', {
    status: 413,
    serverCode: 'chunk_too_large',
    details: { code: 'chunk_too_large', message: 'chunk is larger than 1024 bytes' },
  });

function queue(opts = {}) {
  const clock = new FakeClock();
  const sender = new ManualSend();
  const errors = [];
  const q = new UploadQueue({
    send: sender.send,
    maxInFlight: 2,
    retry: { baseMs: 1000, maxMs: 8000, maxAttempts: 3 },
    timers: clock,
    random: () => 0.5,
    onError: (e) => errors.push(e),
    ...opts,
  });
  return { q, clock, sender, errors };
}

describe('backoffDelay', () => {
  test('doubles per attempt up to the cap, with half of it random', () => {
    const policy = { baseMs: 500, maxMs: 4000 };
    assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, policy, () => 0)), [250, 500, 1000, 2000, 2000, 2000]);
    assert.deepEqual([0, 1, 2, 3, 4].map((a) => backoffDelay(a, policy, () => 1)), [500, 1000, 2000, 4000, 4000]);
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(3, policy)));
    assert.ok(spread.size > 10, 'jitter spreads retries');
    for (const d of spread) assert.ok(d >= 2000 && d <= 4000);
  });
});

describe('UploadQueue', () => {
  test('sends lowest seq first, never more than maxInFlight at once', async () => {
    const { q, sender } = queue();
    for (const seq of [0, 1, 2, 3, 4]) q.push(seq, blob(10));
    await flush();
    assert.deepEqual(sender.seqs, [0, 1]);
    sender.settle(1);
    await flush();
    assert.deepEqual(sender.seqs, [0, 1, 2]);
    assert.equal(q.inFlight, 2);
    sender.settle(0);
    sender.settle(2);
    await flush();
    assert.deepEqual(sender.seqs, [0, 1, 2, 3, 4]);
    sender.settle(3);
    sender.settle(4);
    await flush();
    assert.equal(q.pending, 0);
    assert.equal(q.chunksUploaded, 5);
    assert.equal(q.bytesUploaded, 50);
  });

  test('a network failure pauses the queue for a jittered backoff, then resends that chunk first', async () => {
    const { q, clock, sender } = queue();
    for (const seq of [0, 1, 2]) q.push(seq, blob(10));
    await flush();
    sender.settle(0, networkDown());
    await flush();
    // paused: 2 is not started while backing off (base 1000, random 0.5 -> 750 ms)
    assert.deepEqual(sender.seqs, [0, 1]);
    assert.deepEqual(clock.pending, [750]);
    assert.equal(q.retryInMs, 750);
    await clock.advance(749);
    assert.deepEqual(sender.seqs, [0, 1]);
    await clock.advance(1);
    assert.deepEqual(sender.seqs, [0, 1, 0], 'the failed chunk goes again before chunk 2');
    sender.settle(1);
    await flush();
    assert.deepEqual(sender.seqs, [0, 1, 0, 2]);
  });

  test('consecutive failures back off exponentially; a success resets the backoff', async () => {
    const { q, clock, sender } = queue({ maxInFlight: 1 });
    q.push(0, blob(1));
    q.push(1, blob(1));
    const delays = [];
    for (let i = 0; i < 5; i++) {
      await flush();
      sender.settle(0, networkDown());
      await flush();
      delays.push(clock.pending[0]);
      await clock.advance(clock.pending[0]);
    }
    assert.deepEqual(delays, [750, 1500, 3000, 6000, 6000]);
    sender.settle(0);
    await flush();
    sender.settle(1, networkDown());
    await flush();
    assert.deepEqual(clock.pending, [750]);
  });

  test('network failures are retried without limit; server errors up to maxAttempts', async () => {
    const { q, clock, sender, errors } = queue({ maxInFlight: 1 });
    q.push(0, blob(1));
    for (let i = 0; i < 10; i++) {
      await flush();
      sender.settle(0, networkDown());
      await clock.advance(10_000);
    }
    assert.equal(errors.length, 0);
    const drained = q.drain();
    drained.catch(() => {});
    for (let i = 0; i < 3; i++) {
      await flush();
      sender.settle(0, serverBusy());
      await clock.advance(10_000);
    }
    await assert.rejects(drained, (e) => e.serverCode === 'storage_unavailable');
    assert.equal(errors.length, 1);
    assert.equal(sender.open.length, 0, 'nothing is sent after failing');
  });

  test('a refusal fails the queue at once with a message naming the part', async () => {
    const { q, sender, errors } = queue();
    q.push(0, blob(1));
    q.push(1, blob(1));
    q.push(2, blob(1));
    const drained = q.drain();
    await flush();
    sender.settle(0);
    await flush();
    sender.settle(2, refused());
    await assert.rejects(drained, (e) => {
      assert.equal(e.code, 'chunk_refused');
      assert.equal(e.serverCode, 'chunk_too_large');
      assert.match(e.message, /refused part 3 .*too large/);
      return true;
    });
    assert.equal(errors.length, 1);
    q.push(3, blob(1));
    await flush();
    assert.deepEqual(sender.seqs, [0, 1, 2], 'a failed queue sends nothing more');
  });

  test('offline: nothing starts until resume(), which retries at once without waiting out the backoff', async () => {
    const { q, clock, sender } = queue();
    q.offline();
    q.push(0, blob(5));
    q.push(1, blob(5));
    await flush();
    assert.deepEqual(sender.seqs, []);
    assert.equal(q.online, false);
    assert.equal(q.bufferedBytes, 10, 'unsent chunks are held');
    q.resume();
    await flush();
    assert.deepEqual(sender.seqs, [0, 1]);
    sender.settle(0, networkDown());
    sender.settle(1, networkDown());
    await flush();
    assert.ok(clock.pending[0] > 0);
    q.resume();
    await flush();
    assert.deepEqual(sender.seqs, [0, 1, 0, 1]);
  });

  test('offline without an online event: the backoff timer still tries (the browser may be wrong)', async () => {
    const { q, clock, sender } = queue();
    q.offline();
    q.push(0, blob(5));
    await flush();
    assert.deepEqual(sender.seqs, []);
    await clock.advance(1000);
    assert.deepEqual(sender.seqs, [0]);
    sender.settle(0);
    await flush();
    assert.equal(q.online, true, 'a success shows the network is back');
    q.push(1, blob(5));
    await flush();
    assert.deepEqual(sender.seqs, [0, 1]);
  });

  test('holds unsent chunks up to maxBufferedBytes, then fails with buffer_full', async () => {
    const { q, sender, errors } = queue({ maxBufferedBytes: 100 });
    q.offline();
    for (let seq = 0; seq < 10; seq++) q.push(seq, blob(10));
    assert.equal(errors.length, 0);
    assert.equal(q.bufferedBytes, 100);
    q.push(10, blob(1));
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'buffer_full');
    assert.match(errors[0].message, /fallen too far behind/);
    q.resume();
    await flush();
    assert.deepEqual(sender.seqs, []);
  });

  test('drain resolves once every chunk is stored', async () => {
    const { q, sender } = queue();
    await q.drain();
    q.push(0, blob(1));
    q.push(1, blob(1));
    let drained = false;
    q.drain().then(() => (drained = true));
    await flush();
    sender.settle(0);
    await flush();
    assert.equal(drained, false);
    sender.settle(1);
    await flush();
    assert.equal(drained, true);
  });

  test('chunks pushed out of order are still sent in seq order', async () => {
    const { q, sender } = queue({ maxInFlight: 1 });
    q.offline();
    for (const seq of [3, 1, 2, 0]) q.push(seq, blob(1));
    q.resume();
    for (let i = 0; i < 4; i++) {
      await flush();
      sender.settle(sender.open[0].seq);
    }
    assert.deepEqual(sender.seqs, [0, 1, 2, 3]);
  });
});

describe('withRetry', () => {
  test('retries network errors until success, and server errors up to maxAttempts', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const p = withRetry(
      async () => {
        calls += 1;
        if (calls < 6) throw networkDown();
        return 'ok';
      },
      { retry: { baseMs: 100, maxMs: 1000, maxAttempts: 2 }, timers: clock, random: () => 0 },
    );
    await clock.advance(10_000);
    assert.equal(await p, 'ok');
    assert.equal(calls, 6);

    calls = 0;
    const q = withRetry(
      async () => {
        calls += 1;
        throw serverBusy();
      },
      { retry: { baseMs: 100, maxMs: 1000, maxAttempts: 2 }, timers: clock, random: () => 0 },
    );
    q.catch(() => {});
    await clock.advance(10_000);
    await assert.rejects(q, /busy/);
    assert.equal(calls, 2);
  });

  test('does not retry a refusal, and stops network retries at maxNetworkAttempts', async () => {
    const clock = new FakeClock();
    let calls = 0;
    await assert.rejects(
      withRetry(async () => {
        calls += 1;
        throw refused();
      }, { timers: clock }),
      (e) => e.serverCode === 'chunk_too_large',
    );
    assert.equal(calls, 1);
    calls = 0;
    const p = withRetry(
      async () => {
        calls += 1;
        throw networkDown();
      },
      { timers: clock, maxNetworkAttempts: 3 },
    );
    p.catch(() => {});
    await clock.advance(60_000);
    await assert.rejects(p, (e) => e.code === 'network');
    assert.equal(calls, 3);
  });
});
