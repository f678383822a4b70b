"""test_unit.py - the systemd unit as shipped (issue 13): its exposure score
and `systemd-analyze verify` of the unit installed with the binary it names
and the man pages its Documentation= names.

No systemd runs as PID 1 here, so the unit is checked offline: the score
with `systemd-analyze security --offline=yes`, the installed unit with
`systemd-analyze verify --root=` over a temporary root that holds systemd's
own units, /usr/bin/funneld, kill (ExecReload) and the man pages.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

UNIT = harness.source_dir() / "systemd" / "funneld.service"
ANALYZE = "systemd-analyze"  # Debian's systemd (tools/setup.sh installs it)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


class Unit(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-unit-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_exposure_at_most_1_5(self):
        out = run([ANALYZE, "security", "--offline=yes", "--no-pager", str(UNIT)])
        self.assertEqual(out.returncode, 0, out.stderr)
        m = re.search(r"Overall exposure level for funneld\.service: (\d+\.\d+)", out.stdout)
        self.assertIsNotNone(m, out.stdout[-2000:])
        self.assertLessEqual(float(m.group(1)), 1.5, out.stdout)
        # the directives the score comes from are there (not a different file scored)
        text = UNIT.read_text()
        for d in ("Type=notify", "WatchdogSec=", "SystemCallFilter=@system-service",
                  "PrivateUsers=yes", "Restart=on-failure", "ExecReload="):
            self.assertIn(d, text)

    def test_verify_the_installed_unit(self):
        root = self.tmp / "root"
        (root / "usr" / "bin").mkdir(parents=True)
        (root / "usr" / "lib" / "systemd").mkdir(parents=True)
        shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system",
                        symlinks=True)
        (root / "bin").symlink_to("usr/bin")  # Debian 12 is merged-/usr
        shutil.copy(harness.build_dir() / "funneld", root / "usr" / "bin" / "funneld")
        shutil.copy(shutil.which("kill"), root / "usr" / "bin" / "kill")
        shutil.copy(UNIT, root / "usr" / "lib" / "systemd" / "system" / "funneld.service")
        man = self.tmp / "man"
        for sec, page in (("8", "funneld.8"), ("1", "funnelctl.1")):
            (man / f"man{sec}").mkdir(parents=True, exist_ok=True)
            shutil.copy(harness.source_dir() / "docs" / "man" / page, man / f"man{sec}" / page)
        env = {**os.environ, "MANPATH": str(man), "SYSTEMD_LOG_LEVEL": "notice"}
        out = run([ANALYZE, "verify", f"--root={root}", "funneld.service"], env=env)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual((out.stdout + out.stderr).strip(), "", "verify found something")
        # and it can fail: a unit naming a binary that is not installed
        (root / "usr" / "bin" / "funneld").unlink()
        out = run([ANALYZE, "verify", f"--root={root}", "funneld.service"], env=env)
        self.assertIn("/usr/bin/funneld is not executable", out.stdout + out.stderr)

    def test_sysusers_and_tmpfiles(self):
        d = harness.source_dir() / "systemd"
        root = self.tmp / "su"
        (root / "etc").mkdir(parents=True)
        out = run(["systemd-sysusers", f"--root={root}", str(d / "funneld.sysusers")])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex((root / "etc" / "passwd").read_text(),
                         r"(?m)^funneld:x:\d+:\d+:.*:/var/lib/funneld:/usr/sbin/nologin$")
        self.assertRegex((root / "etc" / "group").read_text(), r"(?m)^funneld:x:\d+:")
        root = self.tmp / "tf"
        (root / "etc").mkdir(parents=True)
        shutil.copy("/etc/passwd", root / "etc" / "passwd")
        with open(root / "etc" / "group", "w") as g:
            # this machine may have a funneld group already (test_package's
            # postinst made one): the root's own says 64999
            g.write("".join(ln for ln in Path("/etc/group").read_text().splitlines(True)
                            if not ln.startswith("funneld:")) + "funneld:x:64999:\n")
        out = run(["systemd-tmpfiles", f"--root={root}", "--create", str(d / "funneld.tmpfiles")])
        self.assertEqual(out.returncode, 0, out.stderr)
        st = (root / "etc" / "funneld").stat()
        self.assertEqual(st.st_mode & 0o7777, 0o750)
        self.assertEqual(st.st_gid, 64999)


if __name__ == "__main__":
    unittest.main(verbosity=2)
