# kubeharden: state dir 0700 (made here, as by the .deb: cargo-generate-rpm 0.21 cannot ship an
# empty directory); units enabled on first install ($1 = 1), an upgrade keeps the admin's choice.
install -d -m 0700 /var/lib/kubeharden
chmod 0700 /var/lib/kubeharden
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable kubeharden-recover.service kubeharden-recover.timer kubeharden-snapshot.path >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl start kubeharden-recover.timer kubeharden-snapshot.path >/dev/null 2>&1 || :
fi
