"""Exit 0 when every requirement in a requirements file, and every package those need in
turn, is installed at a version that both the requirement and the constraints file
allow (no network); 1 otherwise. scripts/test.sh runs pip only then.

    python3 scripts/py-requirements-met.py [-c constraints.txt] -r requirements.txt
    python3 scripts/py-requirements-met.py --freeze -r requirements.txt

The constraints count too: a machine holding other versions than the pinned ones must
not skip pip, or it would test something else than a fresh machine installs.
--freeze prints `name==version` for what is installed of that closure: the content of
a constraints file (upgrade deliberately: pip install the new versions, then freeze).
Lines with other pip options (--index-url, …) make the check answer 1: pip decides."""
import sys
from importlib.metadata import PackageNotFoundError, distribution

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name


class PipDecides(Exception):
    """Something this check does not model; pip has the last word."""


def read_requirements(path):
    out = []
    for line in open(path):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        if line.startswith('-'):
            raise PipDecides(line)
        out.append(Requirement(line))
    return out


def read_pins(path):
    """Constraints file → {canonical name: Requirement}."""
    return {canonicalize_name(r.name): r for r in read_requirements(path)} if path else {}


def applies(req, extras=('',)):
    return req.marker is None or any(req.marker.evaluate({'extra': e}) for e in extras)


def installed_closure(requirements):
    """{canonical name: (Distribution, [Requirement that asked for it])} over the dependency
    closure, following the extras asked for; raises PackageNotFoundError for a missing one."""
    seen, todo = {}, list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        first = name not in seen
        if first:
            seen[name] = (distribution(req.name), [])
        dist, asked = seen[name]
        asked.append(req)
        extras = ('',) + tuple(sorted(req.extras))
        if first or req.extras:
            todo += [r for r in map(Requirement, dist.requires or []) if applies(r, extras)]
    return seen


def allowed(version, reqs):
    return all(not r.specifier or r.specifier.contains(version, prereleases=True) for r in reqs)


def parse_args(argv):
    opts, i = {'-c': None, '-r': None, '--freeze': False}, 0
    while i < len(argv):
        if argv[i] == '--freeze':
            opts['--freeze'] = True
            i += 1
        elif argv[i] in ('-c', '-r') and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        elif i == len(argv) - 1 and not argv[i].startswith('-'):
            opts['-r'] = argv[i]  # the old form: the requirements file alone
            i += 1
        else:
            sys.exit(f'usage: {sys.argv[0]} [-c constraints.txt] [--freeze] -r requirements.txt')
    if not opts['-r']:
        sys.exit(f'usage: {sys.argv[0]} [-c constraints.txt] [--freeze] -r requirements.txt')
    return opts


def main(argv):
    opts = parse_args(argv)
    try:
        reqs = [r for r in read_requirements(opts['-r']) if applies(r)]
        pins = read_pins(opts['-c'])
        closure = installed_closure(reqs)
    except (PipDecides, PackageNotFoundError):
        return 1
    if opts['--freeze']:
        for name in sorted(closure):
            print(f'{name}=={closure[name][0].version}')
        return 0
    for name, (dist, asked) in closure.items():
        if not allowed(dist.version, asked + ([pins[name]] if name in pins else [])):
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
