#!/bin/sh
# Install the nodelogs agent on an image being baked (run as root by packer/nodelogs-agent.pkr.hcl).
#
#   NODELOGS_WHEEL  the nodelogs wheel uploaded by the file provisioner
#   NODELOGS_UNIT   systemd/nodelogs-agent.service, uploaded likewise
#   NODELOGS_VENV   where the agent's virtualenv goes (default /opt/nodelogs/venv)
#
# It installs the agent only (no extras), installs the unit WITHOUT enabling it, and creates
# /etc/nodelogs as a 0700 root directory: cloud-init's write_files writes a file and chmods it only
# afterwards, so the key's directory must already keep everyone else out (README, "Deploying").
set -eu

wheel=${NODELOGS_WHEEL:?NODELOGS_WHEEL must name the nodelogs wheel}
unit=${NODELOGS_UNIT:?NODELOGS_UNIT must name nodelogs-agent.service}
venv=${NODELOGS_VENV:-/opt/nodelogs/venv}

if [ "$(id -u)" != 0 ]; then
  echo "install-agent.sh: must run as root" >&2
  exit 1
fi

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q python3
  else
    echo "install-agent.sh: python3 with the venv module is required" >&2
    exit 1
  fi
fi

# The agent in its own virtualenv: the base distribution only, which pulls tenacity and structlog.
install -d -m 0755 -o root -g root "$(dirname "$venv")"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check "$wheel"
if "$venv/bin/python" -c 'import boto3' >/dev/null 2>&1 \
  || "$venv/bin/python" -c 'import google.cloud.storage' >/dev/null 2>&1; then
  echo "install-agent.sh: the agent venv must not contain boto3 or google-cloud-storage" >&2
  exit 1
fi
"$venv/bin/nodelogs-agent" --help >/dev/null

# The unit: installed, not enabled. User data starts it once the key is on disk.
install -m 0644 -o root -g root "$unit" /etc/systemd/system/nodelogs-agent.service
install -d -m 0700 -o root -g root /etc/nodelogs
chmod 0700 /etc/nodelogs
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi

rm -f "$wheel" "$unit"
echo "install-agent.sh: nodelogs agent installed in $venv; nodelogs-agent.service installed, not enabled"
