# Shell helpers shared by scripts/run and scripts/test (sourced, not run).

# apt_install PKG...: installs the Debian packages that are missing (apt-get update once per run).
apt_updated=
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

# What building the server needs beyond Rust: HiGHS (the mapper's solver) is built from source with cmake,
# and its Rust bindings are generated with libclang.
build_packages=(cmake libclang-dev)
