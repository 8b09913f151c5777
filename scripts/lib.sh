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
