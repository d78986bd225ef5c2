package main

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/servicetoken-operator/servicetoken-operator/internal/version"
)

// TestVersionFlagPrintsTheStampedVersion builds the manager and cfsim as
// `make build` does, stamping a version and revision with -ldflags -X, and
// checks that --version prints them.
func TestVersionFlagPrintsTheStampedVersion(t *testing.T) {
	g := NewWithT(t)
	pkg := reflect.TypeFor[version.Info]().PkgPath()
	const v, rev = "9.8.7-test.1", "feedfacefeedfacefeedfacefeedfacefeedface"
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator),
		"-ldflags", "-X "+pkg+".Version="+v+" -X "+pkg+".Revision="+rev, ".", "./cfsim")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))

	for bin, program := range map[string]string{"cmd": "manager", "cfsim": "cfsim"} {
		out, err := exec.Command(filepath.Join(dir, bin), "--version").Output()
		g.Expect(err).NotTo(HaveOccurred(), program)
		g.Expect(string(out)).To(MatchRegexp(`^%s %s \(revision %s, go[0-9.]+\S*\)\n$`, program, regexp.QuoteMeta(v), rev), program)
	}
}
