# quaestor's build. `make run` starts the demo, `make test` runs every test.
GO      ?= go
BIN     := bin
CONFIG  ?= configs/quaestor.yaml
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build run test chaos fuzz bench soak proto lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# `quaestor run` in the foreground: the embedded etcd (data/etcd), four
# supervised example workers, the proxy on 127.0.0.1:5150, the admin server
# on 127.0.0.1:9150. Ctrl-C drains the proxy, stops the workers, then etcd.
run: build
	$(BIN)/quaestor run -c $(CONFIG)

# The status page's browser test needs Debian's chromium: installed here
# when missing.
test:
	@./.ci/ensure-chromium.sh || echo "make test: no chromium; the status page's browser test will be skipped"
	$(GO) test -race -count=1 -timeout 9m ./...
	# The proxy reads and writes its sockets with raw system calls, except
	# under the race detector (proxy/internal/frames/rawio_linux.go): once
	# more without it.
	$(GO) test -count=1 -timeout 5m ./proxy/...
	$(MAKE) fuzz FUZZTIME=10000x

# The long versions of the fault tests (TestFault... in every package):
# faults held longer and repeated, more load, under the race detector.
# About 15 minutes; the timeout is the hard bound.
chaos:
	CHAOS=1 $(GO) test -race -count=1 -run Fault -timeout 30m ./...

# Fuzzes the config loader, the registry value decoder, the engine's
# message scanner, the engine under a hostile client's or a broken
# backend's frames, and the decoder of per-call load reports, each for
# FUZZTIME: a count of runs (10000x) or a duration (1m). make test uses a
# count: Go 1.26's fuzzer can fail a duration-bounded run with a spurious
# "context deadline exceeded" (golang/go#75804). Inputs that found
# something new are kept under testdata/fuzz.
FUZZTIME ?= 100000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./cmd/quaestor/internal/config/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeValue$$' -fuzztime $(FUZZTIME) ./routing/registry/
	$(GO) test -run '^$$' -fuzz '^FuzzMessageScanner$$' -fuzztime $(FUZZTIME) ./proxy/internal/frames/
	$(GO) test -run '^$$' -fuzz '^FuzzClientFrames$$' -fuzztime $(FUZZTIME) ./proxy/internal/frames/
	$(GO) test -run '^$$' -fuzz '^FuzzBackendFrames$$' -fuzztime $(FUZZTIME) ./proxy/internal/frames/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeLoadReport$$' -fuzztime $(FUZZTIME) ./proxy/

# The benchmark harness: direct, quaestor, grpc-proxy, HAProxy and nginx,
# each a process of its own, in one interleaved run (about 9 minutes on 2
# cores); installs Debian's haproxy and nginx when missing. BENCHFLAGS adds
# flags, e.g. BENCHFLAGS="-rounds 1 -duration 1s".
BENCHFLAGS ?=
bench:
	@./bench/install-proxies.sh
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/quaestor ./cmd/quaestor
	$(GO) build -o $(BIN)/bench ./bench
	$(BIN)/bench -quaestor $(BIN)/quaestor -out bench/latest.md -plot bench/latency-vs-load.png $(BENCHFLAGS)

# The soak run (Linux): 10 minutes of steady load through a real quaestor
# process while its backends register, deregister, die and flap; fails
# when the proxy dies or its goroutines, heap or RSS grow after warm-up.
# Samples, chart, summary, profiles and logs in bench/results/soak/.
soak:
	$(GO) run ./bench/soak -duration 10m -out bench/results/soak

proto:
	./proto/generate.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) build ./...
	GOOS=darwin $(GO) build ./...

clean:
	rm -rf $(BIN) bench/results
