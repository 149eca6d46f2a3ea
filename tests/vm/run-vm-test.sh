#!/usr/bin/env bash
# The VM boot test (issue 8): a real Debian guest, systemd as init, kubeharden installed from
# its .deb, a stand-in kubelet.service running examples/kubelet_sim.rs.
#
#   tests/vm/run-vm-test.sh [PATH.deb]
#
# 1. The base image (debootstrap, kernel, initramfs) comes from build-image.sh, cached under
#    $KUBEHARDEN_VM_CACHE (default ~/.cache/kubeharden-vm) by the hash of that script.
# 2. A copy of it gets the .deb (dpkg -i in a chroot: the maintainer scripts enable the
#    units), the kubelet stand-in, and an interrupted transaction: in the chroot, a failpoints
#    build of kubeharden SIGKILLs itself at replace.dir_synced during a `set`, so the manifest
#    holds the unverified after content and the journal an open transaction.
# 3. qemu boots it (TCG: no KVM needed; kernel and initrd given directly; serial console to a
#    file; no_timer_check: under TCG on a busy host the kernel's IO-APIC timer check fails);
#    guest-test.sh checks the boot order, the reads, verify, the timer and the path
#    unit, prints "VMTEST: ..." lines and powers off. This script prints them and the metrics.
#
# Needs root, qemu-system-x86_64, debootstrap, mkfs.ext4 (e2fsprogs). Exit 0 = all passed.
# KUBEHARDEN_VM_TIMEOUT (default 1500 s) bounds the qemu run; KUBEHARDEN_VM_KEEP=1 keeps the
# work folder (disk image, serial log).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
started=$(date +%s)

for tool in qemu-system-x86_64 debootstrap mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "run-vm-test: $tool missing" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "run-vm-test: needs root (chroot, dpkg)" >&2; exit 2; }

base=$("$here/build-image.sh")
deb=${1:-}
if [ -z "$deb" ]; then
  deb=$(dist/build-packages.sh | head -n1)
fi
echo "run-vm-test: package $deb" >&2

# The failpoints build (seeding the crash, in the chroot on the host's CPU) and the kubelet
# stand-in; the debug profile that `cargo test --features failpoints` already built.
cargo build --features failpoints --bin kubeharden --example kubelet_sim --example fake_component >&2
dbg=${CARGO_TARGET_DIR:-target}/debug

work=$(mktemp -d /var/tmp/kubeharden-vm.XXXXXX)
cleanup() {
  if [ "${KUBEHARDEN_VM_KEEP:-0}" = 1 ]; then
    echo "run-vm-test: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
root=$work/root
mkdir "$root"
tar -C "$root" -xf "$base/rootfs.tar"

# --- the package, as a node gets it
cp "$deb" "$root/tmp/kubeharden.deb"
chroot "$root" dpkg -i /tmp/kubeharden.deb >&2
rm "$root/tmp/kubeharden.deb"

# --- the kubelet stand-in and the control-plane files its pods need
install -m 755 "$dbg/examples/kubelet_sim" "$dbg/examples/fake_component" "$root/usr/local/bin/"
install -m 755 "$dbg/kubeharden" "$root/usr/local/bin/kubeharden-failpoints"
install -m 755 "$here/guest-test.sh" "$root/usr/local/bin/vmtest-guest"
mkdir -p "$root/etc/kubernetes/manifests" "$root/var/log/kubelet-sim" "$root/var/lib/vmtest"
for m in kube-scheduler kube-controller-manager; do
  install -m 600 "tests/data/manifests/kubeadm-v1.30.14/$m.yaml" "$root/etc/kubernetes/manifests/"
done
# Every file a flag names must exist (fake_component checks, as the real binaries do).
grep -ho '/etc/kubernetes/[^ "]*\.\(conf\|crt\|key\|pem\)' "$root"/etc/kubernetes/manifests/*.yaml |
  sort -u | while read -r f; do
    mkdir -p "$root$(dirname "$f")"
    echo "placeholder for the VM test" >"$root$f"
  done
cat >"$root/etc/systemd/system/kubelet.service" <<'EOF'
[Unit]
Description=kubelet stand-in (kubeharden's kubelet_sim) for the VM boot test

[Service]
Environment=FAKE_COMPONENT_BEHAVIOR_DIR=/run/fake-behavior
ExecStart=/usr/local/bin/kubelet_sim --manifests-dir /etc/kubernetes/manifests --log /var/log/kubelet-sim/events.log --record-reads /var/log/kubelet-sim/reads --component-bin /usr/local/bin/fake_component --restart-delay-ms 500
Restart=always

[Install]
WantedBy=multi-user.target
EOF
cat >"$root/etc/systemd/system/vmtest.service" <<'EOF'
[Unit]
Description=kubeharden VM boot test
DefaultDependencies=no
After=basic.target kubelet.service kubeharden-recover.timer kubeharden-snapshot.path

[Service]
Type=oneshot
ExecStart=/usr/local/bin/vmtest-guest
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable kubelet.service vmtest.service >&2

# --- the interrupted transaction: a baseline, then a set killed after its durable rename
m=/etc/kubernetes/manifests/kube-scheduler.yaml
chroot "$root" kubeharden snapshot >&2
cp "$root$m" "$root/var/lib/vmtest/scheduler.before"
set +e
chroot "$root" env KUBEHARDEN_CRASH_AT=replace.dir_synced /usr/local/bin/kubeharden-failpoints \
  set kube-scheduler.yaml --flag profiling=false --no-health-gate --reason "vm test: power cut" >&2
rc=$?
set -e
[ "$rc" -eq 137 ] || { echo "run-vm-test: the seeded set was not killed at its crash point (exit $rc)" >&2; exit 1; }
if cmp -s "$root$m" "$root/var/lib/vmtest/scheduler.before"; then
  echo "run-vm-test: the seeded set left the before content; nothing to recover" >&2
  exit 1
fi
grep -q -- '--profiling=false' "$root$m"
echo "run-vm-test: seeded: $m holds the unverified after content, its transaction is open" >&2

# --- the disk, and the boot
disk=$work/disk.raw
truncate -s 3G "$disk"
mkfs.ext4 -q -F -L root -d "$root" "$disk"
rm -rf "$root"
serial=$work/serial.log
echo "run-vm-test: booting (qemu, TCG)" >&2
boot_start=$(date +%s)
set +e
timeout "${KUBEHARDEN_VM_TIMEOUT:-1500}" qemu-system-x86_64 -accel tcg -cpu max -m 1536 -smp 2 \
  -nodefaults -no-user-config -display none -no-reboot -monitor none \
  -kernel "$base/vmlinuz" -initrd "$base/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 loglevel=4 panic=-1 no_timer_check systemd.show_status=auto" \
  -drive "file=$disk,format=raw,if=virtio,cache=unsafe" \
  -device virtio-rng-pci -serial "file:$serial"
qrc=$?
set -e
boot_end=$(date +%s)
grep -a 'VMTEST: ' "$serial" | sed 's/\r$//' || true
if [ "$qrc" -ne 0 ]; then
  echo "run-vm-test: qemu exit $qrc (124 = timed out); last serial lines:" >&2
  tail -n 60 "$serial" >&2
  exit 1
fi
echo "run-vm-test: VM run $((boot_end - boot_start)) s, whole test $((boot_end - started)) s"
if grep -aq 'VMTEST: RESULT PASS' "$serial"; then
  echo "run-vm-test: PASS"
  exit 0
fi
echo "run-vm-test: FAIL; last serial lines:" >&2
tail -n 80 "$serial" >&2
exit 1
