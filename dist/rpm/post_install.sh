# kubeharden: units enabled on first install ($1 = 1), an upgrade keeps the admin's choice;
# the state dir itself is owned by the package (0700).
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable kubeharden-recover.service kubeharden-recover.timer kubeharden-snapshot.path >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl start kubeharden-recover.timer kubeharden-snapshot.path >/dev/null 2>&1 || :
fi
