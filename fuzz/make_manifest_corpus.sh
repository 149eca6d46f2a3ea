#!/bin/sh
# Rebuilds the seed corpus of the manifest_edit fuzz target: every reference manifest
# (tests/data/manifests) behind a few edit headers (see fuzz_targets/manifest_edit.rs for the
# layout), plus a flow-list and a JSON manifest. Run from the repository root.
set -eu
out=fuzz/corpus/manifest_edit
rm -rf "$out"
mkdir -p "$out"
# name idx: 0 profiling, 1 a, 2 b, 3 anonymous-auth, 4 etcd-servers; kind = idx*2 (+1 = unset)
headers='set-profiling \001\000\005false
unset-profiling \001\001\000
set-a-x-unset-a \002\002\001x\003
named-set-a-qmark \005\002\003x?y
set-b-flow-chars \001\004\005b,c]d
set-anon-unset-b \002\006\004true\005
set-etcd-hash \001\010\007h#t:1 {'
for m in tests/data/manifests/*/*.yaml; do
    base=$(basename "$(dirname "$m")")-$(basename "$m" .yaml)
    printf '%s\n' "$headers" | while read -r name header; do
        { printf "$header"; cat "$m"; } > "$out/$base-$name"
    done
done
flow='apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.33.0
    command: [kube-apiserver, --a=1, "--b=2", '"'"'--profiling=true'"'"']  # flow
    args: [
      --x=1,  # first
      --y=2
    ]
'
json='{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kube-apiserver",
 "annotations": {"note": "smile \ud83d\ude00"}},
 "spec": {"containers": [{"name": "kube-apiserver", "image": "k8s/x",
  "command": ["kube-apiserver", "--a=1", "--motd=\ud83d\ude00"]}]}}'
printf '%s\n' "$headers" | while read -r name header; do
    { printf "$header"; printf '%s' "$flow"; } > "$out/flow-$name"
    { printf "$header"; printf '%s\n' "$json"; } > "$out/json-$name"
    # The flow manifest without its final line break.
    { printf "$header"; printf '%s' "$flow" | head -c -1; } > "$out/flow-no-eol-$name"
done
ls "$out" | wc -l
