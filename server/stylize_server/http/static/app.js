// The page of stylize's HTTP API: no build step, no dependency, nothing
// fetched from anywhere but this server. Events are read with fetch() rather
// than EventSource, which cannot send the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage; // this tab only: the token never outlives the session
const TOKEN = "stylize.token";
const SECRET = "stylize.secret";
let info = null;
let job = null;
let losses = [];
let resultUrl = null;

function jobSecret() {
  let secret = store.getItem(SECRET);
  if (!secret) {
    const bytes = new Uint8Array(18);
    crypto.getRandomValues(bytes);
    secret = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    store.setItem(SECRET, secret);
  }
  return secret;
}

function headers(extra) {
  const all = { "Stylize-Job-Secret": jobSecret(), ...(extra || {}) };
  const token = store.getItem(TOKEN);
  if (token) all.Authorization = "Bearer " + token;
  return all;
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function status(text) {
  $("status").textContent = text;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.message) return body.message;
  } catch (e) {
    // not JSON: say what HTTP said
  }
  return "The server answered " + response.status + " " + response.statusText + ".";
}

function megabytes(bytes) {
  return (bytes / 1048576).toFixed(1) + " MB";
}

function askForToken(text) {
  $("token-box").hidden = false;
  $("token-message").textContent = text;
  say(text, true);
  $("token").focus();
}

async function loadInfo() {
  const response = await fetch("/v1/info", { headers: headers() });
  if (response.status === 401) {
    askForToken(store.getItem(TOKEN)
      ? "This server refused that token: enter a valid access token."
      : "This server needs an access token: enter it above to start.");
    return false;
  }
  if (!response.ok) {
    say(await errorText(response), true);
    return false;
  }
  info = await response.json();
  $("token-box").hidden = true;
  const limits = info.limits || {};
  if (limits.maxSide) $("size").max = limits.maxSide;
  if (limits.maxIterations) $("iterations").max = limits.maxIterations;
  $("weights-warning").hidden = !(info.model && info.model.randomWeights);
  if ($("message").className === "error") say("", false);
  return true;
}

function thumbnails(input, target) {
  target.replaceChildren();
  for (const file of input.files) {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = file.name;
    target.appendChild(img);
  }
}

function dropZone(zone, input, target) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = new DataTransfer();
    for (const file of e.dataTransfer.files) {
      if (file.type.startsWith("image/")) files.items.add(file);
      if (!input.multiple) break;
    }
    input.files = files.files;
    input.dispatchEvent(new Event("change"));
  });
  input.addEventListener("change", () => thumbnails(input, target));
}

function checkFiles(content, styles) {
  if (!content) return "Choose a content photo.";
  if (!styles.length) return "Choose at least one style image.";
  const limit = info && info.limits && Number(info.limits.maxMessageBytes);
  if (limit) {
    let total = 0;
    for (const file of [content, ...styles]) {
      if (file.size > limit) {
        return file.name + " is too large: " + megabytes(file.size) + ", and this server accepts at most "
          + megabytes(limit) + " per request. Choose a smaller file.";
      }
      total += file.size;
    }
    if (total > limit) {
      return "These images are too large together: " + megabytes(total) + ", and this server accepts at most "
        + megabytes(limit) + " per request.";
    }
  }
  return null;
}

function resetWatch() {
  losses = [];
  drawLosses();
  $("preview").removeAttribute("src");
  $("preview").dataset.previews = "0";
  $("bar").value = 0;
  $("download").hidden = true;
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = null;
}

async function start(event) {
  event.preventDefault();
  if (!info && !(await loadInfo())) return;
  const content = $("content").files[0];
  const styles = Array.from($("style").files);
  const problem = checkFiles(content, styles);
  if (problem) {
    say(problem, true);
    return;
  }
  const iterations = Number($("iterations").value) || 1;
  const options = {
    size: Number($("size").value) || undefined,
    iterations: iterations,
    progressInterval: Math.max(1, Math.round(iterations / 60)),
    // Previews no larger than the job (nor than most servers' --max-preview-side, 256).
    previewMaxSide: Math.min(256, Number($("size").value) || 256),
  };
  if ($("color_control").value) options.colorControl = $("color_control").value;
  if ($("style_loss").value) options.styleLoss = $("style_loss").value;
  const form = new FormData();
  form.append("content", content);
  for (const style of styles) form.append("style", style);
  form.append("options", JSON.stringify(options));
  resetWatch();
  say("Uploading…", false);
  $("start").disabled = true;
  let response;
  try {
    response = await fetch("/v1/stylize", { method: "POST", body: form, headers: headers() });
  } catch (e) {
    $("start").disabled = false;
    say("The upload failed: " + e.message, true);
    return;
  }
  if (response.status !== 202) {
    $("start").disabled = false;
    const text = await errorText(response);
    if (response.status === 401) askForToken(text);
    else say(text, true);
    return;
  }
  job = await response.json();
  say("Started job " + job.request_id + ".", false);
  $("cancel").disabled = false;
  watch(job);
}

async function watch(current) {
  let lastId = null;
  for (let attempt = 0; attempt < 6 && job === current; attempt++) {
    const extra = lastId ? { "Last-Event-ID": lastId } : {};
    let response;
    try {
      response = await fetch(current.events_url, { headers: headers(extra), cache: "no-store" });
    } catch (e) {
      await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
      continue;
    }
    if (response.status === 429 || response.status === 503) {
      // A stream of ours the server has not yet seen closed, or a busy pod: try again shortly.
      const wait = Number(response.headers.get("Retry-After") || 1);
      await new Promise((r) => setTimeout(r, 1000 * wait));
      continue;
    }
    if (!response.ok) {
      finish(await errorText(response), true);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const fields = {};
          for (const line of block.split("\n")) {
            if (!line || line.startsWith(":")) continue;
            const at = line.indexOf(": ");
            fields[line.slice(0, at)] = line.slice(at + 2);
          }
          if (fields.id) lastId = fields.id;
          if (fields.data && (await onEvent(current, fields.event, JSON.parse(fields.data)))) return;
        }
      }
    } catch (e) {
      // the connection broke: reconnect and resume after the last event
    }
  }
  if (job === current) finish("Lost the connection to the job.", true);
}

function onEvent(current, kind, data) {
  if (kind === "queued") {
    status("Queued: position " + data.queued.position + " of " + data.queued.queueDepth + ".");
  } else if (kind === "started") {
    const s = data.started;
    const resolved = (s.options && s.options.styleLoss) || "";
    $("message").dataset.styleLoss = resolved;
    const statistics = resolved === "STYLE_LOSS_MEAN_COV" ? ", style by mean and covariance" : "";
    status("Running at " + s.width + "×" + s.height + " px" + statistics + ".");
  } else if (kind === "progress") {
    const p = data.progress;
    if (p.preview && p.preview.data) {
      $("preview").src = "data:image/png;base64," + p.preview.data;
      $("preview").dataset.previews = String(Number($("preview").dataset.previews || 0) + 1);
    }
    if (p.losses && p.losses.total > 0) losses.push([p.iteration, p.losses.total]);
    drawLosses();
    $("bar").max = p.totalIterations;
    $("bar").value = p.iteration;
    const eta = p.etaSeconds !== undefined ? " · about " + Math.ceil(p.etaSeconds) + " s left" : "";
    status("Iteration " + p.iteration + " of " + p.totalIterations + eta + ".");
  } else if (kind === "result") {
    return showResult(current, data.result).then(() => true);
  } else if (kind === "error") {
    finish(data.message || "The job failed.", true);
    return Promise.resolve(true);
  }
  return Promise.resolve(false);
}

async function showResult(current, result) {
  const response = await fetch(current.result_url, { headers: headers() });
  if (!response.ok) {
    finish(await errorText(response), true);
    return;
  }
  const blob = await response.blob();
  resultUrl = URL.createObjectURL(blob);
  $("preview").src = resultUrl;
  $("preview-caption").textContent = "Result, " + result.width + "×" + result.height + " px";
  const link = $("download");
  link.href = resultUrl;
  link.download = "stylized-" + current.request_id + "." + (blob.type.split("/")[1] || "png");
  link.hidden = false;
  $("bar").value = $("bar").max;
  const seconds = Number(result.computeSeconds || 0).toFixed(1);
  finish("Done: " + result.iterations + " iterations in " + seconds + " s.", false);
}

function finish(text, isError) {
  job = null;
  $("cancel").disabled = true;
  $("start").disabled = false;
  status(isError ? "Stopped." : text);
  say(text, isError);
}

async function cancel() {
  if (!job) return;
  const current = job;
  const response = await fetch("/v1/jobs/" + encodeURIComponent(current.request_id), {
    method: "DELETE", headers: headers(),
  });
  if (!response.ok) say(await errorText(response), true);
  else say("Cancelling…", false);
}

function drawLosses() {
  const canvas = $("loss");
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#c4c4c8";
  ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
  if (losses.length < 2) return;
  const xs = losses.map((p) => p[0]);
  const ys = losses.map((p) => Math.log10(p[1]));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const y0 = Math.min(...ys);
  const y1 = Math.max(...ys);
  const pad = 24;
  const sx = (x) => pad + ((x - x0) / Math.max(1, x1 - x0)) * (w - 2 * pad);
  const sy = (y) => h - pad - ((y - y0) / Math.max(1e-9, y1 - y0)) * (h - 2 * pad);
  ctx.strokeStyle = "#3a5bd9";
  ctx.lineWidth = 2;
  ctx.beginPath();
  losses.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, sx(p[0]), sy(Math.log10(p[1]))));
  ctx.stroke();
  ctx.fillStyle = "#5f6368";
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText("1e" + y1.toFixed(1), 4, pad - 8);
  ctx.fillText("1e" + y0.toFixed(1), 4, h - 6);
  ctx.fillText("iteration " + x1, w - 90, h - 6);
}

function saveToken(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (token) store.setItem(TOKEN, token);
  $("token").value = "";
  loadInfo();
}

document.addEventListener("DOMContentLoaded", () => {
  dropZone($("content-drop"), $("content"), $("content-thumbs"));
  dropZone($("style-drop"), $("style"), $("style-thumbs"));
  $("job-form").addEventListener("submit", start);
  $("cancel").addEventListener("click", cancel);
  $("token-form").addEventListener("submit", saveToken);
  drawLosses();
  loadInfo();
});
