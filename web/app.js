// The demo recorder page: wires the controls to screenrec.js.
import { createRecorder, requestCamera, requestScreen, formatBytes, ScreenrecError } from '/web/screenrec.js';

const FORMATS = [
  { type: 'video/webm;codecs=vp9,opus', label: 'WebM · VP9 + Opus' },
  { type: 'video/webm;codecs=vp8,opus', label: 'WebM · VP8 + Opus' },
  { type: 'video/x-matroska;codecs=avc1,opus', label: 'Matroska · H.264 + Opus' },
  { type: 'video/mp4;codecs=avc1,opus', label: 'MP4 · H.264 + Opus' },
];

const STATE_LABELS = {
  idle: 'Ready',
  starting: 'Starting',
  recording: 'Recording',
  paused: 'Paused',
  uploading: 'Uploading',
  merging: 'Processing',
  ready: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

const $ = (id) => document.getElementById(id);
const ui = {
  pill: $('state-pill'),
  previewBox: $('preview-box'),
  previewHint: $('preview-hint'),
  preview: $('preview'),
  recBadge: $('rec-badge'),
  recLabel: $('rec-label'),
  start: $('start'),
  pause: $('pause'),
  pauseLabel: $('pause-label'),
  stop: $('stop'),
  timer: $('timer'),
  format: $('format'),
  mode: $('mode'),
  timeslice: $('timeslice'),
  settings: [...document.querySelectorAll('#source-group input, #format, #mode, #timeslice')],
  recorded: $('stat-recorded'),
  uploaded: $('stat-uploaded'),
  saved: $('stat-saved'),
  connectionDot: document.querySelector('#stat-connection .dot'),
  connectionText: $('connection-text'),
  uploadProgress: $('upload-progress'),
  status: $('status'),
  error: $('error'),
  errorTitle: $('error-title'),
  errorMessage: $('error-message'),
  errorDismiss: $('error-dismiss'),
  result: $('result'),
  resultBadge: $('result-badge'),
  merge: $('merge'),
  mergeProgress: $('merge-progress'),
  mergePercent: $('merge-percent'),
  final: $('final'),
  player: $('player'),
  metaDuration: $('meta-duration'),
  metaSize: $('meta-size'),
  metaFormat: $('meta-format'),
  download: $('download'),
  again: $('again'),
};

const initialHint = [...ui.previewHint.childNodes].map((n) => n.cloneNode(true));
let recorder = null;
let stream = null;
let ticker = null;

function clock(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function setStatus(text) {
  if (ui.status.textContent !== text) ui.status.textContent = text;
}

const ERROR_TITLES = {
  permission_denied: 'Access was not allowed',
  unsupported_browser: 'This browser cannot record',
  unsupported_format: 'This format is not available',
  no_device: 'Nothing to record',
  device_busy: 'The source is busy',
  chunk_refused: 'The server refused the recording',
  server_refused: 'The server refused the recording',
  network: 'The server cannot be reached',
  buffer_full: 'The upload fell too far behind',
  merge_failed: 'The video could not be put together',
};

function showError(err) {
  const code = err instanceof ScreenrecError ? err.code : null;
  ui.errorTitle.textContent = ERROR_TITLES[code] || 'The recording could not be finished';
  ui.errorMessage.textContent = err && err.message ? err.message : String(err);
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.errorMessage.textContent = '';
}

function setState(state) {
  ui.pill.dataset.state = state;
  ui.pill.textContent = STATE_LABELS[state] || state;
  const active = state === 'recording' || state === 'paused';
  const busy = state === 'starting' || active || state === 'uploading' || state === 'merging';
  ui.start.disabled = busy;
  ui.pause.disabled = !active;
  ui.stop.disabled = !active;
  ui.pause.setAttribute('aria-pressed', String(state === 'paused'));
  ui.pauseLabel.textContent = state === 'paused' ? 'Resume' : 'Pause';
  ui.pause.classList.toggle('is-paused', state === 'paused');
  for (const el of ui.settings) el.disabled = busy;
  ui.recBadge.hidden = !active;
  ui.recBadge.dataset.paused = String(state === 'paused');
  ui.recLabel.textContent = state === 'paused' ? 'PAUSED' : 'REC';
}

function fillFormats() {
  const supported = globalThis.MediaRecorder && typeof MediaRecorder.isTypeSupported === 'function';
  for (const f of FORMATS) {
    if (supported && !MediaRecorder.isTypeSupported(f.type)) continue;
    const option = document.createElement('option');
    option.value = f.type;
    option.textContent = f.label;
    ui.format.append(option);
  }
}

function showProgress(p) {
  ui.recorded.textContent = p.chunksRecorded ? `${plural(p.chunksRecorded, 'part')} · ${formatBytes(p.bytesRecorded)}` : '–';
  ui.uploaded.textContent = p.chunksRecorded ? `${plural(p.chunksUploaded, 'part')} · ${formatBytes(p.bytesUploaded)}` : '–';
  ui.saved.textContent = p.chunksSaved ? plural(p.chunksSaved, 'part') : '–';
  ui.uploadProgress.max = Math.max(1, p.bytesRecorded);
  ui.uploadProgress.value = p.bytesUploaded;

  let connection = 'Online';
  let ok = true;
  if (!p.online || p.retryInMs > 0) {
    ok = false;
    const waiting = p.chunksPending ? `, ${plural(p.chunksPending, 'part')} waiting` : '';
    connection = p.online ? `Retrying in ${Math.ceil(p.retryInMs / 1000)} s${waiting}` : `Offline${waiting}`;
  } else if (p.events === 'polling') {
    connection = 'Online (checking for updates)';
  } else if (p.events === 'reconnecting') {
    connection = 'Reconnecting…';
  }
  ui.connectionText.textContent = connection;
  ui.connectionDot.dataset.ok = String(ok);

  switch (p.state) {
    case 'recording':
      setStatus(ok ? 'Recording. Uploading as you go.' : 'Recording. The connection dropped; parts are kept and will upload when it is back.');
      break;
    case 'paused':
      setStatus('Paused. Press Resume to continue recording.');
      break;
    case 'uploading':
      setStatus(p.chunksPending ? `Finishing the upload: ${plural(p.chunksPending, 'part')} left.` : 'Finishing the upload.');
      break;
    default:
  }
}

function tick() {
  if (!recorder) return;
  ui.timer.value = clock(recorder.durationMs);
  showProgress(recorder.progress);
}

function showMerge(percent) {
  ui.mergeProgress.value = percent;
  ui.mergePercent.textContent = `${percent}%`;
  setStatus(`Processing your video: ${percent}%.`);
}

function showReady(video) {
  ui.resultBadge.dataset.state = 'ready';
  ui.resultBadge.textContent = 'Ready';
  ui.merge.hidden = true;
  ui.final.hidden = false;
  ui.player.src = video.downloadUrl;
  ui.download.href = video.downloadUrl;
  ui.metaDuration.textContent = typeof video.durationS === 'number' ? clock(video.durationS * 1000) : '–';
  ui.metaSize.textContent = typeof video.sizeBytes === 'number' ? formatBytes(video.sizeBytes) : '–';
  ui.metaFormat.textContent = describeFormat(video.container, recorder && recorder.mimeType);
  setStatus(`Your recording is ready${typeof video.durationS === 'number' ? ` (${clock(video.durationS * 1000)})` : ''}.`);
  ui.previewHint.textContent = 'Saved. Press Start recording to make another.';
}

function describeFormat(container, mimeType) {
  const codecs = /codecs=([^;]+)/.exec(mimeType || '');
  const names = { vp8: 'VP8', vp9: 'VP9', avc1: 'H.264', h264: 'H.264', opus: 'Opus', av1: 'AV1' };
  const list = codecs ? codecs[1].split(',').map((c) => names[c.trim().split('.')[0]] || c.trim()) : [];
  const box = { webm: 'WebM', mkv: 'Matroska', mp4: 'MP4' }[container] || (container || '').toUpperCase();
  return list.length ? `${box} · ${list.join(' + ')}` : box || '–';
}

function resetResult() {
  ui.result.hidden = true;
  ui.final.hidden = true;
  ui.merge.hidden = false;
  ui.resultBadge.dataset.state = 'merging';
  ui.resultBadge.textContent = 'Processing';
  ui.mergeProgress.value = 0;
  ui.mergePercent.textContent = '0%';
  ui.player.removeAttribute('src');
  ui.player.load();
  ui.download.href = '#';
}

function showPreview(s) {
  ui.preview.srcObject = s;
  ui.previewBox.dataset.live = String(Boolean(s));
}

function releaseStream() {
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  showPreview(null);
}

function finish() {
  clearInterval(ticker);
  ticker = null;
  tick();
  releaseStream();
}

async function start() {
  clearError();
  resetResult();
  ui.previewHint.replaceChildren(...initialHint.map((n) => n.cloneNode(true)));
  const source = document.querySelector('input[name="source"]:checked').value;
  setState('starting');
  setStatus(source === 'camera' ? 'Waiting for the camera…' : 'Choose what to share in the browser’s dialog…');
  try {
    stream = source === 'camera' ? await requestCamera() : await requestScreen();
    showPreview(stream);
    recorder = createRecorder(stream, {
      // ?server=https://rec.example.com records to a server on another origin (it must list
      // this page's origin in CORS_ALLOWED_ORIGINS); by default, the page's own.
      baseUrl: new URLSearchParams(location.search).get('server') || location.origin,
      mode: ui.mode.value,
      mimeType: ui.format.value || undefined,
      timeslice: Number(ui.timeslice.value),
    });
  } catch (e) {
    releaseStream();
    setState('idle');
    setStatus('Ready to record.');
    showError(e);
    return;
  }
  const r = recorder;
  r.on('state', ({ state }) => {
    if (r !== recorder) return;
    setState(state);
    if (state === 'uploading' || state === 'merging') {
      ui.result.hidden = false;
      releaseStream();
    }
  });
  r.on('progress', (p) => r === recorder && showProgress(p));
  r.on('mergeProgress', ({ percent }) => r === recorder && showMerge(percent));
  r.on('ready', (video) => {
    if (r !== recorder) return;
    finish();
    showReady(video);
  });
  r.on('error', (e) => {
    if (r !== recorder) return;
    finish();
    setState('failed');
    ui.result.hidden = true;
    setStatus('The recording stopped because of an error.');
    showError(e);
  });
  try {
    await r.start();
  } catch {
    return; // reported by the 'error' event
  }
  setStatus('Recording. Uploading as you go.');
  ticker = setInterval(tick, 250);
  ui.stop.focus();
}

async function stop() {
  if (!recorder) return;
  ui.result.hidden = false;
  ui.result.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  try {
    await recorder.stop();
  } catch {
    // reported by the 'error' event
  }
}

function togglePause() {
  if (!recorder) return;
  if (recorder.state === 'paused') recorder.resume();
  else recorder.pause();
  tick();
}

function again() {
  resetResult();
  clearError();
  recorder = null;
  setState('idle');
  ui.timer.value = '00:00';
  showProgress({ chunksRecorded: 0, bytesRecorded: 0, chunksUploaded: 0, bytesUploaded: 0, chunksSaved: 0, chunksPending: 0, online: true, retryInMs: 0, state: 'idle' });
  setStatus('Ready to record.');
  ui.start.focus();
}

function init() {
  fillFormats();
  if (!globalThis.MediaRecorder) {
    ui.start.disabled = true;
    showError(new ScreenrecError('unsupported_browser', 'This browser cannot record video (it has no MediaRecorder). Use a current version of Chrome, Edge, Firefox or Safari.'));
  }
  ui.start.addEventListener('click', start);
  ui.stop.addEventListener('click', stop);
  ui.pause.addEventListener('click', togglePause);
  ui.again.addEventListener('click', again);
  ui.errorDismiss.addEventListener('click', clearError);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !ui.error.hidden) clearError();
  });
  document.body.dataset.ready = 'true';
}

init();
