"""Where the repository's files are: `fjs` runs from the checkout (an editable install), and uses its
compose files, entrypoints and App."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINTS = REPO / "docker" / "entrypoints"
