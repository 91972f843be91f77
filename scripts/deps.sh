#!/usr/bin/env bash
# Installs, idempotently, the toolchains and clients the tests use beside Go:
# the WASM toolchains for the guest SDKs (clang + wasi-libc, Debian's rustc
# with the wasm32-wasi std, wabt, binaryen), headless Chromium for the browser
# test, and the npm packages of the JavaScript parts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKGS=(clang lld wasi-libc libclang-rt-14-dev-wasm32 rustc libstd-rust-dev-wasm32 wabt binaryen chromium curl)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "[deps] apt-get install ${missing[*]}"
	SUDO=(); [[ $EUID -ne 0 ]] && SUDO=(sudo)
	"${SUDO[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for dir in clients/js e2e/browser plugins/sdk/assemblyscript; do
	if [[ -f "$ROOT/$dir/package-lock.json" && ! -d "$ROOT/$dir/node_modules" ]]; then
		echo "[deps] npm ci in $dir"
		(cd "$ROOT/$dir" && npm ci --no-audit --no-fund --silent)
	fi
done
