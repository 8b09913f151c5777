# Shared by the scripts: where installed tools live. $SCREENREC_TOOLS wins; otherwise
# /opt/screenrec-tools for root, ~/.local/share/screenrec-tools for everyone else. The
# service looks for the bundled ffmpeg in the same places.
if [ -z "${SCREENREC_TOOLS:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    SCREENREC_TOOLS=/opt/screenrec-tools
  else
    SCREENREC_TOOLS=$HOME/.local/share/screenrec-tools
  fi
fi
export SCREENREC_TOOLS

# pip_tool NAME VERSION PYTHON PACKAGE...: a venv at $SCREENREC_TOOLS/NAME holding PACKAGEs,
# (re)made only when its recorded VERSION differs.
pip_tool() {
  local name=$1 version=$2 python=$3
  shift 3
  local dir=$SCREENREC_TOOLS/$name
  if [ "$(cat "$dir/.version" 2>/dev/null)" != "$version" ]; then
    echo "installing $name $version"
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install -q "$@"
    echo "$version" > "$dir/.version"
  fi
}
