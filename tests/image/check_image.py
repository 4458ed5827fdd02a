#!/usr/bin/env python3
"""Checks the plugin's multi-arch OCI image layout that `make image` writes.

For the layout DIR (default build/image/gpu-device-plugin.oci): index.json names one image
index; it lists one image per platform (linux/amd64 and linux/arm64, or those given with
--platforms); each image's config has its architecture, the entrypoint and the version and
revision labels; each layer's digest and diff_id match its bytes; the layer holds the daemon
(built for that architecture), its nvidia-device-plugin and config-manager names, the shared
libraries it needs and a few empty directories and /etc files, nothing else; and the daemon
runs from the layer's own files alone: `gpu-device-plugin --help` in a chroot of the unpacked
layer on amd64, under qemu-aarch64 with the layer as its library prefix on arm64.

Usage: tests/image/check_image.py [--platforms amd64,arm64] [DIR]   (as root: chroot)
Prints one line per check; exits 1 when any failed.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

MACHINE = {"amd64": "x86-64", "arm64": "ARM aarch64"}
ALLOWED = re.compile(r"^\.$|^\./(usr/bin/(gpu-device-plugin|nvidia-device-plugin|config-manager)"
                     r"|lib(64)?/.+\.so[.0-9]*"
                     r"|etc/(passwd|group)|(etc|tmp|proc|sys|dev|run|var|root|usr|usr/bin|lib|lib64"
                     r"|lib/[a-z0-9_-]+-linux-gnu)/?|)$")

failed = 0


def check(name, ok, detail=""):
    global failed
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail and (not ok or len(detail) < 90) else ""))
    if not ok:
        failed += 1


def blob(layout, digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd), "rb") as f:
        data = f.read()
    check(f"blob {digest[:19]} matches its digest", hashlib.sha256(data).hexdigest() == hexd)
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("layout", nargs="?", default="build/image/gpu-device-plugin.oci")
    ap.add_argument("--platforms", default="amd64,arm64")
    a = ap.parse_args()
    want = a.platforms.split(",")

    with open(os.path.join(a.layout, "index.json")) as f:
        top = json.load(f)
    check("index.json names one image index", len(top["manifests"]) == 1 and
          top["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json")
    index = json.loads(blob(a.layout, top["manifests"][0]["digest"]))
    version = top["manifests"][0].get("annotations", {}).get("org.opencontainers.image.ref.name", "")
    plats = {m["platform"]["architecture"]: m for m in index["manifests"]}
    check("the index has one image per platform", sorted(plats) == sorted(want) and
          all(m["platform"]["os"] == "linux" for m in index["manifests"]), ",".join(sorted(plats)))
    for arch in want:
        m = plats.get(arch)
        if not m:
            continue
        manifest = json.loads(blob(a.layout, m["digest"]))
        config = json.loads(blob(a.layout, manifest["config"]["digest"]))
        labels = config["config"].get("Labels", {})
        check(f"{arch}: config architecture and entrypoint",
              config["architecture"] == arch and config["os"] == "linux" and
              config["config"]["Entrypoint"] == ["/usr/bin/gpu-device-plugin"])
        check(f"{arch}: labels name the version and the revision",
              labels.get("org.opencontainers.image.version") == version and
              re.fullmatch(r"[0-9a-f]{40}|unknown", labels.get("org.opencontainers.image.revision", "")) is not None,
              f"{labels.get('org.opencontainers.image.version')} {labels.get('org.opencontainers.image.revision')}")
        (layer,) = manifest["layers"]
        raw = blob(a.layout, layer["digest"])
        tar_bytes = gzip.decompress(raw) if layer["mediaType"].endswith("+gzip") else raw
        check(f"{arch}: the layer's diff_id is its uncompressed digest",
              config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()])
        with tempfile.TemporaryDirectory() as d, tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
            names = t.getnames()
            extra = [n for n in names if not ALLOWED.match(n)]
            check(f"{arch}: the daemon, its names and its libraries, nothing else ({len(names)} entries)",
                  not extra, " ".join(extra[:8]))
            t.extractall(d)
            daemon = os.path.join(d, "usr/bin/gpu-device-plugin")
            kind = subprocess.run(["file", "-b", daemon], capture_output=True, text=True).stdout
            check(f"{arch}: the daemon is built for {arch}", MACHINE[arch] in kind, kind.strip()[:80])
            if arch == "amd64":
                run = ["chroot", d, "/usr/bin/gpu-device-plugin", "--help"]
            else:
                run = ["qemu-aarch64", "-L", d, daemon, "--help"]
            r = subprocess.run(run, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
            check(f"{arch}: `gpu-device-plugin --help` runs from the image's own files",
                  r.returncode == 0 and "--driver-root" in r.stdout, (r.stderr or r.stdout).strip()[:200])
    print(f"{'all checks passed' if not failed else str(failed) + ' checks FAILED'} ({a.layout})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
