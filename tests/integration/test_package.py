"""test_package.py - the Debian package (issue 13): CPack builds a .deb from
this build tree, apt-get installs it on this machine, the installed files
are where the unit, man and funneld expect them, the installed config is
refused until its brokers are named (with the line and column) and valid
once they are, funnelctl finds the installed schemas, and apt-get purge
removes it all again.

It installs into the real system (as root, as CI runs): it refuses to run
over a funneld package that was already installed.
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

ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=ENV, **kw)


def installed():
    r = run(["dpkg-query", "-W", "-f", "${Status}", "funneld"])
    return r.returncode == 0 and "installed" in r.stdout and "not-installed" not in r.stdout


class Package(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fd-pkg-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_deb_installs_checks_and_purges(self):
        self.assertEqual(os.geteuid(), 0, "installing a package needs root (CI runs as root)")
        self.assertFalse(installed(), "a funneld package is installed here already: not "
                                      "replacing it (apt-get purge funneld first)")
        out = run(["cpack", "-G", "DEB", "-B", str(self.tmp)], cwd=harness.build_dir())
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        debs = list(self.tmp.glob("funneld_*.deb"))
        self.assertEqual(len(debs), 1, out.stdout)
        deb = debs[0]
        info = run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends"]).stdout
        self.assertIn("Package: funneld", info)
        for dep in ("librdkafka1", "libhiredis0.14", "libavro", "libopenblas", "libyaml-0-2",
                    "libmicrohttpd12", "libsystemd0", "systemd"):
            self.assertIn(dep, info, "dependencies declared (shlibdeps)")
        files = run(["dpkg-deb", "-c", str(deb)]).stdout
        for path in ("./usr/bin/funneld", "./usr/bin/funnelctl", "./etc/funneld/funneld.yaml",
                     "./usr/share/funneld/schemas/event.avsc",
                     "./usr/share/funneld/schemas/churn_alert.avsc",
                     "./lib/systemd/system/funneld.service", "./usr/lib/sysusers.d/funneld.conf",
                     "./usr/lib/tmpfiles.d/funneld.conf", "./usr/share/man/man8/funneld.8",
                     "./usr/share/man/man1/funnelctl.1", "./usr/share/man/man5/funneld.yaml.5"):
            self.assertRegex(files, rf"(?m) {re.escape(path)}$", f"{path} in the package")
        try:
            r = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb)])
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
            self.assertTrue(installed())
            # postinst: the user, the group's read access to the config
            self.assertEqual(run(["getent", "passwd", "funneld"]).returncode, 0)
            conf = Path("/etc/funneld/funneld.yaml")
            st = conf.stat()
            self.assertEqual(st.st_mode & 0o777, 0o640)
            self.assertEqual(run(["stat", "-c", "%G", str(conf)]).stdout.strip(), "funneld")
            text = conf.read_text()
            self.assertIn("schema: /usr/share/funneld/schemas/event.avsc", text)
            # the installed config refuses to run until the brokers are set
            r = run(["/usr/bin/funneld", "--check-config", "-c", str(conf)])
            self.assertEqual(r.returncode, 1)
            line = next(i for i, ln in enumerate(text.splitlines(), 1)
                        if ln.strip() == "brokers: SET-ME")
            self.assertRegex(r.stderr, rf"/etc/funneld/funneld\.yaml:{line}:12: kafka\.brokers: "
                                       r".*replace SET-ME")
            # named: valid, with the schemas found under /usr/share/funneld
            edited = self.tmp / "funneld.yaml"
            edited.write_text(text.replace("brokers: SET-ME", "brokers: kafka1:9092"))
            r = run(["/usr/bin/funneld", "--check-config", "-c", str(edited)])
            self.assertEqual(r.returncode, 0, r.stderr)
            # funnelctl, outside the source tree, uses the installed schema
            r = run(["/usr/bin/funnelctl", "gen", "--events", "20", "--users", "5",
                     "--out", str(self.tmp / "ev.bin"), "--truth", str(self.tmp / "t.json")],
                    cwd=self.tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertGreater((self.tmp / "ev.bin").stat().st_size, 0)
            # man finds the pages, which render without warnings
            for page in ("8 funneld", "1 funnelctl", "5 funneld.yaml"):
                sec, name = page.split()
                r = run(["man", "-w", sec, name])
                self.assertEqual(r.returncode, 0, f"man -w {page}: {r.stderr}")
                g = run(["groff", "-man", "-Tutf8", "-ww", "-z", r.stdout.strip()])
                self.assertEqual((g.returncode, g.stderr), (0, ""), f"groff -ww {page}")
            # the unit as installed passes verify
            r = run(["systemd-analyze", "verify", "/lib/systemd/system/funneld.service"])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            r = run(["apt-get", "purge", "-y", "-q", "funneld"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(installed())
        for gone in ("/usr/bin/funneld", "/etc/funneld", "/lib/systemd/system/funneld.service",
                     "/usr/share/funneld"):
            self.assertFalse(os.path.exists(gone), f"{gone} removed by purge")


if __name__ == "__main__":
    unittest.main(verbosity=2)
