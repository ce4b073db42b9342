#!/usr/bin/env python3
"""Fails when a Rust file of the workspace is compiled by no target.

A file that no `mod` declares is never compiled, so its tests never run and nothing says so
(it happened: a property test sat outside the module tree). The compiler is the authority on
what it read: cargo's JSON messages (stdin, from a `cargo clippy --all-targets
--message-format=json` run) name each target's artifacts, and next to each artifact rustc
wrote a dep-info file listing every source file it compiled, `#[path]` and `cfg(test)`
modules included. Every .rs file of every workspace member must appear in one of them.
"""
import json
import os
import subprocess
import sys


def dep_info_files(artifact):
    base = os.path.splitext(artifact)[0]
    folder, name = os.path.split(base)
    yield base + ".d"
    if name.startswith("lib"):
        yield os.path.join(folder, name[3:] + ".d")


def sources(dep_file):
    with open(dep_file, encoding="utf-8") as f:
        for line in f:
            if ":" not in line or line.startswith("#"):
                continue
            # "target: dep dep ..." with spaces in paths escaped as "\ ".
            deps = line.split(":", 1)[1].replace("\\ ", "\0").split()
            for d in deps:
                d = d.replace("\0", " ")
                if d.endswith(".rs"):
                    yield os.path.realpath(d)


def main():
    root = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
    compiled, artifacts = set(), 0
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        artifacts += 1
        for artifact in msg.get("filenames", []):
            for dep in dep_info_files(artifact):
                if os.path.exists(dep):
                    compiled.update(sources(dep))
                    break
    if artifacts == 0:
        sys.exit("check-module-tree: no compiler artifacts on stdin; nothing was checked")
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout
    )
    members = [os.path.dirname(p["manifest_path"]) for p in meta["packages"]]
    missing, total = [], 0
    for member in members:
        for folder, dirs, files in os.walk(member):
            dirs[:] = [d for d in dirs if d not in ("target", ".git")]
            for f in files:
                if f.endswith(".rs"):
                    total += 1
                    path = os.path.realpath(os.path.join(folder, f))
                    if path not in compiled:
                        missing.append(os.path.relpath(path, root))
    if missing:
        print("check-module-tree: these files are compiled by no target (no `mod` declares them):")
        for m in sorted(missing):
            print(f"  {m}")
        sys.exit(1)
    print(f"check-module-tree: all {total} .rs files of {len(members)} crates are compiled")


if __name__ == "__main__":
    main()
