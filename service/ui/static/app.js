// The ftserve dashboard: plain JavaScript over ftserve's public HTTP API (the same calls a user
// makes), no build step. Pages by URL hash: #/jobs, #/jobs/<id>, #/playground, #/files, #/models.
"use strict";

// The API lives beside /ui, under whatever prefix a reverse proxy serves the dashboard at.
const BASE = location.pathname.replace(/\/ui(\/.*)?$/, "");
const KEY = "ftserve-api-key";
const ACTIVE = ["validating_files", "queued", "running", "paused"];
const main = document.getElementById("main");
let timers = [];

// ------------------------------------------------------------------ helpers
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
const fmtTime = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
const fmtNum = (x, d = 4) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : "");
function duration(job) {
  if (!job.created_at) return "";
  const end = job.finished_at || Math.floor(Date.now() / 1000);
  const s = Math.max(0, end - job.created_at);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}
function say(text) { document.getElementById("status").textContent = text; }
function every(ms, fn) { timers.push(setInterval(fn, ms)); }

class Unauthorized extends Error {}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...(opts.headers || {}) };
  const init = { method: opts.method || "GET", headers };
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(opts.json); }
  if (opts.body !== undefined) init.body = opts.body;
  const r = await fetch(BASE + path, init);
  if (r.status === 401) {
    sessionStorage.removeItem(KEY);
    keyPrompt("That key was refused; enter another.");
    throw new Unauthorized();
  }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") && !opts.text ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body && body.error ? body.error.message : `HTTP ${r.status}`);
  return body;
}

async function allPages(path) {  // every item of a paginated list, newest first
  const items = [];
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    items.push(...page.data);
    if (!page.has_more || !page.data.length) return items;
    after = page.data[page.data.length - 1].id;
  }
}

function emptyRow(columns, text) { return h("tr", { class: "empty" }, h("td", { colspan: columns, text })); }
function errorBox(err) { return h("p", { class: "error", role: "alert", text: err.message || String(err) }); }

// ------------------------------------------------------------------ the key
function keyPrompt(message) {
  timers.forEach(clearInterval); timers = [];
  document.getElementById("forget").hidden = true;
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true });
  const form = h("form", { class: "key", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, input.value);
    try { await api("/v1/models"); route(); } catch (err) { if (!(err instanceof Unauthorized)) main.replaceChildren(errorBox(err)); }
  } },
  h("h1", { text: "Sign in" }),
  h("label", { for: "api-key", text: "API key (kept in this browser tab only)" }), input,
  message ? h("p", { class: "error", role: "alert", text: message }) : null,
  h("button", { class: "primary", type: "submit", text: "Open the dashboard" }));
  main.replaceChildren(form);
  input.focus();
}

// ------------------------------------------------------------------ jobs
async function jobsPage() {
  const list = h("tbody");
  const more = h("button", { type: "button", text: "Older jobs", hidden: true });
  let after = null;
  async function load() {
    const page = await api(`/v1/fine_tuning/jobs?limit=20${after ? `&after=${after}` : ""}`);
    if (!after && !page.data.length) list.append(emptyRow(8, "No fine-tuning jobs yet"));
    for (const job of page.data) list.append(jobRow(job));
    after = page.data.length ? page.data[page.data.length - 1].id : after;
    more.hidden = !page.has_more;
  }
  more.addEventListener("click", load);
  main.replaceChildren(
    h("h1", { text: "Fine-tuning jobs" }),
    await jobForm(),
    h("h2", { text: "Jobs, newest first" }),
    h("table", { "aria-label": "Jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Status", "Model", "Method", "Created", "Duration", "Trained tokens", ""]
        .map((t) => h("th", { text: t, class: t === "Trained tokens" ? "num" : null })))), list),
    more);
  await load();
}

function jobActions(job, after) {
  const act = (label, path, cls) => h("button", { type: "button", class: cls, text: label, onclick: async () => {
    try { await api(`/v1/fine_tuning/jobs/${job.id}/${path}`, { method: "POST" }); say(`${label}: ${job.id}`); after(); }
    catch (err) { if (!(err instanceof Unauthorized)) alert(err.message); }
  } });
  const buttons = [];
  if (job.status === "running" || job.status === "queued") buttons.push(act("Pause", "pause"));
  if (job.status === "paused") buttons.push(act("Resume", "resume"));
  if (ACTIVE.includes(job.status)) buttons.push(act("Cancel", "cancel", "danger"));
  return buttons;
}

function jobRow(job) {
  const row = h("tr", { "data-job": job.id },
    h("td", {}, h("a", { href: `#/jobs/${job.id}`, text: job.id })),
    h("td", {}, h("span", { class: `status ${job.status}`, text: job.status })),
    h("td", { text: job.fine_tuned_model || job.model }),
    h("td", { text: (job.method && job.method.type) || "supervised" }),
    h("td", { text: fmtTime(job.created_at) }),
    h("td", { text: duration(job) }),
    h("td", { class: "num", text: job.trained_tokens ?? "" }),
    h("td", {}, jobActions(job, async () => row.replaceWith(jobRow(await api(`/v1/fine_tuning/jobs/${job.id}`))))));
  return row;
}

async function jobForm() {
  const files = (await allPages("/v1/files?purpose=fine-tune")).filter((f) => f.status === "processed");
  const models = (await api("/v1/models")).data.filter((m) => !m.id.includes(":ckpt-step-"));
  const options = (items, label, empty) => [empty ? h("option", { value: "", text: empty }) : null,
    ...items.map((x) => h("option", { value: x.id, text: label(x) }))];
  const field = (id, text, input) => h("label", { for: id }, text, input);
  const num = (id, placeholder, step = "any") => h("input", { id, name: id, type: "number", step, min: "0", placeholder });
  const form = h("form", { class: "grid", "aria-label": "New fine-tuning job" },
    field("training_file", "Training file", h("select", { id: "training_file", required: true },
      options(files, (f) => `${f.filename} (${f.id})`))),
    field("validation_file", "Validation file", h("select", { id: "validation_file" },
      options(files, (f) => `${f.filename} (${f.id})`, "none"))),
    field("model", "Model", h("select", { id: "model" }, options(models, (m) => m.id))),
    field("method", "Method", h("select", { id: "method" }, ["supervised", "dpo", "continued_pretraining"]
      .map((m) => h("option", { value: m, text: m })))),
    field("n_epochs", "Epochs", num("n_epochs", "auto", "1")),
    field("batch_size", "Batch size", num("batch_size", "auto", "1")),
    field("learning_rate", "Learning rate", num("learning_rate", "auto (1e-4 x multiplier)")),
    field("lora_r", "LoRA rank", num("lora_r", "8", "1")),
    field("n_checkpoints", "Checkpoints", num("n_checkpoints", "3", "1")),
    field("suffix", "Suffix", h("input", { id: "suffix", maxlength: "64", placeholder: "optional" })),
    h("div", { class: "field" }, h("span", {}, " "),
      h("button", { class: "primary", type: "submit", text: "Start job" })),
    h("p", { id: "job-form-error", class: "error", role: "alert" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = (id) => form.querySelector(`#${id}`).value;
    const hp = {};
    for (const k of ["n_epochs", "batch_size", "lora_r", "n_checkpoints"]) if (v(k)) hp[k] = parseInt(v(k), 10);
    if (v("learning_rate")) hp.learning_rate = parseFloat(v("learning_rate"));
    const method = v("method");
    const body = { model: v("model"), training_file: v("training_file"),
                   method: { type: method, [method]: { hyperparameters: hp } } };
    if (v("validation_file")) body.validation_file = v("validation_file");
    if (v("suffix")) body.suffix = v("suffix");
    try {
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", json: body });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      if (!(err instanceof Unauthorized)) form.querySelector("#job-form-error").textContent = err.message;
    }
  });
  return form;
}

// ------------------------------------------------------------------ a job
function chart(id, title, series) {
  // series: [[label, colour]]; data filled by update(steps, columns)
  const box = h("div", { class: "chart", id, "data-points": "0", role: "img", "aria-label": title },
    h("div", { class: "empty", text: `${title}: waiting for the first step` }));
  let plot = null;
  box.update = (steps, columns) => {
    const n = steps.length;
    box.dataset.points = String(n);
    if (!n) return;
    const data = [steps, ...columns];
    if (!plot) {
      box.replaceChildren();
      plot = new uPlot({ title, width: Math.max(360, box.clientWidth - 16), height: 220,
        scales: { x: { time: false } }, axes: [{ label: "step" }, {}],
        series: [{ label: "step" }, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, spanGaps: true }))] },
      data, box);
    } else plot.setData(data);
  };
  return box;
}

async function jobPage(id) {
  const job = await api(`/v1/fine_tuning/jobs/${id}`);
  const dpo = job.method && (job.method.type === "dpo" || job.method.type === "kto");
  const rft = job.method && job.method.type === "reinforcement";  // reward curves and sampled answers
  const loss = rft
    ? chart("loss-chart", "Reward (mean)", [["train reward", "#1f6feb"], ["validation reward", "#d4711f"]])
    : chart("loss-chart", "Loss", [["train loss", "#1f6feb"], ["validation loss", "#d4711f"]]);
  const second = rft
    ? chart("accuracy-chart", "Answer length (tokens)", [["train", "#1a7f37"], ["validation", "#8250df"]])
    : dpo
      ? chart("accuracy-chart", "Reward accuracy", [["train", "#1a7f37"], ["validation", "#8250df"]])
      : chart("accuracy-chart", "Token accuracy", [["train", "#1a7f37"], ["validation", "#8250df"]]);
  const samples = h("tbody");
  const head = h("div", { class: "row" });
  const log = h("div", { class: "log", id: "event-log", "aria-label": "Events", tabindex: "0" });
  const checkpoints = h("tbody");
  const report = h("div", { id: "before-after" });
  const flags = h("div", { id: "job-warnings", role: "status" });  // the trainer's warnings about the curves
  main.replaceChildren(
    h("h1", { text: `Job ${id}` }), head,
    h("div", { class: "charts" }, loss, second), flags,
    h("h2", { text: "Checkpoints" }),
    h("table", { "aria-label": "Checkpoints" }, h("thead", {}, h("tr", {},
      ["Step", "Train loss", "Validation loss", "Exact match", "Model", ""].map((t) => h("th", { text: t })))), checkpoints),
    ...(rft ? [h("h2", { text: "Sampled answers" }), h("table", { "aria-label": "Sampled answers", id: "samples" },
      h("thead", {}, h("tr", {}, ["Step", "Prompt", "Answer", "Reward"].map((t) => h("th", { text: t })))), samples)]
      : []),
    h("h2", { text: "Before and after" }), report,
    h("h2", { text: "Events" }), log);

  const seen = new Set(), events = [];  // every event so far, oldest first
  let reported = false;
  async function refresh() {
    const current = await api(`/v1/fine_tuning/jobs/${id}`);
    head.replaceChildren(...[
      h("span", { class: `status ${current.status}`, id: "job-status", text: current.status }),
      h("span", { class: "meta", text: `${current.model} · ${(current.method || {}).type || "supervised"} · ` +
        `${duration(current)}${current.trained_tokens ? ` · ${current.trained_tokens} tokens` : ""}` }),
      current.fine_tuned_model ? h("a", { href: `#/playground?b=${encodeURIComponent(current.fine_tuned_model)}`,
        text: "Chat with the fine-tuned model" }) : null,
      current.error && current.error.message ? h("span", { class: "error", text: current.error.message }) : null,
      ...jobActions(current, refresh)].filter(Boolean));
    // new events: pages from the newest (the API's order) until one already seen
    let after = null;
    const fresh = [];
    for (;;) {
      const page = await api(`/v1/fine_tuning/jobs/${id}/events?limit=100${after ? `&after=${after}` : ""}`);
      const unseen = page.data.filter((e) => !seen.has(e.id));
      fresh.push(...unseen);
      if (unseen.length < page.data.length || !page.has_more) break;
      after = page.data[page.data.length - 1].id;
    }
    fresh.forEach((e) => seen.add(e.id));
    events.push(...fresh.reverse());
    const metrics = events.filter((e) => e.type === "metrics" && e.data && "step" in e.data)
      .map((e) => e.data).sort((a, b) => a.step - b.step);
    const col = (k) => metrics.map((m) => (k in m ? m[k] : null));
    loss.update(metrics.map((m) => m.step), rft ? [col("train_reward_mean"), col("valid_reward_mean")]
      : [col("train_loss"), col("valid_loss")]);
    second.update(metrics.map((m) => m.step), rft ? [col("train_sample_length"), col("valid_sample_length")]
      : dpo ? [col("train_reward_accuracy"), col("valid_reward_accuracy")]
        : [col("train_mean_token_accuracy"), col("valid_mean_token_accuracy")]);
    if (rft) {  // the latest steps' sampled answers, newest first
      const shown = events.filter((e) => e.data && e.data.samples).slice(-5).reverse();
      samples.replaceChildren(...shown.flatMap((e) => e.data.samples.map((s) => h("tr", {},
        h("td", { text: e.data.step }), h("td", { text: s.prompt }), h("td", { text: s.answer }),
        h("td", { text: fmtNum(s.reward) })))));
    }
    flags.replaceChildren(...events.filter((e) => e.level === "warn" && e.data && "step" in e.data).map((e) =>
      h("p", { class: "warning", text: `\u26a0 step ${e.data.step}: ${e.message}` })));
    log.replaceChildren(...events.slice(-200).map((e) =>
      h("div", { text: `${new Date(e.created_at * 1000).toLocaleTimeString()}  ${e.message}` })));
    const ck = await allPages(`/v1/fine_tuning/jobs/${id}/checkpoints`);
    checkpoints.replaceChildren(...ck.map((c) => h("tr", {},
      h("td", { text: c.step_number }),
      h("td", { text: fmtNum(c.metrics.train_loss) }),
      h("td", { text: fmtNum(c.metrics.valid_loss) }),
      h("td", { text: "valid_exact_match" in c.metrics ? `${Math.round(c.metrics.valid_exact_match * 100)}%` : "" }),
      h("td", { text: c.fine_tuned_model_checkpoint }),
      h("td", {}, h("a", { href: `#/playground?a=${encodeURIComponent(current.model)}&b=${
        encodeURIComponent(c.fine_tuned_model_checkpoint)}`, text: "Chat with this" })))));
    const note = events.find((e) => e.data && e.data.eval_id);
    const rewards = events.find((e) => e.data && "valid_reward_after" in e.data);
    if (rewards && !reported) {
      reported = true;
      report.replaceChildren(h("p", {}, `Validation reward: ${fmtNum(rewards.data.valid_reward_before)} before, `,
        h("strong", { text: `${fmtNum(rewards.data.valid_reward_after)} after` }),
        h("span", { class: "meta", text: " (the job's grader)" })));
    } else if (note && !reported) { reported = true; await beforeAfter(report, note.data.eval_id); }
    else if (!note && !reported) {
      report.replaceChildren(h("p", { class: "meta", text: current.validation_file
        ? "Measured when the job succeeds." : "Give a job a validation file to see its answers before and after." }));
    }
    if (!ACTIVE.includes(current.status)) timers.forEach(clearInterval);
  }
  await refresh();
  every(2000, () => refresh().catch((err) => { if (!(err instanceof Unauthorized)) say(err.message); }));
}

async function beforeAfter(box, evalId) {
  const runs = (await api(`/v1/evals/${evalId}/runs?order=asc`)).data;
  const before = runs.find((r) => r.name.startsWith("before")), after = runs.find((r) => r.name.startsWith("after"));
  if (!before || !after) return;
  const items = async (run) => (await api(`/v1/evals/${evalId}/runs/${run.id}/output_items?limit=100`)).data;
  const [a, b] = await Promise.all([items(before), items(after)]);
  const byItem = new Map(b.map((i) => [i.datasource_item_id, i]));
  const exact = (run) => (run.per_testing_criteria_results.find((c) => c.testing_criteria === "exact match") || {}).passed;
  box.replaceChildren(
    h("p", {}, `Exact answers: ${exact(before)}/${before.result_counts.total} before, `,
      h("strong", { text: `${exact(after)}/${after.result_counts.total} after` }),
      h("span", { class: "meta", text: ` (eval ${evalId})` })),
    h("table", { "aria-label": "Answers before and after" },
      h("thead", {}, h("tr", {}, ["Question", "Reference", "Before", "After"].map((t) => h("th", { text: t })))),
      h("tbody", {}, a.map((x) => {
        const y = byItem.get(x.datasource_item_id);
        const q = x.datasource_item.input[x.datasource_item.input.length - 1];
        const cell = (item) => {
          const ok = item && item.results[0] && item.results[0].passed;
          return h("td", { class: ok ? "pass" : "fail" }, `${ok ? "✓" : "✗"} `, item ? item.sample.output[0].content : "");
        };
        return h("tr", {}, h("td", { text: q ? q.content : "" }), h("td", { text: x.datasource_item.reference }),
          cell(x), cell(y));
      }))));
}

// ------------------------------------------------------------------ playground
async function streamChat(model, messages, params, out, meta) {
  const started = performance.now();
  let first = null, text = "", usage = null;
  const r = await fetch(`${BASE}/v1/chat/completions`, { method: "POST", headers: {
    Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, "Content-Type": "application/json" },
  body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true }, ...params }) });
  if (r.status === 401) { sessionStorage.removeItem(KEY); keyPrompt("That key was refused."); return; }
  if (!r.ok) { const b = await r.json(); throw new Error(b.error ? b.error.message : `HTTP ${r.status}`); }
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (first === null) first = performance.now() - started;
          text += delta.content;
          out.textContent = text;
        }
      }
    }
  }
  meta.textContent = `time to first token ${first === null ? "-" : `${Math.round(first)} ms`} · ` +
    `${usage ? usage.completion_tokens : "?"} tokens · ${Math.round(performance.now() - started)} ms`;
  out.dataset.done = "true";
}

async function playgroundPage(query) {
  const models = (await api("/v1/models")).data.map((m) => m.id);
  const pick = (id, chosen) => h("select", { id, "aria-label": `Model ${id === "model-a" ? "A" : "B"}` },
    models.map((m) => h("option", { value: m, text: m, selected: m === chosen })));
  const tuned = models.find((m) => m.startsWith("ft:") && !m.includes(":ckpt-step-"));
  const a = pick("model-a", query.get("a") || models[0]);
  const b = pick("model-b", query.get("b") || tuned || models[0]);
  const system = h("textarea", { id: "system", rows: "2", placeholder: "optional" });
  const prompt = h("textarea", { id: "prompt", rows: "3", required: true });
  const temperature = h("input", { id: "temperature", type: "number", min: "0", max: "2", step: "0.1", value: "0" });
  const maxTokens = h("input", { id: "max_tokens", type: "number", min: "1", max: "4096", step: "1", value: "64" });
  const outs = [0, 1].map((i) => h("div", { class: "answer", id: `answer-${"ab"[i]}`, "aria-live": "polite" }));
  const metas = [0, 1].map((i) => h("p", { class: "meta", id: `meta-${"ab"[i]}` }));
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "grid", "aria-label": "Prompt", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    const messages = [...(system.value ? [{ role: "system", content: system.value }] : []),
      { role: "user", content: prompt.value }];
    const params = { temperature: parseFloat(temperature.value), max_tokens: parseInt(maxTokens.value, 10) };
    outs.forEach((o) => { o.textContent = ""; delete o.dataset.done; });
    metas.forEach((m) => { m.textContent = "streaming…"; });
    try {
      await Promise.all([streamChat(a.value, messages, params, outs[0], metas[0]),
        streamChat(b.value, messages, params, outs[1], metas[1])]);
    } catch (err) { error.textContent = err.message; }
  } },
  h("label", { for: "model-a" }, "Model A", a), h("label", { for: "model-b" }, "Model B", b),
  h("label", { for: "temperature" }, "Temperature", temperature), h("label", { for: "max_tokens" }, "Max tokens", maxTokens),
  h("label", { for: "system", style: "grid-column: 1 / -1" }, "System prompt", system),
  h("label", { for: "prompt", style: "grid-column: 1 / -1" }, "Message", prompt),
  h("div", {}, h("button", { class: "primary", type: "submit", text: "Send to both" })));
  main.replaceChildren(h("h1", { text: "Playground" }), form, error,
    h("div", { class: "side" },
      h("section", { "aria-label": "Model A answer" }, h("h2", { text: "A" }), outs[0], metas[0]),
      h("section", { "aria-label": "Model B answer" }, h("h2", { text: "B" }), outs[1], metas[1])));
}

// ------------------------------------------------------------------ files
async function filesPage() {
  const list = h("tbody");
  const preview = h("pre", { class: "preview", id: "preview", hidden: true });
  const purpose = h("select", { id: "purpose" }, ["fine-tune", "batch", "evals"].map((p) => h("option", { value: p, text: p })));
  const input = h("input", { id: "file-input", type: "file", accept: ".jsonl,.txt,.json" });
  const error = h("p", { class: "error", role: "alert" });
  const drop = h("div", { class: "drop", id: "drop", tabindex: "0", role: "button",
    "aria-label": "Drop a file here or press Enter to choose one" }, "Drop a JSONL or .txt file here, or choose one");
  async function upload(file) {
    error.textContent = "";
    const body = new FormData();
    body.append("purpose", purpose.value);
    body.append("file", file, file.name);
    try { const f = await api("/v1/files", { method: "POST", body }); say(`uploaded ${f.id}: ${f.status}`); await load(); }
    catch (err) { if (!(err instanceof Unauthorized)) error.textContent = err.message; }
  }
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]); });
  input.addEventListener("change", () => { if (input.files.length) upload(input.files[0]); });
  async function load() {
    const files = await allPages("/v1/files");
    if (!files.length) { list.replaceChildren(emptyRow(7, "No files yet")); return; }
    list.replaceChildren(...files.map((f) => h("tr", { "data-file": f.id },
      h("td", { text: f.filename }), h("td", { text: f.id }), h("td", { text: f.purpose }),
      h("td", {}, h("span", { class: `status ${f.status}`, text: f.status }),
        f.status_details ? h("pre", { class: "details", text: f.status_details }) : null),
      h("td", { class: "num", text: f.bytes }), h("td", { text: fmtTime(f.created_at) }),
      h("td", {}, h("button", { type: "button", text: "Preview", onclick: async () => {
        const text = await api(`/v1/files/${f.id}/content`, { text: true });  // JSONL: lines, not one document
        preview.hidden = false;
        preview.textContent = String(text).split("\n").slice(0, 5).join("\n");
      } })))));
  }
  main.replaceChildren(h("h1", { text: "Files" }),
    h("div", { class: "row" }, h("label", { for: "purpose" }, "Purpose "), purpose,
      h("label", { for: "file-input" }, "File "), input),
    drop, error, preview,
    h("table", { "aria-label": "Files" }, h("thead", {}, h("tr", {},
      ["Name", "Id", "Purpose", "Status", "Bytes", "Uploaded", ""].map((t) => h("th", { text: t })))), list));
  await load();
}

// ------------------------------------------------------------------ models
async function modelsPage() {
  const list = h("tbody");
  async function load() {
    const models = (await api("/v1/models")).data;
    list.replaceChildren(...models.map((m) => h("tr", { "data-model": m.id },
      h("td", { text: m.id }),
      h("td", { text: m.id.includes(":ckpt-step-") ? "checkpoint" : m.id.startsWith("ft:") ? "fine-tuned" : "base" }),
      h("td", { text: m.parent || "" }), h("td", { text: fmtTime(m.created) }),
      h("td", {}, m.id.startsWith("ft:") ? h("button", { type: "button", class: "danger", text: "Delete",
        onclick: async () => {
          if (!confirm(`Delete ${m.id}? It can no longer be served.`)) return;
          try { await api(`/v1/models/${encodeURIComponent(m.id)}`, { method: "DELETE" }); say(`deleted ${m.id}`); await load(); }
          catch (err) { if (!(err instanceof Unauthorized)) alert(err.message); }
        } }) : null))));
  }
  main.replaceChildren(h("h1", { text: "Models" }),
    h("table", { "aria-label": "Models" }, h("thead", {}, h("tr", {},
      ["Model", "Kind", "Trained from", "Created", ""].map((t) => h("th", { text: t })))), list));
  await load();
}

// ------------------------------------------------------------------ routing
async function route() {
  timers.forEach(clearInterval); timers = [];
  if (!sessionStorage.getItem(KEY)) return keyPrompt();
  document.getElementById("forget").hidden = false;
  const [path, qs] = (location.hash.slice(1) || "/jobs").split("?");
  const query = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.getAttribute("href") === `#/${parts[0]}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (parts[0] === "jobs" && parts[1]) await jobPage(parts[1]);
    else if (parts[0] === "playground") await playgroundPage(query);
    else if (parts[0] === "files") await filesPage();
    else if (parts[0] === "models") await modelsPage();
    else await jobsPage();
    main.focus({ preventScroll: true });
  } catch (err) {
    if (!(err instanceof Unauthorized)) main.replaceChildren(errorBox(err));
  }
}

document.getElementById("forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); keyPrompt(); });
window.addEventListener("hashchange", route);
route();
