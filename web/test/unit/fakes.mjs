// Test doubles for the library's injected dependencies: timers, a chunk sender, WebSocket,
// fetch, MediaRecorder and WebCrypto.
import { createHash } from 'node:crypto';

/** Let pending promise callbacks run. */
export async function flush() {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Manual time: timers fire only in advance(). */
export class FakeClock {
  t = 0;
  #timers = new Map();
  #next = 1;
  setTimeout = (fn, ms = 0) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (id) => {
    this.#timers.delete(id);
  };
  now = () => this.t;

  /** Pending timers' delays from now, soonest first. */
  get pending() {
    return [...this.#timers.values()].map((x) => x.at - this.t).sort((a, b) => a - b);
  }

  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      const due = [...this.#timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
    await flush();
  }
}

/** A send(seq, blob) whose calls the test settles by hand. */
export class ManualSend {
  calls = [];
  send = (seq, blob) =>
    new Promise((resolve, reject) => {
      this.calls.push({ seq, blob, resolve, reject });
    });

  get seqs() {
    return this.calls.map((c) => c.seq);
  }

  /** The unsettled calls. */
  get open() {
    return this.calls.filter((c) => !c.done);
  }

  settle(seq, error) {
    const call = this.calls.find((c) => c.seq === seq && !c.done);
    if (!call) throw new Error(`no open send of seq ${seq}`);
    call.done = true;
    if (error) call.reject(error);
    else call.resolve({ index: seq, duplicate: false });
  }
}

export function blob(size) {
  return new Blob([new Uint8Array(size)]);
}

/** WebSocket double: the test plays the server through `sockets`. */
export function fakeWebSockets() {
  const sockets = [];
  class FakeWebSocket {
    static OPEN = 1;
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 0;
      this.closedByClient = false;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      this.sent.push(data);
    }
    close() {
      if (this.readyState === 3) return;
      this.closedByClient = true;
      this.readyState = 3;
      queueMicrotask(() => this.onclose?.({ code: 1000 }));
    }
    // --- the server's side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    reply(msg) {
      this.onmessage?.({ data: JSON.stringify(msg) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
    get json() {
      return this.sent.filter((d) => typeof d === 'string').map((d) => JSON.parse(d));
    }
    get frames() {
      return this.sent.filter((d) => typeof d !== 'string');
    }
  }
  return { sockets, WebSocket: FakeWebSocket, last: () => sockets[sockets.length - 1] };
}

/** A Response-like object for fake fetch. */
export function jsonResponse(status, body, url = '') {
  return {
    ok: status >= 200 && status < 300,
    status,
    url,
    async text() {
      return body === undefined ? '' : JSON.stringify(body);
    },
    async json() {
      return body;
    },
    body: null,
  };
}

/** MediaRecorder double: the test emits chunks with `data()`. */
export function fakeMediaRecorders(supported = () => true) {
  const instances = [];
  class FakeMediaRecorder {
    static isTypeSupported(t) {
      return supported(t);
    }
    constructor(stream, opts) {
      this.stream = stream;
      this.mimeType = opts.mimeType;
      this.state = 'inactive';
      instances.push(this);
    }
    start(timeslice) {
      this.timeslice = timeslice;
      this.state = 'recording';
    }
    pause() {
      this.state = 'paused';
    }
    resume() {
      this.state = 'recording';
    }
    stop() {
      if (this.state === 'inactive') return;
      this.state = 'inactive';
      queueMicrotask(() => {
        this.data(this.finalChunk ?? 10);
        this.onstop?.();
      });
    }
    /** A blob of `content`: a size (zero bytes) or the bytes themselves. */
    data(content) {
      this.ondataavailable?.({ data: new Blob([typeof content === 'number' ? new Uint8Array(content) : content]) });
    }
  }
  return { instances, MediaRecorder: FakeMediaRecorder };
}

export function fakeStream() {
  const track = { kind: 'video', addEventListener() {}, removeEventListener() {} };
  return { getTracks: () => [track], getVideoTracks: () => [track] };
}

/** The base64 SHA-256 of `bytes`, as the server checks it (`x-amz-checksum-sha256`). */
export function sha256Base64(bytes) {
  return createHash('sha256').update(bytes).digest('base64');
}

/**
 * WebCrypto double: `subtle.digest` answers at once (node's own WebCrypto finishes on another
 * thread, after flush()), and counts its calls.
 */
export function fakeCrypto() {
  const crypto = {
    digests: 0,
    subtle: {
      async digest(algorithm, data) {
        if (algorithm !== 'SHA-256') throw new Error(`unexpected digest ${algorithm}`);
        crypto.digests += 1;
        const hash = createHash('sha256').update(new Uint8Array(data)).digest();
        return hash.buffer.slice(hash.byteOffset, hash.byteOffset + hash.length);
      },
    },
  };
  return crypto;
}
