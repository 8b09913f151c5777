// Types of screenrec.js, the browser client of a screenrec server.

/** How chunks travel to the server. */
export type UploadMode =
  /** Ask the server for a presigned URL, PUT the bytes to storage, then confirm. */
  | 'presigned'
  /** PUT the bytes to the server, which stores them. */
  | 'server'
  /** Binary frames on one WebSocket to the server. */
  | 'websocket';

export type RecorderState =
  | 'idle'
  | 'starting'
  | 'recording'
  | 'paused'
  /** Recording stopped; the last chunks are still being sent. */
  | 'uploading'
  /** The final count was sent; the server is merging the chunks. */
  | 'merging'
  | 'ready'
  | 'failed'
  | 'cancelled';

export interface RetryPolicy {
  /** First backoff delay, doubled per consecutive failure (with jitter). Default 500. */
  baseMs?: number;
  /** Longest backoff delay. Default 10000. */
  maxMs?: number;
  /**
   * Attempts per request on server errors (5xx) and on chunks that arrived damaged
   * (checksum_mismatch); network errors retry without limit. Default 8.
   */
  maxAttempts?: number;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  /** Milliseconds, monotonic. */
  now(): number;
}

/** The container of the merged video (`output` in `POST /recordings`). */
export type OutputContainer =
  /** The recording's own container, without re-encoding: WebM, Matroska or MP4. */
  | 'native'
  /** An MP4 with `moov` first, which every browser plays: H.264 remuxed; VP8, VP9 and AV1 only with `transcode`. */
  | 'mp4';

export interface RecorderOptions {
  /** The server, e.g. `https://rec.example.com`. Default: the page's origin. */
  baseUrl?: string;
  /**
   * The event socket. Default: `/ws` of `baseUrl`. For the serverless deployment, the WebSocket
   * API's URL (`wss://…/prod`); the recording id and token go in its query string.
   */
  eventsUrl?: string;
  /**
   * A recording the app's backend created (`POST /recordings` with its API key), so the page
   * never holds the key: the recorder uploads into it instead of creating one, in the format it
   * was created with (its `mimeType`; `output`, `transcode` and `audio` are then a TypeError).
   */
  recording?: { recordingId: string; uploadToken: string };
  /** Default 'presigned'. */
  mode?: UploadMode;
  /** The recording format; default: the first of MIME_TYPES the browser supports. */
  mimeType?: string;
  /**
   * The merged video's container, sent as `output` in the create request. Default (when left
   * out): the server's, 'native'. Not with `recording`, whose creator chose it.
   */
  output?: OutputContainer;
  /**
   * With `output: 'mp4'`: re-encode VP8, VP9 or AV1 video to H.264 (and its audio to AAC). Without
   * it, an MP4 of such a `mimeType` is refused at start (server_refused, serverCode
   * transcode_required). Sent only when given; the server's default is false.
   */
  transcode?: boolean;
  /** With `output: 'mp4'`: 'aac' converts Opus audio to AAC, 'copy' keeps it. Sent only when given; the server's default is 'copy'. */
  audio?: 'copy' | 'aac';
  /** Milliseconds of recording per MediaRecorder blob. Default 1000. */
  timeslice?: number;
  /** Blobs smaller than this are joined with the next one. Default 16 KiB. */
  minChunkBytes?: number;
  /** Chunks uploading at once. Default 3. */
  maxInFlight?: number;
  /** Unsent recording held in memory (e.g. while offline) before failing with buffer_full. Default 256 MiB. */
  maxBufferedBytes?: number;
  /** Per-request timeout. Default 60000. */
  requestTimeoutMs?: number;
  retry?: RetryPolicy;
  /** Failed event-socket connections in a row before polling the status instead. Default 3. */
  fallbackAfter?: number;
  /** Status polling interval when the event socket is unavailable. Default 1000. */
  pollIntervalMs?: number;
  /** How long a WebSocket may take to open and answer. Default 5000. */
  connectTimeoutMs?: number;
  /** Where `online` / `offline` events come from. Default: `window`; null for none. */
  onlineTarget?: EventTarget | null;
  // Injected for tests; the browser's own by default.
  fetch?: typeof fetch;
  /** WebCrypto, for each chunk's SHA-256; without `subtle` (or null), chunks go without a checksum. */
  crypto?: { subtle?: Pick<SubtleCrypto, 'digest'> } | null;
  WebSocket?: typeof WebSocket | null;
  MediaRecorder?: typeof MediaRecorder;
  timers?: Timers;
  random?: () => number;
}

export interface Progress {
  state: RecorderState;
  /** Active recording time (pauses excluded). */
  durationMs: number;
  chunksRecorded: number;
  bytesRecorded: number;
  chunksUploaded: number;
  bytesUploaded: number;
  /** Chunks recorded but not yet stored by the server. */
  chunksPending: number;
  bytesPending: number;
  inFlight: number;
  /** False after the browser reported going offline, until an upload succeeds again. */
  online: boolean;
  /** Milliseconds until the next upload retry; 0 when not backing off. */
  retryInMs: number;
  /** The last retryable upload error, while retrying. */
  lastError: string | null;
  /** Chunks the server reported saved. */
  chunksSaved: number;
  /** The event connection: live (WebSocket), connecting, reconnecting or polling. */
  events: 'idle' | 'connecting' | 'live' | 'reconnecting' | 'polling';
}

/** The finished video. */
export interface ReadyVideo {
  recordingId: string;
  /** Presigned URL of the merged file; it expires at `expiresAt`. */
  downloadUrl: string;
  /** Presigned URL of a JPEG poster (a keyframe near the start); absent when the video has no picture, or from a server without posters. */
  posterUrl?: string;
  expiresAt?: string;
  durationS: number;
  sizeBytes: number;
  /** webm, mkv or mp4. */
  container: string;
}

export interface RecorderEvents {
  progress: Progress;
  /** The server stored chunk `index`. */
  chunkSaved: { index: number; bytesReceived: number };
  mergeProgress: { percent: number };
  ready: ReadyVideo;
  error: ScreenrecError;
  state: { state: RecorderState };
  /** A chunk left the recorder (a copy for local backup, say). */
  chunk: { seq: number; size: number; blob: Blob };
  /** The shared screen or camera ended (e.g. the browser's "Stop sharing"); the recording stops. */
  sourceEnded: Record<string, never>;
}

export type ErrorCode =
  | 'permission_denied'
  | 'unsupported_browser'
  | 'unsupported_format'
  | 'no_device'
  | 'device_busy'
  | 'capture_failed'
  | 'chunk_refused'
  | 'server_refused'
  | 'server_unavailable'
  | 'network'
  | 'buffer_full'
  | 'merge_failed'
  | 'empty_recording'
  | 'cancelled';

export class ScreenrecError extends Error {
  readonly name: 'ScreenrecError';
  /** What happened, in terms a page can act on. */
  readonly code: ErrorCode;
  /** The server's stable error code, when the server answered (e.g. chunk_too_large, transcode_required, invalid_output). */
  readonly serverCode?: string;
  readonly status?: number;
  /** Whether trying again later may work. */
  readonly retryable: boolean;
  /** The server's error object. */
  readonly details?: { code?: string; message?: string; [key: string]: unknown };
}

export class Recorder {
  readonly state: RecorderState;
  readonly mimeType: string;
  readonly recordingId: string | null;
  readonly chunkCount: number;
  readonly durationMs: number;
  readonly progress: Progress;
  /** Resolves with the finished video; rejects with the error that ended the recording. */
  readonly ready: Promise<ReadyVideo>;
  readonly result: ReadyVideo | null;
  readonly error: ScreenrecError | null;

  /** Create the recording on the server and start recording. */
  start(): Promise<void>;
  pause(): void;
  resume(): void;
  /** Stop, finish the upload, send the final count; resolves once the server has merged the video. */
  stop(): Promise<ReadyVideo>;
  /** Stop everything and forget the recording. */
  cancel(): void;
  /** Listen to an event; returns a function that removes the listener. */
  on<K extends keyof RecorderEvents>(type: K, listener: (detail: RecorderEvents[K]) => void): () => void;
  off<K extends keyof RecorderEvents>(type: K, listener: (detail: RecorderEvents[K]) => void): void;
}

/**
 * Record `stream` and upload it while recording. Throws ScreenrecError (unsupported_browser,
 * unsupported_format, capture_failed) when recording is impossible.
 */
export function createRecorder(stream: MediaStream, options?: RecorderOptions): Recorder;

/** Ask for a screen, window or tab. Throws ScreenrecError (permission_denied, unsupported_browser, ...). */
export function requestScreen(constraints?: DisplayMediaStreamOptions): Promise<MediaStream>;
/** Ask for the camera and microphone. */
export function requestCamera(constraints?: MediaStreamConstraints): Promise<MediaStream>;

/** Formats in order of preference. */
export const MIME_TYPES: readonly string[];
/** `preferred` if supported, else the first supported of MIME_TYPES. */
export function pickMimeType(
  preferred?: string,
  MediaRecorderImpl?: { isTypeSupported(type: string): boolean },
  options?: { /** Try the H.264 formats first (what `output: 'mp4'` without `transcode` needs). */ h264First?: boolean },
): string;
/** A getUserMedia / getDisplayMedia failure as a ScreenrecError. */
export function mediaError(err: unknown, source?: 'screen' | 'camera'): ScreenrecError;
/** Backoff before retry `attempt` (0-based): exponential, capped, half of it random. */
export function backoffDelay(attempt: number, policy?: RetryPolicy, random?: () => number): number;
export function formatBytes(n: number): string;

export const DEFAULTS: Readonly<Required<Pick<RecorderOptions, 'mode' | 'timeslice' | 'minChunkBytes' | 'maxInFlight' | 'maxBufferedBytes' | 'requestTimeoutMs' | 'fallbackAfter' | 'pollIntervalMs' | 'connectTimeoutMs'>> & { retry: Required<RetryPolicy> }>;
