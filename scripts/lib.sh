# Shared by scripts/start and scripts/test. Sourced, not run.

# Create .venv and install requirements.txt when it changed since the last install.
ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  local stamp=.venv/.requirements.sha
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
  fi
}

# ensure_debian_package PACKAGE PATH_OR_COMMAND: apt-get install PACKAGE unless the command exists.
ensure_debian_package() {
  local package=$1 probe=$2
  if command -v "$probe" >/dev/null 2>&1 || [ -e "$probe" ]; then
    return
  fi
  echo "installing $package (Debian package)..."
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Once per run: the package lists of a fresh machine are empty or old.
  if [ -z "${APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq -o DPkg::Lock::Timeout=600
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$package" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# PostgreSQL refuses to run as root: run its tools as the postgres user then.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

chown_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres "$1"
  fi
}
