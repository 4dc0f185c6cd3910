#!/usr/bin/env bash
# Install what phee needs on a fresh machine: uv (pinned), the locked Python environment, and a
# check that the registry clients the component manager drives are present. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.8"

missing=()
for tool in python3 mvn npm node go apt-get dpkg-deb unshare ldd; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: missing tools: ${missing[*]} (see docs/architecture.md, 'What the machine needs')" >&2
  exit 1
fi

if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "bootstrap: installing uv $UV_VERSION from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "uv==$UV_VERSION"
fi

uv sync --frozen --quiet
