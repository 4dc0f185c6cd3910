"""The Mojaloop Testing Toolkit (TTK) as the switch the DFSP under test talks FSPIOP to.

Fetched from npm as `ml-testing-toolkit` with an override pinning its shared library to 14.3.0
(the 14.3.3 it asks for is not published), into the cache. Started with `node src/index.js`, cwd a
fresh `workdir/ttk` holding a private copy of `spec_files/`: the TTK reads and *writes* its user
config and rules there relative to the cwd, so two runs side by side must not share it.

The TTK listens on all interfaces, the admin API on a hard-coded 5050 and the mock switch on
system config `API_PORT` (4040). The switch port comes from `TTK_SYSTEM_CONFIG` (the TTK's own
override); for the rest a `node -r` preload rewrites `net.Server.prototype.listen` to bind
127.0.0.1 and map 4040/5050 to the free ports we chose. No MongoDB: `HOSTING_ENABLED` stays off,
so everything lives in files.

Ready means the admin API answers `GET /api/config/user` with 200 and the switch port answers
HTTP. Stopped means every thread is gone, not just the leader (`base.pid_alive`).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.components import fetchers
from harness.components.base import (
    Component,
    ComponentError,
    FetchError,
    Running,
    StartError,
    free_ports,
    fresh_dir,
    http_status,
)
from harness.components.versions import TESTING_TOOLKIT

PACKAGE = "ml-testing-toolkit"
SHARED_LIB = "@mojaloop/ml-testing-toolkit-shared-lib"
#: The TTK pins the shared library to 14.3.3, which is not published; 14.3.0 is the newest.
SHARED_LIB_OVERRIDE = "14.3.0"

#: The ports the TTK hard-codes (admin) or defaults to (switch), remapped by the preload.
UPSTREAM_SWITCH_PORT = 4040
UPSTREAM_ADMIN_PORT = 5050

#: Read-only folders the TTK opens relative to its cwd; linked, not copied.
SHARED_DIRS = ("secrets", "examples")

#: Loaded with `node -r` before the TTK: every TCP listen goes to 127.0.0.1, and the fixed
#: ports in PHEE_PORT_MAP ("4040:p1,5050:p2") go to the free ports chosen by `start`.
LOOPBACK_PRELOAD = r"""'use strict'
// Written by phee (harness/components/ttk.py): keep the Testing Toolkit on loopback, free ports.
const net = require('net')
const HOST = '127.0.0.1'
const portMap = new Map()
for (const pair of (process.env.PHEE_PORT_MAP || '').split(',')) {
  const [from, to] = pair.split(':').map(Number)
  if (from > 0 && to > 0) portMap.set(from, to)
}
const isPort = (v) => typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))
const isOptions = (v) => v !== null && typeof v === 'object' && v._handle === undefined &&
  v.handle === undefined && v.fd === undefined && v.path === undefined
const originalListen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const callback = typeof args[args.length - 1] === 'function' ? args.pop() : undefined
  let options
  if (isOptions(args[0])) {
    options = { ...args[0] }
  } else if (args[0] === undefined || args[0] === null || isPort(args[0])) {
    // listen([port[, host[, backlog]]]) or listen(port, backlog)
    options = { port: args[0] == null ? 0 : Number(args[0]) }
    const backlog = typeof args[1] === 'number' ? args[1] : args[2]
    if (typeof backlog === 'number') options.backlog = backlog
  } else {
    // A unix socket path or an inherited handle: not a TCP port, nothing to rewrite.
    if (callback) args.push(callback)
    return originalListen.apply(this, args)
  }
  const requested = Number(options.port || 0)
  options.port = portMap.has(requested) ? portMap.get(requested) : requested
  options.host = HOST
  delete options.ipv6Only
  process.stderr.write(`phee-loopback: listen ${requested} -> ${HOST}:${options.port}\n`)
  return callback ? originalListen.call(this, options, callback)
    : originalListen.call(this, options)
}
"""


class TestingToolkit(Component):
    """One TTK on 127.0.0.1 with its own `spec_files/` copy in a fresh `workdir/ttk`."""

    name = "ttk"
    version = TESTING_TOOLKIT
    start_deadline_s = 60.0
    stop_grace_s = 10.0

    @property
    def package_dir(self) -> Path:
        return self.cache_dir / "node_modules" / PACKAGE

    def _fetch(self) -> None:
        fetchers.npm_install(
            [f"{PACKAGE}@{self.version}"],
            self.cache_dir,
            overrides={SHARED_LIB: SHARED_LIB_OVERRIDE},
        )
        got = _package_version(self.package_dir)
        lib = _package_version(self.cache_dir / "node_modules" / SHARED_LIB)
        if got != self.version or lib != SHARED_LIB_OVERRIDE:
            raise FetchError(
                f"npm installed {PACKAGE} {got} with {SHARED_LIB} {lib}; "
                f"wanted {self.version} with {SHARED_LIB_OVERRIDE}"
            )

    def start(self, workdir: Path, **options: Any) -> Running:
        """Start on fresh free ports; options, all optional:

        `callback_endpoint` - base URL the TTK sends FSPIOP callbacks to (the DFSP under test's
        inbound API); default the TTK's own switch URL, like upstream's default of itself.
        `user_config` - more `spec_files/user_config.json` keys, written before the start.
        `system_config` - more system config keys, passed in `TTK_SYSTEM_CONFIG`.
        """
        callback = options.pop("callback_endpoint", None)
        user_extra: Mapping[str, Any] = options.pop("user_config", None) or {}
        system_extra: Mapping[str, Any] = options.pop("system_config", None) or {}
        if options:
            raise TypeError(f"unknown TTK options: {sorted(options)}")
        node = shutil.which("node")
        if node is None:
            raise StartError("node is not installed (the TTK needs node 20 or later)")
        self.fetch()
        home = fresh_dir(workdir / self.name)
        switch, admin = free_ports(2)
        callback = str(callback or f"http://127.0.0.1:{switch}")

        # Private, writable spec_files: the TTK saves user config and rules into it.
        shutil.copytree(self.package_dir / "spec_files", home / "spec_files")
        for shared in SHARED_DIRS:
            if (self.package_dir / shared).is_dir():
                (home / shared).symlink_to(self.package_dir / shared, target_is_directory=True)
        user_file = home / "spec_files" / "user_config.json"
        user = json.loads(user_file.read_text())
        user.update(user_extra)
        user["CALLBACK_ENDPOINT"] = callback
        user_file.write_text(json.dumps(user, indent=2))
        preload = home / "phee-loopback.js"
        preload.write_text(LOOPBACK_PRELOAD)

        env = {
            # Merged over system_config.json by the TTK itself; wins over an inherited value.
            "TTK_SYSTEM_CONFIG": json.dumps({**system_extra, "API_PORT": switch}),
            "PHEE_PORT_MAP": f"{UPSTREAM_SWITCH_PORT}:{switch},{UPSTREAM_ADMIN_PORT}:{admin}",
        }
        admin_url = f"http://127.0.0.1:{admin}"

        def ready() -> bool:
            # Any HTTP answer on the switch port (its `/` is a 500) proves hapi is up there;
            # a bare connect could be a loopback self-connect on an ephemeral port.
            return (
                http_status(f"{admin_url}/api/config/user") == 200
                and http_status(f"http://127.0.0.1:{switch}/") is not None
            )

        return self._launch_and_wait(
            [node, "-r", str(preload), str(self.package_dir / "src" / "index.js")],
            workdir=home,
            cwd=home,
            env=env,
            ready=ready,
            endpoints={"switch": f"http://127.0.0.1:{switch}", "admin": admin_url},
            ports={"switch": switch, "admin": admin},
            extra={"callback_endpoint": callback, "spec_files": str(home / "spec_files")},
        )


def user_config(running: Running, timeout: float = 5.0) -> dict[str, Any]:
    """The TTK's stored user config (what `configure_user` merges into)."""
    url = f"{running.endpoint('admin')}/api/config/user"
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        body = json.loads(resp.read().decode())
    stored = body.get("stored") or body.get("runtime")
    if not isinstance(stored, dict):
        raise ComponentError(f"ttk answered {url} without a user config: {body!r}")
    return stored


def configure_user(running: Running, timeout: float = 5.0, **settings: Any) -> dict[str, Any]:
    """Merge `settings` (e.g. CALLBACK_ENDPOINT=...) into the user config; return the result.

    The TTK's PUT replaces the whole stored config, so we GET, merge top-level keys and PUT.
    Most keys take effect at once, but the TTK reads `ILP_SECRET` only when it starts
    (`ilpModel.init` in `initilizeMockHandler`): pass it to `start(user_config=...)`.
    """
    merged = {**user_config(running, timeout), **settings}
    url = f"{running.endpoint('admin')}/api/config/user"
    req = urllib.request.Request(  # noqa: S310 - loopback only
        url,
        data=json.dumps(merged).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            resp.read()
    except OSError as err:
        raise ComponentError(f"ttk rejected PUT {url}: {err}") from err
    if "CALLBACK_ENDPOINT" in settings:
        running.extra["callback_endpoint"] = str(settings["CALLBACK_ENDPOINT"])
    return merged


def _package_version(path: Path) -> str | None:
    try:
        version = json.loads((path / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None
    return str(version) if version is not None else None


__all__ = ["TestingToolkit", "configure_user", "user_config"]
