# quaestor's build. `make run` starts the demo, `make test` runs every test.
GO      ?= go
BIN     := bin
CONFIG  ?= configs/quaestor.yaml
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
# The example workers `make run` starts; configs/quaestor.yaml lists them.
WORKER_PORTS := 5161 5162 5163 5164

.PHONY: all build run test bench proto lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# Starts the example workers, then `quaestor run` (embedded etcd in
# data/etcd, the proxy on 127.0.0.1:5150, admin on 127.0.0.1:9150), in the
# foreground. Ctrl-C drains the proxy, stops etcd and the workers.
run: build
	@pids=""; trap 'kill $$pids 2>/dev/null; wait $$pids 2>/dev/null' EXIT INT TERM; \
	for port in $(WORKER_PORTS); do \
		$(BIN)/quaestor-worker --port $$port & pids="$$pids $$!"; \
	done; \
	$(BIN)/quaestor run -c $(CONFIG)

test:
	$(GO) test -race -count=1 -timeout 9m ./...

# The benchmark harness: direct vs quaestor vs grpc-proxy, in one run.
bench:
	$(GO) run ./bench -out bench/results/latest.md

proto:
	./proto/generate.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) build ./...
	GOOS=darwin $(GO) build ./...

clean:
	rm -rf $(BIN) bench/results
