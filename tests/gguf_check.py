#!/usr/bin/env python3
"""Independent GGUF validator (Python standard library only), written from the GGUF specification.

The tests use it to check the files qlib writes without trusting qlib's own reader:

    gguf_check.py FILE [--version 3] [--alignment N] [--expect EXPECT.json] [--dump]

Checks: magic, version, counts fit the file, every metadata value type (nested arrays included,
bools are 0/1, no duplicate keys), general.alignment is a u32 power of two, tensor infos (name of
1..63 bytes, 1..4 dims, known ggml type, ne[0] a whole number of blocks), the data section starts at
the first aligned offset after the infos, tensors are laid out as llama.cpp expects (each at the
aligned running offset, in info order), all padding is zero and the file ends after the last padded
tensor.

--expect takes JSON {"kv": {key: value}, "exact_keys": bool, "tensors": [{"name", "type", "ne",
"crc32"?}], "exact_tensors": bool}; a value is {"type": "u32", "value": 5} or, for arrays,
{"type": "array", "elem": "i32", "value": [...]} whose items are plain values, or value objects when
elem is "array". --dump prints the file in that same form. Exit status 0 = valid (and as expected).
"""
import json
import math
import struct
import sys
import zlib

SCALARS = {  # value type id -> (name, struct code)
    0: ("u8", "B"), 1: ("i8", "b"), 2: ("u16", "H"), 3: ("i16", "h"), 4: ("u32", "I"), 5: ("i32", "i"),
    6: ("f32", "f"), 7: ("bool", "B"), 10: ("u64", "Q"), 11: ("i64", "q"), 12: ("f64", "d"),
}
STRING, ARRAY = 8, 9
TYPE_NAMES = {**{k: v[0] for k, v in SCALARS.items()}, STRING: "string", ARRAY: "array"}
MAX_DEPTH = 8

# ggml type id -> (name, elements per block, bytes per block), from the block layouts of ggml.
GGML = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 2 + 16), 3: ("Q4_1", 32, 4 + 16),
    6: ("Q5_0", 32, 2 + 4 + 16), 7: ("Q5_1", 32, 4 + 4 + 16), 8: ("Q8_0", 32, 2 + 32), 9: ("Q8_1", 32, 4 + 32),
    10: ("Q2_K", 256, 16 + 64 + 4), 11: ("Q3_K", 256, 32 + 64 + 12 + 2), 12: ("Q4_K", 256, 4 + 12 + 128),
    13: ("Q5_K", 256, 4 + 12 + 32 + 128), 14: ("Q6_K", 256, 128 + 64 + 16 + 2), 15: ("Q8_K", 256, 4 + 256 + 32),
    16: ("IQ2_XXS", 256, 2 + 64), 17: ("IQ2_XS", 256, 2 + 64 + 8), 18: ("IQ3_XXS", 256, 2 + 96),
    19: ("IQ1_S", 256, 2 + 32 + 16), 20: ("IQ4_NL", 32, 2 + 16), 21: ("IQ3_S", 256, 2 + 64 + 32 + 8 + 4),
    22: ("IQ2_S", 256, 2 + 64 + 16), 23: ("IQ4_XS", 256, 2 + 2 + 4 + 128), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 32 + 16 + 8), 30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 48 + 4 + 2), 35: ("TQ2_0", 256, 64 + 2), 39: ("MXFP4", 32, 1 + 16),
}


class CheckError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def need(self, n, what):
        if n > len(self.data) - self.pos:
            raise CheckError(f"truncated at byte {self.pos}: {what} needs {n} bytes, {len(self.data) - self.pos} left")

    def unpack(self, code, what):
        size = struct.calcsize("<" + code)
        self.need(size, what)
        v = struct.unpack_from("<" + code, self.data, self.pos)[0]
        self.pos += size
        return v

    def string(self, what):
        n = self.unpack("Q", what + " length")
        self.need(n, what)
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckError(f"{what} is not valid UTF-8: {e}") from None


def read_value(r, t, key, depth):
    if t in SCALARS:
        name, code = SCALARS[t]
        v = r.unpack(code, f"value of '{key}'")
        if name == "bool":
            if v > 1:
                raise CheckError(f"'{key}': bool value {v} is not 0 or 1")
            v = bool(v)
        return {"type": name, "value": v}
    if t == STRING:
        return {"type": "string", "value": r.string(f"string of '{key}'")}
    if t != ARRAY:
        raise CheckError(f"'{key}': unknown value type {t}")
    if depth >= MAX_DEPTH:
        raise CheckError(f"'{key}': arrays nested deeper than {MAX_DEPTH}")
    et = r.unpack("I", f"array type of '{key}'")
    n = r.unpack("Q", f"array length of '{key}'")
    if et not in TYPE_NAMES:
        raise CheckError(f"'{key}': unknown array element type {et}")
    items = []
    if et in SCALARS:
        name, code = SCALARS[et]
        size = struct.calcsize("<" + code)
        r.need(n * size, f"array of '{key}'")
        items = list(struct.unpack_from(f"<{n}{code}", r.data, r.pos))
        r.pos += n * size
        if name == "bool":
            if any(v > 1 for v in items):
                raise CheckError(f"'{key}': bool array element is not 0 or 1")
            items = [bool(v) for v in items]
    elif et == STRING:
        r.need(n * 8, f"array of '{key}'")
        items = [r.string(f"element of '{key}'") for _ in range(n)]
    else:
        r.need(n * 12, f"array of '{key}'")
        items = [read_value(r, ARRAY, key, depth + 1) for _ in range(n)]
    return {"type": "array", "elem": TYPE_NAMES[et], "value": items}


def parse(path, version):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    r.need(4, "magic")
    if data[:4] != b"GGUF":
        raise CheckError(f"bad magic {data[:4]!r}")
    r.pos = 4
    got_version = r.unpack("I", "version")
    if got_version != version:
        raise CheckError(f"version {got_version}, expected {version}")
    n_tensors = r.unpack("Q", "tensor count")
    n_kv = r.unpack("Q", "kv count")
    if n_kv * 13 + n_tensors * 24 > len(data) - r.pos:
        raise CheckError(f"{n_kv} keys and {n_tensors} tensors cannot fit in the file")
    kv = {}
    for _ in range(n_kv):
        key = r.string("key")
        if key in kv:
            raise CheckError(f"duplicate key '{key}'")
        t = r.unpack("I", f"type of '{key}'")
        kv[key] = read_value(r, t, key, 0)
    alignment = 32
    if "general.alignment" in kv:
        a = kv["general.alignment"]
        if a["type"] != "u32" or a["value"] == 0 or a["value"] & (a["value"] - 1):
            raise CheckError(f"general.alignment must be a u32 power of two, got {a}")
        alignment = a["value"]
    tensors = []
    names = set()
    for _ in range(n_tensors):
        name = r.string("tensor name")
        if not 1 <= len(name.encode()) <= 63:
            raise CheckError(f"tensor name '{name}' must have 1..63 bytes")
        if name in names:
            raise CheckError(f"duplicate tensor '{name}'")
        names.add(name)
        n_dims = r.unpack("I", f"n_dims of '{name}'")
        if not 1 <= n_dims <= 4:
            raise CheckError(f"tensor '{name}' has {n_dims} dims")
        ne = [r.unpack("Q", f"ne of '{name}'") for _ in range(n_dims)]
        gt = r.unpack("I", f"type of '{name}'")
        if gt not in GGML:
            raise CheckError(f"tensor '{name}' has unknown ggml type {gt}")
        offset = r.unpack("Q", f"offset of '{name}'")
        tname, block, bsize = GGML[gt]
        if ne[0] % block:
            raise CheckError(f"tensor '{name}': ne[0]={ne[0]} is not a multiple of the {tname} block {block}")
        nbytes = math.prod(ne) // block * bsize
        tensors.append({"name": name, "type": tname, "ne": ne, "offset": offset, "nbytes": nbytes})
    header_end = r.pos
    data_start = -(-header_end // alignment) * alignment
    if data_start > len(data):
        raise CheckError(f"data section starts at {data_start}, past the end ({len(data)} bytes)")
    if any(data[header_end:data_start]):
        raise CheckError("non-zero padding before the data section")
    expected_offset = 0
    for t in tensors:
        if t["offset"] % alignment:
            raise CheckError(f"tensor '{t['name']}' offset {t['offset']} not aligned to {alignment}")
        if t["offset"] != expected_offset:
            raise CheckError(f"tensor '{t['name']}' at offset {t['offset']}, expected {expected_offset}")
        begin = data_start + t["offset"]
        end = begin + t["nbytes"]
        padded = data_start + expected_offset + -(-t["nbytes"] // alignment) * alignment
        if padded > len(data):
            raise CheckError(f"tensor '{t['name']}' [{begin}, {padded}) exceeds the file ({len(data)} bytes)")
        if any(data[end:padded]):
            raise CheckError(f"non-zero padding after tensor '{t['name']}'")
        t["crc32"] = zlib.crc32(data[begin:end])
        expected_offset = padded - data_start
    if data_start + expected_offset != len(data) and tensors:
        raise CheckError(f"file has {len(data)} bytes, tensors end at {data_start + expected_offset}")
    return {"version": got_version, "alignment": alignment, "kv": kv, "tensors": tensors}


def same_value(want, got, where):
    if want.get("type") != got["type"]:
        raise CheckError(f"{where}: type {got['type']}, expected {want.get('type')}")
    if got["type"] == "array":
        if want.get("elem") != got["elem"]:
            raise CheckError(f"{where}: element type {got['elem']}, expected {want.get('elem')}")
        if len(want["value"]) != len(got["value"]):
            raise CheckError(f"{where}: {len(got['value'])} elements, expected {len(want['value'])}")
        for i, (w, g) in enumerate(zip(want["value"], got["value"])):
            if got["elem"] == "array":
                same_value(w, g, f"{where}[{i}]")
            elif not same_scalar(got["elem"], w, g):
                raise CheckError(f"{where}[{i}]: {g!r}, expected {w!r}")
    elif not same_scalar(got["type"], want["value"], got["value"]):
        raise CheckError(f"{where}: {got['value']!r}, expected {want['value']!r}")


def same_scalar(t, want, got):
    if t == "f32":
        return struct.pack("<f", want) == struct.pack("<f", got) or (math.isnan(want) and math.isnan(got))
    if t == "f64":
        return want == got or (math.isnan(want) and math.isnan(got))
    return want == got and type(want) is type(got)


def check_expect(info, expect):
    for key, want in expect.get("kv", {}).items():
        if key not in info["kv"]:
            raise CheckError(f"missing key '{key}'")
        same_value(want, info["kv"][key], f"key '{key}'")
    if expect.get("exact_keys") and set(expect.get("kv", {})) != set(info["kv"]):
        extra = sorted(set(info["kv"]) ^ set(expect.get("kv", {})))
        raise CheckError(f"key sets differ: {extra}")
    by_name = {t["name"]: t for t in info["tensors"]}
    for want in expect.get("tensors", []):
        got = by_name.get(want["name"])
        if got is None:
            raise CheckError(f"missing tensor '{want['name']}'")
        for field in ("type", "ne", "crc32"):
            if field in want and want[field] != got[field]:
                raise CheckError(f"tensor '{want['name']}' {field} {got[field]}, expected {want[field]}")
    if expect.get("exact_tensors"):
        names = [t["name"] for t in expect.get("tensors", [])]
        if names != [t["name"] for t in info["tensors"]]:
            raise CheckError(f"tensor list differs: {[t['name'] for t in info['tensors']]}")


def main(argv):
    args = {"--version": "3", "--alignment": None, "--expect": None}
    files, dump, i = [], False, 0
    while i < len(argv):
        if argv[i] == "--dump":
            dump = True
        elif argv[i] in args and i + 1 < len(argv):
            args[argv[i]] = argv[i + 1]
            i += 1
        else:
            files.append(argv[i])
        i += 1
    if len(files) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        info = parse(files[0], int(args["--version"]))
        if args["--alignment"] is not None and info["alignment"] != int(args["--alignment"]):
            raise CheckError(f"alignment {info['alignment']}, expected {args['--alignment']}")
        if args["--expect"]:
            with open(args["--expect"], encoding="utf-8") as f:
                check_expect(info, json.load(f))
    except CheckError as e:
        print(f"gguf_check: {files[0]}: {e}", file=sys.stderr)
        return 1
    if dump:
        json.dump(info, sys.stdout, indent=1)
        print()
    else:
        print(f"gguf_check: {files[0]}: OK ({len(info['tensors'])} tensors, {len(info['kv'])} keys)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
