// The page fm serve shows at `/`: a prompt box and a button for each
// endpoint the run serves (asked from /health), results shown in place.
// Self-contained (no external scripts, styles or fonts). Query parameters
// fill the form (prompt, max_tokens, temperature, seed, stream); with
// autorun=1 it runs `mode` (completions, images or audio; default: the
// first served) on load, so a headless browser's DOM shows the result.
#include "page.h"

namespace fm::app::serve {

const char* page_html() {
  return R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fm serve</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; }
  label { margin-right: 1rem; }
  input[type=number] { width: 5rem; }
  button { margin: .5rem .5rem .5rem 0; }
  pre { white-space: pre-wrap; background: #f4f4f4; padding: .75rem; min-height: 2rem; }
  .hidden { display: none; }
  #status { color: #555; }
</style>
</head>
<body>
<h1>fm serve</h1>
<p id="model">Loading the model's description...</p>
<textarea id="prompt" rows="4" placeholder="Prompt"></textarea>
<div>
  <label>max tokens <input id="max_tokens" type="number" min="1" value="64"></label>
  <label>temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.8"></label>
  <label>seed <input id="seed" type="number" min="0" value="1"></label>
  <label><input id="stream" type="checkbox" checked> stream</label>
</div>
<div>
  <button id="completions" class="hidden">Complete the text</button>
  <button id="images" class="hidden">Draw an image</button>
  <button id="audio" class="hidden">Play music</button>
</div>
<p id="status"></p>
<pre id="result"></pre>
<img id="picture" class="hidden" alt="generated image">
<audio id="sound" class="hidden" controls></audio>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
for (const k of ["prompt", "max_tokens", "temperature", "seed"]) if (query.has(k)) $(k).value = query.get(k);
if (query.has("stream")) $("stream").checked = query.get("stream") !== "0";

function status(text) { $("status").textContent = text; }

async function failed(response) {
  let message = "HTTP " + response.status;
  try { message += ": " + (await response.json()).error.message; } catch (e) {}
  status("error: " + message);
}

function post(path, body) {
  return fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

async function complete() {
  $("result").textContent = "";
  status("generating...");
  const body = { prompt: $("prompt").value, max_tokens: Number($("max_tokens").value),
                 temperature: Number($("temperature").value), seed: Number($("seed").value),
                 stream: $("stream").checked };
  const response = await post("/v1/completions", body);
  if (!response.ok) return failed(response);
  if (!body.stream) {
    const choice = (await response.json()).choices[0];
    $("result").textContent = choice.text;
    return status("done (" + choice.finish_reason + ")");
  }
  // Server-sent events: "data: {...}" blocks, then "data: [DONE]".
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "", reason = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") return status("done (" + reason + ")");
      const chunk = JSON.parse(data);
      if (chunk.error) return status("error: " + chunk.error.message);
      $("result").textContent += chunk.choices[0].text;
      if (chunk.choices[0].finish_reason) reason = chunk.choices[0].finish_reason;
    }
  }
  status("error: the stream ended early");
}

async function media(path, element) {
  status("generating...");
  const response = await post(path, { prompt: $("prompt").value, seed: Number($("seed").value) });
  if (!response.ok) return failed(response);
  $(element).src = URL.createObjectURL(await response.blob());
  $(element).classList.remove("hidden");
  status("done");
}

const actions = {
  completions: complete,
  images: () => media("/v1/images/generations", "picture"),
  audio: () => media("/v1/audio/generations", "sound"),
};
for (const name in actions) {
  $(name).addEventListener("click", () => actions[name]().catch((e) => status("error: " + e)));
}

fetch("/health").then((r) => r.json()).then((health) => {
  $("model").textContent = health.model + ": a " + health.kind + " run at step " + health.step;
  for (const name of health.endpoints) $(name).classList.remove("hidden");
  if (query.get("autorun") === "1") {
    const mode = query.get("mode") || health.endpoints[0];
    if (!health.endpoints.includes(mode)) return status("error: this run does not serve " + mode);
    actions[mode]().catch((e) => status("error: " + e));
  }
}).catch((e) => status("error: " + e));
</script>
</body>
</html>
)html";
}

}  // namespace fm::app::serve
