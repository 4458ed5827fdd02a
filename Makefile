# Thin wrappers over hack/: each target is one script.
.PHONY: all deps build test test-tsan fuzz e2e demo bench format lint clean

all: build

deps:
	hack/deps.sh

build:
	hack/build.sh release

test:
	hack/test.sh

test-tsan:
	hack/test.sh tsan

fuzz:
	hack/fuzz.sh

e2e:
	hack/e2e.sh

demo:
	hack/demo.sh

format:
	hack/format.sh

lint:
	hack/lint.sh

clean:
	rm -rf build
