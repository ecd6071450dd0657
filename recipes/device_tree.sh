#!/usr/bin/env bash
# The device tool sends the working tree with every call, 64 MiB at most together with what `carry`
# names. The bundled weights (model 28 MB + codecs 24 MB) leave too little room for packed training
# data, and training from packed tokens needs neither. So, around a slot's device calls:
#   recipes/device_tree.sh away    # moves src/valle2/assets/{models,codec} into .assets_away/ (git-ignored)
#   ... device calls (carry .sprint etc.) ...
#   recipes/device_tree.sh back    # puts them back; `git status` is clean again
# If a session ends in between: `recipes/device_tree.sh back`, or `git checkout -- src/valle2/assets`.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '.assets_away/' .git/info/exclude 2>/dev/null || echo '.assets_away/' >> .git/info/exclude
case "${1:-}" in
    away)
        mkdir -p .assets_away
        for d in models codec; do
            if [ -d "src/valle2/assets/$d" ]; then mv "src/valle2/assets/$d" ".assets_away/$d"; fi
        done
        echo "assets moved to .assets_away/; tracked files left: $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes" ;;
    back)
        for d in models codec; do
            if [ -d ".assets_away/$d" ]; then rm -rf "src/valle2/assets/$d"; mv ".assets_away/$d" "src/valle2/assets/$d"; fi
        done
        git status --short -- src/valle2/assets ;;
    *) echo "usage: $0 away|back" >&2; exit 2 ;;
esac
