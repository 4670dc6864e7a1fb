#!/usr/bin/env bash
# Print the Debian mirror of this machine's own apt sources (deb822 .sources first, then
# one-line .list files), e.g. http://deb.debian.org/debian; exit 1 when there is none.
# Used by scripts/fetch-restic.sh and scripts/image-test.sh, so no mirror is hard-coded.
set -euo pipefail

debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822: stanzas separated by blank lines; pick one with Types: deb whose
    # Suites has a plain codename (no "-security" etc.) and is not disabled.
    uri=$(awk '
      function flush() {
        if (uris != "" && types ~ /(^| )deb( |$)/ && plain && enabled) { print uris; found = 1; exit }
        uris = ""; types = ""; plain = 0; enabled = 1
      }
      BEGIN { enabled = 1 }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]*#/ { next }
      tolower($1) == "uris:"    { uris = $2 }
      tolower($1) == "types:"   { types = " " substr($0, index($0, ":") + 1) " " }
      tolower($1) == "suites:"  { for (i = 2; i <= NF; i++) if ($i !~ /[-\/]/) plain = 1 }
      tolower($1) == "enabled:" { if (tolower($2) == "no") enabled = 0 }
      END { if (!found) flush() }
    ' "$f")
    case "$uri" in http://* | https://*) echo "${uri%/}"; return 0 ;; esac
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # one-line format: deb [options] URI SUITE COMPONENTS...
    uri=$(sed -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && $3 !~ /[-\/]/ { print $2; exit }')
    case "$uri" in http://* | https://*) echo "${uri%/}"; return 0 ;; esac
  done
  return 1
}

debian_mirror
