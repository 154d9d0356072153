#!/usr/bin/env python3
"""The HTTP side of tests/e2e/fm_serve.sh: requests to a running `fm serve`
and what their answers must be (standard library only).

  serve_client.py text PORT EXPECTED_FILE   an lm run: health, completions (plain, streamed,
                                            stop strings), a concurrent batch equal to the same
                                            requests one at a time, bad requests
  serve_client.py limits PORT               a server started with --max-batch 1 --queue 1
                                            --timeout-s 2 --max-body-bytes 4096: 413, 503, 504
  serve_client.py page PORT PAGE_HTML       the page's DOM after autorun (a browser's dump) shows
                                            the completion the API gives
  serve_client.py image PORT OUT_PNG        a diffusion run: one PNG, bad requests
"""
import html
import http.client
import json
import re
import sys
import threading
import time


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def request(port, method, path, body=None, raw=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type", ""), payload


def completion(port, body):
    status, _, payload = request(port, "POST", "/v1/completions", body)
    if status != 200:
        fail(f"completion {body} answered {status}: {payload[:300]!r}")
    return json.loads(payload)


def events(port, body):
    """A streamed completion's events (parsed), and whether it ended with [DONE]."""
    status, ctype, payload = request(port, "POST", "/v1/completions", dict(body, stream=True))
    if status != 200 or not ctype.startswith("text/event-stream"):
        fail(f"stream {body} answered {status} {ctype}: {payload[:300]!r}")
    out, done = [], False
    for block in payload.decode().split("\n\n"):
        if not block:
            continue
        if not block.startswith("data: "):
            fail(f"not a server-sent event: {block!r}")
        if block == "data: [DONE]":
            done = True
        else:
            out.append(json.loads(block[6:]))
    return out, done


def health(port):
    status, _, payload = request(port, "GET", "/health")
    if status != 200:
        fail(f"/health answered {status}")
    return json.loads(payload)


def expect_error(port, status, method, path, body=None, raw=None, param=None, contains=""):
    got, ctype, payload = request(port, method, path, body, raw)
    if got != status:
        fail(f"{method} {path} {str(body or raw)[:80]}: expected {status}, got {got}: {payload[:200]!r}")
    if not ctype.startswith("application/json"):
        fail(f"{method} {path}: the {status} error is '{ctype}', not JSON")
    error = json.loads(payload).get("error", {})
    if not error.get("message") or not error.get("type"):
        fail(f"{method} {path}: the {status} error lacks a message or type: {payload!r}")
    if param is not None and error.get("param") != param:
        fail(f"{method} {path}: the error names param {error.get('param')!r}, not {param!r}")
    if contains not in error["message"]:
        fail(f"{method} {path}: the error '{error['message']}' lacks '{contains}'")


def text_checks(port, expected_file):
    h = health(port)
    if h["status"] != "ok" or h["kind"] != "lm" or h["endpoints"] != ["completions"] or h["step"] < 1:
        fail(f"health: {h}")

    # What `fm generate text` printed (prompt + text) for the same prompt, options and seed.
    base = {"prompt": "The ", "max_tokens": 40, "temperature": 0.8, "top_k": 20, "top_p": 0.95, "seed": 7}
    r = completion(port, base)
    expected = open(expected_file, encoding="utf-8", errors="replace").read()[len("The "):-1]
    choice = r["choices"][0]
    if choice["text"] != expected:
        fail(f"the completion {choice['text']!r} differs from fm generate text's {expected!r}")
    if r["object"] != "text_completion" or not r["id"].startswith("cmpl-") or choice["finish_reason"] != "length":
        fail(f"not OpenAI's completion shape: {r}")
    if r["usage"] != {"prompt_tokens": 4, "completion_tokens": 40, "total_tokens": 44}:
        fail(f"usage: {r['usage']}")

    # Streamed: the same text in pieces, the finish reason and usage last, then [DONE].
    chunks, done = events(port, base)
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    if not done or streamed != choice["text"] or len(chunks) < 10:
        fail(f"stream: {len(chunks)} chunks, done {done}, text {streamed!r}")
    if chunks[-1]["choices"][0]["finish_reason"] != "length" or chunks[-1]["usage"]["completion_tokens"] != 40:
        fail(f"stream's last chunk: {chunks[-1]}")

    # A stop string ends the text before it, streamed or not.
    stop = choice["text"][12:14]
    cut = choice["text"][: choice["text"].index(stop)]
    stopped = completion(port, dict(base, stop=[stop, "never seen"]))["choices"][0]
    chunks, done = events(port, dict(base, stop=stop))
    if stopped["text"] != cut or stopped["finish_reason"] != "stop":
        fail(f"stop {stop!r}: {stopped} instead of {cut!r}")
    if "".join(c["choices"][0]["text"] for c in chunks) != cut or chunks[-1]["choices"][0]["finish_reason"] != "stop":
        fail(f"streamed stop {stop!r}: {chunks}")

    # Concurrent requests of different prompt lengths and sampling options are
    # batched, and each gets what it gets alone with its seed.
    prompts = ["A", "The cat ", "Q: Why did the chicken cross the road?\nA: ", "x" * 100, "Never ", "I", "Do not ", "He said"]
    batch = [{"prompt": p, "max_tokens": 20 + 13 * i, "temperature": [0, 0.5, 0.8, 1.0, 1.3][i % 5],
              "top_k": [0, 5, 20][i % 3], "top_p": [1.0, 0.9, 0.5][i % 3], "seed": 100 + i}
             for i, p in enumerate(prompts)]
    alone = [completion(port, b)["choices"][0]["text"] for b in batch]
    together = [None] * len(batch)
    start = threading.Barrier(len(batch))

    def send(i):
        start.wait()
        together[i] = completion(port, batch[i])["choices"][0]["text"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batch))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(batch)):
        if together[i] != alone[i]:
            fail(f"request {i} ({batch[i]}) batched gave {together[i]!r}, alone {alone[i]!r}")
    h = health(port)
    if h["largest_batch"] < 3:
        fail(f"concurrent requests were not batched: {h}")
    print(f"batching: {len(batch)} concurrent completions equal to each alone; largest batch {h['largest_batch']}")

    # Bad requests: 4xx with a JSON error naming what is wrong.
    expect_error(port, 400, "POST", "/v1/completions", raw=b'{"prompt": "a", ', contains="not valid JSON")
    expect_error(port, 400, "POST", "/v1/completions", raw=b'["prompt"]', contains="JSON object")
    expect_error(port, 400, "POST", "/v1/completions", raw=b'{"prompt": "\xff"}', contains="not valid JSON")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "max_tokens": "9"}, param="max_tokens")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 0}, param="max_tokens")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": 3}, param="prompt")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": ["a", "b"]}, param="prompt")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "temperature": 3}, param="temperature")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "top_p": 0}, param="top_p")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "seed": -1}, param="seed")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "stream": "yes"}, param="stream")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "stop": [""]}, param="stop")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "n": 2}, param="n")
    expect_error(port, 400, "POST", "/v1/completions", {"prompt": "a", "logprobs": 3}, param="logprobs")
    expect_error(port, 404, "GET", "/v1/models", contains="no such endpoint")
    expect_error(port, 404, "POST", "/v1/images/generations", {"prompt": "a"}, contains="does not serve")
    expect_error(port, 404, "POST", "/v1/audio/generations", {"prompt": "a"}, contains="does not serve")
    expect_error(port, 405, "GET", "/v1/completions", contains="use POST")
    expect_error(port, 405, "DELETE", "/health", contains="use GET")
    # Unknown fields are ignored, as OpenAI's clients send many; an empty prompt starts a document.
    completion(port, {"prompt": "a", "max_tokens": 2, "user": "me", "presence_penalty": 0, "n": 1, "logprobs": None})
    completion(port, {"prompt": "", "max_tokens": 2})
    status, ctype, page = request(port, "GET", "/")
    if status != 200 or not ctype.startswith("text/html") or b'id="result"' not in page or b"src=\"http" in page:
        fail("the page at / is missing or loads outside resources")
    print("text: completions, streaming, stop strings, bad requests")


def limits_checks(port):
    expect_error(port, 413, "POST", "/v1/completions", raw=json.dumps({"prompt": "a" * 5000}).encode(),
                 contains="--max-body-bytes")
    long = {"prompt": "The ", "max_tokens": 1000000, "seed": 1}
    results = {}

    def send(name, body, stream=False):
        if stream:
            results[name] = events(port, body)
        else:
            results[name] = request(port, "POST", "/v1/completions", body)

    def wait_for(key, value):
        for _ in range(200):
            if health(port)[key] >= value:
                return
            time.sleep(0.01)
        fail(f"health never showed {key} >= {value}: {health(port)}")

    # One running (streamed), one waiting: the queue (1) is full, so the next is refused.
    a = threading.Thread(target=send, args=("running", long, True))
    a.start()
    wait_for("running", 1)
    b = threading.Thread(target=send, args=("waiting", long))
    b.start()
    wait_for("queue", 1)
    expect_error(port, 503, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 1}, contains="queue is full")
    a.join()
    b.join()
    # Both ran out of their time: the stream with an error event, the other with 504.
    chunks, done = results["running"]
    if not chunks or chunks[-1].get("error", {}).get("type") != "timeout" or not done:
        fail(f"the timed-out stream ended with {chunks[-1:]}, done {done}")
    status, _, payload = results["waiting"]
    if status != 504 or json.loads(payload)["error"]["type"] != "timeout":
        fail(f"the timed-out request answered {status}: {payload[:200]!r}")
    for _ in range(100):  # the worker lets a sequence go at its next step
        h = health(port)
        if h["queue"] == 0 and h["running"] == 0:
            break
        time.sleep(0.01)
    else:
        fail(f"requests left behind: {h}")
    print("limits: 413 over the body limit, 503 on a full queue, 504 (and a streamed timeout) past --timeout-s")


def page_checks(port, page_file):
    page = open(page_file, encoding="utf-8").read()
    want = completion(port, {"prompt": "The ", "max_tokens": 30, "temperature": 0.8, "seed": 7})["choices"][0]["text"]
    status = re.search(r'<p id="status">(.*?)</p>', page, re.S)
    result = re.search(r'<pre id="result">(.*?)</pre>', page, re.S)
    if not status or status.group(1) != "done (length)":
        fail(f"the page did not finish: status {status and status.group(1)!r}")
    if not result or html.unescape(result.group(1)) != want:
        fail(f"the page shows {result and html.unescape(result.group(1))!r}, the API gives {want!r}")
    if '<button id="completions" class="">' not in page or '<button id="images" class="hidden">' not in page:
        fail("the page does not offer completions alone")
    print("page: the browser shows the completion")


def image_checks(port, out_png):
    h = health(port)
    if h["kind"] != "diffusion" or h["endpoints"] != ["images"]:
        fail(f"health: {h}")
    status, ctype, png = request(port, "POST", "/v1/images/generations", {"prompt": "a red circle", "steps": 3, "seed": 2})
    if status != 200 or ctype != "image/png" or not png.startswith(b"\x89PNG\r\n\x1a\n"):
        fail(f"image: {status} {ctype} {png[:40]!r}")
    open(out_png, "wb").write(png)
    expect_error(port, 400, "POST", "/v1/images/generations", {"prompt": "  "}, param="prompt")
    expect_error(port, 400, "POST", "/v1/images/generations", {"prompt": "a", "steps": 0}, param="steps")
    expect_error(port, 400, "POST", "/v1/images/generations", {"prompt": "a", "guidance": -1}, param="guidance")
    expect_error(port, 400, "POST", "/v1/images/generations", {"prompt": "a", "sampler": "nope"}, param="sampler")
    expect_error(port, 404, "POST", "/v1/completions", {"prompt": "a"}, contains="does not serve")
    expect_error(port, 404, "POST", "/v1/audio/generations", {"prompt": "a"}, contains="does not serve")
    print("image: a PNG, bad requests")


if __name__ == "__main__":
    what, port = sys.argv[1], int(sys.argv[2])
    if what == "text":
        text_checks(port, sys.argv[3])
    elif what == "limits":
        limits_checks(port)
    elif what == "image":
        image_checks(port, sys.argv[3])
    elif what == "page":
        page_checks(port, sys.argv[3])
    else:
        fail(f"unknown check {what}")
