#!/usr/bin/env bash
# The IOC wall's screenshot tests drive Debian's chromium (tests/test_ioc_wall.py): install it when
# missing and we are root, with a font that has every Vietnamese letter. Without it those tests skip.
set -uo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "warning: $CHROMIUM is missing and we are not root: the IOC wall screenshots are skipped (apt-get install chromium)" >&2
  exit 0
fi
echo "installing chromium (Debian's package) for the IOC wall screenshots"
packages=(chromium fonts-dejavu-core)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${packages[@]}" >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${packages[@]}" >/dev/null; } \
  || echo "warning: could not install chromium: the IOC wall screenshots are skipped" >&2
exit 0
