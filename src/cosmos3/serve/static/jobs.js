// cosmos3 playground, the Jobs tab: job cards with live progress, results, action plots and the request as code
// (app.js holds the helpers and starts the page; same rules apply).
"use strict";

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
      (keyed ? 'api_key=os.environ["COSMOS3_API_KEY"])'
             : 'api_key="unused")  # this server was started without --api-key'),
    "# client.videos.create sends a multipart form to /v1/videos; the fields it does not name itself (frames, steps,",
    "# guidance, seed, sound, extra_params, ...) go in extra_body, which the client adds to the same form",
    "job = client.videos.create(", `    prompt=${JSON.stringify(prompt || "")},`];
  if (size) oa.push(`    size=${JSON.stringify(size)},`);
  if (input_reference) oa.push(`    input_reference=open(${JSON.stringify(input_reference.slice(1))}, "rb"),`);
  oa.push(`    extra_body=${JSON.stringify(rest, null, 4).replace(/\n/g, "\n    ")},`, ")",
          'while job.status in ("queued", "in_progress"):', "    time.sleep(1)",
          "    job = client.videos.retrieve(job.id)",
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
