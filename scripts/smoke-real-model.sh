#!/usr/bin/env bash
# Runs the coding demo's agent (the built-in coding-agent image) against a real
# OpenAI-compatible endpoint, then checks that it ended with a report, that the audit
# chain is intact, and that the API key appears nowhere in what alos wrote.
#
#   OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
#   ALOS_SMOKE_MODEL=gpt-4o-mini scripts/smoke-real-model.sh
#
# ALOS (default: target/debug/alos, else alos on PATH) is the binary to run. Anything that
# would need a human is refused (--human deny), so the run never waits for one; the model
# budget is bounded (--model-calls 12). Exit 0 when every check passes.
set -euo pipefail

: "${OPENAI_API_KEY:?set OPENAI_API_KEY (and OPENAI_BASE_URL for an endpoint other than OpenAI)}"
: "${ALOS_SMOKE_MODEL:?set ALOS_SMOKE_MODEL, e.g. gpt-4o-mini}"
root="$(cd "$(dirname "$0")/.." && pwd)"
alos="${ALOS:-$root/target/debug/alos}"
[ -x "$alos" ] || alos="$(command -v alos)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$root/examples/coding-demo/." "$work/"
rm -rf "$work/.alos" "$work/script.json"
cd "$work"

set +e
"$alos" spawn coding-agent --json --progress never --human deny --model-calls 12 --timeout 5m \
  --model "openai:$ALOS_SMOKE_MODEL" \
  --goal "The tests in tests/test_parser.py fail (see logs/pytest.log). Find the cause in src/parser.py and write the fix as a unified diff to patches/parser.diff. You may not edit src/." \
  --allow 'fs.read:**' --allow 'fs.write:patches/**' >out.jsonl 2>err.txt
code=$?
set -e

fail() { echo "smoke: FAILED: $*" >&2; echo "--- stdout" >&2; cat out.jsonl >&2; echo "--- stderr" >&2; cat err.txt >&2; exit 1; }
[ "$code" -eq 0 ] || fail "alos exited $code"
end="$(grep -v '"event"' out.jsonl | tail -n 1)"
python3 - "$end" <<'PY' || fail "no agent report at the end"
import json, sys
end = json.loads(sys.argv[1])
report = end["result"]
for field in ("summary", "changedFiles", "evidence", "verification", "residualRisks", "steps", "toolCalls", "stoppedBecause"):
    assert field in report, field
assert report["steps"] >= 1
print(f"smoke: {report['stoppedBecause']} after {report['steps']} steps, {len(report['toolCalls'])} tool calls")
print(f"smoke: summary: {report['summary'][:300]}")
PY
grep -q '"event":"step"' out.jsonl || fail "no step events"
"$alos" audit verify >/dev/null || fail "the audit chain is broken"
if grep -rqF -- "$OPENAI_API_KEY" out.jsonl err.txt .alos; then fail "the API key appears in alos's output or state"; fi
echo "smoke: ok"
