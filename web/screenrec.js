// screenrec: record a MediaStream in the browser and upload it to a screenrec server as it is
// recorded. One dependency-free ES module; types in screenrec.d.ts.
//
//   const recorder = createRecorder(stream, { baseUrl: location.origin, mode: 'presigned' });
//   recorder.on('progress', (p) => ...);
//   await recorder.start();
//   const video = await recorder.stop();   // { downloadUrl, posterUrl, durationS, sizeBytes, container }
//
// The pieces below (Api, UploadQueue, SocketChannel, EventStream) take fetch, WebSocket, crypto,
// timers and random as options, so their retry, ordering and reconnect logic runs under node's
// test runner with fakes.

/** Recording formats in order of preference; the first one the browser supports is used. */
export const MIME_TYPES = Object.freeze([
  'video/webm;codecs=vp9,opus',
  'video/webm;codecs=vp8,opus',
  'video/webm;codecs=h264,opus',
  'video/x-matroska;codecs=avc1,opus',
  'video/mp4;codecs=avc1,opus',
  'video/webm',
  'video/mp4',
]);

export const DEFAULTS = Object.freeze({
  mode: 'presigned',
  timeslice: 1000,
  maxInFlight: 3,
  maxBufferedBytes: 256 * 1024 * 1024,
  /** Blobs smaller than this are joined with the next one (see Recorder). */
  minChunkBytes: 16 * 1024,
  requestTimeoutMs: 60_000,
  retry: Object.freeze({ baseMs: 500, maxMs: 10_000, maxAttempts: 8 }),
  /** Event socket: connection failures in a row before polling the status instead. */
  fallbackAfter: 3,
  pollIntervalMs: 1000,
  connectTimeoutMs: 5000,
});

const MODES = ['presigned', 'server', 'websocket'];
/** Recorder options that go in the create request as they are (the output format). */
const FORMAT_OPTIONS = ['output', 'transcode', 'audio'];
/**
 * Server error codes that mean "try again", whatever the transport: the server or its storage is
 * unavailable, or (checksum_mismatch) the bytes that arrived are not the bytes sent, so the same
 * chunk goes again.
 */
const RETRYABLE_CODES = new Set(['storage_unavailable', 'coordination_unavailable', 'internal', 'checksum_mismatch']);
/** The embedded file store's refusals of a signed URL (expired, or a body it did not sign): a fresh grant may work. */
const URL_REFUSALS = new Set(['url_expired', 'invalid_signature']);

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Every error this library reports. `code` says what happened in terms a page can act on:
 * permission_denied, unsupported_browser, unsupported_format, no_device, device_busy,
 * capture_failed, chunk_refused, server_refused, network, buffer_full, merge_failed,
 * empty_recording, cancelled. `serverCode` and `status` carry the server's own answer.
 */
export class ScreenrecError extends Error {
  constructor(code, message, { serverCode, status, retryable = false, details, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ScreenrecError';
    this.code = code;
    this.serverCode = serverCode;
    this.status = status;
    this.retryable = retryable;
    this.details = details;
  }
}

function networkError(what, cause) {
  return new ScreenrecError('network', `Could not reach the server (${what}). Check the connection; the upload resumes when it is back.`, {
    retryable: true,
    cause,
  });
}

/** An error answer from the server: `{"error": {"code", "message", ...}}`. */
function serverError(status, body, what) {
  const e = (body && body.error) || {};
  const serverCode = e.code || `http_${status}`;
  const retryable = status >= 500 || status === 408 || status === 429 || RETRYABLE_CODES.has(serverCode);
  const message = serverCode === 'checksum_mismatch' ? `the part arrived damaged (${e.message})` : e.message || `the server answered ${status}`;
  return new ScreenrecError(retryable ? 'server_unavailable' : 'server_refused', `${what}: ${message}`, {
    serverCode,
    status,
    retryable,
    details: e,
  });
}

/** Turn a refusal of chunk `seq` into the message a person reads. */
function chunkRefused(seq, err) {
  const part = `part ${seq + 1}`;
  const reason = err.details?.message || err.message;
  const message =
    err.serverCode === 'chunk_too_large'
      ? `The server refused ${part} of the recording because it is too large (${reason}). Record with a shorter chunk length, or ask the operator to raise the limit.`
      : `The server refused ${part} of the recording: ${reason}`;
  return new ScreenrecError('chunk_refused', message, {
    serverCode: err.serverCode,
    status: err.status,
    details: err.details,
    cause: err,
  });
}

/**
 * A create refused for its output format (`output`, `transcode`, `audio`), in words that say what
 * to change; any other error as it is.
 */
function createRefused(err, mimeType) {
  let message;
  if (err.serverCode === 'transcode_required') {
    message = `Starting the recording: an MP4 of ${mimeType} needs its video re-encoded to H.264, which was not asked for. Start it with transcode: true, record in H.264 (e.g. mimeType 'video/mp4;codecs=avc1,opus'), or leave the output native.`;
  } else if (err.serverCode === 'invalid_output') {
    message = `Starting the recording: the server refused the output options (${err.details?.message || err.message}). output is 'native' or 'mp4'; transcode and audio ('copy' or 'aac') apply to 'mp4' only.`;
  } else {
    return err;
  }
  return new ScreenrecError(err.code, message, { serverCode: err.serverCode, status: err.status, retryable: err.retryable, details: err.details, cause: err });
}

/** The server could not merge the recording (a `recordingError` event, or a failed status). */
function mergeFailed(code, reason) {
  const message =
    code === 'transcode_required'
      ? `The server could not make an MP4 of this recording: its video must be re-encoded to H.264 (${reason}), which was not asked for. Record with transcode: true, or in H.264.`
      : `The server could not put the recording together: ${reason}`;
  return new ScreenrecError('merge_failed', message, { serverCode: code });
}

/** Map a getUserMedia/getDisplayMedia failure to a ScreenrecError. */
export function mediaError(err, source = 'screen') {
  const what = source === 'camera' ? 'camera' : 'screen';
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return new ScreenrecError(
        'permission_denied',
        source === 'camera'
          ? 'Camera access was denied. Allow the camera in the browser prompt or the site settings, then try again.'
          : 'Screen sharing was cancelled or blocked. Choose a screen, window or tab to share (or allow it in the site settings), then try again.',
        { cause: err },
      );
    case 'NotFoundError':
    case 'OverconstrainedError':
      return new ScreenrecError('no_device', `No ${what} is available to record.`, { cause: err });
    case 'NotReadableError':
    case 'AbortError':
      return new ScreenrecError('device_busy', `The ${what} could not be started; another application may be using it.`, { cause: err });
    default:
      return new ScreenrecError('capture_failed', `Could not start the ${what}: ${err && err.message ? err.message : err}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// Capture helpers

function mediaDevices() {
  return globalThis.navigator && globalThis.navigator.mediaDevices;
}

/** Ask the user for a screen, window or tab (with its audio when the browser offers it). */
export async function requestScreen(constraints = { video: { frameRate: 30 }, audio: true }) {
  const devices = mediaDevices();
  if (!devices || typeof devices.getDisplayMedia !== 'function') {
    throw new ScreenrecError('unsupported_browser', 'This browser cannot share the screen. Use a current version of Chrome, Edge, Firefox or Safari on a computer.');
  }
  try {
    return await devices.getDisplayMedia(constraints);
  } catch (e) {
    throw mediaError(e, 'screen');
  }
}

/** Ask the user for the camera and microphone. */
export async function requestCamera(constraints = { video: { width: 1280, height: 720 }, audio: true }) {
  const devices = mediaDevices();
  if (!devices || typeof devices.getUserMedia !== 'function') {
    throw new ScreenrecError('unsupported_browser', 'This browser cannot use the camera. Use a current browser over HTTPS.');
  }
  try {
    return await devices.getUserMedia(constraints);
  } catch (e) {
    throw mediaError(e, 'camera');
  }
}

/**
 * The recording format to use: `preferred` when given and supported, else the first supported
 * entry of MIME_TYPES (the H.264 ones first with `h264First`, as an MP4 without transcoding
 * needs). Throws unsupported_browser / unsupported_format.
 */
export function pickMimeType(preferred, MediaRecorderImpl = globalThis.MediaRecorder, { h264First = false } = {}) {
  if (!MediaRecorderImpl) {
    throw new ScreenrecError('unsupported_browser', 'This browser cannot record video (it has no MediaRecorder). Use a current version of Chrome, Edge, Firefox or Safari.');
  }
  const supported = (t) => typeof MediaRecorderImpl.isTypeSupported !== 'function' || MediaRecorderImpl.isTypeSupported(t);
  if (preferred) {
    if (supported(preferred)) return preferred;
    throw new ScreenrecError('unsupported_format', `This browser cannot record ${preferred}. Choose another format, or leave it to the automatic choice.`);
  }
  // An MP4 without transcoding needs H.264: try those formats first.
  const h264 = (t) => /avc1|h264/.test(t);
  const order = h264First ? [...MIME_TYPES.filter(h264), ...MIME_TYPES.filter((t) => !h264(t))] : MIME_TYPES;
  const found = order.find(supported);
  if (!found) {
    throw new ScreenrecError('unsupported_format', 'This browser cannot record any format the server accepts (WebM, Matroska or MP4).');
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Small utilities

/** Timers with the browser's defaults; every class takes its own so tests can use fakes. */
export function defaultTimers() {
  return {
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (id) => globalThis.clearTimeout(id),
    now: () => (globalThis.performance ? globalThis.performance.now() : Date.now()),
  };
}

/**
 * Delay before retry number `attempt` (0-based): exponential, capped, with "equal jitter"
 * (half fixed, half random), so clients that failed together do not retry together.
 */
export function backoffDelay(attempt, { baseMs = DEFAULTS.retry.baseMs, maxMs = DEFAULTS.retry.maxMs } = {}, random = Math.random) {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** The base64 of the SHA-256 of `blob`; null without WebCrypto (`subtle`) or when it fails. */
async function sha256Base64(subtle, blob) {
  if (!subtle) return null;
  try {
    const digest = new Uint8Array(await subtle.digest('SHA-256', await blob.arrayBuffer()));
    return btoa(String.fromCharCode(...digest));
  } catch {
    return null;
  }
}

function sleep(timers, ms) {
  return new Promise((resolve) => timers.setTimeout(resolve, ms));
}

/**
 * Run `fn` until it succeeds, retrying retryable errors with backoff: network errors for as
 * long as it takes, server errors up to `maxAttempts`.
 */
export async function withRetry(fn, { retry = DEFAULTS.retry, timers = defaultTimers(), random = Math.random, onRetry, maxNetworkAttempts = Infinity } = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const limit = e.code === 'network' ? maxNetworkAttempts : retry.maxAttempts;
      const giveUp = !e.retryable || attempt + 1 >= limit;
      if (giveUp) throw e;
      const delay = backoffDelay(attempt, retry, random);
      if (onRetry) onRetry(e, delay);
      await sleep(timers, delay);
    }
  }
}

/** A tiny event emitter: `on` returns a function that removes the listener. */
class Emitter {
  #listeners = new Map();

  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  emit(type, detail) {
    for (const listener of [...(this.#listeners.get(type) || [])]) {
      try {
        listener(detail);
      } catch (e) {
        // A listener's bug must not break the recording.
        globalThis.console?.error?.(`screenrec: a '${type}' listener threw`, e);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP API

/** The REST API of a screenrec server. Every method throws ScreenrecError. */
export class Api {
  #checksums = new WeakMap();

  constructor({ baseUrl, fetch = globalThis.fetch?.bind(globalThis), crypto = globalThis.crypto, timers = defaultTimers(), requestTimeoutMs = DEFAULTS.requestTimeoutMs } = {}) {
    this.baseUrl = String(baseUrl || globalThis.location?.origin || '').replace(/\/+$/, '');
    this.fetch = fetch;
    // Only in a secure context (https, localhost): elsewhere chunks go without a checksum.
    this.subtle = crypto?.subtle || null;
    this.timers = timers;
    this.requestTimeoutMs = requestTimeoutMs;
  }

  /**
   * The checksum a chunk is uploaded with: the base64 of its SHA-256 (`x-amz-checksum-sha256`),
   * computed once per chunk however often it is sent. Null without WebCrypto, or if it fails:
   * the server and the storage then take the chunk unchecked.
   */
  checksum(blob) {
    if (!this.#checksums.has(blob)) this.#checksums.set(blob, sha256Base64(this.subtle, blob));
    return this.#checksums.get(blob);
  }

  /** fetch with a timeout; a network failure or timeout becomes a retryable 'network' error. */
  async send(url, init, what) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller ? this.timers.setTimeout(() => controller.abort(), this.requestTimeoutMs) : null;
    try {
      return await this.fetch(url, controller ? { ...init, signal: controller.signal } : init);
    } catch (e) {
      throw networkError(what, e);
    } finally {
      if (timer !== null) this.timers.clearTimeout(timer);
    }
  }

  async request(method, path, { token, json, body, contentType, headers: extra, what = `${method} ${path}` } = {}) {
    const headers = { ...extra };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (contentType) {
      headers['Content-Type'] = contentType;
    }
    const res = await this.send(this.baseUrl + path, { method, headers, body }, what);
    let data = null;
    try {
      const text = await res.text();
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      if (res.ok) throw networkError(what, e);
    }
    if (!res.ok) throw serverError(res.status, data, what);
    return data;
  }

  /**
   * Create a recording of `mimeType`. `output` ('native' or 'mp4'), `transcode` and `audio`
   * ('copy' or 'aac') go in the body only when given (JSON leaves out the undefined ones), so the
   * server's defaults apply otherwise.
   */
  create(mimeType, { output, transcode, audio } = {}) {
    return this.request('POST', '/recordings', { json: { mimeType, output, transcode, audio }, what: 'Starting the recording' });
  }

  status(id, token) {
    return this.request('GET', `/recordings/${id}`, { token, what: 'Reading the recording status' });
  }

  /** A presigned URL for chunk `seq`; with `size` and `sha256`, the storage takes only those bytes. */
  grant(id, token, seq, { size, sha256 } = {}) {
    return this.request('POST', `/recordings/${id}/chunks`, { token, json: { seq, size, sha256: sha256 || undefined }, what: `Preparing part ${seq + 1}` });
  }

  /** PUT chunk `seq` to the server; with `sha256`, the server stores only those bytes. */
  putChunk(id, token, seq, blob, sha256) {
    return this.request('PUT', `/recordings/${id}/chunks/${seq}`, {
      token,
      body: blob,
      contentType: 'application/octet-stream',
      headers: sha256 ? { 'x-amz-checksum-sha256': sha256 } : undefined,
      what: `Uploading part ${seq + 1}`,
    });
  }

  confirm(id, token, seq) {
    return this.request('POST', `/recordings/${id}/chunks/${seq}/complete`, { token, what: `Confirming part ${seq + 1}` });
  }

  stop(id, token, chunkCount) {
    return this.request('POST', `/recordings/${id}/stop`, { token, json: { chunkCount }, what: 'Finishing the recording' });
  }

  /**
   * The download URL of a ready recording. The endpoint answers with a redirect, so this follows
   * it and keeps the final URL without reading the body.
   */
  async downloadUrl(id, token) {
    const what = 'Getting the download link';
    const res = await this.send(`${this.baseUrl}/recordings/${id}/download`, { headers: { Authorization: `Bearer ${token}` } }, what);
    if (!res.ok) {
      let data = null;
      try {
        data = await res.json();
      } catch {
        // keep null
      }
      throw serverError(res.status, data, what);
    }
    try {
      await res.body?.cancel();
    } catch {
      // nothing to release
    }
    return res.url;
  }

  /**
   * PUT bytes to a presigned storage URL (another origin, so no credentials), with the headers
   * the grant signed (such as the checksum) exactly as given.
   */
  async putPresigned(url, method, blob, seq, headers) {
    const what = `Uploading part ${seq + 1}`;
    const res = await this.send(url, { method: method || 'PUT', headers, body: blob }, what);
    if (res.ok) return;
    let data = null;
    try {
      data = JSON.parse(await res.text());
    } catch {
      // storage's own format (S3 answers XML)
    }
    // This server's own file store answers with its JSON errors; any store may say 413.
    const code = data?.error?.code;
    if (code && !URL_REFUSALS.has(code)) throw serverError(res.status, data, what);
    if (res.status === 413) throw serverError(413, { error: { code: 'chunk_too_large', message: 'storage refused it as too large' } }, what);
    // Anything else (an expired URL, a body damaged on the way: S3's 400 BadDigest or 403
    // SignatureDoesNotMatch, a hiccup) is retried with a fresh grant, a few times.
    throw new ScreenrecError('server_unavailable', `${what}: storage answered ${res.status}${code ? ` (${code})` : ''}`, {
      status: res.status,
      serverCode: code || `storage_${res.status}`,
      retryable: true,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Chunk transports: send(seq, blob) resolves once the server has stored the chunk.

/**
 * presigned: ask for a URL for these bytes (size and checksum), PUT them to storage with the
 * headers the grant signed, then confirm.
 */
export function presignedTransport(api, id, token) {
  return {
    async send(seq, blob) {
      const sha256 = await api.checksum(blob);
      const grant = await api.grant(id, token, seq, { size: blob.size, sha256 });
      if (grant.alreadyStored) return { index: grant.index, duplicate: true };
      await api.putPresigned(grant.uploadUrl, grant.method, blob, seq, grant.headers);
      return api.confirm(id, token, seq);
    },
    close() {},
  };
}

/** server: PUT the bytes and their checksum to the server, which stores them. */
export function serverTransport(api, id, token) {
  return {
    send: async (seq, blob) => api.putChunk(id, token, seq, blob, await api.checksum(blob)),
    close() {},
  };
}

/**
 * websocket: chunks on the socket; a chunk whose socket dropped under it is resent over HTTP
 * (`fallback`), which also gets a definite answer where a server or proxy just cut the
 * connection (an over-size message may end in a reset rather than close code 1009).
 */
export function socketTransport(channel, fallback) {
  const dropped = new Set();
  return {
    async send(seq, blob) {
      if (dropped.has(seq)) return fallback.send(seq, blob);
      try {
        return await channel.send(seq, blob);
      } catch (e) {
        if (e.code === 'network') dropped.add(seq);
        throw e;
      }
    },
    close() {
      channel.close();
      fallback.close();
    },
  };
}

/** The binary chunk frame of /ws: version, flags, id length, id, seq (u32 BE), bytes. */
export function chunkFrameHeader(recordingId, seq) {
  const id = new TextEncoder().encode(recordingId);
  const header = new Uint8Array(3 + id.length + 4);
  header[0] = 1;
  header[1] = 1;
  header[2] = id.length;
  header.set(id, 3);
  new DataView(header.buffer).setUint32(3 + id.length, seq, false);
  return header;
}

function wsUrlOf(baseUrl) {
  return `${baseUrl.replace(/^http/, 'ws')}/ws`;
}

/**
 * The event socket's URL: `/ws` of the server, or `eventsUrl` (the serverless deployment's API
 * Gateway WebSocket API, whose `$connect` checks the recording and token in the query string).
 */
function eventsUrlOf({ eventsUrl, baseUrl, recordingId, token }) {
  if (!eventsUrl) return wsUrlOf(baseUrl);
  const query = `recordingId=${encodeURIComponent(recordingId)}&token=${encodeURIComponent(token)}`;
  return `${eventsUrl}${eventsUrl.includes('?') ? '&' : '?'}${query}`;
}

/**
 * websocket: chunks as binary frames on one socket, authorised once per connection. A closed
 * socket fails the chunks in flight (retryable) and the next send opens a new one.
 */
export class SocketChannel {
  #ws = null;
  #opening = null;
  #pending = new Map();

  constructor({ url, recordingId, token, WebSocket = globalThis.WebSocket, timers = defaultTimers(), connectTimeoutMs = DEFAULTS.connectTimeoutMs, ackTimeoutMs = DEFAULTS.requestTimeoutMs }) {
    Object.assign(this, { url, recordingId, token, WebSocketImpl: WebSocket, timers, connectTimeoutMs, ackTimeoutMs });
    this.closed = false;
  }

  async send(seq, blob) {
    const ws = await this.#open();
    return new Promise((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        this.#pending.delete(seq);
        reject(networkError(`no answer for part ${seq + 1}`));
        this.#drop(ws);
      }, this.ackTimeoutMs);
      this.#pending.set(seq, { resolve, reject, timer });
      try {
        ws.send(new Blob([chunkFrameHeader(this.recordingId, seq), blob]));
      } catch (e) {
        this.#settle(seq, null, networkError(`sending part ${seq + 1}`, e));
      }
    });
  }

  close() {
    this.closed = true;
    if (this.#ws) this.#drop(this.#ws);
  }

  #settle(seq, value, error) {
    const p = this.#pending.get(seq);
    if (!p) return;
    this.#pending.delete(seq);
    this.timers.clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(value);
  }

  #drop(ws) {
    try {
      ws.close();
    } catch {
      // already closing
    }
    this.#closed(ws, networkError('the upload connection closed'));
  }

  #closed(ws, error) {
    if (this.#ws !== ws) return;
    this.#ws = null;
    this.#opening = null;
    for (const seq of [...this.#pending.keys()]) this.#settle(seq, null, error);
  }

  #open() {
    if (this.closed) return Promise.reject(new ScreenrecError('cancelled', 'The recording was cancelled.'));
    if (this.#opening) return this.#opening;
    const ws = new this.WebSocketImpl(this.url);
    this.#ws = ws;
    this.#opening = new Promise((resolve, reject) => {
      let authorized = false;
      const timer = this.timers.setTimeout(() => {
        if (!authorized) {
          reject(networkError('the upload connection did not open'));
          this.#drop(ws);
        }
      }, this.connectTimeoutMs);
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: 'auth', recordingId: this.recordingId, token: this.token, requestId: 'auth' }));
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data !== 'string') return;
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (msg.type === 'authorized') {
          authorized = true;
          this.timers.clearTimeout(timer);
          resolve(ws);
        } else if (msg.type === 'chunkAck') {
          this.#settle(msg.seq, { index: msg.index, duplicate: msg.duplicate });
        } else if (msg.type === 'error') {
          const err = serverError(RETRYABLE_CODES.has(msg.error?.code) ? 503 : 400, msg, 'Upload');
          if (msg.requestId === 'auth') {
            this.timers.clearTimeout(timer);
            reject(err);
            this.#drop(ws);
          } else if (typeof msg.seq === 'number') {
            this.#settle(msg.seq, null, err);
          }
        }
      };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        this.timers.clearTimeout(timer);
        const tooLarge = ev && ev.code === 1009;
        const error = tooLarge
          ? new ScreenrecError('server_refused', 'Upload: the server closed the connection because a part is over its size limit', {
              serverCode: 'chunk_too_large',
              status: 413,
              details: { message: 'a part is over the server’s size limit' },
            })
          : networkError('the upload connection closed');
        if (!authorized) reject(error);
        this.#closed(ws, error);
      };
    });
    // A failed open is reported to the caller of send; don't leave an unhandled rejection.
    this.#opening.catch(() => {});
    return this.#opening;
  }
}

// ---------------------------------------------------------------------------------------------
// Upload queue

/**
 * Chunks waiting to be uploaded, sent lowest seq first with at most `maxInFlight` at once.
 * A retryable failure pauses the whole queue for a backoff delay (if the network is down,
 * every send would fail); `resume()` (the browser's `online` event) ends the pause at once.
 * Network failures are retried for as long as the unsent chunks fit in `maxBufferedBytes`;
 * a server error is retried `retry.maxAttempts` times; a refusal fails the queue.
 */
export class UploadQueue {
  #waiting = [];
  #inFlight = new Map();
  #drainers = [];
  #resumeTimer = null;
  #pausedUntil = 0;

  constructor({ send, maxInFlight = DEFAULTS.maxInFlight, maxBufferedBytes = DEFAULTS.maxBufferedBytes, retry = DEFAULTS.retry, timers = defaultTimers(), random = Math.random, onChange = () => {}, onError = () => {} }) {
    Object.assign(this, { sendChunk: send, maxInFlight, maxBufferedBytes, retry: { ...DEFAULTS.retry, ...retry }, timers, random, onChange, onError });
    this.failures = 0;
    this.failed = null;
    this.online = true;
    this.chunksUploaded = 0;
    this.bytesUploaded = 0;
    this.bufferedBytes = 0;
    this.lastError = null;
  }

  /** Chunks not yet stored by the server. */
  get pending() {
    return this.#waiting.length + this.#inFlight.size;
  }

  get inFlight() {
    return this.#inFlight.size;
  }

  /** Milliseconds until the next retry (0 when not backing off). */
  get retryInMs() {
    return Math.max(0, Math.round(this.#pausedUntil - this.timers.now()));
  }

  push(seq, blob) {
    if (this.failed) return;
    this.bufferedBytes += blob.size;
    if (this.bufferedBytes > this.maxBufferedBytes) {
      this.#fail(
        new ScreenrecError('buffer_full', `The upload has fallen too far behind: ${formatBytes(this.bufferedBytes)} of recording is waiting to be sent (the limit is ${formatBytes(this.maxBufferedBytes)}). Check the connection and record again.`),
      );
      return;
    }
    const item = { seq, blob, attempts: 0 };
    const at = this.#waiting.findIndex((w) => w.seq > seq);
    if (at < 0) this.#waiting.push(item);
    else this.#waiting.splice(at, 0, item);
    this.#pump();
    this.onChange();
  }

  /** The connection is back (or may be): retry now instead of at the end of the backoff. */
  resume() {
    this.online = true;
    this.#pausedUntil = 0;
    this.#clearResumeTimer();
    this.#pump();
    this.onChange();
  }

  /** The browser says it is offline: start nothing new until resume() or the backoff ends. */
  offline() {
    this.online = false;
    this.onChange();
  }

  /** Resolves when every pushed chunk is stored; rejects when the queue fails. */
  drain() {
    if (this.failed) return Promise.reject(this.failed);
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.#drainers.push({ resolve, reject }));
  }

  /** Give up: drop every chunk (in-flight sends finish but are ignored). */
  abort(error = new ScreenrecError('cancelled', 'The recording was cancelled.')) {
    this.#fail(error, { report: false });
  }

  #clearResumeTimer() {
    if (this.#resumeTimer !== null) {
      this.timers.clearTimeout(this.#resumeTimer);
      this.#resumeTimer = null;
    }
  }

  /** Start sends while there is room. Offline, only the backoff timer (`force`) tries. */
  #pump(force = false) {
    if (this.failed || this.#resumeTimer !== null) return;
    if (!this.online && !force) {
      if (this.#waiting.length > 0) this.#backOff();
      return;
    }
    while (this.#inFlight.size < this.maxInFlight && this.#waiting.length > 0) {
      this.#start(this.#waiting.shift());
    }
  }

  async #start(item) {
    this.#inFlight.set(item.seq, item);
    let result;
    let error = null;
    try {
      result = await this.sendChunk(item.seq, item.blob);
    } catch (e) {
      error = e instanceof ScreenrecError ? e : networkError(`uploading part ${item.seq + 1}`, e);
    }
    if (this.failed) return;
    this.#inFlight.delete(item.seq);
    if (!error) {
      this.failures = 0;
      this.online = true;
      this.lastError = null;
      this.chunksUploaded += 1;
      this.bytesUploaded += item.blob.size;
      this.bufferedBytes -= item.blob.size;
      this.onChange({ seq: item.seq, result });
      this.#pump();
      this.#settleDrainers();
      return;
    }
    // Network failures say nothing about the chunk; only server errors use up its attempts.
    if (error.code !== 'network') item.attempts += 1;
    const retryable = error.retryable && (error.code === 'network' || item.attempts < this.retry.maxAttempts);
    if (!retryable) {
      this.#fail(error.retryable ? error : chunkRefused(item.seq, error));
      return;
    }
    // Back in line at its place (lowest seq first), and the whole queue waits.
    const at = this.#waiting.findIndex((w) => w.seq > item.seq);
    if (at < 0) this.#waiting.push(item);
    else this.#waiting.splice(at, 0, item);
    this.lastError = error;
    this.#backOff();
  }

  #backOff() {
    if (this.#resumeTimer !== null) return;
    const delay = backoffDelay(this.failures, this.retry, this.random);
    this.failures += 1;
    this.#pausedUntil = this.timers.now() + delay;
    this.#resumeTimer = this.timers.setTimeout(() => {
      this.#resumeTimer = null;
      this.#pausedUntil = 0;
      // The timer tries even while the browser says it is offline: it is sometimes wrong.
      this.#pump(true);
      this.onChange();
    }, delay);
    this.onChange();
  }

  #settleDrainers() {
    if (this.pending !== 0) return;
    for (const d of this.#drainers.splice(0)) d.resolve();
  }

  #fail(error, { report = true } = {}) {
    if (this.failed) return;
    this.failed = error;
    this.#clearResumeTimer();
    this.#waiting = [];
    this.#inFlight.clear();
    this.bufferedBytes = 0;
    for (const d of this.#drainers.splice(0)) d.reject(error);
    if (report) this.onError(error);
    this.onChange();
  }
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

// ---------------------------------------------------------------------------------------------
// Notifications

const EVENT_TYPES = new Set(['chunkSaved', 'mergeProgress', 'recordingReady', 'recordingError', 'recordingState']);

/**
 * A recording's events from /ws. Reconnects with the last version it saw, so nothing is lost
 * or repeated. After `fallbackAfter` failed connections in a row it polls the status instead
 * (`poll()`, the GET /recordings/{id} body, delivered as a `recordingState` event with
 * `polled: true`) and tries the socket again every `probeEveryMs`, going back to it when it
 * works.
 */
export class EventStream {
  #ws = null;
  #reconnectTimer = null;
  #connectTimer = null;
  #pollTimer = null;
  #polling = false;
  #lastProbe = 0;

  constructor({ url, recordingId, token, WebSocket = globalThis.WebSocket, timers = defaultTimers(), random = Math.random, poll, onEvent, onModeChange = () => {}, retry = DEFAULTS.retry, fallbackAfter = DEFAULTS.fallbackAfter, pollIntervalMs = DEFAULTS.pollIntervalMs, connectTimeoutMs = DEFAULTS.connectTimeoutMs, probeEveryMs = 15_000 }) {
    Object.assign(this, { url, recordingId, token, WebSocketImpl: WebSocket, timers, random, poll, onEvent, onModeChange, retry: { ...DEFAULTS.retry, ...retry }, fallbackAfter, pollIntervalMs, connectTimeoutMs, probeEveryMs });
    this.lastVersion = 0;
    this.failures = 0;
    this.mode = 'idle';
    this.closed = false;
  }

  start() {
    if (this.WebSocketImpl) this.#connect();
    else this.#startPolling();
  }

  /** The network may be back: reconnect (or probe) now instead of at the end of the delay. */
  nudge() {
    if (this.closed || this.#ws) return;
    if (this.#polling) {
      this.#probe();
    } else if (this.#reconnectTimer !== null) {
      this.timers.clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
      this.#connect();
    }
  }

  close() {
    this.closed = true;
    this.#polling = false;
    for (const t of [this.#reconnectTimer, this.#connectTimer, this.#pollTimer]) if (t !== null) this.timers.clearTimeout(t);
    this.#dropSocket();
  }

  #dropSocket() {
    const ws = this.#ws;
    this.#ws = null;
    if (!ws) return;
    try {
      ws.close();
    } catch {
      // already closed
    }
  }

  #setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.onModeChange(mode);
  }

  #connect() {
    if (this.closed) return;
    this.#reconnectTimer = null;
    if (!this.#polling) this.#setMode('connecting');
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch {
      this.#lost(false);
      return;
    }
    this.#ws = ws;
    let subscribed = false;
    this.#connectTimer = this.timers.setTimeout(() => {
      this.#connectTimer = null;
      if (this.#ws === ws && !subscribed) {
        this.#dropSocket();
        this.#lost(false);
      }
    }, this.connectTimeoutMs);
    ws.onopen = () => {
      const msg = { type: 'subscribe', recordingId: this.recordingId, token: this.token };
      if (this.lastVersion > 0) msg.lastVersion = this.lastVersion;
      ws.send(JSON.stringify(msg));
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws || typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === 'subscribed') {
        subscribed = true;
        this.failures = 0;
        this.timers.clearTimeout(this.#connectTimer);
        this.#connectTimer = null;
        this.#stopPolling();
        this.#setMode('live');
      } else if (EVENT_TYPES.has(msg.type) && msg.recordingId === this.recordingId) {
        this.#deliver(msg);
      } else if (msg.type === 'error' && !subscribed) {
        // The server refused the subscription itself (bad token, unknown recording).
        this.onEvent({ type: 'subscriptionError', error: msg.error || {} });
      }
    };
    ws.onerror = () => {};
    ws.onclose = () => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      if (this.#connectTimer !== null) this.timers.clearTimeout(this.#connectTimer);
      this.#connectTimer = null;
      this.#lost(subscribed);
    };
  }

  /** Hand on an event once: versions only go up, so anything at or below the last is a repeat. */
  #deliver(event) {
    const version = Number(event.version) || 0;
    if (event.type === 'recordingState') {
      this.lastVersion = Math.max(this.lastVersion, version);
      this.onEvent(event);
      return;
    }
    if (version <= this.lastVersion) return;
    this.lastVersion = version;
    this.onEvent(event);
  }

  #lost(wasSubscribed) {
    if (this.closed || this.#polling) return; // while polling, a failed probe changes nothing
    if (!wasSubscribed) this.failures += 1;
    if (this.failures >= this.fallbackAfter && this.poll) {
      this.#startPolling();
      return;
    }
    this.#setMode('reconnecting');
    const delay = backoffDelay(wasSubscribed ? 0 : this.failures - 1, this.retry, this.random);
    this.#reconnectTimer = this.timers.setTimeout(() => this.#connect(), delay);
  }

  #probe() {
    this.#lastProbe = this.timers.now();
    this.#connect();
  }

  #startPolling() {
    if (this.#polling) return;
    this.#polling = true;
    this.#lastProbe = this.timers.now();
    this.#setMode('polling');
    const tick = async () => {
      this.#pollTimer = null;
      if (!this.#polling) return;
      try {
        const recording = await this.poll();
        if (!this.#polling) return;
        this.onEvent({ type: 'recordingState', recordingId: this.recordingId, version: this.lastVersion, recording, polled: true });
      } catch (e) {
        if (e && !e.retryable) {
          this.#polling = false;
          this.onEvent({ type: 'subscriptionError', error: { code: e.serverCode || e.code, message: e.message } });
          return;
        }
      }
      if (!this.#polling) return;
      if (!this.#ws && this.WebSocketImpl && this.timers.now() - this.#lastProbe >= this.probeEveryMs) this.#probe();
      this.#pollTimer = this.timers.setTimeout(tick, this.pollIntervalMs);
    };
    tick();
  }

  #stopPolling() {
    if (!this.#polling) return;
    this.#polling = false;
    if (this.#pollTimer !== null) this.timers.clearTimeout(this.#pollTimer);
    this.#pollTimer = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Recorder

/**
 * Record `stream` and upload it to a screenrec server while recording.
 * @param {MediaStream} stream
 * @param {import('./screenrec').RecorderOptions} options
 * @returns {Recorder}
 */
export function createRecorder(stream, options = {}) {
  return new Recorder(stream, options);
}

/** Why the server could not be reached, as far as a page can tell: a browser reports a
 *  server on another origin that does not admit this page (CORS) as a network failure. */
function unreachable(baseUrl) {
  const page = globalThis.location?.origin;
  let server = null;
  try {
    server = baseUrl ? new URL(baseUrl, page).origin : null;
  } catch {
    server = null;
  }
  if (page && server && server !== page) {
    return `Could not reach the recording server at ${server}, or it does not allow this page's origin (${page}): check the connection, and that the server lists ${page} in CORS_ALLOWED_ORIGINS.`;
  }
  return 'Could not reach the recording server. Check the connection and try again.';
}

export class Recorder extends Emitter {
  #mr = null;
  #queue = null;
  #transport = null;
  #events = null;
  #ready = null;
  #resolveReady = null;
  #rejectReady = null;
  #stopped = null;
  #startedAt = null;
  #stoppedAt = null;
  #pausedAt = 0;
  #pausedMs = 0;
  #stopping = null;
  #detach = [];
  #held = [];
  #heldBytes = 0;

  constructor(stream, options = {}) {
    super();
    const opts = { ...DEFAULTS, ...options, retry: { ...DEFAULTS.retry, ...(options.retry || {}) } };
    if (!MODES.includes(opts.mode)) throw new TypeError(`mode must be one of ${MODES.join(', ')}`);
    if (opts.recording && !(typeof opts.recording.recordingId === 'string' && typeof opts.recording.uploadToken === 'string')) {
      throw new TypeError('recording must be { recordingId, uploadToken }, as the server created it');
    }
    if (opts.recording && FORMAT_OPTIONS.some((k) => opts[k] !== undefined)) {
      throw new TypeError(`${FORMAT_OPTIONS.join(', ')} are chosen at create: with recording, the app's backend chose them when it created it`);
    }
    this.MediaRecorderImpl = opts.MediaRecorder || globalThis.MediaRecorder;
    this.mimeType = pickMimeType(opts.mimeType, this.MediaRecorderImpl, { h264First: opts.output === 'mp4' && !opts.transcode });
    if (!stream || typeof stream.getTracks !== 'function' || stream.getTracks().length === 0) {
      throw new ScreenrecError('capture_failed', 'There is nothing to record: the stream has no tracks.');
    }
    this.stream = stream;
    this.options = opts;
    this.timers = opts.timers || defaultTimers();
    this.random = opts.random || Math.random;
    this.api = new Api({ baseUrl: opts.baseUrl, fetch: opts.fetch, crypto: opts.crypto, timers: this.timers, requestTimeoutMs: opts.requestTimeoutMs });
    this.WebSocketImpl = 'WebSocket' in opts ? opts.WebSocket : globalThis.WebSocket;
    this.state = 'idle';
    this.recordingId = null;
    this.token = null;
    this.chunkCount = 0;
    this.bytesRecorded = 0;
    this.chunksSaved = 0;
    this.mergePercent = 0;
    this.result = null;
    this.error = null;
    this.eventsMode = 'idle';
    this.#ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.#ready.catch(() => {});
  }

  /** Active recording time in milliseconds (pauses excluded). */
  get durationMs() {
    if (this.#startedAt === null) return 0;
    const end = this.#stoppedAt ?? (this.state === 'paused' ? this.#pausedAt : this.timers.now());
    return Math.max(0, end - this.#startedAt - this.#pausedMs);
  }

  /** Resolves with the finished video once the server has merged it. */
  get ready() {
    return this.#ready;
  }

  /** Create the recording on the server and start recording. */
  async start() {
    if (this.state !== 'idle') throw new Error(`start() needs an idle recorder (it is ${this.state})`);
    this.#setState('starting');
    let created;
    try {
      const retry = { retry: { ...this.options.retry, maxAttempts: 3 }, maxNetworkAttempts: 3, timers: this.timers, random: this.random };
      const given = this.options.recording;
      if (given) {
        // Made by the app's backend with its own key: record into it, in its format.
        created = given;
        const status = await withRetry(() => this.api.status(given.recordingId, given.uploadToken), retry);
        if (status.mimeType && status.mimeType !== this.mimeType) {
          if (!this.MediaRecorderImpl?.isTypeSupported?.(status.mimeType)) {
            throw new ScreenrecError('unsupported_format', `This browser cannot record ${status.mimeType}, the format the recording was created with.`);
          }
          this.mimeType = status.mimeType;
        }
      } else {
        const { output, transcode, audio } = this.options;
        created = await withRetry(() => this.api.create(this.mimeType, { output, transcode, audio }), retry);
      }
    } catch (e) {
      const err = e.code === 'network' ? new ScreenrecError('network', unreachable(this.options.baseUrl), { cause: e, retryable: true }) : createRefused(e, this.mimeType);
      this.#fail(err);
      throw err;
    }
    this.recordingId = created.recordingId;
    this.token = created.uploadToken;
    this.#transport = this.#makeTransport();
    this.#queue = new UploadQueue({
      send: (seq, blob) => this.#transport.send(seq, blob),
      maxInFlight: this.options.maxInFlight,
      maxBufferedBytes: this.options.maxBufferedBytes,
      retry: this.options.retry,
      timers: this.timers,
      random: this.random,
      onChange: () => this.#progress(),
      onError: (e) => this.#fail(e),
    });
    this.#watchConnectivity();
    this.#subscribe();
    try {
      this.#startMediaRecorder();
    } catch (e) {
      const err = new ScreenrecError('capture_failed', `The browser could not start recording: ${e.message}`, { cause: e });
      this.#fail(err);
      throw err;
    }
    this.#setState('recording');
  }

  pause() {
    if (this.state !== 'recording') return;
    this.#mr.pause();
    this.#pausedAt = this.timers.now();
    this.#setState('paused');
  }

  resume() {
    if (this.state !== 'paused') return;
    this.#mr.resume();
    this.#pausedMs += this.timers.now() - this.#pausedAt;
    this.#pausedAt = 0;
    this.#setState('recording');
  }

  /**
   * Stop recording, finish the upload, send the final chunk count and wait for the merge.
   * Resolves with the finished video (the `ready` event's detail).
   */
  stop() {
    if (!this.#stopping) this.#stopping = this.#stop();
    return this.#stopping;
  }

  async #stop() {
    if (!this.#mr) throw new Error(`stop() needs a started recorder (it is ${this.state})`);
    if (this.state === 'failed') throw this.error;
    if (this.state === 'recording' || this.state === 'paused') {
      if (this.state === 'paused') this.#pausedMs += this.timers.now() - this.#pausedAt;
      this.#setState('uploading');
      this.#mr.stop();
    }
    await this.#stopped;
    try {
      await this.#queue.drain();
      if (this.chunkCount === 0) {
        throw new ScreenrecError('empty_recording', 'Nothing was recorded. Record for at least a second before stopping.');
      }
      this.#setState('merging');
      await withRetry(
        () =>
          this.api.stop(this.recordingId, this.token, this.chunkCount).catch((e) => {
            // A retried stop that the server had already taken is fine.
            if (e.serverCode === 'already_stopped') return null;
            throw e;
          }),
        { retry: this.options.retry, timers: this.timers, random: this.random },
      );
    } catch (e) {
      this.#fail(e);
      throw e;
    }
    return this.#ready;
  }

  /** Stop everything and forget the recording (the server drops it after its TTL). */
  cancel() {
    if (['ready', 'failed', 'cancelled'].includes(this.state)) return;
    const err = new ScreenrecError('cancelled', 'The recording was cancelled.');
    this.#queue?.abort(err);
    this.#teardown();
    this.#setState('cancelled');
    this.#rejectReady(err);
  }

  #makeTransport() {
    const { mode } = this.options;
    if (mode === 'websocket') {
      const channel = new SocketChannel({
        url: wsUrlOf(this.api.baseUrl),
        recordingId: this.recordingId,
        token: this.token,
        WebSocket: this.WebSocketImpl,
        timers: this.timers,
        connectTimeoutMs: this.options.connectTimeoutMs,
        ackTimeoutMs: this.options.requestTimeoutMs,
      });
      return socketTransport(channel, serverTransport(this.api, this.recordingId, this.token));
    }
    if (mode === 'server') return serverTransport(this.api, this.recordingId, this.token);
    return presignedTransport(this.api, this.recordingId, this.token);
  }

  #startMediaRecorder() {
    const mr = new this.MediaRecorderImpl(this.stream, { mimeType: this.mimeType });
    this.#mr = mr;
    this.#stopped = new Promise((resolve) => {
      mr.onstop = () => {
        this.#stoppedAt = this.timers.now();
        this.#flushHeld();
        resolve();
      };
    });
    mr.ondataavailable = (ev) => {
      const blob = ev.data;
      if (!blob || blob.size === 0) return;
      this.bytesRecorded += blob.size;
      this.#held.push(blob);
      this.#heldBytes += blob.size;
      if (this.#heldBytes >= this.options.minChunkBytes) this.#flushHeld();
      else this.#progress();
    };
    mr.onerror = (ev) => {
      const e = ev && ev.error;
      this.#fail(new ScreenrecError('capture_failed', `Recording stopped unexpectedly: ${(e && e.message) || 'the browser reported an error'}`, { cause: e }));
    };
    // Chrome's "Stop sharing" button ends the video track: finish the recording normally.
    for (const track of this.stream.getVideoTracks ? this.stream.getVideoTracks() : []) {
      const onEnded = () => {
        if (this.state === 'recording' || this.state === 'paused') {
          this.emit('sourceEnded', {});
          this.stop().catch(() => {});
        }
      };
      track.addEventListener?.('ended', onEnded);
      this.#detach.push(() => track.removeEventListener?.('ended', onEnded));
    }
    mr.start(this.options.timeslice);
    this.#startedAt = this.timers.now();
  }

  /**
   * Blobs smaller than `minChunkBytes` wait to be joined with the next: MediaRecorder may cut
   * its first blob inside the file header (even after one byte), and chunk 0 must carry it;
   * it also saves requests when little changes on screen.
   */
  #flushHeld() {
    if (this.#held.length === 0) return;
    const blob = this.#held.length === 1 ? this.#held[0] : new Blob(this.#held, { type: this.#held[0].type });
    this.#held = [];
    this.#heldBytes = 0;
    const seq = this.chunkCount;
    this.chunkCount += 1;
    this.emit('chunk', { seq, size: blob.size, blob });
    this.#queue.push(seq, blob);
  }

  #watchConnectivity() {
    const target = this.options.onlineTarget !== undefined ? this.options.onlineTarget : globalThis.window;
    if (!target || typeof target.addEventListener !== 'function') return;
    const online = () => {
      this.#queue?.resume();
      this.#events?.nudge();
    };
    const offline = () => this.#queue?.offline();
    target.addEventListener('online', online);
    target.addEventListener('offline', offline);
    this.#detach.push(() => {
      target.removeEventListener('online', online);
      target.removeEventListener('offline', offline);
    });
  }

  #subscribe() {
    this.#events = new EventStream({
      url: eventsUrlOf({
        eventsUrl: this.options.eventsUrl,
        baseUrl: this.api.baseUrl,
        recordingId: this.recordingId,
        token: this.token,
      }),
      recordingId: this.recordingId,
      token: this.token,
      WebSocket: this.WebSocketImpl,
      timers: this.timers,
      random: this.random,
      retry: this.options.retry,
      fallbackAfter: this.options.fallbackAfter,
      pollIntervalMs: this.options.pollIntervalMs,
      connectTimeoutMs: this.options.connectTimeoutMs,
      poll: () => this.api.status(this.recordingId, this.token),
      onEvent: (event) => this.#onServerEvent(event),
      onModeChange: (mode) => {
        this.eventsMode = mode;
        this.#progress();
      },
    });
    this.#events.start();
  }

  #onServerEvent(event) {
    switch (event.type) {
      case 'chunkSaved':
        this.chunksSaved = Math.max(this.chunksSaved, event.index + 1);
        this.emit('chunkSaved', { index: event.index, bytesReceived: event.bytesReceived });
        break;
      case 'mergeProgress':
        this.#mergeProgress(event.percent);
        break;
      case 'recordingReady':
        this.#finish({
          downloadUrl: event.downloadUrl,
          ...(event.posterUrl ? { posterUrl: event.posterUrl } : {}),
          expiresAt: event.expiresAt,
          durationS: event.durationS,
          sizeBytes: event.sizeBytes,
          container: event.container,
          recordingId: this.recordingId,
        });
        break;
      case 'recordingError':
        this.#fail(mergeFailed(event.code, event.message));
        break;
      case 'recordingState':
        this.#onState(event.recording || {}, event.polled);
        break;
      case 'subscriptionError':
        this.#fail(new ScreenrecError('server_refused', `The server refused to send updates for this recording: ${event.error.message || event.error.code}`, { serverCode: event.error.code }));
        break;
      default:
    }
  }

  /** A status snapshot: the only news in polling mode, a catch-up after a reconnect otherwise. */
  #onState(recording, polled) {
    if (polled && typeof recording.chunksReceived === 'number' && recording.chunksReceived > this.chunksSaved) {
      this.chunksSaved = recording.chunksReceived;
      this.emit('chunkSaved', { index: recording.chunksReceived - 1, bytesReceived: recording.bytesReceived });
    }
    if (recording.status === 'merging' && polled) this.#mergeProgress(this.mergePercent);
    if (recording.status === 'ready' && !this.result) {
      const out = recording.output || {};
      // The status's presigned poster URL; absent when the video has no picture.
      const poster = recording.posterUrl ? { posterUrl: recording.posterUrl } : {};
      this.api
        .downloadUrl(this.recordingId, this.token)
        .then((downloadUrl) =>
          this.#finish({ downloadUrl, ...poster, durationS: out.durationS, sizeBytes: out.sizeBytes, container: out.container, recordingId: this.recordingId }),
        )
        .catch((e) => this.#fail(e));
    }
    if (recording.status === 'failed') {
      const e = recording.error || {};
      this.#fail(mergeFailed(e.code, e.message || e.code));
    }
  }

  #mergeProgress(percent) {
    if (this.state !== 'merging' && this.state !== 'uploading') return;
    this.mergePercent = Math.max(this.mergePercent, percent || 0);
    this.emit('mergeProgress', { percent: this.mergePercent });
  }

  #finish(result) {
    if (this.result || this.state === 'failed' || this.state === 'cancelled') return;
    this.result = result;
    this.mergePercent = 100;
    this.#teardown();
    this.#setState('ready');
    this.emit('ready', result);
    this.#resolveReady(result);
  }

  #fail(error) {
    if (this.state === 'failed' || this.state === 'ready' || this.state === 'cancelled') return;
    this.error = error;
    this.#queue?.abort(error);
    this.#teardown();
    this.#setState('failed');
    this.emit('error', error);
    this.#rejectReady(error);
  }

  #teardown() {
    if (this.#mr && this.#mr.state !== 'inactive') {
      try {
        this.#mr.stop();
      } catch {
        // already stopped
      }
    }
    this.#events?.close();
    this.#transport?.close();
    for (const undo of this.#detach.splice(0)) undo();
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', { state });
    this.#progress();
  }

  /** The numbers a progress display needs. */
  get progress() {
    const q = this.#queue;
    return {
      state: this.state,
      durationMs: this.durationMs,
      chunksRecorded: this.chunkCount,
      bytesRecorded: this.bytesRecorded,
      chunksUploaded: q ? q.chunksUploaded : 0,
      bytesUploaded: q ? q.bytesUploaded : 0,
      chunksPending: q ? q.pending : 0,
      bytesPending: q ? q.bufferedBytes : 0,
      inFlight: q ? q.inFlight : 0,
      online: q ? q.online : true,
      retryInMs: q ? q.retryInMs : 0,
      lastError: q && q.lastError ? q.lastError.message : null,
      chunksSaved: this.chunksSaved,
      events: this.eventsMode,
    };
  }

  #progress() {
    this.emit('progress', this.progress);
  }
}
