"""The studies' first import: the project's root, where the experiment and its library live, on the import
path, so that `python studies/NAME.py` runs from the root and a study's cells run in an interactive window
whose working folder is studies/. From there the working folder becomes the root, so that relative paths
(runs/, presets/) mean what they mean on the command line."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if os.path.abspath(os.getcwd()) == os.path.dirname(os.path.abspath(__file__)):
    os.chdir(ROOT)
if __name__ == "__main__":
    print("project.py: error: a library, not a study: the studies' first import (python studies/bridge.py --help "
          "runs a study)", file=sys.stderr)
    raise SystemExit(2)
