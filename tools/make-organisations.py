#!/usr/bin/env python3
"""Build config/organisations.csv (the organisation registry, SPEC section 4) from the 2011 list
of Primary Care Trusts (columns code,name).

For each organisation it writes:
  aliases     the name without "PCT" / "Teaching PCT" / "Care Trust" / "NHS PCT" (Leeds), the same
              with "NHS" in front (NHS Leeds), and for a Teaching or NHS PCT the plain "<short> PCT";
  submitters  one test domain, @<slug>.nhs.test (test domains only: the Data Collection Team
              replaces them with the real submitters before going live).

Usage: tools/make-organisations.py [SOURCE.csv] [OUTPUT.csv]
  defaults: ../shared/data/pcts-2011.csv  config/organisations.csv
"""
import csv
import re
import sys

SUFFIXES = ["Teaching PCT", "NHS PCT", "Care Trust", "PCT"]


def short_name(name):
    for suffix in SUFFIXES:
        if name.endswith(" " + suffix):
            return name[: -len(suffix) - 1].strip(), suffix
    return name, ""


def slug(short):
    return re.sub(r"[^a-z0-9]+", "-", short.lower()).strip("-")


def aliases(name):
    short, suffix = short_name(name)
    out = [short, "NHS " + short]
    if suffix in ("Teaching PCT", "NHS PCT"):
        out.append(short + " PCT")
    return [a for a in out if a != name]


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/pcts-2011.csv"
    target = sys.argv[2] if len(sys.argv) > 2 else "config/organisations.csv"
    with open(source, newline="", encoding="utf-8-sig") as f:
        rows = [(r["code"].strip(), r["name"].strip()) for r in csv.DictReader(f)]
    seen = set()
    with open(target, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["code", "name", "aliases", "submitters"])
        for code, name in rows:
            domain = slug(short_name(name)[0]) + ".nhs.test"
            if code in seen or domain in seen:
                sys.exit(f"duplicate code or domain: {code} {domain}")
            seen.update([code, domain])
            out.writerow([code, name, ";".join(aliases(name)), "@" + domain])
    print(f"wrote {len(rows)} organisations to {target}")


if __name__ == "__main__":
    main()
