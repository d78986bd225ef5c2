package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var (
	standinOnce sync.Once
	standins    map[string][]byte
	standinErr  error
)

// standinBinaries cross-compiles testdata/standin, statically, once per
// architecture the image holds.
func standinBinaries(t *testing.T) map[string][]byte {
	t.Helper()
	standinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "standin-")
		if err != nil {
			standinErr = err
			return
		}
		defer func() { _ = os.RemoveAll(dir) }()
		standins = map[string][]byte{}
		for _, arch := range []string{"amd64", "arm64"} {
			out := filepath.Join(dir, arch)
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/standin")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
			if b, err := cmd.CombinedOutput(); err != nil {
				standinErr = fmt.Errorf("build stand-in for %s: %w\n%s", arch, err, b)
				return
			}
			if standins[arch], err = os.ReadFile(out); err != nil {
				standinErr = err
				return
			}
		}
	})
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	return standins
}

func testSpec(t *testing.T) Spec {
	return Spec{
		Binaries: standinBinaries(t),
		Source:   DefaultSource,
		Version:  "1.2.3",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Created:  time.Unix(1700000000, 0).UTC(),
	}
}

// buildArchive builds s's index and writes it as `make image` does.
func buildArchive(t *testing.T, s Spec) (v1.ImageIndex, string) {
	t.Helper()
	idx, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteArchive(idx, out, "ghcr.io/you/servicetoken-operator:1.2.3"); err != nil {
		t.Fatal(err)
	}
	return idx, out
}

// TestArchiveHasTheImageShape builds the archive as `make image` does and reads
// it back: both architectures, nonroot user, entrypoint, labels, static
// binaries of the right machine, a CA bundle.
func TestArchiveHasTheImageShape(t *testing.T) {
	s := testSpec(t)
	idx, out := buildArchive(t, s)
	read, err := ReadArchive(out, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(read, s); err != nil {
		t.Fatalf("the archive fails the check: %v", err)
	}

	im, err := read.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	var platforms []string
	for _, d := range im.Manifests {
		platforms = append(platforms, d.Platform.String())
		img, err := read.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/manager" ||
			cf.Config.Labels["org.opencontainers.image.version"] != "1.2.3" {
			t.Errorf("%s: config %+v", d.Platform, cf.Config)
		}
	}
	if got := strings.Join(platforms, ","); got != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %s, want linux/amd64,linux/arm64", got)
	}

	// The same inputs give the same bytes.
	again := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteArchive(idx, again, "ghcr.io/you/servicetoken-operator:1.2.3"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two archives of one index differ")
	}
}

// TestIndexJSONNamesTheImage: podman load and skopeo's oci-archive: read
// index.json's single entry and its name.
func TestIndexJSONNamesTheImage(t *testing.T) {
	_, out := buildArchive(t, testSpec(t))
	dir := t.TempDir()
	if _, err := ReadArchive(out, dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m v1.IndexManifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations[RefNameAnnotation] != "1.2.3" ||
		m.Manifests[0].Annotations["io.containerd.image.name"] != "ghcr.io/you/servicetoken-operator:1.2.3" {
		t.Errorf("index.json: %s", data)
	}
}

// edit rebuilds idx with edit applied to the image of one architecture.
func edit(t *testing.T, idx v1.ImageIndex, arch string, change func(v1.Image) v1.Image) v1.ImageIndex {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if d.Platform.Architecture == arch {
			img = change(img)
		}
		out = mutate.AppendManifests(out, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: d.Platform}})
	}
	return out
}

func editConfig(t *testing.T, change func(*v1.Config)) func(v1.Image) v1.Image {
	return func(img v1.Image) v1.Image {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		change(&cf.Config)
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
}

// overlay adds a layer holding the file /manager with data.
func overlay(t *testing.T, data []byte) func(v1.Image) v1.Image {
	return func(img v1.Image) v1.Image {
		files, err := layerTar(time.Unix(0, 0), data, []byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"))
		if err != nil {
			t.Fatal(err)
		}
		l, err := ociLayer(files)
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.AppendLayers(img, l)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
}

// TestCheckNoticesWhatIsWrong: each way an image can be wrong fails Check.
func TestCheckNoticesWhatIsWrong(t *testing.T) {
	s := testSpec(t)
	idx, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	bins := testSpec(t).Binaries
	cases := map[string]struct {
		idx  v1.ImageIndex
		spec func(*Spec)
		want string
	}{
		"the image runs as root": {
			idx: edit(t, idx, "arm64", editConfig(t, func(c *v1.Config) { c.User = "" })), want: "user",
		},
		"the entrypoint is a shell": {
			idx: edit(t, idx, "amd64", editConfig(t, func(c *v1.Config) { c.Entrypoint = []string{"/bin/sh"} })), want: "entrypoint",
		},
		"the version label is not VERSION": {
			idx: idx, spec: func(s *Spec) { s.Version = "9.9.9" }, want: "labels",
		},
		"a label is missing": {
			idx: edit(t, idx, "amd64", editConfig(t, func(c *v1.Config) { delete(c.Labels, LabelRevision) })), want: "labels",
		},
		"an architecture is missing": {
			idx:  mutate.RemoveManifests(idx, func(d v1.Descriptor) bool { return d.Platform.Architecture == "arm64" }),
			want: "architectures [amd64], want [amd64 arm64]",
		},
		"the arm64 image holds the amd64 binary": {
			idx: edit(t, idx, "arm64", overlay(t, bins["amd64"])), want: "ELF machine is EM_X86_64, want EM_AARCH64",
		},
		"the binary is not an ELF file": {
			idx: edit(t, idx, "amd64", overlay(t, []byte("#!/bin/sh\n"))), want: "not an ELF file",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := testSpec(t)
			if c.spec != nil {
				c.spec(&s)
			}
			err := Check(c.idx, s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Check: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestBuildRefusesDynamicBinaries: a binary that needs a program interpreter
// (built with cgo) would not start on an empty base.
func TestBuildRefusesDynamicBinaries(t *testing.T) {
	arch := map[string]string{"amd64": "amd64", "arm64": "arm64"}[runtime.GOARCH]
	sh, err := os.ReadFile("/bin/sh")
	if arch == "" || err != nil {
		t.Skipf("no /bin/sh for a supported architecture (%s): %v", runtime.GOARCH, err)
	}
	f, err := elf.NewFile(bytes.NewReader(sh))
	if err != nil {
		t.Skipf("/bin/sh is not ELF: %v", err)
	}
	_ = f.Close()
	s := testSpec(t)
	s.Binaries = map[string][]byte{arch: sh}
	if _, err := Build(s); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("Build with /bin/sh: %v, want a dynamically linked error", err)
	}
	s.Binaries = map[string][]byte{arch: standinBinaries(t)[arch]}
	s.Revision = ""
	if _, err := Build(s); err == nil || !strings.Contains(err.Error(), LabelRevision) {
		t.Errorf("Build without a revision: %v, want an error naming the label", err)
	}
}

// TestPushedIndexReadsBack pushes as `make image-push` does, to an in-process
// registry, and pulls the same index back.
func TestPushedIndexReadsBack(t *testing.T) {
	s := testSpec(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	out := filepath.Join(t.TempDir(), "image.tar")
	ref := strings.TrimPrefix(reg.URL, "http://") + "/you/servicetoken-operator:1.2.3"
	bins := map[string]string{}
	for arch, bin := range s.Binaries {
		bins[arch] = filepath.Join(t.TempDir(), arch)
		if err := os.WriteFile(bins[arch], bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	digestFile := filepath.Join(t.TempDir(), "digest")
	err := run([]string{"-bin", "amd64=" + bins["amd64"], "-bin", "arm64=" + bins["arm64"],
		"-version", s.Version, "-revision", s.Revision, "-created", "1700000000",
		"-ref", ref, "-out", out, "-push", ref, "-digest-file", digestFile})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(pulled, s); err != nil {
		t.Errorf("the pushed index fails the check: %v", err)
	}
	digest, err := pulled.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if written, _ := os.ReadFile(digestFile); strings.TrimSpace(string(written)) != digest.String() {
		t.Errorf("digest file %q, pushed %s", written, digest)
	}
}

// TestDockerfileMatchesBuilder: the Dockerfile's final stage gives the image
// the Go builder's user, entrypoint, labels and files.
func TestDockerfileMatchesBuilder(t *testing.T) {
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	// The final stage's instructions, continuation lines joined.
	var stage []string
	var line string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			line += cont + " "
			continue
		}
		line += text
		if strings.HasPrefix(line, "FROM ") {
			stage = nil
		}
		stage = append(stage, line)
		line = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	has := func(want string) {
		t.Helper()
		for _, l := range stage {
			if l == want {
				return
			}
		}
		t.Errorf("the Dockerfile's final stage lacks %q:\n%s", want, strings.Join(stage, "\n"))
	}
	has("FROM scratch")
	has("USER " + User)
	has(fmt.Sprintf("ENTRYPOINT [%q]", Entrypoint))
	has("COPY --from=builder /workspace/manager " + Entrypoint)
	has("COPY --from=builder /workspace/ca-certificates.crt " + CertsPath)

	labels := map[string]string{}
	label := regexp.MustCompile(`([a-z.]+)="([^"]*)"`)
	for _, l := range stage {
		if strings.HasPrefix(l, "LABEL ") {
			for _, m := range label.FindAllStringSubmatch(l, -1) {
				labels[m[1]] = m[2]
			}
		}
	}
	want := map[string]string{LabelSource: DefaultSource, LabelVersion: "${VERSION}", LabelRevision: "${REVISION}"}
	if fmt.Sprint(labels) != fmt.Sprint(want) {
		t.Errorf("the Dockerfile's labels are %v, want %v", labels, want)
	}
	has("ARG VERSION")
	has("ARG REVISION")
}
