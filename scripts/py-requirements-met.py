"""Exit 0 when every requirement in a requirements file is installed at a matching
version (no network), 1 otherwise; scripts/test.sh runs pip only then.
Lines with pip options (-r, --index-url, …) make it answer 1: pip decides."""
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line or line.startswith('-'):
        if line: sys.exit(1)  # options (-r, --index-url): let pip decide
        continue
    r = Requirement(line)
    if r.marker is not None and not r.marker.evaluate():
        continue
    try:
        v = version(r.name)
    except PackageNotFoundError:
        sys.exit(1)
    if r.specifier and not r.specifier.contains(v, prereleases=True):
        sys.exit(1)
