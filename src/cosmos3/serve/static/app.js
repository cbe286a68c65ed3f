// cosmos3 playground: Chat, Generate and Jobs on the server's public API (the same calls any client makes).
// Rules: every text a user or the model wrote goes in with textContent (never as HTML); the API key travels in the
// Authorization header only, kept in sessionStorage; no inline script (the page's Content-Security-Policy forbids it).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "cosmos3.apiKey";
const REQ_STORE = "cosmos3.requests";
let CONFIG = null;
const watching = new Map(); // job id -> AbortController of its event stream
const blobUrls = new Map(); // job id -> object URL of its video

// ---------------------------------------------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c); // strings become text nodes
  return node;
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, opts) {
  opts = opts || {};
  const res = await fetch(path, Object.assign({}, opts, { headers: authHeaders(opts.headers) }));
  if (!res.ok) throw await apiError(res);
  return res;
}

async function apiError(res) {
  let err = { message: res.status + " " + res.statusText, param: null, code: null };
  try {
    const body = await res.json();
    if (body && body.error) err = body.error;
  } catch (_) { /* not JSON */ }
  if (res.status === 401) showKeyBar(err.message);
  const e = new Error(err.message);
  e.api = err;
  e.status = res.status;
  return e;
}

// Show an error next to the field it names (data-param, longest matching prefix), else in the form's own box.
function clearErrors(root) {
  root.querySelectorAll(".field .err").forEach((n) => { n.textContent = ""; });
  root.querySelectorAll(".field.invalid").forEach((n) => n.classList.remove("invalid"));
}

function showError(root, box, param, message) {
  let best = null;
  if (param) {
    for (const f of root.querySelectorAll(".field[data-param]")) {
      const p = f.dataset.param;
      if (param === p || param.startsWith(p + ".") || param.startsWith(p + "[")) {
        if (!best || p.length > best.dataset.param.length) best = f;
      }
    }
  }
  if (best) {
    best.classList.add("invalid");
    best.querySelector(".err").textContent = message;
  } else {
    box.textContent = message;
  }
}

// Server-sent events from a fetch body: calls onEvent(eventName, dataText) per event.
async function readSSE(res, onEvent, signal) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    if (signal && signal.aborted) { reader.cancel(); return; }
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length && onEvent(name, data.join("\n")) === false) { reader.cancel(); return; }
    }
  }
}

function num(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function readFile(file, as) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    if (as === "text") r.readAsText(file); else r.readAsDataURL(file);
  });
}

function bytes(n) {
  return n < 1024 ? n + " B" : n < 1 << 20 ? (n / 1024).toFixed(1) + " kB" : (n / (1 << 20)).toFixed(1) + " MB";
}

// ---------------------------------------------------------------------------------------------------- uploads

// The checks the API makes on an upload, made before sending: the body limit, the kind of file (from its first
// bytes, the magic numbers the server sniffs: media_policy.sniff_kind) and the pixels of an image or video frame.
const KIND_WORDS = { image: "a PNG, JPEG or WEBP image", video: "an MP4 video" };

async function sniffKind(file) {
  const b = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const ascii = (i, j) => String.fromCharCode(...b.slice(i, j));
  if ((b[0] === 0x89 && ascii(1, 4) === "PNG") || (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) ||
      (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP")) return "image";
  if (["ftyp", "moov", "mdat", "free", "wide"].includes(ascii(4, 8)) ||
      (b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3)) return "video";
  return null;
}

async function mediaDims(file, kind) {
  if (kind === "image") {
    const bitmap = await createImageBitmap(file);
    const dims = [bitmap.width, bitmap.height];
    bitmap.close();
    return dims;
  }
  const url = URL.createObjectURL(file);
  try {
    const v = document.createElement("video");
    v.preload = "metadata";
    v.muted = true;
    await new Promise((resolve, reject) => {
      v.addEventListener("loadedmetadata", resolve, { once: true });
      v.addEventListener("error", () => reject(new Error("unreadable")), { once: true });
      v.src = url;
    });
    return [v.videoWidth, v.videoHeight];
  } finally {
    URL.revokeObjectURL(url);
  }
}

// -> {kind, w, h}; throws an Error whose message says what is wrong (as the API would).
async function checkMedia(file, kinds) {
  const L = CONFIG.limits;
  if (file.size > L.max_upload_bytes)
    throw new Error(`${file.name}: ${bytes(file.size)} is above this server's limit of ${bytes(L.max_upload_bytes)}`);
  const kind = await sniffKind(file);
  if (!kind || !kinds.includes(kind)) throw new Error(`${file.name}: not ${kinds.map((k) => KIND_WORDS[k]).join(" or ")}`);
  let dims = null;
  try { dims = await mediaDims(file, kind); } catch (_) { /* below */ }
  if (!dims || !dims[0]) throw new Error(`${file.name}: not a readable ${kind}`);
  const [w, h] = dims;
  if (w * h > L.max_input_pixels)
    throw new Error(`${file.name}: ${kind === "video" ? "frames of " : ""}${w}x${h} = ${w * h} pixels, above this ` +
                    `server's limit of ${L.max_input_pixels}`);
  return { kind, w, h };
}

// Action rows from a JSON file: a bare [[...], ...] list (DESIGN's format), or an object holding it.
async function checkActions(file) {
  if (file.size > CONFIG.limits.max_upload_bytes)
    throw new Error(`${file.name}: ${bytes(file.size)} is above this server's limit of ${bytes(CONFIG.limits.max_upload_bytes)}`);
  let parsed;
  try { parsed = JSON.parse(await readFile(file, "text")); } catch (e) {
    throw new Error(`${file.name}: not valid JSON (${e.message})`);
  }
  const rows = Array.isArray(parsed) ? parsed : parsed && (parsed.action || parsed.actions || parsed.data);
  if (!Array.isArray(rows) || !rows.length || !rows.every((r) => Array.isArray(r) && r.length === rows[0].length &&
      r.every((x) => typeof x === "number" && Number.isFinite(x))))
    throw new Error(`${file.name}: expected a list of action rows of numbers, all the same length`);
  const emb = CONFIG.embodiments.find((e) => e.name === $("gen-embodiment").value);
  if (emb && rows[0].length !== emb.raw_dim)
    throw new Error(`${file.name}: rows of ${rows[0].length} values; ${emb.name} actions have ${emb.raw_dim}`);
  return rows;
}

// A file input inside a .field that also takes dropped files; `check(file)` runs on every new file, and its result
// (or error) is shown next to the field and kept for the submit.
const uploads = new Map(); // input id -> {file, result} | {file, error}

function fieldOf(input) { return input.closest(".field"); }

async function uploadChanged(input, check, describe) {
  const field = fieldOf(input);
  field.classList.remove("invalid");
  field.querySelector(".err").textContent = "";
  field.querySelector(".info").textContent = "";
  const file = input.files[0];
  if (!file || input.disabled) { uploads.delete(input.id); return; }
  const entry = { file };
  uploads.set(input.id, entry);
  try {
    entry.result = await check(file);
    field.querySelector(".info").textContent = describe(file, entry.result);
  } catch (e) {
    entry.error = e.message;
    field.classList.add("invalid");
    field.querySelector(".err").textContent = e.message;
  }
}

function dropInto(input, onChange) {
  const zone = fieldOf(input);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); e.stopPropagation(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    e.stopPropagation();
    zone.classList.remove("over");
    if (input.disabled || !e.dataTransfer.files.length) return;
    const one = new DataTransfer();
    one.items.add(e.dataTransfer.files[0]);
    input.files = one.files;
    onChange();
  });
  input.addEventListener("change", onChange);
}

function refKinds() {
  const action = $("gen-action-mode").value;
  return $("gen-mode").value === "v2v" || action === "inverse_dynamics" ? ["video"] : ["image"];
}

function checkRef() {
  return uploadChanged($("gen-ref"), (f) => checkMedia(f, refKinds()),
                       (f, r) => `${f.name} · ${r.kind} ${r.w}x${r.h} · ${bytes(f.size)}`);
}

function checkActionFile() {
  return uploadChanged($("gen-action-file"), checkActions,
                       (f, rows) => `${f.name} · ${rows.length} steps x ${rows[0].length} values · ${bytes(f.size)}`);
}

// ---------------------------------------------------------------------------------------------------- tabs, key

function selectTab(name) {
  document.querySelectorAll(".tab").forEach((t) => t.setAttribute("aria-selected", String(t.dataset.tab === name)));
  document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.dataset.panel !== name; });
  if (name === "jobs") loadJobs();
}

function showKeyBar(message) {
  $("keybar").hidden = false;
  $("api-key-status").textContent = message || "";
}

// ---------------------------------------------------------------------------------------------------- chat

const chat = { messages: [], attachments: [], controller: null };

function renderAttachments() {
  $("chat-attachments").textContent = chat.attachments.map((a) => a.name).join(", ");
}

async function addChatFiles(files) {
  $("chat-error").textContent = "";
  for (const f of files) {
    let checked;
    try { checked = await checkMedia(f, ["image", "video"]); } catch (e) {
      $("chat-error").textContent = e.message;
      continue;
    }
    chat.attachments.push({ name: f.name, kind: checked.kind, url: await readFile(f, "dataurl") });
  }
  renderAttachments();
}

function bubble(role, parts) {
  const node = el("div", { class: "msg " + role }, el("span", { class: "who", text: role }));
  for (const p of parts) node.append(p);
  $("chat-log").append(node);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return node;
}

async function sendChat() {
  const root = $("panel-chat");
  clearErrors(root);
  $("chat-error").textContent = "";
  const text = $("chat-input").value;
  if (!text.trim() && !chat.attachments.length) {
    showError(root, $("chat-error"), "messages", "write a message or attach a file");
    return;
  }
  const content = [];
  const shown = [];
  for (const a of chat.attachments) {
    content.push(a.kind === "video" ? { type: "video_url", video_url: { url: a.url } }
                                    : { type: "image_url", image_url: { url: a.url } });
    shown.push(a.kind === "video" ? el("video", { src: a.url, muted: "" }) : el("img", { src: a.url, alt: a.name }));
  }
  if (text) content.push({ type: "text", text });
  shown.push(el("div", { text }));
  const message = { role: "user", content };
  const body = { messages: chat.messages.concat([message]), stream: true };
  const think = $("chat-think").checked;
  if (think) body.chat_template_kwargs = { enable_thinking: true };
  for (const [id, key] of [["chat-max-tokens", "max_tokens"], ["chat-temperature", "temperature"],
                           ["chat-top-p", "top_p"], ["chat-top-k", "top_k"], ["chat-seed", "seed"]]) {
    const v = num(id);
    if (v !== null) body[key] = v;
  }
  bubble("user", shown);
  const reasoning = el("div");
  const fold = el("details", { class: "reasoning" }, el("summary", { text: "reasoning" }), reasoning);
  const answer = el("div", { class: "answer" });
  const node = bubble("assistant", think ? [fold, answer] : [answer]);
  node.classList.add("streaming");
  $("chat-send").disabled = true;
  chat.controller = new AbortController();
  let full = "";
  try {
    const res = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: chat.controller.signal,
    });
    chat.messages.push(message);
    $("chat-input").value = "";
    chat.attachments = [];
    renderAttachments();
    await readSSE(res, (_, data) => {
      if (data === "[DONE]") return false;
      const chunk = JSON.parse(data);
      if (chunk.error) { $("chat-error").textContent = chunk.error.message; return false; }
      const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
      if (delta.reasoning_content) reasoning.textContent += delta.reasoning_content;
      if (delta.content) { full += delta.content; answer.textContent = full; }
      $("chat-log").scrollTop = $("chat-log").scrollHeight;
      return true;
    }, chat.controller.signal);
    chat.messages.push({ role: "assistant", content: full });
  } catch (e) {
    if (e.name === "AbortError") answer.append(el("span", { class: "muted", text: " [stopped]" }));
    else if (e.api) showError(root, $("chat-error"), e.api.param, e.api.message);
    else $("chat-error").textContent = String(e);
    if (!full) node.remove();
  } finally {
    node.classList.remove("streaming");
    node.classList.add("done");
    $("chat-send").disabled = false;
    chat.controller = null;
  }
}

// ---------------------------------------------------------------------------------------------------- generate

// Client-side checks against /playground/config's limits: -> [param, message] or null.
function checkSize(size) {
  const L = CONFIG.limits;
  if (size) {
    const m = /^(\d{1,5})\s*[x*]\s*(\d{1,5})$/i.exec(size);
    if (!m && !/^\d{3}p$/i.test(size)) return ["size", "size: expected WIDTHxHEIGHT, e.g. 320x192"];
    if (m) {
      const w = Number(m[1]), h = Number(m[2]);
      if (w * h > L.max_pixels) return ["size", `size ${w}x${h} is above this server's limit of ${L.max_pixels} pixels`];
      if (!L.sizes.includes(`${w}x${h}`) && (w % L.size_multiple || h % L.size_multiple ||
          Math.min(w, h) < L.min_side || Math.max(w, h) > L.max_side))
        return ["size", `size: a table size or multiples of ${L.size_multiple} from ${L.min_side} to ${L.max_side}`];
    }
  }
  return null;
}

function checkGenerate(f) {
  const L = CONFIG.limits;
  const size = checkSize(f.size);
  if (size) return size;
  const int = (v) => Number.isInteger(v);
  if (f.num_frames !== null && (!int(f.num_frames) || f.num_frames < 1 || f.num_frames > L.max_frames))
    return ["num_frames", `num_frames: an integer from 1 to ${L.max_frames} (this server's limit)`];
  if (f.fps !== null && !(f.fps > L.fps[0] && f.fps <= L.fps[1]))
    return ["fps", `fps: above ${L.fps[0]} and at most ${L.fps[1]}`];
  if (f.num_inference_steps !== null && (!int(f.num_inference_steps) || f.num_inference_steps < L.steps[0] ||
      f.num_inference_steps > L.steps[1]))
    return ["num_inference_steps", `num_inference_steps: an integer from ${L.steps[0]} to ${L.steps[1]} (this server's limit)`];
  if (f.guidance_scale !== null && !(f.guidance_scale >= L.guidance[0] && f.guidance_scale <= L.guidance[1]))
    return ["guidance_scale", `guidance_scale: from ${L.guidance[0]} to ${L.guidance[1]}`];
  if (f.seed !== null && (!int(f.seed) || f.seed < 0 || f.seed > L.max_seed))
    return ["seed", `seed: an integer from 0 to ${L.max_seed}`];
  return null;
}

function storedRequests() {
  try { return JSON.parse(sessionStorage.getItem(REQ_STORE) || "{}"); } catch (_) { return {}; }
}

// The check of the file now in `input` (run again when the file changed since, or the check is still running).
async function settledUpload(input, recheck) {
  const entry = uploads.get(input.id);
  if (!entry || entry.file !== input.files[0] || (!entry.result && !entry.error)) await recheck();
  return uploads.get(input.id) || {};
}

// Resolution tier x aspect ratio -> the release's size table (DESIGN 2.7), filled into the size field and checked
// against this server's limits at once.
function fillSizeOptions() {
  const tier = $("gen-tier").value;
  const keep = $("gen-aspect").value || CONFIG.aspect_ratios[0];
  $("gen-aspect").replaceChildren(...CONFIG.aspect_ratios.map((a) => el("option", {
    value: a, text: tier && CONFIG.resolutions[tier] ? `${a}  (${CONFIG.resolutions[tier][a]})` : a })));
  $("gen-aspect").value = keep;
  $("gen-aspect").disabled = !tier || tier === "custom";
}

function showSizeCheck() {
  const field = document.querySelector('#gen-form .field[data-param="size"]');
  field.classList.remove("invalid");
  field.querySelector(".err").textContent = "";
  const bad = checkSize($("gen-size").value.trim());
  if (bad) { field.classList.add("invalid"); field.querySelector(".err").textContent = bad[1]; }
}

function sizeFromSelectors() {
  fillSizeOptions();
  const tier = $("gen-tier").value;
  if (tier !== "custom") $("gen-size").value = tier ? CONFIG.resolutions[tier][$("gen-aspect").value] : "";
  showSizeCheck();
}

function selectorsFromSize() {
  const size = $("gen-size").value.trim().toLowerCase().replace(/\s*[x*]\s*/, "x");
  let tier = size ? "custom" : "", aspect = $("gen-aspect").value;
  for (const [t, row] of Object.entries(CONFIG.resolutions)) {
    for (const [a, wh] of Object.entries(row)) if (wh === size) { tier = t; aspect = a; }
  }
  $("gen-tier").value = tier;
  $("gen-aspect").value = aspect;
  fillSizeOptions();
  showSizeCheck();
}

// The reasoner's prompt upsampling (POST /v1/prompts/upsample), with the reference image when the mode uses one.
async function upsamplePrompt() {
  const root = $("gen-form");
  clearErrors(root);
  $("gen-error").textContent = "";
  const status = $("gen-upsample-status");
  const prompt = $("gen-prompt").value;
  if (!prompt.trim()) { showError(root, $("gen-error"), "prompt", "write a short prompt to upsample first"); return; }
  const body = { prompt };
  if ($("gen-ref").files[0] && !$("gen-ref").disabled) {
    const up = await settledUpload($("gen-ref"), checkRef);
    if (up.error) { showError(root, $("gen-error"), "input_reference", up.error); return; }
    if (up.result.kind === "image") body.image_url = await readFile(up.file, "dataurl");
  }
  $("gen-upsample").disabled = true;
  status.textContent = "the reasoner is writing…";
  try {
    const out = await (await api("/v1/prompts/upsample", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    $("gen-prompt").value = out.structured ? JSON.stringify(JSON.parse(out.prompt), null, 2) : out.prompt;
    status.textContent = out.structured ? "upsampled into the release's JSON prompt"
                                        : "the reasoner's answer held no JSON object: shown as it came";
  } catch (e) {
    status.textContent = "";
    const param = e.api && e.api.param === "image_url" ? "input_reference" : e.api && e.api.param;
    if (e.api) showError(root, $("gen-error"), param, e.api.message);
    else $("gen-error").textContent = String(e);
  } finally {
    $("gen-upsample").disabled = !CONFIG.reasoner;
  }
}

async function submitGenerate(ev) {
  ev.preventDefault();
  const root = $("gen-form");
  clearErrors(root);
  $("gen-error").textContent = "";
  const fields = {
    prompt: $("gen-prompt").value, negative_prompt: $("gen-negative").value.trim() || null,
    size: $("gen-size").value.trim() || null, num_frames: num("gen-frames"), fps: num("gen-fps"),
    num_inference_steps: num("gen-steps"), guidance_scale: num("gen-guidance"), seed: num("gen-seed"),
  };
  const bad = checkGenerate(fields);
  if (bad) { showError(root, $("gen-error"), bad[0], bad[1]); return; }
  const form = new FormData();
  const record = {};
  // a multipart form carries line breaks as CRLF (the browser converts them); the record keeps what was sent
  const sent = (v) => String(v).replace(/\r\n|\r|\n/g, "\r\n");
  for (const [k, v] of Object.entries(fields)) {
    if (v !== null && v !== "") { form.append(k, String(v)); record[k] = sent(v); }
  }
  if ($("gen-sound").checked) { form.append("generate_sound", "true"); record.generate_sound = "true"; }
  const extra = {};
  const mode = $("gen-action-mode").value;
  if (mode) {
    extra.action_mode = mode;
    extra.domain_name = $("gen-embodiment").value;
    const chunk = num("gen-chunk");
    if (chunk !== null) extra.action_chunk_size = chunk;
    if ($("gen-action-file").files[0]) {
      const up = await settledUpload($("gen-action-file"), checkActionFile);
      if (up.error) { showError(root, $("gen-error"), "extra_params.action", up.error); return; }
      extra.action = up.result;
    }
  }
  if (Object.keys(extra).length) {
    form.append("extra_params", JSON.stringify(extra));
    record.extra_params = JSON.stringify(extra);
  }
  const ref = $("gen-ref").files[0];
  if ($("gen-mode").value !== "t2v" || mode === "inverse_dynamics") {
    if (!ref && $("gen-mode").value !== "t2v") {
      showError(root, $("gen-error"), "input_reference", "choose an image or video for this mode");
      return;
    }
  }
  if (ref && !$("gen-ref").disabled) {
    const up = await settledUpload($("gen-ref"), checkRef);
    if (up.error) { showError(root, $("gen-error"), "input_reference", up.error); return; }
    form.append("input_reference", ref, ref.name);
    record.input_reference = "@" + ref.name;
  }
  $("gen-submit").disabled = true;
  try {
    const job = await (await api("/v1/videos", { method: "POST", body: form })).json();
    const all = storedRequests();
    all[job.id] = record;
    sessionStorage.setItem(REQ_STORE, JSON.stringify(all));
    selectTab("jobs");
  } catch (e) {
    if (e.api) showError(root, $("gen-error"), e.api.param, e.api.message);
    else $("gen-error").textContent = String(e);
  } finally {
    $("gen-submit").disabled = false;
  }
}

function syncModeFields() {
  const mode = $("gen-mode").value;
  const action = $("gen-action-mode").value;
  $("gen-ref").disabled = mode === "t2v" && action !== "inverse_dynamics" && action !== "policy";
  $("gen-ref").accept = mode === "v2v" || action === "inverse_dynamics" ? "video/mp4" : "image/png,image/jpeg,image/webp";
  $("gen-embodiment").disabled = $("gen-chunk").disabled = $("gen-action-file").disabled = !action;
  $("gen-sound").disabled = !!action;
  checkRef();
  if (!$("gen-action-file").disabled) checkActionFile();
}

// ---------------------------------------------------------------------------------------------------- jobs

function snippets(job, record) {
  const origin = location.origin;
  const r = record || Object.fromEntries(Object.entries({
    prompt: job.prompt, size: job.size, num_frames: job.num_frames, fps: job.fps, seed: job.seed,
  }).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [k, String(v)]));
  const q = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
  const keyed = CONFIG.api_key_required;
  const curl = ["curl -s " + origin + "/v1/videos"];
  if (keyed) curl.push('-H "Authorization: Bearer $COSMOS3_API_KEY"');
  for (const [k, v] of Object.entries(r)) {
    curl.push(k === "input_reference" ? "-F " + q("input_reference=" + v) : "-F " + q(k + "=" + v));
  }
  const data = Object.fromEntries(Object.entries(r).filter(([k]) => k !== "input_reference"));
  const py = ["import os, time, httpx", "",
    `client = httpx.Client(base_url=${JSON.stringify(origin)}, timeout=60` +
      (keyed ? ',\n                      headers={"Authorization": "Bearer " + os.environ["COSMOS3_API_KEY"]})' : ")"),
    `data = ${JSON.stringify(data, null, 4)}`];
  if (r.input_reference) {
    py.push(`job = client.post("/v1/videos", data=data, files={"input_reference": open(${JSON.stringify(r.input_reference.slice(1))}, "rb")}).json()`);
  } else {
    py.push('job = client.post("/v1/videos", data=data).json()');
  }
  py.push('while job["status"] in ("queued", "in_progress"):', '    time.sleep(1)',
          '    job = client.get(f"/v1/videos/{job[\'id\']}").json()',
          'open("video.mp4", "wb").write(client.get(f"/v1/videos/{job[\'id\']}/content").content)');
  // openai's client has a videos resource (POST {base_url}/videos, multipart); its typed arguments are OpenAI's own
  // (prompt, size, seconds, input_reference), so this server's other form fields travel in extra_body.
  const { prompt, size, input_reference, ...rest } = r;
  const oa = ["import os, time", "from openai import OpenAI", "",
    `client = OpenAI(base_url=${JSON.stringify(origin + "/v1")}, ` +
      (keyed ? 'api_key=os.environ["COSMOS3_API_KEY"])' : 'api_key="unused")  # this server was started without --api-key'),
    "# client.videos.create sends a multipart form to /v1/videos; the fields it does not name itself (frames, steps,",
    "# guidance, seed, sound, extra_params, ...) go in extra_body, which the client adds to the same form",
    "job = client.videos.create(", `    prompt=${JSON.stringify(prompt || "")},`];
  if (size) oa.push(`    size=${JSON.stringify(size)},`);
  if (input_reference) oa.push(`    input_reference=open(${JSON.stringify(input_reference.slice(1))}, "rb"),`);
  oa.push(`    extra_body=${JSON.stringify(rest, null, 4).replace(/\n/g, "\n    ")},`, ")",
          'while job.status in ("queued", "in_progress"):', "    time.sleep(1)", "    job = client.videos.retrieve(job.id)",
          'client.videos.download_content(job.id).write_to_file("video.mp4")');
  return { curl: curl.join(" \\\n  "), python: py.join("\n"), openai: oa.join("\n") };
}

function plotActions(action) {
  const rows = action.data || [];
  const wrap = el("div", { class: "plots" });
  if (!rows.length) return wrap;
  const dims = Math.min(action.raw_action_dim || rows[0].length, rows[0].length);
  const NS = "http://www.w3.org/2000/svg";
  const W = 150, H = 60, P = 4;
  for (let d = 0; d < dims; d++) {
    const ys = rows.map((r) => Number(r[d]));
    const min = Math.min(...ys), max = Math.max(...ys);
    const lo = max - min < 1e-9 ? min - 1 : min, hi = max - min < 1e-9 ? max + 1 : max; // a constant: a level line
    const pts = ys.map((y, t) => {
      const x = P + (rows.length > 1 ? t / (rows.length - 1) : 0.5) * (W - 2 * P);
      return x.toFixed(1) + "," + (H - P - (y - lo) / (hi - lo) * (H - 2 * P)).toFixed(1);
    }).join(" ");
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "action-plot");
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts); line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2f6fdd"); line.setAttribute("stroke-width", "1.5");
    svg.append(line);
    wrap.append(el("figure", {}, svg, el("figcaption", { text: `dim ${d}: ${min.toFixed(3)} … ${max.toFixed(3)}` })));
  }
  return wrap;
}

function snippetBlock(kind) {
  const pre = el("pre", { class: kind });
  const copy = el("button", { type: "button", class: "copy", text: "Copy " + (kind === "python" ? "httpx" : kind) });
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(pre.textContent); copy.textContent = "Copied"; } catch (_) {
      getSelection().selectAllChildren(pre); // no clipboard (plain http on another host): select it for Ctrl+C
    }
  });
  return el("div", { class: "snippet" }, copy, pre);
}

function jobCard(job) {
  let card = document.querySelector(`.job[data-id="${CSS.escape(job.id)}"]`);
  if (!card) {
    card = el("div", { class: "job", "data-id": job.id });
    const cancel = el("button", { type: "button", class: "cancel", text: "Cancel" });
    cancel.addEventListener("click", () => cancelJob(job.id));
    card.append(
      el("div", { class: "head" }, el("span", { class: "prompt" }), el("span", { class: "status" }), cancel),
      el("div", { class: "row" }, el("progress", { max: "100", value: "0" }), el("span", { class: "steps muted" }),
         el("span", { class: "meta muted" })),
      el("div", { class: "err job-error" }),
      el("div", { class: "result" }),
      el("details", { class: "request" }, el("summary", { text: "Request as curl / openai / httpx" }),
         snippetBlock("curl"), snippetBlock("openai"), snippetBlock("python")));
    const snip = snippets(job, storedRequests()[job.id]);
    card.querySelector("pre.curl").textContent = snip.curl;
    card.querySelector("pre.openai").textContent = snip.openai;
    card.querySelector("pre.python").textContent = snip.python;
  }
  updateCard(card, job);
  return card;
}

function updateCard(card, job) {
  card.querySelector(".prompt").textContent = job.prompt || "(no prompt)";
  const status = card.querySelector(".status");
  status.textContent = job.status;
  status.className = "status " + job.status;
  card.querySelector("progress").value = job.progress || 0;
  card.querySelector(".steps").textContent = `${job.progress || 0}%` +
    (job.steps ? ` · step ${job.step || 0} of ${job.steps}` : "");
  card.querySelector(".meta").textContent = [job.size, job.num_frames && job.num_frames + " frames",
    job.fps && job.fps + " fps", job.seed !== null && job.seed !== undefined && "seed " + job.seed]
    .filter(Boolean).join(" · ");
  card.querySelector(".cancel").disabled = !(job.status === "queued" || job.status === "in_progress");
  card.querySelector(".job-error").textContent = job.error ? job.error.message : "";
  card.dataset.status = job.status;
  if (job.status === "completed" && !card.dataset.loaded) {
    card.dataset.loaded = "1";
    showResult(card, job);
  }
}

async function showResult(card, job) {
  const box = card.querySelector(".result");
  if (job.action) {
    box.append(el("div", { class: "muted", text: `actions: ${job.action.shape.join(" x ")}` }), plotActions(job.action));
    const blob = new Blob([JSON.stringify(job.action)], { type: "application/json" });
    box.append(el("a", { href: URL.createObjectURL(blob), download: job.id + ".action.json", text: "download actions (JSON)" }));
  }
  if (job.action && job.action.shape && job.num_frames === 0) return;
  try {
    const res = await api(`/v1/videos/${encodeURIComponent(job.id)}/content`);
    const url = URL.createObjectURL(await res.blob());
    blobUrls.set(job.id, url);
    const video = el("video", { controls: "", src: url, preload: "metadata", playsinline: "" });
    box.prepend(video);
    box.append(" ", el("a", { href: url, download: job.id + ".mp4", text: "download video (MP4)" }));
  } catch (e) {
    if (!(e.api && e.api.code === "no_video")) box.append(el("div", { class: "err", text: e.message }));
  }
}

async function watchJob(id) {
  if (watching.has(id)) return;
  const ctrl = new AbortController();
  watching.set(id, ctrl);
  try {
    const res = await api(`/v1/videos/${encodeURIComponent(id)}/events`, { signal: ctrl.signal });
    await readSSE(res, (name, data) => {
      const body = JSON.parse(data);
      if (name === "error") { $("jobs-error").textContent = body.error.message; return false; }
      const card = document.querySelector(`.job[data-id="${CSS.escape(id)}"]`);
      if (card) updateCard(card, body);
      return name !== "done" && name !== "timeout";
    }, ctrl.signal);
  } catch (e) {
    if (e.name !== "AbortError") $("jobs-error").textContent = e.message;
  } finally {
    watching.delete(id);
  }
}

async function loadJobs() {
  $("jobs-error").textContent = "";
  try {
    const list = await (await api("/v1/videos?limit=50")).json();
    const box = $("jobs-list");
    const cards = list.data.map(jobCard);
    box.replaceChildren(...cards);
    for (const job of list.data) {
      if (job.status === "queued" || job.status === "in_progress") watchJob(job.id);
    }
    if (!list.data.length) box.append(el("p", { class: "muted", text: "No jobs yet: submit one on the Generate tab." }));
  } catch (e) {
    $("jobs-error").textContent = e.message;
  }
}

async function cancelJob(id) {
  try {
    const job = await (await api(`/v1/videos/${encodeURIComponent(id)}/cancel`, { method: "POST" })).json();
    const card = document.querySelector(`.job[data-id="${CSS.escape(id)}"]`);
    if (card) updateCard(card, job);
  } catch (e) {
    $("jobs-error").textContent = e.message;
  }
}

// ---------------------------------------------------------------------------------------------------- start

async function start() {
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => selectTab(t.dataset.tab)));
  $("api-key-save").addEventListener("click", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value);
    $("api-key").value = "";
    $("api-key-status").textContent = "key set for this tab";
    if (!$("panel-jobs").hidden) loadJobs();
  });
  CONFIG = await (await fetch("/playground/config")).json();
  $("model").textContent = CONFIG.model;
  if (CONFIG.api_key_required && !sessionStorage.getItem(KEY_STORE)) showKeyBar("this server needs its API key");
  else if (CONFIG.api_key_required) $("keybar").hidden = false;
  for (const e of CONFIG.embodiments) $("gen-embodiment").append(el("option", { value: e.name, text: `${e.name} (${e.raw_dim}D)` }));
  for (const s of CONFIG.limits.sizes) $("sizes").append(el("option", { value: s }));
  for (const [tier, row] of Object.entries(CONFIG.resolutions)) {
    const smallest = Math.min(...Object.values(row).map((wh) => wh.split("x").reduce((a, b) => a * b)));
    $("gen-tier").append(el("option", { value: tier, text: tier + (smallest > CONFIG.limits.max_pixels
      ? "  (above this server's limit)" : "") }));
  }
  $("gen-tier").append(el("option", { value: "custom", text: "custom size" }));
  fillSizeOptions();
  $("gen-tier").addEventListener("change", sizeFromSelectors);
  $("gen-aspect").addEventListener("change", sizeFromSelectors);
  $("gen-size").addEventListener("change", selectorsFromSize);
  const L = CONFIG.limits;
  $("gen-frames").max = L.max_frames;
  $("gen-steps").max = L.steps[1];
  $("gen-limits").textContent = `This server's limits: ${L.max_pixels} pixels per frame, ${L.max_frames} frames, ` +
    `${L.steps[1]} steps, guidance ${L.guidance[0]}-${L.guidance[1]}, uploads up to ${L.max_upload_bytes} bytes` +
    (L.max_job_seconds ? `, about ${L.max_job_seconds} s of compute per job` : "") + ".";

  $("chat-send").addEventListener("click", sendChat);
  $("chat-input").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) sendChat(); });
  $("chat-stop").addEventListener("click", () => chat.controller && chat.controller.abort());
  $("chat-clear").addEventListener("click", () => { chat.messages = []; $("chat-log").replaceChildren(); });
  $("chat-file").addEventListener("change", (e) => { addChatFiles(e.target.files); e.target.value = ""; });
  const drop = $("panel-chat");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); $("chat-drop").classList.add("over"); });
  drop.addEventListener("dragleave", () => $("chat-drop").classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); $("chat-drop").classList.remove("over"); addChatFiles(e.dataTransfer.files); });

  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => e.preventDefault());
  $("gen-form").addEventListener("submit", submitGenerate);
  $("gen-mode").addEventListener("change", syncModeFields);
  $("gen-action-mode").addEventListener("change", syncModeFields);
  $("gen-embodiment").addEventListener("change", () => { if (!$("gen-action-file").disabled) checkActionFile(); });
  dropInto($("gen-ref"), checkRef);
  dropInto($("gen-action-file"), checkActionFile);
  $("gen-upsample").addEventListener("click", upsamplePrompt);
  $("gen-upsample").disabled = !CONFIG.reasoner;
  syncModeFields();
  $("jobs-refresh").addEventListener("click", loadJobs);
  if (!CONFIG.reasoner) $("chat-error").textContent = "this checkpoint has no reasoner: chat is unavailable";
  if (!CONFIG.generator) $("gen-error").textContent = "this checkpoint has no generator: generation is unavailable";
  selectTab(CONFIG.reasoner ? "chat" : "generate");
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => { document.body.dataset.ready = "error"; console.error(e); }); });
