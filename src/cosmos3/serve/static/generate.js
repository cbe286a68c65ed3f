// cosmos3 playground, the Generate tab: uploads checked as the API checks them, the size selectors, prompt
// upsampling and the job submission (app.js holds the helpers and starts the page; same rules apply).
"use strict";

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
  if (!kind || !kinds.includes(kind))
    throw new Error(`${file.name}: not ${kinds.map((k) => KIND_WORDS[k]).join(" or ")}`);
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
    throw new Error(`${file.name}: ${bytes(file.size)} is above this server's limit of ` +
                    bytes(CONFIG.limits.max_upload_bytes));
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
  if ($("gen-sound").checked && !$("gen-sound").disabled) { // a box left ticked before an action mode stays unsent
    form.append("generate_sound", "true");
    record.generate_sound = "true";
  }
  const extra = {};
  const mode = $("gen-action-mode").value;
  if (mode) {
    extra.action_mode = mode;
    extra.domain_name = $("gen-embodiment").value;
    const chunk = num("gen-chunk");
    if (chunk !== null) extra.action_chunk_size = chunk;
    if ($("gen-action-file").files[0] && !$("gen-action-file").disabled) {
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
  $("gen-ref").disabled = mode === "t2v" && !action; // every action mode starts from a picture (or a clip)
  $("gen-ref").accept = mode === "v2v" || action === "inverse_dynamics" ? "video/mp4" : "image/png,image/jpeg,image/webp";
  $("gen-embodiment").disabled = $("gen-chunk").disabled = !action;
  $("gen-action-file").disabled = action !== "forward_dynamics"; // the one mode whose actions are an input
  $("gen-sound").disabled = !!action;
  checkRef();
  if (!$("gen-action-file").disabled) checkActionFile();
}
