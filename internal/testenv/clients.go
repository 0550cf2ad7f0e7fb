package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// Python returns a python3 interpreter that can import every module given,
// trying Debian's /usr/bin/python3 first (where python3-avro and
// python3-confluent-kafka install) and then python3 on PATH. With none, the
// test is skipped, loudly naming what to install.
func Python(t testing.TB, modules ...string) string {
	t.Helper()
	check := "import " + strings.Join(modules, ", ")
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if err := exec.Command(py, "-c", check).Run(); err == nil {
			return py
		}
	}
	Skip(t, "no python3 can %q: run scripts/test-deps.sh (Debian python3-avro, python3-confluent-kafka, python3-requests; fastavro from PyPI)", check)
	return ""
}

// Skip skips the test with a reason that stands out in the test log.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Skipf("SKIPPED — NOT TESTED: "+format, args...)
}

// Kcat returns the path of kcat (Debian's package), or skips the test loudly.
func Kcat(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		Skip(t, "kcat is not installed: run scripts/test-deps.sh (Debian package kcat)")
	}
	return path
}
