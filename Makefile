# Thin wrappers over hack/: each target is one script.
.PHONY: all deps build test test-tsan test-arm64 fuzz e2e e2e-matrix demo image bench format lint clean cluster-up cluster-down

all: build

deps:
	hack/deps.sh

build:
	hack/build.sh release

test:
	hack/test.sh

test-tsan:
	hack/test.sh tsan

# The unit tests cross-built for linux/arm64, run under qemu-user.
test-arm64:
	hack/test-arm64.sh

fuzz:
	hack/fuzz.sh

e2e:
	hack/e2e.sh

# The reduced scenario set on every cell of the compatibility matrix, then the table.
e2e-matrix:
	hack/e2e-matrix.sh

# DEMO_FLAGS=--no-wait: run the story, tear down, exit 1 on a failed check (make e2e does).
demo:
	hack/demo.sh $(DEMO_FLAGS)

# Every hot path and the footprint, one table (docs/benchmarks.md); under 10 minutes.
# The plugin's OCI image for linux/amd64 and linux/arm64, one multi-arch index (build/image).
image:
	hack/image.sh

bench:
	hack/bench.sh

# The local one-node Kubernetes of the real-node tests (docs/e2e.md).
cluster-up:
	hack/local-cluster.sh up

cluster-down:
	hack/local-cluster.sh down

format:
	hack/format.sh

lint:
	hack/lint.sh

clean:
	rm -rf build
