#!/usr/bin/env python3
"""Writes the SPDX 2.3 (JSON) software bill of materials of one image of `make image`.

The image is the daemon and shared libraries (hack/image.sh records where each file came from
in SOURCES: "IMAGE_PATH<TAB>SOURCE_PATH"). Each library's package is the Debian package that
brought its source: the roots given with --root are unpacked Debian packages with a .files list
("PACKAGE VERSION PATH": hack/image-libs.sh, the archive's runtime libraries; hack/sysroot.sh,
the arm64 build's libraries), anything else is asked of dpkg's database. The libraries the
daemon links statically (gRPC, protobuf, abseil, c-ares, re2, yaml-cpp; cmake/GdpStaticDeps.cmake)
are packages too, with STATIC_LINK relationships, at the versions of their Debian -dev packages
that the build used (from the roots, else, for amd64, the host's).

Usage: hack/sbom.py --arch amd64|arm64 --sources SOURCES --version V --revision R
                    [--root DIR]... [--created TIME] --out FILE
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys

STATIC = ["libgrpc++-dev", "libprotobuf-dev", "libabsl-dev", "libc-ares-dev", "libre2-dev", "libyaml-cpp-dev"]


def spdx_id(name):
    return "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)


def host_owner(path):
    """(package, version) of a host file, trying both sides of usrmerge."""
    real = os.path.realpath(path)
    for p in {path, real, re.sub(r"^/lib/", "/usr/lib/", real), re.sub(r"^/usr/lib/", "/lib/", real)}:
        r = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            pkg = r.stdout.split(":")[0].strip()
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
            return pkg, v.stdout.strip()
    return None


def root_files(root):
    """{path under ROOT (usrmerged): (package, version)} from ROOT/.files."""
    owners = {}
    with open(os.path.join(root, ".files")) as f:
        for line in f:
            pkg, ver, path = line.rstrip("\n").split(" ", 2)
            owners[re.sub(r"^/lib/", "/usr/lib/", path)] = (pkg, ver)
    return owners


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True, choices=["amd64", "arm64"])
    ap.add_argument("--sources", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--revision", required=True)
    ap.add_argument("--root", action="append", default=[], help="an unpacked Debian root with a .files list")
    ap.add_argument("--out", required=True)
    ap.add_argument("--created", default="", help="the document's time (default now); the image's, for one SBOM per image")
    a = ap.parse_args()
    roots = [(os.path.realpath(r), root_files(r)) for r in a.root]

    def owner(src):
        real = os.path.realpath(src)
        for root, owners in roots:
            if real.startswith(root + "/"):
                rel = re.sub(r"^/lib/", "/usr/lib/", "/" + os.path.relpath(real, root))
                return owners.get(rel) or owners.get(re.sub(r"^/usr/lib/", "/lib/", rel))
        return host_owner(src)

    packages, rels = {}, []
    root = spdx_id("gpu-device-plugin")
    packages["gpu-device-plugin"] = {
        "name": "gpu-device-plugin", "SPDXID": root, "versionInfo": a.version,
        "supplier": "NOASSERTION", "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "comment": f"the daemon, built from revision {a.revision} for linux/{a.arch}",
    }

    def add(pkg, ver, rel):
        if pkg not in packages:
            packages[pkg] = {
                "name": pkg, "SPDXID": spdx_id(pkg), "versionInfo": ver, "supplier": "Organization: Debian",
                "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
                "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": f"pkg:deb/debian/{pkg}@{ver}?arch={a.arch}"}],
            }
            rels.append({"spdxElementId": root, "relationshipType": rel, "relatedSpdxElement": spdx_id(pkg)})

    missing = []
    with open(a.sources) as f:
        for line in f:
            image_path, src = line.rstrip("\n").split("\t")
            o = owner(src)
            if o is None:
                missing.append(f"{image_path} ({src})")
                continue
            add(o[0], o[1], "DEPENDS_ON")
    for dev in STATIC:
        o = next(iter({pv for _, owners in roots for pv in owners.values() if pv[0] == dev}), None)
        if o is None and a.arch == "amd64":
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", dev], capture_output=True, text=True)
            o = (dev, v.stdout.strip()) if v.returncode == 0 else None
        if o is None:
            missing.append(dev + " (statically linked)")
            continue
        add(o[0], o[1], "STATIC_LINK")
    if missing:
        sys.exit("sbom: no Debian package owns: " + ", ".join(missing))

    doc = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"gpu-device-plugin-{a.version}-linux-{a.arch}",
        "documentNamespace": f"https://spdx.org/spdxdocs/gpu-device-plugin-{a.version}-{a.arch}-{a.revision}",
        "creationInfo": {"created": a.created or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "creators": ["Tool: hack/sbom.py"]},
        "documentDescribes": [root],
        "packages": list(packages.values()),
        "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                           "relatedSpdxElement": root}] + rels,
    }
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    print(f"{a.out}: {len(packages) - 1} packages")


if __name__ == "__main__":
    main()
