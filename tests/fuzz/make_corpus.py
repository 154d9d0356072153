#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/:
small valid files of each format and a few near misses, from the Python
standard library and a few of tests/fixtures. Run from anywhere; rewrites
only the files it names."""
import base64
import gzip
import io
import json
import os
import re
import shutil
import struct
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
EXPERIMENTS = os.path.join(HERE, "..", "..", "experiments")


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


# ---- safetensors -----------------------------------------------------------
ITEM = {"F32": 4, "F64": 8, "BF16": 2, "F16": 2, "I32": 4, "I64": 8, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, raw bytes)] laid out in order."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def i64(*v):
    return struct.pack("<%dq" % len(v), *v)


put("safetensors", "two_f32", safetensors([("w", "F32", [2, 3], f32(*range(6))), ("b", "F32", [3], f32(1, 2, 3))]))
put("safetensors", "dtypes", safetensors([
    ("f64", "F64", [1], struct.pack("<d", 2.5)), ("i64", "I64", [], i64(7)), ("i32", "I32", [2], struct.pack("<2i", 1, -1)),
    ("bf16", "BF16", [2], b"\x80\x3f\x00\x40"), ("f16", "F16", [1], b"\x00\x3c"), ("u8", "U8", [3], b"abc"),
    ("bool", "BOOL", [2], b"\x00\x01")], {"format": "pt", "note": "x"}))
put("safetensors", "empty_tensor", safetensors([("e", "F32", [0, 4], b""), ("s", "F32", [], f32(1))]))
put("safetensors", "no_tensors", safetensors([], {"k": "v"}))
put("safetensors", "unpadded", safetensors([("a", "U8", [1], b"\x01")], pad=False))
put("safetensors", "python_written", fixture("python_written.safetensors"))
bad = bytearray(safetensors([("w", "F32", [2], f32(1, 2))]))
put("safetensors", "truncated", bytes(bad[:-3]))
overlap = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
put("safetensors", "overlap", struct.pack("<Q", len(overlap)) + overlap + f32(1))

# ---- checkpoint (first byte: 0 = fuzz the train state, 1 = the model file) ---
state = safetensors([
    ("data_position", "I64", [], i64(3)), ("data_position.val", "I64", [], i64(9)), ("rng", "I64", [2], i64(1, 2)),
    ("rng.noise", "I64", [2], i64(5, 6)), ("step", "I64", [], i64(1)), ("optim.weight.exp_avg", "F32", [3, 2], f32(*range(6))),
    ("state.ema.weight", "F32", [3, 2], f32(*range(6)))],
    {"format": "libfm-train-state-1", "config": "[model]\nn_layer = 1\n", "schedule": "cosine"})
put("checkpoint", "state", b"\x00" + state)
put("checkpoint", "state_no_format", b"\x00" + safetensors([("step", "I64", [], i64(1))]))
put("checkpoint", "model", b"\x01" + safetensors([("weight", "F32", [3, 2], f32(*range(6))), ("bias", "F32", [3], f32(0, 0, 0))],
                                                 {"format": "libfm-model-1"}))
put("checkpoint", "model_wrong_shape", b"\x01" + safetensors([("weight", "F32", [2, 3], f32(*range(6))), ("bias", "F32", [3], f32(0, 0, 0))]))

# ---- metrics.jsonl (first byte: bit 7 = resume from step (bits 0-6)) --------
lines = "".join('{"step": %d, "lr": 0.001, "train_loss": %s}\n' % (s, "null" if s == 30 else "2.5") for s in range(0, 60, 10))
put("metrics_log", "append", b"\x00" + lines.encode())
put("metrics_log", "append_cut", b"\x00" + lines.encode() + b'{"step": 60, "lr": 0.0')
put("metrics_log", "resume", b"\x9e" + lines.encode())
put("metrics_log", "resume_cut", b"\x94" + lines.encode() + b'{"step": 6')
put("metrics_log", "resume_bad_line", b"\x94" + b'{"step": 1}\n[1, 2]\n{"step": "x"}\n')

# ---- token shards -------------------------------------------------------------
def shard(tokens, version=1, count=None):
    hdr = [20240520, version, len(tokens) if count is None else count] + [0] * 253
    fmt = "<%dH" if version == 1 else "<%dI"
    return struct.pack("<256i", *hdr) + struct.pack(fmt % len(tokens), *tokens)


put("token_shard", "v1", shard([50256, 15496, 995, 0, 1, 2]))
put("token_shard", "v2", shard([70000, 1, 2**31 - 1, 2**32 - 1], version=2))
put("token_shard", "empty", shard([]))
put("token_shard", "count_too_big", shard([1, 2, 3], count=4))
put("token_shard", "bad_version", shard([1, 2], version=7))

# ---- captions (first byte: 0 jsonl, 1 csv, 2 tsv, 3 .txt; bit 2 ';' separator, bit 3 column "text") ---
put("captions", "jsonl", b"\x00" + b'{"file": "a.png", "caption": "a cat"}\n{"file": "b.jpg", "caption": "two \\"dogs\\""}\n'
    b'{"file": "missing.png", "caption": "gone"}\n')
put("captions", "jsonl_bad", b"\x00" + b'{"file": "a.png"}\n[1]\n{"file": 3, "caption": "x"}\n')
put("captions", "csv", b"\x01" + b'filepath,title\na.png,a cat\nb.jpg,"a dog, running"\n"a.png","say ""hi""\non two lines"\n')
put("captions", "csv_semicolon", b"\x05" + b'title;filepath\na cat;a.png\n')
put("captions", "csv_text_column", b"\x09" + b'filepath,text\r\na.png,crlf rows\r\n')
put("captions", "csv_unterminated", b"\x01" + b'filepath,title\na.png,"never closed\n')
put("captions", "tsv", b"\x02" + b'filepath\ttitle\na.png\ta cat\nb.jpg\t\n/abs/none.png\tmissing\n')

# ---- WebDataset tar --------------------------------------------------------------
def tar(members, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


png = fixture("image_palette.png")
put("wds_tar", "ustar", tar([("000000.png", png), ("000000.txt", b"a red circle"), ("000000.cls", b"3"),
                             ("000001.jpg", b"\xff\xd8\xff"), ("000001.json", b'{"caption": "a square"}'),
                             ("000002.txt", b"no image")]))
put("wds_tar", "pax_long_names", tar([("dir/" + "x" * 120 + ".seg.png", b"img"), ("dir/" + "x" * 120 + ".seg.txt", b"long")],
                                     tarfile.PAX_FORMAT))
put("wds_tar", "gnu", tar([("a/1.webp", b"w"), ("a/1.json", b'{"text": "no caption field"}')], tarfile.GNU_FORMAT))
put("wds_tar", "truncated", tar([("k.png", b"p" * 1000), ("k.txt", b"t")])[:1200])

# ---- brace patterns ---------------------------------------------------------------
for i, p in enumerate(["data-{000..031}.tar", "{a,b}-{1..3}", "x{0..10..2}y", "{a..e}", "{a,{b,c}d}e",
                       "\\{literal\\}", "{-3..3}", "{z..a..2}", "{}", "{a", "a}", "{1..9999999999999999999}"]):
    put("brace_expand", "p%02d" % i, p)

# ---- IDX (2-byte little-endian length of the labels file, labels, images) ------------
def idx_pair(n=3, rows=2, cols=2, channels=None, gz=False):
    labels = struct.pack(">iI", 0x801, n) + bytes(range(n))
    if channels:
        images = struct.pack(">iIIII", 0x804, n, rows, cols, channels) + bytes(n * rows * cols * channels)
    else:
        images = struct.pack(">iIII", 0x803, n, rows, cols) + bytes(range(n * rows * cols))
    if gz:
        labels, images = gzip.compress(labels, mtime=0), gzip.compress(images, mtime=0)
    return struct.pack("<H", len(labels)) + labels + images


put("idx", "plain", idx_pair())
put("idx", "channels", idx_pair(channels=3))
put("idx", "gzip", idx_pair(gz=True))
put("idx", "short_images", idx_pair()[:-2])
put("idx", "label_out_of_range", struct.pack("<H", 9) + struct.pack(">iI", 0x801, 1) + b"\x0b" +
    struct.pack(">iIII", 0x803, 1, 1, 1) + b"\x00")

# ---- MIDI ---------------------------------------------------------------------------
def vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def track(events):
    body = b"".join(vlq(d) + e for d, e in events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def smf(fmt, tracks, division=96):
    return b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division) + b"".join(tracks)


meta = [(0, b"\xff\x03\x04Lead"), (0, b"\xff\x51\x03\x07\xa1\x20"), (0, b"\xff\x58\x04\x03\x02\x18\x08"),
        (0, b"\xff\x59\x02\x01\x01"), (0, b"\xc0\x00")]
notes = [(0, b"\x90\x3c\x64"), (48, b"\x3e\x64"), (48, b"\x80\x3c\x00"), (0, b"\x3e\x00"), (0, b"\xf0\x03\x7e\x7f\xf7"),
         (0, b"\x99\x24\x70"), (96, b"\x89\x24\x00")]
put("midi", "format0", smf(0, [track(meta + notes)]))
put("midi", "format1", smf(1, [track(meta[:3]), track([(0, b"\xc1\x28")] + [(d, e.replace(b"\x90", b"\x91")) for d, e in notes])]))
put("midi", "smpte", smf(0, [track(notes)], division=0xE728))
put("midi", "unknown_chunk", b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"XFIH\x00\x00\x00\x02ab" + track(notes))
put("midi", "truncated", smf(0, [track(meta + notes)])[:-9])
put("midi", "bad_key", smf(0, [track([(0, b"\xff\x59\x02\xff\xff")] + notes)]))

# ---- config recipes (the INI file, NUL, one override per line) --------------------------
# The trainer's sections of a few recipes, plus the model and data keys the target declares.
def trainer_sections(name):
    with open(os.path.join(HERE, "..", "..", "libfm", "train", "src", "recipe.cpp")) as f:
        declared = set(re.findall(r'add_\w+\("((?:train|runtime|run)\.\w+)"', f.read()))
    section, out = "", []
    with open(os.path.join(EXPERIMENTS, name)) as f:
        for line in f:
            if line.startswith("["):
                section = line.strip()[1:-1]
                out.append(line)
            elif "=" not in line or section + "." + line.split("=")[0].strip() in declared:
                out.append(line)
    return "[model]\nn_layer = 3\ndropout = 0.0  # off\ntied = yes\n[data]\ntrain = data/x_{000..009}.bin\n" + "".join(out)


for name in ["gpt_char_tiny.ini", "clip_shapes.ini", "t2i_shapes.ini"]:
    put("config", name[:-4], trainer_sections(name))
put("config", "overrides", b"[model]\nn_layer = 2\n\x00--model.n_layer=4\n--train.lr\n0.01\n--model.tied=off\n--data.train= a b \n")
put("config", "unknown_key", b"[model]\nn_layr = 2\n")
put("config", "bad_values", b"[train]\nlr = 1e999\nmax_steps = 12x\n\x00--runtime.threads=yes\n")
put("config", "target", b"[train]\ntarget = val_loss <= 2\n")
put("config", "no_section", b"n_layer = 2\n")

# ---- tokenizers -------------------------------------------------------------------------
def b64(b):
    return base64.b64encode(b).decode()


ranks = [bytes([i]) for i in range(256)] + [b"th", b"the", b" the", b"in", b"ing"]
libfm_bpe = "libfm-bpe 1\nspecial %d %s\n" % (len(ranks), b64(b"<|endoftext|>"))
libfm_bpe += "".join("%s %d\n" % (b64(t), i) for i, t in enumerate(ranks))
put("bpe_file", "small", libfm_bpe)
put("bpe_file", "bytes_only", "libfm-bpe 1\n" + "".join("%s %d\n" % (b64(bytes([i])), i) for i in range(256)))
put("bpe_file", "bad_header", "libfm-bpe 2\n")
put("bpe_file", "duplicate_id", "libfm-bpe 1\n%s 0\n%s 0\n" % (b64(b"a"), b64(b"b")))
put("bpe_file", "bad_base64", "libfm-bpe 1\n@@@ 0\nspecial x y\n")
put("tiktoken", "small", "".join("%s %d\n" % (b64(t), i) for i, t in enumerate(ranks)))
with open(os.path.join(FIXTURES, "gpt2.tiktoken"), "rb") as f:
    put("tiktoken", "gpt2_head", b"".join(f.readlines()[:600]))
put("tiktoken", "gap", "%s 0\n%s 5\n" % (b64(b"a"), b64(b"b")))


def bytes_to_unicode():  # GPT-2's printable alphabet for the 256 bytes
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


u = bytes_to_unicode()
enc = {u[b]: i for i, b in enumerate(sorted(u, key=lambda b: b))}
merges = [("t", "h"), ("th", "e"), ("Ġ", "the"), ("i", "n"), ("in", "g")]
for a, b in merges:
    enc[a + b] = len(enc)
enc["<|endoftext|>"] = len(enc)
vocab = "#version: 0.2\n" + "".join("%s %s\n" % m for m in merges)
put("gpt2_files", "small", json.dumps(enc, ensure_ascii=False).encode() + b"\x00" + vocab.encode())
put("gpt2_files", "merge_out_of_order", json.dumps(enc, ensure_ascii=False).encode() + b"\x00" +
    ("#version: 0.2\n" + "".join("%s %s\n" % m for m in reversed(merges))).encode())
put("gpt2_files", "not_json", b"{\"a\": \x00#version: 0.2\na b\n")

for i, t in enumerate([b"Hello world, it's 2024!", b"<|endoftext|>The fox<|pad|>", b"\xff\xfe\xc3(\xe2\x82 bad utf-8",
                       "Ünïcödé 漢字 🙂   \n\n\tspaces".encode(), b"", b"'s've'll'd'm're't 123 456,7.8"]):
    put("bpe_encode", "t%d" % i, t)

# ---- media: the small fixtures --------------------------------------------------------------
for name in ["image_palette.png", "image_rgb_lossy.webp", "image_gray.jpg", "image_gray16.png", "image_gray.bmp",
             "image_rgba.png"]:
    put("image_decode", name, fixture(name))
put("image_decode", "truncated.png", fixture("image_rgb.png")[:700])
for name in ["audio_mono8k.wav", "audio_tone.flac", "audio_tone.ogg", "audio_tone.mp3", "audio_tone.m4a",
             "audio_bad_cut_header.wav", "audio_bad_text.wav", "audio_bad_long_header.wav"]:
    put("audio_decode", name, fixture(name))
