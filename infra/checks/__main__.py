"""Template checks, run by `cargo test -p certops-tests --test infra_template`.

    python3 infra/checks transform   TEMPLATE [OUT.json] SAM transform, offline
    python3 infra/checks render      TEMPLATE OUT.json  definition with substitutions applied
    python3 infra/checks consistency TEMPLATE           functions <-> crates, ${...} <-> substitutions, samconfig
    python3 infra/checks iam         TEMPLATE           least privilege over the transformed template
    python3 infra/checks allowlist                      the '*'-resource allow-list against IAM data
    python3 infra/checks moto        TEMPLATE URL       create the stack in moto and inspect it
    python3 infra/checks hardening   TEMPLATE           a first deploy does no harm (issue 11)

Each prints a JSON report and exits 0, or prints one problem per line and exits 1.
"""

import json
import os
import sys

# Run from the source tree: no __pycache__ next to the checks.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import iam  # noqa: E402
import template  # noqa: E402
from template import CheckFailed  # noqa: E402


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "transform":
            out = template.transformed(args[0])
            kinds = {}
            for res in out["Resources"].values():
                kinds[res["Type"]] = kinds.get(res["Type"], 0) + 1
            report = {"resources": len(out["Resources"]), "by_type": dict(sorted(kinds.items()))}
            if len(args) > 1:
                with open(args[1], "w", encoding="utf-8") as f:
                    json.dump(out, f, indent=1)
        elif cmd == "render":
            text, subs = template.render_definition(args[0])
            with open(args[1], "w", encoding="utf-8") as f:
                f.write(text)
            report = {"substitutions": subs}
        elif cmd == "consistency":
            named = template.check_functions(args[0])
            placeholders = template.check_substitutions(args[0])
            samconfig = template.check_samconfig(args[0])
            report = {"functions": named, "placeholders": placeholders, "samconfig": samconfig}
        elif cmd == "iam":
            stars = iam.check(template.transformed(args[0]))
            report = {"star_resources": stars}
        elif cmd == "allowlist":
            report = {"allow_listed_actions": iam.allow_list_is_justified()}
        elif cmd == "hardening":
            import hardening

            report = hardening.check(args[0])
        elif cmd == "moto":
            import moto_stack

            report = moto_stack.create(args[0], args[1])
        else:
            print(f"unknown check {cmd!r}\n{__doc__}", file=sys.stderr)
            return 2
    except CheckFailed as e:
        for p in e.problems:
            print(f"FAIL {p}")
        return 1
    except IndexError:
        print(f"missing arguments for {cmd}\n{__doc__}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    print(f"{cmd}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
