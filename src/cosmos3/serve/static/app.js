// cosmos3 playground: Chat, Generate and Jobs on the server's public API (the same calls any client makes). This
// file: the helpers, the API key, the Chat tab and the start; generate.js and jobs.js hold the other two tabs (classic
// scripts sharing one global scope, run in order before DOMContentLoaded).
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
