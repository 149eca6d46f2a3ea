#!/usr/bin/env bash
# Build the .deb and the .rpm of kubeharden: one command, from the repository root or anywhere.
#
#   dist/build-packages.sh            # -> target/debian/kubeharden_*.deb, target/generate-rpm/kubeharden-*.rpm
#
# Installs the two packaging tools if they are missing (cargo install --locked cargo-deb
# cargo-generate-rpm, from crates.io). Steps: the release binary, stripped, into target/dist/;
# the man pages (hidden `kubeharden man DIR`) and bash/zsh/fish completions (`kubeharden
# completion SHELL`) generated from the clap definitions into target/dist/; then cargo-deb and
# cargo-generate-rpm package them with the units and the environment file (Cargo.toml's
# [package.metadata.deb] and [package.metadata.generate-rpm]). Prints the two package paths.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo-deb cargo-generate-rpm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-packages: $tool missing; installing it: cargo install --locked $tool" >&2
    cargo install --locked "$tool" >&2
  fi
done

target=${CARGO_TARGET_DIR:-target}
echo "build-packages: release build" >&2
cargo build --release --locked --bin kubeharden >&2

out=target/dist
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
# One stripped binary for both packages (the release profile keeps line tables for
# backtraces; the packages do not need them).
strip -o "$out/kubeharden" "$target/release/kubeharden"
bin="$out/kubeharden"
"$bin" man "$out/man" >/dev/null
"$bin" completion bash >"$out/completions/kubeharden.bash"
"$bin" completion zsh >"$out/completions/_kubeharden"
"$bin" completion fish >"$out/completions/kubeharden.fish"

echo "build-packages: cargo deb" >&2
rm -f target/debian/kubeharden_*.deb
deb=$(cargo deb --no-build --no-strip --output target/debian/ 2>/dev/null | tail -1)
# cargo-deb prints the package path last; fall back to looking for it.
[ -f "$deb" ] || deb=$(ls target/debian/kubeharden_*.deb)
echo "build-packages: cargo generate-rpm" >&2
rm -f target/generate-rpm/kubeharden-*.rpm
cargo generate-rpm --target-dir "$target" >&2
rpm=$(ls "$target"/generate-rpm/kubeharden-*.rpm)
echo "$deb"
echo "$rpm"
