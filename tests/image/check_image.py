#!/usr/bin/env python3
"""Checks the plugin's multi-arch OCI image layout that `make image` writes.

For the layout DIR (default build/image/gpu-device-plugin.oci): index.json names one image
index; it lists one image per platform (linux/amd64 and linux/arm64, or those given with
--platforms); each image's config has its architecture, the entrypoint and the version and
revision labels; each layer's digest and diff_id match its bytes; the layer holds the daemon
(built for that architecture), its nvidia-device-plugin and config-manager names, the shared
libraries it needs and a few empty directories and /etc files, nothing else; and the daemon
runs from the layer's own files alone: `gpu-device-plugin --help` in a chroot of the unpacked
layer on amd64, under qemu-aarch64 with the layer as its library prefix on arm64. Beside the
layout, each platform's SBOM (sbom-<arch>.spdx.json) names the daemon and a Debian package for
every shared library of the image, each at the version Debian's archive has now (apt's
candidate: the image takes its libraries from the archive, security updates included, not
from this machine), and the libraries linked in statically.

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


def candidate(pkg, arch):
    out = subprocess.run(["apt-cache", "policy", f"{pkg}:{arch}"], capture_output=True, text=True).stdout
    m = re.search(r"^  Candidate: (\S+)", out, re.M)
    return m.group(1) if m else None


def check_sbom(out_dir, arch, libs):
    path = os.path.join(out_dir, f"sbom-{arch}.spdx.json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        check(f"{arch}: the SBOM {path} reads", False, str(e))
        return
    pkgs = {p["SPDXID"]: p for p in doc["packages"]}
    rels = {}
    for r in doc["relationships"]:
        rels.setdefault(r["relationshipType"], []).append(pkgs.get(r["relatedSpdxElement"]))
    runtime = [p for p in rels.get("DEPENDS_ON", []) if p]
    static = [p for p in rels.get("STATIC_LINK", []) if p]
    check(f"{arch}: the SBOM is SPDX 2.3 and describes gpu-device-plugin",
          doc.get("spdxVersion") == "SPDX-2.3" and [pkgs[i]["name"] for i in doc["documentDescribes"]] == ["gpu-device-plugin"])
    # Every library's package: the image's libc6, libstdc++6, libssl3, ... with the sources
    # file of make image naming one per library (hack/image.sh writes rootfs/<arch>.sources).
    sources = os.path.join(out_dir, "rootfs", f"{arch}.sources")
    with open(sources) as f:
        recorded = sorted(line.split("\t")[0].lstrip("/") for line in f if line.strip())
    check(f"{arch}: each of the image's {len(libs)} libraries is in the SBOM's sources",
          set(recorded) == set(libs),
          f"image {libs} sources {recorded}")
    archive = {p["name"]: candidate(p["name"], arch) for p in runtime}
    stale = [f"{p['name']} {p['versionInfo']} (archive {archive[p['name']]})" for p in runtime
             if p["versionInfo"] != archive[p["name"]]]
    check(f"{arch}: the SBOM's {len(runtime)} runtime packages are at the archive's versions",
          runtime and not stale, "; ".join(stale))
    check(f"{arch}: the SBOM names the statically linked gRPC and protobuf",
          {"libgrpc++-dev", "libprotobuf-dev"} <= {p["name"] for p in static})


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
            libs = sorted(n[2:] for n in names if re.match(r"^\./lib(64)?/.+\.so", n))
        check_sbom(os.path.dirname(os.path.abspath(a.layout)), arch, libs)
    print(f"{'all checks passed' if not failed else str(failed) + ' checks FAILED'} ({a.layout})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
