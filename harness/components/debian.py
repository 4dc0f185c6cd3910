"""Components that come from Debian packages, unpacked into the cache by exact version."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.components.base import Component, FetchError
from harness.components.fetchers import apt_extract

LIB_SUBDIR = "usr/lib/x86_64-linux-gnu"


class DebianComponent(Component):
    """Fetch = `apt-get download` of `packages` + `dpkg-deb -x`; run with the unpacked libraries."""

    #: `name=version` of the packages to unpack (the server and libraries the base image lacks)
    packages: tuple[str, ...] = ()
    #: binaries (relative to the unpacked root) whose shared libraries must all resolve
    binaries: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        return self.cache_dir / "root"

    def lib_env(self) -> dict[str, str]:
        """LD_LIBRARY_PATH with the unpacked libraries first."""
        paths = [str(self.root / LIB_SUBDIR)]
        if os.environ.get("LD_LIBRARY_PATH"):
            paths.append(os.environ["LD_LIBRARY_PATH"])
        return {"LD_LIBRARY_PATH": ":".join(paths)}

    def _fetch(self) -> None:
        apt_extract(self.packages, self.cache_dir)
        self.check_libraries()

    def check_libraries(self) -> None:
        """Fail loudly, naming the libraries, when an unpacked binary cannot run here."""
        for rel in self.binaries:
            binary = self.root / rel
            if not binary.exists():
                raise FetchError(f"{self.name}: {binary} missing after unpacking {self.packages}")
            out = subprocess.run(
                ["ldd", str(binary)],
                capture_output=True,
                text=True,
                env={**os.environ, **self.lib_env()},
                check=False,
            ).stdout
            missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
            if missing:
                raise FetchError(f"{self.name}: {binary} needs libraries not found: {missing}")


def as_unprivileged(cmd: list[str]) -> list[str]:
    """Run a server that refuses root (PostgreSQL) as a mapped non-root uid when we are root.

    A user namespace maps uid 1000 inside to our own uid outside, so the server sees a normal
    user while still reading the root-owned cache and data directories.
    """
    if os.geteuid() != 0:
        return cmd
    return ["unshare", "--user", "--map-user=1000", "--map-group=1000", *cmd]
