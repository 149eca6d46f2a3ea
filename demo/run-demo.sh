#!/usr/bin/env bash
# A throw-away "node" in /tmp: snapshot -> external edit -> history -> diff -> restore -> history.
# Nothing outside $DEMO is touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cargo build --release --quiet --manifest-path "$here/../Cargo.toml"
kh="${CARGO_TARGET_DIR:-$here/../target}/release/kubeharden"

DEMO=${DEMO:-$(mktemp -d /tmp/kubeharden-demo.XXXXXX)}
export KUBEHARDEN_MANIFESTS_DIR="$DEMO/manifests" KUBEHARDEN_STATE_DIR="$DEMO/state"
mkdir -p "$KUBEHARDEN_MANIFESTS_DIR"
install -m 0600 "$here/kube-apiserver.yaml" "$KUBEHARDEN_MANIFESTS_DIR/kube-apiserver.yaml"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "demo node: $DEMO"
step "$kh" snapshot
echo; echo "# an operator hand-edits the manifest (what kubeharden protects against):"
sed -i 's/    - --secure-port=6443/    - --secure-port=6443\n    - --profiling=false   # hand edit/' \
  "$KUBEHARDEN_MANIFESTS_DIR/kube-apiserver.yaml"
step "$kh" history kube-apiserver.yaml
step "$kh" diff kube-apiserver.yaml 1
step "$kh" restore kube-apiserver.yaml --version 1 --no-health-gate --reason "undo hand edit"
step "$kh" history kube-apiserver.yaml
step "$kh" status
step "$kh" verify
cmp "$here/kube-apiserver.yaml" "$KUBEHARDEN_MANIFESTS_DIR/kube-apiserver.yaml" \
  && echo && echo "kube-apiserver.yaml is byte-identical to version 1 again. Clean up: rm -rf $DEMO"
