#!/usr/bin/env bash
# Installs the Debian packages that end-to-end tests drive, only when they are missing.
# Runs as root here (CI and developer machines); elsewhere it tells what to install and goes on.
set -u
want=()
command -v mbsync >/dev/null 2>&1 || want+=(isync)
# A private Postfix instance relays to our LMTP listener (tests/e2e/test_postfix.py); the package's own
# system instance is not used (and not started where policy-rc.d forbids it).
[ -x /usr/sbin/postfix ] || want+=(postfix)
[ -x /usr/bin/chromium ] || want+=(chromium)  # the webmail's browser tests (Playwright drives Debian's build)
# The cluster (tests/cluster, tests/deploy, make cluster-demo): HAProxy in TCP mode in front, Redis behind.
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || want+=(haproxy)
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
# A font with CJK glyphs, so the demo mail's Japanese subject renders in the browser screenshots, not as boxes.
has_cjk_font() {
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q "ok installed"
    else
        command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=ja 2>/dev/null)" ]
    fi
}
has_cjk_font || want+=(fonts-noto-cjk)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${want[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}") >/dev/null 2>&1 \
        || echo "warning: could not install ${want[*]}; tests that need them will skip" >&2
else
    echo "note: install ${want[*]} for the full end-to-end suite" >&2
fi
exit 0
