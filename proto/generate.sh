#!/usr/bin/env bash
# Regenerates the Go code of every .proto under proto/ (make proto).
# Installs what it needs: protoc from Debian's protobuf-compiler (with the
# well-known types from libprotobuf-dev), and the Go plugins at the versions
# pinned below into bin/tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

if ! command -v protoc >/dev/null || [ ! -f /usr/include/google/protobuf/duration.proto ]; then
  echo "installing protoc (Debian protobuf-compiler, libprotobuf-dev)" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null
fi

tools="$PWD/bin/tools"
mkdir -p "$tools"
GOBIN="$tools" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$tools" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

find proto -name '*.proto' -print0 | sort -z | while IFS= read -r -d '' f; do
  PATH="$tools:$PATH" protoc -I proto -I /usr/include \
    --go_out=. --go_opt=module=github.com/quaestor-go/quaestor \
    --go-grpc_out=. --go-grpc_opt=module=github.com/quaestor-go/quaestor \
    "$f"
done
echo "generated: $(find proto -name '*.pb.go' | wc -l) files" >&2
