#!/usr/bin/env python3
"""Keeps the RFC 9180 vectors Holdfast implements: base mode, DHKEM(P-256) or
DHKEM(X25519), HKDF-SHA256, and AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 or
export-only.

usage: extract_hpke.py <test-vectors.json> <rfc9180-base.json>
"""
import json
import sys

KEMS = {0x0010, 0x0020}
KDFS = {0x0001}
AEADS = {0x0001, 0x0002, 0x0003, 0xFFFF}


def main(src, dst):
    with open(src, encoding="utf-8") as f:
        vectors = json.load(f)
    kept = [v for v in vectors
            if v["mode"] == 0 and v["kem_id"] in KEMS and v["kdf_id"] in KDFS
            and v["aead_id"] in AEADS]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(kept, f, indent=1)
        f.write("\n")
    print(f"kept {len(kept)} of {len(vectors)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
