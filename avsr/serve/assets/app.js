// avsr-serve's page: upload or record a clip, poll its job, then show what the model read.
// Plain JavaScript, no build step. The JSON it reads is the API of docs/serve.md.
"use strict";

const $ = (id) => document.getElementById(id);
const NAMES = { a: "audio only", v: "lips only", av: "audio + lips" };
const FPS = 25; // the frame rate the face boxes are given at (avsr.media.constants.VIDEO_FPS)
const POLL_MS = 300;

let config = null;
let current = null; // { id, result }: the clip shown
let words = []; // { el, start, end, segment }
let active = -1;

function show(el, visible) { el.hidden = !visible; }

function setError(message) {
  $("error").textContent = message || "";
  show($("error"), Boolean(message));
}

function setStatus(text, progress) {
  $("status").textContent = text;
  show($("progress"), progress !== null && progress !== undefined);
  if (progress !== null && progress !== undefined) $("progress").value = progress;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({ error: `${url}: HTTP ${response.status}` }));
  return { ok: response.ok, status: response.status, data };
}

// Poll GET /jobs/ID until the job ends; onProgress sees every status on the way.
async function follow(id, onProgress) {
  for (;;) {
    const { ok, data } = await getJSON(`/jobs/${id}`);
    if (!ok) throw new Error(data.error);
    onProgress(data);
    if (data.state === "done") return data.result;
    if (data.state === "failed") throw new Error(data.error);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function describe(job) {
  if (job.state === "queued") {
    const n = job.position;
    return [`${job.name}: waiting, ${n} job${n === 1 ? "" : "s"} before it`, 0];
  }
  if (job.state === "running") return [`${job.name}: ${job.stage} (${Math.round(100 * job.progress)}%)`, job.progress];
  return [`${job.name}: ${job.state}`, null];
}

// ----------------------------------------------------------------- upload
async function upload(blob, name) {
  setError("");
  if (config && blob.size > config.max_upload_bytes) {
    const mb = (n) => (n / 2 ** 20).toFixed(1);
    setError(`${name}: ${mb(blob.size)} MB is over the upload limit of ${mb(config.max_upload_bytes)} MB`);
    return;
  }
  const player = $("player");
  setStatus(`${name}: uploading`, 0);
  const { ok, data } = await getJSON(`/transcribe?name=${encodeURIComponent(name)}`, { method: "POST", body: blob });
  if (!ok) { setStatus("", null); setError(data.error); return; }
  try {
    const result = await follow(data.id, (job) => setStatus(...describe(job)));
    setStatus(`${name}: done`, null);
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(blob);
    render(data.id, result);
  } catch (error) {
    setStatus("", null);
    setError(error.message);
  }
}

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) upload(file, file.name);
  event.target.value = "";
});

// ----------------------------------------------------------------- recording (MediaRecorder)
let recorder = null;
$("record").addEventListener("click", async () => {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => chunks.push(event.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((track) => track.stop());
      recorder = null;
      button.textContent = "Record from the camera";
      button.classList.remove("recording");
      upload(new Blob(chunks, { type: "video/webm" }), "recording.webm");
    };
    recorder.start();
    button.textContent = "Stop and transcribe";
    button.classList.add("recording");
  } catch (error) {
    setError(`camera or microphone: ${error.message}`);
  }
});

// ----------------------------------------------------------------- the result
function render(id, result) {
  current = { id, result };
  show($("view"), true);
  const main = result.modalities[result.main];
  renderTranscript(main);
  $("notes").textContent = main.notes.join("; ");
  for (const kind of ["srt", "vtt", "json"]) $(`dl-${kind}`).href = `/jobs/${id}/download.${kind}`;
  renderStrips(id, result);
  renderCompare(result.modalities, null);
  resetNoise(result);
  highlight();
}

function renderTranscript(file) {
  const box = $("transcript");
  box.textContent = "";
  words = [];
  active = -1;
  const labelled = (file.faces || []).length > 1;
  file.segments.forEach((segment, s) => {
    const line = document.createElement("div");
    line.className = "segment";
    if (labelled && segment.speaker) {
      const tag = document.createElement("span");
      tag.className = "speaker";
      tag.textContent = segment.speaker;
      line.appendChild(tag);
    }
    const segmentWords = segment.words.length ? segment.words
      : (segment.text ? [{ word: segment.text, start: segment.start, end: segment.end }] : []);
    for (const w of segmentWords) {
      const el = document.createElement("span");
      el.className = "word";
      el.textContent = w.word;
      el.dataset.start = w.start;
      el.dataset.end = w.end;
      el.dataset.index = words.length;
      el.addEventListener("click", () => { $("player").currentTime = w.start + 1e-3; highlight(); });
      words.push({ el, start: w.start, end: w.end, segment: s });
      line.appendChild(el);
      line.appendChild(document.createTextNode(" "));
    }
    box.appendChild(line);
  });
  if (!words.length) box.textContent = "(no words)";
}

function renderStrips(id, result) {
  const box = $("strips");
  box.textContent = "";
  show($("strips-title"), Object.keys(result.strips).length > 0);
  for (const [label, strip] of Object.entries(result.strips)) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `/jobs/${id}/strip/${label}.png`;
    img.alt = `mouth crops of ${label}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${label}: ${strip.times.length} crops from ${strip.times[0]} s to ${strip.times[strip.times.length - 1]} s`;
    figure.append(img, caption);
    box.appendChild(figure);
  }
}

function renderCompare(modalities, noisy) {
  const box = $("compare");
  box.textContent = "";
  for (const m of ["a", "v", "av"]) {
    if (!(m in modalities)) continue;
    const column = document.createElement("div");
    column.className = "modality";
    column.id = `col-${m}`;
    const title = document.createElement("h3");
    title.textContent = NAMES[m];
    const text = document.createElement("div");
    text.className = "text";
    const file = noisy ? noisy.modalities[m].result : modalities[m];
    text.textContent = plainText(file) || "(nothing)";
    column.append(title, text);
    if (noisy) {
      const changed = document.createElement("div");
      changed.className = "changed";
      changed.textContent = `${Math.round(100 * noisy.modalities[m].changed)}% of words changed from clean`;
      column.appendChild(changed);
    }
    box.appendChild(column);
  }
}

// a file result's words; "[S1] ..." lines only when several faces speak
function plainText(file) {
  return (file.faces || []).length > 1 ? file.text : file.segments.map((s) => s.text).filter(Boolean).join(" ");
}

// ----------------------------------------------------------------- word highlight and face boxes
function highlight() {
  const t = $("player").currentTime;
  let now = -1;
  // the word spoken: the last one begun, from its start until the next begins (CTC's word
  // times are peaky, so a word's own span leaves gaps the eye should not see)
  for (let i = 0; i < words.length && words[i].start <= t + 1e-6; i++) {
    if (t < words[i].end || (i + 1 < words.length && t < words[i + 1].start)) now = i;
  }
  if (now !== active) {
    if (active >= 0) words[active].el.classList.remove("active");
    if (now >= 0) words[now].el.classList.add("active");
    active = now;
  }
  drawBoxes(t);
}

function drawBoxes(t) {
  const overlay = $("overlay");
  const player = $("player");
  overlay.textContent = "";
  if (!current || !player.videoWidth) return;
  const scale = player.clientWidth / player.videoWidth;
  overlay.style.width = `${player.clientWidth}px`;
  overlay.style.height = `${player.clientHeight}px`;
  const frame = Math.floor(t * FPS);
  const speaking = active >= 0 ? current.result.modalities[current.result.main].segments[words[active].segment].speaker : null;
  for (const face of current.result.faces) {
    const b = face.boxes[Math.min(frame, face.boxes.length - 1)];
    if (!b) continue;
    const div = document.createElement("div");
    div.className = "box" + (face.label === speaking ? " speaking" : "");
    div.dataset.label = face.label;
    Object.assign(div.style, {
      left: `${b[0] * scale}px`, top: `${b[1] * scale}px`,
      width: `${(b[2] - b[0]) * scale}px`, height: `${(b[3] - b[1]) * scale}px`,
    });
    const tag = document.createElement("span");
    tag.textContent = face.label;
    div.appendChild(tag);
    overlay.appendChild(div);
  }
}

const player = $("player");
for (const event of ["timeupdate", "seeked", "loadedmetadata", "pause"]) player.addEventListener(event, highlight);
window.addEventListener("resize", highlight);
(function tick() { if (!player.paused) highlight(); requestAnimationFrame(tick); })();

// ----------------------------------------------------------------- noise slider
function resetNoise(result) {
  const heard = Object.keys(result.modalities).filter((m) => m !== "v");
  show($("noise"), heard.length > 0);
  const head = $("degradation").tHead.rows[0];
  head.innerHTML = "<th>noise</th>";
  for (const m of ["a", "v", "av"]) if (m in result.modalities) head.insertAdjacentHTML("beforeend", `<th>${NAMES[m]}</th>`);
  $("degradation").tBodies[0].textContent = "";
  $("snr").value = $("snr").max;
  $("snr-value").textContent = "clean";
}

async function applyNoise() {
  if (!current) return;
  const kind = $("noise-kind").value;
  const snr = Number($("snr").value);
  const { id, result } = current;
  if (snr >= Number($("snr").max)) { renderCompare(result.modalities, null); $("snr-value").textContent = "clean"; return; }
  $("snr-value").textContent = `${snr} dB`;
  const { ok, data } = await getJSON(`/jobs/${id}/noise?kind=${kind}&snr=${snr}`, { method: "POST" });
  if (!ok) { setError(data.error); return; }
  try {
    const noisy = await follow(data.id, (job) => { $("noise-status").textContent = describe(job)[0]; });
    $("noise-status").textContent = "";
    if (current.id !== id) return;
    renderCompare(result.modalities, noisy);
    const row = document.createElement("tr");
    row.insertAdjacentHTML("beforeend", `<td>${kind} ${snr} dB</td>`);
    for (const m of ["a", "v", "av"]) {
      if (m in noisy.modalities) row.insertAdjacentHTML("beforeend", `<td>${Math.round(100 * noisy.modalities[m].changed)}% changed</td>`);
    }
    $("degradation").tBodies[0].appendChild(row);
  } catch (error) {
    $("noise-status").textContent = "";
    setError(error.message);
  }
}

$("snr").addEventListener("input", () => {
  const snr = Number($("snr").value);
  $("snr-value").textContent = snr >= Number($("snr").max) ? "clean" : `${snr} dB`;
});
$("snr").addEventListener("change", applyNoise);
$("noise-kind").addEventListener("change", applyNoise);

// ----------------------------------------------------------------- start
(async () => {
  const { ok, data } = await getJSON("/config");
  if (!ok) { setError(data.error); return; }
  config = data;
  $("model").textContent = `model: ${data.model} (decodes ${data.modalities.join(", ")})`;
  for (const kind of data.noise_kinds) $("noise-kind").add(new Option(kind, kind));
  // the slider's top end is "clean": one step above the highest SNR offered
  $("snr").min = data.snr_range[0];
  $("snr").max = data.snr_range[1] + 5;
  $("snr").value = $("snr").max;
  $("snr-value").textContent = "clean";
  document.body.dataset.ready = "1";
})();
