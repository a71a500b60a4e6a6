#!/usr/bin/env bash
# The web page's test tools (tests/test_web.py): node + npm, web/'s npm packages (exactly package-lock.json)
# and Debian's chromium. Installs what is missing and can be installed here; otherwise says why the
# browser tests will skip. Idempotent and cached: npm ci runs only when package-lock.json changed,
# apt-get only when a tool is absent. With STYLECLIP_WEB_TESTS=require (.ci/run) a failure is an error.
set -uo pipefail
cd "$(dirname "$0")/.."
require=${STYLECLIP_WEB_TESTS:-}
problem() {
  echo "web tests: $1" >&2
  if [ "$require" = require ]; then exit 1; fi
}
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null && apt_updated=1 || return 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if can_apt; then
    echo "web tests: installing node and npm (apt-get)"
    apt_install nodejs npm || problem "apt-get could not install nodejs/npm; the browser tests will skip"
  else
    problem "node/npm missing and not installable here (no root or no apt-get); the web tests will skip"
  fi
fi

stamp=web/node_modules/.package-lock.sha256
if command -v npm >/dev/null; then
  want=$(sha256sum web/package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "web tests: npm ci --prefix web (onnxruntime-web, playwright-core)"
    if npm ci --prefix web --no-audit --no-fund --loglevel=error >/dev/null; then
      echo "$want" > "$stamp"
    else
      problem "npm ci --prefix web failed; the web tests will skip"
    fi
  fi
fi

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if can_apt; then
    echo "web tests: installing Debian's chromium (apt-get)"
    apt_install chromium || problem "apt-get could not install chromium; the browser tests will skip"
  else
    problem "chromium missing and not installable here (no root or no apt-get); the browser tests will skip"
  fi
fi
exit 0
