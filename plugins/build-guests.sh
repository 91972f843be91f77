#!/usr/bin/env bash
# Builds every non-Go example transform from source:
#   C (plugins/examples/c), Rust (plugins/examples/rust),
#   AssemblyScript (plugins/examples/assemblyscript), WAT (plugins/examples/wat).
# The Go examples are built with `go build` (see plugins/examples/go).
#
# usage: plugins/build-guests.sh [--install] [--out DIR] [LANG...]
#   LANG     c, rust, assemblyscript, wat (default: all of them)
#   --out    where the modules go, as DIR/LANG/NAME.wasm (default plugins/out)
#   --install
#            install what is missing first, idempotently: Debian's clang, lld,
#            wasi-libc, libclang-rt-14-dev-wasm32, rustc,
#            libstd-rust-dev-wasm32 and wabt (apt-get), and the pinned
#            AssemblyScript compiler (npm ci in plugins/sdk/assemblyscript).
#            Node.js >= 20 must already be there.
# Without --install a missing toolchain is an error that names the command
# installing it. Exits non-zero when any module fails to build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/out"
install=0
langs=()
while [ $# -gt 0 ]; do
	case "$1" in
	--install) install=1 ;;
	--out) out="$2"; shift ;;
	--out=*) out="${1#--out=}" ;;
	-h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	c|rust|assemblyscript|wat) langs+=("$1") ;;
	*) echo "build-guests: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ ${#langs[@]} -gt 0 ] || langs=(c rust assemblyscript wat)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The one rustc with a wasm32-wasi standard library: Debian's. A rustup
# rustc earlier on PATH has no wasm target, so it is never used.
RUSTC=/usr/bin/rustc
APT_PACKAGES="clang lld wasi-libc libclang-rt-14-dev-wasm32 rustc libstd-rust-dev-wasm32 wabt"

missing=()
need() { missing+=("$1"); }

check_c() {
	command -v clang >/dev/null || { need "C: clang (apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32)"; return; }
	command -v wasm-ld >/dev/null || { need "C: wasm-ld (apt-get install -y lld)"; return; }
	[ -f /usr/lib/wasm32-wasi/libc.a ] || { need "C: the wasi-libc sysroot (apt-get install -y wasi-libc)"; return; }
	ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 ||
		need "C: clang's wasm32 builtins (apt-get install -y libclang-rt-14-dev-wasm32)"
}

check_rust() {
	[ -x "$RUSTC" ] || { need "Rust: /usr/bin/rustc (apt-get install -y rustc libstd-rust-dev-wasm32)"; return; }
	[ -d "$("$RUSTC" --print sysroot)/lib/rustlib/wasm32-wasi" ] ||
		need "Rust: the wasm32-wasi standard library (apt-get install -y libstd-rust-dev-wasm32)"
}

check_assemblyscript() {
	if ! command -v node >/dev/null; then
		need "AssemblyScript: Node.js >= 20 and npm (not from Debian 12, whose nodejs is 18)"
		return
	fi
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	[ "$major" -ge 20 ] || { need "AssemblyScript: Node.js >= 20 (found $(node --version))"; return; }
	[ -x "$here/sdk/assemblyscript/node_modules/.bin/asc" ] ||
		need "AssemblyScript: the asc compiler (cd plugins/sdk/assemblyscript && npm ci)"
}

check_wat() {
	command -v wat2wasm >/dev/null || need "WAT: wat2wasm (apt-get install -y wabt)"
}

do_install() {
	local pkgs=() p
	for p in $APT_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
	done
	if [ ${#pkgs[@]} -gt 0 ]; then
		echo "build-guests: apt-get install ${pkgs[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -o DPkg::Lock::Timeout=300 "${pkgs[@]}" >/dev/null 2>&1 || {
			apt-get update -o DPkg::Lock::Timeout=300 >/dev/null
			apt-get install -y -o DPkg::Lock::Timeout=300 "${pkgs[@]}" >/dev/null
		}
	fi
	if [ ! -x "$here/sdk/assemblyscript/node_modules/.bin/asc" ] && command -v npm >/dev/null; then
		echo "build-guests: npm ci in plugins/sdk/assemblyscript" >&2
		(cd "$here/sdk/assemblyscript" && npm ci --no-audit --no-fund >/dev/null)
	fi
}

[ "$install" = 1 ] && do_install
for l in "${langs[@]}"; do "check_$l"; done
if [ ${#missing[@]} -gt 0 ]; then
	echo "build-guests: missing toolchain(s); install with: plugins/build-guests.sh --install, or:" >&2
	printf '  - %s\n' "${missing[@]}" >&2
	exit 1
fi

# Each build prints its own failure; the script fails if any did.
failed=0
run() {
	local what="$1"; shift
	local log
	if ! log=$("$@" 2>&1); then
		echo "build-guests: $what failed:" >&2
		echo "$log" >&2
		failed=1
		return 1
	fi
}

build_c() {
	mkdir -p "$out/c"
	# Compile, then link without -O: an optimizing link makes clang run
	# binaryen's wasm-opt when it is installed, which rejects memory.copy
	# (-mbulk-memory) because clang does not pass it the feature.
	local obj f n
	obj=$(mktemp -d)
	run "C SDK" clang --target=wasm32-wasi -O2 -mbulk-memory -Wall -Wextra -Werror \
		-c -o "$obj/sluice.o" "$here/sdk/c/sluice.c" || true
	for f in "$here"/examples/c/*.c; do
		n=$(basename "$f" .c)
		rm -f "$out/c/$n.wasm"
		{
			run "C $n" clang --target=wasm32-wasi -O2 -mbulk-memory -Wall -Wextra -Werror \
				-I "$here/sdk/c" -c -o "$obj/$n.o" "$f" &&
				run "C $n (link)" clang --target=wasm32-wasi -mexec-model=reactor -Wl,--strip-all \
					-o "$out/c/$n.wasm" "$obj/$n.o" "$obj/sluice.o"
		} &
	done
	wait
	rm -rf "$obj"
}

build_rust() {
	mkdir -p "$out/rust"
	local f n
	for f in "$here"/examples/rust/*.rs; do
		n=$(basename "$f" .rs)
		rm -f "$out/rust/$n.wasm"
		run "Rust $n" "$RUSTC" --edition 2021 --target wasm32-wasi --crate-type cdylib -O -C strip=symbols \
			-C target-feature=+bulk-memory \
			-D warnings -o "$out/rust/$n.wasm" "$f" &
	done
	wait
}

build_assemblyscript() {
	mkdir -p "$out/assemblyscript"
	local f n
	# asc names files by their path from the working directory, and --use
	# names the abort handler by that path: run it in the examples' directory.
	cd "$here/examples/assemblyscript"
	for f in *.ts; do
		n=$(basename "$f" .ts)
		rm -f "$out/assemblyscript/$n.wasm"
		run "AssemblyScript $n" "$here/sdk/assemblyscript/node_modules/.bin/asc" "$f" \
			-O3 --noAssert --runtime minimal --use abort=../../sdk/assemblyscript/assembly/index/sluiceAbort \
			-o "$out/assemblyscript/$n.wasm" &
	done
	wait
	cd "$here"
}

build_wat() {
	mkdir -p "$out/wat"
	local f n
	for f in "$here"/examples/wat/*.wat; do
		n=$(basename "$f" .wat)
		rm -f "$out/wat/$n.wasm"
		run "WAT $n" wat2wasm "$f" -o "$out/wat/$n.wasm" || true
	done
}

for l in "${langs[@]}"; do "build_$l"; done
# run's failures inside background jobs are lost with their subshells (each
# printed its own): check that every module is there.
for l in "${langs[@]}"; do
	case $l in c) ext=c ;; rust) ext=rs ;; assemblyscript) ext=ts ;; wat) ext=wat ;; esac
	for f in "$here/examples/$l"/*."$ext"; do
		[ -f "$out/$l/$(basename "$f" ".$ext").wasm" ] || failed=1
	done
done
exit $failed
