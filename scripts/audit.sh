#!/usr/bin/env bash
# Audit the installed environment (.venv) for dependencies with known vulnerabilities (pip-audit).
#
# Fails on any known vulnerability that audit-exceptions.txt does not name, one id a line, each with a
# `#` comment saying why it is accepted. When the vulnerability service cannot be reached, or answers
# for no package at all (a PyPI mirror without the JSON API answers "Dependency not found on PyPI" for
# every one), nothing was audited: that is a loud WARNING, not a pass and not a failure, so builds on
# machines without the service stay possible while nobody mistakes them for audited.
#
#   AUDIT_SERVICE=pypi|osv|esms   where pip-audit asks (default pypi: the PyPI JSON API)
#   AUDIT_REQUIRED=1              make "could not audit" a failure too (CI with network access)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
SERVICE="${AUDIT_SERVICE:-pypi}"
EXCEPTIONS="audit-exceptions.txt"

report="$(mktemp)"; log="$(mktemp)"
trap 'rm -f "$report" "$log"' EXIT

ignores=()
if [ -f "$EXCEPTIONS" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    id="$(printf '%s' "${line%%#*}" | tr -d '[:space:]')"
    [ -z "$id" ] && continue
    reason="$(printf '%s' "$line" | sed -n 's/^[^#]*#[[:space:]]*//p')"
    if [ -z "$reason" ]; then
      echo "audit: $EXCEPTIONS: '$id' has no '# reason'; every accepted vulnerability needs one" >&2
      exit 1
    fi
    ignores+=(--ignore-vuln "$id")
  done < "$EXCEPTIONS"
fi

# The editable project itself is not on PyPI; everything else installed in the environment is audited.
timeout 600 "$BIN/pip-audit" --local --skip-editable --vulnerability-service "$SERVICE" --timeout 10 \
  --progress-spinner off --format json --output "$report" "${ignores[@]}" >"$log" 2>&1
status=$?

"$BIN/python" - "$report" "$status" "${#ignores[@]}" "$log" "${AUDIT_REQUIRED:-0}" <<'PY'
import json
import sys
from pathlib import Path

report_path, status, ignored, log_path, required = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) // 2, sys.argv[4], sys.argv[5] == "1"
text = Path(report_path).read_text() if Path(report_path).exists() else ""
try:
    dependencies = json.loads(text)["dependencies"] if text.strip() else None
except (ValueError, KeyError):
    dependencies = None


def cannot_audit(why: str) -> None:
    banner = "!" * 78
    print(f"{banner}\nWARNING: the dependency audit could not run: {why}\n"
          "WARNING: NO dependency was checked for known vulnerabilities. Run scripts/audit.sh where the\n"
          "WARNING: vulnerability service answers (PyPI's JSON API, or AUDIT_SERVICE=osv) before a release.\n"
          f"{banner}", file=sys.stderr)
    sys.exit(1 if required else 0)


if dependencies is None:
    tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    cannot_audit(f"pip-audit exited with {status} without a report ({tail[0][:300]})")

audited = [d for d in dependencies if "skip_reason" not in d]
skipped = [d for d in dependencies if "skip_reason" in d]
if dependencies and not audited:
    cannot_audit(f"the vulnerability service answered for none of the {len(dependencies)} installed packages "
                 f"(e.g. \"{skipped[0]['skip_reason']}\")")

found = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]
for name, version, vuln in found:
    fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
    aliases = ", ".join(vuln.get("aliases") or [])
    print(f"VULNERABLE: {name} {version}: {vuln['id']}{f' ({aliases})' if aliases else ''}; fixed in: {fixes}",
          file=sys.stderr)
if skipped:
    print(f"audit: {len(skipped)} package(s) could not be audited: {', '.join(d['name'] for d in skipped)}",
          file=sys.stderr)
if found:
    print(f"audit: {len(found)} known vulnerabilit{'y' if len(found) == 1 else 'ies'} in {len(audited)} audited "
          "packages. Upgrade, or accept one in audit-exceptions.txt with a '# reason'.", file=sys.stderr)
    sys.exit(1)
print(f"audit: no known vulnerabilities in {len(audited)} audited packages ({ignored} accepted in audit-exceptions.txt)")
PY
