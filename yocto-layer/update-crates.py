#!/usr/bin/env python3
"""Writes meta-intercom's intercom-crates.inc from Cargo.lock: one crate:// SRC_URI entry
and checksum per crates.io package, as oe-core's cargo-update-recipe-crates class expects.

usage: yocto-layer/update-crates.py [--check]   (--check: fail if the file is stale)
"""
import pathlib, sys, tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCK = ROOT / "Cargo.lock"
INC = ROOT / "yocto-layer/meta-intercom/recipes-intercom/intercom/intercom-crates.inc"


def render():
    lock = tomllib.loads(LOCK.read_text())
    crates = sorted(
        (p["name"], p["version"], p["checksum"])
        for p in lock["package"]
        if p.get("source", "").startswith("registry+https://github.com/rust-lang/crates.io-index")
    )
    lines = ["# Generated from Cargo.lock by yocto-layer/update-crates.py; do not edit.", ""]
    uris = [f"crate://crates.io/{n}/{v}" for n, v, _ in crates]
    lines.append(f'SRC_URI += "{uris[0]} \\')
    lines += [f"            {u} \\" for u in uris[1:]]
    lines += ['            "', ""]
    lines += [f'SRC_URI[{n}-{v}.sha256sum] = "{c}"' for n, v, c in crates]
    return "\n".join(lines) + "\n"


def main():
    text = render()
    if "--check" in sys.argv:
        if not INC.exists() or INC.read_text() != text:
            sys.exit(f"{INC.relative_to(ROOT)} is stale: run yocto-layer/update-crates.py")
        print(f"{INC.relative_to(ROOT)} matches Cargo.lock")
        return
    INC.write_text(text)
    print(f"wrote {INC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
