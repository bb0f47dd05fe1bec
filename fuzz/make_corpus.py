#!/usr/bin/python3
"""Regenerates the small seed corpora in fuzz/corpus/<target>/ (a few KB each) from the shared models
and tokenizers and from tiny generated files. Run with Debian's /usr/bin/python3 (needs numpy)."""
import io, json, os, struct, sys, zipfile
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
shared = os.path.normpath(os.path.join(here, "..", "..", "shared"))
out_root = os.path.join(here, "corpus")


def put(target, name, data):
    d = os.path.join(out_root, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- safetensors ------------------------------------------------------------------------------
def safetensors(tensors, metadata=None, pad=0):
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + blob

f32 = lambda *v: np.array(v, "<f4").tobytes()
put("fuzz_safetensors", "empty", safetensors([]))
put("fuzz_safetensors", "one_f32", safetensors([("w", "F32", [2, 2], f32(1, 2, 3, 4))]))
put("fuzz_safetensors", "dtypes", safetensors(
    [("a", "F16", [3], b"\0" * 6), ("b", "BF16", [1, 1], b"\0\0"), ("c", "I8", [0, 5], b""),
     ("d", "U8", [], b"\7"), ("e", "F8_E4M3", [2], b"\1\2"), ("f", "BOOL", [1], b"\1"), ("g", "I64", [1], b"\0" * 8)],
    metadata={"format": "pt", "note": "x"}, pad=5))
# The real models' headers, with every tensor shrunk to one element so the seed stays small.
with open(os.path.join(shared, "models", "aidreams-260k", "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    real = json.loads(f.read(n))
real.pop("__metadata__", None)
names = sorted(real)[:24]
put("fuzz_safetensors", "aidreams_shrunk", safetensors([(k, real[k]["dtype"], [1, 1], f32(0.5)) for k in names],
                                                        metadata={"format": "pt"}))

# --- sharded index (shards are built by the target itself) -----------------------------------
index = {"metadata": {"total_size": 27},
         "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                        "c": "model-00002-of-00002.safetensors"}}
put("fuzz_safetensors_index", "valid", json.dumps(index, indent=1))
put("fuzz_safetensors_index", "partial", json.dumps({"weight_map": {"c": "model-00002-of-00002.safetensors"}}))
put("fuzz_safetensors_index", "traversal", json.dumps({"weight_map": {"a": "../model-00001-of-00002.safetensors"}}))

# --- npy / npz ----------------------------------------------------------------------------------
def npy(a, version=None):
    b = io.BytesIO()
    np.lib.format.write_array(b, a, version=version, allow_pickle=False)
    return b.getvalue()

arrays = {
    "f32": np.arange(6, dtype="<f4").reshape(2, 3),
    "f16": np.ones(4, "<f2"),
    "be_i32": np.arange(3, dtype=">i4"),
    "fortran": np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)),
    "bool": np.array([True, False]),
    "scalar": np.array(7, "<i8"),
    "empty": np.zeros((0, 4), "<u2"),
}
for k, a in arrays.items():
    put("fuzz_npy", k, npy(a))
put("fuzz_npy", "v2", npy(np.arange(4, dtype="<u1"), version=(2, 0)))
put("fuzz_npy", "v3", npy(np.arange(4, dtype="<i2"), version=(3, 0)))

def npz(members, compress, zip64=False):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for k, a in members.items():
            info = zipfile.ZipInfo(k + ".npy", date_time=(2024, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = z.compression
            with z.open(info, "w", force_zip64=zip64) as f:
                f.write(npy(a))
    return b.getvalue()

small = {k: arrays[k] for k in ("f32", "be_i32", "scalar")}
put("fuzz_npz", "stored", npz(small, False))
put("fuzz_npz", "deflated", npz(small, True))
put("fuzz_npz", "zip64", npz({"f16": arrays["f16"]}, True, zip64=True))
put("fuzz_npz", "empty", npz({}, False))

# --- gguf ---------------------------------------------------------------------------------------
def gstr(s):
    s = s.encode()
    return struct.pack("<Q", len(s)) + s

def gkv(key, t, payload):
    return gstr(key) + struct.pack("<I", t) + payload

def gguf(kvs, tensors, alignment=32):
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    blob = b""
    infos = b""
    for name, gtype, ne, raw in tensors:
        blob += b"\0" * (-len(blob) % alignment)
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        infos += struct.pack("<IQ", gtype, len(blob))
        blob += raw
    head += infos
    head += b"\0" * (-len(head) % alignment)
    return head + blob

kvs = [gkv("general.architecture", 8, gstr("llama")), gkv("general.alignment", 4, struct.pack("<I", 32)),
       gkv("llama.context_length", 4, struct.pack("<I", 128)), gkv("llama.rope.freq_base", 6, struct.pack("<f", 1e4)),
       gkv("general.flag", 7, b"\1"), gkv("x.i64", 11, struct.pack("<q", -5)), gkv("x.f64", 12, struct.pack("<d", 2.5)),
       gkv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + gstr("<s>") + gstr("a") + gstr("b")),
       gkv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0, -1, -2)),
       gkv("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 0, 2) + b"\1\2")]
q4_0 = struct.pack("<e", 0.5) + bytes(range(16))  # one 18-byte block of 32 weights
put("fuzz_gguf", "tensors", gguf(kvs, [("w", 0, [4, 2], f32(*range(8))), ("q", 2, [32, 1], q4_0),
                                      ("h", 1, [3], b"\0" * 6)]))
put("fuzz_gguf", "metadata_only", gguf(kvs[:3], []))
put("fuzz_gguf", "align64", gguf([gkv("general.alignment", 4, struct.pack("<I", 64))], [("w", 0, [2], f32(1, 2))], 64))

# --- tokenizer.json: the real files cut down to a tiny vocabulary -------------------------------
def shrink(path, keep):
    with open(path, encoding="utf-8") as f:
        t = json.load(f)
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ") if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    t["added_tokens"] = [a for a in t.get("added_tokens", [])][:6]
    top = max(vocab.values()) + 1
    for i, a in enumerate(t["added_tokens"]):
        if a["id"] >= keep:
            a["id"] = top + i
    return json.dumps(t, ensure_ascii=False, separators=(",", ":"))

put("fuzz_tokenizer", "spm_aidreams", shrink(os.path.join(shared, "models", "aidreams-260k", "tokenizer.json"), 300))
put("fuzz_tokenizer", "spm32k", shrink(os.path.join(shared, "tokenizers", "spm32k", "tokenizer.json"), 300))
put("fuzz_tokenizer", "qwen3", shrink(os.path.join(shared, "tokenizers", "qwen3", "tokenizer.json"), 300))
put("fuzz_tokenizer", "llama3", shrink(os.path.join(shared, "tokenizers", "llama3", "tokenizer.json"), 300))

# --- config.json --------------------------------------------------------------------------------
for m in ("aidreams-260k", "stories-260k"):
    with open(os.path.join(shared, "models", m, "config.json"), "rb") as f:
        put("fuzz_config", m, f.read())
put("fuzz_config", "qwen3_quantized", json.dumps({
    "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 300,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "eos_token_id": [1, 2],
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
    "quantization": {"group_size": 64, "bits": 4, "mode": "affine",
                     "model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 8},
                     "model.embed_tokens": False}}))
put("fuzz_config", "mistral", json.dumps({
    "model_type": "mistral", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 100, "sliding_window": 4096,
    "rope_scaling": {"type": "linear", "factor": 2.0}, "bos_token_id": 1}))
