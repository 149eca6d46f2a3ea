#!/usr/bin/env bash
# Check what the packages hold against what docs/install.md promises:
#
#   dist/check-packages.sh [PATH.deb PATH.rpm]      (default: build them with build-packages.sh)
#
# Both: the stripped binary in /usr/bin whose --version names a git commit, the four units
# (which pass systemd-analyze verify as packaged), /etc/default/kubeharden as a conffile, a man
# page for kubeharden and for every visible subcommand, bash/zsh/fish completions, the license
# and README; the three units enabled on install; /var/lib/kubeharden 0700. Needs dpkg-deb,
# rpm (rpm -qp, rpm2cpio), cpio, file, systemd-analyze. Exit 0 = all checks passed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 2 ]; then
  deb=$1 rpm=$2
else
  pkgs=$(dist/build-packages.sh)
  deb=$(echo "$pkgs" | sed -n 1p) rpm=$(echo "$pkgs" | sed -n 2p)
fi
deb=$(realpath "$deb") rpm=$(realpath "$rpm")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failed=1; }
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}

units="kubeharden-recover.service kubeharden-recover.timer kubeharden-snapshot.path kubeharden-snapshot.service"
enabled="kubeharden-recover.service kubeharden-recover.timer kubeharden-snapshot.path"

# check_tree KIND ROOT LISTING: the files every package must hold, under ROOT (extracted).
check_tree() {
  local kind=$1 root=$2 listing=$3
  local bin=$root/usr/bin/kubeharden
  check "$kind: /usr/bin/kubeharden executable" test -x "$bin"
  check "$kind: /usr/bin/kubeharden mode 755" grep -qE '^-rwxr-xr-x \.?/usr/bin/kubeharden$' "$listing"
  if file "$bin" | grep -q 'not stripped'; then fail "$kind: binary stripped"; else pass "$kind: binary stripped"; fi
  check "$kind: --version names the git commit" sh -c "'$bin' --version | grep -qE '\\(git [0-9a-f]{7,}'"
  for u in $units; do
    check "$kind: unit $u" test -f "$root/usr/lib/systemd/system/$u"
  done
  # systemd-analyze verify on the units as packaged, /usr/bin/kubeharden = the packaged binary.
  mkdir -p "$work/$kind-units"
  for u in $units; do
    sed "s|/usr/bin/kubeharden|$bin|g" "$root/usr/lib/systemd/system/$u" >"$work/$kind-units/$u"
  done
  if out=$(cd "$work/$kind-units" && systemd-analyze verify --man=no $units 2>&1) && [ -z "$out" ]; then
    pass "$kind: systemd-analyze verify of the packaged units"
  else
    fail "$kind: systemd-analyze verify: $out"
  fi
  check "$kind: /etc/default/kubeharden" grep -q KUBEHARDEN_STATE_DIR "$root/etc/default/kubeharden"
  # One man page per visible subcommand: the packaged binary says which pages there should be.
  mkdir -p "$work/$kind-man"
  "$bin" man "$work/$kind-man" >/dev/null
  local want got
  want=$(ls "$work/$kind-man" | sort | tr '\n' ' ')
  got=$(ls "$root/usr/share/man/man1" | sed 's/\.gz$//' | sort | tr '\n' ' ')
  if [ "$want" = "$got" ] && echo "$got" | grep -q 'kubeharden.1 ' && echo "$got" | grep -q 'kubeharden-recover.1'; then
    pass "$kind: man pages ($(echo "$got" | wc -w)): kubeharden(1) and one per subcommand"
  else
    fail "$kind: man pages: want [$want] got [$got]"
  fi
  check "$kind: bash completion" grep -q '_kubeharden' "$root/usr/share/bash-completion/completions/kubeharden"
  check "$kind: fish completion" grep -q 'complete -c kubeharden' "$root/usr/share/fish/vendor_completions.d/kubeharden.fish"
  check "$kind: README" test -s "$root/usr/share/doc/kubeharden/README.md"
}

echo "== $deb"
dpkg-deb -c "$deb" | awk '{print $1, $NF}' >"$work/deb.list"
dpkg-deb -x "$deb" "$work/deb"
dpkg-deb -e "$deb" "$work/deb-control"
check_tree deb "$work/deb" "$work/deb.list"
check "deb: zsh completion" test -s "$work/deb/usr/share/zsh/vendor-completions/_kubeharden"
check "deb: license (copyright)" grep -q 'Apache License' "$work/deb/usr/share/doc/kubeharden/copyright"
check "deb: /etc/default/kubeharden is a conffile" grep -qx /etc/default/kubeharden "$work/deb-control/conffiles"
for u in $enabled; do
  check "deb: postinst enables $u" grep -q "UNITS=.*$u" "$work/deb-control/postinst"
done
check "deb: postinst enables them" grep -q 'systemctl --no-reload enable $UNITS' "$work/deb-control/postinst"
check "deb: postinst creates /var/lib/kubeharden 0700" grep -q 'install -d -m 0700 /var/lib/kubeharden' "$work/deb-control/postinst"

echo "== $rpm"
rpm -qlvp "$rpm" 2>/dev/null | awk '{print $1, $NF}' >"$work/rpm.list"
mkdir -p "$work/rpm"
# Debian's rpm2cpio exits 1 on this payload although it writes it in full; the checks below
# find out whether the extraction is complete.
(cd "$work/rpm" && { rpm2cpio "$rpm" || true; } | cpio -idm --quiet)
check_tree rpm "$work/rpm" "$work/rpm.list"
check "rpm: zsh completion" test -s "$work/rpm/usr/share/zsh/site-functions/_kubeharden"
check "rpm: license" grep -q 'Apache License' "$work/rpm/usr/share/licenses/kubeharden/LICENSE"
check "rpm: /etc/default/kubeharden is a config file" sh -c "rpm -qcp '$rpm' 2>/dev/null | grep -qx /etc/default/kubeharden"
check "rpm: %post creates /var/lib/kubeharden 0700" sh -c "rpm -qp --scripts '$rpm' 2>/dev/null | grep -q 'install -d -m 0700 /var/lib/kubeharden'"
scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
for u in $enabled; do
  check "rpm: %post enables $u" sh -c "echo \"\$0\" | grep -q 'enable .*$u'" "$scripts"
done

if [ "$failed" -ne 0 ]; then
  echo "check-packages: FAILED"
  exit 1
fi
echo "check-packages: all checks passed"
