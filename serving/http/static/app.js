// The cdserve playground: plain JavaScript over the /v1 JSON API of the page's own server.
// Paths are relative, so the page works under any Serve route prefix.
"use strict";

const TOKEN_KEY = "cdserve-token";
const $ = (id) => document.getElementById(id);
const state = { concepts: new Map(), chosen: [], settings: { training: false, training_recipe: {} }, job: null };

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status} ${detail.reason || ""}: ${detail.message || ""}`);
    this.status = status;
    this.detail = detail;
  }
}

// ---- HTTP ---------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail;
    try { detail = await response.json(); } catch { detail = { message: response.statusText }; }
    throw new ApiError(response.status, detail);
  }
  return response;
}

// Server-sent events from a fetch response (EventSource can send neither POST nor a token).
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue; // a keep-alive comment
      const payload = JSON.parse(data);
      if (name === "error") throw new ApiError(payload.status, payload);
      yield { name, payload };
    }
  }
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// An <img> cannot send the bearer token, and a private concept's preview needs it.
async function showPreview(img, url) {
  try {
    const blob = await (await api(url)).blob();
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
  } catch (error) {
    img.alt = `no preview: ${error.message}`;
  }
}

function showError(target, error) {
  target.hidden = !error;
  target.textContent = error ? error.message : "";
}

function setProgress(bar, done, total, text) {
  bar.hidden = false;
  bar.querySelector("div").style.width = `${total ? (100 * done) / total : 0}%`;
  bar.querySelector("span").textContent = text;
}

// ---- concepts -----------------------------------------------------------------------------

async function loadConcepts() {
  const response = await api("v1/concepts?all_versions=true");
  const { concepts } = await response.json();
  state.concepts.clear();
  for (const concept of concepts) {
    const versions = state.concepts.get(concept.concept_id) || [];
    versions.push(concept);
    state.concepts.set(concept.concept_id, versions.sort((a, b) => b.version - a.version));
  }
  renderConcepts();
}

function renderConcepts() {
  const list = $("concepts");
  list.replaceChildren();
  $("concepts-empty").hidden = state.concepts.size > 0;
  for (const [id, versions] of [...state.concepts].sort()) {
    const preview = el("img", { alt: `preview of ${id}` });
    const picker = el("select", { "aria-label": `version of ${id}` },
      ...versions.map((c) => el("option", { value: c.ref }, `v${c.version}`)));
    const tokens = el("div");
    const show = () => {
      const concept = versions.find((c) => c.ref === picker.value);
      showPreview(preview, concept.preview_url);
      tokens.replaceChildren(...concept.modifier_tokens.map((token) =>
        el("button", { type: "button", class: "token", title: `insert ${token} and use ${concept.ref}`,
                       onclick: () => choose(concept, token) }, token)));
    };
    picker.addEventListener("change", show);
    show();
    const latest = versions[0];
    list.append(el("li", { class: "concept", "data-concept": id }, preview, el("div", {},
      el("div", { class: "id" }, id), picker,
      el("div", { class: "meta" }, `${latest.category_words.join(", ")} · ${latest.public ? "public" : latest.tenant} · ${latest.delta_kind}`),
      tokens)));
  }
}

function choose(concept, token) {
  const prompt = $("prompt");
  const at = prompt.selectionStart ?? prompt.value.length;
  const category = concept.category_words[concept.modifier_tokens.indexOf(token)] || "";
  const words = `${token} ${category}`.trim();
  const before = prompt.value.slice(0, at), after = prompt.value.slice(at);
  prompt.value = `${before}${before && !before.endsWith(" ") ? " " : ""}${words}${after.startsWith(" ") ? "" : " "}${after}`;
  prompt.focus();
  const id = concept.concept_id;
  state.chosen = state.chosen.filter((ref) => ref.split("@")[0] !== id).concat(concept.ref);
  renderChips();
}

function renderChips() {
  $("chips").replaceChildren(...state.chosen.map((ref) => el("span", { class: "chip" }, ref,
    el("button", { type: "button", title: `stop using ${ref}`, "aria-label": `remove ${ref}`,
                   onclick: () => { state.chosen = state.chosen.filter((r) => r !== ref); renderChips(); } }, "×"))));
}

async function publish(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("artifact", $("artifact").files[0]);
  form.append("public", String($("artifact-public").checked));
  $("publish").disabled = true;
  showError($("publish-error"), null);
  try {
    await api("v1/concepts", { method: "POST", body: form });
    $("publish-form").reset();
    await loadConcepts();
  } catch (error) {
    showError($("publish-error"), error);
  } finally {
    $("publish").disabled = false;
  }
}

// ---- generate -----------------------------------------------------------------------------

function generateBody(mode) {
  const seed = $("seed").value;
  return {
    prompt: $("prompt").value, negative_prompt: $("negative").value, concepts: state.chosen, multi_concept: mode,
    steps: Number($("steps").value) || 0, guidance_scale: Number($("guidance").value) || 0,
    num_images: Number($("num-images").value) || 0, seed: seed === "" ? null : Number(seed),
  };
}

async function generate(event) {
  event.preventDefault();
  const button = $("generate"), bar = $("generate-progress");
  const chosen = document.querySelector("input[name=mode]:checked").value;
  const modes = chosen === "both" ? ["merge", "naive_sum"] : [chosen];
  const seed = $("seed").value === "" ? Math.floor(Math.random() * 2 ** 31) : Number($("seed").value);
  button.disabled = true;
  showError($("generate-error"), null);
  $("results").replaceChildren();
  const done = new Map(modes.map((m) => [m, 0]));
  try {
    await Promise.all(modes.map(async (mode) => {
      const body = { ...generateBody(mode), seed };
      const response = await api("v1/generate/stream", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      for await (const { name, payload } of events(response)) {
        if (name === "progress") {
          done.set(mode, payload.step / payload.total_steps);
          const share = [...done.values()].reduce((a, b) => a + b, 0) / modes.length;
          setProgress(bar, share, 1, `step ${payload.step} / ${payload.total_steps}`);
        } else if (name === "result") {
          showResult(mode, payload, modes.length > 1);
        }
      }
    }));
    setProgress(bar, 1, 1, "done");
  } catch (error) {
    showError($("generate-error"), error);
    bar.hidden = true;
  } finally {
    button.disabled = false;
  }
}

function showResult(mode, result, labelled) {
  const title = `${labelled ? (mode === "merge" ? "closed-form merge" : "naive sum") + " · " : ""}seed ${result.seed}` +
    ` · ${Math.round(result.timings.total_ms)} ms${result.concepts.length ? " · " + result.concepts.join(" + ") : ""}`;
  const images = result.images.map((image, i) =>
    el("img", { src: `data:image/png;base64,${image.png_base64}`, alt: `result ${i + 1} (${mode})`, class: "generated",
                width: image.width, height: image.height }));
  const card = el("div", { class: "result", "data-mode": mode }, el("h3", {}, title), el("div", { class: "grid" }, ...images));
  const results = $("results");
  if (mode === "merge") results.prepend(card); else results.append(card);
}

// ---- train --------------------------------------------------------------------------------

const IMAGE = /\.(png|jpe?g)$/i;

// The images to upload: those beside a captions.txt if the folder holds one (e.g. the "targets"
// folder of an example), else every image in it.
function trainingFiles() {
  const files = [...$("folder").files];
  const dir = (file) => (file.webkitRelativePath || file.name).split("/").slice(0, -1).join("/");
  const captions = files.find((file) => file.name === "captions.txt");
  const chosen = captions ? files.filter((f) => dir(f) === dir(captions) && (IMAGE.test(f.name) || f === captions))
                          : files.filter((f) => IMAGE.test(f.name));
  return chosen;
}

function describeFolder() {
  const files = trainingFiles();
  const images = files.filter((f) => IMAGE.test(f.name));
  $("folder-summary").textContent = `${images.length} images${files.length > images.length ? " and captions.txt" : ""}`;
  $("thumbs").replaceChildren(...images.slice(0, 24).map((f) => el("img", { src: URL.createObjectURL(f), alt: f.name })));
  const id = $("concept-id");
  if (!id.value && files.length) {
    const top = (files[0].webkitRelativePath || "").split("/")[0].toLowerCase().replace(/[^a-z0-9._-]/g, "-");
    if (top) id.value = top;
  }
  showDefaultToken();
}

// An empty token field means the service's default, "<cd-{concept id}>": show which.
function showDefaultToken() {
  $("modifier-token").placeholder = `<cd-${$("concept-id").value.trim() || "…"}>`;
}

async function train(event) {
  event.preventDefault();
  const files = trainingFiles();
  showError($("train-error"), null);
  if (!files.some((f) => IMAGE.test(f.name))) {
    showError($("train-error"), new Error("choose a folder with PNG or JPEG images"));
    return;
  }
  const conceptId = $("concept-id").value.trim();
  const spec = {
    concepts: [{ concept_id: conceptId, category: $("category").value.trim(),
                 modifier_token: $("modifier-token").value.trim(), regularization: $("regularization").value }],
    recipe: { sample_every: sampleEvery(Number($("train-steps").value)), ...state.settings.training_recipe,
              steps: Number($("train-steps").value) },
    public: $("public").checked,
  };
  const form = new FormData();
  form.append("spec", JSON.stringify(spec));
  for (const file of files) form.append("images", file, file.name);
  $("train").disabled = true;
  try {
    const job = await (await api("v1/trainings", { method: "POST", body: form })).json();
    await follow(job);
  } catch (error) {
    showError($("train-error"), error);
  } finally {
    $("train").disabled = false;
    $("cancel-training").hidden = true;
  }
}

// About eight samples over a run: enough to see the concept appear, few enough to cost little.
function sampleEvery(steps) {
  return Math.max(1, Math.round(steps / 8));
}

async function follow(job) {
  state.job = job.job_id;
  const losses = [];
  $("job").hidden = false;
  $("job-result").replaceChildren();
  $("sample").hidden = true;
  $("cancel-training").hidden = false;
  const response = await api(`v1/trainings/${job.job_id}/events`);
  for await (const { payload } of events(response)) {
    job = payload;
    if (job.step && job.loss && !losses.some((p) => p[0] === job.step)) losses.push([job.step, job.loss]);
    const eta = job.eta_s ? ` · about ${Math.round(job.eta_s)} s left` : "";
    $("job-state").textContent = `job ${job.job_id}: ${job.state}${job.message ? " — " + job.message : ""}${eta}`;
    setProgress($("train-progress"), job.step, job.total_steps || 1, `step ${job.step} / ${job.total_steps || "?"}`);
    drawLoss(losses, job.total_steps);
    if (job.sample) showSample(job.sample);
  }
  if (job.state === "SUCCEEDED") await trained(job);
  else if (job.error && job.error.message) throw new Error(`training ${job.state}: ${job.error.message}`);
}

async function trained(job) {
  await loadConcepts();
  const ref = job.published[0];
  const [id] = ref.split("@");
  const concept = (state.concepts.get(id) || []).find((c) => c.ref === ref);
  if (!concept) return;
  const preview = el("img", { alt: `preview of ${ref}` });
  showPreview(preview, concept.preview_url);
  $("job-result").replaceChildren(
    el("p", {}, `published ${ref}`),
    preview,
    el("div", {}, el("button", { type: "button", onclick: () => choose(concept, concept.modifier_tokens[0]) }, `Use ${ref}`)));
}

function showSample(sample) {
  $("sample-image").src = `data:image/png;base64,${sample.png_base64}`;
  $("sample-image").alt = `sample at step ${sample.step}: ${sample.prompt}`;
  $("sample-caption").textContent = `step ${sample.step}: ${sample.prompt}`;
  $("sample").hidden = false;
}

function drawLoss(points, totalSteps) {
  const canvas = $("loss"), g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#d9dde6";
  g.strokeRect(pad, 6, w - pad - 6, h - pad - 6);
  g.fillStyle = "#6b7385";
  g.font = "11px system-ui";
  g.fillText("loss", 2, 14);
  g.fillText("step", w - 34, h - 8);
  if (!points.length) return;
  const maxStep = Math.max(totalSteps || 0, ...points.map((p) => p[0]));
  const maxLoss = Math.max(...points.map((p) => p[1])) * 1.1;
  const x = (step) => pad + ((w - pad - 6) * step) / maxStep;
  const y = (loss) => h - pad - ((h - pad - 12) * loss) / maxLoss;
  g.fillText(maxLoss.toPrecision(2), 2, 26);
  g.strokeStyle = "#3459d1";
  g.lineWidth = 2;
  g.beginPath();
  points.forEach(([step, loss], i) => (i ? g.lineTo(x(step), y(loss)) : g.moveTo(x(step), y(loss))));
  g.stroke();
}

async function cancelTraining() {
  if (!state.job) return;
  try {
    await api(`v1/trainings/${state.job}:cancel`, { method: "POST" });
  } catch (error) {
    showError($("train-error"), error);
  }
}

// ---- start --------------------------------------------------------------------------------

function useToken(event) {
  if (event) event.preventDefault();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
  $("token-state").textContent = token ? "token set for this tab" : "anonymous";
  loadConcepts().catch((error) => showError($("generate-error"), error));
}

async function start() {
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("token-form").addEventListener("submit", useToken);
  $("refresh-concepts").addEventListener("click", () => loadConcepts().catch((e) => showError($("generate-error"), e)));
  $("generate-form").addEventListener("submit", generate);
  $("publish-form").addEventListener("submit", publish);
  $("train-form").addEventListener("submit", train);
  $("folder").addEventListener("change", describeFolder);
  $("concept-id").addEventListener("input", showDefaultToken);
  $("cancel-training").addEventListener("click", cancelTraining);
  state.settings = await (await fetch("playground/settings")).json();
  if (state.settings.training_recipe.steps) $("train-steps").value = state.settings.training_recipe.steps;
  $("train-panel").hidden = !state.settings.training;
  useToken();
}

document.addEventListener("DOMContentLoaded", start);
