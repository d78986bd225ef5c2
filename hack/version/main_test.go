package main

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

const chartYAML = `apiVersion: v2
name: servicetoken-operator
# The chart's version: VERSION, set by make version-sync.
version: 0.0.9
# The operator version; the default image tag.
appVersion: "0.0.9"
dependencies:
- name: sub
  version: 1.0.0
`

const kustomizationYAML = `resources:
- manager.yaml
images:
- name: controller
  newName: ghcr.io/servicetoken-operator/servicetoken-operator
  newTag: dev
`

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersionIsSetInTheChartAndTheInstaller(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	v := write(t, dir, "VERSION", "1.2.3-rc.1\n")
	chart := write(t, dir, "Chart.yaml", chartYAML)
	kust := write(t, dir, "kustomization.yaml", kustomizationYAML)

	g.Expect(run(v, chart, kust)).To(Succeed())
	got, _ := os.ReadFile(chart)
	g.Expect(string(got)).To(Equal(`apiVersion: v2
name: servicetoken-operator
# The chart's version: VERSION, set by make version-sync.
version: 1.2.3-rc.1
# The operator version; the default image tag.
appVersion: "1.2.3-rc.1"
dependencies:
- name: sub
  version: 1.0.0
`), "only the top-level version lines change")
	got, _ = os.ReadFile(kust)
	g.Expect(string(got)).To(ContainSubstring("  newName: ghcr.io/servicetoken-operator/servicetoken-operator\n  newTag: \"1.2.3-rc.1\"\n"))

	before, _ := os.Stat(chart)
	g.Expect(run(v, chart, kust)).To(Succeed())
	after, _ := os.Stat(chart)
	g.Expect(after.ModTime()).To(Equal(before.ModTime()), "a file in step is not rewritten")
}

func TestVersionRejectsWhatHelmAndTagsWouldNot(t *testing.T) {
	for _, bad := range []string{"v1.2.3", "1.2", "01.2.3", "1.2.3.4", "latest", ""} {
		t.Run(bad, func(t *testing.T) {
			dir := t.TempDir()
			chart := write(t, dir, "Chart.yaml", chartYAML)
			err := run(write(t, dir, "VERSION", bad+"\n"), chart, write(t, dir, "k.yaml", kustomizationYAML))
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring("is not a version")))
		})
	}
}

func TestVersionFailsWhenAKeyIsMissingOrRepeated(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	v := write(t, dir, "VERSION", "1.2.3\n")
	kust := write(t, dir, "k.yaml", kustomizationYAML)
	noApp := write(t, dir, "Chart.yaml", "apiVersion: v2\nversion: 0.0.9\n")
	g.Expect(run(v, noApp, kust)).To(MatchError(ContainSubstring("found 0")))
	twoTags := write(t, dir, "k2.yaml", kustomizationYAML+"  newTag: other\n")
	g.Expect(run(v, write(t, dir, "C2.yaml", chartYAML), twoTags)).To(MatchError(ContainSubstring("found 2")))
}
