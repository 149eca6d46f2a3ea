# kubeharden: on erase ($1 = 0) stop and disable the units; an upgrade leaves them.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop kubeharden-recover.timer kubeharden-snapshot.path >/dev/null 2>&1 || :
    fi
    systemctl --no-reload disable kubeharden-recover.service kubeharden-recover.timer kubeharden-snapshot.path >/dev/null 2>&1 || :
fi
