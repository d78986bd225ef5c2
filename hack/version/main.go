// Command version sets the operator's version, kept in the VERSION file, in
// the files that repeat it:
//
//	go run ./hack/version -chart charts/servicetoken-operator/Chart.yaml \
//	    -kustomization config/manager/kustomization.yaml VERSION
//
// Chart.yaml's version and appVersion (the chart's default image tag) and the
// installer's image tag (newTag in the manager's kustomization) become the
// version; every other line, comments included, stays as it is. A file already
// in step is not written. `make version-sync` runs it; `make verify` reruns it
// and fails on drift. The binaries get the version from the Makefile (-ldflags).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// semver is a SemVer 2.0 version without a leading "v", as Helm wants a
// chart version and as the image tag is written.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// field is a "key: value" line of a YAML file, matched with its indentation;
// the whole line (value and any trailing comment) is replaced.
type field struct {
	key    *regexp.Regexp
	format string // the new line, given the version
}

var (
	chartFields = []field{
		{regexp.MustCompile(`(?m)^version:.*$`), "version: %s"},
		{regexp.MustCompile(`(?m)^appVersion:.*$`), `appVersion: "%s"`},
	}
	kustomizationFields = []field{
		{regexp.MustCompile(`(?m)^  newTag:.*$`), `  newTag: "%s"`},
	}
)

func main() {
	chart := flag.String("chart", "", "the chart's Chart.yaml")
	kustomization := flag.String("kustomization", "", "the kustomization.yaml that sets the manager's image")
	flag.Parse()
	if *chart == "" || *kustomization == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: version -chart Chart.yaml -kustomization kustomization.yaml VERSION")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *chart, *kustomization); err != nil {
		fmt.Fprintln(os.Stderr, "hack/version:", err)
		os.Exit(1)
	}
}

func run(versionFile, chart, kustomization string) error {
	src, err := os.ReadFile(versionFile)
	if err != nil {
		return err
	}
	v := strings.TrimSpace(string(src))
	if !semver.MatchString(v) {
		return fmt.Errorf("%s: %q is not a version like 1.2.3 or 1.2.3-rc.1 (SemVer, no leading v)", versionFile, v)
	}
	if err := setFields(chart, v, chartFields); err != nil {
		return err
	}
	return setFields(kustomization, v, kustomizationFields)
}

// setFields rewrites each field's line in path to carry version; each must
// occur exactly once, so a moved or renamed key fails instead of drifting.
func setFields(path, version string, fields []field) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out := src
	for _, f := range fields {
		if n := len(f.key.FindAllIndex(out, -1)); n != 1 {
			return fmt.Errorf("%s: want one line matching %s, found %d", path, f.key, n)
		}
		line := fmt.Sprintf(f.format, version)
		out = f.key.ReplaceAllLiteral(out, []byte(line))
	}
	if bytes.Equal(out, src) {
		return nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, out, info.Mode().Perm()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
