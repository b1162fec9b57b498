#!/usr/bin/env bash
# install-service.sh: install diagd as a systemd service. Idempotent: run it again
# after a new build to update the binary and the unit; your /etc/diagd/diagd.env is
# never overwritten.
#
#   sudo scripts/install-service.sh          # from the module root, after scripts/setup.sh
#   sudo systemctl enable --now diagd
#
# What it does:
#   - creates the system user and group "diagd" (no login, home /var/lib/diagd) and
#     adds it to the "video" (cameras) and "render" (GPUs) groups;
#   - copies bin/diagd and bin/libonnxruntime.so to /opt/diagd/bin (diagd looks for
#     the ONNX Runtime library next to its binary);
#   - installs systemd/diagd.service to /etc/systemd/system, and
#     systemd/diagd.env.example to /etc/diagd/diagd.env if that file does not exist;
#   - reloads systemd. It does not start or restart the service.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${DIAGD_PREFIX:-/opt/diagd}"
unit_dir="${DIAGD_UNIT_DIR:-/etc/systemd/system}"
etc_dir="${DIAGD_ETC_DIR:-/etc/diagd}"

die() { echo "install-service: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (sudo $0)"
for f in bin/diagd bin/libonnxruntime.so systemd/diagd.service systemd/diagd.env.example; do
	[[ -f "$root/$f" ]] || die "$root/$f is missing (run scripts/setup.sh first to build bin/)"
done
command -v systemctl >/dev/null || die "systemctl not found: this script installs a systemd service"

# User and groups. video/render exist on Debian/Ubuntu; create them if a minimal
# system lacks them so the unit's SupplementaryGroups= resolves.
for g in video render; do
	getent group "$g" >/dev/null || groupadd --system "$g"
done
if ! getent group diagd >/dev/null; then
	groupadd --system diagd
fi
if ! id -u diagd >/dev/null 2>&1; then
	useradd --system --gid diagd --groups video,render --home-dir /var/lib/diagd \
		--no-create-home --shell /usr/sbin/nologin --comment "diagd inspection daemon" diagd
	echo "install-service: created user diagd"
else
	usermod --append --groups video,render diagd
fi

# Binary and ONNX Runtime, side by side. install(1) writes a new file and renames it,
# so a running daemon keeps its old binary until it is restarted.
install -d -m 0755 "$prefix/bin"
install -m 0755 "$root/bin/diagd" "$prefix/bin/diagd"
install -m 0644 "$root/bin/libonnxruntime.so" "$prefix/bin/libonnxruntime.so"
[[ -f "$root/README.md" ]] && install -m 0644 "$root/README.md" "$prefix/README.md"

# Unit (always updated) and configuration (only when absent: it is the site's).
install -m 0644 "$root/systemd/diagd.service" "$unit_dir/diagd.service"
install -d -m 0750 -o root -g diagd "$etc_dir"
if [[ ! -e "$etc_dir/diagd.env" ]]; then
	# It may hold the MQTT password: readable by root and the diagd group only.
	install -m 0640 -o root -g diagd "$root/systemd/diagd.env.example" "$etc_dir/diagd.env"
	echo "install-service: wrote $etc_dir/diagd.env: set DIAGD_SOURCES (and the broker) there"
else
	echo "install-service: kept the existing $etc_dir/diagd.env (the example is in $root/systemd/)"
fi

systemctl daemon-reload
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify "$unit_dir/diagd.service" || echo "install-service: systemd-analyze reported the problems above" >&2
fi
echo "install-service: done. Next: edit $etc_dir/diagd.env, check it with"
echo "  sudo -u diagd sh -c 'set -a; . $etc_dir/diagd.env; exec $prefix/bin/diagd validate'"
echo "then: systemctl enable --now diagd; journalctl -u diagd -f"
