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
  for (const f of files) {
    if (f.size > CONFIG.limits.max_upload_bytes) {
      $("chat-error").textContent = f.name + ": " + f.size + " bytes is above this server's limit of " +
        CONFIG.limits.max_upload_bytes + " bytes";
      continue;
    }
    const kind = f.type.startsWith("video/") ? "video" : "image";
    chat.attachments.push({ name: f.name, kind, url: await readFile(f, "dataurl") });
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
function checkGenerate(f) {
  const L = CONFIG.limits;
  if (f.size) {
    const m = /^(\d{1,5})\s*[x*]\s*(\d{1,5})$/i.exec(f.size);
    if (!m && !/^\d{3}p$/i.test(f.size)) return ["size", "size: expected WIDTHxHEIGHT, e.g. 320x192"];
    if (m) {
      const w = Number(m[1]), h = Number(m[2]);
      if (w * h > L.max_pixels) return ["size", `size ${w}x${h} is above this server's limit of ${L.max_pixels} pixels`];
      if (!L.sizes.includes(`${w}x${h}`) && (w % L.size_multiple || h % L.size_multiple ||
          Math.min(w, h) < L.min_side || Math.max(w, h) > L.max_side))
        return ["size", `size: a table size or multiples of ${L.size_multiple} from ${L.min_side} to ${L.max_side}`];
    }
  }
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
  for (const [k, v] of Object.entries(fields)) {
    if (v !== null && v !== "") { form.append(k, String(v)); record[k] = String(v); }
  }
  if ($("gen-sound").checked) { form.append("generate_sound", "true"); record.generate_sound = "true"; }
  const extra = {};
  const mode = $("gen-action-mode").value;
  if (mode) {
    extra.action_mode = mode;
    extra.domain_name = $("gen-embodiment").value;
    const chunk = num("gen-chunk");
    if (chunk !== null) extra.action_chunk_size = chunk;
    const file = $("gen-action-file").files[0];
    if (file) {
      let parsed;
      try { parsed = JSON.parse(await readFile(file, "text")); } catch (e) {
        showError(root, $("gen-error"), "extra_params.action", file.name + ": not valid JSON (" + e.message + ")");
        return;
      }
      extra.action = Array.isArray(parsed) ? parsed : (parsed.action || parsed.actions || parsed.data);
      if (!Array.isArray(extra.action)) {
        showError(root, $("gen-error"), "extra_params.action", file.name + ": expected a list of action rows");
        return;
      }
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
    if (ref.size > CONFIG.limits.max_upload_bytes) {
      showError(root, $("gen-error"), "input_reference",
                `${ref.name}: ${ref.size} bytes is above this server's limit of ${CONFIG.limits.max_upload_bytes}`);
      return;
    }
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
  return { curl: curl.join(" \\\n  "), python: py.join("\n") };
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
      el("details", { class: "request" }, el("summary", { text: "Request as curl / httpx" }),
         el("pre", { class: "curl" }), el("pre", { class: "python" })));
    const snip = snippets(job, storedRequests()[job.id]);
    card.querySelector(".curl").textContent = snip.curl;
    card.querySelector(".python").textContent = snip.python;
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

  $("gen-form").addEventListener("submit", submitGenerate);
  $("gen-mode").addEventListener("change", syncModeFields);
  $("gen-action-mode").addEventListener("change", syncModeFields);
  syncModeFields();
  $("jobs-refresh").addEventListener("click", loadJobs);
  if (!CONFIG.reasoner) $("chat-error").textContent = "this checkpoint has no reasoner: chat is unavailable";
  if (!CONFIG.generator) $("gen-error").textContent = "this checkpoint has no generator: generation is unavailable";
  selectTab(CONFIG.reasoner ? "chat" : "generate");
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => { document.body.dataset.ready = "error"; console.error(e); }); });
